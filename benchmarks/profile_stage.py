"""Profile one stage of a finished run: its executor again, in-process, under cProfile.

Reads the stage's last execution from the run's ML Metadata (its input artifacts, its exec
properties as the launcher passed them), runs the component's executor class once more on the
same inputs with outputs in a scratch directory, on Beam's in-process DirectRunner (one thread,
so that the profile sees the per-element work), and prints:

- the stage's wall seconds, rows/s over `--rows` if given, and the process's peak resident
  memory (the stage in one process: the in-process runner holds what it buffers);
- seconds by library (self time of the functions in each top-level package: where the time goes,
  TFMA's own code against TensorFlow, Beam, tfx_bsl, protobuf, numpy);
- the functions with the most self time and with the most cumulative time.

The figures are for the in-process runner only (cProfile slows pure-Python code more than native
code, by up to 2x here): read them as shares, not as the stage's speed.

  .venv/bin/python benchmarks/profile_stage.py --run_dir=RUN_OUTPUT_DIR --stage=Evaluator
      [--rows=162820] [--top=25] [--save=FILE.prof] [--json=FILE] [--noprofile]
      [--eval_metrics=ExampleCount] [--noeval_slices] [--input_base=DIR]

`RUN_OUTPUT_DIR` is a run's `--output_dir` (its metadata.sqlite); e.g. `benchmarks/census.py
--scale=10 --output_dir=DIR` keeps one. The stage is a component id (Evaluator, Transform,
StatisticsGen, TextLineExampleGen, ...). `--noprofile` times it alone; for the Evaluator,
`--eval_metrics` and `--noeval_slices` narrow the run's EvalConfig, to measure what TFMA costs
with fewer metrics or slices on the same examples and model (the floor of its per-row cost with
`--eval_metrics=ExampleCount --noeval_slices`). An ExampleGen reads its raw files from the run's
`input_base` again, or from `--input_base` where they have moved.
"""

import common  # benchmarks/common.py, beside this script; first: it sets TensorFlow's environment

import collections
import cProfile
import importlib
import json
import os
import pstats
import resource
import shutil
import tempfile
import time
from typing import Any, Dict, List, Tuple

import tensorflow_model_analysis as tfma
from absl import app, flags
from google.protobuf import json_format
from ml_metadata.proto import metadata_store_pb2
from tfx.types import artifact_utils

from pipelines import history, metadata

FLAGS = flags.FLAGS
flags.DEFINE_string('run_dir', None, 'A finished run\'s output directory (its metadata.sqlite).')
flags.DEFINE_string('stage', 'Evaluator', 'The component id to profile.')
flags.DEFINE_integer('rows', None, 'Rows the stage processes, for rows/s.')
flags.DEFINE_integer('top', 25, 'Functions to list, by self and by cumulative time.')
flags.DEFINE_string('save', None, 'Also save the raw profile here (pstats / snakeviz format).')
flags.DEFINE_string('json', None, 'Also write the figures to this JSON file.')
flags.DEFINE_bool('profile', True, 'Run under cProfile; --noprofile times the stage alone.')
flags.DEFINE_list('eval_metrics', None, 'Evaluator: keep only these metrics of the run\'s '
                  'EvalConfig (TFMA class names, e.g. ExampleCount), their thresholds with them: '
                  'what TFMA costs without the others.')
flags.DEFINE_string('input_base', None, 'ExampleGens: read the raw files from this folder instead '
                    'of the run\'s input_base (benchmarks/census.py --scale deletes its copies).')
flags.DEFINE_bool('eval_slices', True, 'Evaluator: --noeval_slices keeps the overall slice only.')
flags.mark_flag_as_required('run_dir')


def last_execution(store, stage: str) -> metadata_store_pb2.Execution:
  """The stage's last completed execution (by its node's context, `<pipeline>.<stage>`).

  Raises:
    app.UsageError: the run has no completed execution of that stage (message: the stages it has).
  """
  done = (metadata_store_pb2.Execution.COMPLETE, metadata_store_pb2.Execution.CACHED)
  nodes = [c for c in store.get_contexts_by_type('node') if c.name.split('.', 1)[-1] == stage]
  executions = [e for c in nodes for e in store.get_executions_by_context(c.id)
                if e.last_known_state in done]
  if not executions:
    have = sorted({c.name.split('.', 1)[-1] for c in store.get_contexts_by_type('node')})
    raise app.UsageError(f'--stage: no completed {stage} execution in this run; it has {have}')
  return max(executions, key=lambda e: e.create_time_since_epoch)


def artifacts_of(store, execution_id: int, event_type) -> Dict[str, List[Any]]:
  """{key: [tfx Artifact]} of an execution's input or output events, in the events' order."""
  events = [e for e in store.get_events_by_execution_ids([execution_id]) if e.type == event_type]
  by_id = {a.id: a for a in store.get_artifacts_by_id([e.artifact_id for e in events])}
  types = {t.id: t for t in store.get_artifact_types_by_id(list({a.type_id for a in by_id.values()}))}
  keyed = collections.defaultdict(list)
  for event in events:
    key = event.path.steps[0].key
    artifact = by_id[event.artifact_id]
    keyed[key].append(artifact_utils.deserialize_artifact(types[artifact.type_id], artifact))
  return dict(keyed)


def narrowed_eval_config(eval_config_json: str, metrics, slices: bool) -> str:
  """The Evaluator's `eval_config` exec property (a tfma.EvalConfig as JSON) with only `metrics`
  (class names; None keeps them all) and, unless `slices`, the overall slice only.

  Raises:
    app.UsageError: a metric the config does not compute.
  """
  config = json_format.Parse(eval_config_json, tfma.EvalConfig())
  if metrics is not None:
    present = {m.class_name for spec in config.metrics_specs for m in spec.metrics}
    if set(metrics) - present:
      raise app.UsageError(f'--eval_metrics: {sorted(set(metrics) - present)} not in the run\'s '
                           f'EvalConfig, which has {sorted(present)}')
    for spec in config.metrics_specs:
      kept = [m for m in spec.metrics if m.class_name in metrics]
      del spec.metrics[:]
      spec.metrics.extend(kept)
  if not slices:
    del config.slicing_specs[:]
    config.slicing_specs.add()
  return json_format.MessageToJson(config)


def library(filename: str) -> str:
  """The top-level package a profiled function belongs to ('(native)' for built-ins)."""
  if filename.startswith('~') or filename.startswith('<'):
    return '(native and built-in)'
  parts = os.path.normpath(filename).split(os.sep)
  if 'site-packages' in parts:
    rest = parts[parts.index('site-packages') + 1:]
    return rest[0].removesuffix('.py') if rest else filename
  if 'lib' in parts and any(p.startswith('python3') for p in parts):
    return '(python standard library)'
  return '(this project)'


def by_library(stats: pstats.Stats) -> List[Tuple[str, float]]:
  """[(library, self seconds)], largest first."""
  totals = collections.Counter()
  for (filename, _, _), (_, _, self_time, _, _) in stats.stats.items():  # pylint: disable=no-member
    totals[library(filename)] += self_time
  return totals.most_common()


def top_functions(stats: pstats.Stats, key: int, count: int) -> List[Dict[str, Any]]:
  """The `count` functions with the most self (key 2) or cumulative (key 3) seconds."""
  rows = sorted(stats.stats.items(), key=lambda item: item[1][key], reverse=True)[:count]  # pylint: disable=no-member
  return [{'function': f'{library(f)}:{os.path.basename(f)}:{line}({name})',
           'calls': calls, 'self_s': round(self_time, 2), 'cumulative_s': round(cumulative, 2)}
          for (f, line, name), (_, calls, self_time, cumulative, _) in rows]


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  path = os.path.join(FLAGS.run_dir, 'metadata.sqlite')
  if not os.path.exists(path):
    raise app.UsageError(f'--run_dir: {path} does not exist (give a run\'s --output_dir)')
  store = metadata.open_store(path)
  execution = last_execution(store, FLAGS.stage)
  (execution_type,) = store.get_execution_types_by_id([execution.type_id])
  module, _, name = execution_type.name.rpartition('.')
  component = getattr(importlib.import_module(module), name)
  executor_class = component.EXECUTOR_SPEC.executor_class
  inputs = artifacts_of(store, execution.id, metadata_store_pb2.Event.INPUT)
  outputs = artifacts_of(store, execution.id, metadata_store_pb2.Event.OUTPUT)
  properties = {key: history.property_value(execution.custom_properties, key)
                for key in execution.custom_properties}
  narrowed = FLAGS.eval_metrics is not None or not FLAGS.eval_slices
  if narrowed:
    if 'eval_config' not in properties:
      raise app.UsageError('--eval_metrics / --noeval_slices: only for the Evaluator')
    properties['eval_config'] = narrowed_eval_config(properties['eval_config'],
                                                     FLAGS.eval_metrics, FLAGS.eval_slices)
  if FLAGS.input_base:
    if 'input_base' not in properties:
      raise app.UsageError(f'--input_base: {FLAGS.stage} has no input_base (not an ExampleGen)')
    properties['input_base'] = FLAGS.input_base
  scratch = tempfile.mkdtemp(prefix=f'profile-{FLAGS.stage}-')
  try:
    for key, artifacts in outputs.items():
      for i, artifact in enumerate(artifacts):
        artifact.uri = os.path.join(scratch, 'outputs', key, str(i))
        os.makedirs(artifact.uri)
    context = executor_class.Context(tmp_dir=os.path.join(scratch, 'tmp') + os.sep,
                                     unique_id=str(execution.id), beam_pipeline_args=[])
    executor = executor_class(context)
    profile = cProfile.Profile()
    start = time.time()
    if FLAGS.profile:
      profile.enable()
    executor.Do(inputs, outputs, properties)
    profile.disable()
    seconds = time.time() - start
    # This process's peak resident set (Linux: KiB), the stage's and the imports' before it.
    peak_mb = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
  finally:
    shutil.rmtree(scratch, ignore_errors=True)
  what = (f' (metrics {FLAGS.eval_metrics or "all"}, '
          f'{"slices" if FLAGS.eval_slices else "overall slice only"})' if narrowed else '')
  figures = {
      'stage': FLAGS.stage, 'narrowed': what,
      'executor': f'{executor_class.__module__}.{executor_class.__name__}',
      'seconds': round(seconds, 1), 'peak_rss_mb': peak_mb,
      'rows_per_s': round(FLAGS.rows / seconds) if FLAGS.rows else None,
  }
  rate = f', {figures["rows_per_s"]} rows/s' if FLAGS.rows else ''
  if not FLAGS.profile:
    print(f'{FLAGS.stage}{what}, in-process DirectRunner: {seconds:.1f} s{rate}, '
          f'peak RSS {peak_mb} MB')
  else:
    if FLAGS.save:
      profile.dump_stats(FLAGS.save)
    stats = pstats.Stats(profile)
    libraries = by_library(stats)
    profiled = sum(t for _, t in libraries)
    figures.update(
        by_library=[(lib, round(t, 2), round(100 * t / profiled, 1)) for lib, t in libraries],
        top_self=top_functions(stats, 2, FLAGS.top),
        top_cumulative=top_functions(stats, 3, FLAGS.top))
    print(f'{FLAGS.stage}{what} ({figures["executor"]}) under cProfile, in-process DirectRunner: '
          f'{seconds:.1f} s{rate}, peak RSS {peak_mb} MB')
    print('\nself seconds by library:')
    for lib, t, share in figures['by_library'][:15]:
      print(f'  {t:8.1f} s {share:5.1f}%  {lib}')
    for title, rows in (('self', figures['top_self']), ('cumulative', figures['top_cumulative'])):
      print(f'\ntop {FLAGS.top} functions by {title} time:')
      print(f'  {"self s":>8s} {"cum s":>8s} {"calls":>10s}  function')
      for row in rows:
        print(f'  {row["self_s"]:8.2f} {row["cumulative_s"]:8.2f} {row["calls"]:>10d}  '
              f'{row["function"]}')
  if FLAGS.json:
    with open(FLAGS.json, 'w', encoding='utf-8') as f:
      json.dump(figures, f, indent=1)


if __name__ == '__main__':
  app.run(main)
