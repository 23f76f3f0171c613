"""Reading a run back from ML Metadata: live progress while it runs, and the run summary after.

Stage times, cache hits, metrics, blessing and pushed model all come from the MLMD store the run
wrote, so the summary is the same whether the run trained or was served from the cache.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import threading
import time
from typing import Any, Dict, List, TextIO

import ml_metadata as mlmd
import tensorflow_model_analysis as tfma
from ml_metadata.proto import metadata_store_pb2

_TERMINAL = {metadata_store_pb2.Execution.COMPLETE: 'done',
             metadata_store_pb2.Execution.CACHED: 'cached',
             metadata_store_pb2.Execution.FAILED: 'FAILED',
             metadata_store_pb2.Execution.CANCELED: 'canceled'}


def open_store(path: str, readonly: bool = True) -> mlmd.MetadataStore:
  """An MLMD store over the SQLite file at `path`."""
  config = metadata_store_pb2.ConnectionConfig()
  config.sqlite.filename_uri = path
  config.sqlite.connection_mode = (metadata_store_pb2.SqliteMetadataSourceConfig.READONLY
                                   if readonly else
                                   metadata_store_pb2.SqliteMetadataSourceConfig.READWRITE)
  return mlmd.MetadataStore(config)


@dataclasses.dataclass
class Stage:
  """One component execution of a run: its node id, seconds, cache hit and MLMD ids."""
  name: str
  seconds: float
  cached: bool
  state: str
  execution_id: int


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
                        state=state, execution_id=execution.id))
  return stages


def output_artifacts(store: mlmd.MetadataStore, execution_id: int) -> List[Any]:
  """The artifacts an execution output (for a cached execution: the reused ones)."""
  events = store.get_events_by_execution_ids([execution_id])
  ids = [e.artifact_id for e in events if e.type in (metadata_store_pb2.Event.OUTPUT,
                                                     metadata_store_pb2.Event.DECLARED_OUTPUT)]
  return store.get_artifacts_by_id(ids) if ids else []


class ProgressMonitor:
  """Prints `[i/N] <component> running` and `... done in S s | cached | FAILED` while a run goes on.

  Polls the MLMD store (read-only) from a background thread; use as a context manager around the
  runner's `run`.
  """

  def __init__(self, metadata_path: str, pipeline_name: str, node_ids: List[str],
               since_ms: int, out: TextIO = sys.stdout, interval: float = 0.5):
    self._path, self._pipeline, self._nodes = metadata_path, pipeline_name, node_ids
    self._since, self._out, self._interval = since_ms, out, interval
    self._stop = threading.Event()
    self._thread = threading.Thread(target=self._loop, daemon=True)
    self._reported: Dict[int, str] = {}
    self._store = None

  def __enter__(self):
    self._thread.start()
    return self

  def __exit__(self, *exc):
    self._stop.set()
    self._thread.join()
    self._poll()  # the last transitions

  def _loop(self):
    while not self._stop.wait(self._interval):
      self._poll()

  def _poll(self):
    try:
      if self._store is None:
        if not os.path.exists(self._path):
          return  # the runner has not created the store yet
        self._store = open_store(self._path)
      stages = stages_since(self._store, self._pipeline, self._since)
    except Exception:  # pylint: disable=broad-except
      return  # the store is busy: try again at the next tick.
    for stage in stages:
      position = (self._nodes.index(stage.name) + 1) if stage.name in self._nodes else 0
      prefix = f'[{position:2d}/{len(self._nodes)}] {stage.name}'
      seen = self._reported.get(stage.execution_id)
      if seen is None and stage.state in ('NEW', 'RUNNING'):
        self._print(f'{prefix} running')
        self._reported[stage.execution_id] = 'running'
      done = _TERMINAL.get(metadata_store_pb2.Execution.State.Value(stage.state))
      if done and seen != 'final':
        detail = 'cached' if stage.cached else f'{done} in {stage.seconds:.1f} s'
        self._print(f'{prefix} {detail}')
        self._reported[stage.execution_id] = 'final'

  def _print(self, line: str):
    print(line, file=self._out, flush=True)


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
  """The run summary's `stages`, `metrics`, `slices`, `blessed`, `pushed_model` and `examples`
  (examples written per split by ExampleGen), read from MLMD.

  `metrics` maps the run-summary names of `summary_metrics` to the overall slice's values;
  `slices` holds every slice's values under TFMA's names.
  """
  stages = stages_since(store, pipeline_name, since_ms)
  summary: Dict[str, Any] = {
      'stages': [{'name': s.name, 'seconds': s.seconds, 'cached': s.cached} for s in stages],
      'metrics': {}, 'slices': {}, 'blessed': False, 'pushed_model': None, 'examples': {}}
  for stage in stages:
    for artifact in output_artifacts(store, stage.execution_id):
      props = artifact.custom_properties
      for key, value in props.items():  # ExampleGen's valid rows per split
        if key.startswith('valid_rows_'):
          summary['examples'][key[len('valid_rows_'):]] = value.int_value
      if stage.name == 'Evaluator' and artifact.uri and 'blessed' not in props:
        slices = evaluation_metrics(artifact.uri, model_name='candidate')
        summary['slices'] = {k: v for k, v in slices.items() if k}
        overall = slices.get('', {})
        summary['metrics'] = {name: overall.get(tfma_name)
                              for name, tfma_name in summary_metrics.items()}
      elif stage.name == 'Evaluator' and 'blessed' in props:
        summary['blessed'] = bool(props['blessed'].int_value)
      elif stage.name == 'Pusher' and props.get('pushed') and props['pushed'].int_value:
        summary['pushed_model'] = props['pushed_destination'].string_value
  return summary


def now_ms() -> int:
  return int(time.time() * 1000)

