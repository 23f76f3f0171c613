"""Census income: the seed's wide, deep and wide & deep models in Keras 2 (tf_keras).

Seed: tensorflow/models official/wide_deep (census_main.py, census_dataset.py; Cheng et al. 2016,
"Wide & Deep Learning for Recommender Systems", arXiv:1606.07792).

- `wide`: a linear model (logistic regression) over one-hot categorical columns, the seed's age buckets
  and its two hashed crosses. A one-hot linear term is an Embedding of width 1, summed.
- `deep`: embeddings of every categorical column plus the numeric z-scores, through a DNN of the
  seed's 100-75-50-25 ReLU units.
- `wide_deep`: the sum of both logits.

Every model outputs the probability of `>50K` (float32 [batch, 1]).
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping

import tensorflow_transform as tft
import tf_keras

from model_fns.trainer import KerasTask, ModelInputs
from preprocessing import census

WIDE_CATEGORICAL = ('education', 'marital_status', 'relationship', 'workclass', 'occupation')
WIDE_IDS = ('age_bucket',) + tuple(census.CROSSES)
DEEP_CATEGORICAL = census.CATEGORICAL_FEATURES
DEEP_NUMERIC = ('age', 'education_num', 'capital_gain', 'capital_loss', 'hours_per_week')


def _id_sizes(tft_output: tft.TFTransformOutput) -> Dict[str, int]:
  """Number of ids of every integer-id Transform output (vocabulary + OOV, buckets, hash buckets)."""
  sizes = {key: tft_output.vocabulary_size_by_name(key) + census.NUM_OOV_BUCKETS
           for key in census.CATEGORICAL_FEATURES}
  sizes['age_bucket'] = len(census.AGE_BOUNDARIES) + 1
  sizes.update({name: buckets for name, (_, buckets) in census.CROSSES.items()})
  return sizes


class CensusTask(KerasTask):
  """Binary classification of `income_bracket` (0: <=50K, 1: >50K)."""

  label_key = census.LABEL_KEY
  classification_signature = True  # TF Serving classify: classes '0', '1' (>50K)
  model_types = ('wide_deep', 'wide', 'deep')  # the first is the default
  default_hparams = {
      'hidden_units': [100, 75, 50, 25],  # seed
      'embedding_dim': 8,  # seed: occupation embedding of 8
      'learning_rate': 0.001,
      'dropout': 0.0,
  }

  def build_model(self, inputs: ModelInputs) -> tf_keras.Model:
    sizes = _id_sizes(inputs.tft_output)
    wide_keys = WIDE_CATEGORICAL + WIDE_IDS if self.model_type != 'deep' else ()
    deep_keys = DEEP_CATEGORICAL if self.model_type != 'wide' else ()
    numeric_keys = DEEP_NUMERIC if self.model_type != 'wide' else ()
    layers = {}
    for key in sorted(set(wide_keys) | set(deep_keys)):
      layers[key] = tf_keras.Input(shape=(), dtype='int64', name=census.transformed_name(key))
    for key in numeric_keys:
      layers[key] = tf_keras.Input(shape=(), dtype='float32', name=census.transformed_name(key))

    logits: List[Any] = []
    if wide_keys:
      terms = [tf_keras.layers.Embedding(sizes[k], 1, name=f'wide_{k}')(layers[k])
               for k in wide_keys]
      logits.append(tf_keras.layers.Dense(1, name='wide_logit')(
          tf_keras.layers.Add(name='wide_sum')(terms)))
    if deep_keys:
      parts = [tf_keras.layers.Embedding(sizes[k], self.hparams['embedding_dim'],
                                         name=f'embed_{k}')(layers[k]) for k in deep_keys]
      parts += [tf_keras.layers.Reshape((1,), name=f'numeric_{k}')(layers[k])
                for k in numeric_keys]
      x = tf_keras.layers.Concatenate(name='deep_inputs')(parts)
      for i, units in enumerate(self.hparams['hidden_units']):
        x = tf_keras.layers.Dense(units, activation='relu', name=f'dnn_{i}')(x)
        if self.hparams['dropout']:
          x = tf_keras.layers.Dropout(self.hparams['dropout'])(x)
      logits.append(tf_keras.layers.Dense(1, name='deep_logit')(x))
    logit = logits[0] if len(logits) == 1 else tf_keras.layers.Add(name='logit')(logits)
    probability = tf_keras.layers.Activation('sigmoid', name='probability')(logit)
    return tf_keras.Model(
        inputs={census.transformed_name(k): v for k, v in layers.items()},
        outputs=probability, name=f'census_{self.model_type}')

  def build_optimizer(self):
    """Adam whose learning rate decays from `learning_rate` to 0 over the run's `train_steps`
    (cosine, Loshchilov & Hutter 2017, arXiv:1608.03983).

    The decay is what lets 2,000 steps (~16 epochs) beat the plain-TFX reference: with a constant
    rate the model overfits late (README, "Figures behind the defaults").
    """
    return tf_keras.optimizers.Adam(tf_keras.optimizers.schedules.CosineDecay(
        self.hparams['learning_rate'], decay_steps=self.train_steps or 1))

  def build_losses(self):
    return tf_keras.losses.BinaryCrossentropy()

  def build_metrics(self):
    return [tf_keras.metrics.BinaryAccuracy(name='accuracy'), tf_keras.metrics.AUC(name='auc')]
