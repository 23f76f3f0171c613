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
from typing import Any, Callable, Dict, Mapping, Optional, Tuple, Union

import tensorflow_model_analysis as tfma
from tensorflow_model_analysis.metrics import metric_specs
from tfx.dsl.components.base import base_component

from components.text_example_gen import DEFAULT_MAX_MALFORMED_FRACTION, TextLineExampleGen
import preprocessing
from preprocessing import datasets

# Modules that register specs when imported; `get` imports them on first use.
SPEC_MODULES = ('pipelines.census', 'pipelines.higgs', 'pipelines.movielens', 'pipelines.mnist',
                'pipelines.cifar10', 'pipelines.imagenet', 'pipelines.mrpc', 'pipelines.wmt')

RowRanges = Mapping[str, Tuple[int, Optional[int]]]
# (input_base, {split: file pattern relative to input_base}, max_malformed_fraction,
#  {split: (first row, number of rows or None)}) -> ExampleGen
ExampleGenFactory = Callable[[str, Mapping[str, str], float, RowRanges],
                             base_component.BaseComponent]


def curated_schema(name: str) -> str:
  """Path of the curated raw-example schema `preprocessing/schemas/<name>.pbtxt` (package data)."""
  return os.path.join(os.path.dirname(preprocessing.__file__), 'schemas', f'{name}.pbtxt')


def text_line_example_gen(line_parser: str, **split_fn: Any) -> ExampleGenFactory:
  """The ExampleGenFactory of a line-oriented raw format: a TextLineExampleGen that parses every
  line with `line_parser` (module path, see components.text_example_gen); `split_fn` holds its
  split_fn, split_fn_args and output_splits, if any."""
  def build(input_base, patterns, max_malformed_fraction, row_ranges):
    return TextLineExampleGen(input_base=input_base, splits=patterns, line_parser=line_parser,
                              max_malformed_fraction=max_malformed_fraction,
                              row_ranges=row_ranges, **split_fn)
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
  """
  label_key: str
  metrics: Tuple[Union[str, tfma.MetricConfig], ...]
  thresholds: Tuple[Threshold, ...]
  slice_features: Tuple[str, ...] = ()
  prediction_key: str = 'probabilities'
  summary_metrics: Mapping[str, str] = dataclasses.field(default_factory=dict)

  def eval_config(self) -> tfma.EvalConfig:
    """The TFMA EvalConfig: metrics, slices, value and change thresholds."""
    thresholds = {}
    for t in self.thresholds:
      change = None
      if t.no_regression:
        change = tfma.GenericChangeThreshold(
            direction=tfma.MetricDirection.HIGHER_IS_BETTER,
            absolute={'value': -max(t.regression_tolerance, 1e-10)})
      thresholds[t.metric] = tfma.MetricThreshold(
          value_threshold=tfma.GenericValueThreshold(lower_bound={'value': t.lower_bound}),
          change_threshold=change)
    metrics = []
    for metric in self.metrics:
      config = tfma.MetricConfig()
      if isinstance(metric, str):
        config.class_name = metric
      else:
        config.CopyFrom(metric)
      # The name TFMA gives the metric's results (its class's default unless the config names it).
      metric_name = metric_specs.metric_instance(config).name
      if metric_name in thresholds:  # The bar holds for the overall slice, not for each slice.
        config.per_slice_thresholds.add(slicing_specs=[tfma.SlicingSpec()],
                                        threshold=thresholds.pop(metric_name))
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
    model_types: the accepted `--model_type` values; the first is the default.
    train_steps: default training steps, or None for a task that does not train by steps (and
      then refuses `--train_steps`).
    batch_size: default global batch size.
    evaluation: TFMA metrics, slices and blessing.
    description: one line for `official-tfx list`.
    transform_tf_compat_v1: run the preprocessing_fn in tf.Transform's TF1 graph mode
      (`force_tf_compat_v1`). Measured on census: Transform 35 s instead of 60-93 s in TF2 mode,
      where tracing the preprocessing_fn dominates; the transform graph loads in TF2 all the same.
      Turn off for a preprocessing_fn that needs TF2-only ops.
    max_malformed_fraction: default of `--max_malformed_fraction` (see TextLineExampleGen).
    model_ops_module: module path the Evaluator imports before it loads the model, for a
      SavedModel with custom ops (TF Decision Forests' inference op); None for plain TF ops.
    reduced_data_evaluation: the evaluation (blessing) of a run on the dataset's documented
      fallback or sample, where the canonical bar cannot apply (ImageNet's 100-image sample);
      None: `evaluation` for every data size.
    pretrained_evaluation: the evaluation of a run that starts from a pretrained checkpoint (the
      `init_checkpoint` hyperparameter: BERT); None: `evaluation`.
    transform_files: preprocessing_fn setting -> (registered dataset, file name) of a file the
      Transform reads (BERT's WordPiece vocabulary); resolved and verified like the data, and
      passed to the preprocessing_fn in its `custom_config`.
  """
  name: str
  dataset: datasets.Dataset
  example_gen: ExampleGenFactory
  schema_file: str
  preprocessing_fn: Optional[str]
  task: str
  model_types: Tuple[str, ...]
  train_steps: Optional[int]
  batch_size: int
  evaluation: EvalSpec
  description: str = ''
  transform_tf_compat_v1: bool = True
  max_malformed_fraction: float = DEFAULT_MAX_MALFORMED_FRACTION
  model_ops_module: Optional[str] = None
  reduced_data_evaluation: Optional[EvalSpec] = None
  pretrained_evaluation: Optional[EvalSpec] = None
  transform_files: Mapping[str, Tuple[datasets.Dataset, str]] = dataclasses.field(
      default_factory=dict)

  @property
  def default_model_type(self) -> str:
    return self.model_types[0]

  def evaluation_for(self, reduced_data: bool = False, pretrained: bool = False) -> EvalSpec:
    """The evaluation of a run on the canonical data or on a fallback or sample, trained from
    scratch or from a pretrained checkpoint."""
    if reduced_data and self.reduced_data_evaluation:
      return self.reduced_data_evaluation
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


def _load_all() -> None:
  for module in SPEC_MODULES:
    importlib.import_module(module)


def get(name: str) -> ModelSpec:
  """Returns the spec registered as `name`; raises KeyError listing the known models."""
  _load_all()
  try:
    return _SPECS[name]
  except KeyError:
    raise KeyError(f'unknown model {name!r}; known: {", ".join(sorted(_SPECS))}') from None


def names() -> Tuple[str, ...]:
  """All registered model names, sorted."""
  _load_all()
  return tuple(sorted(_SPECS))

