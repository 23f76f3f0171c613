"""TextLineExampleGen's executor on real census lines: examples written, malformed rows reported."""

import gzip
import json
import os

import apache_beam as beam
import pytest
import tensorflow as tf
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing import util as beam_testing
from tfx_bsl.coders import example_coder

from beam_runner import options as beam_options
from components import record_checks, text_example_gen
from tests import helpers

BAD_LINES = ['39, State-gov, 77516',  # too few fields
             'x, State-gov, 77516, Bachelors, 13, Never-married, Adm-clerical, Not-in-family, '
             'White, Male, 2174, 0, 40, United-States, <=50K']  # non-integer age


def _run_executor(tmp_path, train_lines, eval_lines, max_fraction):
  data = tmp_path / 'data'
  data.mkdir()
  with gzip.open(data / 'train.txt.gz', 'wt') as f:
    f.write('\n'.join(train_lines) + '\n')
  (data / 'eval.txt').write_text('\n'.join(eval_lines) + '\n')
  return helpers.run_example_gen(str(tmp_path), str(data),
                                 {'train': 'train.txt.gz', 'eval': 'eval.txt'},
                                 'preprocessing.census.parse_line', max_fraction)


_read = helpers.read_examples


def test_writes_typed_examples_and_reports_malformed_rows(tmp_path, adult_lines):
  train = adult_lines['train'][:3000] + BAD_LINES  # 2 of 3002 = 0.07% < 0.1%
  examples = _run_executor(tmp_path, train, adult_lines['eval'][:1001], 0.001)
  train_examples = _read(examples.uri, 'train')
  assert len(train_examples) == 3000
  assert len(_read(examples.uri, 'eval')) == 1000  # the junk first line is not a row
  # Written by split_writer in one process: one shuffled file a small split, no temporary left.
  assert os.listdir(os.path.join(examples.uri, 'Split-train')) == ['data_tfrecord-00000-of-00001.gz']
  lines = [e.features.feature['fnlwgt'].int64_list.value[0] for e in train_examples]
  assert lines[:5] != [77516, 83311, 215646, 234721, 338409]  # adult.data's first five rows
  sample = next(e for e in train_examples
                if e.features.feature['fnlwgt'].int64_list.value == [77516])  # line 1
  feature = sample.features.feature
  assert feature['age'].int64_list.value == [39]
  assert feature['workclass'].bytes_list.value == [b'State-gov']
  assert feature['income_bracket'].int64_list.value == [0]
  with open(os.path.join(examples.uri, 'malformed_rows-train.json')) as f:
    report = json.load(f)
  assert report['malformed_rows'] == 2 and report['valid_rows'] == 3000
  assert [r['line'] for r in report['first_malformed']] == [3001, 3002]
  assert 'expected 15 comma-separated fields, found 3' in report['first_malformed'][0]['reason']
  assert examples.get_int_custom_property('malformed_rows_train') == 2
  assert examples.get_int_custom_property('malformed_rows_eval') == 0


def test_missing_values_are_missing_features(tmp_path, adult_lines):
  """A `?` is a feature without values: absent, or empty where other rows of its batch have one,
  and read as missing by TFX's decoder and by tf.io.parse_example."""
  missing = ('54, ?, 180211, Some-college, 10, Married-civ-spouse, ?, Husband, Asian-Pac-Islander, '
             'Male, 0, 0, 60, South, >50K')
  complete = adult_lines['train'][0]
  examples = _run_executor(tmp_path, [missing, complete], [missing], 0.001)
  for split, expected_rows in (('train', 2), ('eval', 1)):
    written = _read(examples.uri, split)
    records = [e.SerializeToString() for e in written]
    assert len(records) == expected_rows
    (row,) = [e for e in written if e.features.feature['age'].int64_list.value == [54]]
    feature = row.features.feature
    assert all(feature[k].WhichOneof('kind') is None for k in ('workclass', 'occupation')
               if k in feature)
    assert feature['income_bracket'].int64_list.value == [1]
    batch = example_coder.ExamplesToRecordBatchDecoder().DecodeBatch(records)
    workclass = (batch.column('workclass').to_pylist() if 'workclass' in batch.schema.names
                 else [None] * batch.num_rows)
    assert [w for a, w in zip(batch.column('age').to_pylist(), workclass) if a == [54]] == [None]
    parsed = tf.io.parse_example(records, {'workclass': tf.io.VarLenFeature(tf.string),
                                           'age': tf.io.FixedLenFeature([], tf.int64)})
    with_values = set(parsed['workclass'].indices[:, 0].numpy())
    assert [i for i, a in enumerate(parsed['age'].numpy()) if a == 54 and i in with_values] == []


def test_fails_over_the_threshold_naming_file_and_lines(tmp_path, adult_lines):
  train = adult_lines['train'][:100] + BAD_LINES  # 2 of 102 ~ 2%
  with pytest.raises(Exception) as e:
    _run_executor(tmp_path, train, adult_lines['eval'][:50], 0.01)
  message = str(e.value)
  assert 'MalformedRowsError' in message or '2 of 102 rows are malformed' in message
  assert '2 of 102 rows are malformed' in message
  assert 'train.txt.gz:101' in message and 'train.txt.gz:102' in message


def test_batch_encoding_decodes_like_to_example_and_rejects_mixed_kinds():
  rows = [{'i': 1, 's': 'é', 'f': [1.5, 2.0], 'b': b'\x00\xff', 'flag': True, 'none': None},
          {'i': None, 's': 'x', 'f': [], 'b': b'z', 'flag': False, 'none': None},
          {'i': [3, 4], 's': ['a', 'b'], 'f': 0.25, 'b': None, 'flag': True}]
  batch = text_example_gen.to_serialized_examples(rows)
  one_by_one = [text_example_gen.to_example(r).SerializeToString() for r in rows]
  decoder = example_coder.ExamplesToRecordBatchDecoder()
  assert decoder.DecodeBatch(batch).equals(decoder.DecodeBatch(one_by_one))
  assert text_example_gen.to_serialized_examples([{}, {'a': None}]) == [b'', b'']
  # One value a field (a CSV row), the columnar path: None, bools, str beside bytes.
  scalars = [{'i': 1, 's': 'é', 'f': 1.5, 'flag': True, 'none': None},
             {'i': None, 's': b'x', 'f': 2.0, 'flag': False},
             {'i': -3, 's': None, 'f': None, 'flag': None, 'none': None}]
  assert decoder.DecodeBatch(text_example_gen.to_serialized_examples(scalars)).equals(
      decoder.DecodeBatch([text_example_gen.to_example(r).SerializeToString() for r in scalars]))
  with pytest.raises(ValueError, match=r'feature a: values of more than one kind.*float'):
    text_example_gen.to_serialized_examples([{'a': 1}, {'a': 2.5}])  # Arrow would truncate 2.5
  with pytest.raises(ValueError, match='feature a: values of more than one kind'):
    text_example_gen.to_serialized_examples([{'a': 'x'}, {'a': 3}])
  with pytest.raises(ValueError, match='feature a: unsupported value type object'):
    text_example_gen.to_serialized_examples([{'a': object()}])


@pytest.mark.parametrize('args, in_one_process', [
    ([], True),  # the embedded default: TFX's Beam executors get no arguments
    (['--runner=DirectRunner'], True),
    (['--runner=direct', '--direct_num_workers=1', '--direct_running_mode=in_memory'], True),
    (['--runner=DirectRunner', '--direct_num_workers=2',
      '--direct_running_mode=multi_processing'], False),
    (['--direct_running_mode=multi_threading'], False),
    (['--runner=PortableRunner', '--job_endpoint=localhost:8099'], False),
    (['--runner=FlinkRunner'], False),
    (['--runner=DataflowRunner'], False),
])
def test_chunks_are_spread_over_workers_unless_the_runner_is_one_in_process_worker(
    args, in_one_process):
  options = PipelineOptions(args)
  assert beam_options.runs_in_one_process(options) is in_one_process
  pipeline = beam.Pipeline(runner='DirectRunner', options=options)
  spread = pipeline | beam.Create([b'a', b'b', b'c']) | 'Spread' >> record_checks.SpreadOverWorkers()
  names = [t.unique_name for t in pipeline.to_runner_api().components.transforms.values()]
  # Where there are other workers, the chunks go through a Reshuffle; in one process nothing
  # holds them between reading and parsing.
  assert any('Spread/Reshuffle' in n for n in names) is not in_one_process, names
  if in_one_process:
    beam_testing.assert_that(spread, beam_testing.equal_to([b'a', b'b', b'c']))
    pipeline.run().wait_until_finish()
