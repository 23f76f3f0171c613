"""Beam runner options: what each runner gets, and the errors raised before anything starts (the
options, the job server jar, the services they name), without a jar or the network."""

import os
import socket
import subprocess
import sys
from concurrent import futures

import grpc
import pytest
from apache_beam.options.pipeline_options import PipelineOptions, SetupOptions
from apache_beam.utils import subprocess_server

from beam_runner import runners, worker_pool
from beam_runner.runners import (SETUP_FILE, BeamOptionsError, BeamRunnerConfig, check_services,
                                 job_server_jar, pipeline_args, worker_args)
from tests import helpers

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_direct_runner_in_process_and_multi_process():
  assert pipeline_args(BeamRunnerConfig()) == []
  assert pipeline_args(BeamRunnerConfig(direct_num_workers=2)) == [
      '--runner=DirectRunner', '--direct_running_mode=multi_processing', '--direct_num_workers=2']
  with pytest.raises(BeamOptionsError, match='must be >= 1'):
    pipeline_args(BeamRunnerConfig(direct_num_workers=0))


def test_dataflow_ships_this_package_to_the_workers():
  args = pipeline_args(BeamRunnerConfig(
      runner='dataflow', project='my-project', region='us-central1',
      temp_location='gs://my-bucket/tmp', num_workers=4, max_num_workers=16,
      machine_type='n2-standard-4'))
  assert args == ['--runner=DataflowRunner', '--project=my-project', '--region=us-central1',
                  '--temp_location=gs://my-bucket/tmp', '--staging_location=gs://my-bucket/tmp',
                  '--num_workers=4', '--max_num_workers=16', '--machine_type=n2-standard-4',
                  f'--setup_file={SETUP_FILE}']
  image = pipeline_args(BeamRunnerConfig(
      runner='dataflow', project='my-project', region='europe-west4',
      temp_location='gs://my-bucket/tmp', sdk_container_image='gcr.io/p/official-tfx:1'))
  assert '--sdk_container_image=gcr.io/p/official-tfx:1' in image
  assert not any(a.startswith('--setup_file') for a in image)


@pytest.mark.parametrize('config, messages', [
    (BeamRunnerConfig(runner='dataflow'),
     ['Dataflow needs --project', 'Dataflow needs --region', 'Dataflow needs --temp_location']),
    (BeamRunnerConfig(runner='dataflow', project='123456', region='us-central1',
                      temp_location='gs://my-bucket/tmp'),
     ['Invalid Project ID (123456)']),  # Beam's own check: a number, not an id
    (BeamRunnerConfig(runner='dataflow', project='my-project', region='us-central1',
                      temp_location='/tmp/local'),
     ["--temp_location='/tmp/local' must be a gs:// path"]),
    (BeamRunnerConfig(runner='dataflow', project='my-project', region='central',
                      temp_location='gs://my-bucket/t', machine_type='big', num_workers=8,
                      max_num_workers=2),
     ["--region='central' is not a Google Cloud region", "--machine_type='big'",
      '--max_num_workers=2 is below --num_workers=8']),
    (BeamRunnerConfig(runner='dataflow', project='my-project', region='us-central1',
                      temp_location='gs://my-bucket/t', setup_file='/nowhere/setup.py'),
     ['no setup.py at /nowhere/setup.py']),
    (BeamRunnerConfig(runner='flink', flink_master='jobmanager'),
     ["--flink_master='jobmanager': expected [local] (an embedded mini-cluster), [auto] or "
      'host:port']),
    (BeamRunnerConfig(runner='flink', flink_version='1.10'),
     ["--flink_version='1.10': Beam publishes Flink job servers for 1.17, 1.18, 1.19"]),
    (BeamRunnerConfig(runner='flink', job_endpoint='[local]'),
     ["Beam flink options: --job_endpoint='[local]' is not host:port of a Beam job service (the "
      'Flink cluster itself is --flink_master)$']),
    (BeamRunnerConfig(runner='flink', job_endpoint='localhost:8099', flink_master='[local]'),
     ['--flink_master applies to --beam_runner=flink without --job_endpoint']),
    (BeamRunnerConfig(runner='spark', flink_version='1.18'),
     ['--flink_version applies to --beam_runner=flink']),
    (BeamRunnerConfig(runner='spark', spark_master_url='yarn'),
     ["--spark_master_url='yarn': expected local[N], local[*] or spark://host:port"]),
    (BeamRunnerConfig(runner='spark', spark_master_url='spark://master:7077'),
     ['Spark on another machine needs --environment_type: its workers cannot run in this '
      'process (LOOPBACK)']),
    (BeamRunnerConfig(runner='flink', flink_master='jobmanager:8081',
                      environment_type='LOOPBACK'),
     ['--environment_type=LOOPBACK runs the workers in this process: only for a job service and '
      'cluster on this machine']),
    (BeamRunnerConfig(runner='portable', job_endpoint='[auto]'),
     ["--job_endpoint='[auto]' is not host:port of a Beam job service or embed"]),
    (BeamRunnerConfig(runner='flink', environment_type='PROCESS'),
     ['--environment_type=PROCESS needs --environment_config']),
    (BeamRunnerConfig(runner='spark', environment_type='EXTERNAL'),
     ['--environment_type=EXTERNAL needs --environment_config']),
    (BeamRunnerConfig(runner='portable', environment_type='EXTERNAL',
                      environment_config='worker-pool'),
     ["--environment_config='worker-pool': EXTERNAL needs the host:port of a Beam SDK worker "
      'pool']),
    (BeamRunnerConfig(runner='spark', environment_type='PROCESS', environment_config='boot'),
     ["--environment_config='boot': PROCESS needs JSON such as {\"command\""]),
    (BeamRunnerConfig(runner='flink', environment_type='LOOPBACK', environment_config='x'),
     ['not compatible with environment type LOOPBACK']),  # Beam's own check
    (BeamRunnerConfig(runner='flink', environment_type='VM'),
     ["--environment_type='VM': expected one of LOOPBACK, EXTERNAL, PROCESS, DOCKER"]),
    (BeamRunnerConfig(runner='samza'), ["unknown Beam runner 'samza'"]),
])
def test_wrong_or_missing_options_are_all_listed(config, messages):
  with pytest.raises(BeamOptionsError) as e:
    pipeline_args(config)
  for message in messages:  # a trailing $: the whole message ends there
    assert (str(e.value).endswith(message[:-1]) if message.endswith('$')
            else message in str(e.value))
  assert '\n' not in str(e.value)


def test_flink_and_spark_start_beams_job_server_with_a_local_cluster_and_loopback_workers():
  """By default Beam starts its job server from the jar: Flink's embedded mini-cluster, Spark in
  local mode, the SDK workers in this process (no Docker)."""
  assert pipeline_args(BeamRunnerConfig(runner='flink')) == [
      '--runner=FlinkRunner', '--flink_master=[local]', '--flink_version=1.18',
      '--environment_type=LOOPBACK']
  assert pipeline_args(BeamRunnerConfig(runner='spark')) == [
      '--runner=SparkRunner', '--spark_master_url=local[2]', '--environment_type=LOOPBACK']
  assert pipeline_args(BeamRunnerConfig(runner='portable')) == [
      '--runner=PortableRunner', '--job_endpoint=embed', '--environment_type=LOOPBACK']


def test_real_clusters_job_services_and_worker_pools(tmp_path):
  jar = tmp_path / 'flink-job-server.jar'
  assert pipeline_args(BeamRunnerConfig(
      runner='flink', flink_master='jobmanager:8081', flink_version='1.19',
      flink_job_server_jar=str(jar), environment_type='external',
      environment_config='workers:50000')) == [
          '--runner=FlinkRunner', '--flink_master=jobmanager:8081', '--flink_version=1.19',
          f'--flink_job_server_jar={jar}', '--environment_type=EXTERNAL',
          '--environment_config=workers:50000']
  assert pipeline_args(BeamRunnerConfig(
      runner='spark', spark_master_url='spark://master:7077', environment_type='DOCKER',
      environment_config='registry/official-tfx-beam:1')) == [
          '--runner=SparkRunner', '--spark_master_url=spark://master:7077',
          '--environment_type=DOCKER', '--environment_config=registry/official-tfx-beam:1']
  # A running job service (Flink's, Spark's or any other): Beam's portable runner talks to it.
  assert pipeline_args(BeamRunnerConfig(
      runner='spark', job_endpoint='spark-jobs:8099', environment_type='external',
      environment_config='localhost:50000')) == [
          '--runner=PortableRunner', '--job_endpoint=spark-jobs:8099',
          '--environment_type=EXTERNAL', '--environment_config=localhost:50000']
  assert pipeline_args(BeamRunnerConfig(runner='flink', job_endpoint='localhost:8099')) == [
      '--runner=PortableRunner', '--job_endpoint=localhost:8099', '--environment_type=LOOPBACK']


def test_remote_workers_import_the_harness_setup_and_the_models_op_libraries():
  args = pipeline_args(BeamRunnerConfig(runner='spark'))
  assert worker_args(args, ['tensorflow_text']) == args + [
      '--beam_plugins=beam_runner.worker_setup', '--beam_plugins=tensorflow_text']
  assert worker_args([], ['tensorflow_text']) == []  # in-process DirectRunner: no TFX sdist
  direct = pipeline_args(BeamRunnerConfig(direct_num_workers=2))
  assert worker_args(direct, ['tensorflow_text']) == direct
  given = args + ['--beam_plugins=tensorflow_text']
  assert worker_args(given, ['tensorflow_text']) == given + [
      '--beam_plugins=beam_runner.worker_setup']
  options = PipelineOptions(worker_args(args, ['tensorflow_decision_forests']))
  assert options.view_as(SetupOptions).beam_plugins == [
      'beam_runner.worker_setup', 'tensorflow_decision_forests']


def test_importing_the_worker_setup_configures_the_harness():
  code = ('from beam_runner import sdk_harness as h; import objsize; '
          'objsize.default_settings.update(exclude_modules_globals=True); '
          'assert h.state_cache_walks_module_globals(); import beam_runner.worker_setup; '
          'assert not h.state_cache_walks_module_globals(); print("configured")')
  result = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                          cwd=REPO, timeout=120, check=False)
  assert result.stdout.strip() == 'configured', result.stderr[-2000:]


def test_the_worker_pools_workers_are_this_python_running_beams_sdk_worker():
  command = worker_pool.worker_command('worker_7', 'localhost:1', 'localhost:2', 'localhost:3')
  assert command == [sys.executable, '-m', 'beam_runner.worker_pool', '--worker', '--id=worker_7',
                     '--control_endpoint=localhost:1', '--provision_endpoint=localhost:2',
                     '--logging_endpoint=localhost:3']


def _closed_port() -> int:
  with socket.socket() as s:
    s.bind(('localhost', 0))
    return s.getsockname()[1]


@pytest.fixture
def jar_cache(tmp_path, monkeypatch):
  """Beam's jar cache in a temporary folder, and a fetch that fails as it does offline."""
  cache = tmp_path / 'jars'
  cache.mkdir()
  monkeypatch.setattr(subprocess_server.JavaJarServer, 'JAR_CACHE', str(cache))

  def offline(url, cache_dir=None):
    raise RuntimeError(f'Unable to fetch remote job server jar at {url}: <urlopen error [Errno '
                       '-3] Temporary failure in name resolution>. If no Internet access at '
                       'runtime, stage the jar at ...')
  monkeypatch.setattr(subprocess_server.JavaJarServer, 'local_jar', staticmethod(offline))
  monkeypatch.setattr(runners.shutil, 'which', lambda name: '/usr/bin/java')
  return cache


def test_a_job_server_jar_that_cannot_be_had_is_one_clear_line(jar_cache, tmp_path):
  lines = []
  with pytest.raises(BeamOptionsError) as e:
    check_services(BeamRunnerConfig(runner='flink'), say=lines.append)
  message = str(e.value)
  assert message.startswith("Beam's Flink job server jar beam-runners-flink-1.18-job-server-")
  assert f'is not in {jar_cache} and could not be fetched from https://repo.maven.apache.org/' in (
      message)
  assert 'Temporary failure in name resolution' in message
  assert message.endswith('give --flink_job_server_jar=PATH, or put it in that folder')
  assert '\n' not in message and len(lines) == 1 and 'first use' in lines[0]
  with pytest.raises(BeamOptionsError, match=r'--spark_job_server_jar=PATH'):
    check_services(BeamRunnerConfig(runner='spark'))
  with pytest.raises(BeamOptionsError, match=rf'--spark_job_server_jar={tmp_path}/none.jar: no '
                     'such file'):
    check_services(BeamRunnerConfig(runner='spark', spark_job_server_jar=str(tmp_path / 'none.jar')))


def test_a_cached_or_given_jar_is_used_as_it_is(jar_cache, tmp_path):
  url = job_server_jar(BeamRunnerConfig(runner='spark'))
  assert url.endswith('/org/apache/beam/beam-runners-spark-3-job-server/2.61.0/'
                      'beam-runners-spark-3-job-server-2.61.0.jar')
  (jar_cache / os.path.basename(url)).write_bytes(b'PK')
  check_services(BeamRunnerConfig(runner='spark'))  # in the cache: no fetch
  given = tmp_path / 'flink.jar'
  given.write_bytes(b'PK')
  check_services(BeamRunnerConfig(runner='flink', flink_job_server_jar=str(given)))
  assert job_server_jar(BeamRunnerConfig(runner='flink', job_endpoint='localhost:8099')) is None


def test_no_java_is_one_clear_line(jar_cache, monkeypatch):
  monkeypatch.setattr(runners.shutil, 'which', lambda name: None)
  with pytest.raises(BeamOptionsError, match=r"^Beam's Spark job server is a Java program: no "
                     r'`java` on the PATH'):
    check_services(BeamRunnerConfig(runner='spark'))


def test_a_job_service_or_worker_pool_that_does_not_answer_is_one_clear_line():
  port = _closed_port()
  with pytest.raises(BeamOptionsError, match=rf'^--job_endpoint=localhost:{port}: no Beam job '
                     r'service answers there \(.*\); start one or leave --job_endpoint out$'):
    check_services(BeamRunnerConfig(runner='flink', job_endpoint=f'localhost:{port}'), timeout=2)
  with pytest.raises(BeamOptionsError, match=rf'^--environment_config=localhost:{port}: no Beam '
                     r'SDK worker pool answers there .*python -m beam_runner.worker_pool '
                     rf'--service_port={port}'):
    check_services(BeamRunnerConfig(runner='portable', environment_type='EXTERNAL',
                                    environment_config=f'localhost:{port}'), timeout=2)
  with pytest.raises(BeamOptionsError, match=r'^--flink_master=localhost:\d+: no Flink master'):
    check_services(BeamRunnerConfig(runner='flink', flink_master=f'localhost:{port}',
                                    flink_job_server_jar=__file__), timeout=2)
  server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
  live = server.add_insecure_port('localhost:0')
  server.start()
  try:
    check_services(BeamRunnerConfig(runner='portable', environment_type='EXTERNAL',
                                    environment_config=f'localhost:{live}'), timeout=5)
  finally:
    server.stop(0)


def test_the_cli_stops_on_bad_runner_options_before_anything_runs(tmp_path):
  result = helpers.run_cli('run', 'census', '--beam_runner=dataflow', '--project=my-project',
                           '--region=us-central1', '--temp_location=gs://my-bucket/tmp',
                           f'--output_dir={tmp_path}')
  assert result.returncode == 1
  assert 'set --pipeline_root to a gs:// path' in result.stderr
  result = helpers.run_cli('run', 'census', '--beam_runner=flink', '--flink_master=jobmanager',
                           f'--output_dir={tmp_path}')
  assert result.returncode == 1 and "--flink_master='jobmanager': expected" in result.stderr
  result = helpers.run_cli('run', 'census', '--beam_runner=spark',
                           f'--spark_job_server_jar={tmp_path}/missing.jar',
                           f'--output_dir={tmp_path}')
  assert result.returncode == 1
  assert result.stderr.strip().splitlines() == [
      f'official-tfx: --spark_job_server_jar={tmp_path}/missing.jar: no such file (expected '
      "Beam's Spark job server jar)"]
  port = _closed_port()
  result = helpers.run_cli('run', 'census', '--beam_runner=portable', '--environment_type=EXTERNAL',
                           f'--environment_config=localhost:{port}', f'--output_dir={tmp_path}')
  assert result.returncode == 1
  assert f'--environment_config=localhost:{port}: no Beam SDK worker pool answers' in result.stderr
  assert not list(tmp_path.iterdir())  # nothing written, not even the log
