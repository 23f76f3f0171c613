"""A blessing never rests on an undefined metric, beyond binary classifiers
(test_binary_metrics.py): ranking metrics of lists without one relevant item, BLEU of nothing, and
an empty eval split for each kind of evaluation."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import tensorflow_model_analysis as tfma

from model_fns import ranking_metrics, translation_metrics
from pipelines import spec as spec_lib


def _ranking(labels, scores, sample_weight=None):
  hit_rate, ndcg = ranking_metrics.HitRateAtK(k=2), ranking_metrics.NdcgAtK(k=2)
  for metric in (hit_rate, ndcg):
    metric.update_state(np.array(labels), np.array(scores, np.float32), sample_weight)
  return float(hit_rate.result()), float(ndcg.result())


def test_lists_without_one_relevant_item_are_left_out_of_the_ranking_metrics():
  valid = [[0, 1, 0, 0]]  # the relevant item ranks 1 (0-based): a hit at 2, NDCG 1 / log2(3)
  valid_scores = [[0.9, 0.8, 0.1, 0.0]]
  # No relevant item (all scores <= 0 once ranked it first, a hit) and two relevant items.
  invalid = [[0, 0, 0, 0], [1, 1, 0, 0]]
  invalid_scores = [[-1.0, -1.0, -1.0, -1.0], [0.1, 0.2, 0.9, 0.8]]
  hit_rate, ndcg = _ranking(valid + invalid, valid_scores + invalid_scores)
  assert hit_rate == 1.0 and ndcg == pytest.approx(1 / math.log2(3))
  # Weights of shape [batch, 1], as TFMA may pass them, weigh lists, not cells: a hit (rank 1)
  # of weight 3 and a miss (rank 2) of weight 1.
  hit_rate, _ = _ranking([[0, 1, 0], [1, 0, 0]], [[0.9, 0.8, 0.7], [0.1, 0.2, 0.3]],
                         sample_weight=np.array([[3.0], [1.0]], np.float32))
  assert hit_rate == pytest.approx(0.75)


def test_ranking_metrics_of_no_valid_list_are_nan():
  assert all(math.isnan(v) for v in _ranking([[0, 0, 0]], [[-1.0, -1.0, -1.0]]))
  empty = ranking_metrics.HitRateAtK(k=10)
  assert math.isnan(float(empty.result()))


def test_bleu_of_nothing_is_nan():
  assert math.isnan(translation_metrics.corpus_bleu([], []))
  assert math.isnan(translation_metrics.corpus_bleu(['ein Satz'], ['']))  # no reference token
  assert translation_metrics.corpus_bleu([''], ['ein Satz']) == 0.0  # defined: nothing matched


@pytest.mark.parametrize('model', ['mnist', 'movielens', 'wmt', 'census'])
def test_an_empty_eval_split_is_not_blessed(model, tmp_path):
  """No example: TFMA computes no slice at all, and its validation fails on the missing overall
  slice, whatever the metrics; this holds the multiclass, ranking and translation bars."""
  config = spec_lib.get(model).evaluation.eval_config()
  del config.model_specs[:]
  config.model_specs.add(label_key='label', prediction_key='prediction')
  for metric in config.metrics_specs[0].metrics:  # a first run: TFX rubber-stamps, no change bar
    for per_slice in metric.per_slice_thresholds:
      per_slice.threshold.ClearField('change_threshold')
  del config.slicing_specs[1:]  # the overall slice only: the frame has no feature to slice by
  frame = pd.DataFrame({'label': np.zeros(0, np.int64), 'prediction': np.zeros(0, np.float32)})
  result = tfma.analyze_raw_data(frame, config, output_path=str(tmp_path))
  assert not result.slicing_metrics
  validation = tfma.load_validation_result(str(tmp_path))
  assert not validation.validation_ok
  assert list(validation.missing_slices) == [tfma.SlicingSpec()]


def test_movielens_does_not_bless_lists_without_a_relevant_item(tmp_path):
  """Through TFMA and movielens' EvalConfig: the list with no relevant item (scored -1 everywhere,
  as unknown ids are) is left out, and a split of such lists only is NaN and not blessed."""
  config = spec_lib.get('movielens').evaluation.eval_config()
  del config.model_specs[:]
  config.model_specs.add(label_key='label', prediction_key='prediction')
  for metric in config.metrics_specs[0].metrics:  # a first run: no change bar
    for per_slice in metric.per_slice_thresholds:
      per_slice.threshold.ClearField('change_threshold')
  hit = (np.array([0, 1, 0], np.int64), np.array([0.9, 0.8, 0.1], np.float32))
  none = (np.array([0, 0, 0], np.int64), np.array([-1.0, -1.0, -1.0], np.float32))
  for name, lists, expected, blessed in [('mixed', [hit, none], 1.0, True),
                                         ('none', [none], float('nan'), False)]:
    frame = pd.DataFrame({'label': [l for l, _ in lists], 'prediction': [p for _, p in lists]})
    output = str(tmp_path / name)
    ((_, by_output),) = tfma.analyze_raw_data(frame, config, output_path=output).slicing_metrics
    hit_rate = float(by_output['']['']['hit_rate_at_10']['doubleValue'])
    assert hit_rate == pytest.approx(expected, nan_ok=True), name
    assert tfma.load_validation_result(output).validation_ok == blessed, name
