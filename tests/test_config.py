"""Run configuration: strategies, Beam options, the TFMA config of a spec, hyperparameters, CLI usage."""

import subprocess
import sys

import pytest
import tensorflow as tf

from beam_runner import options
from model_fns import strategy
from model_fns.census import CensusTask
from model_fns.trainer import logging_epoch_steps
from pipelines import factory, spec as spec_lib


def test_default_and_mirrored_strategies_run_on_the_cpu():
  assert strategy.get_strategy('default') is tf.distribute.get_strategy()
  mirrored = strategy.get_strategy('mirrored', num_gpus=0)
  assert isinstance(mirrored, tf.distribute.MirroredStrategy)
  assert mirrored.num_replicas_in_sync == 1


@pytest.mark.parametrize('kwargs, message', [
    ({'name': 'parameter_server'}, 'unknown distribution strategy'),
    ({'name': 'mirrored', 'num_gpus': -1}, 'num_gpus must be >= 0'),
    ({'name': 'mirrored', 'num_gpus': 8}, '8 GPUs asked for, 0 visible'),
    ({'name': 'tpu'}, 'needs --tpu'),
])
def test_bad_strategy_settings_are_rejected(kwargs, message):
  with pytest.raises(ValueError, match=message):
    strategy.get_strategy(**kwargs)


def test_direct_runner_options():
  assert options.direct_runner_args(1) == []  # in-process default, no ephemeral TFX sdist
  assert options.direct_runner_args(2) == [
      '--runner=DirectRunner', '--direct_running_mode=multi_processing', '--direct_num_workers=2']
  with pytest.raises(ValueError, match='must be >= 1'):
    options.direct_runner_args(0)
  with pytest.raises(ValueError, match='unknown DirectRunner running mode'):
    options.direct_runner_args(2, 'threads')


def test_census_eval_config_blesses_on_the_overall_slice_only():
  config = spec_lib.get('census').evaluation.eval_config()
  assert config.model_specs[0].label_key == 'income_bracket'
  assert config.model_specs[0].model_type == 'tf_generic'
  assert [list(s.feature_keys) for s in config.slicing_specs] == [[], ['sex'], ['race']]
  metrics = {m.class_name: m for m in config.metrics_specs[0].metrics}
  accuracy = metrics['BinaryAccuracy']
  assert not accuracy.HasField('threshold')
  (per_slice,) = accuracy.per_slice_thresholds
  assert [list(s.feature_keys) for s in per_slice.slicing_specs] == [[]]
  assert per_slice.threshold.value_threshold.lower_bound.value == 0.83
  assert per_slice.threshold.change_threshold.absolute.value < 0  # no regression, tiny slack
  assert {'AUC', 'Precision', 'Recall', 'Calibration'} <= set(metrics)


def test_a_threshold_on_a_metric_not_computed_is_an_error():
  bad = spec_lib.EvalSpec(label_key='y', metrics=('AUC',),
                          thresholds=(spec_lib.Threshold('binary_accuracy', 0.5),))
  with pytest.raises(ValueError, match='binary_accuracy'):
    bad.eval_config()


def test_hyperparameters_and_model_types_are_checked():
  task = CensusTask()
  assert task.hparams({'learning_rate': 0.01})['hidden_units'] == [100, 75, 50, 25]
  with pytest.raises(ValueError, match='unknown hyperparameters'):
    task.hparams({'learnin_rate': 0.01})
  census = spec_lib.get('census')
  with pytest.raises(ValueError, match='unknown model type'):
    factory.trainer_config(census, factory.RunConfig(output_dir='/tmp/x', model_type='linear'))
  config = factory.trainer_config(census, factory.RunConfig(output_dir='/tmp/x'))
  assert (config.model_type, config.batch_size) == ('wide_deep', 256)


def test_cli_rejects_an_unknown_model_with_the_known_ones():
  result = subprocess.run([sys.executable, '-m', 'pipelines.cli', 'run', 'nosuch'],
                          capture_output=True, text=True, timeout=300, check=False)
  assert result.returncode == 1
  assert "unknown model 'nosuch'; known: census" in result.stderr


def test_training_runs_as_one_fit_when_a_divisor_of_the_steps_allows():
  assert logging_epoch_steps(2000, 500) == 500
  assert logging_epoch_steps(600, 500) == 300  # two epochs of 300: one fit, one trace
  assert logging_epoch_steps(300, 500) == 300
  assert logging_epoch_steps(997, 500) == 500  # prime: 1 epoch of 500 + a remainder fit of 497
  assert logging_epoch_steps(1001, 500) == 143  # 7 epochs of 143, within a quarter of 500
