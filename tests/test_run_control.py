"""Run control without a pipeline run: the output directory's run lock, the interrupt handler,
closing executions a killed run left RUNNING in ML Metadata, the `malformed` summary, Beam stage
names stripped from messages, and usage errors reported before anything is written."""

import os
import signal
import subprocess
import sys
import time
import weakref

import pytest
from ml_metadata.proto import metadata_store_pb2

from pipelines import metadata, runner
from pipelines import spec as spec_lib
from tests import helpers


def _store(path):
  return metadata.open_store(path, readonly=False)


def _execution(store, node_context_id, state, create_ms=None):
  """An execution of type `Trainer` in `state`, attributed to the node context; returns its id."""
  type_id = store.put_execution_type(metadata_store_pb2.ExecutionType(name='Trainer'))
  execution = metadata_store_pb2.Execution(type_id=type_id, last_known_state=state)
  [execution_id] = store.put_executions([execution])
  store.put_attributions_and_associations(
      [], [metadata_store_pb2.Association(context_id=node_context_id,
                                          execution_id=execution_id)])
  return execution_id


@pytest.fixture
def trainer_node(tmp_path):
  """(metadata path, store, pipeline root, id of the `census.Trainer` node context)."""
  path = str(tmp_path / 'metadata.sqlite')
  store = _store(path)
  type_id = store.put_context_type(metadata_store_pb2.ContextType(name='node'))
  [context_id] = store.put_contexts([metadata_store_pb2.Context(type_id=type_id,
                                                                name='census.Trainer')])
  return path, store, str(tmp_path / 'pipeline_root'), context_id


def test_close_unfinished_cancels_running_executions_and_removes_only_their_folders(trainer_node):
  path, store, root, context = trainer_node
  done = _execution(store, context, metadata_store_pb2.Execution.COMPLETE)
  killed = _execution(store, context, metadata_store_pb2.Execution.RUNNING)
  # The finished execution's model is an artifact; the killed one's folders are referenced by none.
  kept = os.path.join(root, 'Trainer', 'model', str(done))
  orphans = [os.path.join(root, 'Trainer', 'model', str(killed)),
             os.path.join(root, 'Trainer', 'model_run', str(killed)),
             os.path.join(root, 'Trainer', '.system', 'executor_execution', str(killed))]
  for folder in [kept, *orphans]:
    os.makedirs(folder)
  artifact_type = store.put_artifact_type(metadata_store_pb2.ArtifactType(name='Model'))
  store.put_artifacts([metadata_store_pb2.Artifact(type_id=artifact_type, uri=kept)])

  closed = metadata.close_unfinished(path, 'census', root, note='abandoned: test')

  assert [(c.name, c.execution_id) for c in closed] == [('Trainer', killed)]
  assert sorted(closed[0].removed) == sorted(orphans)
  assert not any(os.path.exists(folder) for folder in orphans)
  assert os.path.isdir(kept)
  states = {e.id: e for e in _store(path).get_executions()}
  assert states[killed].last_known_state == metadata_store_pb2.Execution.CANCELED
  assert states[killed].custom_properties[metadata.CLOSED_NOTE].string_value == 'abandoned: test'
  assert states[done].last_known_state == metadata_store_pb2.Execution.COMPLETE
  # Another pipeline's executions and a second call leave everything as it is.
  assert metadata.close_unfinished(path, 'other', root, note='x') == []
  assert metadata.close_unfinished(path, 'census', root, note='x') == []


def test_close_unfinished_since_only_closes_the_runs_own_executions(trainer_node):
  path, store, root, context = trainer_node
  older = _execution(store, context, metadata_store_pb2.Execution.RUNNING)
  time.sleep(0.01)
  since = metadata.now_ms()
  time.sleep(0.01)
  newer = _execution(store, context, metadata_store_pb2.Execution.NEW)
  closed = metadata.close_unfinished(path, 'census', root, note='interrupted', since_ms=since)
  assert [c.execution_id for c in closed] == [newer]
  states = {e.id: e.last_known_state for e in _store(path).get_executions()}
  assert states[older] == metadata_store_pb2.Execution.RUNNING


def test_a_second_run_into_a_busy_output_dir_stops_with_the_holder_named(tmp_path):
  with runner.run_lock(str(tmp_path)):
    with pytest.raises(runner.OutputDirBusy, match=rf'{tmp_path} is in use by another run '
                                                   rf'\(pid {os.getpid()}, started '):
      with runner.run_lock(str(tmp_path)):
        pass
  with runner.run_lock(str(tmp_path)):  # released: free again
    pass


def test_the_lock_of_a_killed_process_is_free(tmp_path):
  holder = subprocess.Popen(
      [sys.executable, '-c', 'import sys, time; from pipelines import runner\n'
       f'with runner.run_lock({str(tmp_path)!r}):\n  print("locked", flush=True); time.sleep(60)'],
      stdout=subprocess.PIPE, text=True)
  try:
    assert holder.stdout.readline().strip() == 'locked'
    with pytest.raises(runner.OutputDirBusy):
      with runner.run_lock(str(tmp_path)):
        pass
  finally:
    holder.kill()
    holder.wait()
  with runner.run_lock(str(tmp_path)):
    pass


def test_sigint_and_sigterm_raise_run_interrupted_with_the_shell_exit_status():
  before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
  for sig, status in ((signal.SIGINT, 130), (signal.SIGTERM, 143)):
    with pytest.raises(runner.RunInterrupted) as raised:
      with runner.interrupts_raise():
        os.kill(os.getpid(), sig)
        time.sleep(5)  # the handler raises at the next bytecode
    assert raised.value.exit_status == status
    assert raised.value.signal_name == signal.Signals(sig).name
  # Restored (a process started in the background, by nohup or `&`, ignores SIGINT from the start).
  assert {sig: signal.getsignal(sig) for sig in before} == before


def test_an_interrupt_raised_where_python_drops_exceptions_is_delivered_again():
  """Ctrl-C that lands in a weakref callback (as during Keras training, where it was lost and the
  run went on) still stops the run."""
  class Thing:
    pass

  def callback(_):
    os.kill(os.getpid(), signal.SIGINT)
    time.sleep(0.5)  # the handler runs in here, and Python drops what it raises

  with pytest.raises(runner.RunInterrupted) as raised:
    with runner.interrupts_raise():
      thing = Thing()
      ref = weakref.ref(thing, callback)
      del thing
      time.sleep(10)  # without a second delivery the block would end here, uninterrupted
  assert raised.value.signal_name == 'SIGINT' and ref() is None


def test_an_interrupt_that_comes_out_as_another_error_is_still_the_interrupt():
  """As when Ctrl-C lands while TensorFlow traces a function: pybind11 hands the handler's
  exception back as a RuntimeError, which TFX's launcher records as the stage's failure."""
  with pytest.raises(runner.RunInterrupted) as raised:
    with runner.interrupts_raise():
      try:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)
      except KeyboardInterrupt as e:
        raise RuntimeError('pybind11::error_already_set: MISMATCH of original and normalized '
                           'active exception types') from e
  assert raised.value.exit_status == 143
  assert isinstance(raised.value.__cause__, RuntimeError)
  with pytest.raises(ValueError):  # without a signal, an error is itself
    with runner.interrupts_raise():
      raise ValueError('bad row')


# A child whose clean-up after the signal hangs: in the handler's aftermath itself, or at the
# interpreter's exit, where Python waits for a thread that never ends.
_STUCK_AFTER_SIGNAL = """
import threading, time
from pipelines import runner
try:
  with runner.interrupts_raise(force_exit_after_s={grace}):
    print('ready', flush=True)
    time.sleep(60)
except runner.RunInterrupted:
  if {where!r} == 'clean-up':
    time.sleep(60)
  else:
    threading.Thread(target=threading.Event().wait).start()
"""


@pytest.mark.parametrize('where, sig, stuck_in', [('clean-up', signal.SIGINT, 'File "<string>"'),
                                                  ('exit', signal.SIGTERM, 'in _shutdown')])
def test_a_stuck_stop_ends_the_process_after_the_grace_with_the_stacks(where, sig, stuck_in):
  child = subprocess.Popen(
      [sys.executable, '-c', _STUCK_AFTER_SIGNAL.format(grace=2, where=where)],
      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  try:
    assert child.stdout.readline().strip() == 'ready'
    child.send_signal(sig)
    started = time.monotonic()
    _, stderr = child.communicate(timeout=40)
  finally:
    child.kill()
  assert child.returncode == 128 + sig  # 130 / 143, as a clean stop
  name = signal.Signals(sig).name
  assert time.monotonic() - started < 30, 'forced long after the 2 s grace'
  assert f'stopping after {name} took more than 2 s; exiting now' in stderr, stderr
  assert 'most recent call first' in stderr, stderr  # faulthandler's stacks, before the line
  assert stuck_in in stderr, stderr  # where it was stuck


def test_error_messages_drop_beam_stage_names():
  error = ValueError("split 'train' (/d/adult.data): no valid row in 3 rows\n  /d/adult.data:1: bad "
                     "[while running 'InputToRecord[train]/ReadRows/CheckMalformed'] "
                     "[while running 'Outer']")
  assert runner.error_message(error) == (
      "ValueError: split 'train' (/d/adult.data): no valid row in 3 rows\n  /d/adult.data:1: bad")


def test_malformed_summary_lists_the_first_rows_and_notices():
  reports = {
      'train': {'split': 'train', 'malformed_rows': 12, 'malformed_fraction': 0.004,
                'first_malformed': [{'file': '/d/a.csv', 'line': n, 'reason': 'bad age',
                                     'text': 'x'} for n in range(2, 12)],
                'notices': ['a.csv: header line 1 skipped']},
      'eval': {'split': 'eval', 'malformed_rows': 0, 'malformed_fraction': 0.0,
               'first_malformed': []}}
  summary = metadata.malformed_summary(reports)
  assert list(summary) == ['train']  # a clean split is not listed
  entry = summary['train']
  assert entry['count'] == 12 and entry['fraction'] == 0.004
  assert entry['first'][0] == {'file': '/d/a.csv', 'line': 2, 'reason': 'bad age'}
  assert len(entry['first']) == metadata.MAX_LISTED
  lines = metadata.describe_malformed('train', entry)
  assert lines[0] == 'train: 12 malformed row(s) left out (0.400% of the split):'
  assert lines[1] == '  /d/a.csv:2: bad age'
  assert lines[-2] == f'  ... and {12 - metadata.MAX_LISTED} more (run_summary.json, the log)'
  assert lines[-1] == 'train: a.csv: header line 1 skipped'


def test_stage_names_follow_the_pipeline_and_are_checked():
  census, higgs = spec_lib.get('census'), spec_lib.get('higgs')
  assert runner.check_stage(census, 'trainer', 'from_stage') == 'Trainer'
  assert runner.check_stage(census, 'examplegen', 'from_stage') == 'ExampleGen'
  assert 'Transform' not in runner.stage_names(higgs)
  with pytest.raises(ValueError, match='--to_stage=Transform: not a stage of higgs; expected '
                                       'one of ExampleGen, StatisticsGen'):
    runner.check_stage(higgs, 'Transform', 'to_stage')


# Usage errors through the CLI, as the user meets them: one line on stderr, exit status 1, and
# nothing written (no --output_dir, no logs).
USAGE_CASES = [
    (['run', 'nosuch'], "unknown model 'nosuch'; known: census,"),
    (['run', 'census', '--train_steps=0'], '--train_steps=0: 0 is not a positive integer'),
    (['run', 'census', '--batch_size=-5'], '--batch_size=-5: -5 is not a positive integer'),
    (['run', 'movielens', '--train_epochs=0'], '--train_epochs=0: 0 is not a positive integer'),
    (['run', 'census', '--hparams={"learning_rate": '], '--hparams is not a JSON object'),
    (['run', 'census', '--hparams={"no_such": 1}'], "unknown hyperparameters ['no_such']"),
    (['run', 'census', '--model_type=huge'], "unknown model type 'huge' for census"),
    (['run', 'movielens', '--layers=64,x'], '--layers=64,x: expected whole numbers'),
    (['run', 'census', '--num_trees=10'], '--num_trees does not apply to census; its hyperparameter '
     'flags: --learning_rate'),
    (['run', 'movielens', '--train_data=/etc/hostname'],
     '--train_data does not apply to movielens, whose raw input is u.data; its data flags: '
     '--ratings_data'),
    (['run', 'movielens', '--train_count=100'], '--train_count does not apply to movielens'),
    (['run', 'census', '--train_data=/no/such/adult [copy 1].data'],
     '--train_data: nothing at /no/such/adult [copy 1].data'),
    (['run', 'census', '--from_stage=Trainers'], '--from_stage=Trainers: not a stage of census'),
    (['run', 'census', '--max_malformed_fraction=1.5'], '--max_malformed_fraction=1.5'),
    (['run', 'higgs', '--train_steps=10'], 'higgs does not train by steps'),
    (['run', 'census', '--output_dir=/etc/hostname'],
     '--output_dir /etc/hostname is a file, not a directory'),
    (['run', 'census', '--output_dir=/etc/hostname/sub'],
     '--output_dir /etc/hostname/sub: /etc/hostname is a file, not a directory'),
    (['run', 'census', '--output_dir=/proc/sys/official_tfx'], '--output_dir /proc/sys/'),
]


_cli_in_process = helpers.cli_in_process


@pytest.mark.parametrize('args,message', USAGE_CASES, ids=[' '.join(a) for a, _ in USAGE_CASES])
def test_usage_errors_are_one_line_and_write_nothing(tmp_path, args, message):
  output = tmp_path / 'out'
  if not any(a.startswith('--output_dir') for a in args):
    args = args + [f'--output_dir={output}']
  status, stderr = _cli_in_process(args + ['--data_root=/nonexistent'])
  assert status == 1, stderr
  lines = stderr.strip().splitlines()
  assert len(lines) == 1 and message in lines[0], stderr
  assert not output.exists()


def test_usage_errors_through_the_command_line(tmp_path):
  """The same, as a user sees them: absl's flag bound, and the CLI's own one-line error."""
  for args, message in ((['run', 'census', '--train_steps=-5'],
                         'FATAL Flags parsing error: flag --train_steps=-5: -5 is not a positive '
                         'integer'),
                        (['run', 'census', '--hparams=[1]'],
                         'official-tfx: --hparams must be a JSON object')):
    output = tmp_path / 'out'
    result = helpers.run_cli(*args, f'--output_dir={output}', timeout=300)
    assert result.returncode == 1
    assert message in result.stderr.splitlines(), result.stderr[-2000:]
    assert 'Traceback' not in result.stderr and not output.exists()
