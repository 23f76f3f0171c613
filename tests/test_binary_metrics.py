"""model_fns.binary_metrics: the histogram-derived metrics equal TFMA's own, slice by slice."""

import numpy as np
import pandas as pd
import pytest
import tensorflow_model_analysis as tfma

from model_fns import binary_metrics

MODULE = 'model_fns.binary_metrics'
# Ours -> the TFMA metric it must equal.
PAIRS = {'HistogramBinaryAccuracy': 'BinaryAccuracy', 'HistogramPrecision': 'Precision',
         'HistogramRecall': 'Recall', 'HistogramF1Score': 'F1Score',
         'HistogramCalibration': 'Calibration',
         'HistogramMeanLabel': 'MeanLabel', 'HistogramMeanPrediction': 'MeanPrediction'}


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
          for cls, tfma_cls in PAIRS.items()]
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
                'MeanPrediction': 'mean_prediction'}
  for s in slices:
    for tfma_cls, name in tfma_names.items():
      assert values[(s, f'ours_{tfma_cls}')] == pytest.approx(values[(s, name)], rel=1e-6,
                                                             nan_ok=True), (s, tfma_cls)
  # The group with no positive prediction and no positive label: empty ratios are NaN in both.
  empty = (('group', 'empty'),)
  assert values[(empty, 'ours_BinaryAccuracy')] == 1.0
  assert all(np.isnan(values[(empty, f'ours_{m}')])
             for m in ('Precision', 'Recall', 'F1Score', 'Calibration'))
  # Sanity of the fixture: the overall accuracy is far from trivial.
  assert 0.6 < values[((), 'ours_BinaryAccuracy')] < 0.8


def test_default_names_are_tfmas_so_thresholds_attach_to_them():
  names = ('binary_accuracy', 'precision', 'recall', 'f1_score', 'calibration', 'mean_label',
           'mean_prediction')
  assert [binary_metrics.__dict__[cls]().name for cls in PAIRS] == list(names)
  configs = binary_metrics.metric_configs(*names)
  assert [c.class_name for c in configs] == list(PAIRS)
  assert {c.module for c in configs} == {MODULE}
  with pytest.raises(ValueError, match=r"no histogram metric named \['auc'\]"):
    binary_metrics.metric_configs('binary_accuracy', 'auc')


@pytest.mark.parametrize('threshold', [0.123456, 0.0, 1.0, 1.5])
def test_a_threshold_off_the_histogram_buckets_is_refused(threshold):
  with pytest.raises(ValueError, match='bucket boundary'):
    binary_metrics.HistogramBinaryAccuracy(threshold=threshold)
