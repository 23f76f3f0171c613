"""NCF: NeuMF (GMF + MLP) on MovieLens implicit feedback, as in the seed's official/recommendation.

He, Liao, Zhang, Nie, Hu & Chua (2017), "Neural Collaborative Filtering", WWW, arXiv:1708.05031.
NeuMF concatenates a generalized matrix factorization branch (the element-wise product of user and
item embeddings of `num_factors`) and an MLP branch (user and item embeddings of `layers[0] / 2`
each, then ReLU layers `layers[1:]`) into one logit. Seed defaults (ml-1m): 8 factors, layers
64-32-16-8; the seed's benchmark setting: 64 factors, layers 256-256-128-64. Adam, batch 256,
4 sampled negatives per positive, binary cross-entropy.

Training (`train`) runs by epochs over the per-user training rows: every epoch draws fresh negatives,
`num_neg` per positive, uniformly among the items of the vocabulary the user never rated (a draw
that hits a rated item is drawn again, up to 8 times), from a seed and the epoch number. Serving
scores (user, candidate items): `serving_default` takes the raw per-user tf.Examples (`user`,
`items`) and `score_candidates` takes id tensors; an id unknown to the training split gets the
score -1 and is flagged in `known_user` / `known_items`.
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Sequence

import numpy as np
import tensorflow as tf
import tf_keras
from absl import logging

from model_fns import ranking_metrics
from model_fns.trainer import KerasTask, ModelInputs, TrainerConfig, TrainingData, read_records
from preprocessing import movielens

UNKNOWN_SCORE = -1.0
_REDRAWS = 8


class NCFTask(KerasTask):
  """NeuMF trained on (user, item, 0/1) pairs; evaluated and served on candidate lists."""

  label_key = movielens.LABELS
  supports_transform_in_trainer = False  # reads its records itself (candidate lists, epochs)
  model_types = ('neumf', 'gmf', 'mlp')
  distribution_strategies = ('default', 'one_device', 'mirrored', 'multi_worker')
  default_hparams = {
      'num_factors': 8,  # seed (ml-1m)
      'layers': [64, 32, 16, 8],  # seed (ml-1m)
      'num_neg': 4,  # seed
      'learning_rate': 0.001,  # seed
      'train_epochs': 20,
      'seed': 0,
  }

  def build_model(self, inputs: ModelInputs) -> tf_keras.Model:
    """NeuMF, GMF or MLP (`model_type`) over user_xf and item_xf (int64 [batch], the Transform's
    vocabulary indices) -> float32 [batch, 1] probability of a positive. The embeddings have one
    row per vocabulary entry and one more for the OOV index (ids not in the training split)."""
    tft_output = inputs.tft_output
    users = tft_output.vocabulary_size_by_name(movielens.USER) + 1
    items = tft_output.vocabulary_size_by_name(movielens.ITEM) + 1
    user = tf_keras.Input(shape=(), dtype='int64', name='user_xf')
    item = tf_keras.Input(shape=(), dtype='int64', name='item_xf')
    branches = []
    if self.model_type in ('neumf', 'gmf'):
      factors = self.hparams['num_factors']
      branches.append(tf_keras.layers.Multiply(name='gmf')([
          tf_keras.layers.Embedding(users, factors, name='gmf_user')(user),
          tf_keras.layers.Embedding(items, factors, name='gmf_item')(item)]))
    if self.model_type in ('neumf', 'mlp'):
      layers = list(self.hparams['layers'])
      if layers[0] % 2:
        raise ValueError(f'layers[0] must be even (two embeddings of half), got {layers[0]}')
      x = tf_keras.layers.Concatenate(name='mlp_input')([
          tf_keras.layers.Embedding(users, layers[0] // 2, name='mlp_user')(user),
          tf_keras.layers.Embedding(items, layers[0] // 2, name='mlp_item')(item)])
      for i, units in enumerate(layers[1:]):
        x = tf_keras.layers.Dense(units, activation='relu', name=f'mlp_{i}')(x)
      branches.append(x)
    x = branches[0] if len(branches) == 1 else tf_keras.layers.Concatenate(name='neumf')(branches)
    score = tf_keras.layers.Dense(1, activation='sigmoid', name='score')(x)
    return tf_keras.Model({'user_xf': user, 'item_xf': item}, score, name=self.model_type)

  def model_features(self, model: tf_keras.Model, inputs: ModelInputs) -> List[str]:
    return ['user_xf', 'items_xf', 'rated_xf']

  def build_optimizer(self):
    return tf_keras.optimizers.Adam(self.hparams['learning_rate'])

  def build_losses(self):
    return tf_keras.losses.BinaryCrossentropy()

  def build_metrics(self):
    return [tf_keras.metrics.AUC(name='pair_auc')]

  def vocabulary_sizes(self, model: tf_keras.Model) -> Tuple[int, int]:
    """(users, items) the model knows: its user and item embeddings' rows less the OOV row."""
    branch = 'mlp' if self.model_type == 'mlp' else 'gmf'
    return (model.get_layer(f'{branch}_user').input_dim - 1,
            model.get_layer(f'{branch}_item').input_dim - 1)

  def _pairs(self, data: TrainingData, num_items: int, epoch: int) -> tf.data.Dataset:
    """One epoch of shuffled (user, item) -> 0/1 batches, with freshly drawn negatives among
    the `num_items` known items."""
    num_neg, seed = self.hparams['num_neg'], self.hparams['seed']
    feature_spec = {k: data.feature_spec[k] for k in ('user_xf', 'items_xf', 'rated_xf')}

    def expand(serialized):
      row = tf.io.parse_single_example(serialized, feature_spec)
      user = tf.reshape(row['user_xf'], [])
      positives = tf.sparse.to_dense(row['items_xf'])
      rated = tf.sparse.to_dense(row['rated_xf'])
      count = tf.size(positives) * num_neg
      draws = tf.random.stateless_uniform(
          [count, _REDRAWS], seed=tf.stack([tf.cast(seed * 10_000 + epoch, tf.int64), user]),
          maxval=num_items, dtype=tf.int64)
      free = tf.reduce_all(tf.not_equal(draws[:, :, None], rated[None, None, :]), axis=-1)
      negatives = tf.gather(draws, tf.argmax(tf.cast(free, tf.int32), axis=1), batch_dims=1)
      items = tf.concat([positives, negatives], 0)
      labels = tf.concat([tf.ones_like(positives, tf.float32), tf.zeros([count], tf.float32)], 0)
      users = tf.fill(tf.shape(items), user)
      return tf.data.Dataset.from_tensor_slices(({'user_xf': users, 'item_xf': items}, labels))

    return (read_records(data.file_patterns)
            .flat_map(expand)
            .shuffle(data.config.shuffle_buffer, seed=seed * 10_000 + epoch)
            .batch(data.config.batch_size)
            .prefetch(tf.data.AUTOTUNE))

  def train(self, model: tf_keras.Model, data: TrainingData,
            callbacks: List[tf_keras.callbacks.Callback]) -> None:
    """`train_epochs` epochs, each with new negatives.

    Raises:
      ValueError: `train_steps` is set (the length is `train_epochs`).
    """
    if self.train_steps:
      raise ValueError('NCF trains by epochs over the users: set train_epochs, not train_steps')
    positives = sum(int(n) for n in read_records(data.file_patterns).map(
        lambda s: tf.size(tf.io.parse_single_example(
            s, {'items_xf': data.feature_spec['items_xf']})['items_xf'].values)))
    pairs = positives * (1 + self.hparams['num_neg'])
    steps = -(-pairs // data.config.batch_size)  # every batch, the last partial one included
    logging.info('%d training positives, %d pairs and %d steps per epoch', positives, pairs, steps)
    _, num_items = self.vocabulary_sizes(model)
    for epoch in range(self.hparams['train_epochs']):
      history = model.fit(self._pairs(data, num_items, epoch),
                          initial_epoch=epoch, epochs=epoch + 1, steps_per_epoch=steps,
                          callbacks=callbacks, verbose=0)
      logging.info('epoch %d: %s', epoch + 1,
                   {k: round(float(v[-1]), 4) for k, v in history.history.items()})

  def _score_lists(self, model: tf_keras.Model, user: tf.Tensor, items: tf.Tensor
                   ) -> Dict[str, tf.Tensor]:
    """user_xf [batch], items_xf [batch, candidates] (indices) -> scores and known flags."""
    candidates = tf.shape(items)[1]
    users = tf.repeat(user, candidates)
    scores = model({'user_xf': users, 'item_xf': tf.reshape(items, [-1])}, training=False)
    scores = tf.reshape(scores, tf.shape(items))
    num_users, num_items = self.vocabulary_sizes(model)
    known_user = user < num_users
    known_items = items < num_items
    known = tf.logical_and(known_user[:, None], known_items)
    return {'scores': tf.where(known, scores, UNKNOWN_SCORE), 'known_user': known_user,
            'known_items': known_items}

  def serve(self, model, features, input_names):
    """Transformed per-user examples -> `scores` float32 [batch, candidates] (probability of a
    positive, -1 for unknown ids), `known_user` bool [batch], `known_items` bool [batch, C]."""
    user = tf.reshape(features['user_xf'], [-1])
    items = tf.sparse.to_dense(features['items_xf'], default_value=self.vocabulary_sizes(model)[1])
    return self._score_lists(model, user, items)

  def extra_signatures(self, model, inputs, transform):
    @tf.function(input_signature=[tf.TensorSpec([None], tf.int64, name='user'),
                                  tf.TensorSpec([None, None], tf.int64, name='items')])
    def score_candidates(user, items):
      """Raw MovieLens ids: user int64 [batch], items int64 [batch, C] -> as `serve`."""
      every = tf.where(tf.ones_like(items, tf.bool))  # all positions, zeros included
      raw = {movielens.USER: tf.reshape(user, [-1, 1]),
             movielens.ITEMS: tf.SparseTensor(every, tf.gather_nd(items, every),
                                              tf.shape(items, out_type=tf.int64))}
      return self.serve(model, transform(raw), ())
    return {'score_candidates': score_candidates}

  def evaluate(self, model, data: TrainingData, eval_steps=None) -> Dict[str, float]:
    """HR@10 and NDCG@10 on the eval candidate lists (ranking_metrics, as TFMA computes them)."""
    spec = {'user_xf': data.feature_spec['user_xf'], 'items_xf': data.feature_spec['items_xf'],
            movielens.LABELS: tf.io.VarLenFeature(tf.int64)}
    hit_rate, ndcg = ranking_metrics.HitRateAtK(10), ranking_metrics.NdcgAtK(10)
    for batch in (read_records(data.file_patterns)
                  .batch(data.config.eval_batch_size)
                  .map(lambda s: tf.io.parse_example(s, spec))):
      scores = self.serve(model, batch, ())['scores']
      labels = tf.sparse.to_dense(batch[movielens.LABELS])
      hit_rate.update_state(labels, scores)
      ndcg.update_state(labels, scores)
    return {'hit_rate_at_10': float(hit_rate.result()), 'ndcg_at_10': float(ndcg.result())}


def item_popularity_baseline(train_items: Sequence[np.ndarray], eval_items: np.ndarray,
                             eval_labels: np.ndarray, k: int = 10) -> Dict[str, float]:
  """ItemPop: every list ranked by how often each item is a training positive.

  Args:
    train_items: per user, the training positives (raw ids).
    eval_items: int [users, candidates] raw ids; eval_labels: 0/1 of the same shape.

  Returns:
    {'hit_rate_at_<k>', 'ndcg_at_<k>'} of that ranking (He et al. 2017 report ItemPop as a baseline).
  """
  counts: Dict[int, int] = {}
  for items in train_items:
    for item in items:
      counts[int(item)] = counts.get(int(item), 0) + 1
  scores = np.vectorize(lambda i: counts.get(int(i), 0))(eval_items).astype(np.float32)
  hit_rate, ndcg = ranking_metrics.HitRateAtK(k), ranking_metrics.NdcgAtK(k)
  hit_rate.update_state(eval_labels, scores)
  ndcg.update_state(eval_labels, scores)
  return {f'hit_rate_at_{k}': float(hit_rate.result()), f'ndcg_at_{k}': float(ndcg.result())}
