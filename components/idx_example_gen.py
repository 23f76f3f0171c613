"""IdxExampleGen: a FileBasedExampleGen for image datasets in the IDX format (MNIST).

IDX (http://yann.lecun.com/exdb/mnist/): a big-endian header (magic number 0x00000803 for a file of
uint8 images, 0x00000801 for uint8 labels; then one uint32 per dimension: the record count, and for
images their rows and columns) followed by the records, one byte per pixel or label. Files may be
gzipped (compression is detected from the name, any Beam file system works).

Each split names its *images* file; its labels file is the one beside it whose name has
`labels-idx1` for `images-idx3` (`labels_path`), plain or `.gz`. The executor checks the pair
before anything is written and stops the run with an `IdxFormatError` naming the file (and, where
one is at fault, the record index, counted from 0) when:

- a magic number is wrong (not an IDX file of uint8 images / labels, or the two swapped);
- a header has the wrong number of dimensions, or a zero dimension;
- a file is truncated (it ends inside record k) or has bytes after its last record;
- the images and labels files hold different numbers of records;
- the split's record range reaches past the end of the files.

Records are then encoded in Beam, in chunks spread over the workers: `image` is the image as PNG
bytes (tf.io.encode_png, lossless), `label` (int64), `height` and `width` (int64). A label outside
0..num_classes-1 makes its record malformed: malformed records are counted and reported like
TextLineExampleGen's malformed rows (`malformed_rows-<split>.json` in the Examples artifact with the
first `MAX_REPORTED`, by file and record index; custom properties `valid_rows_<split>`,
`malformed_rows_<split>`, `first_row_<split>`), and the run fails when more than
`max_malformed_fraction` of a split is malformed (default 0: IDX files are machine-written, so a bad
label means a corrupt or foreign file).
"""

from __future__ import annotations

import gzip
import io
import os
import re
import struct
from typing import Any, Dict, Iterable, Mapping, Optional, Tuple

import apache_beam as beam
import numpy as np
import tensorflow as tf
from absl import logging
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from tfx.components.example_gen.component import FileBasedExampleGen
from tfx.dsl.components.base import executor_spec
from tfx.proto import example_gen_pb2
from tfx.types import standard_component_specs

from components.record_checks import (MALFORMED, NOTICE, VALID, ReportingExecutor,
                                      SpreadOverWorkers,
                                      add_split_check, custom_config, display_pattern,
                                      example_gen_config, match_paths, split_row_range)
from components.text_example_gen import to_example

IMAGES_MAGIC = 0x00000803  # uint8 data, 3 dimensions (count, rows, columns)
LABELS_MAGIC = 0x00000801  # uint8 data, 1 dimension (count)
DEFAULT_NUM_CLASSES = 10
CHUNK_RECORDS = 1000


class IdxFormatError(ValueError):
  """An IDX file is not what it should be (magic, header, length, or disagrees with its pair)."""


def labels_path(images_path: str) -> str:
  """The labels file that goes with an images file: `images-idx3` -> `labels-idx1` in its name.

  Returns the plain or `.gz` name that exists (the plain one when both or neither do, through
  Beam's FileSystems).

  Raises:
    IdxFormatError: the file name does not contain `images-idx3`.
  """
  folder, name = os.path.split(images_path)
  if 'images-idx3' not in name:
    raise IdxFormatError(f'{images_path}: an IDX images file name must contain "images-idx3" '
                         '(its labels file is found by replacing it with "labels-idx1")')
  base = re.sub(r'\.gz$', '', name.replace('images-idx3', 'labels-idx1'))
  candidates = [os.path.join(folder, base), os.path.join(folder, base + '.gz')]
  for candidate in candidates:
    if FileSystems.exists(candidate):
      return candidate
  raise IdxFormatError(f'{images_path}: its labels file is missing: looked at '
                       f'{", ".join(candidates)}')


def read_idx_bytes(path: str) -> bytes:
  """The file's bytes, gunzipped when its name ends in .gz (read through Beam's FileSystems).

  Raises:
    IdxFormatError: a `.gz` file that does not gunzip.
    OSError: the file cannot be read.
  """
  with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
    data = f.read()
  if path.endswith('.gz'):
    try:
      return gzip.GzipFile(fileobj=io.BytesIO(data)).read()
    except (OSError, EOFError) as e:
      raise IdxFormatError(f'{path}: not a readable gzip file ({e})') from e
  return data


def parse_idx(data: bytes, path: str, magic: int) -> np.ndarray:
  """Parses the bytes of a uint8 IDX file.

  Args:
    data: the uncompressed file.
    path: the file name, for messages.
    magic: the expected magic number: IMAGES_MAGIC (3 dimensions) or LABELS_MAGIC (1).

  Returns:
    uint8 array [count] (labels) or [count, rows, columns] (images).

  Raises:
    IdxFormatError: a wrong magic number, a short or bad header, a truncated file (naming the
      record it ends in) or bytes after the last record.
  """
  what = 'images' if magic == IMAGES_MAGIC else 'labels'
  dims, header = read_idx_header(data, path, magic)
  record = int(np.prod(dims[1:], dtype=np.int64)) if len(dims) > 1 else 1
  count = dims[0]
  payload = len(data) - header
  if payload < count * record:
    raise IdxFormatError(
        f'{path}: truncated: the header announces {count} {what} of {record} byte(s) but the '
        f'file ends inside record {payload // record} (index from 0; {payload} data bytes, '
        f'expected {count * record})')
  if payload > count * record:
    raise IdxFormatError(f'{path}: {payload - count * record} bytes after the last of the '
                         f'{count} {what} the header announces')
  return np.frombuffer(data, np.uint8, count * record, header).reshape(dims)


def read_idx_header(data: bytes, path: str, magic: int) -> Tuple[Tuple[int, ...], int]:
  """The header of a uint8 IDX file: (dimensions, offset of the first record in `data`).

  Args:
    data: the uncompressed file (its first 4 + 4 * dimensions bytes suffice).
    path: the file name, for messages.
    magic: the expected magic number: IMAGES_MAGIC (3 dimensions) or LABELS_MAGIC (1).

  Returns:
    ((count,) for labels or (count, rows, columns) for images, 8 or 16).

  Raises:
    IdxFormatError: fewer than 4 bytes, a wrong magic number, a truncated header or a zero
      dimension after the count.
  """
  what = 'images' if magic == IMAGES_MAGIC else 'labels'
  if len(data) < 4:
    raise IdxFormatError(f'{path}: {len(data)} bytes: too short for an IDX header')
  (actual,) = struct.unpack('>I', data[:4])
  if actual != magic:
    hint = {IMAGES_MAGIC: ' (an images file)', LABELS_MAGIC: ' (a labels file)'}.get(actual, '')
    raise IdxFormatError(f'{path}: wrong magic number 0x{actual:08X}{hint}: expected '
                         f'0x{magic:08X}, an IDX file of uint8 {what}')
  ndim = magic & 0xFF
  header = 4 + 4 * ndim
  if len(data) < header:
    raise IdxFormatError(f'{path}: truncated header: {len(data)} bytes, expected {header}')
  dims = struct.unpack(f'>{ndim}I', data[4:header])
  if 0 in dims[1:]:
    raise IdxFormatError(f'{path}: a zero dimension in the header {dims}')
  return tuple(dims), header


def read_idx_pair(images_file: str, labels_file: str, first_row: int = 0,
                  num_rows: Optional[int] = None) -> Tuple[np.ndarray, np.ndarray]:
  """Reads and checks an images / labels IDX pair; returns records first_row.. of both.

  Returns:
    (uint8 [n, rows, columns] images, uint8 [n] labels), n = num_rows or the rest of the files.

  Raises:
    IdxFormatError: see `parse_idx`; the files hold different numbers of records; the range
      reaches past their end.
  """
  images = parse_idx(read_idx_bytes(images_file), images_file, IMAGES_MAGIC)
  labels = parse_idx(read_idx_bytes(labels_file), labels_file, LABELS_MAGIC)
  if len(images) != len(labels):
    raise IdxFormatError(f'count mismatch: {images_file} holds {len(images)} images but '
                         f'{labels_file} holds {len(labels)} labels')
  end = len(images) if num_rows is None else first_row + num_rows
  if first_row >= len(images) or end > len(images):
    raise IdxFormatError(
        f'{images_file}: records {first_row} to {end - 1} asked for, but the file holds '
        f'{len(images)} (0 to {len(images) - 1})')
  return images[first_row:end], labels[first_row:end]


def _read_chunks(files: Tuple[str, str], first_row: int, num_rows: Optional[int],
                 chunk_records: int = CHUNK_RECORDS) -> Iterable[Tuple[str, str, int, np.ndarray,
                                                                       np.ndarray]]:
  """Yields (images file, labels file, index of the chunk's first record, images, labels)."""
  images_file, labels_file = files
  images, labels = read_idx_pair(images_file, labels_file, first_row, num_rows)
  for start in range(0, len(images), chunk_records):
    yield (images_file, labels_file, first_row + start, images[start:start + chunk_records],
           labels[start:start + chunk_records])


class _EncodeRecords(beam.DoFn):
  """Chunks of IDX records -> tf.Examples (PNG `image`, `label`, `height`, `width`).

  Outputs: the examples; `malformed`: (labels file, record index, reason, '') per bad record;
  `valid`: the number of examples of each chunk.
  """

  def __init__(self, num_classes: int):
    self._num_classes = num_classes

  def process(self, element):
    _, labels_file, first, images, labels = element
    valid = 0
    height, width = images.shape[1:]
    for index, (image, label) in enumerate(zip(images, labels), start=first):
      if label >= self._num_classes:
        yield beam.pvalue.TaggedOutput(MALFORMED, (
            labels_file, index, f'label {int(label)} is not in 0-{self._num_classes - 1}', ''))
        continue
      png = tf.io.encode_png(image[:, :, np.newaxis]).numpy()
      yield to_example({'image': png, 'label': int(label), 'height': int(height),
                        'width': int(width)})
      valid += 1
    yield beam.pvalue.TaggedOutput(VALID, valid)


@beam.ptransform_fn
@beam.typehints.with_input_types(beam.Pipeline)
@beam.typehints.with_output_types(tf.train.Example)
def _IdxToExample(pipeline: beam.Pipeline, exec_properties: Dict[str, Any], split_pattern: str,
                  split: Optional[str] = None) -> beam.pvalue.PCollection:
  """Reads the IDX images file matching `split_pattern` (and its labels file) into tf.Examples.

  The files are read and checked here, while the Beam graph is built, so that a format error
  stops the run at once with its own message.
  """
  config = custom_config(exec_properties)
  input_base = exec_properties[standard_component_specs.INPUT_BASE_KEY]
  pattern = os.path.join(input_base, split_pattern)
  split = split or split_pattern
  paths = match_paths(pattern)
  if len(paths) != 1:
    raise FileNotFoundError(f'split {split!r}: {display_pattern(pattern)} must match one IDX '
                            f'images file, matches {len(paths)}'
                            + (f': {", ".join(paths)}' if paths else ''))
  files = (paths[0], labels_path(paths[0]))
  first_row, num_rows = split_row_range(config, split)
  read_idx_pair(*files, first_row, num_rows)  # fail fast, before any Beam work
  logging.info('Split %s: reading %s and %s, records %d to %s', split, files[0], files[1],
               first_row, 'the end' if num_rows is None else first_row + num_rows - 1)
  encoded = (pipeline
             | 'Files' >> beam.Create([files])
             | 'ReadChunks' >> beam.FlatMap(_read_chunks, first_row=first_row, num_rows=num_rows)
             | 'Spread' >> SpreadOverWorkers()
             | 'Encode' >> beam.ParDo(_EncodeRecords(
                 int(config.get('num_classes', DEFAULT_NUM_CLASSES)))).with_outputs(
                     MALFORMED, VALID, NOTICE, main='examples'))
  add_split_check(pipeline, encoded, exec_properties, split, source=files[0], files=files,
                  row_range=(first_row, num_rows), unit='record')
  return encoded.examples


class Executor(ReportingExecutor):
  """Beam executor of IdxExampleGen; see the module docstring."""

  def GetInputSourceToExamplePTransform(self) -> beam.PTransform:
    return _IdxToExample


class IdxExampleGen(FileBasedExampleGen):
  """ExampleGen for IDX image / label pairs: one images file per split, its labels beside it.

  Example:
    IdxExampleGen(input_base='/data/mnist',
                  splits={'train': 't10k-images-idx3-ubyte.gz',
                          'eval': 't10k-images-idx3-ubyte.gz'},
                  row_ranges={'train': (0, 8000), 'eval': (8000, 2000)})

  Outputs `examples`: standard Examples (gzipped TFRecords of tf.Example with `image` PNG bytes,
  `label`, `height`, `width`), one split per entry of `splits`, with the custom properties and
  reports described in the module docstring.
  """

  EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(Executor)

  def __init__(self, input_base: str, splits: Mapping[str, str],
               max_malformed_fraction: float = 0.0,
               row_ranges: Optional[Mapping[str, Tuple[int, Optional[int]]]] = None,
               num_classes: int = DEFAULT_NUM_CLASSES):
    """Args:
      input_base: folder holding the IDX files (any Beam file system).
      splits: split name -> images file name relative to `input_base`, plain or `.gz`.
      max_malformed_fraction: the run fails when more than this fraction of a split's records has
        a bad label (0 <= value < 1; 0 fails on the first one).
      row_ranges: split name -> (first record, number of records or None for the rest), records
        counted from 0. Splits not listed read every record.
      num_classes: labels must be in 0..num_classes-1.

    Raises:
      ValueError: `splits` is empty, `max_malformed_fraction` is out of range, or a row range
        names an unknown split or has a negative start or a non-positive length.
    """
    config = example_gen_config(splits, max_malformed_fraction, row_ranges,
                                num_classes=num_classes)
    super().__init__(
        input_base=input_base,
        input_config=example_gen_pb2.Input(splits=[
            example_gen_pb2.Input.Split(name=name, pattern=pattern)
            for name, pattern in splits.items()]),
        output_config=example_gen_pb2.Output(),  # the input splits, as they are
        custom_config=config)
