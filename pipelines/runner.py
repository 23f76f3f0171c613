"""Runs a spec's pipeline on the embedded default (LocalDagRunner, SQLite MLMD, Beam DirectRunner)
and writes `run_summary.json`.

The summary has the same keys for every model: `model`, `model_type`, `stages` (a list of
`{name, seconds, cached, state}` in execution order), `metrics` (the spec's summary metrics of the
overall slice, at least `accuracy` and `auc` for classifiers; null where undefined on the eval
data), `undefined_metrics` (TFMA names of the overall slice's undefined metrics), `slices` (TFMA
metrics per slice), `blessed`, `infra_blessing` (components.serving_check's verdict: `blessed`,
`reason`, load time, batch-1 latency, throughput), `pushed_model` (the pushed SavedModel directory
or null), `data`
(per split: the raw `file`, the `first_row` and `num_rows` asked for, null meaning to the end, and
the `examples` written), `malformed` (per split with input left out or adjusted: `count`,
`fraction`, the `first` few as `{file, line | record, reason}`, and `notices`), `wall_seconds` and
`error` (null, `interrupted`, or the message of the failure that stopped the run); an interrupted
run adds `interrupted` (`signal`, `stage`, the unfinished artifact folders `removed`), a partial
run `partial_run` (`from_stage`, `to_stage`). `config` holds the run's settings with the model's
defaults filled in (steps, batch size, hyperparameters, seeds, the Trainer's configuration) and
`versions` the installed versions of this project, TFX, TensorFlow, Beam, TFT, TFMA and TFDV;
`run_id` is TFX's pipeline run id and `metadata` the ML Metadata store the run wrote
(`sqlite:PATH` or `mysql://user@host:port/database`, never a password). Each run's summary is also
kept as `runs/<run id>/run_summary.json`, and `report.html` (pipelines.report) is written beside it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import faulthandler
import fcntl
import json
import os
import re
import signal
import sys
import tempfile
import threading
import time
from typing import Any, Dict, Iterator, List, Mapping, Optional

from absl import logging
from tfx import v1 as tfx
from tfx.orchestration import pipeline as pipeline_lib

from pipelines import console, fingerprint, history, metadata, metadata_store, report
from pipelines import progress as progress_lib
from pipelines.factory import (RunConfig, RunInputs, create_pipeline, resolve_config,
                               trainer_config)
from pipelines.spec import ModelSpec

SUMMARY_FILE = 'run_summary.json'
LOCK_FILE = '.official-tfx.lock'
INTERRUPTED = 'interrupted'
# The stage names `--from_stage` / `--to_stage` take: the node ids, with `ExampleGen` standing for
# whichever ExampleGen the model reads its raw format with.
EXAMPLE_GEN = 'ExampleGen'


class RunInterrupted(KeyboardInterrupt):
  """The run received SIGINT or SIGTERM. `signal_name` is `SIGINT` or `SIGTERM`; `exit_status`
  the shell's convention, 128 + the signal number (130, 143)."""

  def __init__(self, signum: int):
    super().__init__(signal.Signals(signum).name)
    self.signum = signum
    self.signal_name = signal.Signals(signum).name
    self.exit_status = 128 + signum


class OutputDirBusy(RuntimeError):
  """Another run holds the output directory's run lock."""


@contextlib.contextmanager
def run_lock(output_dir: str) -> Iterator[None]:
  """Holds `<output_dir>/.official-tfx.lock` (an exclusive flock) for the duration of a run, so
  that one run at a time writes an output directory: two runs into one directory would both
  execute every stage into one ML Metadata store and mix their summaries. The lock file records
  the holder's pid and start time; the lock itself dies with the process (kill -9 included).

  Raises:
    OutputDirBusy: another process holds the lock (the message names its pid and start).
  """
  path = os.path.join(output_dir, LOCK_FILE)
  with open(path, 'a+') as f:
    try:
      fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
      if e.errno not in (errno.EAGAIN, errno.EACCES):
        raise
      f.seek(0)
      holder = f.read().strip() or 'another process'
      raise OutputDirBusy(f'{output_dir} is in use by another run ({holder}); wait for it to '
                          'end or choose another --output_dir') from None
    f.seek(0)
    f.truncate()
    f.write(f'pid {os.getpid()}, started {time.strftime("%Y-%m-%d %H:%M:%S")}\n')
    f.flush()
    try:
      yield
    finally:
      f.truncate(0)
      fcntl.flock(f, fcntl.LOCK_UN)


@contextlib.contextmanager
def interrupts_raise(force_exit_after_s: Optional[float] = None) -> Iterator[None]:
  """Within the block, SIGINT and SIGTERM raise RunInterrupted in the main thread (a no-op
  elsewhere, where Python cannot install handlers); the previous handlers come back after.

  Python runs a signal handler at whatever bytecode the main thread is at, also inside a weakref
  callback or a `__del__`, where an exception is printed as "Exception ignored in" and dropped
  (seen: a Keras training run went on to the end after Ctrl-C). Such a dropped RunInterrupted
  reaches `sys.unraisablehook`, which here re-arms the handler and delivers the signal again a
  moment later, from wherever the main thread then is. One raised inside a C++ extension's
  callback can come out as another exception (pybind11 turns it into a RuntimeError when it lands
  while TensorFlow traces a function): any exception leaving the block after a signal leaves it as
  RunInterrupted, the other as its `__cause__`.

  Args:
    force_exit_after_s: for a process that is this run alone (the CLI): once a signal arrived,
      the process ends within this many seconds even if the clean-up or the interpreter's exit
      hangs (`force_exit_later`). None: never forced.
  """
  if threading.current_thread() is not threading.main_thread():
    yield
    return
  done = threading.Event()
  received: List[int] = []

  def handler(signum, frame):
    del frame
    for sig in (signal.SIGINT, signal.SIGTERM):  # a second signal must not break the clean-up
      signal.signal(sig, signal.SIG_IGN)
    if force_exit_after_s is not None and not received:  # armed once, by the first signal
      force_exit_later(signum, force_exit_after_s)
    received.append(signum)
    raise RunInterrupted(signum)

  def redeliver(signum: int) -> None:
    if not done.is_set():
      signal.pthread_kill(threading.main_thread().ident, signum)

  def unraisable(info) -> None:
    if isinstance(info.exc_value, RunInterrupted) and not done.is_set():
      logging.warning('%s was raised where Python drops exceptions (%s); delivering it again',
                      info.exc_value.signal_name, info.object)
      for sig in previous:
        signal.signal(sig, handler)
      threading.Timer(0.1, redeliver, (info.exc_value.signum,)).start()
      return
    previous_hook(info)

  previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
  previous_hook, sys.unraisablehook = sys.unraisablehook, unraisable
  try:
    yield
  except Exception as e:
    if received:  # the signal's exception, replaced on its way out: still the signal
      raise RunInterrupted(received[0]) from e
    raise
  finally:
    done.set()
    sys.unraisablehook = previous_hook
    for sig, old in previous.items():
      signal.signal(sig, old)


def force_exit_later(signum: int, seconds: float) -> threading.Timer:
  """Ends this process `seconds` from now, unless it has ended by then: for the clean-up after
  a signal, which must not hang the user's terminal (a lock left held where the signal landed,
  a thread that never finishes, a library's exit hook). First every thread's stack goes to
  `sys.stderr` (the run's log under the CLI), then one line to the terminal (`console.err()`),
  then `os._exit(128 + signum)`, with no further clean-up: the next run in the output directory
  marks what this one left unfinished canceled (`metadata.close_unfinished`).

  Returns the started daemon timer (`cancel()` disarms it).
  """
  def force() -> None:
    name = signal.Signals(signum).name
    with contextlib.suppress(Exception):
      sys.stderr.write(f'\nofficial-tfx: the process did not end within {seconds:g} s of {name}; '
                       'the stacks of its threads:\n')
      sys.stderr.flush()
      faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
    with contextlib.suppress(Exception):
      print(f'official-tfx: stopping after {name} took more than {seconds:g} s; exiting now (the '
            'threads\' stacks are in the log). The next run in this output directory marks what '
            'this one left unfinished canceled.', file=console.err(), flush=True)
    os._exit(128 + signum)  # pylint: disable=protected-access

  timer = threading.Timer(seconds, force)
  timer.daemon = True
  timer.start()
  return timer


def stage_names(spec: ModelSpec) -> List[str]:
  """The stages `--from_stage` / `--to_stage` accept for `spec`, in pipeline order."""
  return [EXAMPLE_GEN, 'StatisticsGen', 'ImportSchemaGen', 'ExampleValidator', 'AnomaliesGate',
          *(['Transform'] if spec.preprocessing_fn else []), 'Trainer', 'Evaluator', 'ServingCheck',
          'Pusher']


def check_stage(spec: ModelSpec, name: Optional[str], flag: str) -> Optional[str]:
  """`name` as one of `stage_names(spec)` (case-insensitive); None for None.

  Raises:
    ValueError: not a stage of the model's pipeline (the message lists them).
  """
  if name is None:
    return None
  known = {n.lower(): n for n in stage_names(spec)}
  if name.lower() not in known:
    raise ValueError(f'--{flag}={name}: not a stage of {spec.name}; expected one of '
                     f'{", ".join(stage_names(spec))}')
  return known[name.lower()]


def partial_run_options(pipeline: tfx.dsl.Pipeline, from_stage: Optional[str],
                        to_stage: Optional[str]) -> Optional[pipeline_lib.RunOptions]:
  """TFX's partial run (`RunOptions`) from `from_stage` through `to_stage` (stage names of
  `stage_names`); None when neither is given. The stages outside the range are not run; the ones
  inside take their other inputs from the last run's artifacts (TFX's snapshot of the previous
  pipeline run)."""
  if not (from_stage or to_stage):
    return None
  ids = [c.id for c in pipeline.components]

  def node_id(stage):
    if stage != EXAMPLE_GEN:
      return stage
    return next(i for i in ids if i.endswith(EXAMPLE_GEN) and i != 'ImportSchemaGen')

  return pipeline_lib.RunOptions(
      from_nodes=[node_id(from_stage)] if from_stage else None,
      to_nodes=[node_id(to_stage)] if to_stage else None)


_BEAM_STAGE = re.compile(r"\s*\[while running '[^']*'\]")


def error_message(error: BaseException) -> str:
  """`Type: message` of a run's error, without the `[while running 'Stage/Name']` suffixes Beam
  appends (they name Beam transforms, which mean nothing to a user; the message itself names the
  file, row or field)."""
  return f'{type(error).__name__}: {_BEAM_STAGE.sub("", str(error)).strip()}'


def write_json_atomically(path: str, value: Any) -> None:
  """Writes JSON to a temporary file beside `path`, then renames it (never half-written)."""
  fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix='.' + os.path.basename(path))
  with os.fdopen(fd, 'w') as f:
    json.dump(value, f, indent=2, sort_keys=False)
    f.write('\n')
  os.replace(tmp, path)


def _reported_inputs(store, stage) -> List[str]:
  """ProgressMonitor's `on_finished`: the rows an ExampleGen left out, and its notices."""
  lines = []
  for split, entry in metadata.malformed_summary(
      metadata.split_reports(store, stage.execution_id)).items():
    lines.extend(metadata.describe_malformed(split, entry))
  return lines


def run(spec: ModelSpec, config: RunConfig, inputs: 'RunInputs | Mapping[str, str]',
        progress: Optional[Any] = None, from_stage: Optional[str] = None,
        to_stage: Optional[str] = None,
        force_exit_after_s: Optional[float] = None) -> Dict[str, Any]:
  """Runs the pipeline of `spec` to the end and returns the run summary (also in run_summary.json).

  The run's ML Metadata is `config.metadata_connection_config`: SQLite in the output directory, or
  a MySQL database, which is connected to before anything is written (created when missing),
  must belong to this output directory or to none, and is recorded there
  (pipelines.metadata_store.claim) for `report`, `runs` and later runs.

  One run at a time per output directory (`run_lock`). Before it starts, executions that a killed
  run left unfinished in ML Metadata are marked CANCELED and the artifact folders they began are
  removed (`metadata.close_unfinished`). SIGINT and SIGTERM stop the run cleanly: its unfinished
  execution is marked CANCELED, the summary is written with `error` `interrupted`, and
  RunInterrupted is raised; the same command then resumes, the finished stages coming from the
  cache.

  Args:
    spec: the model.
    config: the run's settings (output_dir receives everything), resolved or not
      (`factory.resolve_config`, idempotent, is applied).
    inputs: what the run reads (`factory.RunInputs`), or just {split: raw data file}, resolved
      and verified (preprocessing.datasets). Inputs without `input_digests` get them here
      (`fingerprint.input_digests`, kept in the download cache's digest cache).
    progress: stream for the per-component progress lines (default stdout); False silences them.
    from_stage, to_stage: a partial run (TFX's RunOptions) over these stages (`stage_names`),
      the others' outputs taken from the last run; None: from the first, to the last.
    force_exit_after_s: for a process that is this run alone (the CLI): after SIGINT or SIGTERM
      the process ends within this many seconds, also if the clean-up hangs
      (`force_exit_later`). None: never forced (a library caller's process is its own).

  Raises:
    OutputDirBusy: another run is writing `config.output_dir`.
    metadata_store.MetadataConnectionError: the MySQL server cannot be reached, refuses the login,
      cannot create the database, or the database holds another output directory's runs (before
      anything is written).
    RunInterrupted: SIGINT or SIGTERM, after the summary has been written.
    Whatever stopped the run (a component's error: malformed rows, anomalies, ...), after the
    summary with its `error` has been written.
  """
  config = resolve_config(spec, config)
  inputs = RunInputs.of(inputs)
  if not inputs.input_digests:  # bare files: their content digests, read here (not in the factory)
    inputs = dataclasses.replace(inputs, input_digests=fingerprint.input_digests(
        inputs.split_files, dataset=spec.dataset))
  trainer = trainer_config(spec, config)
  model_type = trainer.model_type
  from_stage = check_stage(spec, from_stage, 'from_stage')
  to_stage = check_stage(spec, to_stage, 'to_stage')
  pipeline = create_pipeline(spec, config, inputs)
  run_options = partial_run_options(pipeline, from_stage, to_stage)
  if config.metadata_connection is not None:
    metadata_store.hide_passwords_in_logs()  # TFX logs its connection config
    metadata_store.check(config.metadata_connection, config.output_dir)
  os.makedirs(config.output_dir, exist_ok=True)
  say = (lambda line: None) if progress is False else (
      lambda line: print(line, file=progress, flush=True) if progress else print(line, flush=True))
  with run_lock(config.output_dir):
    if config.metadata_connection is not None:
      metadata_store.claim(config.metadata_connection, config.output_dir)
    abandoned = metadata.close_unfinished(
        config.metadata_connection_config, spec.name, config.pipeline_root,
        note='abandoned: the run that started it ended without finishing it')
    for stage in abandoned:
      say(f'  note: {stage.name} (execution {stage.execution_id}) was left running by an earlier '
          f'run that was killed: marked canceled, {len(stage.removed)} unfinished artifact '
          f'folder(s) removed')
    summary, error = _run_and_summarize(spec, config, inputs, pipeline, run_options,
                                        progress, model_type, settings(spec, config, trainer),
                                        force_exit_after_s)
  if error is not None:
    raise error
  return summary


def settings(spec: ModelSpec, config: RunConfig, trainer: Any) -> Dict[str, Any]:
  """The run summary's `config`, as JSON values: `config`, already resolved by
  `factory.resolve_config` (model type, train steps, batch size, hyperparameters), and the
  Trainer's whole configuration (strategy, seed, ...)."""
  del spec  # the resolved config holds what the spec defaulted
  resolved = dataclasses.asdict(dataclasses.replace(config, metadata_connection=None))
  resolved['metadata_connection'] = (None if config.metadata_connection is None
                                     else metadata_store.describe(config.metadata_connection))
  resolved['trainer'] = trainer.to_custom_config()
  return json.loads(json.dumps(resolved, default=str))


def versions() -> Dict[str, Optional[str]]:
  """The installed versions of this project and of the stack a run's results depend on."""
  from importlib import metadata as importlib_metadata  # pylint: disable=import-outside-toplevel
  found = {}
  for package in ('official-tfx', 'tfx', 'tensorflow', 'tf-keras', 'apache-beam',
                  'tensorflow-transform', 'tensorflow-model-analysis',
                  'tensorflow-data-validation', 'ml-metadata'):
    try:
      found[package] = importlib_metadata.version(package)
    except importlib_metadata.PackageNotFoundError:
      found[package] = None
  return found


def _run_and_summarize(spec, config, inputs, pipeline, run_options, progress, model_type,
                       resolved_config, force_exit_after_s):
  """`run`'s body under the run lock: returns (summary, the error that stopped the run or None)."""
  node_ids = [c.id for c in pipeline.components]
  started, since_ms = time.time(), metadata.now_ms()
  error: Optional[BaseException] = None
  interrupted: Optional[Dict[str, Any]] = None
  try:
    with interrupts_raise(force_exit_after_s):
      if progress is False:
        tfx.orchestration.LocalDagRunner().run(pipeline, run_options=run_options)
      else:
        # A stream: plain lines to it; None: a live table on a terminal, else plain lines.
        display = progress_lib.display_for(progress or None, node_ids)
        with metadata.ProgressMonitor(config.metadata_connection_config, spec.name, node_ids,
                                      since_ms,
                                      on_finished=_reported_inputs, display=display):
          tfx.orchestration.LocalDagRunner().run(pipeline, run_options=run_options)
  except RunInterrupted as e:
    error = e
    closed = metadata.close_unfinished(config.metadata_connection_config, spec.name,
                                       config.pipeline_root,
                                       note=f'interrupted ({e.signal_name})', since_ms=since_ms)
    interrupted = {'signal': e.signal_name,
                   'stage': closed[-1].name if closed else None,
                   'removed': [folder for stage in closed for folder in stage.removed]}
  except Exception as e:  # pylint: disable=broad-except
    error = e
  wall = time.time() - started
  summary = {'model': spec.name, 'model_type': model_type,
             'stages': [], 'metrics': {}, 'undefined_metrics': [], 'slices': {},
             'blessed': False, 'infra_blessing': None, 'pushed_model': None, 'examples': {},
             'malformed': {}}
  connection = config.metadata_connection_config
  run_id = None
  try:
    if metadata_store.exists(connection):
      summary.update(metadata.summarize(metadata.open_store(connection), spec.name,
                                        since_ms, dict(spec.evaluation.summary_metrics)))
    run_id = history.run_id_since(config.output_dir, spec.name, since_ms, connection)
  except metadata_store.MetadataConnectionError as e:  # the server went away during the run
    logging.error('The run summary could not read ML Metadata: %s', e)
    error = error or e
  examples = summary.pop('examples', {})
  data = {}
  for split, path in inputs.split_files.items():
    first_row, num_rows = inputs.row_ranges.get(split, (0, None))
    data[split] = {'file': path, 'sha256': inputs.input_digests.get(split),
                   'first_row': first_row, 'num_rows': num_rows, 'examples': examples.get(split)}
  summary.update({'data': data, 'wall_seconds': round(wall, 2), 'config': resolved_config,
                  'inputs': inputs.to_json(), 'versions': versions()})
  if run_options is not None:
    summary['partial_run'] = {'from_stage': list(run_options.from_nodes or []),
                              'to_stage': list(run_options.to_nodes or [])}
  if interrupted is not None:
    if interrupted['stage'] is None:
      # The signal came out of the component as another error (see interrupts_raise), which
      # TFX's launcher recorded as the execution's failure.
      interrupted['stage'] = next((s['name'] for s in reversed(summary['stages'])
                                   if s['state'] == 'FAILED'), None)
    summary.update({'error': INTERRUPTED, 'interrupted': interrupted})
  else:
    summary['error'] = None if error is None else error_message(error)
  summary['run_id'] = run_id
  summary['metadata'] = metadata_store.describe(connection)
  write_json_atomically(os.path.join(config.output_dir, SUMMARY_FILE), summary)
  if run_id:  # every run's summary is kept; the one at the top is the latest
    kept = history.summary_path(config.output_dir, run_id)
    os.makedirs(os.path.dirname(kept), exist_ok=True)
    write_json_atomically(kept, summary)
  try:  # the report (and the pushed model's card) of this run, failed or not
    report.write_report(config.output_dir, model=spec.name, connection=connection)
  except Exception:  # pylint: disable=broad-except
    logging.exception('The run report was not written')  # a report never fails a run
  return summary, error
