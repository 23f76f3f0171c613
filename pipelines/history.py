"""Run history of an output directory, read back from its ML Metadata store.

Every `official-tfx run` into one `--output_dir` is one TFX pipeline run: LocalDagRunner records it
in the directory's ML Metadata store (`metadata.sqlite`, or the MySQL database recorded in
`metadata_connection.pbtxt`: see pipelines.metadata_store) as a context of type `pipeline_run`
whose name is the run id (TFX's default, the run's start time as an ISO timestamp, e.g.
`2026-12-04T13:46:52.615520`), and associates every execution of that run with it, a stage
served from the cache included (state CACHED). This module lists those runs, each with its
metrics, blessing, pushed version and stages, and compares two.

The runner keeps each run's summary as `<output_dir>/runs/<run id>/run_summary.json` (the run id
above); where that file exists, its values (metrics, data, error) take precedence over what is
rebuilt from MLMD, which covers runs from before that file was written.
"""

from __future__ import annotations

import datetime
import json
import os
import sys
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

from google.protobuf import json_format
from ml_metadata.proto import metadata_store_pb2

from pipelines import metadata, metadata_store

METADATA_FILE = metadata_store.SQLITE_FILE
SUMMARY_FILE = 'run_summary.json'
RUNS_DIR = 'runs'
PIPELINE_RUN = 'pipeline_run'
PIPELINE = 'pipeline'
NODE = 'node'


def metadata_path(output_dir: str) -> str:
  """`<output_dir>/metadata.sqlite`, the default store (`store_of` gives any directory's store).

  Raises:
    FileNotFoundError: there is no such file (no run has written this directory).
  """
  path = os.path.join(output_dir, METADATA_FILE)
  if not os.path.isfile(path):
    raise FileNotFoundError(f'{output_dir} holds no run: {path} does not exist')
  return path


def store_of(output_dir: str, connection: Optional[metadata_store.Where] = None):
  """An MLMD store of the runs in `output_dir`: `connection` when given (a SQLite path or a
  ConnectionConfig), else the directory's own (metadata_store.for_output_dir).

  Raises:
    FileNotFoundError: `output_dir` holds no run.
    metadata_store.MetadataConnectionError: its store cannot be opened (one line).
  """
  return metadata.open_store(connection if connection is not None
                             else metadata_store.for_output_dir(output_dir))


def iso_time(ms: int) -> str:
  """Milliseconds since the epoch as local `YYYY-MM-DD HH:MM:SS`."""
  return datetime.datetime.fromtimestamp(ms / 1000).strftime('%Y-%m-%d %H:%M:%S')


def _contexts_of_type(store, type_name: str) -> List[metadata_store_pb2.Context]:
  try:
    return list(store.get_contexts_by_type(type_name))
  except Exception:  # pylint: disable=broad-except  # the type does not exist yet
    return []


def run_contexts(store) -> List[metadata_store_pb2.Context]:
  """The store's pipeline run contexts (type `pipeline_run`) that have executions, oldest first
  (by creation time, then id)."""
  contexts = [c for c in _contexts_of_type(store, PIPELINE_RUN)
              if store.get_executions_by_context(c.id)]
  return sorted(contexts, key=lambda c: (c.create_time_since_epoch, c.id))


def run_executions(store, run_context: metadata_store_pb2.Context
                   ) -> List[Tuple[str, str, metadata_store_pb2.Execution]]:
  """(pipeline name, node id, execution) of each execution of one pipeline run, in creation
  order. The pipeline and node come from the execution's `pipeline` and `node` contexts (node
  contexts are named `<pipeline>.<node id>`)."""
  result = []
  executions = sorted(store.get_executions_by_context(run_context.id),
                      key=lambda e: (e.create_time_since_epoch, e.id))
  for execution in executions:
    contexts = store.get_contexts_by_execution(execution.id)
    types = {t.id: t.name for t in store.get_context_types_by_id(
        list({c.type_id for c in contexts}))}
    pipeline = next((c.name for c in contexts if types.get(c.type_id) == PIPELINE), '')
    node = next((c.name for c in contexts if types.get(c.type_id) == NODE), '')
    if pipeline and node.startswith(pipeline + '.'):
      node = node[len(pipeline) + 1:]
    result.append((pipeline, node, execution))
  return result


def artifacts_by_key(store, execution_id: int, inputs: bool = False
                     ) -> Dict[str, List[metadata_store_pb2.Artifact]]:
  """{output key (or input key, with `inputs`): artifacts} of one execution, e.g. a Trainer's
  `model` and `model_run`. A cached execution's outputs are the artifacts it reused."""
  wanted = ((metadata_store_pb2.Event.INPUT, metadata_store_pb2.Event.DECLARED_INPUT) if inputs
            else (metadata_store_pb2.Event.OUTPUT, metadata_store_pb2.Event.DECLARED_OUTPUT))
  events = [e for e in store.get_events_by_execution_ids([execution_id]) if e.type in wanted]
  artifacts = {a.id: a for a in store.get_artifacts_by_id([e.artifact_id for e in events])} \
      if events else {}
  result: Dict[str, List[metadata_store_pb2.Artifact]] = {}
  for event in events:
    key = next((step.key for step in event.path.steps if step.HasField('key')), '')
    if event.artifact_id in artifacts:
      result.setdefault(key, []).append(artifacts[event.artifact_id])
  return result


def property_value(properties: Mapping[str, metadata_store_pb2.Value], name: str) -> Any:
  """An MLMD property as a Python value (string, int, double, bool or proto struct as JSON
  text); None when absent."""
  if name not in properties:
    return None
  value = properties[name]
  kind = value.WhichOneof('value')
  if kind == 'struct_value':
    return json_format.MessageToDict(value.struct_value)
  return getattr(value, kind) if kind else None


def json_property(execution: metadata_store_pb2.Execution, name: str) -> Any:
  """An execution property TFX stores as JSON text (custom_config, train_args, eval_config,
  ...) parsed; the raw text if it is not JSON; None when absent."""
  value = property_value(execution.custom_properties, name)
  if value is None:
    value = property_value(execution.properties, name)
  if isinstance(value, str):
    try:
      return json.loads(value)
    except ValueError:
      return value
  return value


def run_id_since(output_dir: str, pipeline_name: str, since_ms: int,
                 connection: Optional[metadata_store.Where] = None) -> Optional[str]:
  """The run id (pipeline run context name) of the last run of `pipeline_name` with an execution
  created at or after `since_ms` (ms since the epoch): for the runner, the id of the run it just
  made (LocalDagRunner does not return it). None when there is none (no store, nothing ran).
  `connection`: the run's store (default: the directory's own).
  """
  if connection is None:
    try:
      connection = metadata_store.for_output_dir(output_dir)
    except FileNotFoundError:
      return None
  if not metadata_store.exists(connection):
    return None
  store = metadata.open_store(connection)
  for context in reversed(run_contexts(store)):
    executions = run_executions(store, context)
    if any(p == pipeline_name and e.create_time_since_epoch >= since_ms
           for p, _, e in executions):
      return context.name
  return None


def summary_path(output_dir: str, run_id: str) -> str:
  """Where the runner keeps a run's summary: `<output_dir>/runs/<run id>/run_summary.json`."""
  return os.path.join(output_dir, RUNS_DIR, run_id, SUMMARY_FILE)


def stored_summary(output_dir: str, run_id: str) -> Optional[Dict[str, Any]]:
  """`<output_dir>/runs/<run id>/run_summary.json`, or None when the runner did not keep one."""
  path = summary_path(output_dir, run_id)
  if not os.path.isfile(path):
    return None
  with open(path) as f:
    return json.load(f)


def _summary_metric_names(pipeline: str) -> Dict[str, str]:
  """The spec's run-summary metric names {summary name: TFMA name}; {} for an unknown model."""
  try:
    from pipelines import spec as spec_lib  # pylint: disable=import-outside-toplevel  # heavy
    return dict(spec_lib.get(pipeline).evaluation.summary_metrics)
  except Exception:  # pylint: disable=broad-except
    return {}


def describe_run(store, run_context: metadata_store_pb2.Context,
                 output_dir: Optional[str] = None) -> Dict[str, Any]:
  """One run as `list_runs` gives it (see there), from MLMD and the run's kept summary."""
  executions = run_executions(store, run_context)
  pipeline = next((p for p, _, _ in executions if p), '')
  entry: Dict[str, Any] = {
      'run_id': run_context.name, 'model': pipeline,
      'started': iso_time(run_context.create_time_since_epoch),
      'started_ms': run_context.create_time_since_epoch,
      'model_type': None, 'settings': {}, 'metrics': {}, 'blessed': None,
      'pushed_version': None, 'pushed_model': None, 'stages': [], 'ran': [], 'cached': [],
      'failed': [], 'running': [], 'error': None, 'summary_file': None}
  seconds = 0.0
  for _, node, execution in executions:
    state = metadata_store_pb2.Execution.State.Name(execution.last_known_state)
    took = max(0, execution.last_update_time_since_epoch - execution.create_time_since_epoch)
    seconds = max(seconds, (execution.last_update_time_since_epoch
                            - run_context.create_time_since_epoch) / 1000)
    entry['stages'].append({'name': node, 'state': state, 'seconds': round(took / 1000, 3),
                            'cached': state == 'CACHED', 'execution_id': execution.id})
    if state == 'CACHED':
      entry['cached'].append(node)
    elif state == 'COMPLETE':
      entry['ran'].append(node)
    elif state in ('FAILED', 'CANCELED'):
      entry['failed'].append(node)
    else:
      entry['running'].append(node)
    outputs = artifacts_by_key(store, execution.id)
    if node == 'Trainer':
      config = json_property(execution, 'custom_config') or {}
      train_args = json_property(execution, 'train_args') or {}
      if isinstance(config, dict):
        entry['model_type'] = config.get('model_type')
        entry['settings'].update({k: v for k, v in config.items() if k != 'hparams'})
        for name, value in (config.get('hparams') or {}).items():
          entry['settings'][f'hparams.{name}'] = value
      if isinstance(train_args, dict) and 'num_steps' in train_args:
        entry['settings']['train_steps'] = train_args['num_steps']
    elif node == 'Evaluator':
      for artifact in outputs.get('evaluation', []):
        if artifact.uri and os.path.isdir(artifact.uri):
          try:
            overall = metadata.evaluation_metrics(artifact.uri, model_name='candidate').get('', {})
          except Exception:  # pylint: disable=broad-except  # an unreadable or partial output
            overall = {}
          names = _summary_metric_names(pipeline) or {k: k for k in overall}
          entry['metrics'] = {name: overall.get(tfma_name) for name, tfma_name in names.items()}
      for artifact in outputs.get('blessing', []):
        blessed = property_value(artifact.custom_properties, 'blessed')
        if blessed is not None:
          entry['blessed'] = bool(blessed)
    elif node == 'Pusher':
      for artifact in outputs.get('pushed_model', []):
        if property_value(artifact.custom_properties, 'pushed'):
          entry['pushed_model'] = property_value(artifact.custom_properties,
                                                 'pushed_destination')
          entry['pushed_version'] = property_value(artifact.custom_properties, 'pushed_version')
  entry['seconds'] = round(seconds, 1)
  if entry['pushed_model'] is None and entry['blessed'] is not None:
    entry['pushed_version'] = None
  summary = stored_summary(output_dir, run_context.name) if output_dir else None
  if summary is not None:
    entry['summary_file'] = summary_path(output_dir, run_context.name)
    entry['metrics'] = dict(summary.get('metrics') or entry['metrics'])
    entry['model_type'] = summary.get('model_type') or entry['model_type']
    entry['error'] = summary.get('error')
    if summary.get('blessed') is not None:
      entry['blessed'] = bool(summary['blessed'])
    entry['pushed_model'] = summary.get('pushed_model') or entry['pushed_model']
    for split, data in (summary.get('data') or {}).items():
      entry['settings'][f'data.{split}'] = _data_text(data)
  elif entry['failed']:
    entry['error'] = f'{", ".join(entry["failed"])} did not finish'
  return entry


def _data_text(data: Mapping[str, Any]) -> str:
  first, count = data.get('first_row') or 0, data.get('num_rows')
  rows = 'all rows' if (first, count) == (0, None) else (
      f'rows {first:,}-{first + count - 1:,}' if count else f'rows {first:,}-end')
  return f'{data.get("file")} ({rows})'


def list_runs(output_dir: str, connection: Optional[metadata_store.Where] = None
              ) -> List[Dict[str, Any]]:
  """The pipeline runs recorded in the store of `output_dir` (`store_of`), oldest first.

  Each is a dict: `run_id` (TFX's pipeline run context name), `model` (the pipeline name),
  `started` (local time text) and `started_ms`, `seconds` (from the run's start to its last
  execution's end), `model_type`, `settings` (the Trainer's custom_config with `hparams.<name>`
  flattened, `train_steps`, and `data.<split>` when the run's summary was kept), `metrics` (the
  spec's summary metrics of the overall slice, candidate model; {} for a run that evaluated
  nothing), `blessed` (None when no Evaluator ran), `pushed_model` and `pushed_version` (None
  when nothing was pushed), `stages` ({name, state, seconds, cached, execution_id}), `ran`,
  `cached`, `failed` (failed or canceled) and `running` (still NEW or RUNNING) (node ids),
  `error` and `summary_file` (the kept summary, or None).

  Raises:
    FileNotFoundError: `output_dir` holds no run (no metadata.sqlite, no recorded store).
    metadata_store.MetadataConnectionError: its store cannot be opened.
  """
  store = store_of(output_dir, connection)
  return [describe_run(store, context, output_dir) for context in run_contexts(store)]


def find_run(runs: Sequence[Mapping[str, Any]], which: Union[str, int]) -> Mapping[str, Any]:
  """The run `which` names: its run id, a unique prefix of one, or a position in `runs` (an int
  or its text; 1 the oldest, -1 the newest, as in Python but counted from 1).

  Raises:
    KeyError: no run, or more than one, matches (the message lists the run ids).
  """
  if isinstance(which, int) or (isinstance(which, str) and which.lstrip('-').isdigit()
                                and not any(r['run_id'] == which for r in runs)):
    position = int(which)
    if position > 0 and position <= len(runs):
      return runs[position - 1]
    if position < 0 and -position <= len(runs):
      return runs[position]
    raise KeyError(f'no run number {position}: there are {len(runs)} run(s)')
  matches = [r for r in runs if r['run_id'] == which] or [
      r for r in runs if r['run_id'].startswith(str(which))]
  if len(matches) != 1:
    known = ', '.join(r['run_id'] for r in runs) or 'none'
    raise KeyError(f'{"no" if not matches else "more than one"} run matches {which!r}; '
                   f'runs: {known}')
  return matches[0]


def _value_text(value: Any) -> str:
  if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
    return f'{int(value)}'
  if isinstance(value, float):
    return f'{value:.4f}'
  if value is None:
    return '-'
  return str(value)


def compare(a: Mapping[str, Any], b: Mapping[str, Any]) -> str:
  """The differences of two `list_runs` entries as text: every metric either has (a, b, b - a),
  then the settings, blessing, push and stages that differ."""
  lines = [f'a: {a["run_id"]}  ({a["model"]}, {a["model_type"] or "-"}, started {a["started"]})',
           f'b: {b["run_id"]}  ({b["model"]}, {b["model_type"] or "-"}, started {b["started"]})',
           '']
  names = list(dict.fromkeys([*a['metrics'], *b['metrics']]))
  if names:
    width = max(len(n) for n in names)
    lines.append(f'{"metric":<{width}}  {"a":>10}  {"b":>10}  {"b - a":>10}')
    for name in names:
      va, vb = a['metrics'].get(name), b['metrics'].get(name)
      diff = (f'{vb - va:+.4f}' if isinstance(va, (int, float)) and isinstance(vb, (int, float))
              else '-')
      lines.append(f'{name:<{width}}  {_value_text(va):>10}  {_value_text(vb):>10}  {diff:>10}')
  else:
    lines.append('metrics: neither run evaluated a model')
  lines.append('')
  keys = sorted(set(a['settings']) | set(b['settings']))
  changed = [k for k in keys if a['settings'].get(k) != b['settings'].get(k)]
  for key in ('model_type', 'blessed', 'pushed_version', 'error'):
    if a.get(key) != b.get(key) and key not in changed:
      changed.append(key)
  if not changed:
    lines.append('settings: the same')
  else:
    lines.append('differences:')
    for key in changed:
      va = a['settings'].get(key, a.get(key))
      vb = b['settings'].get(key, b.get(key))
      lines.append(f'  {key}: {_value_text(va)} -> {_value_text(vb)}')
  stages_a = {s['name']: 'cached' if s['cached'] else s['state'].lower() for s in a['stages']}
  stages_b = {s['name']: 'cached' if s['cached'] else s['state'].lower() for s in b['stages']}
  differing = [n for n in dict.fromkeys([*stages_a, *stages_b])
               if stages_a.get(n) != stages_b.get(n)]
  if differing:
    lines.append('stages:')
    for name in differing:
      lines.append(f'  {name}: {stages_a.get(name, "not run")} -> {stages_b.get(name, "not run")}')
  return '\n'.join(lines)


def compare_runs(output_dir: str, a: Union[str, int], b: Union[str, int],
                 connection: Optional[metadata_store.Where] = None) -> str:
  """The metric and settings differences between two runs of `output_dir` (see `find_run` for
  how `a` and `b` name them, `compare` for the text; `connection` as for `list_runs`).

  Raises:
    FileNotFoundError: `output_dir` holds no run.
    metadata_store.MetadataConnectionError: its store cannot be opened.
    KeyError: `a` or `b` names no run, or more than one.
  """
  runs = list_runs(output_dir, connection)
  return compare(find_run(runs, a), find_run(runs, b))


def format_runs(runs: Sequence[Mapping[str, Any]]) -> str:
  """A terminal table of `list_runs` entries: number, run id, start, model type, each summary
  metric, blessed, pushed version, and how many stages ran / came from the cache / failed."""
  if not runs:
    return 'no runs'
  metric_names = list(dict.fromkeys(n for r in runs for n in r['metrics']))
  header = ['#', 'run id', 'started', 'model', 'type', *metric_names, 'blessed', 'pushed',
            'ran/cached/failed']
  rows = []
  for i, run in enumerate(runs, 1):
    blessed = {None: '-', True: 'yes', False: 'no'}[run['blessed']]
    rows.append([str(i), run['run_id'], run['started'], run['model'], run['model_type'] or '-',
                 *[_value_text(run['metrics'].get(n)) for n in metric_names], blessed,
                 str(run['pushed_version'] or '-'),
                 f'{len(run["ran"])}/{len(run["cached"])}/{len(run["failed"])}'])
  widths = [max(len(header[i]), *(len(r[i]) for r in rows)) for i in range(len(header))]
  lines = ['  '.join(h.ljust(w) for h, w in zip(header, widths)),
           '  '.join('-' * w for w in widths)]
  lines.extend('  '.join(c.ljust(w) for c, w in zip(row, widths)) for row in rows)
  return '\n'.join(line.rstrip() for line in lines)


def main(argv: Sequence[str]) -> int:
  """`python -m pipelines.history OUTPUT_DIR` prints the runs; `... OUTPUT_DIR A B` compares two
  (run ids, unique prefixes or positions: 1 the oldest, -1 the newest). Exit status 1 on an
  output directory without runs or a run that does not match."""
  if len(argv) not in (1, 3):
    print('usage: python -m pipelines.history OUTPUT_DIR [RUN_A RUN_B]', file=sys.stderr)
    return 2
  try:
    if len(argv) == 1:
      print(format_runs(list_runs(argv[0])))
    else:
      print(compare_runs(argv[0], argv[1], argv[2]))
  except (FileNotFoundError, KeyError, metadata_store.MetadataConnectionError) as e:
    print(f'error: {e.args[0] if e.args else e}', file=sys.stderr)
    return 1
  return 0


if __name__ == '__main__':
  sys.exit(main(sys.argv[1:]))
