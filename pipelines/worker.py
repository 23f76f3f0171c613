"""One worker of a multi-worker census (or any Transform-based) training, outside an orchestrator.

  python -m pipelines.worker --metadata_path=<output_dir>/metadata.sqlite --pipeline_name=census \
      --serving_model_dir=DIR [--model_run_dir=DIR] [--train_steps=N] [--model_type=TYPE]

(for a run whose ML Metadata is on MySQL, `--metadata_connection_config=<output_dir>/metadata_
connection.pbtxt` or the `--metadata_mysql_*` flags instead of --metadata_path, the password in
$OFFICIAL_TFX_METADATA_MYSQL_PASSWORD) with the cluster in $TF_CONFIG, e.g.
`{"cluster": {"worker": ["localhost:p0", "localhost:p1"]}, "task": {"type": "worker", "index": 0}}`,
one process per task. This is what a multi-worker TFX Trainer does (Vertex AI Training starts the
same `run_fn` once per replica with its TF_CONFIG): the worker reads the inputs of the pipeline's
latest Trainer execution from that run's ML Metadata (the transformed examples, the transform
graph, the schema and the TrainerConfig of its custom_config), builds the Trainer's FnArgs and calls
the shared `model_fns.trainer.run_fn` under `multi_worker` (MultiWorkerMirroredStrategy). Only the
chief writes to --serving_model_dir / --model_run_dir.

Exit status: 0 when training and export finished; 1 with a message on stderr when the metadata,
the Trainer execution or $TF_CONFIG is missing or invalid.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from typing import Any, Dict, List, Mapping, Optional

os.environ.setdefault('TF_USE_LEGACY_KERAS', '1')  # tf.Transform 1.16 needs Keras 2.
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

from absl import app, flags, logging

from pipelines import metadata_store
from pipelines.factory import is_remote
from pipelines.settings import FLAGS, given_metadata_connection
TF_CONFIG_EXAMPLE = ('{"cluster": {"worker": ["host0:port", "host1:port"]}, '
                     '"task": {"type": "worker", "index": 0}}')


class WorkerError(Exception):
  """A worker cannot start: bad metadata, no Trainer execution, or a missing/invalid $TF_CONFIG."""


@dataclasses.dataclass
class TrainerInputs:
  """The inputs of a pipeline's Trainer execution, as read from ML Metadata.

  Attributes:
    execution_id: the MLMD id of the Trainer execution they come from.
    examples_uri: directory of the (transformed) Examples artifact, with `Split-<name>/` inside.
    transform_graph_uri: directory of the TransformGraph artifact; None without Transform.
    schema_uri: directory of the Schema artifact; None when the Trainer had none.
    custom_config: the Trainer's custom_config (a `TrainerConfig` as a dict).
    train_steps: the Trainer's TrainArgs.num_steps; None when unset.
  """
  execution_id: int
  examples_uri: str
  transform_graph_uri: Optional[str]
  schema_uri: Optional[str]
  custom_config: Dict[str, Any]
  train_steps: Optional[int]


def check_tf_config(environ: Mapping[str, str]) -> Dict[str, Any]:
  """Checks that `environ` describes this process as one task of a cluster.

  Args:
    environ: the environment (os.environ), read for TF_CONFIG.

  Returns:
    {'task_type': str, 'task_id': int, 'num_workers': int (tasks of type worker and chief)}, read
    through TensorFlow's TFConfigClusterResolver.

  Raises:
    WorkerError: TF_CONFIG unset or empty, not JSON, without a cluster, without a task, with a
      task type other than `worker` / `chief`, or with a task that is not in the cluster.
  """
  raw = environ.get('TF_CONFIG', '').strip()
  if not raw:
    raise WorkerError(f'TF_CONFIG is not set: a worker needs its cluster and task in $TF_CONFIG, '
                      f'e.g. {TF_CONFIG_EXAMPLE}')
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  saved = os.environ.get('TF_CONFIG')
  os.environ['TF_CONFIG'] = raw  # the resolver reads the process environment
  try:
    resolver = tf.distribute.cluster_resolver.TFConfigClusterResolver()
    spec = resolver.cluster_spec()  # the resolver reads $TF_CONFIG on every call
    task_type, task_id = resolver.task_type, resolver.task_id
  except ValueError as e:  # not JSON (json.JSONDecodeError), or a task index not an integer
    raise WorkerError(f'TF_CONFIG is invalid ({e}): expected JSON like {TF_CONFIG_EXAMPLE}')
  except (AttributeError, TypeError) as e:
    raise WorkerError(f'TF_CONFIG is not a JSON object with "cluster" and "task" ({e}): '
                      f'expected e.g. {TF_CONFIG_EXAMPLE}')
  finally:
    if saved is None:
      os.environ.pop('TF_CONFIG', None)
    else:
      os.environ['TF_CONFIG'] = saved
  jobs = spec.jobs
  if not jobs:
    raise WorkerError(f'TF_CONFIG has no "cluster": expected e.g. {TF_CONFIG_EXAMPLE}')
  if not task_type:
    raise WorkerError(f'TF_CONFIG has no "task" with a "type": expected e.g. {TF_CONFIG_EXAMPLE}')
  if task_type not in ('worker', 'chief'):
    raise WorkerError(f'TF_CONFIG task type {task_type!r}: a training worker is a "worker" or '
                      f'the "chief"')
  tasks = spec.num_tasks(task_type) if task_type in jobs else 0
  if task_id is None or not 0 <= int(task_id) < tasks:
    raise WorkerError(f'TF_CONFIG task {task_type} {task_id} is not in the cluster '
                      f'({tasks} {task_type} task(s))')
  workers = sum(spec.num_tasks(job) for job in ('worker', 'chief') if job in jobs)
  return {'task_type': task_type, 'task_id': int(task_id), 'num_workers': workers}


def _property(execution: Any, name: str) -> Optional[str]:
  """A string (custom) property of an MLMD execution; None when absent."""
  for properties in (execution.custom_properties, execution.properties):
    if name in properties:
      return properties[name].string_value
  return None


def read_trainer_inputs(metadata_path: metadata_store.Where, pipeline_name: str) -> TrainerInputs:
  """The inputs of the latest Trainer execution of `pipeline_name` in a run's ML Metadata: its
  SQLite file, or a ConnectionConfig (a MySQL database).

  Raises:
    WorkerError: no file at `metadata_path`, a store that cannot be opened, no Trainer execution
      of that pipeline in it (the message lists the pipeline's nodes found), or an execution
      without examples input or custom_config.
  """
  if isinstance(metadata_path, str) and not os.path.isfile(metadata_path):
    raise WorkerError(f'no ML Metadata file at {metadata_path}: expected the metadata.sqlite of '
                      f'a finished run (<output_dir>/metadata.sqlite)')
  where_text = (metadata_path if isinstance(metadata_path, str)
                else metadata_store.describe(metadata_path))
  from ml_metadata.proto import metadata_store_pb2  # pylint: disable=import-outside-toplevel
  from pipelines.metadata import open_store  # pylint: disable=import-outside-toplevel

  try:
    store = open_store(metadata_path)
    node = store.get_context_by_type_and_name('node', f'{pipeline_name}.Trainer')
  except metadata_store.MetadataConnectionError as e:
    raise WorkerError(str(e)) from None
  except Exception as e:  # pylint: disable=broad-except
    raise WorkerError(f'cannot read ML Metadata at {where_text}: {type(e).__name__}: {e}')
  executions = store.get_executions_by_context(node.id) if node is not None else []
  if not executions:
    try:
      nodes = sorted(c.name for c in store.get_contexts_by_type('node')
                     if c.name.startswith(pipeline_name + '.'))
    except Exception:  # pylint: disable=broad-except
      nodes = []
    raise WorkerError(f'no Trainer execution of pipeline {pipeline_name!r} in {where_text} '
                      f'(its nodes there: {", ".join(nodes) or "none"}): run the pipeline first')
  execution = max(executions, key=lambda e: (e.create_time_since_epoch, e.id))
  events = store.get_events_by_execution_ids([execution.id])
  inputs: Dict[str, List[Any]] = {}
  for event in events:
    if event.type != metadata_store_pb2.Event.INPUT or not event.path.steps:
      continue
    key = event.path.steps[0].key
    inputs.setdefault(key, []).extend(store.get_artifacts_by_id([event.artifact_id]))
  where = f'Trainer execution {execution.id} of {pipeline_name!r} in {where_text}'
  if not inputs.get('examples'):
    raise WorkerError(f'{where} has no examples input')
  custom_config = _property(execution, 'custom_config')
  if not custom_config:
    raise WorkerError(f'{where} has no custom_config (the TrainerConfig)')
  train_args = json.loads(_property(execution, 'train_args') or '{}')

  def first(key):
    return inputs[key][0].uri if inputs.get(key) else None

  return TrainerInputs(
      execution_id=execution.id, examples_uri=first('examples'),
      transform_graph_uri=first('transform_graph'), schema_uri=first('schema'),
      custom_config=json.loads(custom_config),
      train_steps=int(train_args['num_steps']) if train_args.get('num_steps') else None)


def fn_args(inputs: TrainerInputs, serving_model_dir: str, model_run_dir: str,
            train_steps: Optional[int] = None, model_type: Optional[str] = None) -> Any:
  """The Trainer's FnArgs for `inputs`, with `multi_worker` as the distribution strategy.

  Returns:
    A `tfx.components.FnArgs`: train/eval files are the `Split-train/*` / `Split-eval/*` globs of
    the examples, `train_steps` the given one or the Trainer's, `eval_steps` None (the whole split).

  Raises:
    WorkerError: a split of the examples has no file.
  """
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  from tfx.components.trainer.fn_args_utils import FnArgs  # pylint: disable=import-outside-toplevel

  files = {}
  for split in ('train', 'eval'):
    pattern = os.path.join(inputs.examples_uri, f'Split-{split}', '*')
    if not tf.io.gfile.glob(pattern):
      raise WorkerError(f'no {split} examples: nothing matches {pattern}')
    files[split] = [pattern]
  schema_path = None
  if inputs.schema_uri:
    schema_files = tf.io.gfile.glob(os.path.join(inputs.schema_uri, '*.pbtxt'))
    schema_path = schema_files[0] if schema_files else None
  config = dict(inputs.custom_config, distribution_strategy='multi_worker')
  if model_type:
    config['model_type'] = model_type
  return FnArgs(
      working_dir=None, train_files=files['train'], eval_files=files['eval'],
      train_steps=train_steps or inputs.train_steps, eval_steps=None, schema_path=schema_path,
      schema_file=schema_path, transform_graph_path=inputs.transform_graph_uri,
      transform_output=inputs.transform_graph_uri, serving_model_dir=serving_model_dir,
      model_run_dir=model_run_dir, custom_config=config)


flags.DEFINE_string('metadata_path', None, 'ML Metadata SQLite file of a finished run '
                    '(<output_dir>/metadata.sqlite); for ML Metadata on MySQL, the '
                    '--metadata_connection_config or --metadata_mysql_* flags instead.')
flags.DEFINE_string('pipeline_name', 'census', 'The pipeline whose latest Trainer inputs to use.')
flags.DEFINE_string('model_run_dir', None, 'Where the chief writes TensorBoard logs and '
                    'eval_metrics.json; default: model_run beside --serving_model_dir.')
# --serving_model_dir (required here: where the chief exports), --train_steps (default: the
# Trainer's) and --model_type (default: the Trainer's) are the shared flags of pipelines.settings.


def _absolute(path: str) -> str:
  """A local path made absolute; a remote URI (gs://...) as it is."""
  return path if is_remote(path) else os.path.abspath(path)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments {argv[1:]}')
  connection = given_metadata_connection()
  if not (FLAGS.metadata_path or connection) or not FLAGS.serving_model_dir:
    raise app.UsageError('--metadata_path (or --metadata_connection_config, --metadata_mysql_*) '
                         'and --serving_model_dir are required')
  if FLAGS.metadata_path and connection:
    raise app.UsageError('--metadata_path and the --metadata_connection_config / '
                         '--metadata_mysql_* flags are alternatives: give one')
  logging.set_verbosity(logging.INFO)
  try:
    task = check_tf_config(os.environ)
    inputs = read_trainer_inputs(connection or os.path.abspath(FLAGS.metadata_path),
                                 FLAGS.pipeline_name)
    serving_model_dir = _absolute(FLAGS.serving_model_dir)
    model_run_dir = _absolute(FLAGS.model_run_dir or os.path.join(
        os.path.dirname(serving_model_dir.rstrip('/')), 'model_run'))
    args = fn_args(inputs, serving_model_dir, model_run_dir, FLAGS.train_steps, FLAGS.model_type)
  except WorkerError as e:
    print(f'worker: {e}', file=sys.stderr)
    return 1
  logging.info('Worker %s %d of %d: Trainer execution %d of %s, %s steps', task['task_type'],
               task['task_id'], task['num_workers'], inputs.execution_id, FLAGS.pipeline_name,
               args.train_steps)
  from model_fns import trainer  # pylint: disable=import-outside-toplevel
  trainer.run_fn(args)
  return 0


if __name__ == '__main__':
  app.run(main)
