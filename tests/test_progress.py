"""Live progress: the plain and live displays, the Trainer's progress callback, the monitor."""

from __future__ import annotations

import io
import json
import os
import re
import threading
import time

os.environ.setdefault('TF_USE_LEGACY_KERAS', '1')

import numpy as np
import pytest
import tensorflow as tf
import tf_keras
from ml_metadata.proto import metadata_store_pb2
from rich.console import Console

from model_fns import trainer
from model_fns import training_progress as tp
from pipelines import metadata, progress
from tests import helpers

NODES = ['TextLineExampleGen', 'StatisticsGen', 'Trainer', 'Evaluator']
ANSI = re.compile(r'\x1b\[[0-9;?]*[A-Za-z]')


def _step(step, total, loss=0.5, rate=40.0, eta=30.0, kind=tp.STEP):
  return tp.TrainingUpdate(kind, step=step, total_steps=total, loss=loss, steps_per_second=rate,
                           eta_seconds=eta, fraction=step / total)


def _publish_training(updates):
  for update in updates:
    tp.publish(update)


def test_plain_display_lines_stage_transitions_and_a_trainer_line_per_tenth():
  out = io.StringIO()
  with progress.PlainDisplay(NODES, out) as display:
    display.stage_running('TextLineExampleGen')
    display.stage_finished('TextLineExampleGen', 'done', 12.34, cached=False)
    display.notices('TextLineExampleGen', ['train: 2 malformed row(s) left out'])
    display.stage_finished('StatisticsGen', 'cached', 0.1, cached=True)
    display.stage_running('Trainer')
    _publish_training([tp.TrainingUpdate(tp.BEGIN, total_steps=2000, fraction=0.0)])
    # Logged every 50 steps: 40 updates, several per quarter of the run.
    _publish_training(_step(s, 2000, loss=1 / s, eta=(2000 - s) / 40) for s in range(50, 2001, 50))
    _publish_training([_step(2000, 2000, kind=tp.END), tp.TrainingUpdate(tp.STATUS, text='x')])
    display.stage_finished('Trainer', 'FAILED', 61.0, cached=False)
  lines = out.getvalue().splitlines()
  assert lines[:5] == ['[ 1/4] TextLineExampleGen running',
                       '[ 1/4] TextLineExampleGen done in 12.3 s',
                       '        train: 2 malformed row(s) left out',
                       '[ 2/4] StatisticsGen cached',
                       '[ 3/4] Trainer running']
  assert lines[-1] == '[ 3/4] Trainer FAILED in 61.0 s'
  trainer_lines = lines[5:-1]
  assert [re.search(r'\((\d+)%\)', line).group(1) for line in trainer_lines] == [
      '25', '50', '75', '100']
  assert trainer_lines[1] == ('        Trainer: step 1000/2000 (50%), loss 0.0010, 40.0 steps/s, '
                              'ETA 25 s')
  assert trainer_lines[-1] == '        Trainer: step 2000/2000 (100%), loss 0.0005, 40.0 steps/s'
  # The display stopped listening when it closed.
  tp.publish(_step(100, 100))
  assert out.getvalue().splitlines()[-1] == '[ 3/4] Trainer FAILED in 61.0 s'


def test_plain_display_coarse_updates_epochs_and_notes():
  """Updates further apart than a quarter give a line each; an epoch-trained task shows epochs; a
  task's notes (TF-DF's start and end) are lines too; nothing is written without a fraction."""
  out = io.StringIO()
  with progress.PlainDisplay(NODES, out):
    _publish_training([
        tp.TrainingUpdate(tp.NOTE, text='growing up to 100 trees'),
        tp.TrainingUpdate(tp.STEP, step=7),  # unknown length: no line
        tp.TrainingUpdate(tp.EPOCH, step=400, epoch=1, total_epochs=4, epoch_step=400,
                          epoch_steps=400, loss=0.25, fraction=0.25),
        tp.TrainingUpdate(tp.STEP, step=700, epoch=2, total_epochs=4, epoch_step=300,
                          epoch_steps=400, loss=0.3, fraction=0.4375),  # the same quarter: none
        tp.TrainingUpdate(tp.STEP, step=800, epoch=2, total_epochs=4, epoch_step=400,
                          epoch_steps=400, loss=0.2, fraction=0.5, steps_per_second=123.4,
                          eta_seconds=3725),
        tp.TrainingUpdate(tp.EPOCH, step=1600, epoch=4, total_epochs=4, epoch_step=400,
                          epoch_steps=400, loss=0.1, fraction=1.0, eta_seconds=0),
    ])
  assert out.getvalue().splitlines() == [
      '        Trainer: growing up to 100 trees',
      '        Trainer: epoch 1/4 (25%), loss 0.2500',
      '        Trainer: epoch 2/4 (50%), loss 0.2000, 123 steps/s, ETA 1 h 02 min',
      '        Trainer: epoch 4/4 (100%), loss 0.1000']


def _tiny_model(steps_per_execution):
  inputs = tf_keras.Input(shape=(3,))
  model = tf_keras.Model(inputs, tf_keras.layers.Dense(1)(inputs))
  model.compile(optimizer='sgd', loss='mse', steps_per_execution=steps_per_execution)
  return model


def _tiny_data():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(64, 3)).astype('float32')
  return tf.data.Dataset.from_tensor_slices((x, x.sum(axis=1))).batch(8).repeat()


def test_keras_callback_publishes_step_total_and_loss_across_fits():
  """As KerasTask.train: 2 epochs of 3 steps, then a remainder fit of 1, 2 steps per execution."""
  updates = []
  tp.subscribe(updates.append)
  try:
    callback = trainer.TrainingProgress(train_steps=7)
    model = _tiny_model(steps_per_execution=2)
    model.fit(_tiny_data(), epochs=2, steps_per_epoch=3, callbacks=[callback], verbose=0)
    model.fit(_tiny_data(), initial_epoch=2, epochs=3, steps_per_epoch=1, callbacks=[callback],
              verbose=0)
    callback.finished()
  finally:
    tp.unsubscribe(updates.append)
  assert [u.kind for u in updates if u.kind == tp.BEGIN] == [tp.BEGIN]  # once over both fits
  steps = [u for u in updates if u.kind == tp.STEP]
  assert [u.step for u in steps] == [2, 3, 5, 6, 7]  # every execution, counted over the fits
  assert {u.total_steps for u in updates} == {7}
  assert all(u.loss is not None and np.isfinite(u.loss) and u.loss > 0 for u in steps)
  assert [round(u.fraction, 3) for u in steps] == [round(s / 7, 3) for s in (2, 3, 5, 6, 7)]
  assert steps[0].steps_per_second is None and steps[-1].steps_per_second > 0
  assert steps[-1].eta_seconds == 0
  assert [u.step for u in updates if u.kind == tp.EPOCH] == [3, 6, 7]
  assert updates[-1].kind == tp.END and updates[-1].fraction == 1.0


def test_keras_callback_counts_epochs_for_an_epoch_trained_task():
  """As NCF: one fit per epoch, the length in epochs."""
  updates = []
  tp.subscribe(updates.append)
  try:
    callback = trainer.TrainingProgress(train_steps=None, train_epochs=3)
    model = _tiny_model(steps_per_execution=1)
    for epoch in range(3):
      model.fit(_tiny_data(), initial_epoch=epoch, epochs=epoch + 1, steps_per_epoch=4,
                callbacks=[callback], verbose=0)
  finally:
    tp.unsubscribe(updates.append)
  epochs = [u for u in updates if u.kind == tp.EPOCH]
  assert [(u.epoch, u.total_epochs, u.epoch_step, u.epoch_steps) for u in epochs] == [
      (1, 3, 4, 4), (2, 3, 4, 4), (3, 3, 4, 4)]
  assert [round(u.fraction, 3) for u in epochs] == [0.333, 0.667, 1.0]
  second = [u for u in updates if u.kind == tp.STEP and u.epoch == 2]
  assert [u.epoch_step for u in second] == [1, 2, 3, 4] and second[0].total_steps is None
  assert round(second[1].fraction, 3) == round((1 + 2 / 4) / 3, 3)


def test_a_failing_listener_does_not_stop_training():
  def broken(update):
    raise RuntimeError(f'display bug on {update.kind}')
  seen = []
  tp.subscribe(broken)
  tp.subscribe(seen.append)
  try:
    tp.note('still here')
  finally:
    tp.unsubscribe(broken)
    tp.unsubscribe(seen.append)
  assert [u.text for u in seen] == ['still here']


def _text(console):
  return ANSI.sub('', console.file.getvalue())


def test_live_display_renders_stages_trainer_steps_and_loss():
  console = Console(file=io.StringIO(), force_terminal=True, width=100)
  display = progress.LiveDisplay(NODES, console=console, refresh_per_second=20)
  with display:
    display.stage_finished('TextLineExampleGen', 'done', 12.34, cached=False)
    display.notices('TextLineExampleGen', ['train: 2 malformed row(s) left out'])
    display.stage_finished('StatisticsGen', 'cached', 0.1, cached=True)
    display.stage_running('Trainer')
    snapshot = Console(file=io.StringIO(), force_terminal=True, width=100)
    snapshot.print(display.render())
    assert 'reading its inputs, building the model' in _text(snapshot)
    tp.publish(tp.TrainingUpdate(tp.BEGIN, total_steps=2000, fraction=0.0))
    tp.publish(_step(600, 2000, loss=0.3412, rate=41.2, eta=34))
    snapshot = Console(file=io.StringIO(), force_terminal=True, width=100)
    snapshot.print(display.render())
    now = _text(snapshot)
    tp.publish(_step(2000, 2000, loss=0.3012, eta=0, kind=tp.END))
    tp.status('exporting the SavedModel')
    snapshot = Console(file=io.StringIO(), force_terminal=True, width=100)
    snapshot.print(display.render())
    assert 'exporting the SavedModel' in _text(snapshot)
    display.stage_finished('Trainer', 'done', 75.0, cached=False)
  rows = {line.split()[1]: line.split()[2:] for line in now.splitlines()
          if re.match(r'\s*\d+/4 ', line)}
  assert rows['TextLineExampleGen'] == ['done', '12.3', 's']
  assert rows['StatisticsGen'] == ['cached']
  assert rows['Trainer'][0] == 'running' and rows['Trainer'][-1] == 's'  # ticking, e.g. `0 s`
  assert rows['Evaluator'] == ['waiting']
  assert re.search(r'Trainer\s+step 600/2000 \S+ 30%', now)
  assert re.search(r'loss 0\.3412\s+41\.2 steps/s\s+ETA 3[34] s', now)
  final = _text(console)
  # The notice went above the table, the final table stayed on the screen.
  assert final.index('  train: 2 malformed row(s) left out') < final.rindex('TextLineExampleGen')
  last = final[final.rindex('Stage'):]
  assert re.search(r'3/4\s+Trainer\s+done\s+1 min 15 s', last)
  assert re.search(r'4/4\s+Evaluator\s+not run', last)
  assert re.search(r'step 2000/2000 \S+ 100%', last) and 'loss 0.3012' in last
  assert 'ETA' not in last and 'exporting' not in last  # the Trainer has ended


def test_live_display_marks_the_running_stage_stopped_when_the_run_fails():
  console = Console(file=io.StringIO(), force_terminal=True, width=100)
  with pytest.raises(KeyboardInterrupt):
    with progress.LiveDisplay(NODES, console=console) as display:
      display.stage_running('TextLineExampleGen')
      raise KeyboardInterrupt
  last = _text(console)[_text(console).rindex('Stage'):]
  assert re.search(r'1/4\s+TextLineExampleGen\s+stopped', last)
  assert re.search(r'2/4\s+StatisticsGen\s+not run', last)


def test_display_for_picks_plain_lines_off_a_terminal():
  stream = io.StringIO()
  assert isinstance(progress.display_for(stream, NODES), progress.PlainDisplay)
  assert progress.display_for(stream, NODES)._out is stream  # pylint: disable=protected-access
  assert type(progress.display_for(None, NODES)) is progress.PlainDisplay  # pytest's stdout


class _Terminal(io.StringIO):
  def isatty(self):
    return True


def test_display_for_picks_the_live_table_on_a_terminal_unless_library_logs_go_there(
    monkeypatch):
  monkeypatch.setattr('sys.stdout', _Terminal())
  monkeypatch.setattr(progress, 'library_output_on_terminal', lambda: False)
  assert isinstance(progress.display_for(None, NODES), progress.LiveDisplay)
  assert type(progress.display_for(io.StringIO(), NODES)) is progress.PlainDisplay
  monkeypatch.setattr(progress, 'library_output_on_terminal', lambda: True)  # --verbosity
  assert type(progress.display_for(None, NODES)) is progress.PlainDisplay


class _Recorder(progress.Display):
  def __init__(self):
    super().__init__(NODES)
    self.calls = []

  def stage_running(self, name):
    self.calls.append(('running', name))

  def stage_finished(self, name, state, seconds, cached):
    self.calls.append((state, name, cached))

  def notices(self, name, lines):
    self.calls.append(('notices', name, tuple(lines)))


def test_progress_monitor_reports_mlmd_transitions_to_its_display(tmp_path):
  path = str(tmp_path / 'metadata.sqlite')
  store = metadata.open_store(path, readonly=False)
  since = metadata.now_ms()
  context_type = store.put_context_type(metadata_store_pb2.ContextType(name='node'))
  execution_type = store.put_execution_type(metadata_store_pb2.ExecutionType(name='component'))

  def start(node):
    [context_id] = store.put_contexts([metadata_store_pb2.Context(
        type_id=context_type, name=f'census.{node}')])
    execution = metadata_store_pb2.Execution(
        type_id=execution_type, last_known_state=metadata_store_pb2.Execution.RUNNING)
    [execution_id] = store.put_executions([execution])
    store.put_attributions_and_associations(
        [], [metadata_store_pb2.Association(context_id=context_id, execution_id=execution_id)])
    return execution_id

  def finish(execution_id, state):
    [execution] = store.get_executions_by_id([execution_id])
    execution.last_known_state = state
    store.put_executions([execution])

  display = _Recorder()
  monitor = metadata.ProgressMonitor(path, 'census', NODES, since, interval=0.05,
                                     on_finished=lambda s, stage: [f'{stage.name} lines'],
                                     display=display)
  with monitor:
    example_gen = start('TextLineExampleGen')
    deadline = time.time() + 20
    while ('running', 'TextLineExampleGen') not in display.calls and time.time() < deadline:
      time.sleep(0.05)
    finish(example_gen, metadata_store_pb2.Execution.COMPLETE)
    finish(start('Trainer'), metadata_store_pb2.Execution.FAILED)
  # A poll between the Trainer's start and its failure sees it running: a true state, if brief.
  calls = [call for call in display.calls if call != ('running', 'Trainer')]
  assert calls == [('running', 'TextLineExampleGen'),
                           ('done', 'TextLineExampleGen', False),
                           ('notices', 'TextLineExampleGen', ('TextLineExampleGen lines',)),
                           ('FAILED', 'Trainer', False)]


def test_a_stuck_poll_does_not_hold_the_end_of_the_run(tmp_path, monkeypatch):
  """The poll thread blocked in ML Metadata (as behind a lock that an interrupted stage left held):
  leaving the monitor waits STOP_TIMEOUT_S, not forever, and still closes the display."""
  metadata.open_store(str(tmp_path / 'metadata.sqlite'), readonly=False)
  polled, release = threading.Event(), threading.Event()

  def stuck(*_):
    polled.set()
    release.wait(60)
    return []

  monkeypatch.setattr(metadata, 'stages_since', stuck)
  monkeypatch.setattr(metadata.ProgressMonitor, 'STOP_TIMEOUT_S', 0.5)
  closed = []
  display = _Recorder()
  display.__exit__ = lambda *exc: closed.append(exc)
  started = time.monotonic()
  try:
    with metadata.ProgressMonitor(str(tmp_path / 'metadata.sqlite'), 'census', NODES,
                                  metadata.now_ms(), interval=0.01, display=display):
      assert polled.wait(20)
    assert time.monotonic() - started < 15
    assert closed == [(None, None, None)] and display.calls == []
  finally:
    release.set()


@pytest.mark.e2e
def test_census_run_prints_trainer_progress_lines_when_stdout_is_not_a_terminal(data_root,
                                                                                   tmp_path):
  result = helpers.run_cli('run', 'census', f'--data_root={data_root}',
                           f'--output_dir={tmp_path / "out"}', '--train_steps=300',
                           '--train_count=3000', '--eval_count=1000', timeout=900)
  assert result.returncode == 0, result.stderr
  lines = result.stdout.splitlines()
  trainer = [line for line in lines if line.startswith('        Trainer: step')]
  assert trainer, result.stdout
  percents = [int(re.search(r'\((\d+)%\)', line).group(1)) for line in trainer]
  assert percents == sorted(set(percents)) and percents[-1] == 100
  assert len({p // 25 for p in percents}) == len(percents)
  # The whole output off a terminal: the project's lines only, at most 40 of them.
  assert len(lines) <= 40, result.stdout
  assert not any(word in result.stdout for word in ('tensorflow', 'WARNING', 'I0000', 'absl'))
  assert 'Traceback' not in result.stdout + result.stderr
  assert re.fullmatch(r'        Trainer: step 300/300 \(100%\), loss \d+\.\d{4}, [\d.]+ steps/s',
                      trainer[-1])
  assert re.search(r'loss \d+\.\d{4}, [\d.]+ steps/s, ETA \d+ s', '\n'.join(trainer[1:-1]))
  running = next(i for i, line in enumerate(lines) if re.match(r'\[ ?\d+/\d+\] Trainer running',
                                                                line))
  done = next(i for i, line in enumerate(lines) if re.match(r'\[ ?\d+/\d+\] Trainer done in',
                                                             line))
  assert running < lines.index(trainer[0]) and lines.index(trainer[-1]) < done
  assert '\x1b[' not in result.stdout  # no live display off a terminal

  # `--config` of this run's summary replays its settings: the same resolved config, so the same
  # cache keys, and the whole pipeline through the Trainer comes from the cache.
  summary_path = tmp_path / 'out' / 'run_summary.json'
  first = json.loads(summary_path.read_text())
  replay = helpers.run_cli('run', 'census', f'--data_root={data_root}',
                           f'--output_dir={tmp_path / "out"}', f'--config={summary_path}',
                           timeout=900)
  assert replay.returncode == 0, replay.stderr
  assert re.search(r'^  config: \d+ settings from ', replay.stdout, re.M), replay.stdout
  second = json.loads(summary_path.read_text())
  without_flags = lambda config: {k: v for k, v in config.items() if k != 'command_line'}
  assert without_flags(second['config']) == without_flags(first['config'])
  cached = {stage['name']: stage['cached'] for stage in second['stages']}
  assert all(cached[name] for name in ('TextLineExampleGen', 'Transform', 'Trainer')), cached
  assert second['metrics']['accuracy'] == pytest.approx(first['metrics']['accuracy'], abs=1e-9)


def test_higgs_trees_report_their_start_and_end(tmp_path):
  """TF-DF grows the trees in one C++ call: its task notes the start and the end."""
  from model_fns import higgs as higgs_task  # pylint: disable=import-outside-toplevel
  from preprocessing import higgs  # pylint: disable=import-outside-toplevel
  rng = np.random.default_rng(0)
  path = str(tmp_path / 'train.gz')
  with tf.io.TFRecordWriter(path, options='GZIP') as writer:
    for _ in range(300):
      values = rng.normal(size=len(higgs.FEATURES))
      features = {name: tf.train.Feature(float_list=tf.train.FloatList(value=[v]))
                  for name, v in zip(higgs.FEATURES, values)}
      features[higgs.LABEL_KEY] = tf.train.Feature(
          int64_list=tf.train.Int64List(value=[int(values[0] > 0)]))
      writer.write(tf.train.Example(features=tf.train.Features(feature=features))
                   .SerializeToString())
  spec = {name: tf.io.FixedLenFeature([1], tf.float32) for name in higgs.FEATURES}
  spec[higgs.LABEL_KEY] = tf.io.FixedLenFeature([1], tf.int64)
  task = higgs_task.HiggsTask.create(hparams={'num_trees': 3})
  model = task.build_model(trainer.ModelInputs(spec, spec))
  task.compile(model, 1)
  data = trainer.TrainingData([path], spec, higgs.LABEL_KEY,
                              trainer.TrainerConfig(task='', model_type='', batch_size=64))
  updates = []
  tp.subscribe(updates.append)
  try:
    task.train(model, data, [trainer.TrainingProgress()])
  finally:
    tp.unsubscribe(updates.append)
  notes = [u.text for u in updates if u.kind == tp.NOTE]
  assert notes[0] == 'TF-DF: reading the split, then up to 3 trees (no progress until done)'
  assert re.fullmatch(r'TF-DF: [1-3] trees on 300 examples in \d+\.\d s', notes[1])
  assert updates[0].kind == tp.NOTE and updates[-1].kind == tp.NOTE
  assert {u.kind for u in updates} >= {tp.BEGIN, tp.EPOCH}
  assert all(u.fraction is None for u in updates)  # no length known: no percentage
