"""Beam runners for the pipelines' Beam stages: DirectRunner, Dataflow, Flink, Spark.

`BeamRunnerConfig` holds what each runner needs; `pipeline_args` turns it into the
`beam_pipeline_args` of the TFX pipeline after checking it, so a wrong or missing option stops the run
before any component starts. Checks are Beam's own (`PipelineOptionsValidator`: project id, region,
`gs://` locations, worker counts, portable environments) plus the few that Beam leaves to job
submission time (a Dataflow region, a job endpoint's form, the package to ship). Nothing here
touches the network: Dataflow's credentials and buckets are checked when the job is submitted.

Workers of a remote runner need this project's code (the line parsers, `preprocessing_fn`s and task
modules that TFX names by module path): Dataflow gets it as `--setup_file` (this checkout's
setup.py, built into an sdist on submission and installed on every worker); a portable runner's
environment (its SDK container image or process) must have it installed.
"""

from __future__ import annotations

import dataclasses
import os
import re
from typing import List, Optional

from apache_beam.options import pipeline_options
from apache_beam.options import pipeline_options_validator

from beam_runner.options import direct_runner_args

RUNNERS = ('direct', 'dataflow', 'flink', 'spark')
ENVIRONMENT_TYPES = ('DOCKER', 'PROCESS', 'EXTERNAL', 'LOOPBACK')
SETUP_FILE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'setup.py')
_ENDPOINT = re.compile(r'^(\[auto\]|\[local\]|[A-Za-z0-9.\-]+:\d{1,5})$')
_REGION = re.compile(r'^[a-z]+-[a-z]+\d+$')
_MACHINE_TYPE = re.compile(r'^([a-z]\d[a-z]?-[a-z]+-\d+|custom-\d+-\d+)$')


class BeamOptionsError(ValueError):
  """The Beam runner options are wrong or incomplete; the message lists every problem."""


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
    job_endpoint: Flink or Spark job service (`host:port`), or for Flink `[local]` / `[auto]`
      (an embedded Flink).
    environment_type, environment_config: the portable SDK harness: DOCKER (config: image),
      PROCESS (config: JSON with the boot command), EXTERNAL (config: worker pool address) or
      LOOPBACK (in the submitting process; local clusters only).
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


def _portable_args(c: BeamRunnerConfig, errors: List[str]) -> List[str]:
  name = 'Flink' if c.runner == 'flink' else 'Spark'
  if not c.job_endpoint:
    errors.append(f'{name} needs --job_endpoint (host:port of its job service'
                  + (', or [local] for an embedded Flink)' if c.runner == 'flink' else ')'))
  elif not _ENDPOINT.match(c.job_endpoint) or (
      c.runner == 'spark' and c.job_endpoint.startswith('[')):
    errors.append(f'--job_endpoint={c.job_endpoint!r} is not host:port'
                  + (' or [local] / [auto]' if c.runner == 'flink' else ''))
  environment = (c.environment_type or 'DOCKER').upper()
  if environment not in ENVIRONMENT_TYPES:
    errors.append(f'--environment_type={c.environment_type!r}: expected one of '
                  f'{", ".join(ENVIRONMENT_TYPES)}')
  if environment in ('PROCESS', 'EXTERNAL') and not c.environment_config:
    errors.append(f'--environment_type={environment} needs --environment_config')
  if c.runner == 'flink':
    args = ['--runner=FlinkRunner', f'--flink_master={c.job_endpoint}']
  else:
    args = ['--runner=PortableRunner', f'--job_endpoint={c.job_endpoint}']
  args.append(f'--environment_type={environment}')
  if c.environment_config:
    args.append(f'--environment_config={c.environment_config}')
  return args


def pipeline_args(config: BeamRunnerConfig) -> List[str]:
  """The `beam_pipeline_args` for `config`, checked.

  Returns:
    e.g. [] (in-process DirectRunner), ['--runner=DirectRunner', '--direct_running_mode=
    multi_processing', '--direct_num_workers=2'], or ['--runner=DataflowRunner',
    '--project=p', '--region=us-central1', '--temp_location=gs://b/tmp', ...,
    '--setup_file=/path/to/setup.py'].

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
