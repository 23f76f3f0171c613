"""model_fns.binary_metrics: the histogram-derived metrics equal TFMA's own, slice by slice; a
one-class eval split makes the undefined ones NaN and is not blessed."""

import numpy as np
import pandas as pd
import pytest
import tensorflow_model_analysis as tfma
from tensorflow_model_analysis.evaluators import \
    metrics_plots_and_validations_evaluator as evaluator_lib
from tensorflow_model_analysis.metrics import metric_specs

from model_fns import binary_metrics
from pipelines import spec as spec_lib

MODULE = 'model_fns.binary_metrics'
# Ours -> the TFMA metric it must equal.
PAIRS = {'HistogramBinaryAccuracy': 'BinaryAccuracy', 'HistogramPrecision': 'Precision',
         'HistogramRecall': 'Recall', 'HistogramF1Score': 'F1Score',
         'HistogramCalibration': 'Calibration',
         'HistogramMeanLabel': 'MeanLabel', 'HistogramMeanPrediction': 'MeanPrediction',
         'HistogramAUC': 'AUC'}


def _frame(threshold: float, rows: int = 3000, seed: int = 0) -> pd.DataFrame:
  """Labels that depend on the prediction, three groups of different sizes, and one group
  ('empty') where every prediction is 0.1 and every label 0."""
  rng = np.random.default_rng(seed)
  prediction = rng.uniform(0, 1, rows).astype(np.float32)
  # A prediction equal to the threshold is the one case where the two definitions differ.
  prediction[prediction == np.float32(threshold)] = threshold / 2
  label = (rng.uniform(0, 1, rows) < prediction).astype(np.int64)
  group = rng.choice(np.array(['a', 'b', 'c'], dtype=object), rows, p=[0.6, 0.3, 0.1])
  group[:40], prediction[:40], label[:40] = 'empty', 0.1, 0
  return pd.DataFrame({'label': label, 'prediction': prediction, 'group': group})


def _analyze(frame: pd.DataFrame, metrics, tmp_path):
  """{(slice, metric name): value} from TFMA over `frame`, overall and by group."""
  config = tfma.EvalConfig(
      model_specs=[tfma.ModelSpec(label_key='label', prediction_key='prediction')],
      slicing_specs=[tfma.SlicingSpec(), tfma.SlicingSpec(feature_keys=['group'])],
      metrics_specs=[tfma.MetricsSpec(metrics=metrics)])
  result = tfma.analyze_raw_data(frame, config, output_path=str(tmp_path))
  values = {}
  for slice_key, by_output in result.slicing_metrics:
    for name, value in by_output[''][''].items():
      values[(slice_key, name)] = float(value['doubleValue'])  # NaN comes as 'NaN'
  return values


def test_histogram_metrics_equal_tfmas_own_on_every_slice(tmp_path):
  threshold = 0.3
  ours = [tfma.MetricConfig(class_name=cls, module=MODULE,
                            config=f'{{"name": "ours_{tfma_cls}", "threshold": {threshold}}}')
          for cls, tfma_cls in PAIRS.items() if tfma_cls != 'AUC']
  ours.append(tfma.MetricConfig(class_name='HistogramAUC', module=MODULE,
                                config='{"name": "ours_AUC"}'))
  theirs = [tfma.MetricConfig(class_name='BinaryAccuracy', config=f'{{"threshold": {threshold}}}'),
            tfma.MetricConfig(class_name='Precision', config=f'{{"thresholds": [{threshold}]}}'),
            tfma.MetricConfig(class_name='Recall', config=f'{{"thresholds": [{threshold}]}}'),
            tfma.MetricConfig(class_name='F1Score', config=f'{{"thresholds": [{threshold}]}}'),
            tfma.MetricConfig(class_name='Calibration'), tfma.MetricConfig(class_name='MeanLabel'),
            tfma.MetricConfig(class_name='MeanPrediction')]
  values = _analyze(_frame(threshold), ours + theirs + [tfma.MetricConfig(class_name='AUC')],
                    tmp_path)

  slices = {s for s, _ in values}
  assert slices == {(), (('group', 'a'),), (('group', 'b'),), (('group', 'c'),),
                    (('group', 'empty'),)}
  tfma_names = {'BinaryAccuracy': 'binary_accuracy', 'Precision': 'precision', 'Recall': 'recall',
                'F1Score': 'f1_score', 'Calibration': 'calibration', 'MeanLabel': 'mean_label',
                'MeanPrediction': 'mean_prediction', 'AUC': 'auc'}
  for s in slices:
    for tfma_cls, name in tfma_names.items():
      if (s, tfma_cls) == ((('group', 'empty'),), 'AUC'):
        continue  # one class: ours NaN, TFMA's 0 (below)
      assert values[(s, f'ours_{tfma_cls}')] == pytest.approx(values[(s, name)], rel=1e-6,
                                                             nan_ok=True), (s, tfma_cls)
  # The group with no positive prediction and no positive label: empty ratios are NaN in both.
  empty = (('group', 'empty'),)
  assert values[(empty, 'ours_BinaryAccuracy')] == 1.0
  assert all(np.isnan(values[(empty, f'ours_{m}')])
             for m in ('Precision', 'Recall', 'F1Score', 'Calibration', 'AUC'))
  assert values[(empty, 'auc')] == 0.0  # TFMA's AUC of one class: the misleading 0 ours avoids
  assert 0.7 < values[((), 'ours_AUC')] < 0.9
  # Sanity of the fixture: the overall accuracy is far from trivial.
  assert 0.6 < values[((), 'ours_BinaryAccuracy')] < 0.8


def test_default_names_are_tfmas_so_thresholds_attach_to_them():
  names = ('binary_accuracy', 'precision', 'recall', 'f1_score', 'calibration', 'mean_label',
           'mean_prediction', 'auc')
  assert [binary_metrics.__dict__[cls]().name for cls in PAIRS] == list(names)
  configs = binary_metrics.metric_configs(*names)
  assert [c.class_name for c in configs] == list(PAIRS)
  assert {c.module for c in configs} == {MODULE}
  assert binary_metrics.metric_configs('label_classes')[0].class_name == 'HistogramLabelClasses'
  with pytest.raises(ValueError, match=r"no histogram metric named \['log_loss'\]"):
    binary_metrics.metric_configs('binary_accuracy', 'log_loss')


@pytest.mark.parametrize('threshold', [0.123456, 0.0, 1.0, 1.5])
def test_a_threshold_off_the_histogram_buckets_is_refused(threshold):
  with pytest.raises(ValueError, match='bucket boundary'):
    binary_metrics.HistogramBinaryAccuracy(threshold=threshold)


# --- A one-class eval split: undefined metrics are NaN, and the blessing fails -----------------

def _census_config_on() -> tfma.EvalConfig:
  """Census' EvalConfig (metrics, thresholds, guard) over the frames' columns, as on a first run:
  TFX rubber-stamps a model with no blessed baseline, which drops the change thresholds."""
  config = spec_lib.get('census').evaluation.eval_config()
  del config.model_specs[:]
  config.model_specs.add(label_key='label', prediction_key='prediction')
  del config.slicing_specs[:]
  config.slicing_specs.add()
  config.slicing_specs.add(feature_keys=['group'])
  for metric in config.metrics_specs[0].metrics:
    for per_slice in metric.per_slice_thresholds:
      per_slice.threshold.ClearField('change_threshold')
  return config


def _evaluate(frame: pd.DataFrame, config: tfma.EvalConfig, tmp_path):
  """({(slice, metric name): value}, ValidationResult) of TFMA over `frame`."""
  result = tfma.analyze_raw_data(frame, config, output_path=str(tmp_path))
  values = {(slice_key, name): float(value['doubleValue'])
            for slice_key, by_output in result.slicing_metrics
            for name, value in by_output[''][''].items()}
  return values, tfma.load_validation_result(str(tmp_path))


def _failures(validation):
  """{(slice key, metric name)} of a ValidationResult's failures."""
  return {(str(v.slice_key).strip(), f.metric_key.name)
          for v in validation.metric_validations_per_slice for f in v.failures}


BINARY_NAMES = ('auc', 'binary_accuracy', 'precision', 'recall', 'calibration', 'mean_label',
                'mean_prediction', 'label_classes')


@pytest.mark.parametrize('label, predictions, undefined', [
    # Every label 0, some predictions over 0.5: precision is 0 (every positive call is wrong).
    (0, [0.1] * 45 + [0.7] * 5, {'auc', 'recall', 'calibration'}),
    # Every label 0, no positive prediction: precision has no denominator either.
    (0, [0.1] * 50, {'auc', 'recall', 'calibration', 'precision'}),
    # Every label 1: only AUC (no negative for the ROC curve's x axis).
    (1, [0.9] * 45 + [0.3] * 5, {'auc'}),
])
def test_one_class_is_undefined_and_census_does_not_bless_it(label, predictions, undefined,
                                                            tmp_path):
  rows = len(predictions)
  frame = pd.DataFrame({'label': np.full(rows, label, np.int64),
                        'prediction': np.array(predictions, np.float32),
                        'group': np.array(['a', 'b'] * (rows // 2), dtype=object)})
  values, validation = _evaluate(frame, _census_config_on(), tmp_path)

  overall = {name: values[((), name)] for name in BINARY_NAMES}
  assert {name for name, value in overall.items() if np.isnan(value)} == undefined, overall
  assert overall['label_classes'] == 1.0
  assert overall['binary_accuracy'] >= 0.83  # the seed's bar holds: only the guard fails
  assert overall['mean_label'] == label
  assert not validation.validation_ok
  assert _failures(validation) == {('', 'label_classes')}


def test_no_positive_prediction_leaves_precision_undefined_with_two_classes(tmp_path):
  frame = pd.DataFrame({'label': np.array([0] * 40 + [1] * 10, np.int64),
                        'prediction': np.full(50, 0.2, np.float32),
                        'group': np.array(['a'] * 50, dtype=object)})
  values, validation = _evaluate(frame, _census_config_on(), tmp_path)
  assert np.isnan(values[((), 'precision')]) and values[((), 'recall')] == 0.0
  assert values[((), 'label_classes')] == 2.0 and values[((), 'auc')] == pytest.approx(0.5)
  assert _failures(validation) == {('', 'binary_accuracy')}  # 0.8 < 0.83; the guard holds


def _separable_frame(rows: int = 2000, seed: int = 1) -> pd.DataFrame:
  """Two classes, accuracy about 0.9 at 0.5, groups 'a' and 'b', and a group 'one' of one class."""
  rng = np.random.default_rng(seed)
  label = rng.integers(0, 2, rows)
  prediction = np.clip(np.where(label == 1, 0.75, 0.25) + rng.normal(0, 0.2, rows), 0, 1)
  group = rng.choice(np.array(['a', 'b'], dtype=object), rows)
  group[:60], label[:60], prediction[:60] = 'one', 0, 0.1
  return pd.DataFrame({'label': label.astype(np.int64), 'prediction': prediction.astype(np.float32),
                       'group': group})


def test_two_classes_are_blessed_with_unchanged_values_and_a_one_class_slice(tmp_path):
  frame = _separable_frame()
  config = _census_config_on()
  # TFMA's own metrics beside census' (whose AUC and others are ours), for the same values.
  config.metrics_specs[0].metrics.extend([
      tfma.MetricConfig(class_name=name, config=f'{{"name": "tfma_{name}"}}')
      for name in ('AUC', 'BinaryAccuracy', 'Precision', 'Recall', 'Calibration', 'MeanLabel',
                   'MeanPrediction')])
  values, validation = _evaluate(frame, config, tmp_path)

  assert validation.validation_ok, validation
  overall = {name: values[((), name)] for name in BINARY_NAMES}
  assert overall['label_classes'] == 2.0
  assert 0.85 < overall['binary_accuracy'] < 0.97 and 0.9 < overall['auc'] < 1.0
  for ours, theirs in [('auc', 'AUC'), ('binary_accuracy', 'BinaryAccuracy'),
                       ('precision', 'Precision'), ('recall', 'Recall'),
                       ('calibration', 'Calibration'), ('mean_label', 'MeanLabel'),
                       ('mean_prediction', 'MeanPrediction')]:
    for group in ((), (('group', 'a'),), (('group', 'b'),)):
      assert values[(group, ours)] == pytest.approx(values[(group, f'tfma_{theirs}')],
                                                    rel=1e-6), (group, ours)
  # The one-class slice is reported as such, but the guard holds for the overall slice only.
  one = (('group', 'one'),)
  assert values[(one, 'label_classes')] == 1.0 and np.isnan(values[(one, 'auc')])
  assert values[(one, 'tfma_AUC')] == 0.0


def test_label_classes_counts_the_classes_of_positive_weight():
  bucket = binary_metrics.calibration_histogram.Bucket
  statistic = binary_metrics._STATISTICS['label_classes']
  # (bucket id, weighted labels, weighted predictions, weighted examples)
  assert statistic([bucket(1, 0.0, 0.1, 3.0), bucket(9000, 0.0, 0.9, 1.0)], 0.5) == 1.0
  assert statistic([bucket(1, 0.0, 0.1, 3.0), bucket(9000, 1.0, 0.9, 1.0)], 0.5) == 2.0
  assert statistic([bucket(9000, 2.5, 2.0, 2.5)], 0.5) == 1.0  # weighted positives only
  assert statistic([], 0.5) == 0.0


# --- The direct histogram combiner: TFMA's histogram, bit for bit, without its generic path ----

def _tfma_histogram_computation(**kwargs):
  """TFMA's own calibration-histogram computation (AUC's default histogram)."""
  (computation,) = binary_metrics.calibration_histogram.calibration_histogram(**kwargs)
  return computation


def _histogram(combiner, elements):
  """{bucket id: (weighted labels, weighted predictions, weighted examples)} of `combiner` over
  `elements`, added in two accumulators and merged, as Beam does across bundles."""
  halves = [combiner.create_accumulator(), combiner.create_accumulator()]
  for i, element in enumerate(elements):
    halves[i % 2] = combiner.add_input(halves[i % 2], element)
  merged = combiner.merge_accumulators(halves)
  return {b.bucket_id: (b.weighted_labels, b.weighted_predictions, b.weighted_examples)
          for b in combiner.extract_output(merged)[combiner._key]}


def _inputs(label, prediction):
  return tfma.metrics.StandardMetricInputs(labels=label, predictions=prediction,
                                           example_weights=None)


def _binary_elements(rows: int = 5000, seed: int = 2):
  """One-value labels and scores as TFMA's unbatching gives them: int and float labels, scores
  as arrays and as a classifier's dict of outputs, with the histogram's edges (0, 1, bucket
  boundaries) among them."""
  rng = np.random.default_rng(seed)
  scores = rng.uniform(0, 1, rows).astype(np.float32)
  scores[:6] = [0.0, 1.0, 0.5, 0.0001, 0.9999, np.float32(1) - np.float32(1e-7)]
  labels = (rng.uniform(0, 1, rows) < scores).astype(np.int64)
  elements = []
  for i, (label, score) in enumerate(zip(labels, scores)):
    label_array = np.array([label]) if i % 3 else np.array([float(label)], np.float32)
    score_array = np.array([score], np.float32)
    if i % 2:
      score_array = {'probabilities': score_array, 'class_ids': np.array([int(score >= 0.5)])}
    elements.append(_inputs(label_array, score_array))
  return elements


def test_direct_histogram_equals_tfmas_bit_for_bit_without_its_generic_path(monkeypatch):
  tfma_combiner = _tfma_histogram_computation().combiner
  elements = _binary_elements()
  expected = _histogram(tfma_combiner, elements)

  generic = binary_metrics.metric_util.to_label_prediction_example_weight
  calls = []
  monkeypatch.setattr(binary_metrics.metric_util, 'to_label_prediction_example_weight',
                      lambda *a, **k: calls.append(1) or generic(*a, **k))
  direct = binary_metrics._DirectHistogramCombiner(tfma_combiner)
  assert _histogram(direct, elements) == expected  # exact floats, every bucket
  assert sum(count for _, _, count in expected.values()) == len(elements)
  assert not calls  # every element took the direct path


@pytest.mark.parametrize('label,prediction', [
    (np.array([0.25]), np.array([0.6], np.float32)),  # a fractional label: TFMA splits it
    (np.array([1, 0]), np.array([0.3, 0.8], np.float32)),  # two classes' labels and scores
    (np.array([[1]]), np.array([[0.7]], np.float32)),  # an extra dimension, one value
], ids=['fractional', 'two-values', 'nested'])
def test_other_inputs_go_through_tfmas_own_path_with_the_same_result(label, prediction):
  tfma_combiner = _tfma_histogram_computation().combiner
  elements = _binary_elements(rows=50) + [_inputs(label, prediction)]
  assert (_histogram(binary_metrics._DirectHistogramCombiner(tfma_combiner), elements)
          == _histogram(tfma_combiner, elements))


@pytest.mark.parametrize('label,prediction,error', [
    (np.array([2]), np.array([0.6], np.float32), 'label must be within'),
    (np.array([1]), np.array([np.nan], np.float32), 'NaN'),
    (np.array([1]), {'logit_scores': np.array([0.6], np.float32)}, 'prediction is a dict'),
], ids=['label-2', 'nan-score', 'unknown-output'])
def test_bad_inputs_get_tfmas_own_error(label, prediction, error):
  direct = binary_metrics._DirectHistogramCombiner(_tfma_histogram_computation().combiner)
  with pytest.raises(ValueError, match=error):
    direct.add_input(direct.create_accumulator(), _inputs(label, prediction))


def test_weighted_or_keyed_histograms_keep_tfmas_generic_path():
  for kwargs in ({'example_weighted': True}, {'model_name': 'candidate'},
                 {'sub_key': tfma.metrics.SubKey(class_id=1)}, {'class_weights': {0: 1.0}}):
    direct = binary_metrics._DirectHistogramCombiner(
        _tfma_histogram_computation(**kwargs).combiner)
    assert not direct._direct, kwargs


def test_census_metrics_share_one_direct_histogram():
  # TFMA de-duplicates computations by keys and combiner class name, as its evaluator does here.
  config = spec_lib.get('census').evaluation.eval_config()
  computations = metric_specs.to_computations(config.metrics_specs, eval_config=config)
  combined = evaluator_lib._filter_and_separate_computations(computations)[0]
  combiners = [type(c.combiner).__name__ for c in combined]
  assert [name for name in combiners if 'Histogram' in name] == ['_DirectHistogramCombiner'], \
      combiners
