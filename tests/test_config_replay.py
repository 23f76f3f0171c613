"""`--config`: a run's resolved settings, recorded in its run_summary.json, replayed exactly; a
YAML or JSON file of flag values; flags on the command line override either; bad files are
one-line usage errors naming the file and the key. No pipeline runs here (the census replay of a
real run is in tests/test_progress.py)."""

import json

import pytest
from absl import app, flags

from pipelines import factory, runner, settings
from pipelines import spec as spec_lib

FLAGS = flags.FLAGS
CENSUS_ROW = ('39, State-gov, 77516, Bachelors, 13, Never-married, Adm-clerical, Not-in-family, '
              'White, Male, 2174, 0, 40, United-States, <=50K')


@pytest.fixture
def parse():
  """parse(*args): absl parses `official-tfx ARGS` into FLAGS, reset after the test."""
  def parse_args(*args):
    FLAGS.unparse_flags()
    FLAGS(['official-tfx', *args])
  yield parse_args
  FLAGS.unparse_flags()


@pytest.fixture
def census_files(tmp_path):
  """Two small raw census files in the UCI format (the real data is not needed to resolve)."""
  paths = []
  for name in ('train.csv', 'eval.csv'):
    path = tmp_path / name
    path.write_text((CENSUS_ROW + '\n') * 40)
    paths.append(str(path))
  return paths


def _summary_of(config, inputs, path):
  """What the runner writes about a run's settings and inputs, as a run_summary.json at `path`."""
  spec = spec_lib.get('census')
  resolved = runner.settings(spec, config, factory.trainer_config(spec, config))
  path.write_text(json.dumps({'model': 'census', 'stages': [], 'config': resolved,
                              'inputs': inputs.to_json()}))
  return resolved


def _settings_without_places(resolved):
  return {k: v for k, v in resolved.items()
          if k not in ('output_dir', 'serving_model_dir', 'command_line')}


def test_a_summary_replays_to_the_same_resolved_settings(parse, tmp_path, census_files):
  train, eval_ = census_files
  parse('--output_dir', str(tmp_path / 'first'), f'--train_data={train}', f'--eval_data={eval_}',
        '--model_type=wide', '--train_count=30', '--eval_start=5', '--learning_rate=0.01',
        '--hparams={"hidden_units": [16, 8]}', '--max_malformed_fraction=0.2')
  _, first, first_inputs = settings.build_run('census')
  assert first.hparams['learning_rate'] == 0.01 and first.hparams['hidden_units'] == [16, 8]
  assert first.train_steps == spec_lib.get('census').train_steps  # every default resolved
  assert first_inputs.row_ranges == {'train': (0, 30), 'eval': (5, None)}
  recorded = _summary_of(first, first_inputs, tmp_path / 'run_summary.json')

  parse('--output_dir', str(tmp_path / 'second'), f'--config={tmp_path / "run_summary.json"}')
  applied = settings.apply_config_file('census')
  assert applied['model_type'] == 'wide' and applied['train_count'] == 30
  _, second, inputs = settings.build_run('census')
  assert inputs.split_files == {'train': train, 'eval': eval_}
  assert inputs.row_ranges == first_inputs.row_ranges
  assert inputs.input_digests == first_inputs.input_digests and len(inputs.input_digests) == 2
  replayed = _summary_of(second, inputs, tmp_path / 'replayed.json')
  assert _settings_without_places(replayed) == _settings_without_places(recorded)
  assert second.output_dir == str(tmp_path / 'second')
  # The same settings build the same Trainer, so a replay into the first run's output directory
  # is served from TFX's cache.
  spec = spec_lib.get('census')
  assert (factory.trainer_config(spec, second).to_custom_config()
          == factory.trainer_config(spec, first).to_custom_config())


def test_the_command_line_overrides_the_file(parse, tmp_path, census_files):
  train, eval_ = census_files
  parse('--output_dir', str(tmp_path / 'first'), f'--train_data={train}', f'--eval_data={eval_}',
        '--train_steps=40', '--batch_size=16')
  _, first, first_inputs = settings.build_run('census')
  _summary_of(first, first_inputs, tmp_path / 'run_summary.json')
  parse('--output_dir', str(tmp_path / 'second'), f'--config={tmp_path / "run_summary.json"}',
        '--train_steps=7', '--learning_rate=0.5')
  applied = settings.apply_config_file('census')
  assert 'train_steps' not in applied and applied['batch_size'] == 16
  _, second, _ = settings.build_run('census')
  assert (second.train_steps, second.batch_size) == (7, 16)
  assert second.hparams['learning_rate'] == 0.5  # the flag beats the replayed hparams entry


def test_a_yaml_file_of_flag_values(parse, tmp_path, census_files):
  train, eval_ = census_files
  config = tmp_path / 'census.yaml'
  config.write_text(f'train_data: {train}\neval_data: {eval_}\ntrain_steps: 12\n'
                    'hparams: {learning_rate: 0.02}\nmodel_type: deep\nmixed_precision: null\n')
  parse('--output_dir', str(tmp_path / 'out'), f'--config={config}')
  assert settings.apply_config_file('census') == {
      'train_data': train, 'eval_data': eval_, 'train_steps': 12,
      'hparams': {'learning_rate': 0.02}, 'model_type': 'deep'}
  _, run, _ = settings.build_run('census')
  assert (run.train_steps, run.model_type, run.hparams['learning_rate']) == (12, 'deep', 0.02)


@pytest.mark.parametrize('text,message', [
    ('train_steps: 0\n', 'train_steps: 0 is not a positive integer'),
    ('train_step: 10\n', 'not a run flag: train_step'),
    ('output: x.csv\n', 'not a run flag: output'),
    ('- train_steps\n', 'expected a mapping of flag names to values'),
    ('train_steps: [1\n', 'neither JSON nor YAML'),
    ('distribution_strategy: nccl\n', 'distribution_strategy: value should be one of'),
    ('{"model": "higgs", "stages": [], "config": {}}', 'the summary of a higgs run, not census'),
    ('{"model": "census", "stages": []}\n', 'no `config`'),
    ('config: other.yaml\n', 'not a run flag: config'),
])
def test_bad_config_files_are_usage_errors_naming_the_file(parse, tmp_path, text, message):
  path = tmp_path / 'bad.yaml'
  path.write_text(text)
  parse(f'--config={path}')
  with pytest.raises(app.UsageError) as error:
    settings.apply_config_file('census')
  assert str(error.value).startswith(f'--config {path}: ') and message in str(error.value)
  assert '\n' not in str(error.value)


def test_a_missing_config_file_is_a_usage_error(parse, tmp_path):
  parse(f'--config={tmp_path / "none.yaml"}')
  with pytest.raises(app.UsageError, match='none.yaml: cannot read it'):
    settings.apply_config_file('census')
