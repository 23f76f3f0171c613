"""Top-k ranking metrics over candidate lists with one relevant item, as Keras metrics.

Used by TFMA in the Evaluator (named by class and module in the EvalConfig) and by the NCF trainer's
end-of-training evaluation, so the two compute the same numbers. For one relevant item per list
(the NCF protocol, He et al. 2017, arXiv:1708.05031, section 4.1):

- hit rate HR@k: 1 if the relevant item is among the k highest scores, else 0;
- NDCG@k: 1 / log2(rank + 2) if its 0-based rank is below k, else 0.

The rank is the number of candidates scored strictly higher than the relevant one (ties favour it).
Both are averaged over lists.

A list without exactly one relevant item has no rank, so neither metric is defined for it: it is
left out of the average (weight 0) rather than scored, and with no such list at all (an empty or
degenerate eval split) both metrics are NaN, never 0 or 1. Before, a list with no relevant item
ranked "it" first when every score was <= 0 (a hit), and one with two summed their scores.
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


def has_one_relevant(y_true: tf.Tensor) -> tf.Tensor:
  """Whether each list (labels [batch, candidates]) has exactly one relevant item: bool [batch]."""
  return tf.equal(tf.reduce_sum(tf.cast(tf.cast(y_true, tf.float32) > 0, tf.float32), axis=-1),
                  1.0)


class _ListMean(tf_keras.metrics.Mean):
  """Mean of a per-list value over the lists with one relevant item; NaN over none."""

  def __init__(self, k: int, name: str, **kwargs):
    super().__init__(name=name, **kwargs)
    self.k = k

  def per_list(self, rank: tf.Tensor) -> tf.Tensor:
    """The metric of each list (float32 [batch]) from the relevant item's 0-based rank."""
    raise NotImplementedError

  def update_state(self, y_true, y_pred, sample_weight=None):
    weight = tf.cast(has_one_relevant(y_true), tf.float32)
    if sample_weight is not None:  # [batch], [batch, 1] or a scalar
      weight *= tf.reshape(tf.cast(sample_weight, tf.float32), [-1])
    return super().update_state(self.per_list(rank_of_relevant(y_true, y_pred)),
                                sample_weight=weight)

  def result(self):
    return tf.where(self.count > 0, super().result(), tf.constant(float('nan')))

  def get_config(self):
    return {**super().get_config(), 'k': self.k}


class HitRateAtK(_ListMean):
  """HR@k over candidate lists ([batch, candidates] labels and scores): float32 scalar, NaN
  when no list has exactly one relevant item."""

  def __init__(self, k: int = 10, name: str = 'hit_rate', **kwargs):
    super().__init__(k=k, name=name, **kwargs)

  def per_list(self, rank):
    return tf.cast(rank < self.k, tf.float32)


class NdcgAtK(_ListMean):
  """NDCG@k over candidate lists with one relevant item ([batch, candidates] labels and scores):
  float32 scalar, NaN when no list has exactly one relevant item."""

  def __init__(self, k: int = 10, name: str = 'ndcg', **kwargs):
    super().__init__(k=k, name=name, **kwargs)

  def per_list(self, rank):
    return tf.where(rank < self.k, tf.math.log(2.0) / tf.math.log(rank + 2.0), 0.0)
