"""components.split_writer: an ExampleGen split written shuffled, complete, with bounded memory on
the in-process runner, and through TFX's own writer where there are workers."""

import os
import re

import apache_beam as beam
import pytest
import tensorflow as tf
from apache_beam.options.pipeline_options import PipelineOptions

from components import split_writer


def _example(label: int, index: int) -> tf.train.Example:
  return tf.train.Example(features=tf.train.Features(feature={
      'label': tf.train.Feature(int64_list=tf.train.Int64List(value=[label])),
      'index': tf.train.Feature(int64_list=tf.train.Int64List(value=[index])),
      'pad': tf.train.Feature(bytes_list=tf.train.BytesList(value=[b'x' * 100]))}))


def _sorted_by_label(count: int = 3000, labels: int = 10):
  """`count` examples in label order, the way a class-per-folder image set is read."""
  per_label = count // labels
  return [_example(i // per_label, i) for i in range(count)]


def _write(records, split_dir, **kwargs):
  with beam.Pipeline() as pipeline:
    _ = (pipeline | beam.Create(records, reshuffle=False)
         | split_writer.ShuffleToTFRecords(split_dir, **kwargs))  # pylint: disable=no-value-for-parameter


def _read(split_dir):
  files = sorted(tf.io.gfile.glob(os.path.join(split_dir, '*')))
  examples = [tf.train.Example.FromString(r.numpy())
              for r in tf.data.TFRecordDataset(files, compression_type='GZIP')]
  return files, examples


def _field(examples, key):
  return [e.features.feature[key].int64_list.value[0] for e in examples]


@pytest.mark.parametrize('buckets,max_bucket_bytes', [
    (8, 1 << 20),  # every bucket small enough to hold
    (2, 20_000),   # buckets of ~195 kB, scattered again before they are held
])
def test_writes_every_record_once_in_a_shuffled_order(tmp_path, buckets, max_bucket_bytes):
  split_dir = str(tmp_path / 'Split-train')
  records = _sorted_by_label()
  _write(records, split_dir, buckets=buckets, max_bucket_bytes=max_bucket_bytes)
  files, examples = _read(split_dir)
  names = [os.path.basename(f) for f in files]
  assert all(re.fullmatch(rf'data_tfrecord-\d{{5}}-of-{len(files):05d}\.gz', n) for n in names), names
  # A small split is one file; a larger one closes a shard at each max_bucket_bytes (~390 kB here).
  assert len(files) == 1 if max_bucket_bytes > 1_000_000 else len(files) > 10
  indices = _field(examples, 'index')
  assert sorted(indices) == list(range(len(records)))
  assert indices != sorted(indices)
  # Sorted input comes out mixed: the first tenth holds every label, in shares near a tenth each.
  first = _field(examples[:300], 'label')
  assert set(first) == set(range(10))
  assert max(first.count(label) for label in range(10)) < 60


def test_the_same_input_gives_the_same_files(tmp_path):
  records = [r.SerializeToString() for r in _sorted_by_label(1000)]  # bytes are written as they are
  a, b = str(tmp_path / 'a' / 'Split-train'), str(tmp_path / 'b' / 'Split-train')
  _write(records, a, buckets=4)
  _write(records, b, buckets=4)
  files_a, examples_a = _read(a)
  files_b, examples_b = _read(b)
  assert [os.path.basename(f) for f in files_a] == [os.path.basename(f) for f in files_b]
  assert _field(examples_a, 'index') == _field(examples_b, 'index')


def test_an_empty_split_is_one_empty_shard(tmp_path):
  split_dir = str(tmp_path / 'Split-eval')
  _write([], split_dir)
  files, examples = _read(split_dir)
  assert [os.path.basename(f) for f in files] == ['data_tfrecord-00000-of-00001.gz']
  assert examples == []


def test_a_temporary_file_cut_short_is_named(tmp_path):
  path = tmp_path / 'bucket'
  path.write_bytes(split_writer._LENGTH.pack(10) + b'abc')  # pylint: disable=protected-access
  with pytest.raises(ValueError, match=rf'{re.escape(str(path))}: ends inside a record'):
    list(split_writer._read_records(str(path)))  # pylint: disable=protected-access


def test_bad_settings_are_refused(tmp_path):
  with pytest.raises(ValueError, match='buckets must be >= 1'):
    _write([], str(tmp_path), buckets=0)


@pytest.mark.parametrize('args,tfx_writer', [
    ([], False),
    (['--direct_num_workers=1'], False),
    (['--direct_running_mode=multi_processing', '--direct_num_workers=2'], True),
    (['--runner=DataflowRunner'], True),
])
def test_tfx_writer_where_there_are_workers_bounded_shuffle_in_one_process(tmp_path, args,
                                                                            tfx_writer):
  pipeline = beam.Pipeline(runner='DirectRunner', options=PipelineOptions(args))
  _ = (pipeline | beam.Create([b'a'])
       | 'WriteSplit' >> split_writer.WriteSplit(str(tmp_path), {}))  # pylint: disable=no-value-for-parameter
  names = [t.unique_name for t in pipeline.to_runner_api().components.transforms.values()]
  assert any('TFXWriteSplit/Shuffle' in n for n in names) is tfx_writer, names
  assert any('ShuffleToTFRecords/Scatter' in n for n in names) is not tfx_writer, names
