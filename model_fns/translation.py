"""Translation task of the shared trainer: the Transformer on SentencePiece ids, beam search at serving.

Training (the seed's official/transformer recipe):
- Batches are built by length, `--batch_size` counting *tokens* (the seed's convention): pairs are
  grouped in buckets of similar length, and a bucket's batch holds about `batch_size` tokens of
  its longest side. Pairs with a side longer than `max_length` subwords are left out (the seed
  drops them too; 256 there).
- Loss: cross-entropy with label smoothing 0.1 over the non-padding target tokens.
- Optimizer: Adam (beta1 0.9, beta2 0.997, epsilon 1e-9) with the seed's learning-rate schedule
  `learning_rate * hidden_size**-0.5 * min(1, step / warmup_steps) * rsqrt(max(step,
  warmup_steps))` (`TransformerSchedule`; the seed: learning_rate 2.0, warmup 16,000 steps;
  `small`: 1.0 and 500).

Serving: the model is exported with the Transform graph (raw English text in) and the SentencePiece
model of the same Transform (German text out). `serving_default` takes serialized tf.Examples with
an `inputs` string; `translate` takes the sentences themselves (tf.string [batch]). Both return
`outputs` (tf.string [batch], the best beam's detokenized text) and `scores` (float32 [batch], its
length-penalised log probability). Beam size 4 and length penalty 0.6 by default (hparams
`beam_size`, `alpha`).
"""

from __future__ import annotations

import time
from typing import Any, Dict, List, Mapping, Sequence

import tensorflow as tf
import tensorflow_text  # pylint: disable=unused-import  (registers the SentencePiece ops)
import tf_keras
from absl import logging

from model_fns import transformer
from model_fns.trainer import KerasTask, ModelInputs, TrainerConfig, TrainingData, read_records
from preprocessing import wmt

LENGTH_SUFFIX = wmt.LENGTH_SUFFIX
# The seed's schedule scale (2.0) and warm-up (16,000 steps) for base and big. The small CPU
# configuration trains for 8,000 steps in all (benchmarks/wmt.py): it warms up over 500 and peaks
# at 1.0 * 192**-0.5 * 500**-0.5 = 0.0032. Measured on wmt32k with the earlier 256-unit small
# model, 600 steps of 2,048 tokens without dropout: the scale 2.0 (peak 0.0056) led until step
# 400, then its training loss stalled (4.59 at step 540, against 4.50 with 1.0).
LEARNING_RATE = {'small': 1.0, 'base': 2.0, 'big': 2.0}
WARMUP_STEPS = {'small': 500, 'base': 16000, 'big': 16000}
BUCKET_BOUNDARIES = (8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256)


class TransformerSchedule(tf_keras.optimizers.schedules.LearningRateSchedule):
  """The seed's schedule: `learning_rate * hidden_size**-0.5 * min(1, step / warmup_steps) *
  rsqrt(max(step, warmup_steps))`, i.e. a linear warm-up to its peak at `warmup_steps`, then a
  decay as 1/sqrt(step) (Vaswani et al. 2017, section 5.3, with a scale factor)."""

  def __init__(self, learning_rate: float, hidden_size: int, warmup_steps: int):
    super().__init__()
    self.learning_rate, self.hidden_size, self.warmup_steps = (
        learning_rate, hidden_size, warmup_steps)

  def __call__(self, step):
    step = tf.cast(step, tf.float32) + 1.0  # the optimizer counts from 0
    warmup = float(self.warmup_steps)
    return (self.learning_rate * self.hidden_size ** -0.5 * tf.minimum(1.0, step / warmup)
            * tf.math.rsqrt(tf.maximum(step, warmup)))

  def get_config(self):
    return {'learning_rate': self.learning_rate, 'hidden_size': self.hidden_size,
            'warmup_steps': self.warmup_steps}


def bucket_batch_sizes(batch_tokens: int, boundaries: Sequence[int]) -> List[int]:
  """Examples per batch of each length bucket (`len(boundaries) + 1` buckets, the last for
  lengths >= the last boundary): about `batch_tokens` tokens of padded length, at least 1.
  A bucket's padded length is at most its upper boundary - 1 (the last: twice the last boundary).
  """
  limits = [b - 1 for b in boundaries] + [2 * boundaries[-1]]
  return [max(1, batch_tokens // limit) for limit in limits]


def _trim(features: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
  """One pair's ids cut to their own length (for padding per batch)."""
  return {key: features[key][:tf.minimum(features[key + LENGTH_SUFFIX], tf.shape(features[key],
                                                                                 tf.int64)[0])]
          for key in (wmt.SOURCE_KEY, wmt.TARGET_KEY)}


def _split_label(features: Dict[str, tf.Tensor]):
  return {'inputs': features[wmt.SOURCE_KEY], 'targets': features[wmt.TARGET_KEY]}, \
      features[wmt.TARGET_KEY]


class _TokenThroughput(tf_keras.callbacks.Callback):
  """Counts the non-padding target tokens trained on and the time spent (per fit epoch)."""

  def __init__(self):
    super().__init__()
    self.tokens, self.seconds, self._start = 0.0, 0.0, 0.0

  def on_epoch_begin(self, epoch, logs=None):
    self._start = time.time()

  def on_epoch_end(self, epoch, logs=None):
    elapsed = time.time() - self._start
    tokens = float((logs or {}).get('target_tokens', 0.0))
    self.tokens += tokens
    self.seconds += elapsed
    logging.info('epoch %d: %.0f target tokens/s', epoch + 1, tokens / max(elapsed, 1e-9))


class TranslationTask(KerasTask):
  """English -> German Transformer on the WMT Transform output (see the module docstring).

  Hyperparameters: `learning_rate` (the schedule's scale) and `warmup_steps` (None: by model
  type, LEARNING_RATE and WARMUP_STEPS), `max_length` (training pairs longer than this many
  subwords are left out), `label_smoothing`, `beam_size`, `alpha`, `extra_decode_length`, and
  `dropout` (None: the model type's).
  """

  label_key = wmt.TARGET_KEY
  supports_transform_in_trainer = False  # reads its records itself (length buckets)
  model_types = ('small', 'base', 'big')
  batch_unit = 'tokens'
  default_hparams = {
      'learning_rate': None,
      'warmup_steps': None,
      'max_length': 64,
      'label_smoothing': 0.1,
      'beam_size': 4,
      'alpha': 0.6,
      'extra_decode_length': 50,
      'dropout': None,
  }

  def __init__(self, params):
    super().__init__(params)
    # The SentencePiece model of the Transform output, read by `build_model`: the one thing the
    # task takes from its inputs rather than its params (the serving signatures detokenize).
    self._detokenizer = None
    self._throughput = _TokenThroughput()

  def build_model(self, inputs: ModelInputs) -> tf_keras.Model:
    """The Transformer sized by `model_type`; its vocabulary is the Transform's SentencePiece
    model (a transform graph asset), which also becomes the serving detokenizer.

    Raises:
      ValueError: the pipeline has no Transform (the model needs its SentencePiece model).
    """
    if inputs.tft_output is None:
      raise ValueError('TranslationTask needs the WMT Transform output (its SentencePiece model)')
    path = inputs.tft_output.vocabulary_file_by_name(wmt.SENTENCEPIECE_ASSET)
    with tf.io.gfile.GFile(path, 'rb') as f:
      self._detokenizer = tensorflow_text.FastSentencepieceTokenizer(f.read())
    vocab_size = int(self._detokenizer.vocab_size())
    overrides = {k: self.hparams[k] for k in ('label_smoothing', 'beam_size', 'alpha',
                                              'extra_decode_length')}
    if self.hparams['dropout'] is not None:
      overrides['dropout'] = self.hparams['dropout']
    model = transformer.build(vocab_size, self.model_type, overrides)
    logging.info('Transformer %s: vocabulary %d (%s)', self.model_type, vocab_size, path)
    return model

  def model_features(self, model, inputs):
    return [wmt.SOURCE_KEY, wmt.SOURCE_KEY + LENGTH_SUFFIX, wmt.TARGET_KEY + LENGTH_SUFFIX]

  def build_optimizer(self):
    warmup = self.hparams['warmup_steps'] or WARMUP_STEPS[self.model_type]
    scale = self.hparams['learning_rate'] or LEARNING_RATE[self.model_type]
    schedule = TransformerSchedule(scale,
                                   transformer.PARAMS[self.model_type]['hidden_size'], warmup)
    return tf_keras.optimizers.Adam(schedule, beta_1=0.9, beta_2=0.997, epsilon=1e-9)

  def compile(self, model, steps_per_execution, optimizer=None):
    model.compile(optimizer=optimizer or self.build_optimizer(),
                  steps_per_execution=steps_per_execution)

  def _examples(self, file_patterns: Sequence[str], feature_spec: Mapping[str, Any],
                training: bool, config: TrainerConfig) -> tf.data.Dataset:
    """Parsed single examples (one pair each), shuffled and repeated when `training`."""
    records = read_records(file_patterns, shuffle_files=training, seed=config.seed)
    if training:
      if config.cache_dataset:
        records = records.cache()
      records = records.shuffle(config.shuffle_buffer, seed=config.seed,
                                reshuffle_each_iteration=True).repeat()
    return (records.batch(256)
            .map(lambda r: tf.io.parse_example(r, feature_spec),
                 num_parallel_calls=tf.data.AUTOTUNE)
            .unbatch())

  def train_dataset(self, data: TrainingData) -> tf.data.Dataset:
    """Length-bucketed batches of about `batch_size` tokens, pairs longer than `max_length` left
    out: ({'inputs', 'targets'}: int64 [batch, length]), targets)."""
    max_length = int(self.hparams['max_length'])
    boundaries = [b for b in BUCKET_BOUNDARIES if b <= max_length] or [max_length]
    short = lambda f: tf.logical_and(  # pylint: disable=unnecessary-lambda-assignment
        f[wmt.SOURCE_KEY + LENGTH_SUFFIX] <= max_length,
        f[wmt.TARGET_KEY + LENGTH_SUFFIX] <= max_length)
    examples = (self._examples(data.file_patterns, data.feature_spec, True, data.config)
                .filter(short).map(_trim, num_parallel_calls=tf.data.AUTOTUNE))
    batches = examples.bucket_by_sequence_length(
        element_length_func=lambda f: tf.cast(tf.maximum(tf.shape(f[wmt.SOURCE_KEY])[0],
                                                          tf.shape(f[wmt.TARGET_KEY])[0]),
                                               tf.int32),
        bucket_boundaries=boundaries,
        bucket_batch_sizes=bucket_batch_sizes(data.config.batch_size, boundaries),
        drop_remainder=True)
    return batches.map(_split_label).prefetch(tf.data.AUTOTUNE)

  def train(self, model, data, callbacks):
    super().train(model, data, callbacks + [self._throughput])

  def evaluate(self, model, data, eval_steps=None) -> Dict[str, float]:
    """Teacher-forced loss and token accuracy on the eval split (BLEU is the Evaluator's), and the
    training throughput in target tokens/s."""
    examples = self._examples(data.file_patterns, data.feature_spec, False, data.config).map(_trim)
    batches = examples.padded_batch(64).map(_split_label)
    with model.distribute_strategy.scope():  # a pass of unknown length: one step per execution
      self.compile(model, 1, optimizer=model.optimizer)
    results = model.evaluate(batches, steps=eval_steps or None, return_dict=True, verbose=0)
    out = {k: float(v) for k, v in results.items()}
    if self._throughput.seconds:
      out['train_target_tokens_per_second'] = self._throughput.tokens / self._throughput.seconds
    return out

  def _translate(self, model: transformer.Transformer, features: Mapping[str, tf.Tensor]
                 ) -> Dict[str, tf.Tensor]:
    ids = features[wmt.SOURCE_KEY]
    length = tf.minimum(tf.reduce_max(features[wmt.SOURCE_KEY + LENGTH_SUFFIX]),
                        tf.shape(ids, tf.int64)[1])
    decoded, scores = model.translate(ids[:, :length])
    ended = tf.cumsum(tf.cast(tf.equal(decoded, transformer.EOS_ID), tf.int32), axis=1) > 0
    keep = tf.logical_and(tf.logical_not(ended), tf.not_equal(decoded, transformer.PAD_ID))
    text = self._detokenizer.detokenize(tf.ragged.boolean_mask(decoded, keep))
    return {'outputs': text, 'scores': scores}

  def serve(self, model, features, input_names):
    return self._translate(model, features)

  def extra_signatures(self, model, inputs, transform):
    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name='inputs')])
    def translate(sentences):
      return self._translate(model, transform({wmt.SOURCE_KEY: tf.reshape(sentences, [-1, 1])}))
    return {'translate': translate}
