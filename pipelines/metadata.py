"""Reading a run back from ML Metadata: live progress while it runs, and the run summary after.

Stage times, cache hits, metrics, blessing and pushed model all come from the MLMD store the run
wrote, so the summary is the same whether the run trained or was served from the cache. The store
is the run's SQLite file or a database server (pipelines.metadata_store): every function here takes
either a SQLite path or an `ml_metadata.proto.ConnectionConfig`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import threading
import time
from typing import Any, Callable, Dict, List, Optional, TextIO

from absl import logging
import ml_metadata as mlmd
import tensorflow_model_analysis as tfma
from ml_metadata.proto import metadata_store_pb2

from components import serving_check

from pipelines import metadata_store
from pipelines import progress as progress_lib

_UNFINISHED = (metadata_store_pb2.Execution.NEW, metadata_store_pb2.Execution.RUNNING)
# An execution property this project sets on an execution it closes: why it was closed.
CLOSED_NOTE = 'official_tfx_closed'
_REPORT_PREFIX = 'malformed_rows-'  # components.record_checks writes one per split
MAX_LISTED = 5  # bad rows of a split listed in the summary and on the console

_TERMINAL = {metadata_store_pb2.Execution.COMPLETE: 'done',
             metadata_store_pb2.Execution.CACHED: 'cached',
             metadata_store_pb2.Execution.FAILED: 'FAILED',
             metadata_store_pb2.Execution.CANCELED: 'canceled'}


def open_store(where: metadata_store.Where, readonly: bool = True) -> mlmd.MetadataStore:
  """An MLMD store over `where`: the SQLite file at a path (created when missing, unless
  `readonly`) or a ConnectionConfig (a MySQL database: see pipelines.metadata_store.connect).

  Raises:
    metadata_store.MetadataConnectionError: the store cannot be opened (one line).
  """
  return metadata_store.connect(where, readonly)


@dataclasses.dataclass
class Stage:
  """One component execution of a run: its node id, seconds, cache hit and MLMD ids, and its
  start and last update in ms since the epoch (MLMD's create and last-update times)."""
  name: str
  seconds: float
  cached: bool
  state: str
  execution_id: int
  started_ms: int = 0
  ended_ms: int = 0


def stages_since(store: mlmd.MetadataStore, pipeline_name: str, since_ms: int) -> List[Stage]:
  """The executions of `pipeline_name` created at or after `since_ms` (ms since epoch), in order."""
  stages = []
  executions = [e for e in store.get_executions() if e.create_time_since_epoch >= since_ms]
  for execution in sorted(executions, key=lambda e: (e.create_time_since_epoch, e.id)):
    node = next((c.name for c in store.get_contexts_by_execution(execution.id)
                 if c.name.startswith(pipeline_name + '.')), None)
    if node is None:
      continue
    state = metadata_store_pb2.Execution.State.Name(execution.last_known_state)
    seconds = (execution.last_update_time_since_epoch - execution.create_time_since_epoch) / 1000
    stages.append(Stage(name=node[len(pipeline_name) + 1:], seconds=round(seconds, 3),
                        cached=execution.last_known_state == metadata_store_pb2.Execution.CACHED,
                        state=state, execution_id=execution.id,
                        started_ms=execution.create_time_since_epoch,
                        ended_ms=execution.last_update_time_since_epoch))
  return stages


def output_artifacts(store: mlmd.MetadataStore, execution_id: int) -> List[Any]:
  """The artifacts an execution output (for a cached execution: the reused ones)."""
  events = store.get_events_by_execution_ids([execution_id])
  ids = [e.artifact_id for e in events if e.type in (metadata_store_pb2.Event.OUTPUT,
                                                     metadata_store_pb2.Event.DECLARED_OUTPUT)]
  return store.get_artifacts_by_id(ids) if ids else []


@dataclasses.dataclass
class ClosedStage:
  """An execution this project closed (see `close_unfinished`): its stage, MLMD id and the
  artifact folders it had begun that no artifact references, now removed."""
  name: str
  execution_id: int
  removed: List[str]


def _node_name(store: mlmd.MetadataStore, execution_id: int, pipeline_name: str) -> Optional[str]:
  """The node id (e.g. `Trainer`) of an execution of `pipeline_name`; None for another pipeline's."""
  for context in store.get_contexts_by_execution(execution_id):
    if context.name.startswith(pipeline_name + '.'):
      return context.name[len(pipeline_name) + 1:]
  return None


def _unreferenced_folders(store: mlmd.MetadataStore, pipeline_root: str, node: str,
                          execution_id: int) -> List[str]:
  """The folders TFX's launcher made under `pipeline_root/node` for one execution (its outputs,
  `<output key>/<execution id>`, and its scratch `.system/executor_execution/<execution id>`)
  that no artifact in the store points into."""
  node_dir = os.path.join(pipeline_root, node)
  if not os.path.isdir(node_dir):
    return []
  candidates = [os.path.join(node_dir, key, str(execution_id)) for key in os.listdir(node_dir)
                if not key.startswith('.')]
  candidates.append(os.path.join(node_dir, '.system', 'executor_execution', str(execution_id)))
  referenced = [a.uri.rstrip('/') for a in store.get_artifacts() if a.uri]
  return [folder for folder in candidates if os.path.isdir(folder) and not any(
      uri == folder or uri.startswith(folder + os.sep) for uri in referenced)]


def close_unfinished(metadata_path: metadata_store.Where, pipeline_name: str, pipeline_root: str,
                     note: str, since_ms: Optional[int] = None) -> List[ClosedStage]:
  """Marks the executions of `pipeline_name` still NEW or RUNNING as CANCELED, TFX's state for an
  execution that will not finish, and removes the artifact folders they had begun.

  Called when a run is interrupted (`since_ms`: the run's start, so only its own executions) and
  before a run starts (`since_ms` None: every unfinished execution, left by a run that was killed;
  the caller holds the output directory's run lock, so no live run owns one). Folders are removed
  only on a local `pipeline_root`, and only those no artifact references.

  Args:
    metadata_path: the run's ML Metadata: its SQLite file (nothing happens when it does not
      exist) or a ConnectionConfig.
    pipeline_name: the pipeline whose executions to close.
    pipeline_root: where the components write their artifacts.
    note: why they were closed, stored as the execution's custom property `official_tfx_closed`.
    since_ms: only executions created at or after this time (ms since the epoch).

  Returns:
    The closed executions, in creation order.
  """
  if not metadata_store.exists(metadata_path):
    return []
  store = open_store(metadata_path, readonly=False)
  unfinished = [e for e in store.get_executions()
                if e.last_known_state in _UNFINISHED
                and (since_ms is None or e.create_time_since_epoch >= since_ms)]
  closed = []
  for execution in sorted(unfinished, key=lambda e: (e.create_time_since_epoch, e.id)):
    node = _node_name(store, execution.id, pipeline_name)
    if node is None:
      continue
    execution.last_known_state = metadata_store_pb2.Execution.CANCELED
    execution.custom_properties[CLOSED_NOTE].string_value = note
    store.put_executions([execution])
    removed = []
    if '://' not in pipeline_root:
      for folder in _unreferenced_folders(store, pipeline_root, node, execution.id):
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(folder)
    closed.append(ClosedStage(node, execution.id, removed))
  return closed


def split_reports(store: mlmd.MetadataStore, execution_id: int) -> Dict[str, Dict[str, Any]]:
  """{split: the `malformed_rows-<split>.json` report} of the Examples an ExampleGen execution
  output (components.record_checks.check_malformed writes them); {} for another execution."""
  reports = {}
  for artifact in output_artifacts(store, execution_id):
    if not artifact.uri or not os.path.isdir(artifact.uri):
      continue
    for name in sorted(os.listdir(artifact.uri)):
      if name.startswith(_REPORT_PREFIX) and name.endswith('.json'):
        with open(os.path.join(artifact.uri, name)) as f:
          report = json.load(f)
        reports[report.get('split') or name[len(_REPORT_PREFIX):-len('.json')]] = report
  return reports


def malformed_summary(reports: Dict[str, Dict[str, Any]]) -> Dict[str, Dict[str, Any]]:
  """The run summary's `malformed`: {split: {count, fraction, first: [{file, line | record,
  reason}, ...] (at most MAX_LISTED)}} for each split with rows (or records, files) left out, and
  `notices` per split for what was done to the input without leaving anything out (a byte-order
  mark stripped, a header line skipped)."""
  result = {}
  for split, report in reports.items():
    count = int(report.get('malformed_rows') or 0)
    notices = list(report.get('notices') or [])
    if not count and not notices:
      continue
    entry: Dict[str, Any] = {'count': count,
                             'fraction': round(float(report.get('malformed_fraction') or 0), 6)}
    entry['first'] = [{k: v for k, v in bad.items() if k != 'text'}
                      for bad in (report.get('first_malformed') or [])[:MAX_LISTED]]
    if notices:
      entry['notices'] = notices
    result[split] = entry
  return result


def describe_malformed(split: str, entry: Dict[str, Any]) -> List[str]:
  """Console lines for one split of `malformed_summary`: how many were left out and the first
  ones as `file:line: reason`, then the notices."""
  lines = []
  if entry['count']:
    lines.append(f'{split}: {entry["count"]:,} malformed row(s) left out '
                 f'({100 * entry["fraction"]:.3f}% of the split):')
    for bad in entry['first']:
      where = bad.get('line', bad.get('record'))
      position = f':{where}' if 'line' in bad else (f' record {where}' if where is not None
                                                     else '')
      lines.append(f'  {bad.get("file")}{position}: {bad.get("reason")}')
    if entry['count'] > len(entry['first']):
      lines.append(f'  ... and {entry["count"] - len(entry["first"]):,} more (run_summary.json, '
                   'the log)')
  lines.extend(f'{split}: {notice}' for notice in entry.get('notices', []))
  return lines


class ProgressMonitor:
  """Reports the stages of a run as they start and finish, to a `pipelines.progress.Display`:
  by default plain lines, `[i/N] <component> running` and `... done in S s | cached | FAILED`.

  Polls the MLMD store (read-only) from a background thread; use as a context manager around the
  runner's `run` (it opens the display too, which then also shows the Trainer's training
  progress). `on_finished(store, stage)`, if given, returns lines about a stage that has finished
  (done or cached), e.g. the rows its ExampleGen left out; the display shows them.

  Args:
    metadata_path: the run's ML Metadata (a SQLite path or a ConnectionConfig).
    out: the stream of the default plain display (None: `sys.stdout`); ignored with `display`.
    display: where to report (see `pipelines.progress.display_for`).
  """

  # A poll takes milliseconds; one still going after this long is stuck (the store locked by what
  # a signal interrupted), and the run's end does not wait for it.
  STOP_TIMEOUT_S = 10.0

  def __init__(self, metadata_path: metadata_store.Where, pipeline_name: str, node_ids: List[str],
               since_ms: int, out: Optional[TextIO] = None, interval: float = 0.5,
               on_finished: Optional[Callable[[mlmd.MetadataStore, Stage], List[str]]] = None,
               display: Optional[progress_lib.Display] = None):
    self._path, self._pipeline, self._nodes = metadata_path, pipeline_name, node_ids
    self._since, self._interval = since_ms, interval
    self._on_finished = on_finished
    self.display = display or progress_lib.PlainDisplay(node_ids, out)
    self._stop = threading.Event()
    self._thread = threading.Thread(target=self._loop, daemon=True)
    self._reported: Dict[int, str] = {}
    self._store = None

  def __enter__(self):
    self.display.__enter__()
    self._thread.start()
    return self

  def __exit__(self, *exc):
    self._stop.set()
    self._thread.join(timeout=self.STOP_TIMEOUT_S)
    try:
      if self._thread.is_alive():
        logging.warning('The progress display\'s poll of ML Metadata did not finish; left behind')
      else:
        self._poll()  # the last transitions
    finally:
      self.display.__exit__(*exc)

  def _loop(self):
    while not self._stop.wait(self._interval):
      self._poll()

  def _poll(self):
    try:
      if self._store is None:
        if not metadata_store.exists(self._path):
          return  # the runner has not created the store yet
        self._store = open_store(self._path)
      stages = stages_since(self._store, self._pipeline, self._since)
    except Exception:  # pylint: disable=broad-except
      return  # the store is busy: try again at the next tick.
    for stage in stages:
      seen = self._reported.get(stage.execution_id)
      if seen is None and stage.state in ('NEW', 'RUNNING'):
        self.display.stage_running(stage.name)
        self._reported[stage.execution_id] = 'running'
      done = _TERMINAL.get(metadata_store_pb2.Execution.State.Value(stage.state))
      if done and seen != 'final':
        self.display.stage_finished(stage.name, done, stage.seconds, stage.cached)
        self._reported[stage.execution_id] = 'final'
        if self._on_finished and done in ('done', 'cached'):
          lines = self._on_finished(self._store, stage)
          if lines:
            self.display.notices(stage.name, lines)


def evaluation_metrics(uri: str, model_name: str = '') -> Dict[str, Dict[str, float]]:
  """Scalar TFMA metrics per slice from an Evaluator output (ModelEvaluation) directory.

  Returns:
    {slice: {metric name: value}}, slice `''` being the overall slice and others `feature=value`;
    the candidate model's values only (no baseline, no diffs).
  """
  result: Dict[str, Dict[str, float]] = {}
  for metrics_for_slice in tfma.load_metrics(uri):
    slice_name = ','.join(
        f'{k.column}={k.bytes_value.decode() if k.HasField("bytes_value") else k.int64_value}'
        for k in metrics_for_slice.slice_key.single_slice_keys)
    values = result.setdefault(slice_name, {})
    for kv in metrics_for_slice.metric_keys_and_values:
      key = kv.key
      if key.is_diff or (model_name and key.model_name not in ('', model_name)):
        continue
      if kv.value.HasField('double_value'):
        values[key.name] = kv.value.double_value.value
  return result


def summarize(store: mlmd.MetadataStore, pipeline_name: str, since_ms: int,
              summary_metrics: Dict[str, str]) -> Dict[str, Any]:
  """The run summary's `stages`, `metrics`, `undefined_metrics`, `slices`, `blessed`,
  `infra_blessing` (the serving check's verdict, reason and measurements), `pushed_model`, `examples` (examples written per split by ExampleGen) and `malformed` (see
  `malformed_summary`), read from MLMD.

  `metrics` maps the run-summary names of `summary_metrics` to the overall slice's values;
  `slices` holds every slice's values under TFMA's names. A metric that is undefined on the eval
  data (NaN in TFMA's output: recall with no positive label, ...) is null in both, and its TFMA
  name is listed in `undefined_metrics` (overall slice).
  """
  stages = stages_since(store, pipeline_name, since_ms)
  summary: Dict[str, Any] = {
      'stages': [{'name': s.name, 'seconds': s.seconds, 'cached': s.cached, 'state': s.state}
                 for s in stages],
      'metrics': {}, 'undefined_metrics': [], 'slices': {}, 'blessed': False,
      'infra_blessing': None, 'pushed_model': None, 'examples': {}, 'malformed': {}}
  for stage in stages:
    summary['malformed'].update(malformed_summary(split_reports(store, stage.execution_id)))
    for artifact in output_artifacts(store, stage.execution_id):
      props = artifact.custom_properties
      for key, value in props.items():  # ExampleGen's valid rows per split
        if key.startswith('valid_rows_'):
          summary['examples'][key[len('valid_rows_'):]] = value.int_value
      if stage.name == 'Evaluator' and artifact.uri and 'blessed' not in props:
        slices = {name: {k: _defined(v) for k, v in values.items()}
                  for name, values in evaluation_metrics(artifact.uri,
                                                         model_name='candidate').items()}
        summary['slices'] = {k: v for k, v in slices.items() if k}
        overall = slices.get('', {})
        summary['metrics'] = {name: overall.get(tfma_name)
                              for name, tfma_name in summary_metrics.items()}
        # NaN (no positive label for recall, one class for AUC, ...) is written as null.
        summary['undefined_metrics'] = sorted(name for name, value in overall.items()
                                              if value is None)
      elif stage.name == 'Evaluator' and 'blessed' in props:
        summary['blessed'] = bool(props['blessed'].int_value)
      elif stage.name == 'ServingCheck' and 'blessed' in props:
        summary['infra_blessing'] = serving_check.serving_check_summary(props)
      elif stage.name == 'Pusher' and props.get('pushed') and props['pushed'].int_value:
        summary['pushed_model'] = props['pushed_destination'].string_value
  return summary


def _defined(value: float) -> Optional[float]:
  """A metric value, or None where it is undefined (NaN: JSON has no NaN)."""
  return None if value is None or math.isnan(value) else value


def now_ms() -> int:
  return int(time.time() * 1000)

