"""The shared TFX Trainer `run_fn`: one trainer for every model, driven by a `KerasTask`.

The Trainer component names `model_fns.trainer.run_fn` by module path and passes a `TrainerConfig`
as its `custom_config`. `run_fn` builds the task's Keras model inside the chosen tf.distribute
strategy, trains it on the Transform output, and exports a SavedModel whose `serving_default` takes
serialized raw tf.Examples (TF Serving's predict format, input `examples`, string [batch]) and applies
the Transform graph inside, so a client sends raw features only.

The task abstraction follows Model Garden's `Task` (build_model / build_losses / build_metrics), with
the data and export parts shared here.
"""

from __future__ import annotations

import abc
import dataclasses
import json
import os
import time
from typing import Any, Dict, List, Mapping, Optional, Sequence

os.environ.setdefault('TF_USE_LEGACY_KERAS', '1')  # tf.Transform 1.16 needs Keras 2.

import tensorflow as tf
import tensorflow_transform as tft
import tf_keras
from absl import logging
from tfx.components.trainer.fn_args_utils import FnArgs
from tfx.utils import import_utils

from model_fns import strategy as strategy_lib

SERVING_INPUT = 'examples'


def _autograph_skips_tf_keras() -> None:
  """Stops AutoGraph from transpiling tf_keras itself, as it already skips `keras`.

  TF 2.16's AutoGraph rules (tensorflow/python/autograph/core/config.py) list DoNotConvert('keras')
  but not 'tf_keras', so the first trace of a tf_keras train step converts ~4,900 library functions:
  measured here, 30-40 s of the census Trainer's 49 s and most of its export. The rule is what
  'keras' already gets; tf_keras code is graph-safe by construction.
  """
  from tensorflow.python.autograph.core import config as autograph_config  # pylint: disable=g-direct-tensorflow-import
  if not any(getattr(rule, '_prefix', None) == 'tf_keras'
             for rule in autograph_config.CONVERSION_RULES):
    autograph_config.CONVERSION_RULES = (
        (autograph_config.DoNotConvert('tf_keras'),) + tuple(autograph_config.CONVERSION_RULES))


_autograph_skips_tf_keras()


@dataclasses.dataclass
class TrainerConfig:
  """What the shared trainer needs beyond TFX's FnArgs; travels as the Trainer's custom_config.

  Attributes:
    task: module path of the KerasTask class, e.g. `model_fns.census.CensusTask`.
    model_type: one of the task's `model_types`.
    hparams: overrides of the task's `default_hparams`.
    batch_size: global training batch size (examples per step, across all replicas).
    eval_batch_size: batch size of the end-of-training evaluation.
    distribution_strategy, num_gpus, tpu: see `model_fns.strategy.get_strategy`.
    steps_per_execution: training steps run inside one tf.function call (fewer Python round trips).
    cache_dataset: keep the serialized training examples in memory after the first pass.
    shuffle_buffer: examples in the shuffle buffer.
    log_every_steps: training steps between two logged loss lines (and TensorBoard points).
    seed: random seed of TensorFlow, file order and shuffling.
  """
  task: str
  model_type: str
  hparams: Dict[str, Any] = dataclasses.field(default_factory=dict)
  batch_size: int = 256
  eval_batch_size: int = 1024
  distribution_strategy: str = 'default'
  num_gpus: int = 0
  tpu: Optional[str] = None
  steps_per_execution: int = 50
  cache_dataset: bool = True
  shuffle_buffer: int = 50_000
  log_every_steps: int = 500
  seed: int = 42

  def to_custom_config(self) -> Dict[str, Any]:
    return dataclasses.asdict(self)

  @classmethod
  def from_custom_config(cls, config: Mapping[str, Any]) -> 'TrainerConfig':
    known = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in config.items() if k in known})


class KerasTask(abc.ABC):
  """One model family: its Keras model, loss, metrics and serving outputs.

  Subclasses set `label_key`, `model_types` and `default_hparams`, and implement `build_model`.
  """
  label_key: str
  model_types: Sequence[str] = ('default',)
  default_hparams: Mapping[str, Any] = {}

  def hparams(self, overrides: Mapping[str, Any]) -> Dict[str, Any]:
    """The task's defaults updated with `overrides`; raises ValueError on an unknown name."""
    unknown = set(overrides) - set(self.default_hparams)
    if unknown:
      raise ValueError(f'unknown hyperparameters {sorted(unknown)} for {type(self).__name__}; '
                       f'known: {sorted(self.default_hparams)}')
    return {**self.default_hparams, **overrides}

  @abc.abstractmethod
  def build_model(self, tft_output: tft.TFTransformOutput, model_type: str,
                  hparams: Mapping[str, Any]) -> tf_keras.Model:
    """Returns an uncompiled Keras model over the Transform outputs (called in strategy scope)."""

  @abc.abstractmethod
  def build_optimizer(self, hparams: Mapping[str, Any]) -> tf_keras.optimizers.Optimizer:
    """Returns the optimizer (called in strategy scope)."""

  @abc.abstractmethod
  def build_losses(self, hparams: Mapping[str, Any]) -> tf_keras.losses.Loss:
    """Returns the training loss."""

  def build_metrics(self, hparams: Mapping[str, Any]) -> List[tf_keras.metrics.Metric]:
    """Returns the Keras metrics logged during training (the blessing uses TFMA's, not these)."""
    return []

  def serving_outputs(self, predictions: tf.Tensor) -> Dict[str, tf.Tensor]:
    """Maps the model output to the serving signature's outputs.

    Default: `probabilities` (float32, the model output: [batch, 1] for binary, [batch, classes]
    otherwise) and `class_ids` (int64 [batch, 1]: 0.5 threshold, or arg max).
    """
    if predictions.shape[-1] == 1:
      class_ids = tf.cast(predictions > 0.5, tf.int64)
    else:
      class_ids = tf.expand_dims(tf.argmax(predictions, axis=-1), -1)
    return {'probabilities': predictions, 'class_ids': class_ids}


def make_dataset(file_patterns: Sequence[str], feature_spec: Mapping[str, Any], label_key: str,
                 batch_size: int, training: bool, cache: bool = False, shuffle_buffer: int = 10_000,
                 seed: Optional[int] = None) -> tf.data.Dataset:
  """(features, label) batches from gzipped TFRecords of transformed tf.Examples.

  Only the features of `feature_spec` (and the label) are parsed. Training data is shuffled and
  repeated forever (batches of exactly `batch_size`); evaluation data is one ordered pass (the last
  batch may be smaller).
  """
  files = tf.data.Dataset.list_files(list(file_patterns), shuffle=training, seed=seed)
  dataset = tf.data.TFRecordDataset(files, compression_type='GZIP',
                                    num_parallel_reads=tf.data.AUTOTUNE)
  if cache:
    dataset = dataset.cache()
  if training:
    dataset = dataset.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True).repeat()
  dataset = dataset.batch(batch_size, drop_remainder=training)

  def parse(serialized):
    features = tf.io.parse_example(serialized, feature_spec)
    label = features.pop(label_key)
    return features, label

  return dataset.map(parse, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


class _ThroughputLogger(tf_keras.callbacks.Callback):
  """Logs the training metrics and examples/s at the end of every epoch (`log_every_steps` steps)."""

  def __init__(self, steps_per_epoch: int, batch_size: int):
    super().__init__()
    self._examples = steps_per_epoch * batch_size
    self._start = time.time()

  def on_epoch_begin(self, epoch, logs=None):
    self._start = time.time()

  def on_epoch_end(self, epoch, logs=None):
    elapsed = max(time.time() - self._start, 1e-9)
    metrics = ' '.join(f'{k}={float(v):.4f}' for k, v in (logs or {}).items())
    logging.info('epoch %d: %s (%.0f examples/s)', epoch + 1, metrics, self._examples / elapsed)


def _input_names(model: tf_keras.Model) -> List[str]:
  """The names of the model's inputs (the Transform outputs it reads)."""
  return list(model.input.keys()) if isinstance(model.input, dict) else list(model.input_names)


def export_serving_model(model: tf_keras.Model, task: KerasTask,
                         tft_output: tft.TFTransformOutput, export_dir: str) -> None:
  """Saves `model` as a SavedModel with a `serving_default` over serialized raw tf.Examples.

  Signature: input `examples` (tf.string [batch], serialized tf.Example with the raw features; the
  label may be absent); outputs those of `task.serving_outputs`.
  """
  raw_spec = tft_output.raw_feature_spec()
  raw_spec.pop(task.label_key, None)
  model.tft_layer = tft_output.transform_features_layer()
  input_names = _input_names(model)

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=SERVING_INPUT)])
  def serve(examples):
    raw = tf.io.parse_example(examples, raw_spec)
    transformed = model.tft_layer(raw)
    predictions = model({k: transformed[k] for k in input_names}, training=False)
    return task.serving_outputs(predictions)

  # A plain SavedModel, not a Keras one: TFMA then loads it once per worker with
  # tf.saved_model.load and computes only its own metrics, instead of reviving the Keras model in
  # every combiner and re-running its compiled metrics (measured on census: 7 Keras loads of
  # ~3.4 s and ~11 s of Keras metric updates, more than half the Evaluator's time).
  tf.saved_model.save(model, export_dir, signatures={'serving_default': serve})


def run_fn(fn_args: FnArgs) -> None:
  """TFX Trainer entry point (named by module path: `model_fns.trainer.run_fn`).

  Reads the TrainerConfig from `fn_args.custom_config`, trains `fn_args.train_steps` steps, evaluates
  on the whole eval split (logged, and written to `<model_run_dir>/eval_metrics.json`), writes
  TensorBoard logs to `fn_args.model_run_dir` and exports to `fn_args.serving_model_dir`.

  Raises:
    ValueError: an unknown model type, hyperparameter or distribution strategy.
  """
  config = TrainerConfig.from_custom_config(fn_args.custom_config or {})
  task: KerasTask = import_utils.import_class_by_path(config.task)()
  if config.model_type not in task.model_types:
    raise ValueError(f'unknown model type {config.model_type!r} for {config.task}; '
                     f'expected one of {tuple(task.model_types)}')
  hparams = task.hparams(config.hparams)
  tf_keras.utils.set_random_seed(config.seed)
  tft_output = tft.TFTransformOutput(fn_args.transform_output)
  strategy = strategy_lib.get_strategy(config.distribution_strategy, config.num_gpus, config.tpu)
  logging.info('Training %s (%s) with %s on %d replica(s), hparams %s', config.task,
               config.model_type, type(strategy).__name__, strategy.num_replicas_in_sync, hparams)

  with strategy.scope():
    model = task.build_model(tft_output, config.model_type, hparams)
    model.compile(optimizer=task.build_optimizer(hparams), loss=task.build_losses(hparams),
                  metrics=task.build_metrics(hparams),
                  steps_per_execution=min(config.steps_per_execution, config.log_every_steps))
  all_features = tft_output.transformed_feature_spec()
  feature_spec = {k: all_features[k] for k in _input_names(model) + [task.label_key]}
  train = make_dataset(fn_args.train_files, feature_spec, task.label_key, config.batch_size,
                       training=True, cache=config.cache_dataset,
                       shuffle_buffer=config.shuffle_buffer, seed=config.seed)
  evaluation = make_dataset(fn_args.eval_files, feature_spec, task.label_key,
                            config.eval_batch_size, training=False)

  steps = int(fn_args.train_steps)
  per_epoch = min(config.log_every_steps, steps)
  callbacks = [tf_keras.callbacks.TensorBoard(log_dir=fn_args.model_run_dir, update_freq='epoch'),
               _ThroughputLogger(per_epoch, config.batch_size)]
  epochs, remainder = divmod(steps, per_epoch)
  model.fit(train, epochs=epochs, steps_per_epoch=per_epoch, callbacks=callbacks, verbose=0)
  if remainder:
    model.fit(train, initial_epoch=epochs, epochs=epochs + 1, steps_per_epoch=remainder,
              callbacks=callbacks, verbose=0)
  if not fn_args.eval_steps:  # A pass of unknown length needs one step per execution.
    with strategy.scope():
      model.compile(optimizer=model.optimizer, loss=model.loss, metrics=task.build_metrics(hparams))
  results = model.evaluate(evaluation, steps=fn_args.eval_steps or None, return_dict=True,
                           verbose=0)
  logging.info('End-of-training evaluation: %s', results)
  with tf.io.gfile.GFile(os.path.join(fn_args.model_run_dir, 'eval_metrics.json'), 'w') as f:
    json.dump({k: float(v) for k, v in results.items()}, f, indent=2)
  export_serving_model(model, task, tft_output, fn_args.serving_model_dir)
