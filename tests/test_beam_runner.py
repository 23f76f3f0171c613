"""Beam runner options: what each runner gets, and the errors raised before anything starts."""

import pytest

from beam_runner.runners import SETUP_FILE, BeamOptionsError, BeamRunnerConfig, pipeline_args
from tests import helpers


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
    (BeamRunnerConfig(runner='flink'), ['Flink needs --job_endpoint']),
    (BeamRunnerConfig(runner='spark', job_endpoint='[local]'), ["'[local]' is not host:port"]),
    (BeamRunnerConfig(runner='flink', job_endpoint='localhost:8099', environment_type='PROCESS'),
     ['--environment_type=PROCESS needs --environment_config']),
    (BeamRunnerConfig(runner='flink', job_endpoint='localhost:8099', environment_type='LOOPBACK',
                      environment_config='x'),
     ['not compatible with environment type LOOPBACK']),  # Beam's own check
    (BeamRunnerConfig(runner='flink', job_endpoint='localhost:8099', environment_type='VM'),
     ["--environment_type='VM': expected one of DOCKER, PROCESS, EXTERNAL, LOOPBACK"]),
    (BeamRunnerConfig(runner='samza'), ["unknown Beam runner 'samza'"]),
])
def test_wrong_or_missing_options_are_all_listed(config, messages):
  with pytest.raises(BeamOptionsError) as e:
    pipeline_args(config)
  for message in messages:
    assert message in str(e.value)


def test_portable_runners():
  assert pipeline_args(BeamRunnerConfig(runner='flink', job_endpoint='[local]')) == [
      '--runner=FlinkRunner', '--flink_master=[local]', '--environment_type=DOCKER']
  assert pipeline_args(BeamRunnerConfig(
      runner='spark', job_endpoint='spark-jobs:8099', environment_type='external',
      environment_config='localhost:50000')) == [
          '--runner=PortableRunner', '--job_endpoint=spark-jobs:8099',
          '--environment_type=EXTERNAL', '--environment_config=localhost:50000']


def test_the_cli_stops_on_bad_runner_options_before_anything_runs(tmp_path):
  result = helpers.run_cli('run', 'census', '--beam_runner=dataflow', '--project=my-project',
                           '--region=us-central1', '--temp_location=gs://my-bucket/tmp',
                           f'--output_dir={tmp_path}')
  assert result.returncode == 1
  assert 'set --pipeline_root to a gs:// path' in result.stderr
  result = helpers.run_cli('run', 'census', '--beam_runner=flink', f'--output_dir={tmp_path}')
  assert result.returncode == 1 and 'Flink needs --job_endpoint' in result.stderr
  assert not (tmp_path / 'metadata.sqlite').exists()
