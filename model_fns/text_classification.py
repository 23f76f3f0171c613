"""Sentence-pair classification with BERT (GLUE MRPC): the shared trainer's task.

The seed's recipe (google-research/bert run_classifier.py, and the BERT paper's GLUE fine-tuning):
the pooled [CLS] output, dropout 0.1, a classification layer; AdamW (weight decay 0.01, not on
layer-norm parameters and biases) with linear warmup over the first 10% of the steps and linear
decay to 0; learning rate 2e-5, batch 32, 3 epochs (344 steps of MRPC's 3,668 training pairs),
sequences of 128 tokens. Here the head is one sigmoid unit (the positive class's probability, the
same model as a 2-way softmax), so the export serves `probabilities` [batch, 1] and `class_ids`.

Model types: `bert_tiny` (L-2/H-128/A-2, Turc et al. 2019), `bert_base` (L-12/H-768/A-12),
`bert_large` (L-24/H-1024/A-16). Hyperparameter `init_checkpoint`: the prefix of a Google BERT
checkpoint (`.../bert_model.ckpt`, with `bert_config.json` beside it, whose sizes then replace the
model type's); its encoder weights are loaded (`model_fns.bert.load_google_checkpoint`). Without
it, the encoder trains from scratch, for which the default learning rate is 1e-4 (2e-5 is tuned
for fine-tuning; `--learning_rate=2e-5` restores it).

The Transform graph holds tensorflow-text ops (WordPiece): this module imports tensorflow_text so
that the Trainer can load it, and the pipeline's Evaluator imports it too (`model_ops_module`). A
client of the exported model imports tensorflow_text before `tf.saved_model.load`.
"""

from __future__ import annotations

import os
from typing import Any, Dict, Mapping

import tensorflow as tf
import tensorflow_text  # noqa: F401  pylint: disable=unused-import  # the Transform graph's ops
import tf_keras

from model_fns import bert
from model_fns.trainer import KerasTask, ModelInputs
from preprocessing import mrpc


class WarmupLinearDecay(tf_keras.optimizers.schedules.LearningRateSchedule):
  """lr(step) = peak * step / warmup_steps during the warmup, then linear decay to 0 at
  `total_steps` (google-research/bert optimization.py)."""

  def __init__(self, peak: float, total_steps: int, warmup_fraction: float = 0.1):
    super().__init__()
    if total_steps <= 0 or not 0 <= warmup_fraction < 1:
      raise ValueError(f'bad schedule: {total_steps} steps, warmup {warmup_fraction}')
    self.peak, self.total_steps, self.warmup_fraction = peak, total_steps, warmup_fraction
    self._warmup = max(int(warmup_fraction * total_steps), 1)

  def __call__(self, step):
    step = tf.cast(step, tf.float32)
    warm = self.peak * step / self._warmup
    decay = self.peak * tf.maximum(0.0, (self.total_steps - step)
                                   / max(self.total_steps - self._warmup, 1))
    return tf.where(step < self._warmup, warm, decay)

  def get_config(self) -> Dict[str, Any]:
    return {'peak': self.peak, 'total_steps': self.total_steps,
            'warmup_fraction': self.warmup_fraction}


class BertClassifierTask(KerasTask):
  """Binary classification of `label` from the Transform's `input_word_ids`, `input_mask` and
  `input_type_ids` (int64 [batch, 128]) -> float32 [batch, 1] probabilities."""

  label_key = mrpc.LABEL_KEY
  classification_signature = True  # TF Serving classify: '0', '1' (paraphrase)
  model_types = ('bert_tiny', 'bert_base', 'bert_large')
  default_hparams = {
      'learning_rate': 1e-4,  # from scratch; the seed's fine-tuning rate is 2e-5
      'warmup_fraction': 0.1,  # seed
      'weight_decay': 0.01,  # seed
      'dropout': 0.1,  # seed (hidden_dropout_prob)
      'init_checkpoint': '',  # a Google BERT checkpoint prefix, or '' to train from scratch
  }

  def bert_config(self) -> bert.BertConfig:
    """The model type's sizes, or those of the `init_checkpoint`'s bert_config.json.

    Raises:
      ValueError: a checkpoint without bert_config.json beside it.
    """
    checkpoint = self.hparams['init_checkpoint']
    if not checkpoint:
      return bert.BertConfig.named(self.model_type[len('bert_'):])
    config = bert.checkpoint_config(os.path.dirname(checkpoint))
    if config is None:
      raise ValueError(f'{checkpoint}: no bert_config.json beside the checkpoint')
    return config

  def build_model(self, inputs: ModelInputs) -> tf_keras.Model:
    config = self.bert_config()
    if config.max_position_embeddings < mrpc.MAX_LENGTH:
      raise ValueError(f'the inputs have {mrpc.MAX_LENGTH} tokens but the checkpoint has '
                       f'{config.max_position_embeddings} positions')
    encoder = bert.build_encoder(config)
    if self.hparams['init_checkpoint']:
      bert.load_google_checkpoint(encoder, self.hparams['init_checkpoint'])
    features = {name: tf_keras.Input(shape=(mrpc.MAX_LENGTH,), dtype='int64', name=name)
                for name in (mrpc.WORD_IDS, mrpc.MASK, mrpc.TYPE_IDS)}
    ids = [tf.cast(features[name], tf.int32) for name in (mrpc.WORD_IDS, mrpc.MASK,
                                                          mrpc.TYPE_IDS)]
    pooled = encoder(tuple(ids))['pooled_output']
    pooled = tf_keras.layers.Dropout(self.hparams['dropout'], name='classifier_dropout')(pooled)
    probabilities = tf_keras.layers.Dense(
        1, activation='sigmoid', name='probabilities',
        kernel_initializer=tf_keras.initializers.TruncatedNormal(
            stddev=config.initializer_range))(pooled)
    return tf_keras.Model(inputs=features, outputs=probabilities, name=f'mrpc_{self.model_type}')

  def build_optimizer(self):
    schedule = WarmupLinearDecay(self.hparams['learning_rate'], self.train_steps or 1,
                                 self.hparams['warmup_fraction'])
    optimizer = tf_keras.optimizers.AdamW(schedule, weight_decay=self.hparams['weight_decay'],
                                          beta_1=0.9, beta_2=0.999, epsilon=1e-6)
    optimizer.exclude_from_weight_decay(var_names=['layer_norm', 'bias'])
    return optimizer

  def build_losses(self):
    return tf_keras.losses.BinaryCrossentropy()

  def build_metrics(self):
    return [tf_keras.metrics.BinaryAccuracy(name='accuracy')]
