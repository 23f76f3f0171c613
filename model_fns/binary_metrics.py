"""Binary classification metrics derived from the calibration histogram that TFMA's AUC builds.

TFMA's `AUC` accumulates one calibration histogram per slice: 10,000 equal buckets of the predicted
probability, each with its example count, label sum and prediction sum
(`tfma.metrics.calibration_histogram`). TFMA's own `BinaryAccuracy`, `Precision` and `Recall` at
0.5 add a second per-example combiner (a confusion matrix), and `Calibration`, `MeanLabel` and
`MeanPrediction` a third. The classes here compute the same numbers from AUC's histogram instead:
TFMA runs the histogram's combiner once for every metric that asks for it (same key), and each
metric is a derived computation over the finished histogram. Without AUC they still share one
histogram, so any set of them costs one combiner. On census (16,281 rows, 8 slices), the
two extra combiners cost about 13 of the Evaluator's 39 s.

The numbers equal TFMA's own metrics (tested against them), with one boundary difference: a
prediction exactly equal to the threshold counts as positive here (the histogram buckets are
closed on the left), and as negative in TFMA's confusion matrices (`prediction > threshold`).

Undefined metrics are NaN, never a misleading 0. On a slice whose labels hold one class only
(or whose predictions are never positive), these are undefined and come out NaN:

- `precision`: no prediction at or above the threshold;
- `recall`: no positive label;
- `calibration`: no positive label (a zero denominator);
- `auc` (`HistogramAUC`, TFMA's `AUC` with this one change): one class, so one of the ROC curve's
  axes is 0 / 0. TFMA's own `AUC` reports 0 there (it sums the curve with `np.nansum`);
- `f1_score`, `binary_accuracy`, `mean_label`, `mean_prediction`: only for a slice with no weight.

`f1_score` is 2 TP / (2 TP + FP + FN) as in TFMA: with no positive label but some positive
predictions it is 0, which is its value (every positive call is wrong), not a placeholder.

`label_classes` (`HistogramLabelClasses`) says whether the binary metrics are defined: the number
of label classes (0 and 1) with positive weight in the slice, 2.0 when both are present. A
blessing guard on it (`label_classes >= 2` on the overall slice: `DEFINED_LABEL_CLASSES`, added to
every binary evaluation by `pipelines.spec.EvalSpec`) keeps a one-class eval split from being
blessed whatever its accuracy.

TFMA's histogram combiner itself prepares each example through a general function that costs
more than the histogram's arithmetic; for the plain binary case (one 0/1 label, one score, no
weights) the histogram here is added to directly, to the same floats (`_DirectHistogramCombiner`),
and AUC (`HistogramAUC`) reads the same histogram: every metric here, AUC included, shares one
histogram combiner.

EvalConfig use: `metric_configs('auc', 'binary_accuracy', 'precision')`, or
`tfma.MetricConfig(class_name='HistogramBinaryAccuracy', module='model_fns.binary_metrics')`. The
default names are TFMA's (`auc`, `binary_accuracy`, `precision`, `recall`, `f1_score`,
`calibration`, `mean_label`, `mean_prediction`), so thresholds and result readers name them as they
would TFMA's.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Dict, Optional, Tuple

import numpy as np
import tensorflow_model_analysis as tfma
from tensorflow_model_analysis.metrics import (binary_confusion_matrices, calibration_histogram,
                                               confusion_matrix_metrics, metric_types, metric_util)

Histogram = calibration_histogram.Histogram
NUM_BUCKETS = calibration_histogram.DEFAULT_NUM_BUCKETS  # the histogram AUC's default uses
LABEL_CLASSES = 'label_classes'  # the guard metric's name
DEFINED_LABEL_CLASSES = 2.0  # its value when the binary metrics are defined: both classes present


def _ratio(numerator: float, denominator: float) -> float:
  """numerator / denominator, NaN for a zero denominator (as TFMA reports an empty ratio)."""
  return numerator / denominator if denominator > 0 else float('nan')


def _split_at(histogram: Histogram, threshold: float):
  """(below, at_or_above): the histogram's totals under `threshold` and from it on."""
  below, above = calibration_histogram.rebin([float('-inf'), threshold], histogram, NUM_BUCKETS)
  return below, above


def _accuracy(histogram: Histogram, threshold: float) -> float:
  below, above = _split_at(histogram, threshold)
  true_negatives = below.weighted_examples - below.weighted_labels
  return _ratio(above.weighted_labels + true_negatives,
                below.weighted_examples + above.weighted_examples)


def _precision(histogram: Histogram, threshold: float) -> float:
  _, above = _split_at(histogram, threshold)
  return _ratio(above.weighted_labels, above.weighted_examples)


def _recall(histogram: Histogram, threshold: float) -> float:
  below, above = _split_at(histogram, threshold)
  return _ratio(above.weighted_labels, above.weighted_labels + below.weighted_labels)


def _f1_score(histogram: Histogram, threshold: float) -> float:
  below, above = _split_at(histogram, threshold)
  true_positives = above.weighted_labels
  return _ratio(2 * true_positives, above.weighted_examples + true_positives
                + below.weighted_labels)


def _totals(histogram: Histogram):
  return (sum(b.weighted_labels for b in histogram), sum(b.weighted_predictions for b in histogram),
          sum(b.weighted_examples for b in histogram))


def _class_weights(histogram: Histogram) -> Tuple[float, float]:
  """(negative weight, positive weight) of the histogram's labels.

  TFMA's histogram splits every example into a label-1 part (weight w * label) and a label-0 part
  (w * (1 - label)), so for 0/1 labels the sums are exact: with no negative, each bucket's examples
  and labels add the same numbers in the same order, and their difference is exactly 0.
  """
  labels, _, examples = _totals(histogram)
  return examples - labels, labels


def _label_classes(histogram: Histogram, threshold: float) -> float:
  del threshold
  return float(sum(weight > 0 for weight in _class_weights(histogram)))


def _calibration(histogram: Histogram, threshold: float) -> float:
  del threshold
  labels, predictions, _ = _totals(histogram)
  return _ratio(predictions, labels)


def _mean_label(histogram: Histogram, threshold: float) -> float:
  del threshold
  labels, _, examples = _totals(histogram)
  return _ratio(labels, examples)


def _mean_prediction(histogram: Histogram, threshold: float) -> float:
  del threshold
  _, predictions, examples = _totals(histogram)
  return _ratio(predictions, examples)


_STATISTICS: Dict[str, Callable[[Histogram, float], float]] = {
    'binary_accuracy': _accuracy, 'precision': _precision, 'recall': _recall,
    'f1_score': _f1_score, 'calibration': _calibration, 'mean_label': _mean_label,
    'mean_prediction': _mean_prediction, LABEL_CLASSES: _label_classes,
}


# TFMA's histogram combiner: private in TFMA 0.47.1 (the lock's), so pinned with it; the tests
# compare the direct path's histograms with this class's own.
_TfmaHistogramCombiner = (
    calibration_histogram._CalibrationHistogramCombiner)  # pylint: disable=protected-access


class _DirectHistogramCombiner(_TfmaHistogramCombiner):
  """TFMA's calibration-histogram combiner, with a direct path for one 0/1 label and one score.

  TFMA's `add_input` prepares every example through
  `metric_util.to_label_prediction_example_weight`, which serves every case TFMA supports (model
  and output lookups, prediction keys, label vocabularies, sub keys, top k, class weights, example
  weights, fractional labels) and is most of the Evaluator's metric time, against a few float
  additions an example of actual work (README, "Per-row speed").

  The direct path takes an example whose label and prediction are each a numeric array of one
  value (the prediction picked from a dict of outputs by TFMA's own
  `prepare_labels_and_predictions`, as census's `probabilities` is), the label exactly 0 or 1 and
  the prediction not NaN, when the computation has no model or output name, sub key, aggregation,
  class weights or example weights: a plain binary classifier's case. It adds to the example's
  bucket the same three floats TFMA would (label, prediction, weight 1.0) in the same order, so the
  histogram is the same bit for bit (tested against TFMA's combiner). Any other example (a
  fractional or out-of-range label, NaN, several values, an unknown dict) goes through TFMA's own
  `add_input`, with its own errors.

  Made from TFMA's combiner by `direct_histograms`, with all its settings.
  """

  def __init__(self, tfma_combiner: _TfmaHistogramCombiner):
    # The settings as TFMA's calibration_histogram() resolved them, not re-derived here.
    self.__dict__.update(vars(tfma_combiner))
    key = self._key
    self._direct = (not key.model_name and not key.output_name and key.sub_key is None
                    and self._aggregation_type is None and not self._class_weights
                    and not self._example_weighted and self._prediction_based_bucketing)
    # The ModelSpec's prediction_key, found as to_label_prediction_example_weight finds it.
    specs = self._eval_config.model_specs if self._eval_config else []
    self._prediction_key = next(
        (spec.prediction_key for spec in specs if (spec.name if len(specs) > 1 else '') == ''), '')

  def add_input(self, accumulator, element):
    if self._direct:
      label, prediction = element.label, element.prediction
      if isinstance(prediction, dict):  # a classifier's outputs: TFMA picks the score among them
        _, prediction = metric_util.prepare_labels_and_predictions(None, prediction,
                                                                   self._prediction_key)
      if (isinstance(label, np.ndarray) and isinstance(prediction, np.ndarray)
          and label.size == 1 and prediction.size == 1
          and label.dtype.kind in 'iuf' and prediction.dtype.kind == 'f'):
        label_value = float(label.flat[0])
        prediction_value = float(prediction.flat[0])
        if (label_value == 0.0 or label_value == 1.0) and prediction_value == prediction_value:
          index = self._bucket_index(prediction_value)
          bucket = accumulator.get(index)
          if bucket is None:
            accumulator[index] = calibration_histogram.Bucket(index, label_value,
                                                              prediction_value, 1.0)
          else:
            bucket.weighted_labels += label_value
            bucket.weighted_predictions += prediction_value
            bucket.weighted_examples += 1.0
          return accumulator
    return super().add_input(accumulator, element)


def direct_histograms(
    computations: metric_types.MetricComputations) -> metric_types.MetricComputations:
  """`computations` with each of TFMA's calibration histograms on `_DirectHistogramCombiner`.

  The keys stay TFMA's, so every metric that derives from the histogram (AUC's confusion matrices,
  this module's statistics) reads it as before, and TFMA computes it once: computations are the
  same for TFMA when their keys and combiner class names are.
  """
  return [
      metric_types.MetricComputation(c.keys, c.preprocessors, _DirectHistogramCombiner(c.combiner))
      if isinstance(c, metric_types.MetricComputation)
      and type(c.combiner) is _TfmaHistogramCombiner  # pylint: disable=unidiomatic-typecheck
      else c for c in computations]


def _computations(name: str, statistic: str, threshold: float,
                  eval_config=None, model_name: str = '', output_name: str = '',
                  sub_key: Optional[metric_types.SubKey] = None, aggregation_type=None,
                  class_weights: Optional[Dict[int, float]] = None,
                  example_weighted: bool = False) -> metric_types.MetricComputations:
  """AUC's calibration histogram (deduplicated by TFMA) and `statistic` derived from it."""
  key = metric_types.MetricKey(name=name, model_name=model_name, output_name=output_name,
                               sub_key=sub_key, example_weighted=example_weighted)
  computations = direct_histograms(calibration_histogram.calibration_histogram(
      eval_config=eval_config, model_name=model_name, output_name=output_name, sub_key=sub_key,
      aggregation_type=aggregation_type, class_weights=class_weights,
      example_weighted=example_weighted))
  histogram_key = computations[-1].keys[-1]
  compute = _STATISTICS[statistic]

  def result(metrics: Dict[Any, Histogram]) -> Dict[metric_types.MetricKey, float]:
    return {key: compute(metrics[histogram_key], threshold)}

  computations.append(metric_types.DerivedMetricComputation(keys=[key], result=result))
  return computations


class _HistogramMetric(metric_types.Metric):
  """A float statistic of AUC's calibration histogram, per slice (see the module docstring)."""

  statistic = ''

  def __init__(self, name: Optional[str] = None, threshold: float = 0.5):
    """
    Args:
      name: the metric's name; default TFMA's name for the same metric.
      threshold: the decision threshold on the predicted probability, for the confusion-matrix
        statistics. It must fall on a histogram bucket boundary (a multiple of 1 / 10,000).

    Raises:
      ValueError: `threshold` is not in (0, 1) or not on a bucket boundary.
    """
    buckets = threshold * NUM_BUCKETS
    if not 0 < threshold < 1 or not math.isclose(buckets, round(buckets), abs_tol=1e-6):
      raise ValueError(f'{type(self).__name__}: threshold must be in (0, 1) and a multiple of '
                       f'1/{NUM_BUCKETS} (a histogram bucket boundary), got {threshold!r}')
    super().__init__(metric_util.merge_per_key_computations(_computations),
                     name=name or self.statistic, statistic=self.statistic, threshold=threshold)

  def get_config(self) -> Dict[str, Any]:
    return {'name': self.name, 'threshold': self.kwargs['threshold']}


class HistogramBinaryAccuracy(_HistogramMetric):
  """Fraction of examples whose prediction is on the label's side of the threshold (float)."""
  statistic = 'binary_accuracy'


class HistogramPrecision(_HistogramMetric):
  """Positives among the predictions at or above the threshold (float; NaN with none)."""
  statistic = 'precision'


class HistogramRecall(_HistogramMetric):
  """Predictions at or above the threshold among the positives (float; NaN with no positive)."""
  statistic = 'recall'


class HistogramF1Score(_HistogramMetric):
  """Harmonic mean of precision and recall, 2 TP / (2 TP + FP + FN) (float; NaN with neither a
  positive prediction nor a positive label)."""
  statistic = 'f1_score'


class HistogramCalibration(_HistogramMetric):
  """Sum of predictions / sum of labels (float; 1 is calibrated on the slice; NaN with no
  positive)."""
  statistic = 'calibration'


class HistogramMeanLabel(_HistogramMetric):
  """Mean label (float): the slice's positive rate."""
  statistic = 'mean_label'


class HistogramMeanPrediction(_HistogramMetric):
  """Mean predicted probability (float)."""
  statistic = 'mean_prediction'


class HistogramLabelClasses(_HistogramMetric):
  """Label classes (0 and 1) with positive weight in the slice (float: 2.0 when the binary metrics
  are defined, 1.0 with one class, 0.0 with no weight). The threshold is unused."""
  statistic = LABEL_CLASSES


class HistogramAUC(confusion_matrix_metrics.AUC):
  """TFMA's `AUC` (same computations and values: the confusion matrices of the same calibration
  histogram), but NaN when the slice holds one label class only, where TFMA reports 0.

  Args: those of `tfma.metrics.AUC` (default name `auc`, 10,000 thresholds, ROC, interpolation).
  """
  statistic = 'auc'

  def computations(self, *args, **kwargs) -> metric_types.MetricComputations:
    """TFMA's AUC computations, its calibration histogram on the direct combiner."""
    return direct_histograms(super().computations(*args, **kwargs))

  def _metric_value(self, curve: str, summation_method: str, key: metric_types.MetricKey,
                    matrices: binary_confusion_matrices.Matrices) -> float:
    # tp + fn and fp + tn are the positive and negative weights at every threshold.
    positives = float(np.max(np.asarray(matrices.tp) + np.asarray(matrices.fn)))
    negatives = float(np.max(np.asarray(matrices.fp) + np.asarray(matrices.tn)))
    if not (positives > 0 and negatives > 0):
      return float('nan')
    return super()._metric_value(curve, summation_method, key, matrices)


CLASSES = {cls.statistic: cls for cls in (
    HistogramAUC, HistogramBinaryAccuracy, HistogramPrecision, HistogramRecall, HistogramF1Score,
    HistogramCalibration, HistogramMeanLabel, HistogramMeanPrediction, HistogramLabelClasses)}
for _cls in CLASSES.values():
  metric_types.register_metric(_cls)


def metric_configs(*names: str) -> Tuple[tfma.MetricConfig, ...]:
  """EvalConfig entries for this module's metrics, by TFMA name.

  Args:
    names: some of 'auc', 'binary_accuracy', 'precision', 'recall', 'f1_score', 'calibration',
      'mean_label', 'mean_prediction', 'label_classes'.

  Returns:
    One `tfma.MetricConfig` per name (class and module; default settings: threshold 0.5; AUC's
    10,000 thresholds), in order.

  Raises:
    ValueError: an unknown name.
  """
  unknown = sorted(set(names) - set(CLASSES))
  if unknown:
    raise ValueError(f'no histogram metric named {unknown}; known: {sorted(CLASSES)}')
  return tuple(tfma.MetricConfig(class_name=CLASSES[name].__name__, module=__name__)
               for name in names)
