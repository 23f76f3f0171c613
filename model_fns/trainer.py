"""The shared TFX Trainer `run_fn`: one trainer for every model, driven by a `KerasTask`.

The Trainer component names `model_fns.trainer.run_fn` by module path and passes a `TrainerConfig`
as its `custom_config`. `run_fn` builds the task's Keras model inside the chosen tf.distribute
strategy, trains it on the Transform output (or on the raw examples, for a pipeline without
Transform), and exports a SavedModel whose `serving_default` takes serialized raw tf.Examples (TF
Serving's predict format, input `examples`, string [batch]) and applies the Transform graph inside,
so a client sends raw features only.

The task abstraction follows Model Garden's `Task` (build_model / build_losses / build_metrics), with
the data and export parts shared here. Gradient-descent tasks use the default `compile` and `train`
(a fixed number of minibatch steps); a task that learns otherwise, such as TF Decision Forests'
gradient boosted trees (one pass over the data, then a C++ learner), overrides those two.
"""

from __future__ import annotations

import abc
import dataclasses
import json
import os
import shutil
import tempfile
import time
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence

os.environ.setdefault('TF_USE_LEGACY_KERAS', '1')  # tf.Transform 1.16 needs Keras 2.

import tensorflow as tf
import tensorflow_transform as tft
import tf_keras
from absl import logging
from tensorflow_metadata.proto.v0 import schema_pb2
from tensorflow_transform.tf_metadata import schema_utils
from tfx.components.trainer.fn_args_utils import FnArgs
from tfx.utils import import_utils, io_utils

from model_fns import strategy as strategy_lib
from model_fns import training_progress

SERVING_INPUT = 'examples'
# TF Serving's classify signature, as Estimator exports named it: input `inputs` (serialized
# tf.Examples), outputs `classes` and `scores`, method name `tensorflow/serving/classify`.
CLASSIFICATION_SIGNATURE = 'classification'
MIXED_PRECISION_POLICIES = {'float16': 'mixed_float16', 'bfloat16': 'mixed_bfloat16'}
# A task's `preprocess_batch`: (parsed features of a batch, training) -> the model's inputs.
Preprocess = Callable[[Dict[str, tf.Tensor], bool], Dict[str, tf.Tensor]]


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
    mixed_precision: None (float32), `float16` (Keras' `mixed_float16` policy, with loss scaling;
      for GPUs) or `bfloat16` (`mixed_bfloat16`; for TPUs and recent CPUs); the task must allow it.
    transform_in_trainer: the Trainer's examples are the raw ones (the Transform ran with
      `materialize=False`): each parsed batch goes through the transform graph
      (`TFTransformOutput.transform_features_layer`) before the model sees it.
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
  mixed_precision: Optional[str] = None
  transform_in_trainer: bool = False

  def to_custom_config(self) -> Dict[str, Any]:
    return dataclasses.asdict(self)

  @classmethod
  def from_custom_config(cls, config: Mapping[str, Any]) -> 'TrainerConfig':
    """The TrainerConfig that `to_custom_config` wrote.

    Raises:
      ValueError: a key that is not a TrainerConfig field (a config written by another version
        of the project, or a typo in a hand-written one), or a missing `task` / `model_type`.
    """
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(config) - known)
    if unknown:
      raise ValueError(f'unknown Trainer custom_config keys {unknown}; expected {sorted(known)}')
    missing = sorted({'task', 'model_type'} - set(config))
    if missing:
      raise ValueError(f'the Trainer custom_config lacks {missing}')
    return cls(**config)


@dataclasses.dataclass
class ModelInputs:
  """The features a task's model reads, with or without a Transform step before the Trainer.

  Attributes:
    raw_feature_spec: tf.io feature spec of the raw tf.Examples (what serving receives), label
      included.
    feature_spec: tf.io feature spec of the examples the model trains on: the Transform outputs,
      or `raw_feature_spec` when the pipeline has no Transform.
    tft_output: the Transform output (vocabularies, the transform graph), or None without Transform.
  """
  raw_feature_spec: Dict[str, Any]
  feature_spec: Dict[str, Any]
  tft_output: Optional[tft.TFTransformOutput] = None

  @classmethod
  def from_fn_args(cls, fn_args: FnArgs) -> 'ModelInputs':
    """From the Trainer's transform graph, else from its schema; raises ValueError with neither."""
    if fn_args.transform_graph_path:
      tft_output = tft.TFTransformOutput(fn_args.transform_graph_path)
      return cls(tft_output.raw_feature_spec(), tft_output.transformed_feature_spec(), tft_output)
    if not fn_args.schema_path:
      raise ValueError('the Trainer needs a transform_graph or a schema input')
    schema = io_utils.parse_pbtxt_file(fn_args.schema_path, schema_pb2.Schema())
    spec = schema_utils.schema_as_feature_spec(schema).feature_spec
    return cls(dict(spec), dict(spec), None)

  def transform_fn(self, keep: Iterable[str]) -> Callable[[Dict[str, Any]], Dict[str, Any]]:
    """Raw parsed features (all of `raw_feature_spec`) -> the transformed features named in
    `keep`, through the Transform's graph: for examples the Transform did not materialize.

    Raises:
      ValueError: there is no Transform output.
    """
    if self.tft_output is None:
      raise ValueError('transform_in_trainer needs the Transform\'s transform_graph')
    layer = self.tft_output.transform_features_layer()
    keep = frozenset(keep)
    return lambda raw: {k: v for k, v in layer(raw).items() if k in keep}


@dataclasses.dataclass
class TrainingData:
  """The training split as the task's `train` asks for it.

  Attributes:
    file_patterns: gzipped TFRecord files of the training examples.
    feature_spec: the features to parse (the model's inputs and the label).
    label_key: the label feature.
    config: batch size, shuffling, caching and seed.
    preprocess: the task's `preprocess_batch`, or None.
    transform: raw parsed features -> the model's features and the label, for examples that the
      Transform did not materialize (`feature_spec` is then the raw one); None: parsed as they are.
  """
  file_patterns: Sequence[str]
  feature_spec: Mapping[str, Any]
  label_key: str
  config: TrainerConfig
  preprocess: Optional[Preprocess] = None
  transform: Optional[Callable[[Dict[str, Any]], Dict[str, Any]]] = None

  def repeated(self) -> tf.data.Dataset:
    """Shuffled batches of exactly `batch_size`, repeated forever (for step-counted training)."""
    c = self.config
    return make_dataset(self.file_patterns, self.feature_spec, self.label_key, c.batch_size,
                        training=True, cache=c.cache_dataset, shuffle_buffer=c.shuffle_buffer,
                        seed=c.seed, preprocess=self.preprocess, transform=self.transform)

  def one_pass(self, batch_size: Optional[int] = None) -> tf.data.Dataset:
    """Every example once, in file order, in batches of `batch_size` (default: the config's; the
    last may be smaller)."""
    return make_dataset(self.file_patterns, self.feature_spec, self.label_key,
                        batch_size or self.config.batch_size, training=False,
                        preprocess=self.preprocess, transform=self.transform)


@dataclasses.dataclass(frozen=True)
class TaskParams:
  """What one run asks of a task, fixed when the task is built (`KerasTask(params)`).

  Attributes:
    model_type: one of the task's `model_types`.
    hparams: every hyperparameter: the task's `default_hparams` with the run's overrides applied
      (`KerasTask.resolve_hparams`).
    train_steps: minibatch steps of the run (None for a task that does not train by steps, such
      as gradient boosted trees or NCF's epochs); learning-rate schedules span them.
    batch_size: the global training batch size, in the task's `batch_unit`.
  """
  model_type: str
  hparams: Mapping[str, Any]
  train_steps: Optional[int] = None
  batch_size: int = 256


class KerasTask(abc.ABC):
  """One model family: its Keras model, loss, metrics, training loop and serving outputs.

  Built once per run from its `TaskParams` (`task = Task(params)`, Model Garden's pattern): the
  methods read the run's model type, hyperparameters, steps and batch size from `self.params`,
  and nothing is set on a task after it is built. Subclasses set `label_key`, `model_types` and
  `default_hparams`, and implement `build_model`, `build_optimizer` and `build_losses`; a task that
  does not train by minibatch gradient descent overrides `compile` and `train` instead of the
  last two.
  """
  label_key: str
  # The accepted `--model_type` values, declared here only; the first is the default.
  model_types: Sequence[str] = ('default',)
  default_hparams: Mapping[str, Any] = {}
  # The `model_fns.strategy` names the task can train under; None: all of them.
  distribution_strategies: Optional[Sequence[str]] = None
  # Whether the model keeps its output in float32 under a mixed-precision policy.
  supports_mixed_precision: bool = False
  # What `--batch_size` counts: examples, or (sequence models batched by length) tokens.
  batch_unit: str = 'examples'
  # Whether the task reads its examples through TrainingData (the default `train_dataset` and
  # `evaluate`), which applies the transform graph to raw examples (`transform_in_trainer`).
  supports_transform_in_trainer: bool = True
  # Whether the export adds TF Serving's classify signature (`CLASSIFICATION_SIGNATURE`, see
  # `classification_outputs`) beside `serving_default`: single-label classifiers.
  classification_signature: bool = False

  def __init__(self, params: TaskParams):
    """Raises ValueError: `params` has an unknown model type or hyperparameter names that are
    not exactly the task's (resolve overrides with `resolve_hparams` first)."""
    if params.model_type not in self.model_types:
      raise ValueError(f'unknown model type {params.model_type!r} for {type(self).__name__}; '
                       f'expected one of {tuple(self.model_types)}')
    if set(params.hparams) != set(self.default_hparams):
      raise ValueError(f'{type(self).__name__} needs every hyperparameter resolved: missing '
                       f'{sorted(set(self.default_hparams) - set(params.hparams))}, unknown '
                       f'{sorted(set(params.hparams) - set(self.default_hparams))}')
    self._params = params

  @classmethod
  def resolve_hparams(cls, overrides: Mapping[str, Any]) -> Dict[str, Any]:
    """The task's defaults updated with `overrides`; raises ValueError on an unknown name."""
    unknown = set(overrides) - set(cls.default_hparams)
    if unknown:
      raise ValueError(f'unknown hyperparameters {sorted(unknown)} for {cls.__name__}; '
                       f'known: {sorted(cls.default_hparams)}')
    return {**cls.default_hparams, **overrides}

  @classmethod
  def create(cls, model_type: Optional[str] = None, hparams: Optional[Mapping[str, Any]] = None,
             train_steps: Optional[int] = None, batch_size: int = 256) -> 'KerasTask':
    """The task for a run of `model_type` (None: the first of `model_types`) with these
    hyperparameter overrides (`resolve_hparams`), steps and batch size.

    Raises:
      ValueError: an unknown model type or hyperparameter.
    """
    return cls(TaskParams(model_type=model_type or cls.model_types[0],
                          hparams=cls.resolve_hparams(hparams or {}),
                          train_steps=train_steps, batch_size=batch_size))

  @property
  def params(self) -> TaskParams:
    return self._params

  @property
  def hparams(self) -> Mapping[str, Any]:
    """Every hyperparameter of the run (`params.hparams`)."""
    return self._params.hparams

  @property
  def model_type(self) -> str:
    return self._params.model_type

  @property
  def train_steps(self) -> Optional[int]:
    return self._params.train_steps

  @property
  def batch_size(self) -> int:
    return self._params.batch_size

  @abc.abstractmethod
  def build_model(self, inputs: ModelInputs) -> tf_keras.Model:
    """Returns an uncompiled Keras model of `self.model_type` over `inputs.feature_spec` (called
    in strategy scope)."""

  def build_optimizer(self) -> tf_keras.optimizers.Optimizer:
    """Returns the optimizer (called in strategy scope); needed by the default `compile`."""
    raise NotImplementedError(f'{type(self).__name__} defines no optimizer')

  def build_losses(self) -> tf_keras.losses.Loss:
    """Returns the training loss; needed by the default `compile`."""
    raise NotImplementedError(f'{type(self).__name__} defines no loss')

  def build_metrics(self) -> List[tf_keras.metrics.Metric]:
    """Returns the Keras metrics logged during training (the blessing uses TFMA's, not these)."""
    return []

  def preprocess_batch(self, features: Dict[str, tf.Tensor],
                       training: bool) -> Dict[str, tf.Tensor]:
    """Maps a parsed batch of the model's features to the model's inputs, in the Trainer's input
    pipeline (`training`: augmentation) and, with `training=False`, in the end-of-training
    evaluation and the serving signature (after Transform). Default: unchanged."""
    del training
    return features

  def model_features(self, model: tf_keras.Model, inputs: ModelInputs) -> List[str]:
    """The features of `inputs.feature_spec` that `model` reads. Default: the names of the inputs
    of a functional model; a subclassed model overrides this."""
    return _input_names(model)

  def compile(self, model: tf_keras.Model, steps_per_execution: int,
              optimizer: Optional[tf_keras.optimizers.Optimizer] = None) -> None:
    """Compiles `model` (in strategy scope): for training, then again (with the trained
    `optimizer` and one step per execution) for the end-of-training evaluation."""
    model.compile(optimizer=optimizer or self.build_optimizer(),
                  loss=self.build_losses(), metrics=self.build_metrics(),
                  steps_per_execution=steps_per_execution)

  def train_dataset(self, data: TrainingData) -> tf.data.Dataset:
    """The endless (features, label) batches `train` fits on. Default: `data.repeated()`."""
    return data.repeated()

  def train(self, model: tf_keras.Model, data: TrainingData,
            callbacks: List[tf_keras.callbacks.Callback]) -> None:
    """Trains the compiled `model`: `self.train_steps` minibatch steps on `train_dataset`,
    logged every `log_every_steps` steps.

    Raises:
      ValueError: `train_steps` is not positive.
    """
    train_steps = self.train_steps
    if not train_steps or train_steps <= 0:
      raise ValueError(f'{type(self).__name__} trains for a number of steps: set train_steps')
    train = self.train_dataset(data)
    per_epoch = logging_epoch_steps(train_steps, data.config.log_every_steps)
    callbacks = callbacks + [_ThroughputLogger(data.config.batch_size, self.batch_unit)]
    epochs, remainder = divmod(train_steps, per_epoch)
    model.fit(train, epochs=epochs, steps_per_epoch=per_epoch, callbacks=callbacks, verbose=0)
    if remainder:  # a second fit traces the train function again (hence logging_epoch_steps)
      model.fit(train, initial_epoch=epochs, epochs=epochs + 1, steps_per_epoch=remainder,
                callbacks=callbacks, verbose=0)

  def evaluate(self, model: tf_keras.Model, data: TrainingData,
               eval_steps: Optional[int] = None) -> Dict[str, float]:
    """The end-of-training evaluation on the eval split, `data` (logged only; TFMA's decides the
    blessing). Default: `model.evaluate` with the task's metrics, one step per execution, in
    batches of `data.config.eval_batch_size`."""
    evaluation = data.one_pass(data.config.eval_batch_size)
    if not eval_steps:  # A pass of unknown length needs one step per execution.
      with model.distribute_strategy.scope():
        self.compile(model, 1, optimizer=model.optimizer)
    results = model.evaluate(evaluation, steps=eval_steps or None, return_dict=True, verbose=0)
    return {k: float(v) for k, v in results.items()}

  def serve(self, model: tf_keras.Model, features: Mapping[str, Any],
            input_names: Sequence[str]) -> Dict[str, tf.Tensor]:
    """The serving signature's body after Transform: `features` are the transformed features of
    a batch of raw examples. Default: `serving_outputs` of the model's predictions on
    `preprocess_batch(features, training=False)`."""
    inputs = self.preprocess_batch({k: features[k] for k in input_names}, training=False)
    return self.serving_outputs(model(inputs, training=False))

  def extra_signatures(self, model: tf_keras.Model, inputs: ModelInputs,
                       transform: Any) -> Dict[str, Any]:
    """Signatures to export beside `serving_default`: {name: tf.function with an input
    signature}; `transform` maps raw features to the model's. Default: none."""
    return {}

  def class_labels(self, num_classes: int) -> List[str]:
    """The `classes` of the `classification` signature, one per score column: the class ids as
    strings ('0' .. 'C-1'), as an Estimator without a label vocabulary exported them. Override for
    class names."""
    return [str(i) for i in range(num_classes)]

  def classification_outputs(self, outputs: Mapping[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
    """TF Serving's classify outputs from the serving signature's outputs (`serve`'s).

    `probabilities` float [batch, C] becomes `scores` float32 [batch, C]; a binary model's
    [batch, 1] probability p of class 1 becomes [batch, 2] scores (1 - p, p), as Estimator's
    binary head exported them. `classes` is string [batch, C]: `class_labels(C)` on every row.

    Raises:
      ValueError: no `probabilities` output, or one whose last dimension is not static.
    """
    if 'probabilities' not in outputs:
      raise ValueError(f'{type(self).__name__}: a classification signature needs a '
                       f'`probabilities` output; the outputs are {sorted(outputs)}')
    scores = tf.cast(outputs['probabilities'], tf.float32)
    if scores.shape.rank != 2 or scores.shape[-1] is None:
      raise ValueError(f'probabilities must be [batch, C] with a static C, got {scores.shape}')
    if scores.shape[-1] == 1:
      scores = tf.concat([1.0 - scores, scores], axis=-1)
    labels = tf.constant(self.class_labels(scores.shape[-1]), tf.string)
    classes = tf.tile(tf.expand_dims(labels, 0), [tf.shape(scores)[0], 1])
    return {tf.saved_model.CLASSIFY_OUTPUT_CLASSES: classes,
            tf.saved_model.CLASSIFY_OUTPUT_SCORES: scores}

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


def read_records(file_patterns: Sequence[str], shuffle_files: bool = False,
                 seed: Optional[int] = None) -> tf.data.Dataset:
  """Serialized records (tf.string scalars) of the gzipped TFRecord files TFX components write;
  in file order unless `shuffle_files`."""
  files = tf.data.Dataset.list_files(list(file_patterns), shuffle=shuffle_files, seed=seed)
  return tf.data.TFRecordDataset(files, compression_type='GZIP',
                                 num_parallel_reads=tf.data.AUTOTUNE)


def make_dataset(file_patterns: Sequence[str], feature_spec: Mapping[str, Any], label_key: str,
                 batch_size: int, training: bool, cache: bool = False, shuffle_buffer: int = 10_000,
                 seed: Optional[int] = None,
                 preprocess: Optional[Preprocess] = None,
                 transform: Optional[Callable[[Dict[str, Any]], Dict[str, Any]]] = None
                 ) -> tf.data.Dataset:
  """(features, label) batches from gzipped TFRecords of tf.Examples (transformed or raw).

  Only the features of `feature_spec` (and the label) are parsed; `transform` (the transform
  graph, for raw examples the Transform did not materialize) then maps them to the model's
  features and the label; a [batch, 1] label becomes [batch]. Training data is shuffled and
  repeated forever (batches of exactly `batch_size`, the global batch); evaluation data is one
  ordered pass (the last batch may be smaller). `preprocess` (a task's `preprocess_batch`) then
  maps each batch's features, given `training`.

  Sharding across workers (MultiWorkerMirroredStrategy only; single-process strategies ignore it)
  is set explicitly to `AutoShardPolicy.DATA`: every worker reads every file and keeps its own
  share of each global batch. FILE sharding needs at least one file per worker, and TFX's
  Transform usually writes a census split as a single file (AUTO would fall back to DATA with a
  warning). DATA keeps the workers' batches disjoint because every worker shuffles with the same
  `seed`; with `seed=None` each worker shuffles on its own and their batches may overlap.
  """
  dataset = read_records(file_patterns, shuffle_files=training, seed=seed)
  if cache:
    dataset = dataset.cache()
  if training:
    dataset = dataset.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True).repeat()
  dataset = dataset.batch(batch_size, drop_remainder=training)

  def parse(serialized):
    features = tf.io.parse_example(serialized, feature_spec)
    if transform is not None:
      features = transform(features)
    label = features.pop(label_key)
    if isinstance(label, tf.Tensor) and label.shape.rank == 2 and label.shape[-1] == 1:
      label = tf.squeeze(label, -1)  # a raw [batch, 1] label, as the schema gives it
    if preprocess is not None:
      features = preprocess(features, training)
    return features, label

  options = tf.data.Options()
  options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
  return (dataset.map(parse, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)
          .with_options(options))


def logging_epoch_steps(train_steps: int, log_every_steps: int) -> int:
  """Steps per Keras epoch (one log line each) for `train_steps` steps: the largest divisor of
  `train_steps` that is at most `log_every_steps` and at least a quarter of it, so that training is
  one `fit` call (one trace); `min(log_every_steps, train_steps)` when there is no such divisor
  (a second `fit` then runs the remainder). E.g. (2000, 500) -> 500, (600, 500) -> 300,
  (997, 500) -> 500."""
  if train_steps <= log_every_steps:
    return train_steps
  for steps in range(log_every_steps, max(log_every_steps // 4, 1) - 1, -1):
    if train_steps % steps == 0:
      return steps
  return log_every_steps


class _ThroughputLogger(tf_keras.callbacks.Callback):
  """Logs the training metrics and examples/s (or the task's `batch_unit`) at the end of every
  Keras epoch."""

  def __init__(self, batch_size: int, unit: str = 'examples'):
    super().__init__()
    self._batch_size = batch_size
    self._unit = unit
    self._start = time.time()

  def on_epoch_begin(self, epoch, logs=None):
    self._start = time.time()

  def on_epoch_end(self, epoch, logs=None):
    elapsed = max(time.time() - self._start, 1e-9)
    examples = (self.params or {}).get('steps', 0) * self._batch_size  # this fit's steps/epoch
    metrics = ' '.join(f'{k}={float(v):.4f}' for k, v in (logs or {}).items())
    logging.info('epoch %d: %s (%.0f %s/s)', epoch + 1, metrics, examples / elapsed, self._unit)


class TrainingProgress(tf_keras.callbacks.Callback):
  """Publishes the training's progress to `model_fns.training_progress` (a live display, the
  run's progress lines): BEGIN, every logged batch (Keras calls `on_train_batch_end` once per
  `steps_per_execution` steps), every Keras epoch, and END from `finished`.

  One instance spans the whole training, however many `fit` calls it takes (a remainder `fit`,
  NCF's `fit` per epoch): it counts the steps itself. The length is `train_steps` steps, else
  `train_epochs` epochs (an epoch-trained task, whose `fit` calls each run one epoch of
  `params['steps']` steps), else unknown (TF-DF: progress has no fraction, only BEGIN and END).
  steps/s and the ETA count from the first logged batch, so the first trace is left out.
  """

  def __init__(self, train_steps: Optional[int] = None, train_epochs: Optional[int] = None):
    super().__init__()
    self._total_steps = train_steps or None
    self._total_epochs = None if train_steps else (train_epochs or None)
    self._step = 0  # steps done in the run
    self._epoch_base = 0  # steps done before the current epoch
    self._epoch = 0  # Keras' index of the current epoch
    self._first = None  # (time, step, fraction) at the first logged batch
    self._begun = False
    self._loss = None

  def _epoch_steps(self) -> Optional[int]:
    """The current fit's steps per epoch (TF-DF's fit never sets `params`)."""
    return (getattr(self, 'params', None) or {}).get('steps')

  def _fraction(self, epoch_step: int) -> Optional[float]:
    if self._total_steps:
      return min(self._step / self._total_steps, 1.0)
    steps = self._epoch_steps()
    if self._total_epochs and steps:
      return min((self._epoch + min(epoch_step / steps, 1.0)) / self._total_epochs, 1.0)
    return None

  def _publish(self, kind: str, epoch_step: int, logs) -> None:
    now = time.time()
    if logs and logs.get('loss') is not None:
      self._loss = float(logs['loss'])
    fraction = self._fraction(epoch_step)
    rate = eta = None
    if self._first is None and kind == training_progress.STEP:
      self._first = (now, self._step, fraction)
    elif self._first is not None and now > self._first[0]:
      first_time, first_step, first_fraction = self._first
      rate = (self._step - first_step) / (now - first_time)
      if fraction is not None and first_fraction is not None and fraction > first_fraction:
        eta = (1.0 - fraction) * (now - first_time) / (fraction - first_fraction)
    epochs = self._total_epochs is not None
    training_progress.publish(training_progress.TrainingUpdate(
        kind, step=self._step, total_steps=self._total_steps,
        epoch=self._epoch + 1 if epochs else None, total_epochs=self._total_epochs,
        epoch_step=epoch_step if epochs else None,
        epoch_steps=self._epoch_steps() if epochs else None,
        loss=self._loss, steps_per_second=rate, eta_seconds=eta, fraction=fraction, time=now))

  def on_train_begin(self, logs=None):
    if not self._begun:  # once, however many fit calls
      self._begun = True
      self._publish(training_progress.BEGIN, 0, None)

  def on_epoch_begin(self, epoch, logs=None):
    self._epoch, self._epoch_base = epoch, self._step

  def on_train_batch_end(self, batch, logs=None):
    self._step = self._epoch_base + batch + 1  # `batch`: the execution's last step in the epoch
    self._publish(training_progress.STEP, batch + 1, logs)

  def on_epoch_end(self, epoch, logs=None):
    self._publish(training_progress.EPOCH, self._step - self._epoch_base, logs)

  def finished(self) -> None:
    """Publishes END: the task's `train` returned (evaluation and export follow)."""
    self._publish(training_progress.END, self._step - self._epoch_base, None)


def _input_names(model: tf_keras.Model) -> List[str]:
  """The names of the model's inputs (the Transform outputs it reads)."""
  return list(model.input.keys()) if isinstance(model.input, dict) else list(model.input_names)


def export_serving_model(model: tf_keras.Model, task: KerasTask, inputs: ModelInputs,
                         export_dir: str) -> None:
  """Saves `model` as a SavedModel with a `serving_default` over serialized raw tf.Examples.

  Signatures:
    `serving_default` (method `tensorflow/serving/predict`): input `examples` (tf.string [batch],
      serialized tf.Example with the raw features; the label may be absent); outputs those of
      `task.serve`. TFMA evaluates through it.
    `classification` (method `tensorflow/serving/classify`), when `task.classification_signature`:
      input `inputs` (tf.string [batch], the same serialized tf.Examples), outputs `classes`
      (tf.string [batch, C]) and `scores` (tf.float32 [batch, C]) from
      `task.classification_outputs`: TF Serving's Classify API and REST `:classify`.
    The task's `extra_signatures` (method predict).

  Raises:
    ValueError: the classification signature is not one TF Serving can serve.
  """
  raw_spec = dict(inputs.raw_feature_spec)
  raw_spec.pop(task.label_key, None)
  if inputs.tft_output is not None:
    model.tft_layer = inputs.tft_output.transform_features_layer()  # tracked: saves its assets
    transform = model.tft_layer
  else:
    transform = lambda raw: raw  # pylint: disable=unnecessary-lambda-assignment
  input_names = task.model_features(model, inputs)

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=SERVING_INPUT)])
  def serve(examples):
    return task.serve(model, transform(tf.io.parse_example(examples, raw_spec)), input_names)

  signatures = {'serving_default': serve, **task.extra_signatures(model, inputs, transform)}
  if task.classification_signature:
    # The argument's name is the signature's input key.
    @tf.function(input_signature=[
        tf.TensorSpec([None], tf.string, name=tf.saved_model.CLASSIFY_INPUTS)])
    def classify(inputs):  # pylint: disable=redefined-outer-name
      features = transform(tf.io.parse_example(inputs, raw_spec))
      return task.classification_outputs(task.serve(model, features, input_names))

    signatures[CLASSIFICATION_SIGNATURE] = classify

  # Served through these signatures only: the Evaluator's EvalConfig says `tf_generic`, so TFMA
  # loads the model once per worker with tf.saved_model.load and computes only its own metrics,
  # instead of reviving the Keras model in every combiner and re-running its compiled metrics
  # (more than half the Evaluator's time on census; README, "Figures behind the defaults").
  # Hence no traces of every layer's call functions, which only a Keras revival would use (they
  # are most of the export's time), and no optimizer slots.
  model.save(export_dir, save_format='tf', signatures=signatures, save_traces=False,
             include_optimizer=False)
  if task.classification_signature:
    set_signature_methods(export_dir,
                          {CLASSIFICATION_SIGNATURE: tf.saved_model.CLASSIFY_METHOD_NAME})


def set_signature_methods(export_dir: str, methods: Mapping[str, str]) -> None:
  """Sets the method name of SignatureDefs of the SavedModel in `export_dir`, in place.

  TF2's `tf.saved_model.save` writes every signature with method `tensorflow/serving/predict`
  (tensorflow/python/saved_model/save.py, `_generate_signatures`; TF issue #38081), while TF
  Serving's Classify and Regress APIs serve only a SignatureDef whose method is
  `tensorflow/serving/classify` or `.../regress` and whose inputs and outputs follow that method's
  convention. The method name is metadata of the MetaGraphDef's SignatureDef (the loaded
  functions do not read it), so it is set in `saved_model.pb` after the save, each signature is
  checked with TF's own `tf.compat.v1.saved_model.is_valid_signature` (TF Serving's rules), and
  the SavedModel's `fingerprint.pb`, a checksum of `saved_model.pb` among others, is written again.

  Args:
    export_dir: a SavedModel directory (local or remote, e.g. gs://).
    methods: signature key -> method name, e.g. {'classification': 'tensorflow/serving/classify'}.

  Raises:
    ValueError: a signature is missing, or is not servable under its new method name.
  """
  from tensorflow.core.protobuf import saved_model_pb2  # pylint: disable=g-direct-tensorflow-import
  # pylint: disable-next=g-direct-tensorflow-import
  from tensorflow.python.saved_model import fingerprinting_utils
  path = os.path.join(export_dir, tf.saved_model.SAVED_MODEL_FILENAME_PB)
  saved_model = saved_model_pb2.SavedModel()
  with tf.io.gfile.GFile(path, 'rb') as f:
    saved_model.ParseFromString(f.read())
  for meta_graph in saved_model.meta_graphs:
    for key, method in methods.items():
      if key not in meta_graph.signature_def:
        raise ValueError(f'{export_dir} has no signature {key!r}; it has '
                         f'{sorted(meta_graph.signature_def)}')
      signature = meta_graph.signature_def[key]
      signature.method_name = method
      if not tf.compat.v1.saved_model.is_valid_signature(signature):
        raise ValueError(f'signature {key!r} is not servable as {method}: inputs '
                         f'{dict(signature.inputs)}, outputs {dict(signature.outputs)}')
  with tf.io.gfile.GFile(path, 'wb') as f:
    f.write(saved_model.SerializeToString())
  if tf.io.gfile.exists(os.path.join(export_dir, 'fingerprint.pb')):
    fingerprinting_utils.write_fingerprint(export_dir)


def task_class(config: TrainerConfig) -> type:
  """Imports the config's KerasTask class and checks the config against it, without building
  the task (the pipeline side resolves and validates a run's settings with it).

  Returns:
    The KerasTask subclass `config.task` names.

  Raises:
    ImportError: the task's module path does not import.
    ValueError: an unknown model type or hyperparameter, or a strategy or mixed precision the
      task cannot train under.
  """
  cls = import_utils.import_class_by_path(config.task)
  if config.model_type not in cls.model_types:
    raise ValueError(f'unknown model type {config.model_type!r} for {config.task}; '
                     f'expected one of {tuple(cls.model_types)}')
  cls.resolve_hparams(config.hparams)
  allowed = cls.distribution_strategies
  if allowed is not None and config.distribution_strategy not in allowed:
    raise ValueError(f'{cls.__name__} cannot train under distribution strategy '
                     f'{config.distribution_strategy!r}; it supports {", ".join(allowed)}')
  if config.mixed_precision:
    if config.mixed_precision not in MIXED_PRECISION_POLICIES:
      raise ValueError(f'unknown mixed precision {config.mixed_precision!r}; expected one of '
                       f'{sorted(MIXED_PRECISION_POLICIES)}')
    if not cls.supports_mixed_precision:
      raise ValueError(f'{cls.__name__} does not support mixed precision')
  if config.transform_in_trainer and not cls.supports_transform_in_trainer:
    raise ValueError(f'{cls.__name__} reads its examples itself: it needs the Transform to '
                     'materialize them')
  return cls


def load_task(config: TrainerConfig, train_steps: Optional[int] = None) -> KerasTask:
  """The config's task, built for one run of `train_steps` steps (None: a task that does not
  train by steps).

  Raises:
    ImportError, ValueError: as `task_class`.
  """
  return task_class(config).create(config.model_type, config.hparams, train_steps,
                                   config.batch_size)


def is_chief(strategy: tf.distribute.Strategy) -> bool:
  """Whether this process writes the run's outputs (model, metrics, TensorBoard logs).

  A strategy without a cluster (default, one_device, mirrored, or multi_worker without $TF_CONFIG)
  runs in one process, the chief. In a cluster, the chief is the task of type `chief`, or
  `worker` 0 when the cluster has no `chief` job (MultiWorkerMirroredStrategy's convention, the
  one Vertex AI Training follows); every other task (other workers, an evaluator) is not.
  Reads `strategy.cluster_resolver` (task type, index and cluster spec); never raises.
  """
  resolver = getattr(strategy, 'cluster_resolver', None)
  task_type = getattr(resolver, 'task_type', None)
  if resolver is None or not task_type:
    return True
  if task_type == 'chief':
    return True
  has_chief = 'chief' in resolver.cluster_spec().jobs
  return task_type == 'worker' and resolver.task_id == 0 and not has_chief


def run_fn(fn_args: FnArgs) -> None:
  """TFX Trainer entry point (named by module path: `model_fns.trainer.run_fn`).

  Reads the TrainerConfig from `fn_args.custom_config`, trains (by default `fn_args.train_steps`
  steps), evaluates on the whole eval split (logged, and written to
  `<model_run_dir>/eval_metrics.json`), writes TensorBoard logs to `fn_args.model_run_dir` and
  exports to `fn_args.serving_model_dir`.

  Under MultiWorkerMirroredStrategy the same function runs once per worker (each with its
  $TF_CONFIG). Every worker trains, evaluates and saves, since all three run collective ops that
  need every worker, but only the chief (`is_chief`) writes to `serving_model_dir` and
  `model_run_dir`: the others export to a temporary directory they delete afterwards, and write
  neither metrics nor TensorBoard logs.

  Raises:
    ValueError: an unknown model type, hyperparameter, distribution strategy or mixed precision.
  """
  config = TrainerConfig.from_custom_config(fn_args.custom_config or {})
  policy = tf_keras.mixed_precision.global_policy()
  if config.mixed_precision:  # global Keras state: restored when training ends
    tf_keras.mixed_precision.set_global_policy(MIXED_PRECISION_POLICIES[config.mixed_precision])
  try:
    _train_and_export(fn_args, config)
  finally:
    tf_keras.mixed_precision.set_global_policy(policy)


def _train_and_export(fn_args: FnArgs, config: TrainerConfig) -> None:
  """`run_fn` under the run's mixed-precision policy."""
  task = load_task(config, fn_args.train_steps)
  hparams = task.hparams
  tf_keras.utils.set_random_seed(config.seed)
  inputs = ModelInputs.from_fn_args(fn_args)
  strategy = strategy_lib.get_strategy(config.distribution_strategy, config.num_gpus, config.tpu)
  chief = is_chief(strategy)
  resolver = getattr(strategy, 'cluster_resolver', None)
  logging.info('Training %s (%s) with %s on %d replica(s)%s, hparams %s', config.task,
               config.model_type, type(strategy).__name__, strategy.num_replicas_in_sync,
               f' as {resolver.task_type} {resolver.task_id} ({"chief" if chief else "not chief"})'
               if getattr(resolver, 'task_type', None) else '', hparams)

  with strategy.scope():
    model = task.build_model(inputs)
    task.compile(model, min(config.steps_per_execution, config.log_every_steps))
  feature_spec = {k: inputs.feature_spec[k]
                  for k in task.model_features(model, inputs) + [task.label_key]}
  data = TrainingData(fn_args.train_files, feature_spec, task.label_key, config,
                      preprocess=task.preprocess_batch)
  if config.transform_in_trainer:
    data = dataclasses.replace(data, feature_spec=inputs.raw_feature_spec,
                               transform=inputs.transform_fn(feature_spec))
  callbacks = ([tf_keras.callbacks.TensorBoard(log_dir=fn_args.model_run_dir,
                                               update_freq='epoch')] if chief else [])
  progress = TrainingProgress(fn_args.train_steps, hparams.get('train_epochs'))
  task.train(model, data, callbacks + [progress])
  progress.finished()

  training_progress.status('evaluating on the eval split')
  results = task.evaluate(model, dataclasses.replace(data, file_patterns=fn_args.eval_files),
                          fn_args.eval_steps)
  logging.info('End-of-training evaluation: %s', results)
  training_progress.status('exporting the SavedModel')
  if chief:
    tf.io.gfile.makedirs(fn_args.model_run_dir)  # TFX's Trainer made it; a bare worker may not.
    with tf.io.gfile.GFile(os.path.join(fn_args.model_run_dir, 'eval_metrics.json'), 'w') as f:
      json.dump(results, f, indent=2)
    export_serving_model(model, task, inputs, fn_args.serving_model_dir)
    return
  scratch = tempfile.mkdtemp(prefix='official_tfx_worker_export_')
  try:  # The save's collective ops need every worker; the copy is thrown away.
    export_serving_model(model, task, inputs, os.path.join(scratch, 'model'))
  finally:
    shutil.rmtree(scratch, ignore_errors=True)
