"""Top-k ranking metrics over candidate lists with one relevant item, as Keras metrics.

Used by TFMA in the Evaluator (named by class and module in the EvalConfig) and by the NCF trainer's
end-of-training evaluation, so the two compute the same numbers. For one relevant item per list
(the NCF protocol, He et al. 2017, arXiv:1708.05031, section 4.1):

- hit rate HR@k: 1 if the relevant item is among the k highest scores, else 0;
- NDCG@k: 1 / log2(rank + 2) if its 0-based rank is below k, else 0.

The rank is the number of candidates scored strictly higher than the relevant one (ties favour it).
Both are averaged over lists.
"""

from __future__ import annotations

import tensorflow as tf
import tf_keras


def rank_of_relevant(y_true: tf.Tensor, y_pred: tf.Tensor) -> tf.Tensor:
  """0-based rank (float32 [batch]) of the item whose label is 1 in each list.

  Args:
    y_true: [batch, candidates] labels, 1 for the relevant item and 0 elsewhere.
    y_pred: [batch, candidates] scores.
  """
  y_true = tf.cast(y_true, tf.float32)
  y_pred = tf.cast(y_pred, tf.float32)
  relevant = tf.reduce_sum(y_true * y_pred, axis=-1, keepdims=True)
  return tf.reduce_sum(tf.cast(y_pred > relevant, tf.float32), axis=-1)


class HitRateAtK(tf_keras.metrics.Mean):
  """HR@k over candidate lists ([batch, candidates] labels and scores)."""

  def __init__(self, k: int = 10, name: str = 'hit_rate', **kwargs):
    super().__init__(name=name, **kwargs)
    self.k = k

  def update_state(self, y_true, y_pred, sample_weight=None):
    hits = tf.cast(rank_of_relevant(y_true, y_pred) < self.k, tf.float32)
    return super().update_state(hits, sample_weight=sample_weight)

  def get_config(self):
    return {**super().get_config(), 'k': self.k}


class NdcgAtK(tf_keras.metrics.Mean):
  """NDCG@k over candidate lists with one relevant item ([batch, candidates] labels and scores)."""

  def __init__(self, k: int = 10, name: str = 'ndcg', **kwargs):
    super().__init__(name=name, **kwargs)
    self.k = k

  def update_state(self, y_true, y_pred, sample_weight=None):
    rank = rank_of_relevant(y_true, y_pred)
    gain = tf.where(rank < self.k, tf.math.log(2.0) / tf.math.log(rank + 2.0), 0.0)
    return super().update_state(gain, sample_weight=sample_weight)

  def get_config(self):
    return {**super().get_config(), 'k': self.k}
