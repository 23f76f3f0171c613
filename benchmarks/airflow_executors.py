"""Airflow executors benchmark: one model's DAG (pipelines/runners/airflow_dag.py), cold, under
several Airflow setups back to back, each with a scheduler (`airflow scheduler`) as in production.

  sequential   SQLite metadata database, SequentialExecutor: one task instance at a time, each in
               a new `airflow tasks run` interpreter.
  local:N      PostgreSQL metadata database (a throwaway server on loopback, tests/airflow_local.py),
               LocalExecutor with [core] parallelism N: up to N task instances at once, each in a
               process forked from the scheduler's workers.

For each setup it prints the DAG run's wall time as Airflow records it (its start to its end), the
time from the trigger to the run's end (the scheduler's start-up included), the sum of the task
instances' own durations, the median task start-up (from the executor taking a task instance to
its start: the process starting and parsing the DAG file), the task instances that ran side by
side, and the machine's 1-minute load average (before, mean while running, after): the runs share
the machine with whatever else runs.
Every setup starts cold: a new output directory (no cache, no earlier blessed model) and a new
Airflow home and database. A setup named several times runs that many times (in the order given:
interleave them, `sequential,local:2,sequential,local:2`, as the machine's load drifts); the
table then ends with each setup's median.

  .venv/bin/python benchmarks/airflow_executors.py --data_root=../shared/data
      [--model=census] [--setups=sequential,local:1,local:2] [--run_flags='--train_steps=500']
      [--output_dir=DIR] [--json=FILE]
"""

import json
import os
import shlex
import shutil
import statistics
import sys
import tempfile
import threading
import time

from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from tests import airflow_local  # pylint: disable=g-import-not-at-top,wrong-import-position

FLAGS = flags.FLAGS
flags.DEFINE_string('data_root', None, 'Data root (default $OFFICIAL_TFX_DATA_ROOT).')
flags.DEFINE_string('model', 'census', 'The model whose DAG runs.')
flags.DEFINE_list('setups', ['sequential', 'local:2'], 'Airflow setups, run in this order: '
                  '`sequential` (SQLite) or `local:N` (PostgreSQL, LocalExecutor, parallelism N).')
flags.DEFINE_string('run_flags', '', 'More `official-tfx run` flags for the DAG '
                    '($OFFICIAL_TFX_FLAGS), e.g. "--train_steps=500".')
flags.DEFINE_string('output_dir', None, 'Keep the runs here, one subdirectory per setup (default: '
                    'a temporary directory, removed afterwards).')
flags.DEFINE_string('json', None, 'Also write the figures to this JSON file.')
flags.DEFINE_integer('timeout', 7200, 'Seconds to wait for one DAG run.')


def parse_setup(setup: str):
  """('sequential', 1) or ('local', N) from `sequential` or `local:N`.

  Raises:
    app.UsageError: anything else.
  """
  if setup == 'sequential':
    return 'sequential', 1
  kind, _, parallelism = setup.partition(':')
  if kind == 'local' and parallelism.isdigit() and int(parallelism) >= 1:
    return 'local', int(parallelism)
  raise app.UsageError(f'--setups: {setup!r} is not `sequential` or `local:N` (N >= 1)')


class LoadSampler:
  """The machine's 1-minute load average every `interval` seconds, in a thread."""

  def __init__(self, interval: float = 10):
    self.samples = []
    self._interval = interval
    self._stop = threading.Event()
    self._thread = threading.Thread(target=self._loop, daemon=True)

  def _loop(self):
    while not self._stop.wait(self._interval):
      self.samples.append(os.getloadavg()[0])

  def __enter__(self):
    self._thread.start()
    return self

  def __exit__(self, *exc):
    self._stop.set()
    self._thread.join()


def run_setup(setup: str, folder: str, data_root: str):
  """Runs the model's DAG cold under `setup` in `folder`; returns its figures."""
  kind, parallelism = parse_setup(setup)
  os.makedirs(folder, exist_ok=True)
  run_flags = (f'--data_root={data_root} --output_dir={folder}/out {FLAGS.run_flags}').strip()
  server = airflow_local.LocalPostgres().start() if kind == 'local' else None
  try:
    if server:
      url = server.create_database('airflow')
      executor = 'LocalExecutor'
    else:
      url = f'sqlite:///{folder}/airflow/airflow.db'
      executor = 'SequentialExecutor'
    env = airflow_local.airflow_environment(f'{folder}/airflow', url, executor, FLAGS.model,
                                            run_flags, parallelism=parallelism)
    load_before = os.getloadavg()[0]
    with LoadSampler() as load:
      result = airflow_local.run_dag(env, FLAGS.model, timeout=FLAGS.timeout)
    load_after = os.getloadavg()[0]
  finally:
    if server:
      server.stop()
  if result.state != 'success':
    failed = [t.task_id for t in result.tasks if t.state != 'success']
    raise RuntimeError(f'{setup}: the DAG run ended {result.state}; not successful: {failed} '
                       f'(logs in {folder}/airflow/logs)')
  return {
      'setup': setup, 'executor': executor, 'parallelism': parallelism,
      'database': url.split(':', 1)[0],
      'dag_run_seconds': round(result.wall_seconds, 1),
      'trigger_to_end_seconds': round(result.seconds_to_finish, 1),
      'task_seconds': round(sum((t.end - t.start).total_seconds() for t in result.tasks), 1),
      'tasks': {t.task_id: round((t.end - t.start).total_seconds(), 1) for t in result.tasks},
      # From the executor taking a task instance to the task starting: its process starting and
      # parsing the DAG file.
      'startup_seconds': {t.task_id: round((t.start - t.queued).total_seconds(), 1)
                          for t in result.tasks},
      'side_by_side': [(a, b, round(s, 1)) for a, b, s in result.overlaps()],
      'queued_side_by_side': [(a, b, round(s, 1)) for a, b, s in result.overlaps(queued=True)],
      'load': {'before': round(load_before, 2), 'after': round(load_after, 2),
               'mean': round(sum(load.samples) / len(load.samples), 2) if load.samples else None},
  }


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  for setup in FLAGS.setups:
    parse_setup(setup)
  shlex.split(FLAGS.run_flags)  # a quoting mistake is a usage error now, not in every task
  data_root = os.path.abspath(FLAGS.data_root or os.environ.get('OFFICIAL_TFX_DATA_ROOT') or
                              os.path.join('..', 'shared', 'data'))
  work = FLAGS.output_dir or tempfile.mkdtemp(prefix='airflow-executors-')
  runs = []
  try:
    for i, setup in enumerate(FLAGS.setups):
      print(f'{setup}: running {FLAGS.model} ...', flush=True)
      runs.append(run_setup(setup, os.path.join(work, f'{i}_{setup.replace(":", "_")}'),
                            data_root))
      print(json.dumps(runs[-1]), flush=True)
  finally:
    if not FLAGS.output_dir:
      shutil.rmtree(work, ignore_errors=True)
  print(f'\n{FLAGS.model} DAG, cold, back to back on {os.cpu_count()} cores:')
  print(f'{"setup":>11s} {"DAG run s":>10s} {"trigger->end s":>15s} {"tasks s":>8s} '
        f'{"task start-up s":>16s} {"load before/mean/after":>23s}  side by side')
  for run in runs:
    load = run['load']
    pairs = ', '.join(f'{a}+{b} {s}s' for a, b, s in run['side_by_side']) or '-'
    print(f'{run["setup"]:>11s} {run["dag_run_seconds"]:10.1f} '
          f'{run["trigger_to_end_seconds"]:15.1f} {run["task_seconds"]:8.1f} '
          f'{statistics.median(run["startup_seconds"].values()):16.1f} '
          f'{load["before"]:>7.2f}/{load["mean"] or 0:>6.2f}/{load["after"]:>7.2f}  {pairs}')
  if len(runs) > len(set(FLAGS.setups)):
    print('\nmedian DAG run s per setup:')
    for setup in dict.fromkeys(FLAGS.setups):
      times = [r['dag_run_seconds'] for r in runs if r['setup'] == setup]
      print(f'{setup:>11s} {statistics.median(times):10.1f}  ({len(times)} runs: '
            f'{", ".join(f"{t:.0f}" for t in times)})')
  if FLAGS.json:
    with open(FLAGS.json, 'w', encoding='utf-8') as f:
      json.dump({'model': FLAGS.model, 'run_flags': FLAGS.run_flags, 'runs': runs}, f, indent=1)


if __name__ == '__main__':
  app.run(main)
