"""Census through the CLI, interrupted and resumed as a user would: SIGINT during the Trainer, the
same command again, then a partial run from the Evaluator (small synthetic files in the UCI
format, tests/synthetic.py; embedded default)."""

import glob
import json
import os
import signal

import pytest
from ml_metadata.proto import metadata_store_pb2

from pipelines import metadata
from tests import helpers, synthetic

BEFORE_TRAINER = ('TextLineExampleGen', 'StatisticsGen', 'ImportSchemaGen', 'ExampleValidator',
                  'AnomaliesGate', 'Transform')


def _summary(output_dir):
  with open(os.path.join(output_dir, 'run_summary.json')) as f:
    return json.load(f)


def _unfinished(output_dir):
  store = metadata.open_store(os.path.join(output_dir, 'metadata.sqlite'))
  return [e.id for e in store.get_executions()
          if e.last_known_state in (metadata_store_pb2.Execution.NEW,
                                    metadata_store_pb2.Execution.RUNNING)]


def test_sigint_during_the_trainer_then_the_same_command_resumes(tmp_path):
  output_dir = str(tmp_path / 'census')
  files = synthetic.census_files(str(tmp_path), {'train': 2000, 'eval': 1000})
  args = ['run', 'census', f'--train_data={files["train"]}', f'--eval_data={files["eval"]}',
          f'--output_dir={output_dir}', '--train_steps=600']
  run = helpers.BackgroundCli(args, str(tmp_path / 'stderr.txt'), output_dir)
  # The progress lines are flushed as each stage starts.
  if run.wait_for_line('Trainer running', timeout=600) is None:
    pytest.fail('the run ended before its Trainer started:\n' + ''.join(run.lines))
  run.process.send_signal(signal.SIGUSR1)  # the threads' stacks to the log; the run goes on
  run.process.send_signal(signal.SIGINT)
  assert run.wait(timeout=300) == 130, run.explain()
  (log,) = glob.glob(os.path.join(output_dir, 'logs', '*.log'))
  with open(log) as f:
    assert 'most recent call first' in f.read()  # faulthandler's dump
  errors = (tmp_path / 'stderr.txt').read_text()
  assert 'official-tfx: interrupted (SIGINT) during Trainer' in errors
  assert f'Resume with: official-tfx run census --train_data={files["train"]}' in errors
  assert 'KeyboardInterrupt' not in errors and 'Traceback' not in errors
  summary = _summary(output_dir)
  assert summary['error'] == 'interrupted'
  assert summary['interrupted']['signal'] == 'SIGINT'
  assert summary['interrupted']['stage'] == 'Trainer'
  assert summary['pushed_model'] is None
  assert _unfinished(output_dir) == []  # the Trainer's execution is CANCELED, not left RUNNING
  assert not any(os.path.exists(folder) for folder in summary['interrupted']['removed'])

  resumed = helpers.BackgroundCli(args, str(tmp_path / 'stderr-resumed.txt'), output_dir)
  assert resumed.wait(timeout=1200) == 0, resumed.explain()
  summary = _summary(output_dir)
  stages = {s['name']: s['cached'] for s in summary['stages']}
  assert all(stages[name] for name in BEFORE_TRAINER), summary['stages']
  assert stages['Trainer'] is False
  assert summary['blessed'] is True and summary['pushed_model']
  assert summary['infra_blessing']['blessed'] is True
  # What the run was, resolved: enough to reproduce it.
  assert summary['config']['train_steps'] == 600 and summary['config']['batch_size'] == 256
  assert summary['config']['trainer']['hparams']['learning_rate'] > 0
  assert summary['versions']['tfx'] == '1.16.0' and summary['versions']['tensorflow']

  # A partial run re-runs the Evaluator and what follows, on the last run's model.
  partial = helpers.BackgroundCli(args + ['--from_stage=evaluator'],
                                  str(tmp_path / 'stderr-partial.txt'), output_dir)
  assert partial.wait(timeout=1200) == 0, partial.explain()
  again = _summary(output_dir)
  stages = {s['name']: s['cached'] for s in again['stages']}
  rerun = ('Evaluator', 'ServingCheck', 'Pusher')
  assert all(stages[name] is False for name in rerun), again['stages']
  # TFX's partial run takes the other stages' outputs from the last run (recorded as cached).
  assert all(cached for name, cached in stages.items() if name not in rerun), again['stages']
  assert again['partial_run'] == {'from_stage': ['Evaluator'], 'to_stage': []}
  assert again['metrics']['accuracy'] == pytest.approx(summary['metrics']['accuracy'], abs=1e-6)
