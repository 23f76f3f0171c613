"""The `official-tfx` flags and the run they describe: one definition for the command line
(pipelines/cli.py) and for the engines' runner files (pipelines/engines.py).

`build_run(model)` turns the parsed flags into (spec, RunConfig, RunInputs).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from typing import Any, Dict, List, Mapping, Optional, Tuple

from absl import app, flags
from ml_metadata.proto import metadata_store_pb2

from beam_runner import runners as beam_runners
from model_fns.strategy import STRATEGIES
from pipelines import spec as spec_lib
from pipelines import factory, fingerprint, metadata_store
from pipelines.factory import RunConfig, RunInputs
from preprocessing import datasets

FLAGS = flags.FLAGS
flags.DEFINE_string('model_type', None, 'Model variant; default: the model\'s first (census: '
                    'wide_deep, wide or deep).')
flags.DEFINE_string('data_root', None, 'Local data root laid out like ../shared/data (plain or .gz '
                    f'files); default ${datasets.DATA_ROOT_ENV}. When unset, canonical files are '
                    'downloaded into the cache.')
flags.DEFINE_string('cache_dir', None, f'Download cache; default ${datasets.CACHE_DIR_ENV} or '
                    f'{datasets.DEFAULT_CACHE_DIR}.')
flags.DEFINE_string('output_dir', None, 'Where the run writes pipeline artifacts, ML Metadata, the '
                    'pushed model, logs and run_summary.json; default ./output/<model>.')
flags.DEFINE_string('pipeline_root', None, 'Where the components write their artifacts; default '
                    '<output_dir>/pipeline_root. A gs:// path for Dataflow (ML Metadata, logs, the '
                    'run summary and the pushed model stay in --output_dir).')
flags.DEFINE_string('serving_model_dir', None, 'Where the Pusher copies a blessed model; default '
                    '<output_dir>/serving_model (compile: <pipeline_root>/serving_model).')
flags.DEFINE_string('image', None, 'compile: the container image of every component, with this '
                    'package installed (default: TFX\'s image, which lacks it).')
flags.DEFINE_string('output_file', None, 'compile: the KFP v2 pipeline spec to write; default '
                    '<model>_pipeline.json.')
flags.DEFINE_integer('train_steps', None, 'Training steps; default: the model\'s.', lower_bound=1)
flags.DEFINE_integer('batch_size', None, 'Global training batch size; default: the model\'s.',
                     lower_bound=1)
flags.DEFINE_string('hparams', '{}', 'JSON object of hyperparameter overrides, e.g. '
                    '\'{"learning_rate": 0.003, "hidden_units": [64, 32]}\'.')
flags.DEFINE_enum('distribution_strategy', 'default', STRATEGIES, 'tf.distribute strategy.')
flags.DEFINE_integer('num_gpus', 0, 'GPUs for one_device / mirrored.', lower_bound=0)
flags.DEFINE_string('tpu', None, 'TPU name or grpc:// address for the tpu strategy.')
flags.DEFINE_enum('mixed_precision', None, ['float16', 'bfloat16'], 'Train in mixed precision: '
                  'float16 on GPUs, bfloat16 on TPUs (cifar10, imagenet).')
flags.DEFINE_enum('beam_runner', 'direct', beam_runners.RUNNERS, 'Where the Beam stages run '
                  '(ExampleGen, StatisticsGen, Transform, Evaluator; predict): DirectRunner in this '
                  'process, Beam\'s portable runner, Dataflow, Flink or Spark.')
flags.DEFINE_integer('beam_direct_num_workers', 1, 'Beam DirectRunner workers; more than 1 runs '
                     'multi-process.', lower_bound=1)
flags.DEFINE_string('project', None, 'Dataflow: Google Cloud project id.')
flags.DEFINE_string('region', None, 'Dataflow: region, e.g. us-central1.')
flags.DEFINE_string('temp_location', None, 'Dataflow: gs:// temporary location.')
flags.DEFINE_string('staging_location', None, 'Dataflow: gs:// staging location (default: temp).')
flags.DEFINE_integer('num_workers', None, 'Dataflow: initial workers.', lower_bound=1)
flags.DEFINE_integer('max_num_workers', None, 'Dataflow: maximum workers (autoscaling).',
                     lower_bound=1)
flags.DEFINE_string('machine_type', None, 'Dataflow: worker machine type, e.g. n2-standard-4.')
flags.DEFINE_string('setup_file', None, 'Dataflow: the package shipped to workers (default: this '
                    'checkout\'s setup.py).')
flags.DEFINE_string('sdk_container_image', None, 'Dataflow: a worker image with this package '
                    'installed, instead of --setup_file.')
flags.DEFINE_string('job_endpoint', None, 'Flink / Spark / portable: a Beam job service that is '
                    'already running (host:port); default: Flink and Spark start Beam\'s job server '
                    'from its jar, portable uses `embed` (Beam\'s Python job service in this '
                    'process).')
flags.DEFINE_string('flink_master', None, 'Flink: the cluster of the job server Beam starts: '
                    f'{beam_runners.DEFAULT_FLINK_MASTER} (default: an embedded mini-cluster), '
                    '[auto] or host:port of a Flink REST endpoint.')
flags.DEFINE_enum('flink_version', None, beam_runners.FLINK_VERSIONS, 'Flink: the Flink version of '
                  f'that job server (default {beam_runners.DEFAULT_FLINK_VERSION}).')
flags.DEFINE_string('spark_master_url', None, 'Spark: the master of the job server Beam starts: '
                    f'local[N] (default {beam_runners.DEFAULT_SPARK_MASTER}), local[*] or '
                    'spark://host:port.')
flags.DEFINE_string('flink_job_server_jar', None, 'Flink: a local Beam Flink job server jar (for '
                    'offline use) instead of the one fetched from Maven Central on first use into '
                    '~/.apache_beam/cache/jars.')
flags.DEFINE_string('spark_job_server_jar', None, 'Spark: a local Beam Spark 3 job server jar (for '
                    'offline use) instead of the one fetched from Maven Central on first use into '
                    '~/.apache_beam/cache/jars.')
flags.DEFINE_string('environment_type', None, 'Flink / Spark / portable: where the SDK workers '
                    'run: LOOPBACK (in this process; the default for a cluster on this machine), '
                    'EXTERNAL (a worker pool: python -m beam_runner.worker_pool), PROCESS or DOCKER.')
flags.DEFINE_string('environment_config', None, 'Flink / Spark / portable: the worker pool\'s '
                    'host:port (EXTERNAL), the boot command as JSON (PROCESS) or the image (DOCKER).')
BEAM_FLAGS = ('project', 'region', 'temp_location', 'staging_location', 'num_workers',
              'max_num_workers', 'machine_type', 'setup_file', 'sdk_container_image',
              'job_endpoint', 'flink_master', 'flink_version', 'spark_master_url',
              'flink_job_server_jar', 'spark_job_server_jar', 'environment_type',
              'environment_config')
# ML Metadata on a database server (pipelines.metadata_store); the password is never a flag.
flags.DEFINE_string('metadata_mysql_host', None, 'Keep ML Metadata in a MySQL (or MariaDB) '
                    'database on this server instead of <output_dir>/metadata.sqlite, as TFX does '
                    'in production; with --metadata_mysql_database and --metadata_mysql_user, the '
                    f'password in ${metadata_store.PASSWORD_ENV}. 127.0.0.1, not localhost, for '
                    'TCP on this machine.')
flags.DEFINE_integer('metadata_mysql_port', metadata_store.DEFAULT_MYSQL_PORT,
                     'The MySQL server\'s port.', lower_bound=1, upper_bound=65535)
flags.DEFINE_string('metadata_mysql_database', None, 'The ML Metadata database (MLMD creates it '
                    'when missing, if the user may); one per --output_dir.')
flags.DEFINE_string('metadata_mysql_user', None, 'The MySQL user of ML Metadata.')
flags.DEFINE_string('metadata_connection_config', None, 'Keep ML Metadata where this file says: a '
                    'text-format ml_metadata.proto.ConnectionConfig, TFX\'s own format, e.g. '
                    '`mysql { host: "db" port: 3306 database: "mlmd" user: "tfx" }` (a socket '
                    f'instead of the host; the password, if not in the file, from '
                    f'${metadata_store.PASSWORD_ENV}). Instead of --metadata_mysql_*.')
METADATA_FLAGS = ('metadata_mysql_host', 'metadata_mysql_port', 'metadata_mysql_database',
                  'metadata_mysql_user', 'metadata_connection_config')
flags.DEFINE_boolean('enable_cache', True, 'Reuse the outputs of unchanged components.')
flags.DEFINE_float('max_malformed_fraction', None, 'Fail when more than this fraction of a '
                   'split\'s raw rows is malformed; default: the model\'s (census 0.001, higgs 0: '
                   'the first malformed row fails the run).', lower_bound=0, upper_bound=0.999999)
flags.DEFINE_boolean('transform_statistics', False, 'Let Transform compute pre- and '
                     'post-transform statistics (slower).')
flags.DEFINE_boolean('transform_analyzer_cache', False, 'Let Transform write tf.Transform\'s '
                     'analyzer cache (for runs over overlapping spans; slower).')
flags.DEFINE_string('from_stage', None, 'Partial run: run from this stage (e.g. Trainer) to the '
                    'end, or to --to_stage, re-running it and what follows (no cache) with the '
                    'other stages\' outputs taken from the last run in --output_dir.')
flags.DEFINE_string('to_stage', None, 'Partial run: stop after this stage (e.g. Transform).')
flags.DEFINE_list('compare', None, 'runs: two runs to compare (run ids, unique prefixes or '
                  'positions: 1 the oldest, -1 the newest), e.g. --compare=1,-1.')
flags.DEFINE_boolean('sample', False, 'Read the dataset\'s small real samples from the data root '
                     'instead of its canonical files (higgs: HIGGS.sample-11k.csv to train, '
                     'HIGGS.sample-5k.csv to evaluate).')
# Row ranges, named as in the seed (official/boosted_trees/train_higgs.py). Rows are the lines of
# the split's file, from 0; the default is the dataset's range for its canonical file (higgs: the
# first 1,000,000 rows to train, 1,000,000 rows from row 10,000,000 to evaluate), else all rows.
for _split in ('train', 'eval'):
  flags.DEFINE_integer(f'{_split}_start', None, f'First row of the {_split} split\'s file to read.',
                       lower_bound=0)
  flags.DEFINE_integer(f'{_split}_count', None, f'Rows of the {_split} split\'s file to read.',
                       lower_bound=1)


def _define_model_flags() -> Tuple[Tuple[str, ...], Tuple[str, ...]]:
  """Defines each discovered spec's own flags: its hyperparameter flags (`spec.HparamFlag`), a
  string flag per side file (`--<setting>`: mrpc's `--vocab_file`, imagenet's `--synsets_file`)
  and a `--<split>_data` flag per raw split (`--train_data`, movielens' `--ratings_data`).
  A flag that several models declare is one flag, its help naming each; returns the
  (hyperparameter flags' names, raw data flags' names).

  Raises:
    ValueError: two models declare one hyperparameter flag with different kinds.
  """
  declared: Dict[str, List[Tuple[str, spec_lib.HparamFlag]]] = {}
  files: Dict[str, List[str]] = {}
  splits: Dict[str, List[str]] = {}
  for model in spec_lib.all_specs():
    for split in model.dataset.splits:
      splits.setdefault(split, []).append(model.name)
    for flag in model.hparam_flags:
      declared.setdefault(flag.name, []).append((model.name, flag))
    for component, side_files in (('Transform', model.transform_files),
                                  ('ExampleGen', model.example_gen_files)):
      for setting, (dataset, name) in side_files.items():
        files.setdefault(setting, []).append(f'{model.name}: the {component}\'s {setting}, '
                                             f'instead of the registry\'s {dataset.name} {name}')
  for name, uses in sorted(declared.items()):
    kinds = {flag.kind for _, flag in uses}
    if len(kinds) > 1:
      raise ValueError(f'--{name} is declared with different kinds: '
                       f'{", ".join(f"{model} {flag.kind}" for model, flag in uses)}')
    helps: Dict[str, List[str]] = {}
    for model, flag in uses:  # models that say the same share one mention
      helps.setdefault(flag.help, []).append(model)
    text = '; '.join(f'{", ".join(models)}: {help_}' for help_, models in helps.items())
    kind = kinds.pop()
    if kind == 'float':
      flags.DEFINE_float(name, None, text)
    elif kind == 'integer':
      flags.DEFINE_integer(name, None, text, lower_bound=1)
    elif kind == 'integers':
      flags.DEFINE_list(name, None, text)
    else:
      flags.DEFINE_string(name, None, text)
  for setting, helps in sorted(files.items()):
    flags.DEFINE_string(setting, None, '; '.join(helps) + ' (unverified)')
  for split, models in sorted(splits.items()):  # the raw input files: --train_data, ...
    flags.DEFINE_string(f'{split}_data', None, f'{", ".join(models)}: read the {split} split from '
                        'this file (or image folder) instead of the canonical one (same raw '
                        'format; not checksummed). A remote URI (gs://...) is read where '
                        'ExampleGen runs (compile, remote runners).')
  return tuple(sorted(declared)), tuple(f'{split}_data' for split in sorted(splits))


HPARAM_FLAGS, DATA_FLAGS = _define_model_flags()
flags.DEFINE_string('config', None, 'run / compile: replay the settings of a run\'s '
                    'run_summary.json (its resolved config and the data and engine flags it was '
                    'given), or take them from a YAML or JSON file of flag values, e.g. '
                    '{train_steps: 300, hparams: {learning_rate: 0.01}}. Flags given on the command '
                    'line override it.')
# `official-tfx predict` (pipelines/predict.py).
flags.DEFINE_string('input', None, 'predict: raw input in the model\'s canonical format, a file '
                    'or a glob pattern (plain or compressed, any Beam file system).')
flags.DEFINE_string('output', None, 'predict: the predictions file (written atomically).')
flags.DEFINE_enum('output_format', 'jsonl', ('jsonl', 'csv'), 'predict: JSON lines or CSV.')
flags.DEFINE_boolean('with_labels', False, 'predict: print the accuracy against the input\'s '
                     'labels (the model never sees them).')
flags.DEFINE_string('model_dir', None, 'predict: a SavedModel (or a folder of numbered versions) '
                    'instead of the newest pushed model of --output_dir.')



def _split_files(spec) -> Tuple[Dict[str, str], List[str], datasets.ResolvedSplits]:
  """The raw files of the run, from the data flags: ({split: file}, the splits read from the
  dataset's own files, and what preprocessing.datasets.resolve found for those).

  A split comes from `--<split>_data` when given (unverified; a remote URI is not even looked
  at here), else from the dataset's sample (`--sample`) or canonical file, resolved and verified.
  """
  if FLAGS.sample and not spec.dataset.sample_splits:
    raise datasets.DatasetError(f'--sample: {spec.name} has no sample files')
  names = spec.dataset.sample_splits if FLAGS.sample else spec.dataset.splits
  files = {}
  for split in names:
    given = getattr(FLAGS, f'{split}_data', None)
    if given and factory.is_remote(given):  # read, and so checked, by ExampleGen where it runs
      files[split] = given
    elif given:
      files[split] = os.path.abspath(given)
      if not os.path.exists(files[split]):  # a file, or an image folder
        raise datasets.DatasetError(f'--{split}_data: nothing at {files[split]}')
  resolved = datasets.resolve(spec.dataset, FLAGS.data_root, FLAGS.cache_dir, sample=FLAGS.sample,
                              splits=[split for split in names if split not in files])
  files.update(resolved.files)
  canonical = [] if FLAGS.sample else list(resolved.files)
  return {split: files[split] for split in names}, canonical, resolved


def _side_files(files: Mapping[str, Tuple[datasets.Dataset, str]]) -> Dict[str, str]:
  """A spec's `transform_files` or `example_gen_files`, resolved and verified with --data_root and
  --cache_dir: {setting: path}. `--<setting>` (e.g. `--vocab_file`) replaces one, unverified; a
  remote URI is read where its component runs.

  Raises:
    datasets.DatasetError: a file missing from the data root, not downloadable, or corrupt.
  """
  resolved = {}
  for key, (dataset, name) in files.items():
    given = getattr(FLAGS, key)  # the spec's own flag (`_define_model_flags`)
    if given:
      resolved[key] = given if factory.is_remote(given) else os.path.abspath(given)
    else:
      resolved[key] = datasets.resolve_file(dataset, name, FLAGS.data_root, FLAGS.cache_dir)
  return resolved


def beam_runner_config(sdk_container_image: Optional[str] = None
                       ) -> beam_runners.BeamRunnerConfig:
  """The Beam runner options of the runner flags (unchecked: see `_beam_pipeline_args`),
  `sdk_container_image` standing for an unset `--sdk_container_image`."""
  values = {name: getattr(FLAGS, name) for name in BEAM_FLAGS}
  if sdk_container_image and not values.get('sdk_container_image'):
    values['sdk_container_image'] = sdk_container_image
  return beam_runners.BeamRunnerConfig(
      runner=FLAGS.beam_runner, direct_num_workers=FLAGS.beam_direct_num_workers, **values)


def check_beam_services(say=lambda line: None) -> None:
  """Checks the job server jar and the services the runner flags name (beam_runner.runners.
  check_services: may fetch the jar on first use), before any Beam stage runs.

  Raises:
    app.UsageError: one line naming the flag and what was expected.
  """
  try:
    beam_runners.check_services(beam_runner_config(), say=say)
  except beam_runners.BeamOptionsError as e:
    raise app.UsageError(str(e)) from None


def _beam_pipeline_args(sdk_container_image: Optional[str] = None):
  """The Beam stages' arguments from the runner flags, `sdk_container_image` standing for an
  unset `--sdk_container_image`; raises BeamOptionsError (a usage error)."""
  config = beam_runner_config(sdk_container_image)
  if FLAGS.beam_runner == 'dataflow' and not (FLAGS.pipeline_root or '').startswith('gs://'):
    raise beam_runners.BeamOptionsError(
        'Dataflow workers read and write the pipeline\'s artifacts: set --pipeline_root to a '
        'gs:// path')
  return beam_runners.pipeline_args(config)




def _hparams(spec: spec_lib.ModelSpec) -> Dict[str, Any]:
  """--hparams with the model's hyperparameter flags applied.

  Raises:
    app.UsageError: bad JSON, a bad list of integers, or a hyperparameter flag that the model does
      not declare (naming the ones it does).
  """
  try:
    hparams = json.loads(FLAGS.hparams)
  except json.JSONDecodeError as e:
    raise app.UsageError(f'--hparams is not a JSON object: {e}')
  if not isinstance(hparams, dict):
    raise app.UsageError('--hparams must be a JSON object')
  own = {flag.name: flag for flag in spec.hparam_flags}
  for name in HPARAM_FLAGS:
    value = getattr(FLAGS, name)
    if value is None:
      continue
    if name not in own:
      raise app.UsageError(f'--{name} does not apply to {spec.name}; its hyperparameter flags: '
                           f'{", ".join(f"--{n}" for n in own) or "none"} (any hyperparameter: '
                           '--hparams)')
    if own[name].kind == 'integers':
      try:
        value = [int(v) for v in value]
      except ValueError:
        raise app.UsageError(f'--{name}={",".join(value)}: expected whole numbers, e.g. '
                             '64,32,16,8') from None
      if not value or min(value) <= 0:
        raise app.UsageError(f'--{name}={",".join(map(str, value))}: sizes must be positive')
    hparams[name] = value
  return hparams


def check_flags(spec: spec_lib.ModelSpec) -> None:
  """The usage errors of a run of `spec`, found from the flags alone, before anything is written:
  bad --hparams, model type, hyperparameter or strategy (checked against the task), data flags the
  model does not read, a --<split>_data path with nothing there, a --sample the model has no
  sample for, a stage name that is not the model's, bad Beam runner options.

  Numbers that must be positive (steps, batch size, counts, epochs) are bounded in their flag
  definitions, which absl checks while parsing.

  Raises:
    app.UsageError: with a one-line message naming the flag.
  """
  from pipelines import runner  # pylint: disable=import-outside-toplevel
  for flag in DATA_FLAGS:
    split = flag[:-len('_data')]
    given = getattr(FLAGS, flag)
    if given is None:
      continue
    if split not in spec.dataset.splits:
      expected = ', '.join(f'--{name}_data' for name in spec.dataset.splits) or 'none'
      raise app.UsageError(f'--{flag} does not apply to {spec.name}, whose raw input is '
                           f'{", ".join(spec.dataset.splits.values()) or "fixed"}; its data '
                           f'flags: {expected}')
    if not factory.is_remote(given) and not os.path.exists(given):
      raise app.UsageError(f'--{flag}: nothing at {os.path.abspath(given)}')
  for split in ('train', 'eval'):
    for part in ('start', 'count'):
      if getattr(FLAGS, f'{split}_{part}') is not None and split not in spec.dataset.splits:
        raise app.UsageError(f'--{split}_{part} does not apply to {spec.name}: it reads no '
                             f'{split} file (its splits are made from '
                             f'{", ".join(spec.dataset.splits.values())})')
  if FLAGS.sample and not spec.dataset.sample_splits:
    raise app.UsageError(f'--sample: {spec.name} has no sample files')
  try:
    runner.check_stage(spec, FLAGS.from_stage, 'from_stage')
    runner.check_stage(spec, FLAGS.to_stage, 'to_stage')
    if spec.train_steps is None and FLAGS.train_steps is not None:
      raise ValueError(f'{spec.name} does not train by steps: --train_steps does not apply')
    factory.trainer_config(spec, RunConfig(
        output_dir='', model_type=FLAGS.model_type, batch_size=FLAGS.batch_size,
        hparams=_hparams(spec), distribution_strategy=FLAGS.distribution_strategy,
        num_gpus=FLAGS.num_gpus, tpu=FLAGS.tpu, mixed_precision=FLAGS.mixed_precision))
    _beam_pipeline_args()
  except (ValueError, beam_runners.BeamOptionsError) as e:
    raise app.UsageError(str(e)) from None


# Flags of the other commands, which a --config file does not set.
_OTHER_COMMANDS = ('config', 'compare', 'input', 'output', 'output_format', 'with_labels',
                   'model_dir')
# Where a recorded run wrote and read on its machine (its ML Metadata store included), and which
# of its stages ran: a summary replay leaves these to the new command line.
_PLACES = ('output_dir', 'pipeline_root', 'serving_model_dir', 'data_root', 'cache_dir',
           'from_stage', 'to_stage', 'image', 'output_file') + METADATA_FLAGS
_PATH_FLAGS = DATA_FLAGS + ('vocab_file', 'synsets_file', 'setup_file', 'flink_job_server_jar',
                            'spark_job_server_jar')


def run_flags() -> List[str]:
  """The names of the flags that describe a run (those a --config file may set)."""
  return sorted(flag.name for flag in FLAGS.get_flags_for_module(__name__)
                if flag.name not in _OTHER_COMMANDS)


def _summary_values(summary: Mapping[str, Any], path: str) -> Dict[str, Any]:
  """The flag values that rerun a run_summary.json: the flags its command line gave (but the
  places in `_PLACES`), then its resolved settings (model type, steps, batch size, every
  hyperparameter, strategy, row ranges, ...), which a later change of a default cannot move."""
  config = summary.get('config')
  if not isinstance(config, dict):
    raise app.UsageError(f'--config {path}: this run summary has no `config` (it predates its '
                         'recording); give a YAML or JSON file of flag values instead')
  values = {name: value for name, value in (config.get('command_line') or {}).items()
            if name not in _PLACES and name not in _OTHER_COMMANDS}
  for name in ('model_type', 'train_steps', 'batch_size', 'distribution_strategy', 'num_gpus',
               'tpu', 'mixed_precision', 'max_malformed_fraction', 'transform_statistics',
               'transform_analyzer_cache'):
    if config.get(name) is not None:
      values[name] = config[name]
  values['hparams'] = config.get('hparams') or {}
  for name in HPARAM_FLAGS:  # the hyperparameters are all in `hparams`, resolved
    values.pop(name, None)
  ranges = (summary.get('inputs') or {}).get('row_ranges') or config.get('row_ranges') or {}
  for split, (first, count) in ranges.items():
    if f'{split}_start' in FLAGS:
      values[f'{split}_start'] = first
      if count is not None:
        values[f'{split}_count'] = count
  return values


def _flag_text(value: Any) -> str:
  """A YAML / JSON value as absl parses it from the command line."""
  if isinstance(value, bool):
    return 'true' if value else 'false'
  if isinstance(value, dict):
    return json.dumps(value)
  if isinstance(value, (list, tuple)):
    return ','.join(map(str, value))
  return str(value)


def apply_config_file(model: str) -> Dict[str, Any]:
  """Sets, from `--config`, every run flag that the command line did not give.

  `--config` is either a run_summary.json of an earlier `official-tfx run` of `model` (see
  `_summary_values`), or a YAML or JSON mapping of flag names (without `--`) to values, e.g.
  `{train_steps: 300, hparams: {learning_rate: 0.01}, layers: [64, 32, 16, 8]}`. A value of
  null leaves the flag's default. Each value goes through the flag's own parser and bounds, as
  it would from the command line.

  Returns:
    {flag name: value} of the flags set from the file (empty without --config).

  Raises:
    app.UsageError: the file is unreadable, not JSON or YAML, not a mapping, a summary of
      another model, or names an unknown flag or a value its flag rejects (the message names
      the file and the key).
  """
  path = FLAGS.config
  if not path:
    return {}
  try:
    with open(path, encoding='utf-8') as f:
      text = f.read()
  except (OSError, UnicodeDecodeError) as e:
    raise app.UsageError(f'--config {path}: cannot read it ({getattr(e, "strerror", None) or e})')
  try:
    data = json.loads(text)
  except json.JSONDecodeError:
    import yaml  # pylint: disable=import-outside-toplevel
    try:
      data = yaml.safe_load(text)
    except yaml.YAMLError as e:
      raise app.UsageError(f'--config {path}: neither JSON nor YAML: '
                           f'{" ".join(str(e).split())}') from None
  if not isinstance(data, dict):
    raise app.UsageError(f'--config {path}: expected a mapping of flag names to values (or a '
                         f'run_summary.json), got {type(data).__name__}')
  if 'model' in data and 'stages' in data:  # a run summary
    if data['model'] != model:
      raise app.UsageError(f'--config {path}: the summary of a {data["model"]} run, not {model}')
    values = _summary_values(data, path)
  else:
    values = data
  allowed = run_flags()
  unknown = sorted(name for name in map(str, values) if name not in allowed)
  if unknown:
    raise app.UsageError(f'--config {path}: not a run flag: {", ".join(unknown)} (run flags: '
                         'official-tfx --helpfull)')
  applied = {}
  for name, value in values.items():
    if value is None or FLAGS[name].present:  # the command line wins
      continue
    try:
      FLAGS[name].parse(_flag_text(value))
    except (flags.Error, ValueError) as e:
      reason = re.sub(rf'^flag --{name}=.*?: ', '', str(e))  # absl's prefix: the key says it
      raise app.UsageError(f'--config {path}: {name}: {reason}') from None
    applied[name] = value
  return applied


def _command_line() -> Dict[str, Any]:
  """The run flags given (on the command line or by --config), local paths made absolute."""
  given = {name: FLAGS[name].value for name in run_flags() if FLAGS[name].present}
  for name in _PATH_FLAGS:
    if given.get(name) and not factory.is_remote(given[name]):
      given[name] = os.path.abspath(given[name])
  return given


def given_metadata_connection() -> Optional[metadata_store_pb2.ConnectionConfig]:
  """The ML Metadata store the flags name: --metadata_connection_config's file, or a MySQL
  database from --metadata_mysql_host / _port / _database / _user and the password in
  $OFFICIAL_TFX_METADATA_MYSQL_PASSWORD; None when no such flag is given.

  Raises:
    app.UsageError: both kinds of flags, a MySQL flag without the others it needs, or a file
      that is unreadable or not a usable ConnectionConfig (one line).
  """
  mysql = [name for name in METADATA_FLAGS[:-1] if FLAGS[name].present]
  path = FLAGS.metadata_connection_config
  if path and mysql:
    raise app.UsageError(f'--metadata_connection_config and --{mysql[0]} are alternatives: give '
                         'one of them')
  if path:
    try:
      return metadata_store.read_config_file(path)
    except ValueError as e:
      raise app.UsageError(f'--metadata_connection_config {e}') from None
  if not mysql:
    return None
  missing = [f'--{name}' for name in ('metadata_mysql_host', 'metadata_mysql_database',
                                      'metadata_mysql_user') if not getattr(FLAGS, name)]
  if missing:
    raise app.UsageError(f'ML Metadata on MySQL needs {" and ".join(missing)} too (the password '
                         f'in ${metadata_store.PASSWORD_ENV})')
  try:
    return metadata_store.mysql_config(FLAGS.metadata_mysql_host, FLAGS.metadata_mysql_port,
                                       FLAGS.metadata_mysql_database, FLAGS.metadata_mysql_user)
  except ValueError as e:
    raise app.UsageError(f'--metadata_mysql_*: {e}') from None


def metadata_connection(output_dir: str, check: bool = True
                        ) -> Optional[metadata_store_pb2.ConnectionConfig]:
  """The ML Metadata store of a run into `output_dir` (RunConfig.metadata_connection): the one
  the flags name (`given_metadata_connection`), else the one recorded in `output_dir` by an
  earlier run; None for the default, `<output_dir>/metadata.sqlite`.

  Args:
    output_dir: the run's output directory (absolute).
    check: connect to a store other than the default now, creating a server's database when
      missing, and check that it belongs to `output_dir` or to none (nothing is written to
      `output_dir`).

  Raises:
    app.UsageError: bad metadata flags, or a store other than the one `output_dir`'s earlier
      runs were recorded in.
    metadata_store.MetadataConnectionError: the server is down, refuses the login, cannot create
      the database, or the database holds another output directory's runs (one line naming
      host:port/database and the reason).
  """
  try:
    connection = metadata_store.choose(output_dir, given_metadata_connection())
  except ValueError as e:
    raise app.UsageError(str(e)) from None
  if connection is not None and check:
    metadata_store.check(connection, output_dir)
  return connection


def build_run(model: str, local_metadata: bool = True, sdk_container_image: Optional[str] = None
              ) -> Tuple[spec_lib.ModelSpec, RunConfig, RunInputs]:
  """The spec, the resolved run settings (`factory.resolve_config`) and what the run reads
  (`factory.RunInputs`: files, row ranges, digests, side files) of `model`, from the parsed flags.

  Args:
    model: a registered model name.
    local_metadata: False for an engine that brings its own ML Metadata (Kubeflow, Vertex): the
      metadata flags are then not read.
    sdk_container_image: the Beam workers' image when `--sdk_container_image` is not given (a
      compiled Kubeflow pipeline's Dataflow workers run the components' image).

  Shared by `official-tfx run` and the engines' runner files (pipelines/engines.py). Resolves and
  verifies the dataset's files (downloading them into the cache when there is no data root), and
  connects to the run's ML Metadata when it is on a server (`metadata_connection`), before the
  pipeline is built.

  Raises:
    app.UsageError: bad --hparams or metadata flags.
    metadata_store.MetadataConnectionError: the ML Metadata server cannot be used (one line).
    KeyError: unknown model.
    ValueError: bad model type, hyperparameter, strategy or row range.
    beam_runners.BeamOptionsError: wrong or missing Beam runner options.
    datasets.DatasetError: a missing file or a checksum mismatch.
  """
  spec = spec_lib.get(model)
  hparams = _hparams(spec)
  output_dir = os.path.abspath(FLAGS.output_dir or os.path.join('output', model))
  connection = metadata_connection(output_dir) if local_metadata else None
  config = RunConfig(
      output_dir=output_dir, model_type=FLAGS.model_type, train_steps=FLAGS.train_steps,
      batch_size=FLAGS.batch_size, hparams=hparams,
      distribution_strategy=FLAGS.distribution_strategy, num_gpus=FLAGS.num_gpus, tpu=FLAGS.tpu,
      mixed_precision=FLAGS.mixed_precision,
      beam_pipeline_args=_beam_pipeline_args(sdk_container_image),
      remote_root=FLAGS.pipeline_root,
      serving_model_dir=FLAGS.serving_model_dir,
      # A partial run re-runs its stages: the cache would serve them unchanged.
      enable_cache=FLAGS.enable_cache and not FLAGS.from_stage,
      max_malformed_fraction=FLAGS.max_malformed_fraction,
      transform_statistics=FLAGS.transform_statistics,
      transform_analyzer_cache=FLAGS.transform_analyzer_cache,
      metadata_connection=connection)
  # Every default resolved once (a bad model type or hparam is a usage error, found now).
  config = factory.resolve_config(spec, dataclasses.replace(config, command_line=_command_line()))
  split_files, canonical, resolved = _split_files(spec)
  inputs = RunInputs(
      split_files=split_files,
      row_ranges=factory.row_ranges(
          spec, canonical, {split: (getattr(FLAGS, f'{split}_start', None),
                                    getattr(FLAGS, f'{split}_count', None))
                            for split in split_files}, base=resolved.row_ranges),
      # Content digests of the raw inputs, in the ExampleGen's cache key (size and mtime are
      # not enough: a replaced file of the same size and time would be served from the cache).
      input_digests=fingerprint.input_digests(split_files, FLAGS.cache_dir,
                                              dataset=spec.dataset, canonical=canonical),
      transform_files=_side_files(spec.transform_files),
      example_gen_files=_side_files(spec.example_gen_files),
      data_notice=(f'{resolved.fallback.missing} is missing: {resolved.fallback.notice}'
                   if resolved.fallback else None),
      reduced_data=bool(resolved.fallback) or FLAGS.sample)
  return spec, config, inputs
