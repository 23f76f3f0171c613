"""`official-tfx predict`: batch prediction on raw files (pipelines/predict.py).

Unit tests of the parts (parser lookup, model and input resolution, TFMA's accuracy rule, the
atomic writer, one-line errors), and end to end on census: a small real run, then predictions on
all of adult.test whose accuracy is the run's TFMA accuracy.
"""

from __future__ import annotations

import csv
import glob
import gzip
import json
import os

import pytest

from pipelines import predict
from pipelines import runner
from pipelines import spec as spec_lib
from pipelines.factory import RunConfig, RunInputs
from preprocessing import datasets
from tests import helpers

ADULT_TEST_ROWS = 16281  # adult.test's lines less its `|1x3 Cross validator` line and last blank


def test_line_parser_comes_from_the_spec():
  assert predict.line_parser(spec_lib.get('census')) == 'preprocessing.census.parse_line'
  assert predict.line_parser(spec_lib.get('higgs')) == 'preprocessing.higgs.parse_line'
  assert predict.line_parser(spec_lib.get('mrpc')) == 'preprocessing.mrpc.parse_line'
  with pytest.raises(predict.PredictError, match="line formats only.*mnist's raw format"):
    predict.line_parser(spec_lib.get('mnist'))
  with pytest.raises(predict.PredictError, match='groups of rows'):
    predict.line_parser(spec_lib.get('movielens'))


def test_accuracy_counts_a_probability_of_one_half_as_positive_like_tfma():
  # model_fns.binary_metrics: histogram buckets closed on the left, so 0.5 is class 1.
  assert predict.is_correct([0.5], 1) and not predict.is_correct([0.5], 0)
  assert predict.is_correct([0.4999], 0) and not predict.is_correct([0.4999], 1)
  assert predict.is_correct([0.1, 0.7, 0.2], 1) and not predict.is_correct([0.1, 0.7, 0.2], 2)


def test_model_resolution_takes_the_newest_version_and_names_what_is_missing(tmp_path):
  serving = tmp_path / 'out' / 'serving_model'
  for version in ('9', '10', 'tmp'):
    (serving / version).mkdir(parents=True)
    (serving / version / 'saved_model.pb').write_bytes(b'')
  assert predict.resolve_model('census', str(tmp_path / 'out'), None) == str(serving / '10')
  assert predict.resolve_model('census', None, str(serving / '9')) == str(serving / '9')
  assert predict.resolve_model('census', None, str(serving)) == str(serving / '10')
  with pytest.raises(predict.PredictError, match='no pushed model under .*empty/serving_model'):
    predict.resolve_model('census', str(tmp_path / 'empty'), None)
  with pytest.raises(predict.PredictError, match='--model_dir .*: no SavedModel there'):
    predict.resolve_model('census', None, str(tmp_path))


def test_input_resolution(tmp_path):
  (tmp_path / 'a [1].txt').write_text('x\n')
  (tmp_path / 'b.txt').write_text('x\n')
  assert predict.input_paths(str(tmp_path / 'a [1].txt')) == [str(tmp_path / 'a [1].txt')]
  assert predict.input_paths(str(tmp_path / '*.txt')) == [str(tmp_path / 'a [1].txt'),
                                                          str(tmp_path / 'b.txt')]
  with pytest.raises(predict.PredictError, match=r'--input: the file .*nope\.txt does not exist'):
    predict.input_paths(str(tmp_path / 'nope.txt'))
  with pytest.raises(predict.PredictError, match=r'--input: no file matches .*\*\.csv'):
    predict.input_paths(str(tmp_path / '*.csv'))
  with pytest.raises(predict.PredictError, match=r'--input .* is a folder: give a file or a glob'):
    predict.input_paths(str(tmp_path))


def test_output_is_replaced_atomically_in_either_format(tmp_path):
  records = [{'file': 'f', 'line': 2, 'class_id': 1, 'probabilities': [0.75], 'label': 1},
             {'file': 'f', 'line': 3, 'error': 'field age: bad', 'text': 'x, y'}]
  out = tmp_path / 'p.csv'
  out.write_text('old\n')
  predict.write_output(records, str(out), 'csv')
  assert os.listdir(tmp_path) == ['p.csv']  # no temporary file left
  rows = list(csv.DictReader(out.open()))
  assert rows[0] == {'file': 'f', 'line': '2', 'class_id': '1', 'probability': '0.75',
                     'label': '1', 'error': '', 'text': ''}
  assert rows[1]['error'] == 'field age: bad' and rows[1]['class_id'] == ''
  predict.write_output(records, str(tmp_path / 'p.jsonl'), 'jsonl')
  assert [json.loads(l) for l in (tmp_path / 'p.jsonl').read_text().splitlines()] == records


def test_cli_errors_are_one_line(tmp_path):
  result = helpers.run_cli('predict', 'census', '--output', str(tmp_path / 'p.jsonl'))
  assert result.returncode == 1
  assert result.stderr.strip().splitlines()[0] == (
      'official-tfx: predict needs --input FILE_OR_PATTERN and --output FILE')
  result = helpers.run_cli('predict', 'census', '--input', str(tmp_path / 'missing.data'),
                           '--output', str(tmp_path / 'p.jsonl'))
  assert result.returncode == 1
  assert result.stderr.strip() == (f'official-tfx: predict failed: --input: the file '
                                   f'{tmp_path / "missing.data"} does not exist')
  (tmp_path / 'adult.test').write_text('39, State-gov, 77516\n')
  result = helpers.run_cli('predict', 'census', '--input', str(tmp_path / 'adult.test'),
                           '--output', str(tmp_path / 'p.jsonl'),
                           '--output_dir', str(tmp_path / 'no_run'))
  assert result.returncode == 1
  assert 'no pushed model under' in result.stderr and len(result.stderr.strip().splitlines()) == 1
  assert not os.path.exists(tmp_path / 'p.jsonl')


def _echo_translator(path: str) -> str:
  """A stand-in translation SavedModel with wmt's serving interface: `serving_default` takes
  serialized tf.Examples (`examples`, string [batch]) with the feature `inputs` and returns
  `outputs` (the sentence upper-cased, string [batch]) and `scores` (its length, float32
  [batch])."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel

  class Echo(tf.Module):

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name='examples')])
    def serve(self, examples):
      text = tf.io.parse_example(examples, {'inputs': tf.io.FixedLenFeature([], tf.string)})
      upper = tf.strings.upper(text['inputs'])
      return {'outputs': upper, 'scores': tf.cast(tf.strings.length(upper), tf.float32)}

  module = Echo()
  tf.saved_model.save(module, path, signatures={'serving_default': module.serve})
  return path


def test_wmt_scores_english_lines_in_order_with_every_output(tmp_path):
  model = _echo_translator(str(tmp_path / 'model'))
  english = tmp_path / 'newstest.en'
  english.write_text('Hello world\n\n  The cat sat.\n'
                     + ''.join(f'line {i}\n' for i in range(50)))
  out = tmp_path / 'de.jsonl'
  summary = predict.predict('wmt', str(english), str(out), model_dir=model)
  assert (summary.predictions, summary.malformed, summary.accuracy) == (52, 0, None)
  records = [json.loads(line) for line in out.read_text().splitlines()]
  assert records[:2] == [
      {'file': str(english), 'line': 1, 'outputs': 'HELLO WORLD', 'scores': 11.0},
      {'file': str(english), 'line': 3, 'outputs': 'THE CAT SAT.', 'scores': 12.0}]
  assert [r['outputs'] for r in records[2:]] == [f'LINE {i}' for i in range(50)]
  assert sorted(os.listdir(tmp_path)) == ['de.jsonl', 'model', 'newstest.en']  # no shards left


# End to end on census -----------------------------------------------------------------------------


@pytest.fixture(scope='module')
def census_model(tmp_path_factory, data_root):
  """A small census run (200 steps on 3,000 training rows) evaluated on all of adult.test;
  returns (run summary, output dir, SavedModel): the pushed model, or the Trainer's when the
  run was not blessed at that size."""
  files = datasets.resolve_splits(spec_lib.get('census').dataset, data_root=data_root)
  config = RunConfig(output_dir=str(tmp_path_factory.mktemp('census_predict')), train_steps=200)
  summary = runner.run(spec_lib.get('census'), config,
                       RunInputs(split_files=files, row_ranges={'train': (0, 3000)}),
                       progress=False)
  assert summary['error'] is None
  assert summary['metrics']['example_count'] == ADULT_TEST_ROWS
  model = summary['pushed_model'] or glob.glob(os.path.join(
      config.output_dir, 'pipeline_root', 'Trainer', 'model', '*', 'Format-Serving'))[-1]
  return summary, config.output_dir, model


@pytest.mark.e2e
@pytest.mark.slow  # runs census of its own: `-m slow`, to keep the default run within 30 min
def test_census_predictions_on_adult_test_match_the_runs_tfma_accuracy(census_model, data_root,
                                                                       tmp_path):
  summary, output_dir, model = census_model
  out = tmp_path / 'predictions.jsonl'
  which = (['--output_dir', output_dir] if summary['pushed_model'] else ['--model_dir', model])
  result = helpers.run_cli('predict', 'census', '--input',
                           os.path.join(data_root, 'census', 'adult.test.gz'), '--output',
                           str(out), '--with_labels', *which)
  assert result.returncode == 0, result.stderr
  assert f'accuracy {summary["metrics"]["accuracy"]:.4f} (' in result.stdout
  assert f'Predictions: 16,281 in {out}' in result.stdout
  assert 'malformed' not in result.stdout
  records = [json.loads(line) for line in out.read_text().splitlines()]
  assert len(records) == ADULT_TEST_ROWS
  assert [r['line'] for r in records] == list(range(2, ADULT_TEST_ROWS + 2))  # input order
  first = records[0]
  assert set(first) == {'file', 'line', 'class_id', 'probabilities', 'label'}
  assert first['file'] == os.path.join(data_root, 'census', 'adult.test.gz')
  assert all(r['class_id'] == int(r['probabilities'][0] > 0.5) for r in records)
  assert {r['label'] for r in records} == {0, 1}
  # The same accuracy as the model served directly (tests/helpers.py, TF Serving's way).
  with gzip.open(os.path.join(data_root, 'census', 'adult.test.gz'), 'rt') as f:
    lines = f.read().split('\n')
  correct = sum(predict.is_correct(r['probabilities'], r['label']) for r in records)
  assert correct / len(records) == pytest.approx(
      helpers.census_serving_accuracy(model, lines), abs=1e-4)


@pytest.mark.e2e
@pytest.mark.slow  # runs census of its own: `-m slow`, to keep the default run within 30 min
def test_census_malformed_rows_are_reported_and_kept_in_place(census_model, adult_lines,
                                                             tmp_path):
  summary, output_dir, model = census_model
  raw = tmp_path / 'mixed.data'
  good = adult_lines['eval'][1:4]
  bad = good[1].replace(', Private,', ', Private, extra,', 1)
  raw.write_text('\n'.join(['age, workclass, fnlwgt, education, education-num, marital-status, '
                            'occupation, relationship, race, sex, capital-gain, capital-loss, '
                            'hours-per-week, native-country, income',
                            good[0], bad, good[2], '']))
  out = tmp_path / 'p.csv'
  result = helpers.run_cli('predict', 'census', '--input', str(raw), '--output', str(out),
                           '--output_format=csv', '--model_dir', model)
  assert result.returncode == 0, result.stderr
  assert '1 malformed row not scored' in result.stdout
  assert f'{raw}:3: ' in result.stdout
  assert f'{raw}:1: header line (column names) skipped' in result.stdout
  assert 'Predictions: 2 in' in result.stdout and 'accuracy' not in result.stdout
  rows = list(csv.DictReader(out.open()))
  assert [(r['line'], bool(r['error'])) for r in rows] == [('2', False), ('3', True),
                                                           ('4', False)]
  assert 'label' not in rows[0]  # only with --with_labels
  assert 0 <= float(rows[0]['probability']) <= 1
