"""Corpus BLEU as a TFMA metric, computed by sacrebleu (Post 2018, "A Call for Clarity in Reporting
BLEU Scores", WMT) on the model's detokenized output.

TFMA 0.47 ships a BLEU metric, but its value is a sacrebleu `BLEUScore` object, which TFMA's
blessing thresholds cannot compare (they call `float()` on it). `SacreBleu` keeps sacrebleu's own
corpus computation (`sacrebleu.metrics.BLEU.corpus_score`: 13a tokenization, exponential smoothing,
one reference) and reports the score as a float in BLEU points (0-100). Its accumulator holds the
sentence pairs (hypothesis, reference) of the slice, so it is meant for test sets of the WMT size
(a few thousand sentences), not for millions.

Labels and predictions are strings: the raw reference (the `targets` feature) and the model's
`outputs`.
"""

from __future__ import annotations

from typing import Any, Dict, Iterable, List, Optional, Tuple

import apache_beam as beam
import numpy as np
import sacrebleu
import tensorflow_model_analysis as tfma
from tensorflow_model_analysis.metrics import metric_types, metric_util

Pairs = List[Tuple[str, str]]


def _text(value: Any) -> str:
  """A label or prediction (bytes, str, or a one-element array of them) as text."""
  array = np.asarray(value, dtype=object).reshape(-1)
  if array.size != 1:
    raise ValueError(f'expected one sentence per example, got {array.size}')
  item = array[0]
  return item.decode('utf-8') if isinstance(item, bytes) else str(item)


def corpus_bleu(hypotheses: List[str], references: List[str], lowercase: bool = False) -> float:
  """sacrebleu's corpus BLEU (0-100) of detokenized hypotheses against one reference each.

  Returns:
    The score (float), or NaN where BLEU is undefined: no sentence pair, or references without a
    single token (no n-gram to match and no length for the brevity penalty). A blessing bar then
    fails instead of resting on a 0 that says nothing about the model.

  Raises:
    ValueError: different numbers of hypotheses and references.
  """
  if len(hypotheses) != len(references):
    raise ValueError(f'{len(hypotheses)} hypotheses but {len(references)} references')
  if not hypotheses:
    return float('nan')
  bleu = sacrebleu.metrics.BLEU(lowercase=lowercase, tokenize='13a')
  score = bleu.corpus_score(hypotheses, [references])
  if score.ref_len == 0:
    return float('nan')
  return float(score.score)


class _BleuCombiner(beam.CombineFn):
  """Collects (hypothesis, reference) pairs and scores them as one corpus."""

  def __init__(self, key: metric_types.MetricKey, eval_config: Optional[tfma.EvalConfig],
               model_name: str, output_name: str, lowercase: bool):
    self._key, self._eval_config = key, eval_config
    self._model_name, self._output_name, self._lowercase = model_name, output_name, lowercase

  def create_accumulator(self) -> Pairs:
    return []

  def add_input(self, accumulator: Pairs, element: metric_types.StandardMetricInputs) -> Pairs:
    for label, prediction, _ in metric_util.to_label_prediction_example_weight(
        element, eval_config=self._eval_config, model_name=self._model_name,
        output_name=self._output_name, example_weighted=False, flatten=False, squeeze=False):
      accumulator.append((_text(prediction), _text(label)))
    return accumulator

  def merge_accumulators(self, accumulators: Iterable[Pairs]) -> Pairs:
    merged: Pairs = []
    for accumulator in accumulators:
      merged.extend(accumulator)
    return merged

  def extract_output(self, accumulator: Pairs) -> Dict[metric_types.MetricKey, float]:
    hypotheses = [h for h, _ in accumulator]
    references = [r for _, r in accumulator]
    return {self._key: corpus_bleu(hypotheses, references, self._lowercase)}


def _computations(name: str, lowercase: bool, eval_config=None, model_names=None,
                  output_names=None, sub_keys=None, example_weighted=False,
                  **kwargs) -> metric_types.MetricComputations:
  del sub_keys, kwargs
  computations = []
  for model_name in model_names or ['']:
    for output_name in output_names or ['']:
      key = metric_types.MetricKey(name=name, model_name=model_name, output_name=output_name,
                                   example_weighted=example_weighted)
      computations.append(metric_types.MetricComputation(
          keys=[key], preprocessors=None,
          combiner=_BleuCombiner(key, eval_config, model_name, output_name, lowercase)))
  return computations


class SacreBleu(metric_types.Metric):
  """Corpus BLEU (sacrebleu, 13a tokenization) in BLEU points; `lowercase=True` for uncased BLEU.
  NaN for a slice where BLEU is undefined (see `corpus_bleu`).

  EvalConfig use: `tfma.MetricConfig(class_name='SacreBleu',
  module='model_fns.translation_metrics', config='{"name": "bleu_uncased", "lowercase": true}')`.
  """

  def __init__(self, name: str = 'bleu', lowercase: bool = False):
    super().__init__(_computations, name=name, lowercase=lowercase)
