"""HIGGS: the seed's boosted trees classifier as TensorFlow Decision Forests gradient boosted trees.

Seed: tensorflow/models official/boosted_trees/train_higgs.py, a tf.estimator BoostedTreesClassifier
(100 trees, max depth 6, learning rate 0.1; gone with tf.estimator in TF 2.16). Here:
`tfdf.keras.GradientBoostedTreesModel` (Guillame-Bert et al. 2023, "Yggdrasil Decision Forests",
KDD, arXiv:2212.02934) with the same three settings; its other settings are TF-DF's defaults, among
them early stopping on a 10% validation slice of the training rows (`validation_ratio`).

The model reads the 28 raw float features (no Transform: see preprocessing.higgs) and outputs the
probability of signal (float32 [batch, 1]). TF-DF does not train by gradient steps: `train` makes one
pass over the training split to collect it, then the Yggdrasil learner grows the trees in C++, on all
cores of this machine. It runs under the default strategy only.
"""

from __future__ import annotations

import time
from typing import Any, List, Mapping, Optional

import tensorflow_decision_forests as tfdf
import tf_keras
from absl import logging

from model_fns import training_progress
from model_fns.trainer import KerasTask, ModelInputs, TrainingData
from preprocessing import higgs


class HiggsTask(KerasTask):
  """Binary classification of `label` (1: signal, 0: background) with gradient boosted trees."""

  label_key = higgs.LABEL_KEY
  classification_signature = True  # TF Serving classify: classes '0', '1' (signal)
  model_types = ('gradient_boosted_trees',)
  distribution_strategies = ('default',)
  default_hparams = {
      'num_trees': 100,  # seed: n_trees
      'max_depth': 6,  # seed: max_depth
      'learning_rate': 0.1,  # seed: learning_rate (TF-DF: shrinkage)
      'validation_ratio': 0.1,  # TF-DF default: rows held out for early stopping
      'num_threads': None,  # TF-DF default: every core
  }

  def build_model(self, inputs: ModelInputs) -> tf_keras.Model:
    missing = sorted(set(higgs.FEATURES) - set(inputs.feature_spec))
    if missing:
      raise ValueError(f'the examples lack the HIGGS features {missing}')
    extra = {'num_threads': self.hparams['num_threads']} if self.hparams['num_threads'] else {}
    return tfdf.keras.GradientBoostedTreesModel(
        task=tfdf.keras.Task.CLASSIFICATION,
        features=[tfdf.keras.FeatureUsage(name=f, semantic=tfdf.keras.FeatureSemantic.NUMERICAL)
                  for f in higgs.FEATURES],
        exclude_non_specified_features=True,
        num_trees=self.hparams['num_trees'], max_depth=self.hparams['max_depth'],
        shrinkage=self.hparams['learning_rate'], validation_ratio=self.hparams['validation_ratio'],
        random_seed=1234, verbose=0, **extra)

  def model_features(self, model: tf_keras.Model, inputs: ModelInputs) -> List[str]:
    return list(higgs.FEATURES)

  def build_metrics(self) -> List[tf_keras.metrics.Metric]:
    return [tf_keras.metrics.BinaryAccuracy(name='accuracy'), tf_keras.metrics.AUC(name='auc')]

  def compile(self, model: tf_keras.Model, steps_per_execution: int,
              optimizer: Optional[tf_keras.optimizers.Optimizer] = None) -> None:
    model.compile(metrics=self.build_metrics())  # no optimizer, no loss: trees

  def train(self, model: tf_keras.Model, data: TrainingData,
            callbacks: List[tf_keras.callbacks.Callback]) -> None:
    """One pass over the training split, then the Yggdrasil learner.

    Raises:
      ValueError: `train_steps` is set (the number of trees, not steps, sets the training length).
    """
    if self.train_steps:
      raise ValueError('gradient boosted trees train on one pass over the data: leave train_steps '
                       'unset and set num_trees instead')
    # TF-DF reports nothing while it reads the split and grows the trees (one C++ call): the
    # progress display gets the start and the end.
    started = time.time()
    training_progress.note(f'TF-DF: reading the split, then up to {self.hparams["num_trees"]} trees '
                           '(no progress until done)')
    model.fit(data.one_pass(), callbacks=callbacks, verbose=0)
    inspector = model.make_inspector()
    logging.info('Trained %d trees on %d examples', inspector.num_trees(),
                 inspector.dataspec.created_num_rows)
    training_progress.note(f'TF-DF: {inspector.num_trees()} trees on '
                           f'{inspector.dataspec.created_num_rows:,} examples in '
                           f'{time.time() - started:.1f} s')
