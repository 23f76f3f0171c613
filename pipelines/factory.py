"""The one pipeline factory: any ModelSpec -> the full TFX pipeline.

ExampleGen (the spec's raw-format reader) -> StatisticsGen -> ImportSchemaGen (the curated schema)
-> ExampleValidator -> AnomaliesGate (stops the run on any anomaly) -> Transform (the spec's
preprocessing_fn by module path; left out for a model that reads the raw examples) -> Trainer (the
shared `model_fns.trainer.run_fn`) -> Resolver of the latest blessed model -> Evaluator (TFMA,
blessing against the thresholds and the baseline) -> ServingCheck (components.serving_check: the
model served in a fresh process answers TF Serving requests as the Evaluator sees it; an
InfraBlessing) -> Pusher (only a blessed and infra-blessed model). Caching is on by default.

The same pipeline object runs under LocalDagRunner (the embedded default), the `tfx` CLI, Airflow and
Kubeflow: only the runner changes.
"""

from __future__ import annotations

import dataclasses
import os
import posixpath
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import tensorflow_model_analysis as tfma
from google.protobuf import json_format
from ml_metadata.proto import metadata_store_pb2
from tfx import v1 as tfx

from beam_runner import runners as beam_runners
from beam_runner import sdk_harness
from components import record_checks
from components.anomalies_gate import AnomaliesGate
from components.serving_check import ServingCheck, default_request_spec
from model_fns.trainer import TrainerConfig, task_class
from pipelines import fingerprint, metadata_store
from pipelines.spec import ModelSpec

RUN_FN = 'model_fns.trainer.run_fn'


@dataclasses.dataclass
class RunConfig:
  """One run's settings: what the user asked, None taking the spec's default (`resolve_config`
  fills them all in). What the run reads, found from these and the data root, is `RunInputs`.

  Attributes:
    output_dir: holds everything a run writes (see the properties below).
    model_type: one of the spec's model types.
    train_steps, batch_size: training length and global batch size.
    hparams: overrides of the task's hyperparameters.
    distribution_strategy, num_gpus, tpu: tf.distribute strategy (model_fns.strategy).
    beam_pipeline_args: for every Beam-based component (see beam_runner.options).
    enable_cache: reuse the outputs of a component whose inputs and settings are unchanged.
    max_malformed_fraction: ExampleGen fails when more of a split's rows are malformed.
    transform_statistics: let Transform compute pre/post-transform statistics (slower).
    transform_analyzer_cache: let Transform write tf.Transform's analyzer cache, which a later
      run analyzing overlapping spans could reuse. The pipelines read one span per split, and
      TFX's own cache already serves an unchanged Transform, so it is off: on census, writing it
      cost 6 s of the Transform's 36 s of CPU.
    remote_root: where the components write artifacts, when not `<output_dir>/pipeline_root`
      (a gs:// path for Dataflow); ML Metadata, logs and the run summary stay in output_dir.
    serving_model_dir: the Pusher's filesystem destination; default `<output_dir>/serving_model`.
    mixed_precision: None, `float16` or `bfloat16` (see model_fns.trainer.TrainerConfig).
    transform_settings: values for the preprocessing_fn's `custom_config` beside its resolved
      files (`RunInputs.transform_files`), e.g. wmt's {'vocab_size': 8000}; see the model's
      preprocessing_fn for the keys it reads.
    command_line: the flags the user gave ({name: parsed value}); recorded in the run summary so
      that `--config` replays the run's data and engine choices as well as its resolved settings.
    metadata_connection: the run's ML Metadata store when it is not the SQLite file at
      `metadata_path`: a MySQL database (pipelines.metadata_store), password included (never
      shown: not in the repr, and the run summary records `metadata_store.describe` of it).
      Read it through `metadata_connection_config`.
  """
  output_dir: str
  model_type: Optional[str] = None
  train_steps: Optional[int] = None
  batch_size: Optional[int] = None
  hparams: Dict[str, Any] = dataclasses.field(default_factory=dict)
  distribution_strategy: str = 'default'
  num_gpus: int = 0
  tpu: Optional[str] = None
  beam_pipeline_args: List[str] = dataclasses.field(default_factory=list)
  enable_cache: bool = True
  max_malformed_fraction: Optional[float] = None
  transform_statistics: bool = False
  transform_analyzer_cache: bool = False
  remote_root: Optional[str] = None
  serving_model_dir: Optional[str] = None
  mixed_precision: Optional[str] = None
  transform_settings: Dict[str, Any] = dataclasses.field(default_factory=dict)
  command_line: Dict[str, Any] = dataclasses.field(default_factory=dict)
  metadata_connection: Optional[metadata_store_pb2.ConnectionConfig] = dataclasses.field(
      default=None, repr=False)

  def __post_init__(self):
    if self.serving_model_dir is None:
      self.serving_model_dir = os.path.join(self.output_dir, 'serving_model')

  @property
  def pipeline_root(self) -> str:
    return self.remote_root or os.path.join(self.output_dir, 'pipeline_root')

  @property
  def metadata_path(self) -> str:
    """The default ML Metadata store, `<output_dir>/metadata.sqlite`."""
    return os.path.join(self.output_dir, metadata_store.SQLITE_FILE)

  @property
  def metadata_connection_config(self) -> metadata_store_pb2.ConnectionConfig:
    """The run's ML Metadata store, as every reader and writer of it connects: the pipeline
    (TFX's `metadata_connection_config`, hence its cache), the progress monitor, the run summary,
    the run history and report, the interrupt and resume handling. `metadata_connection` when
    set, else SQLite at `metadata_path`."""
    if self.metadata_connection is not None:
      return self.metadata_connection
    return metadata_store.sqlite_config(self.metadata_path)


@dataclasses.dataclass(frozen=True)
class RunInputs:
  """What one run reads, as `settings.build_run` found it from the flags, the data root and the
  files themselves; kept apart from RunConfig (what the user asked) and recorded in the run
  summary's `inputs`.

  Attributes:
    split_files: {split: raw data file}, resolved and verified (preprocessing.datasets), e.g.
      {'train': '.../adult.data.gz', 'eval': '.../adult.test.gz'}.
    row_ranges: split -> (first row, number of rows or None for the rest) of its file; a split
      absent reads its whole file (see `row_ranges()`).
    input_digests: split -> SHA-256 (hex) of the split's raw input
      (pipelines.fingerprint.input_digests); a split is absent when unknown (a remote file). In
      ExampleGen's cache key, so a file replaced by one of the same size and modification time
      is read again.
    transform_files: the preprocessing_fn's `custom_config`: the spec's `transform_files`,
      resolved (e.g. {'vocab_file': '.../uncased_vocab.txt'}).
    example_gen_files: the spec's `example_gen_files`, resolved: {setting: local path}.
    data_notice: what the user should know about the data read, e.g. the documented fallback a
      dataset took (MNIST's t10k split when its training images are missing); None when nothing.
    reduced_data: the run reads a documented fallback or a sample instead of the canonical data;
      the spec's `reduced_data_evaluation` (its blessing for that data size), if any, applies.
  """
  split_files: Mapping[str, str]
  row_ranges: Mapping[str, Tuple[int, Optional[int]]] = dataclasses.field(default_factory=dict)
  input_digests: Mapping[str, str] = dataclasses.field(default_factory=dict)
  transform_files: Mapping[str, str] = dataclasses.field(default_factory=dict)
  example_gen_files: Mapping[str, str] = dataclasses.field(default_factory=dict)
  data_notice: Optional[str] = None
  reduced_data: bool = False

  @classmethod
  def of(cls, inputs: 'RunInputs | Mapping[str, str]') -> 'RunInputs':
    """`inputs` itself, or the RunInputs of a bare {split: file} (whole files, nothing else
    found: how tests and scripts that bring their own files call the factory)."""
    return inputs if isinstance(inputs, RunInputs) else cls(split_files=dict(inputs))

  def to_json(self) -> Dict[str, Any]:
    """The run summary's `inputs`: these fields as JSON values (row ranges as [first, count])."""
    return {'split_files': dict(self.split_files),
            'row_ranges': {k: list(v) for k, v in self.row_ranges.items()},
            'input_digests': dict(self.input_digests),
            'transform_files': dict(self.transform_files),
            'example_gen_files': dict(self.example_gen_files),
            'data_notice': self.data_notice, 'reduced_data': self.reduced_data}


def is_remote(path: str) -> bool:
  """Whether `path` is a URI of a remote filesystem (gs://, s3://, hdfs://, ...)."""
  return '://' in path


def split_patterns(split_files: Mapping[str, str]) -> Tuple[str, Dict[str, str]]:
  """{split: file} -> (input_base, {split: pattern relative to input_base}).

  Local paths are made absolute; remote URIs (gs://bucket/...) are kept as they are, and must then
  all share one scheme and bucket. File names are taken literally: the ExampleGens and TFX's
  driver (which fingerprints input_base/pattern) read them as glob patterns, so `[`, `*` and `?`
  are escaped in the patterns (components.record_checks.escape_glob), and input_base is the
  deepest common folder whose own path has none of them (a bracketed folder name goes into the
  escaped patterns).

  Raises:
    ValueError: local files mixed with remote ones, or remote ones under different buckets.
  """
  from components.record_checks import escape_glob  # pylint: disable=import-outside-toplevel

  def no_glob(folder: str, dirname, root: str) -> str:
    while any(c in folder for c in '[*?') and folder != root:
      folder = dirname(folder)
    return folder

  remote = {split: is_remote(path) for split, path in split_files.items()}
  if not any(remote.values()):
    paths = {split: os.path.abspath(path) for split, path in split_files.items()}
    input_base = no_glob(os.path.commonpath([os.path.dirname(p) for p in paths.values()]),
                         os.path.dirname, os.path.dirname(os.sep))
    return input_base, {split: escape_glob(os.path.relpath(p, input_base))
                        for split, p in paths.items()}
  prefixes = {path.split('://', 1)[0] + '://' + path.split('://', 1)[1].split('/', 1)[0]
              for path in split_files.values() if is_remote(path)}
  if not all(remote.values()) or len(prefixes) != 1:
    raise ValueError(f'the splits\' files must all be local or all under one bucket: '
                     f'{dict(split_files)}')
  (prefix,) = prefixes
  keys = {split: path[len(prefix):].lstrip('/') for split, path in split_files.items()}
  common = no_glob(posixpath.commonpath([posixpath.dirname('/' + k) for k in keys.values()]),
                   posixpath.dirname, '/').lstrip('/')
  input_base = f'{prefix}/{common}'.rstrip('/')
  return input_base, {split: escape_glob(posixpath.relpath('/' + k, '/' + common))
                      for split, k in keys.items()}


def row_ranges(spec: ModelSpec, canonical_splits: Sequence[str],
               overrides: Optional[Mapping[str, Tuple[Optional[int], Optional[int]]]] = None,
               base: Optional[Mapping[str, Tuple[int, Optional[int]]]] = None
               ) -> Dict[str, Tuple[int, Optional[int]]]:
  """Each split's (first row, number of rows or None for the rest).

  A split read from its canonical file starts from `base` (the `row_ranges` of
  preprocessing.datasets.resolve: the dataset's ranges, such as the seed's HIGGS split, or its
  fallback's, such as MNIST's t10k split); default the dataset's own. A split read from another
  file starts from the whole file. `overrides` replaces either part where it is not None (the
  `--<split>_start` / `--<split>_count` flags).
  """
  base = spec.dataset.row_ranges if base is None else base
  ranges = {}
  for split in spec.dataset.splits:
    first, count = base.get(split, (0, None)) if split in canonical_splits else (0, None)
    new_first, new_count = (overrides or {}).get(split, (None, None))
    first = first if new_first is None else new_first
    count = count if new_count is None else new_count
    if (first, count) != (0, None):
      ranges[split] = (first, count)
  return ranges


def resolve_config(spec: ModelSpec, config: RunConfig) -> RunConfig:
  """`config` with every default filled in: the model type, train steps and batch size of the spec,
  every hyperparameter of the task (overrides applied) and the malformed-row bar.

  Idempotent. The pipeline (the Trainer's `custom_config`, hence its cache key), the run summary's
  `config` and `--config` replays all read this form, so a run given these values explicitly builds
  the same pipeline as the run that took them as defaults.

  Raises:
    ValueError: an unknown model type or hyperparameter, a strategy the task does not support,
      or train steps for a task that does not train by steps.
  """
  if spec.train_steps is None and config.train_steps is not None:
    raise ValueError(f'{spec.name} does not train by steps: --train_steps does not apply')
  trainer = trainer_config(spec, config)
  return dataclasses.replace(
      config, model_type=trainer.model_type, batch_size=trainer.batch_size,
      train_steps=config.train_steps or spec.train_steps,
      hparams=task_class(trainer).resolve_hparams(trainer.hparams),
      max_malformed_fraction=(spec.max_malformed_fraction if config.max_malformed_fraction is None
                              else config.max_malformed_fraction))


def trainer_config(spec: ModelSpec, config: RunConfig) -> TrainerConfig:
  """The shared trainer's settings for this spec and run, checked against the task.

  Raises:
    ValueError: an unknown model type or hyperparameter, or a strategy the task does not support.
  """
  model_type = config.model_type or spec.default_model_type
  if model_type not in spec.model_types:
    raise ValueError(f'unknown model type {model_type!r} for {spec.name}; expected one of '
                     f'{", ".join(spec.model_types)}')
  trainer = TrainerConfig(task=spec.task, model_type=model_type, hparams=dict(config.hparams),
                          batch_size=config.batch_size or spec.batch_size,
                          distribution_strategy=config.distribution_strategy,
                          num_gpus=config.num_gpus, tpu=config.tpu,
                          mixed_precision=config.mixed_precision,
                          transform_in_trainer=bool(spec.preprocessing_fn)
                          and not spec.materialize_transform)
  task_class(trainer)
  return trainer


def _code(paths: Sequence[str]) -> Optional[str]:
  """code_fingerprint of the project code among `paths`; None when there is none."""
  project = [p for p in paths if p and fingerprint.is_project_code(p)]
  return fingerprint.code_fingerprint(project) if project else None


def _eval_config_code(eval_config: Any) -> List[str]:
  """`module.Class` of every custom metric an EvalConfig (proto or its JSON) names."""
  if isinstance(eval_config, str):
    eval_config = json_format.Parse(eval_config, tfma.EvalConfig())
  return sorted({f'{metric.module}.{metric.class_name}' for spec in eval_config.metrics_specs
                 for metric in spec.metrics if metric.module})


def add_fingerprints(spec: ModelSpec, inputs: RunInputs, components: Mapping[str, Any]) -> None:
  """Adds the content fingerprints of the project code and files each component runs on to its
  exec properties (pipelines.fingerprint.add_to_cache_key), so that TFX's cache re-runs the
  component when they change, and everything downstream through its new artifacts.

  Args:
    spec, inputs: the model and what the run reads.
    components: node id -> component of the pipeline being built. Fingerprinted: the ExampleGen
      (`example_gen`: its component and executor modules, the code its settings name, such as the
      line parser, and `inputs.input_digests`), `ImportSchemaGen` (the schema file's bytes),
      `Transform` (the preprocessing_fn and `transform_files`), `Trainer`
      (`model_fns.trainer.run_fn` and the task), `Evaluator` (the custom metrics of its
      EvalConfig and the spec's model ops module), and any other component of project code
      (AnomaliesGate, ServingCheck): its modules and the project code its string exec properties
      name. Stock TFX components with no project code are left as they are.

  Raises:
    ModuleNotFoundError: a named module is not on sys.path.
    FileNotFoundError: the schema or a local transform file is missing.
  """
  example_gen = components.get('example_gen')
  if example_gen is not None:
    settings = record_checks.custom_config(example_gen.exec_properties)
    fingerprint.add_to_cache_key(
        example_gen, code=_code(fingerprint.component_code(example_gen, settings)),
        data=dict(inputs.input_digests))
  if 'ImportSchemaGen' in components:
    fingerprint.add_to_cache_key(components['ImportSchemaGen'],
                                 schema=fingerprint.file_fingerprint(spec.schema_file))
  handled = ('example_gen', 'ImportSchemaGen', 'Transform', 'Trainer', 'Evaluator')
  for node_id, component in sorted(components.items()):
    if node_id not in handled and component is not example_gen:  # AnomaliesGate, ServingCheck
      properties = {k: v for k, v in component.exec_properties.items() if isinstance(v, str)}
      fingerprint.add_to_cache_key(
          component, code=_code(fingerprint.component_code(component, properties)))
  if 'Transform' in components:
    files = {key: fingerprint.file_fingerprint(path)
             for key, path in sorted(inputs.transform_files.items())
             if isinstance(path, str) and (is_remote(path) or os.path.exists(path))}
    fingerprint.add_to_cache_key(components['Transform'], code=_code([spec.preprocessing_fn]),
                                 files={k: v for k, v in files.items() if v})
  if 'Trainer' in components:
    fingerprint.add_to_cache_key(components['Trainer'], code=_code([RUN_FN, spec.task]))
  if 'Evaluator' in components:
    evaluator = components['Evaluator']
    fingerprint.add_to_cache_key(evaluator, code=_code(
        _eval_config_code(evaluator.exec_properties['eval_config'])
        + [spec.model_ops_module or '']))


def create_pipeline(spec: ModelSpec, config: RunConfig,
                    inputs: 'RunInputs | Mapping[str, str]',
                    local_metadata: bool = True) -> tfx.dsl.Pipeline:
  """Builds the TFX pipeline of `spec` for one run.

  Args:
    spec: the model.
    config: the run's settings, resolved or not (`resolve_config` is applied; idempotent).
    inputs: what the run reads (`RunInputs`), or just {split: raw data file}, already resolved
      and verified, e.g. {'train': '.../adult.data.gz', 'eval': '.../adult.test.gz'}.
    local_metadata: connect to the run's ML Metadata (`config.metadata_connection_config`: SQLite
      at `config.metadata_path`, or a MySQL database); False for an engine that brings its own
      (Kubeflow, Vertex).

  Building the pipeline also configures this process's Beam SDK harness (beam_runner.sdk_harness):
  with a local engine (LocalDagRunner, the `tfx` CLI, Airflow), the process that builds the
  pipeline is the one that runs its Beam stages with DirectRunner or LOOPBACK. Other workers
  configure theirs, and register the spec's op libraries, through `--beam_plugins`
  (beam_runner.runners.worker_args).

  Returns:
    A tfx.dsl.Pipeline named `spec.name`, rooted at `config.pipeline_root`.

  Raises:
    ValueError: bad model type, hyperparameter or strategy; non-positive train steps or batch
      size; train steps for a task that does not train by steps.
    ModuleNotFoundError, FileNotFoundError: code or a file to fingerprint is missing (see
      `add_fingerprints`).
  """
  config = resolve_config(spec, config)
  inputs = RunInputs.of(inputs)
  train_steps = config.train_steps
  if (train_steps is not None and train_steps <= 0) or config.batch_size <= 0:
    raise ValueError('train_steps and batch_size must be positive')
  input_base, patterns = split_patterns(inputs.split_files)
  sdk_harness.configure()

  example_gen = spec.example_gen(input_base, patterns, config.max_malformed_fraction,
                                 inputs.row_ranges, inputs.example_gen_files)
  statistics_gen = tfx.components.StatisticsGen(examples=example_gen.outputs['examples'])
  schema_gen = tfx.components.ImportSchemaGen(schema_file=spec.schema_file)
  example_validator = tfx.components.ExampleValidator(
      statistics=statistics_gen.outputs['statistics'], schema=schema_gen.outputs['schema'])
  anomalies_gate = AnomaliesGate(anomalies=example_validator.outputs['anomalies'],
                                 examples=example_gen.outputs['examples'])
  if spec.preprocessing_fn:
    transform = tfx.components.Transform(
        examples=example_gen.outputs['examples'], schema=schema_gen.outputs['schema'],
        preprocessing_fn=spec.preprocessing_fn,
        force_tf_compat_v1=spec.transform_tf_compat_v1,
        disable_statistics=not config.transform_statistics,
        disable_analyzer_cache=not config.transform_analyzer_cache,
        materialize=spec.materialize_transform,
        custom_config={**config.transform_settings, **inputs.transform_files} or None)
    transform.add_upstream_node(anomalies_gate)
    # Not materialized: the Trainer reads the raw examples and applies the transform graph.
    training_inputs = {'examples': transform.outputs['transformed_examples']
                                   if spec.materialize_transform else example_gen.outputs['examples'],
                       'transform_graph': transform.outputs['transform_graph']}
    preprocessing = [transform]
  else:  # The model reads the raw examples; the gate still stops the run before the Trainer.
    training_inputs = {'examples': example_gen.outputs['examples']}
    preprocessing = []
  trainer = tfx.components.Trainer(
      run_fn=RUN_FN,
      schema=schema_gen.outputs['schema'],
      train_args=tfx.proto.TrainArgs(num_steps=train_steps),
      eval_args=tfx.proto.EvalArgs(),
      custom_config=trainer_config(spec, config).to_custom_config(),
      **training_inputs)
  if not preprocessing:
    trainer.add_upstream_node(anomalies_gate)
  model_resolver = tfx.dsl.Resolver(
      strategy_class=tfx.dsl.experimental.LatestBlessedModelStrategy,
      model=tfx.dsl.Channel(type=tfx.types.standard_artifacts.Model),
      model_blessing=tfx.dsl.Channel(type=tfx.types.standard_artifacts.ModelBlessing),
  ).with_id('latest_blessed_model_resolver')
  evaluator = tfx.components.Evaluator(
      examples=example_gen.outputs['examples'], model=trainer.outputs['model'],
      baseline_model=model_resolver.outputs['model'],
      eval_config=spec.evaluation_for(inputs.reduced_data, config.hparams).eval_config(),
      module_path=spec.model_ops_module)
  # Serves the candidate in a fresh TensorFlow process with the spec's op libraries and checks
  # its answers to TF Serving requests built from eval examples (InfraValidator's contract).
  serving_check = ServingCheck(
      model=trainer.outputs['model'], examples=example_gen.outputs['examples'],
      request_spec=default_request_spec(split_name='eval'),
      serving_op_modules=spec.serving_op_modules, model_name=spec.name)
  serving_check.add_upstream_node(evaluator)
  pusher = tfx.components.Pusher(
      model=trainer.outputs['model'], model_blessing=evaluator.outputs['blessing'],
      infra_blessing=serving_check.outputs['blessing'],
      push_destination=tfx.proto.PushDestination(
          filesystem=tfx.proto.PushDestination.Filesystem(
              base_directory=config.serving_model_dir)))

  components = [example_gen, statistics_gen, schema_gen, example_validator, anomalies_gate,
                *preprocessing, trainer, model_resolver, evaluator, serving_check, pusher]
  add_fingerprints(spec, inputs, {'example_gen': example_gen,
                                  **{c.id: c for c in components if c is not example_gen}})
  return tfx.dsl.Pipeline(
      pipeline_name=spec.name,
      pipeline_root=config.pipeline_root,
      components=components,
      enable_cache=config.enable_cache,
      metadata_connection_config=config.metadata_connection_config if local_metadata else None,
      # A remote or portable runner's workers import the model's op libraries and the harness
      # configuration when they start (--beam_plugins); DirectRunner's args stay as they are.
      beam_pipeline_args=beam_runners.worker_args(config.beam_pipeline_args,
                                                  list(spec.serving_op_modules)))
