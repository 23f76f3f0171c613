"""Beam runners for the pipelines' Beam stages: DirectRunner, Beam's portable runner, Dataflow,
Flink, Spark.

`BeamRunnerConfig` holds what each runner needs; `pipeline_args` turns it into the
`beam_pipeline_args` of the TFX pipeline after checking it, so a wrong or missing option stops the run
before any component starts. Checks are Beam's own (`PipelineOptionsValidator`: project id, region,
`gs://` locations, worker counts, portable environments) plus the few that Beam leaves to job
submission time (a Dataflow region, a master's or endpoint's form, the package to ship). Nothing in
`pipeline_args` touches the network; `check_services` then looks, once per command, at what the run
will talk to: the job server jar (fetched from Maven Central into Beam's cache on first use), a job
service, a Flink or Spark master, an SDK worker pool.

Flink and Spark run through Beam's portable job servers (Java): by default Beam starts one for each
Beam pipeline from the jar (`beam-runners-flink-<version>-job-server`, `beam-runners-spark-3-job-
server`), which runs Flink's embedded mini-cluster (`--flink_master=[local]`) or Spark in local mode
(`--spark_master_url=local[2]`), or submits to a real cluster (`--flink_master=host:port`,
`--spark_master_url=spark://host:port`). `--job_endpoint=host:port` uses a job service that is
already running instead. `portable` is Beam's portable runner on its Python job service in this
process (`--job_endpoint=embed`, no Java) or on any job service: with `--environment_type=EXTERNAL`
its workers are other processes, as a cluster's are.

Workers of a remote runner need this project's code (the line parsers, `preprocessing_fn`s and task
modules that TFX names by module path): Dataflow gets it as `--setup_file` (this checkout's
setup.py, built into an sdist on submission and installed on every worker); a portable runner's
environment (its SDK container image, process or worker pool) must have it installed. LOOPBACK, the
default for a cluster on this machine, runs the workers in the launching process.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import socket
import urllib.error
import urllib.request
from typing import Callable, List, Optional

from apache_beam.options import pipeline_options
from apache_beam.options import pipeline_options_validator

from beam_runner.options import direct_runner_args

RUNNERS = ('direct', 'portable', 'dataflow', 'flink', 'spark')
ENVIRONMENT_TYPES = ('LOOPBACK', 'EXTERNAL', 'PROCESS', 'DOCKER')
FLINK_VERSIONS = tuple(pipeline_options.FlinkRunnerOptions.PUBLISHED_FLINK_VERSIONS)
DEFAULT_FLINK_VERSION = '1.18'
DEFAULT_FLINK_MASTER = '[local]'  # Flink's embedded mini-cluster, in the job server's JVM
DEFAULT_SPARK_MASTER = 'local[2]'  # Spark in local mode, two threads, in the job server's JVM
EMBEDDED_JOB_SERVICE = 'embed'  # Beam's Python job service, in this process
SERVICE_TIMEOUT_SECONDS = 10.0  # how long check_services waits for a service to answer
SETUP_FILE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'setup.py')
_HOST_PORT = re.compile(r'^[A-Za-z0-9.\-]+:\d{1,5}$')
_FLINK_MASTER = re.compile(r'^(\[local\]|\[auto\]|(https?://)?[A-Za-z0-9.\-]+:\d{1,5})$')
_SPARK_MASTER = re.compile(r'^(local(\[(\d+|\*)\])?|spark://[A-Za-z0-9.\-]+:\d{1,5})$')
_LOCAL_HOSTS = ('localhost', '127.0.0.1', '[::1]', '::1')
_REGION = re.compile(r'^[a-z]+-[a-z]+\d+$')
_MACHINE_TYPE = re.compile(r'^([a-z]\d[a-z]?-[a-z]+-\d+|custom-\d+-\d+)$')


class BeamOptionsError(ValueError):
  """The Beam runner options are wrong or incomplete, or a service they name is not there; the
  message lists every problem on one line."""


@dataclasses.dataclass
class BeamRunnerConfig:
  """Where the Beam stages (ExampleGen, StatisticsGen, Transform, Evaluator) run.

  Attributes:
    runner: one of RUNNERS.
    direct_num_workers, direct_running_mode: DirectRunner (see beam_runner.options).
    project, region, temp_location, staging_location: Dataflow's Google Cloud project, region
      (e.g. `us-central1`) and `gs://` locations (staging defaults to temp).
    num_workers, max_num_workers, machine_type: Dataflow's initial and maximum workers and their
      Compute Engine machine type (e.g. `n2-standard-4`).
    setup_file: the package shipped to Dataflow workers (default: this checkout's setup.py).
    sdk_container_image: a worker image with the package preinstalled, instead of setup_file.
    job_endpoint: a Beam job service that is already running (`host:port`), for Flink, Spark or
      `portable`; for `portable` also `embed` (the default: Beam's Python job service in this
      process). Flink and Spark default to a job server that Beam starts from its jar.
    flink_master: Flink's JobManager for the job server Beam starts: `[local]` (default: an
      embedded mini-cluster), `[auto]` or `host:port` of a cluster's REST endpoint.
    flink_version: the Flink of that job server (one of FLINK_VERSIONS; default 1.18).
    spark_master_url: Spark's master for the job server Beam starts: `local[N]` (default
      `local[2]`), `local[*]` or `spark://host:port`.
    flink_job_server_jar, spark_job_server_jar: a local job server jar (or a URL) instead of the
      one Beam fetches from Maven Central into its cache (~/.apache_beam/cache/jars).
    environment_type, environment_config: the portable SDK harness: LOOPBACK (in the submitting
      process; the default when the job service and cluster are on this machine), EXTERNAL (config:
      a worker pool's host:port), PROCESS (config: JSON with the boot command) or DOCKER (config:
      the image).
  """
  runner: str = 'direct'
  direct_num_workers: int = 1
  direct_running_mode: str = ''
  project: Optional[str] = None
  region: Optional[str] = None
  temp_location: Optional[str] = None
  staging_location: Optional[str] = None
  num_workers: Optional[int] = None
  max_num_workers: Optional[int] = None
  machine_type: Optional[str] = None
  setup_file: Optional[str] = None
  sdk_container_image: Optional[str] = None
  job_endpoint: Optional[str] = None
  flink_master: Optional[str] = None
  flink_version: Optional[str] = None
  spark_master_url: Optional[str] = None
  flink_job_server_jar: Optional[str] = None
  spark_job_server_jar: Optional[str] = None
  environment_type: Optional[str] = None
  environment_config: Optional[str] = None


def _dataflow_args(c: BeamRunnerConfig, errors: List[str]) -> List[str]:
  for name in ('project', 'region', 'temp_location'):
    if not getattr(c, name):
      errors.append(f'Dataflow needs --{name}')
  for name in ('temp_location', 'staging_location'):
    value = getattr(c, name)
    if value and not value.startswith('gs://'):  # (Beam would look for a default bucket online)
      errors.append(f'--{name}={value!r} must be a gs:// path')
  if c.region and not _REGION.match(c.region):
    errors.append(f'--region={c.region!r} is not a Google Cloud region such as us-central1')
  if c.machine_type and not _MACHINE_TYPE.match(c.machine_type):
    errors.append(f'--machine_type={c.machine_type!r} is not a machine type such as '
                  'n2-standard-4 or custom-8-32768')
  if c.num_workers and c.max_num_workers and c.max_num_workers < c.num_workers:
    errors.append(f'--max_num_workers={c.max_num_workers} is below --num_workers={c.num_workers}')
  args = ['--runner=DataflowRunner']
  for name in ('project', 'region', 'temp_location', 'staging_location', 'num_workers',
               'max_num_workers', 'machine_type', 'sdk_container_image'):
    value = getattr(c, name)
    if name == 'staging_location' and not value:
      value = c.temp_location
    if value is not None:
      args.append(f'--{name}={value}')
  if not c.sdk_container_image:
    setup_file = os.path.abspath(c.setup_file or SETUP_FILE)
    if not os.path.isfile(setup_file):
      errors.append(f'--setup_file: no setup.py at {setup_file} to ship to the workers')
    args.append(f'--setup_file={setup_file}')
  return args


def _is_local(address: str) -> bool:
  """Whether a host:port (or http://host:port) names this machine."""
  host = address.split('://', 1)[-1].rsplit(':', 1)[0]
  return host in _LOCAL_HOSTS


def runs_here(c: BeamRunnerConfig) -> bool:
  """Whether the portable runner's workers can be this process (LOOPBACK): its job service and
  cluster are on this machine (Flink's [local] / [auto], Spark's local[N], `embed`, or a job
  service at localhost)."""
  if c.job_endpoint:
    return c.job_endpoint == EMBEDDED_JOB_SERVICE or _is_local(c.job_endpoint)
  if c.runner == 'flink':
    master = c.flink_master or DEFAULT_FLINK_MASTER
    return master in ('[local]', '[auto]') or _is_local(master)
  return (c.spark_master_url or DEFAULT_SPARK_MASTER).startswith('local')


def _portable_args(c: BeamRunnerConfig, errors: List[str]) -> List[str]:
  name = {'flink': 'Flink', 'spark': 'Spark', 'portable': 'The portable runner'}[c.runner]
  endpoint = c.job_endpoint or (EMBEDDED_JOB_SERVICE if c.runner == 'portable' else None)
  own_server = endpoint is None  # Flink / Spark: Beam starts a job server from its jar
  if endpoint and not (_HOST_PORT.match(endpoint) or (
      c.runner == 'portable' and endpoint == EMBEDDED_JOB_SERVICE)):
    hint = ' (the Flink cluster itself is --flink_master)' if c.runner == 'flink' else ''
    errors.append(f'--job_endpoint={endpoint!r} is not host:port of a Beam job service'
                  + (' or embed' if c.runner == 'portable' else '') + hint)
  for flag, runner in (('flink_master', 'flink'), ('flink_version', 'flink'),
                       ('flink_job_server_jar', 'flink'), ('spark_master_url', 'spark'),
                       ('spark_job_server_jar', 'spark')):
    if getattr(c, flag) and (c.runner != runner or not own_server):
      errors.append(f'--{flag} applies to --beam_runner={runner} without --job_endpoint '
                    '(the job server Beam starts)')
  if c.runner == 'flink' and own_server:
    master = c.flink_master or DEFAULT_FLINK_MASTER
    version = c.flink_version or DEFAULT_FLINK_VERSION
    if not _FLINK_MASTER.match(master):
      errors.append(f'--flink_master={master!r}: expected [local] (an embedded mini-cluster), '
                    '[auto] or host:port of a Flink REST endpoint')
    if version not in FLINK_VERSIONS:
      errors.append(f'--flink_version={version!r}: Beam publishes Flink job servers for '
                    f'{", ".join(FLINK_VERSIONS)}')
    args = ['--runner=FlinkRunner', f'--flink_master={master}', f'--flink_version={version}']
    if c.flink_job_server_jar:
      args.append(f'--flink_job_server_jar={_jar_path(c.flink_job_server_jar)}')
  elif c.runner == 'spark' and own_server:
    master = c.spark_master_url or DEFAULT_SPARK_MASTER
    if not _SPARK_MASTER.match(master):
      errors.append(f'--spark_master_url={master!r}: expected local[N], local[*] or '
                    'spark://host:port')
    args = ['--runner=SparkRunner', f'--spark_master_url={master}']
    if c.spark_job_server_jar:
      args.append(f'--spark_job_server_jar={_jar_path(c.spark_job_server_jar)}')
  else:
    args = ['--runner=PortableRunner', f'--job_endpoint={endpoint}']
  environment = (c.environment_type or ('LOOPBACK' if runs_here(c) else '')).upper()
  if not environment:
    if not errors:  # (a wrong endpoint or master says more)
      errors.append(f'{name} on another machine needs --environment_type: its workers cannot '
                    'run in this process (LOOPBACK); give EXTERNAL (a worker pool\'s host:port '
                    'in --environment_config), PROCESS or DOCKER (an SDK image with this package)')
  elif environment not in ENVIRONMENT_TYPES:
    errors.append(f'--environment_type={c.environment_type!r}: expected one of '
                  f'{", ".join(ENVIRONMENT_TYPES)}')
  elif environment == 'LOOPBACK' and not runs_here(c):
    errors.append('--environment_type=LOOPBACK runs the workers in this process: only for a '
                  'job service and cluster on this machine')
  if environment == 'EXTERNAL' and c.environment_config and not _HOST_PORT.match(
      c.environment_config):
    errors.append(f'--environment_config={c.environment_config!r}: EXTERNAL needs the host:port '
                  'of a Beam SDK worker pool')
  if environment == 'PROCESS' and c.environment_config:
    try:
      command = json.loads(c.environment_config).get('command')
    except (ValueError, AttributeError):
      command = None
    if not command:
      errors.append(f'--environment_config={c.environment_config!r}: PROCESS needs JSON such as '
                    '{"command": "/opt/apache/beam/boot"}')
  if environment in ('PROCESS', 'EXTERNAL') and not c.environment_config:
    errors.append(f'--environment_type={environment} needs --environment_config')
  if environment in ENVIRONMENT_TYPES:
    args.append(f'--environment_type={environment}')
  if c.environment_config:
    args.append(f'--environment_config={c.environment_config}')
  return args


def _jar_path(jar: str) -> str:
  """A local jar made absolute; a URL kept."""
  return jar if '://' in jar else os.path.abspath(jar)


def pipeline_args(config: BeamRunnerConfig) -> List[str]:
  """The `beam_pipeline_args` for `config`, checked.

  Returns:
    e.g. [] (in-process DirectRunner), ['--runner=DirectRunner', '--direct_running_mode=
    multi_processing', '--direct_num_workers=2'], ['--runner=DataflowRunner',
    '--project=p', '--region=us-central1', '--temp_location=gs://b/tmp', ...,
    '--setup_file=/path/to/setup.py'], ['--runner=FlinkRunner', '--flink_master=[local]',
    '--flink_version=1.18', '--environment_type=LOOPBACK'] or ['--runner=PortableRunner',
    '--job_endpoint=embed', '--environment_type=EXTERNAL', '--environment_config=host:50000'].

  Raises:
    BeamOptionsError: an unknown runner, or options missing or wrong for it; the message lists
      them all, Beam's own validation included.
  """
  if config.runner not in RUNNERS:
    raise BeamOptionsError(f'unknown Beam runner {config.runner!r}; expected one of {RUNNERS}')
  if config.runner == 'direct':
    try:
      return direct_runner_args(config.direct_num_workers, config.direct_running_mode)
    except ValueError as e:
      raise BeamOptionsError(str(e)) from None
  errors: List[str] = []
  args = (_dataflow_args if config.runner == 'dataflow' else _portable_args)(config, errors)
  if not errors:  # Beam's own checks, those that need no network (no credentials, no bucket)
    options = pipeline_options.PipelineOptions(args)
    validator = pipeline_options_validator.PipelineOptionsValidator(
        options, _runner_stand_in('PortableRunner'))  # not a service runner: offline checks
    errors.extend(validator.validate())
    if config.runner == 'dataflow':
      cloud = options.view_as(pipeline_options.GoogleCloudOptions)
      workers = options.view_as(pipeline_options.WorkerOptions)
      errors.extend(validator.validate_cloud_options(cloud)
                    + validator.validate_gcs_path(cloud, 'temp_location')
                    + validator.validate_gcs_path(cloud, 'staging_location')
                    + validator.validate_num_workers(workers)
                    + validator.validate_worker_region_zone(workers))
  if errors:
    raise BeamOptionsError(f'Beam {config.runner} options: ' + '; '.join(errors))
  return args


def _runner_stand_in(name: str):
  """An object whose class is named like the runner: all that Beam's validator looks at."""
  return type(name, (), {'get_default_gcp_region': staticmethod(lambda: None)})()


def worker_args(args: List[str], op_modules: List[str]) -> List[str]:
  """`args` (from `pipeline_args`) with what the SDK workers of a remote or portable runner
  import when they start: `--beam_plugins` naming `beam_runner.worker_setup` (the harness
  configuration of beam_runner.sdk_harness) and the model's op libraries (e.g.
  `tensorflow_decision_forests`, `tensorflow_text`), whose TensorFlow ops must be registered in
  the worker before it loads a SavedModel or a transform graph that uses them.

  Beam's SDK worker (sdk_worker_main: its containers, PROCESS boot, Dataflow) and this project's
  worker pool (beam_runner.worker_pool) import every `--beam_plugins` module at start. The
  in-process runners (DirectRunner, LOOPBACK) import nothing: `args` without a runner, or with
  DirectRunner, come back unchanged (an empty list keeps TFX from building its sdist).
  """
  options = pipeline_options.PipelineOptions(list(args))
  runner = options.view_as(pipeline_options.StandardOptions).runner
  if not runner or runner == 'DirectRunner':
    return list(args)
  plugins = ['beam_runner.worker_setup', *op_modules]
  given = options.view_as(pipeline_options.SetupOptions).beam_plugins or []
  return list(args) + [f'--beam_plugins={plugin}' for plugin in plugins if plugin not in given]


def job_server_jar(config: BeamRunnerConfig) -> Optional[str]:
  """The job server jar Beam starts for `config`: its local path or URL, or None when no job
  server is started here (not Flink or Spark, or a --job_endpoint given).

  The default is Beam's own choice: Maven Central's `beam-runners-flink-<flink_version>-job-
  server-<Beam version>.jar` or `beam-runners-spark-3-job-server-<Beam version>.jar`.
  """
  if config.runner not in ('flink', 'spark') or config.job_endpoint:
    return None
  from apache_beam.utils import subprocess_server  # pylint: disable=import-outside-toplevel
  if config.runner == 'flink':
    if config.flink_job_server_jar:
      return _jar_path(config.flink_job_server_jar)
    version = config.flink_version or DEFAULT_FLINK_VERSION
    target = f':runners:flink:{version}:job-server:shadowJar'
  else:
    if config.spark_job_server_jar:
      return _jar_path(config.spark_job_server_jar)
    target = ':runners:spark:3:job-server:shadowJar'
  return subprocess_server.JavaJarServer.path_to_beam_jar(target)


def jar_cache_path(url: str) -> str:
  """Where Beam keeps the jar of `url` once fetched (~/.apache_beam/cache/jars/<name>)."""
  from apache_beam.utils import subprocess_server  # pylint: disable=import-outside-toplevel
  return os.path.join(subprocess_server.JavaJarServer.JAR_CACHE, os.path.basename(url))


def _answers(address: str, timeout: float) -> Optional[str]:
  """None when a gRPC service answers at host:port within `timeout` seconds, else why not."""
  import grpc  # pylint: disable=import-outside-toplevel
  refused = _tcp_answers(address, timeout)  # a closed port says so at once
  if refused:
    return refused
  channel = grpc.insecure_channel(address)
  try:
    grpc.channel_ready_future(channel).result(timeout=timeout)
    return None
  except grpc.FutureTimeoutError:
    return f'nothing answered within {timeout:g} s'
  finally:
    channel.close()


def _tcp_answers(address: str, timeout: float) -> Optional[str]:
  """None when host:port accepts a TCP connection, else why not."""
  host, port = address.split('://', 1)[-1].rsplit(':', 1)
  try:
    with socket.create_connection((host, int(port)), timeout=timeout):
      return None
  except OSError as e:
    return e.strerror or str(e)


def check_services(config: BeamRunnerConfig, say: Callable[[str], None] = lambda line: None,
                   timeout: float = SERVICE_TIMEOUT_SECONDS) -> None:
  """Checks what the Beam stages of `config` will talk to, before any of them runs.

  For Flink and Spark without --job_endpoint: `java` on the PATH, and the job server jar: a
  local --flink_job_server_jar / --spark_job_server_jar must exist; Beam's default is fetched
  now from Maven Central into Beam's cache (~/.apache_beam/cache/jars) unless it is there already
  (`say` is told first: it is 150-250 MB). A Flink or Spark master given as host:port must
  accept connections (on this machine too). A --job_endpoint (but `embed`) must answer as a gRPC service, and so must
  the worker pool of --environment_type=EXTERNAL. Other runners: nothing to check.

  Args:
    config: options that `pipeline_args` accepted.
    say: receives a line before a long step (the jar download).
    timeout: seconds to wait for each service.

  Raises:
    BeamOptionsError: one line naming the flag and what was expected.
  """
  if config.runner not in ('flink', 'spark', 'portable'):
    return
  name = 'Flink' if config.runner == 'flink' else 'Spark'
  jar = job_server_jar(config)
  if jar:
    flag = f'--{config.runner}_job_server_jar'
    if not shutil.which('java'):
      raise BeamOptionsError(f'Beam\'s {name} job server is a Java program: no `java` on the '
                             'PATH (install a JDK 11 or 17), or give --job_endpoint of a running '
                             'job service')
    if '://' not in jar and not os.path.isfile(jar):
      raise BeamOptionsError(f'{flag}={jar}: no such file (expected Beam\'s {name} job server '
                             'jar)')
    if '://' in jar and not os.path.isfile(jar_cache_path(jar)):
      say(f'  fetching Beam\'s {name} job server jar (first use) into '
          f'{os.path.dirname(jar_cache_path(jar))}: {jar}')
      from apache_beam.utils import subprocess_server  # pylint: disable=import-outside-toplevel
      try:
        subprocess_server.JavaJarServer.local_jar(jar)
      except (RuntimeError, OSError, urllib.error.URLError) as e:
        reason = str(getattr(e, '__cause__', None) or e).split(': ', 1)[-1].split('. If no')[0]
        raise BeamOptionsError(
            f'Beam\'s {name} job server jar {os.path.basename(jar)} is not in '
            f'{os.path.dirname(jar_cache_path(jar))} and could not be fetched from {jar} '
            f'({reason}): fetch it where that works and give {flag}=PATH, or put it in that '
            'folder') from None
    master = config.flink_master if config.runner == 'flink' else config.spark_master_url
    if master and ':' in master and master != '[local]':  # host:port, spark://host:port
      problem = _tcp_answers(master, timeout)
      if problem:
        raise BeamOptionsError(f'--{"flink_master" if config.runner == "flink" else "spark_master_url"}'
                               f'={master}: no {name} master answers there ({problem})')
  if config.job_endpoint and config.job_endpoint != EMBEDDED_JOB_SERVICE:
    problem = _answers(config.job_endpoint, timeout)
    if problem:
      raise BeamOptionsError(f'--job_endpoint={config.job_endpoint}: no Beam job service answers '
                             f'there ({problem}); start one or leave --job_endpoint out')
  if (config.environment_type or '').upper() == 'EXTERNAL' and config.environment_config:
    problem = _answers(config.environment_config, timeout)
    if problem:
      raise BeamOptionsError(
          f'--environment_config={config.environment_config}: no Beam SDK worker pool answers '
          f'there ({problem}); start one with `python -m beam_runner.worker_pool '
          f'--service_port={config.environment_config.rsplit(":", 1)[-1]}` where the workers run')


def prefetch_job_server_jars(say: Callable[[str], None] = print) -> bool:
  """Fetches Beam's default Flink and Spark job server jars into Beam's cache unless they are
  there (.ci/run, for the slow tests). Returns whether both are there; `say` gets each problem."""
  ready = True
  for runner in ('flink', 'spark'):
    try:
      check_services(BeamRunnerConfig(runner=runner), say=say)
    except BeamOptionsError as e:
      say(f'{runner}: {e}')
      ready = False
  return ready
