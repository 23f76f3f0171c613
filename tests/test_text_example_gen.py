"""TextLineExampleGen's executor on real census lines: examples written, malformed rows reported."""

import gzip
import json
import os

import pytest

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


def test_missing_values_are_left_out_of_the_example(tmp_path, adult_lines):
  line = ('54, ?, 180211, Some-college, 10, Married-civ-spouse, ?, Husband, Asian-Pac-Islander, '
          'Male, 0, 0, 60, South, >50K')
  examples = _run_executor(tmp_path, [line], [line], 0.001)
  feature = _read(examples.uri, 'train')[0].features.feature
  assert 'workclass' not in feature and 'occupation' not in feature
  assert feature['income_bracket'].int64_list.value == [1]


def test_fails_over_the_threshold_naming_file_and_lines(tmp_path, adult_lines):
  train = adult_lines['train'][:100] + BAD_LINES  # 2 of 102 ~ 2%
  with pytest.raises(Exception) as e:
    _run_executor(tmp_path, train, adult_lines['eval'][:50], 0.01)
  message = str(e.value)
  assert 'MalformedRowsError' in message or '2 of 102 rows are malformed' in message
  assert '2 of 102 rows are malformed' in message
  assert 'train.txt.gz:101' in message and 'train.txt.gz:102' in message
