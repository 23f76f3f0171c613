"""A whole Airflow on this machine, for the engine tests and benchmarks/airflow_executors.py.

- `LocalPostgres`: a throwaway PostgreSQL server (Debian's `postgresql` package) on loopback, as
  Airflow's metadata database: `initdb` into a temporary data directory, `pg_ctl start` on a free
  port, one database per Airflow home, `pg_ctl stop` at the end. PostgreSQL refuses to run as
  root, so under root its commands run as the `postgres` system user the package creates.
- `airflow_environment`: the variables of one Airflow home that serves the DAG file
  pipelines/runners/airflow_dag.py (its model and flags, the metadata database, the executor).
- `run_dag`: `airflow db migrate`, `airflow dags reserialize`, `airflow dags unpause`,
  `airflow dags trigger`, and an `airflow scheduler` in a child process until the DAG run ends;
  returns the DAG run and its task instances as Airflow recorded them (states, start and end).
- `dag_graphs`: several models' DAGs parsed by Airflow's DagBag, as the scheduler does, in one
  child process with a given Airflow environment: each task's upstream tasks, before and after
  the serialization the scheduler stores in the database.
"""

from __future__ import annotations

import dataclasses
import datetime
import glob
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from typing import Dict, List, Mapping, Optional, Sequence

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUNNERS = os.path.join(REPO, 'pipelines', 'runners')
BIN = os.path.dirname(sys.executable)
POSTGRES_USER = 'postgres'  # the system user of Debian's package: the server's owner under root
DATABASE_ROLE = 'airflow'


class LocalAirflowError(RuntimeError):
  """PostgreSQL or Airflow could not be set up, or a command of theirs failed."""


def postgres_bindir() -> Optional[str]:
  """The directory of PostgreSQL's server programs (`initdb`, `pg_ctl`), or None if not installed.

  Debian keeps them out of $PATH, in /usr/lib/postgresql/<version>/bin; the newest one wins.
  """
  on_path = shutil.which('pg_ctl')
  if on_path and shutil.which('initdb'):
    return os.path.dirname(os.path.realpath(on_path))
  found = sorted(glob.glob('/usr/lib/postgresql/*/bin/pg_ctl'),
                 key=lambda p: int(p.split('/')[-3]) if p.split('/')[-3].isdigit() else 0)
  return os.path.dirname(found[-1]) if found else None


def free_port() -> int:
  """A TCP port on 127.0.0.1 that nothing listens on now."""
  with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def _check(args: Sequence[str], timeout: float = 300, **kwargs) -> subprocess.CompletedProcess:
  result = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout,
                          check=False, **kwargs)
  if result.returncode:
    raise LocalAirflowError(f'{" ".join(args)} exited {result.returncode}: '
                            f'{(result.stderr or result.stdout).strip()[-2000:]}')
  return result


class LocalPostgres:
  """A PostgreSQL server on 127.0.0.1 for this process's lifetime; a context manager.

  Trust authentication for the `airflow` role on loopback only: it is a test server. The data
  directory and the server's socket are in a new directory under the system's temporary folder
  (the `postgres` user must reach it; pytest's tmp_path is private to root), removed by stop().

  Raises (from start()):
    LocalAirflowError: PostgreSQL is not installed (`apt-get install postgresql`), there is no
      `postgres` user to run it under root, or initdb / pg_ctl failed.
  """

  def __init__(self):
    self.port: Optional[int] = None
    self.root: Optional[str] = None
    self._bindir: Optional[str] = None
    self._user: Optional[str] = None

  def _as_owner(self) -> Dict[str, str]:
    return {'user': self._user} if self._user else {}

  def start(self) -> 'LocalPostgres':
    """initdb and pg_ctl start; returns self once the server accepts connections."""
    self._bindir = postgres_bindir()
    if not self._bindir:
      raise LocalAirflowError('PostgreSQL is not installed: apt-get install postgresql')
    if os.geteuid() == 0:
      try:
        owner = pwd.getpwnam(POSTGRES_USER)
      except KeyError as e:
        raise LocalAirflowError(f'PostgreSQL refuses to run as root and there is no '
                                f'{POSTGRES_USER!r} user to run it as') from e
      self._user = POSTGRES_USER
    self.root = tempfile.mkdtemp(prefix='official-tfx-postgres-')
    if self._user:
      os.chmod(self.root, 0o700)
      os.chown(self.root, owner.pw_uid, owner.pw_gid)
    data = os.path.join(self.root, 'data')
    _check([os.path.join(self._bindir, 'initdb'), '-D', data, '-U', DATABASE_ROLE,
            '--auth=trust', '--encoding=UTF8', '--no-instructions'], cwd=self.root,
           **self._as_owner())
    self.port = free_port()
    options = (f'-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 '
               '-c max_connections=200 -c fsync=off')  # a test server: speed over durability
    _check([os.path.join(self._bindir, 'pg_ctl'), 'start', '-w', '-t', '120', '-D', data,
            '-l', os.path.join(self.root, 'server.log'), '-o', options], cwd=self.root,
           **self._as_owner())
    return self

  def create_database(self, name: str) -> str:
    """Creates database `name`; returns its SQLAlchemy URL for Airflow (psycopg2 driver)."""
    _check([os.path.join(self._bindir, 'createdb'), '-h', '127.0.0.1', '-p', str(self.port),
            '-U', DATABASE_ROLE, name])
    return f'postgresql+psycopg2://{DATABASE_ROLE}@127.0.0.1:{self.port}/{name}'

  def stop(self) -> None:
    """pg_ctl stop (fast: open connections are closed) and removes the data directory."""
    if self.root is None:
      return
    data = os.path.join(self.root, 'data')
    if os.path.exists(os.path.join(data, 'postmaster.pid')):
      subprocess.run([os.path.join(self._bindir, 'pg_ctl'), 'stop', '-m', 'fast', '-w', '-D', data],
                     capture_output=True, timeout=120, check=False, cwd=self.root,
                     **self._as_owner())
    shutil.rmtree(self.root, ignore_errors=True)
    self.root = None

  def __enter__(self) -> 'LocalPostgres':
    return self.start()

  def __exit__(self, *exc) -> None:
    self.stop()


def airflow_environment(home: str, database_url: str, executor: str, model: str, flags: str,
                        parallelism: int = 2,
                        base: Optional[Mapping[str, str]] = None) -> Dict[str, str]:
  """The environment of an Airflow home that runs `model`'s DAG (pipelines/runners/airflow_dag.py).

  Args:
    home: AIRFLOW_HOME (its logs are there).
    database_url: Airflow's metadata database (`sqlite:///...` or `postgresql+psycopg2://...`).
    executor: `LocalExecutor` (PostgreSQL) or `SequentialExecutor` (SQLite or PostgreSQL).
    model, flags: $OFFICIAL_TFX_MODEL and $OFFICIAL_TFX_FLAGS of the DAG file.
    parallelism: task instances running at once ([core] parallelism: LocalExecutor's workers).
    base: the environment to start from (default os.environ); its PYTHONPATH is kept after this
      checkout's.

  Returns:
    A complete environment for subprocesses (the venv's bin first on PATH).
  """
  env = dict(os.environ if base is None else base)
  python_path = [REPO] + [p for p in env.get('PYTHONPATH', '').split(os.pathsep) if p]
  env.pop('OFFICIAL_TFX_DATA_ROOT', None)  # the flags name the data root
  env.update(
      PATH=BIN + os.pathsep + env.get('PATH', ''), PYTHONPATH=os.pathsep.join(python_path),
      OFFICIAL_TFX_MODEL=model, OFFICIAL_TFX_FLAGS=flags,
      AIRFLOW_HOME=home, AIRFLOW__CORE__DAGS_FOLDER=RUNNERS,
      AIRFLOW__CORE__LOAD_EXAMPLES='False',
      AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=database_url,
      AIRFLOW__CORE__EXECUTOR=executor,
      AIRFLOW__CORE__PARALLELISM=str(parallelism),
      # A parse imports TensorFlow and TFX's components: ~22 s on 2 cores, more when loaded.
      AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT='600',
      AIRFLOW__CORE__DAG_FILE_PROCESSOR_TIMEOUT='660',
      # The scheduler's file processor parses the DAG once (the run's tasks parse it themselves);
      # re-parsing every 30 s, Airflow's default, would take a core from the tasks.
      AIRFLOW__SCHEDULER__MIN_FILE_PROCESS_INTERVAL='3600',
      AIRFLOW__SCHEDULER__DAG_DIR_LIST_INTERVAL='3600',
      # A task's heartbeat comes from its supervising process; TensorFlow can starve it on 2 cores.
      AIRFLOW__SCHEDULER__SCHEDULER_ZOMBIE_TASK_THRESHOLD='1800',
      AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT='3600')
  return env


@dataclasses.dataclass
class TaskTimes:
  """One task instance of a DAG run as Airflow's metadata database records it.

  `queued` is when the scheduler handed it to the executor, which then starts its process: that
  process parses the DAG file (TensorFlow's and TFX's imports) before `start`, when the task's own
  work begins. `end` is when it finished.
  """
  task_id: str
  state: Optional[str]
  queued: Optional[datetime.datetime]
  start: Optional[datetime.datetime]
  end: Optional[datetime.datetime]


@dataclasses.dataclass
class DagRunResult:
  """A finished (or timed-out) DAG run: its state, its times and its task instances."""
  dag_id: str
  run_id: str
  state: Optional[str]
  start: Optional[datetime.datetime]
  end: Optional[datetime.datetime]
  tasks: List[TaskTimes]
  seconds_to_finish: float  # from the trigger to the run's end state, as the caller waited
  scheduler_log: str

  @property
  def wall_seconds(self) -> Optional[float]:
    """The DAG run's own wall time (its first task queued to its last task done)."""
    return (self.end - self.start).total_seconds() if self.start and self.end else None

  def overlaps(self, queued: bool = False) -> List[tuple]:
    """(task id, task id, seconds shared) for every two task instances that ran at the same time:
    their [start, end] intervals intersect, or with `queued` their [queued, end] ones (their
    processes, DAG file parse included, were alive at once)."""
    since = (lambda t: t.queued) if queued else (lambda t: t.start)
    done = [t for t in self.tasks if since(t) and t.end]
    pairs = []
    for i, a in enumerate(done):
      for b in done[i + 1:]:
        shared = (min(a.end, b.end) - max(since(a), since(b))).total_seconds()
        if shared > 0:
          pairs.append((a.task_id, b.task_id, shared))
    return pairs


def _airflow(env: Mapping[str, str], *args: str, timeout: float = 900) -> subprocess.CompletedProcess:
  return _check(['airflow', *args], timeout=timeout, env=dict(env), cwd=REPO)


def _query_run(database_url: str, dag_id: str, run_id: str):
  import sqlalchemy  # pylint: disable=g-import-not-at-top  (Airflow's; not needed to import this module)
  engine = sqlalchemy.create_engine(database_url, poolclass=sqlalchemy.pool.NullPool)
  try:
    with engine.connect() as connection:
      run = connection.execute(sqlalchemy.text(
          'SELECT state, start_date, end_date FROM dag_run WHERE dag_id = :d AND run_id = :r'),
          {'d': dag_id, 'r': run_id}).fetchone()
      tasks = connection.execute(sqlalchemy.text(
          'SELECT task_id, state, queued_dttm, start_date, end_date FROM task_instance '
          'WHERE dag_id = :d AND run_id = :r ORDER BY start_date'),
          {'d': dag_id, 'r': run_id}).fetchall()
  finally:
    engine.dispose()
  as_time = lambda value: (datetime.datetime.fromisoformat(value) if isinstance(value, str)
                           else value)
  return run, [TaskTimes(t[0], t[1], *(as_time(v) for v in t[2:])) for t in tasks]


def _stop_scheduler(process: subprocess.Popen) -> None:
  """SIGTERM to the scheduler (it ends its executor and the task processes), then SIGKILL to
  whatever is left of its process group (started with a session of its own) after a minute."""
  if process.poll() is None:
    process.terminate()
    try:
      process.wait(timeout=60)
    except subprocess.TimeoutExpired:
      pass
  try:
    os.killpg(process.pid, signal.SIGKILL)
  except ProcessLookupError:
    pass
  process.wait()


def run_dag(env: Mapping[str, str], dag_id: str, run_id: Optional[str] = None,
            timeout: float = 3600, poll_seconds: float = 5) -> DagRunResult:
  """Migrates the metadata database, triggers `dag_id` and schedules it until the run ends.

  The DAG is serialized into the database (`airflow dags reserialize`, one parse), unpaused and
  triggered before `airflow scheduler` starts, so the scheduler's executor runs it from its first
  loop. The database is polled (no CLI process per poll) until the run is `success` or `failed`
  or `timeout` seconds pass; the scheduler and its task processes are then stopped.

  Args:
    env: from airflow_environment.
    dag_id: the DAG (the model's name).
    run_id: the DAG run's id; default `manual__<now, UTC>` as the UI's. The run's artifacts are
      named after it in ML Metadata, so it must be new to the output directory's MLMD too.
    timeout: seconds to wait for the run to end after the trigger.
    poll_seconds: between two looks at the database.

  Returns:
    The DAG run as Airflow recorded it; state None or `running` if it timed out.

  Raises:
    LocalAirflowError: an Airflow command failed (message: its error), e.g. the DAG file does not
      parse, or the scheduler exited before the run ended.
  """
  home = env['AIRFLOW_HOME']
  os.makedirs(home, exist_ok=True)
  run_id = run_id or 'manual__' + datetime.datetime.now(datetime.timezone.utc).isoformat()
  _airflow(env, 'db', 'migrate')
  _airflow(env, 'dags', 'reserialize')
  _airflow(env, 'dags', 'unpause', dag_id)
  _airflow(env, 'dags', 'trigger', dag_id, '--run-id', run_id)
  triggered = time.time()
  log_path = os.path.join(home, 'scheduler.log')
  with open(log_path, 'w', encoding='utf-8') as log:
    scheduler = subprocess.Popen(['airflow', 'scheduler'], env=dict(env), cwd=REPO, stdout=log,
                                 stderr=subprocess.STDOUT, start_new_session=True)
  url = env['AIRFLOW__DATABASE__SQL_ALCHEMY_CONN']
  try:
    while True:
      run, tasks = _query_run(url, dag_id, run_id)
      state = run[0] if run else None
      if state in ('success', 'failed') or time.time() - triggered > timeout:
        break
      if scheduler.poll() is not None:
        raise LocalAirflowError(f'airflow scheduler exited {scheduler.returncode} before the DAG '
                                f'run ended: see {log_path}')
      time.sleep(poll_seconds)
    finished = time.time() - triggered
  finally:
    _stop_scheduler(scheduler)
  with open(log_path, encoding='utf-8', errors='replace') as f:
    scheduler_log = f.read()
  as_time = lambda value: (datetime.datetime.fromisoformat(value) if isinstance(value, str)
                           else value)
  return DagRunResult(dag_id, run_id, state, as_time(run[1]) if run else None,
                      as_time(run[2]) if run else None, tasks, finished, scheduler_log)


def task_log(env: Mapping[str, str], dag_id: str, run_id: str, task_id: str) -> str:
  """The last attempt's log of a task instance ('' if it never ran)."""
  logs = sorted(glob.glob(os.path.join(env['AIRFLOW_HOME'], 'logs', f'dag_id={dag_id}',
                                       f'run_id={run_id}', f'task_id={task_id}', 'attempt=*.log')))
  if not logs:
    return ''
  with open(logs[-1], encoding='utf-8', errors='replace') as f:
    return f.read()


def dag_graphs(envs: Mapping[str, Mapping[str, str]], timeout: float = 1800) -> Dict[str, dict]:
  """Parses the DAG file once per model with Airflow's DagBag, in one child process.

  Args:
    envs: {model: its environment (airflow_environment)}. The Airflow settings (executor,
      database, home) are the first model's: Airflow reads them once per process.

  Returns:
    {model: {'dag_ids', 'import_errors', 'executor', 'parallelism', 'max_active_tasks',
    'upstream': {task_id: sorted upstream task ids}, 'serialized_upstream': the same after
    SerializedDAG's round trip, 'tensorflow_runs_after_fork': whether a process forked after
    this and the earlier models' parses ran a tf.function (Airflow forks each task's process
    after parsing the DAG file)}}.

  Raises:
    LocalAirflowError: the child process failed (its error in the message).
  """
  first = next(iter(envs.values()))
  models = {model: {'OFFICIAL_TFX_MODEL': env['OFFICIAL_TFX_MODEL'],
                    'OFFICIAL_TFX_FLAGS': env['OFFICIAL_TFX_FLAGS']} for model, env in envs.items()}
  result = _check([sys.executable, '-m', 'tests.airflow_local', 'graphs', json.dumps(models)],
                  timeout=timeout, env=dict(first), cwd=REPO)
  (line,) = [l for l in result.stdout.splitlines() if l.startswith('GRAPHS ')]
  return json.loads(line[len('GRAPHS '):])


def _tensorflow_runs_after_fork(timeout: float = 120) -> bool:
  """Whether a process forked now runs a tf.function, as an Airflow task's process forked after
  the DAG file's parse does. If the parse started TensorFlow's eager runtime, whose threads do not
  survive a fork, the forked process hangs; it is killed after `timeout` seconds."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  pid = os.fork()
  if pid == 0:  # the forked process: exit at once, whatever happens
    try:
      ok = int(tf.function(lambda x: x * 2)(tf.constant(3))) == 6
    except BaseException:  # pylint: disable=broad-except
      ok = False
    os._exit(0 if ok else 1)  # pylint: disable=protected-access
  deadline = time.time() + timeout
  while time.time() < deadline:
    done, status = os.waitpid(pid, os.WNOHANG)
    if done:
      return os.waitstatus_to_exitcode(status) == 0
    time.sleep(0.2)
  os.kill(pid, signal.SIGKILL)
  os.waitpid(pid, 0)
  return False


def _print_dag_graphs(models: Mapping[str, Mapping[str, str]]) -> None:
  """dag_graphs' child: parses the DAG file per model and prints the graphs as one JSON line."""
  from airflow.configuration import conf  # pylint: disable=g-import-not-at-top
  from airflow.models.dagbag import DagBag  # pylint: disable=g-import-not-at-top
  from airflow.serialization.serialized_objects import SerializedDAG  # pylint: disable=g-import-not-at-top
  graphs = {}
  for model, variables in models.items():
    os.environ.update(variables)
    bag = DagBag(dag_folder=os.path.join(RUNNERS, 'airflow_dag.py'), include_examples=False)
    graph = {'dag_ids': sorted(bag.dags), 'import_errors': dict(bag.import_errors),
             'executor': conf.get('core', 'executor'),
             'parallelism': conf.getint('core', 'parallelism')}
    dag = bag.dags.get(model)
    if dag is not None:
      serialized = SerializedDAG.from_dict(SerializedDAG.to_dict(dag))
      graph.update(
          max_active_tasks=dag.max_active_tasks,
          upstream={t.task_id: sorted(t.upstream_task_ids) for t in dag.tasks},
          serialized_upstream={t.task_id: sorted(t.upstream_task_ids) for t in serialized.tasks})
    graph['tensorflow_runs_after_fork'] = _tensorflow_runs_after_fork()
    graphs[model] = graph
  print('GRAPHS ' + json.dumps(graphs), flush=True)


if __name__ == '__main__':
  if sys.argv[1:2] != ['graphs'] or len(sys.argv) != 3:
    sys.exit('usage: python -m tests.airflow_local graphs \'{"model": {variables}}\'')
  _print_dag_graphs(json.loads(sys.argv[2]))
