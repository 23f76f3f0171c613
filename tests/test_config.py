"""Run configuration: strategies, Beam options, the TFMA config of a spec, hyperparameters, CLI usage."""

import dataclasses
import json
import subprocess
import sys

import pytest
import tensorflow as tf
import tensorflow_model_analysis as tfma
from tfx.utils import import_utils

from beam_runner import options
from model_fns import binary_metrics, strategy, trainer
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
  accuracy = metrics['HistogramBinaryAccuracy']  # model_fns.binary_metrics, named binary_accuracy
  assert not accuracy.HasField('threshold')
  (per_slice,) = accuracy.per_slice_thresholds
  assert [list(s.feature_keys) for s in per_slice.slicing_specs] == [[]]
  assert per_slice.threshold.value_threshold.lower_bound.value == 0.83
  assert per_slice.threshold.change_threshold.absolute.value < 0  # no regression, tiny slack
  assert {'HistogramAUC', 'HistogramPrecision', 'HistogramRecall', 'HistogramCalibration'} <= set(
      metrics)
  assert {m.module for m in metrics.values() if m.class_name.startswith('Histogram')} == {
      'model_fns.binary_metrics'}


def _overall_thresholds(config):
  """{metric class: (value lower bound, has a change threshold)} of the overall-slice bars, and
  the classes with a bar on any other slice."""
  bars, elsewhere = {}, set()
  for metric in config.metrics_specs[0].metrics:
    assert not metric.HasField('threshold'), metric.class_name  # no bar on every slice
    for per_slice in metric.per_slice_thresholds:
      if [list(s.feature_keys) for s in per_slice.slicing_specs] != [[]]:
        elsewhere.add(metric.class_name)
      bars[metric.class_name] = (per_slice.threshold.value_threshold.lower_bound.value,
                                 per_slice.threshold.HasField('change_threshold'))
  return bars, elsewhere


BINARY_EVALUATIONS = [('census', 'evaluation'), ('higgs', 'evaluation'), ('mrpc', 'evaluation'),
                      ('mrpc', 'pretrained_evaluation')]


@pytest.mark.parametrize('model, field', BINARY_EVALUATIONS)
def test_every_binary_evaluation_needs_both_classes_on_the_overall_slice(model, field):
  evaluation = getattr(spec_lib.get(model), field)
  config = evaluation.eval_config()
  bars, elsewhere = _overall_thresholds(config)
  assert bars['HistogramLabelClasses'] == (2.0, False)  # a count of classes, no regression test
  assert not elsewhere  # a one-class slice (say, one race) does not fail the blessing
  assert spec_lib.BINARY_GUARD in evaluation.blessing_thresholds()
  classes = [m.class_name for m in config.metrics_specs[0].metrics]
  assert classes.count('HistogramLabelClasses') == 1
  assert 'AUC' not in classes and 'HistogramAUC' in classes  # AUC NaN, not 0, on one class
  assert evaluation.summary_metrics['label_classes'] == 'label_classes'


@pytest.mark.parametrize('model', ['mnist', 'cifar10', 'imagenet', 'movielens', 'wmt'])
def test_other_evaluations_get_no_binary_guard(model):
  evaluation = spec_lib.get(model).evaluation
  classes = [m.class_name for m in evaluation.eval_config().metrics_specs[0].metrics]
  assert 'HistogramLabelClasses' not in classes
  assert evaluation.blessing_thresholds() == evaluation.thresholds


def test_the_binary_guard_follows_the_metrics_and_yields_to_an_explicit_bar():
  tfma_only = spec_lib.EvalSpec(label_key='y', metrics=('ExampleCount', 'BinaryAccuracy'),
                                thresholds=(spec_lib.Threshold('binary_accuracy', 0.5),))
  bars, _ = _overall_thresholds(tfma_only.eval_config())
  assert bars['HistogramLabelClasses'] == (2.0, False)
  top_k = spec_lib.EvalSpec(
      label_key='y', metrics=(tfma.MetricConfig(class_name='Precision', config='{"top_k": 3}'),),
      thresholds=(spec_lib.Threshold('precision', 0.5),))
  assert 'HistogramLabelClasses' not in _overall_thresholds(top_k.eval_config())[0]
  # A spec that computes the guard's metric and sets its own bar keeps them, once each.
  explicit = spec_lib.EvalSpec(
      label_key='y', metrics=binary_metrics.metric_configs('auc', 'label_classes'),
      thresholds=(spec_lib.Threshold('label_classes', 1.0, no_regression=False),))
  config = explicit.eval_config()
  classes = [m.class_name for m in config.metrics_specs[0].metrics]
  assert classes == ['HistogramAUC', 'HistogramLabelClasses']
  assert _overall_thresholds(config)[0]['HistogramLabelClasses'] == (1.0, False)


def test_a_threshold_on_a_metric_not_computed_is_an_error():
  bad = spec_lib.EvalSpec(label_key='y', metrics=('AUC',),
                          thresholds=(spec_lib.Threshold('binary_accuracy', 0.5),))
  with pytest.raises(ValueError, match='binary_accuracy'):
    bad.eval_config()


def test_hyperparameters_and_model_types_are_checked():
  task = CensusTask.create(hparams={'learning_rate': 0.01})
  assert task.hparams['hidden_units'] == [100, 75, 50, 25] and task.hparams['learning_rate'] == 0.01
  assert task.model_type == 'wide_deep' == spec_lib.get('census').default_model_type
  with pytest.raises(ValueError, match='unknown hyperparameters'):
    CensusTask.create(hparams={'learnin_rate': 0.01})
  with pytest.raises(ValueError, match='unknown model type'):
    CensusTask.create('linear')
  with pytest.raises(ValueError, match='every hyperparameter resolved'):  # params not resolved
    CensusTask(trainer.TaskParams('deep', {'learning_rate': 0.01}))
  with pytest.raises(dataclasses.FrozenInstanceError):  # a run's params are fixed
    task.params.train_steps = 5  # pytype: disable=not-writable
  census = spec_lib.get('census')
  with pytest.raises(ValueError, match='unknown model type'):
    factory.trainer_config(census, factory.RunConfig(output_dir='/tmp/x', model_type='linear'))
  config = factory.trainer_config(census, factory.RunConfig(output_dir='/tmp/x'))
  assert (config.model_type, config.batch_size) == ('wide_deep', 256)


def test_census_learning_rate_decays_to_zero_over_the_runs_steps():
  task = CensusTask.create(hparams={'learning_rate': 0.002}, train_steps=2000)
  schedule = task.build_optimizer().get_config()['learning_rate']
  assert schedule['class_name'] == 'CosineDecay'
  assert schedule['config']['initial_learning_rate'] == 0.002
  assert schedule['config']['decay_steps'] == 2000 and schedule['config']['alpha'] == 0.0


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


def test_transform_settings_and_the_beam_state_cache_weighing(tmp_path):
  """Transform writes neither statistics nor tf.Transform's analyzer cache unless asked, and
  building a pipeline turns off objsize's walk over every module's globals (which Beam's state
  cache would run on each value it loads), without making the weights useless."""
  from apache_beam.runners.worker import statecache
  from beam_runner import sdk_harness
  import objsize
  spec = spec_lib.get('census')
  files = {'train': str(tmp_path / 'adult.data'), 'eval': str(tmp_path / 'adult.test')}
  objsize.default_settings.update(exclude_modules_globals=True)  # objsize's own default
  assert sdk_harness.state_cache_walks_module_globals()

  def transform(**config):
    pipeline = factory.create_pipeline(spec, factory.RunConfig(output_dir=str(tmp_path), **config),
                                       files)
    (component,) = [c for c in pipeline.components if c.id == 'Transform']
    return component

  default = transform()  # TFX leaves out the cache's output channel when it is disabled
  assert 'updated_analyzer_cache' not in default.outputs
  assert default.exec_properties['disable_statistics']
  assert not sdk_harness.state_cache_walks_module_globals()
  asked = transform(transform_analyzer_cache=True, transform_statistics=True)
  assert 'updated_analyzer_cache' in asked.outputs
  assert not asked.exec_properties['disable_statistics']
  small, large = statecache.get_deep_size(list(range(10))), statecache.get_deep_size(
      list(range(10_000)))
  assert 0 < small < large


@pytest.mark.parametrize('model, materialized', [('census', False), ('mnist', True)])
def test_a_transform_not_materialized_leaves_the_trainer_the_raw_examples(tmp_path, model,
                                                                          materialized):
  """Census's Transform only analyzes (materialize=False): its Trainer reads ExampleGen's examples
  and applies the transform graph itself; mnist's Trainer reads the Transform's output."""
  spec = spec_lib.get(model)
  assert spec.materialize_transform is materialized
  files = {'train': str(tmp_path / 'train'), 'eval': str(tmp_path / 'eval')}
  pipeline = factory.create_pipeline(spec, factory.RunConfig(output_dir=str(tmp_path)), files)
  nodes = {c.id: c for c in pipeline.components}
  assert ('transformed_examples' in nodes['Transform'].outputs) is materialized
  examples = nodes['Trainer'].inputs['examples']
  assert examples.producer_component_id == ('Transform' if materialized else
                                            'TextLineExampleGen')
  custom_config = nodes['Trainer'].exec_properties['custom_config']
  config = trainer.TrainerConfig.from_custom_config(
      json.loads(custom_config) if isinstance(custom_config, str) else custom_config)
  assert config.transform_in_trainer is not materialized


def test_tasks_that_read_their_records_themselves_need_materialized_examples():
  for task in ('model_fns.ncf.NCFTask', 'model_fns.translation.TranslationTask'):
    cls = import_utils.import_class_by_path(task)
    config = trainer.TrainerConfig(task=task, model_type=cls.model_types[0],
                                   transform_in_trainer=True)
    with pytest.raises(ValueError, match='needs the Transform to materialize them'):
      trainer.task_class(config)


def test_specs_are_discovered_from_the_models_package(tmp_path, monkeypatch):
  """A model is a new module in the models package: no shared file lists it."""
  from pipelines import models  # pylint: disable=import-outside-toplevel
  shipped = sorted(p.name[:-3] for p in __import__('pathlib').Path(models.__path__[0]).glob('*.py')
                   if p.name != '__init__.py')
  assert spec_lib.spec_modules() == tuple(f'pipelines.models.{name}' for name in shipped)
  package = tmp_path / 'more_models'
  package.mkdir()
  (package / '__init__.py').write_text('')
  (package / 'toy.py').write_text(
      'import dataclasses\n'
      'from pipelines import spec\n'
      'from pipelines.models import census\n'
      "spec.register(dataclasses.replace(census.SPEC, name='toy-census'))\n")
  monkeypatch.syspath_prepend(str(tmp_path))
  monkeypatch.setattr(spec_lib, 'MODELS_PACKAGE', 'more_models')
  try:
    assert spec_lib.get('toy-census').dataset.name == 'census'
    assert 'toy-census' in spec_lib.names()
  finally:
    spec_lib._SPECS.pop('toy-census', None)  # pylint: disable=protected-access
    sys.modules.pop('more_models.toy', None)
    sys.modules.pop('more_models', None)
