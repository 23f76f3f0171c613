"""The multi-worker entry point's checks (pipelines.worker) and the trainer's choice of chief."""

import json
import os
import subprocess
import sys
import types

import pytest
import tensorflow as tf

import ml_metadata as mlmd
from ml_metadata.proto import metadata_store_pb2

from model_fns import trainer
from pipelines import worker

CLUSTER = {'worker': ['localhost:12345', 'localhost:12346']}


def _tf_config(task_type='worker', index=0, cluster=None):
  return {'TF_CONFIG': json.dumps({'cluster': cluster or CLUSTER,
                                   'task': {'type': task_type, 'index': index}})}


def test_a_valid_tf_config_names_the_task_and_the_cluster_size():
  assert worker.check_tf_config(_tf_config(index=1)) == {
      'task_type': 'worker', 'task_id': 1, 'num_workers': 2}


@pytest.mark.parametrize('environ, message', [
    ({}, 'TF_CONFIG is not set'),
    ({'TF_CONFIG': '  '}, 'TF_CONFIG is not set'),
    ({'TF_CONFIG': '{"cluster": '}, 'TF_CONFIG is invalid'),
    ({'TF_CONFIG': '{"task": {"type": "worker", "index": 0}}'}, 'TF_CONFIG has no "cluster"'),
    ({'TF_CONFIG': json.dumps({'cluster': CLUSTER})}, 'TF_CONFIG has no "task"'),
    (_tf_config(index=2), 'task worker 2 is not in the cluster'),
    (_tf_config('ps', 0, {'worker': CLUSTER['worker'], 'ps': ['localhost:1']}), "type 'ps'"),
])
def test_a_missing_or_invalid_tf_config_is_rejected(environ, message):
  with pytest.raises(worker.WorkerError, match=message):
    worker.check_tf_config(environ)


def test_a_missing_metadata_file_is_named(tmp_path):
  path = str(tmp_path / 'nowhere' / 'metadata.sqlite')
  with pytest.raises(worker.WorkerError, match=f'no ML Metadata file at {path}'):
    worker.read_trainer_inputs(path, 'census')


def test_metadata_without_a_trainer_execution_is_rejected(tmp_path):
  path = str(tmp_path / 'metadata.sqlite')
  config = metadata_store_pb2.ConnectionConfig()
  config.sqlite.filename_uri = path
  config.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READWRITE_OPENCREATE
  mlmd.MetadataStore(config)  # an empty store, as before any run
  with pytest.raises(worker.WorkerError,
                     match=f"no Trainer execution of pipeline 'census' in {path}"):
    worker.read_trainer_inputs(path, 'census')


def test_the_command_line_reports_a_missing_tf_config(tmp_path):
  env = {k: v for k, v in os.environ.items() if k != 'TF_CONFIG'}
  result = subprocess.run(
      [sys.executable, '-m', 'pipelines.worker', f'--metadata_path={tmp_path}/metadata.sqlite',
       f'--serving_model_dir={tmp_path}/model'], env=env, capture_output=True, text=True,
      timeout=300, check=False)
  assert result.returncode == 1, result.stderr[-2000:]
  assert 'worker: TF_CONFIG is not set' in result.stderr
  assert not os.path.exists(tmp_path / 'model')


def _strategy(cluster, task_type, task_id):
  resolver = tf.distribute.cluster_resolver.SimpleClusterResolver(
      tf.train.ClusterSpec(cluster), task_type=task_type, task_id=task_id)
  return types.SimpleNamespace(cluster_resolver=resolver)


@pytest.mark.parametrize('cluster, task_type, task_id, chief', [
    (CLUSTER, 'worker', 0, True),
    (CLUSTER, 'worker', 1, False),
    ({'chief': ['localhost:1'], **CLUSTER}, 'chief', 0, True),
    ({'chief': ['localhost:1'], **CLUSTER}, 'worker', 0, False),
    ({'evaluator': ['localhost:1'], **CLUSTER}, 'evaluator', 0, False),
])
def test_only_the_chief_writes(cluster, task_type, task_id, chief):
  assert trainer.is_chief(_strategy(cluster, task_type, task_id)) is chief


def test_a_single_process_strategy_is_the_chief():
  assert trainer.is_chief(tf.distribute.get_strategy())
  assert trainer.is_chief(tf.distribute.MirroredStrategy(['/cpu:0']))
