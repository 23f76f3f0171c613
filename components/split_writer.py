"""How an ExampleGen writes a split: in a random order, and with memory bounded by a shard.

TFX's `WriteSplit` (tfx.components.example_gen.write_split) sends every split through
`beam.Reshuffle` before `WriteToTFRecord`, so that the records leave ExampleGen in no particular
order: a Trainer's bounded shuffle buffer then sees a fair mix even when the input is sorted (an
image folder read class by class, a log read by date). On a distributed runner that Reshuffle is
a shuffle through the workers' disks. Beam's in-process DirectRunner (the FnApiRunner) instead
holds a GroupByKey's whole input in memory: at HIGGS 1 M + 1 M rows the ExampleGen peaked at
5.8 GB, for a split it only has to pass through.

`WriteSplit` here keeps TFX's path wherever there are workers to shuffle through, and on the
in-process runner (`beam_runner.options.runs_in_one_process`) shuffles through temporary files
instead, the two-pass external shuffle:

1. Scatter: each record, as it streams by, is appended to one of `buckets` temporary files, chosen
   uniformly at random.
2. Gather: each bucket, once small enough to hold (`max_bucket_bytes`), is read, permuted
   uniformly (`random.shuffle`) and appended to the output shard, which closes once it holds
   `max_bucket_bytes` (a small split is one file); a larger bucket is scattered again the same
   way.

The records, bucket after bucket, are a uniformly random permutation of the split: every record's bucket is
drawn independently and uniformly, and every bucket's order is a uniform permutation, so each
ordering of the N records has the same probability. Memory is bounded by one bucket (plus a
write buffer per bucket in the scatter), not by the split. The random draws are seeded from the
split's name, so the same input gives the same files.

The output is what TFX's path writes (gzip at zlib's fastest level, `GZIP_LEVEL`): gzipped
TFRecord files named
`data_tfrecord-SSSSS-of-NNNNN.gz` in the split's directory, where TFX's readers
(`<split>/*`) find them. The temporary files live in the split's directory (on the in-process
runner that is where the machine writes anyway), and are gone when the write ends; a run that
fails on the way has its output directories removed by TFX's launcher.
"""

from __future__ import annotations

import os
import random
import struct
import uuid
import zlib
from typing import Any, Dict, Iterator, List, Optional, Union

import apache_beam as beam
import tensorflow as tf
from apache_beam.transforms import window
from tfx.components.example_gen import write_split as tfx_write_split
from tfx.proto import example_gen_pb2
from tfx.types import standard_component_specs

from beam_runner import options as beam_options

FILE_PREFIX = tfx_write_split.DEFAULT_TF_RECORD_FILE_NAME  # 'data_tfrecord', TFX's own name
BUCKETS = 64
MAX_BUCKET_BYTES = 128 << 20
# zlib's fastest level, not its default 6: a third of the compression time, for files half again
# as large that Beam's TFRecord reader reads a little slower (README: Per-row speed, ExampleGen).
GZIP_LEVEL = 1
_IO_BUFFER_BYTES = 1 << 20  # a bucket file's write buffer, and the read size in the gather
_TEMP_DIR = '.shuffle-tmp'
_LENGTH = struct.Struct('<Q')  # a temporary record's frame: its length, then its bytes

Record = Union[tf.train.Example, tf.train.SequenceExample, bytes]


def _serialized(record: Record) -> bytes:
  return record if isinstance(record, bytes) else record.SerializeToString()


class _Scatter:
  """Appends framed records to `count` files `<prefix>-<i>` in `temp_dir`, each to a uniformly
  random one, through a write buffer of `_IO_BUFFER_BYTES` per file."""

  def __init__(self, temp_dir: str, prefix: str, count: int, rng: random.Random):
    self._paths = [os.path.join(temp_dir, f'{prefix}-{i:05d}') for i in range(count)]
    self._buffers = [bytearray() for _ in range(count)]
    self._files: List[Optional[Any]] = [None] * count
    self._rng = rng

  def add(self, record: bytes) -> None:
    # int(random() * n) is uniform over 0..n-1 up to 2**-53 (a third of randrange's cost).
    i = int(self._rng.random() * len(self._buffers))
    buffer = self._buffers[i]
    buffer += _LENGTH.pack(len(record))
    buffer += record
    if len(buffer) >= _IO_BUFFER_BYTES:
      self._flush(i)

  def _flush(self, i: int) -> None:
    if self._files[i] is None:
      self._files[i] = tf.io.gfile.GFile(self._paths[i], 'wb')
    self._files[i].write(bytes(self._buffers[i]))
    self._buffers[i].clear()

  def close(self) -> List[str]:
    """Flushes and closes every file; the paths of the non-empty ones."""
    written = []
    for i, buffer in enumerate(self._buffers):
      if buffer:
        self._flush(i)
      if self._files[i] is not None:
        self._files[i].close()
        written.append(self._paths[i])
    return written


def _read_records(path: str) -> Iterator[bytes]:
  """The records of a temporary file, streamed.

  Raises:
    ValueError: the file ends inside a record (it was cut short), naming the file.
  """
  pending = b''
  with tf.io.gfile.GFile(path, 'rb') as f:
    while True:
      chunk = f.read(_IO_BUFFER_BYTES)
      if not chunk:
        break
      data = pending + chunk if pending else chunk
      offset = 0
      while offset + _LENGTH.size <= len(data):
        (length,) = _LENGTH.unpack_from(data, offset)
        end = offset + _LENGTH.size + length
        if end > len(data):
          break
        yield data[offset + _LENGTH.size:end]
        offset = end
      pending = data[offset:]
  if pending:
    raise ValueError(f'{path}: ends inside a record ({len(pending)} bytes left over); the '
                     'temporary shuffle file was cut short')


class _ScatterFn(beam.DoFn):
  """Scatter pass: every record of a bundle to a random bucket file; emits the bucket files'
  paths when the bundle ends."""

  def __init__(self, temp_dir: str, buckets: int, seed: int):
    self._temp_dir = temp_dir
    self._buckets = buckets
    self._seed = seed
    self._bundle = 0
    self._scatter: Optional[_Scatter] = None

  def start_bundle(self):
    tf.io.gfile.makedirs(self._temp_dir)
    # Bundle number first, so that the gather pass takes the buckets in the order they were made.
    self._scatter = _Scatter(self._temp_dir, f'{self._bundle:05d}-{uuid.uuid4().hex}',
                             self._buckets,
                             random.Random(self._seed * 1_000_003 + self._bundle))
    self._bundle += 1

  def process(self, record: Record):
    self._scatter.add(_serialized(record))
    return ()  # nothing per record: the bucket files' paths come when the bundle ends

  def finish_bundle(self):
    for path in self._scatter.close():
      yield window.GlobalWindows.windowed_value(path)
    self._scatter = None


def _gather(bucket_paths: List[str], split_dir: str, temp_dir: str, max_bucket_bytes: int,
            seed: int) -> List[str]:
  """Gather pass: every bucket permuted and appended to the current gzipped TFRecord shard (a
  new shard once one holds `max_bucket_bytes`), larger buckets scattered again first; then the
  shards renamed `data_tfrecord-SSSSS-of-NNNNN.gz` (one empty shard for an empty split, as Beam's
  TFRecord sink writes) and the temporary files removed.

  Returns:
    The output files' paths, in shard order.
  """
  tf.io.gfile.makedirs(temp_dir)  # also where no bundle started (an empty split, on some runners)
  rng = random.Random(seed)
  pending = sorted(bucket_paths)  # a fixed order, so that the seed fixes the output
  shards: List[str] = []
  writer, shard_bytes, level = None, 0, 0
  try:
    while pending or not shards:
      if writer is None:
        shards.append(os.path.join(temp_dir, f'shard-{len(shards):05d}.gz'))
        writer = tf.io.TFRecordWriter(shards[-1], tf.io.TFRecordOptions(
            compression_type='GZIP', compression_level=GZIP_LEVEL))
        shard_bytes = 0
      if not pending:
        break
      path = pending.pop(0)
      size = tf.io.gfile.stat(path).length
      if size > max_bucket_bytes:
        level += 1
        scatter = _Scatter(temp_dir, f'split{level}', max(2, 2 * -(-size // max_bucket_bytes)),
                           rng)
        for record in _read_records(path):
          scatter.add(record)
        tf.io.gfile.remove(path)
        pending = sorted(scatter.close()) + pending
        continue
      records = list(_read_records(path))
      rng.shuffle(records)
      for record in records:
        writer.write(record)
      del records
      tf.io.gfile.remove(path)
      shard_bytes += size
      if shard_bytes >= max_bucket_bytes:
        writer.close()
        writer = None
  finally:
    if writer is not None:
      writer.close()
  outputs = []
  for i, shard in enumerate(shards):
    output = os.path.join(split_dir, f'{FILE_PREFIX}-{i:05d}-of-{len(shards):05d}.gz')
    tf.io.gfile.rename(shard, output, overwrite=True)
    outputs.append(output)
  tf.io.gfile.rmtree(temp_dir)
  return outputs


def split_seed(split_dir: str) -> int:
  """A stable seed from the split directory's last component (`Split-train`): the same on every
  run and every machine, unlike Python's salted `hash`."""
  return zlib.crc32(os.path.basename(os.path.normpath(split_dir)).encode())


@beam.ptransform_fn
def ShuffleToTFRecords(records: beam.PCollection, split_dir: str,  # pylint: disable=invalid-name
                       buckets: int = BUCKETS,
                       max_bucket_bytes: int = MAX_BUCKET_BYTES) -> beam.PCollection:
  """Writes `records` (tf.train.Example or SequenceExample protos, or their serialized bytes) to
  `split_dir` as gzipped TFRecord shards in a uniformly random order, through temporary files
  (the module's docstring gives the method), holding at most one bucket in memory.

  Args:
    records: the split's records.
    split_dir: the split's output directory (created if missing).
    buckets: temporary files of the scatter pass (>= 1); each holds a `1/buckets` share.
    max_bucket_bytes: the largest bucket read whole (> 0); a larger one is scattered again.

  Returns:
    A PCollection of one element: the list of output file paths, in shard order.

  Raises:
    ValueError: buckets < 1 or max_bucket_bytes <= 0 (at construction).
  """
  if buckets < 1 or max_bucket_bytes <= 0:
    raise ValueError(f'buckets must be >= 1 and max_bucket_bytes > 0, got {buckets} and '
                     f'{max_bucket_bytes}')
  temp_dir = os.path.join(split_dir, _TEMP_DIR)
  seed = split_seed(split_dir)
  bucket_paths = records | 'Scatter' >> beam.ParDo(_ScatterFn(temp_dir, buckets, seed))
  return (records.pipeline
          | 'Once' >> beam.Create([None])
          | 'Gather' >> beam.Map(lambda _, paths: _gather(paths, split_dir, temp_dir,
                                                          max_bucket_bytes, seed),
                                 beam.pvalue.AsList(bucket_paths)))


@beam.ptransform_fn
def WriteSplit(split: beam.PCollection, split_dir: str,  # pylint: disable=invalid-name
               exec_properties: Dict[str, Any]) -> beam.PCollection:
  """Writes an ExampleGen's split: TFX's `WriteSplit` (Reshuffle, then Beam's TFRecord or Parquet
  sink), except for TFRecords on the in-process DirectRunner, where `ShuffleToTFRecords` does the
  same with bounded memory."""
  parquet = (exec_properties.get(standard_component_specs.OUTPUT_DATA_FORMAT_KEY)
             == example_gen_pb2.PayloadFormat.FORMAT_PARQUET)
  if parquet or not beam_options.runs_in_one_process(split.pipeline.options):
    return split | 'TFXWriteSplit' >> tfx_write_split.WriteSplit(  # pylint: disable=no-value-for-parameter
        split_dir, '', exec_properties)
  return split | 'ShuffleToTFRecords' >> ShuffleToTFRecords(split_dir)  # pylint: disable=no-value-for-parameter
