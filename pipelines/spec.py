"""ModelSpec: everything that differs between two models' pipelines, and the registry of specs.

A spec names its dataset, how ExampleGen reads the raw format, its curated schema, its
`preprocessing_fn` and Keras task (by module path), its training defaults and its evaluation (TFMA
metrics, slices and blessing thresholds). `pipelines.factory.create_pipeline` turns any spec into the
full TFX pipeline; adding a model means adding a spec and its parts.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import pkgutil
from typing import Any, Callable, Dict, Mapping, Optional, Tuple, Union

import tensorflow as tf
import tensorflow_model_analysis as tfma
from tensorflow_model_analysis.metrics import metric_specs
from tfx.dsl.components.base import base_component

from components.text_example_gen import DEFAULT_MAX_MALFORMED_FRACTION, TextLineExampleGen
from model_fns import binary_metrics
from pipelines import predict_readers
import preprocessing
from preprocessing import datasets

# The package whose every module registers specs when imported (discovered, not listed: a new
# model is a new module there); `get` imports them on first use.
MODELS_PACKAGE = 'pipelines.models'

RowRanges = Mapping[str, Tuple[int, Optional[int]]]
# (input_base, {split: file pattern relative to input_base}, max_malformed_fraction,
#  {split: (first row, number of rows or None)}, {setting: local path of a resolved and verified
#  `example_gen_files` file}) -> ExampleGen
ExampleGenFactory = Callable[[str, Mapping[str, str], float, RowRanges, Mapping[str, str]],
                             base_component.BaseComponent]


def curated_schema(name: str) -> str:
  """Path of the curated raw-example schema `preprocessing/schemas/<name>.pbtxt` (package data)."""
  return os.path.join(os.path.dirname(preprocessing.__file__), 'schemas', f'{name}.pbtxt')


def text_line_example_gen(line_parser: str, **split_fn: Any) -> ExampleGenFactory:
  """The ExampleGenFactory of a line-oriented raw format: a TextLineExampleGen that parses every
  line with `line_parser` (module path, see components.text_example_gen); `split_fn` holds its
  split_fn, split_fn_args and output_splits, if any."""
  def build(input_base, patterns, max_malformed_fraction, row_ranges, files):
    del files  # a line format needs no side file
    return TextLineExampleGen(input_base=input_base, splits=patterns, line_parser=line_parser,
                              max_malformed_fraction=max_malformed_fraction,
                              row_ranges=row_ranges, **split_fn)
  # What the raw format is, for readers of the same files outside the pipeline (predict).
  build.line_parser = line_parser
  build.split_fn = split_fn.get('split_fn')
  return build


@dataclasses.dataclass(frozen=True)
class Threshold:
  """A blessing condition on one TFMA metric.

  Attributes:
    metric: TFMA metric name, e.g. `binary_accuracy`.
    lower_bound: the candidate's value must be at least this.
    no_regression: the candidate must also be no worse than the last blessed model (by more than
      `regression_tolerance`); ignored on the first run, when there is no blessed model.
    regression_tolerance: allowed absolute drop against the last blessed model (>= 0).
  """
  metric: str
  lower_bound: float
  no_regression: bool = True
  regression_tolerance: float = 0.0


# TFMA's metrics of a binary classifier (a probability [batch, 1] against a 0/1 label), when set
# neither `top_k` nor `class_id` (which make them one-vs-rest metrics of a multiclass model).
_TFMA_BINARY_METRICS = frozenset({'AUC', 'AUCPrecisionRecall', 'BinaryAccuracy',
                                  'BinaryCrossentropy', 'Calibration', 'Precision', 'Recall',
                                  'F1Score'})

# The guard of a binary evaluation: both label classes present with positive weight in the
# overall slice, the condition under which AUC, recall, calibration (and precision, given positive
# predictions) are defined (model_fns.binary_metrics). Not a regression test: a count of classes.
BINARY_GUARD = Threshold(binary_metrics.LABEL_CLASSES,
                         lower_bound=binary_metrics.DEFINED_LABEL_CLASSES, no_regression=False)


def metric_name(config: tfma.MetricConfig) -> str:
  """The name TFMA gives a metric's results: its class's default unless the config names it.

  The metric is built in a throwaway graph. Built eagerly, a Keras metric (BinaryCrossentropy,
  SparseCategoricalAccuracy, ...) creates variables and so starts TensorFlow's eager runtime in the
  process that builds the pipeline. An Airflow task parses the DAG file, builds the pipeline and
  then forks the process that runs the component; the runtime's threads do not survive the fork,
  and the forked task hangs in its first tf.function (the higgs Trainer did).

  Raises:
    ValueError, ImportError, AttributeError: TFMA's, for a metric class it cannot build.
  """
  with tf.Graph().as_default():
    return metric_specs.metric_instance(config).name


def is_binary_metric(config: tfma.MetricConfig) -> bool:
  """Whether `config` is a metric of a binary classifier: one of model_fns.binary_metrics, or
  one of TFMA's binary metrics set neither `top_k` nor `class_id`."""
  if config.module == binary_metrics.__name__:
    return True
  return (config.class_name in _TFMA_BINARY_METRICS and not config.module
          and 'top_k' not in config.config and 'class_id' not in config.config)


@dataclasses.dataclass(frozen=True)
class EvalSpec:
  """TFMA evaluation of a model on the raw eval split, through its `serving_default` signature.

  Attributes:
    label_key: raw label feature (numeric).
    metrics: TFMA / Keras metric class names, e.g. ('BinaryAccuracy', 'AUC'), or full
      `tfma.MetricConfig`s (a custom metric class with its module and config).
    thresholds: the blessing conditions.
    slice_features: features to slice by, one slice spec each, besides the overall slice.
    prediction_key: output of the signature that holds the prediction.
    summary_metrics: run-summary key -> TFMA metric name, e.g. {'accuracy': 'binary_accuracy'}.

  Guards: a blessing must not rest on a metric the eval split leaves undefined. An evaluation with
  a binary metric (`is_binary_metric`) gets `BINARY_GUARD` besides its thresholds: the
  `label_classes` metric (model_fns.binary_metrics) and its bar, 2 classes on the overall slice,
  so that an eval split of one class is not blessed whatever its accuracy. An eval split with no
  example at all yields no slice, which TFMA's validation counts as a failure by itself (the
  overall slice is missing), for every kind of evaluation.
  """
  label_key: str
  metrics: Tuple[Union[str, tfma.MetricConfig], ...]
  thresholds: Tuple[Threshold, ...]
  slice_features: Tuple[str, ...] = ()
  prediction_key: str = 'probabilities'
  summary_metrics: Mapping[str, str] = dataclasses.field(default_factory=dict)

  def _metric_configs(self) -> Tuple[tfma.MetricConfig, ...]:
    """`metrics` as MetricConfigs, with the guard metrics they call for appended."""
    configs = []
    for metric in self.metrics:
      config = tfma.MetricConfig()
      if isinstance(metric, str):
        config.class_name = metric
      else:
        config.CopyFrom(metric)
      configs.append(config)
    names = {metric_name(c) for c in configs}
    if any(is_binary_metric(c) for c in configs) and BINARY_GUARD.metric not in names:
      configs.extend(binary_metrics.metric_configs(BINARY_GUARD.metric))
    return tuple(configs)

  def blessing_thresholds(self) -> Tuple[Threshold, ...]:
    """`thresholds` and the guards of the evaluation's kind (see the class docstring), all on
    the overall slice. A threshold the spec sets on a guard's metric replaces the guard."""
    guards = ()
    if any(is_binary_metric(c) for c in self._metric_configs()):
      guards = (BINARY_GUARD,)
    named = {t.metric for t in self.thresholds}
    return tuple(self.thresholds) + tuple(g for g in guards if g.metric not in named)

  def eval_config(self) -> tfma.EvalConfig:
    """The TFMA EvalConfig: metrics (with the guards'), slices, value and change thresholds.

    Raises:
      ValueError: a threshold on a metric that is not computed.
    """
    thresholds = {}
    for t in self.blessing_thresholds():
      change = None
      if t.no_regression:
        change = tfma.GenericChangeThreshold(
            direction=tfma.MetricDirection.HIGHER_IS_BETTER,
            absolute={'value': -max(t.regression_tolerance, 1e-10)})
      thresholds[t.metric] = tfma.MetricThreshold(
          value_threshold=tfma.GenericValueThreshold(lower_bound={'value': t.lower_bound}),
          change_threshold=change)
    metrics = []
    for config in self._metric_configs():
      # The name TFMA gives the metric's results (its class's default unless the config names it).
      name = metric_name(config)
      if name in thresholds:  # The bar holds for the overall slice, not for each slice.
        config.per_slice_thresholds.add(slicing_specs=[tfma.SlicingSpec()],
                                        threshold=thresholds.pop(name))
      metrics.append(config)
    if thresholds:
      raise ValueError(f'thresholds on metrics that are not computed: {sorted(thresholds)}')
    return tfma.EvalConfig(
        # tf_generic: the shared trainer exports plain SavedModels, so TFMA must not try (and
        # time) a Keras load to detect the model type.
        model_specs=[tfma.ModelSpec(signature_name='serving_default', label_key=self.label_key,
                                    prediction_key=self.prediction_key, model_type='tf_generic')],
        slicing_specs=[tfma.SlicingSpec()] + [tfma.SlicingSpec(feature_keys=[f])
                                              for f in self.slice_features],
        metrics_specs=[tfma.MetricsSpec(metrics=metrics)])


def multiclass_evaluation(label_key: str, thresholds: Tuple[Threshold, ...],
                          slice_features: Tuple[str, ...] = (), top5: bool = False) -> EvalSpec:
  """The evaluation of a single-label classifier over C classes (integer label in [0, C), the
  model outputs `probabilities` [batch, C]): example count, top-1 accuracy, (top-5 accuracy,)
  cross-entropy. AUC is left out: it is a binary metric, and a one-vs-rest average says little
  beside accuracy. Run-summary keys: `accuracy`, (`top5_accuracy`,) `log_loss`, `example_count`.

  No guard metric: every metric here is defined on any non-empty eval split, one class included
  (accuracy and cross-entropy are per-example means), and an empty split has no overall slice,
  which TFMA's validation fails by itself (tests/test_eval_guards.py).
  """
  top_k = ('SparseTopKCategoricalAccuracy',) if top5 else ()  # Keras' default k is 5
  return EvalSpec(
      label_key=label_key,
      metrics=('ExampleCount', 'SparseCategoricalAccuracy', *top_k,
               'SparseCategoricalCrossentropy'),
      thresholds=thresholds, slice_features=slice_features,
      summary_metrics={'accuracy': 'sparse_categorical_accuracy',
                       **({'top5_accuracy': 'sparse_top_k_categorical_accuracy'} if top5 else {}),
                       'log_loss': 'sparse_categorical_crossentropy',
                       'example_count': 'example_count'})


@dataclasses.dataclass(frozen=True)
class HparamFlag:
  """A command-line flag of a model that sets one of its task's hyperparameters: `--NAME=VALUE`
  is `--hparams='{"NAME": VALUE}'` and wins over that entry.

  Attributes:
    name: the flag's and the hyperparameter's name.
    kind: `float`, `integer` (a positive whole number), `integers` (a comma-separated list of
      positive whole numbers, a JSON list in the hyperparameters) or `string`.
    help: what it sets for this model, with its default and the source of a published value.
  """
  name: str
  kind: str
  help: str

  KINDS = ('float', 'integer', 'integers', 'string')

  def __post_init__(self):
    """Raises ValueError: an unknown kind."""
    if self.kind not in self.KINDS:
      raise ValueError(f'hyperparameter flag --{self.name}: kind {self.kind!r} is not one of '
                       f'{", ".join(self.KINDS)}')


LEARNING_RATE = HparamFlag('learning_rate', 'float', 'the optimizer\'s (peak) learning rate')


@dataclasses.dataclass(frozen=True)
class ModelSpec:
  """One model of the family, as the pipeline factory needs it.

  Attributes:
    name: registry key and CLI name, e.g. `census`.
    dataset: the registered dataset (canonical files, splits).
    example_gen: builds the ExampleGen that reads the raw canonical format.
    schema_file: the curated schema (schema.pbtxt) of the raw examples.
    preprocessing_fn: module path of the tf.Transform preprocessing_fn, or None for a model that
      reads the raw examples (the pipeline then has no Transform).
    task: module path of the `model_fns.trainer.KerasTask` class.
    train_steps: default training steps, or None for a task that does not train by steps (and
      then refuses `--train_steps`).
    batch_size: default global batch size.
    evaluation: TFMA metrics, slices and blessing.
    description: one line for `official-tfx list`.
    transform_tf_compat_v1: run the preprocessing_fn in tf.Transform's TF1 graph mode
      (`force_tf_compat_v1`). Measured on census: Transform 35 s instead of 60-93 s in TF2 mode,
      where tracing the preprocessing_fn dominates; the transform graph loads in TF2 all the same.
      Turn off for a preprocessing_fn that needs TF2-only ops.
    materialize_transform: the Transform writes the transformed examples and the Trainer reads
      them (TFX's default). False: the Transform only analyzes (`materialize=False`, one pass
      over the train split) and the Trainer applies the transform graph to each batch of raw
      examples (`TrainerConfig.transform_in_trainer`): for a preprocessing_fn that is cheap per
      row next to writing and reading its output again (census); the task must support it.
    max_malformed_fraction: default of `--max_malformed_fraction` (see TextLineExampleGen).
    model_ops_module: module path the Evaluator imports before it loads the model, for a
      SavedModel with custom ops (TF Decision Forests' inference op); None for plain TF ops.
    serving_op_modules: the op libraries a model server must load for the exported SavedModel:
      modules whose import registers the custom ops its graph holds (`tensorflow_text`,
      `tensorflow_decision_forests`); () for plain TF ops. The serving check
      (components.serving_check) imports exactly these, and nothing of this project, in the fresh
      process that serves the model; `model_ops_module` is the Evaluator's (it may be a project
      module importing them). A spec with a `model_ops_module` must declare them.
    reduced_data_evaluation: the evaluation (blessing) of a run on the dataset's documented
      fallback or sample, where the canonical bar cannot apply (ImageNet's 100-image sample);
      None: `evaluation` for every data size.
    pretrained_evaluation: the evaluation of a run that starts from a pretrained checkpoint:
      one whose `pretrained_hparam` is set; None: `evaluation`.
    pretrained_hparam: the hyperparameter that names a pretrained checkpoint (BERT's
      `init_checkpoint`), whose being set selects `pretrained_evaluation`.
    transform_files: preprocessing_fn setting -> (registered dataset, file name) of a file the
      Transform reads (BERT's WordPiece vocabulary); resolved and verified like the data, and
      passed to the preprocessing_fn in its `custom_config`. `--<setting>` (a string flag)
      replaces the file.
    example_gen_files: ExampleGen setting -> (registered dataset, file name) of a file that the
      ExampleGen's settings are built from (ImageNet's synsets.txt: the label order). Resolved
      and verified with the data's `--data_root` / `--cache_dir` before the pipeline is built
      (RunConfig.example_gen_files) and handed to `example_gen` as {setting: local path};
      `--<setting>` replaces the file.
    predict_reader: what `official-tfx predict` reads and how it becomes the raw tf.Examples of
      `serving_default` (pipelines.predict_readers: a LineReader, IdxReader, ImageReader,
      CifarBatchReader, or AnyOf several); None: every line of the raw format through the
      ExampleGen's own line parser (a line format whose examples are one per line).
    hparam_flags: the model's own flags for some of its hyperparameters (pipelines.settings
      defines the flags of every discovered spec; a flag given to a model that does not declare
      it is a usage error).
  """
  name: str
  dataset: datasets.Dataset
  example_gen: ExampleGenFactory
  schema_file: str
  preprocessing_fn: Optional[str]
  task: str
  train_steps: Optional[int]
  batch_size: int
  evaluation: EvalSpec
  description: str = ''
  transform_tf_compat_v1: bool = True
  materialize_transform: bool = True
  max_malformed_fraction: float = DEFAULT_MAX_MALFORMED_FRACTION
  model_ops_module: Optional[str] = None
  serving_op_modules: Tuple[str, ...] = ()
  reduced_data_evaluation: Optional[EvalSpec] = None
  pretrained_evaluation: Optional[EvalSpec] = None
  pretrained_hparam: Optional[str] = None
  transform_files: Mapping[str, Tuple[datasets.Dataset, str]] = dataclasses.field(
      default_factory=dict)
  example_gen_files: Mapping[str, Tuple[datasets.Dataset, str]] = dataclasses.field(
      default_factory=dict)
  predict_reader: Optional[predict_readers.PredictReader] = None
  hparam_flags: Tuple[HparamFlag, ...] = (LEARNING_RATE,)

  def __post_init__(self):
    """Raises ValueError: a `model_ops_module` (custom ops) without `serving_op_modules`, or a
    serving op module that is not a dotted module name."""
    if isinstance(self.serving_op_modules, str):
      raise ValueError(f'{self.name}: serving_op_modules is a tuple of module names, not a string')
    for module in self.serving_op_modules:
      if not all(part.isidentifier() for part in module.split('.')):
        raise ValueError(f'{self.name}: serving op module {module!r} is not a module name')
    if self.model_ops_module and not self.serving_op_modules:
      raise ValueError(f'{self.name}: the Evaluator imports {self.model_ops_module} for custom '
                       'ops; declare the op libraries a server needs in serving_op_modules')

  @property
  def model_types(self) -> Tuple[str, ...]:
    """The accepted `--model_type` values, the first the default: the task's `model_types`,
    declared once, on the task (importing its module).

    Raises:
      ImportError: the task's module path does not import.
    """
    from tfx.utils import import_utils  # pylint: disable=import-outside-toplevel
    return tuple(import_utils.import_class_by_path(self.task).model_types)

  @property
  def default_model_type(self) -> str:
    return self.model_types[0]

  def evaluation_for(self, reduced_data: bool = False,
                     hparams: Optional[Mapping[str, Any]] = None) -> EvalSpec:
    """The evaluation of a run on the canonical data or on a fallback or sample (`reduced_data`),
    trained from scratch or from a pretrained checkpoint (`hparams[pretrained_hparam]` set)."""
    if reduced_data and self.reduced_data_evaluation:
      return self.reduced_data_evaluation
    pretrained = bool(self.pretrained_hparam and (hparams or {}).get(self.pretrained_hparam))
    if pretrained and self.pretrained_evaluation:
      return self.pretrained_evaluation
    return self.evaluation


_SPECS: Dict[str, ModelSpec] = {}


def register(spec: ModelSpec) -> ModelSpec:
  """Adds `spec` to the registry and returns it; raises ValueError on a duplicate name."""
  if spec.name in _SPECS:
    raise ValueError(f'model {spec.name!r} is registered twice')
  _SPECS[spec.name] = spec
  return spec


def spec_modules() -> Tuple[str, ...]:
  """The module paths of `MODELS_PACKAGE`'s modules, sorted."""
  package = importlib.import_module(MODELS_PACKAGE)
  return tuple(sorted(f'{MODELS_PACKAGE}.{info.name}'
                      for info in pkgutil.iter_modules(package.__path__) if not info.ispkg))


def _load_all() -> None:
  for module in spec_modules():
    importlib.import_module(module)


def get(name: str) -> ModelSpec:
  """Returns the spec registered as `name`; raises KeyError listing the known models."""
  _load_all()
  try:
    return _SPECS[name]
  except KeyError:
    raise KeyError(f'unknown model {name!r}; known: {", ".join(sorted(_SPECS))}') from None


def all_specs() -> Tuple[ModelSpec, ...]:
  """Every registered spec, by name."""
  return tuple(get(name) for name in names())


def names() -> Tuple[str, ...]:
  """All registered model names, sorted."""
  _load_all()
  return tuple(sorted(_SPECS))

