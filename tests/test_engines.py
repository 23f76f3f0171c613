"""The same census pipeline on the other engines: the `tfx` CLI (local and beam engines), Airflow
(`airflow dags test` on SQLite; a scheduler with the LocalExecutor on PostgreSQL, independent tasks
side by side; every model's DAG parsed under that setup) and Kubeflow Pipelines v2 / Vertex
(compiled and validated)."""

import dataclasses
import glob
import json
import os
import subprocess
import sys
import time

import pytest
import yaml
from google.protobuf import json_format
from kfp import components as kfp_components
from kfp.pipeline_spec import pipeline_spec_pb2

from pipelines import engines, factory, metadata, spec as spec_lib
from pipelines.factory import RunConfig
from tests import airflow_local, helpers

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUNNERS = os.path.join(REPO, 'pipelines', 'runners')
BIN = os.path.dirname(sys.executable)
IMAGE = 'us-docker.pkg.dev/my-project/tfx/official-tfx:0.1'
# A real but smaller census run for the engines: the first 12,000 adult.data rows to train, the
# 6,000 adult.test rows after its junk first line to evaluate, 1,000 steps (accuracy measured
# below; the blessing bar is 0.83).
ENGINE_FLAGS = '--train_count=12000 --eval_start=1 --eval_count=6000 --train_steps=1000'
EVAL_ROWS = 6000
SEED_BAR = 0.83


def _engine_env(tmp_path, data_root, output_dir, extra_flags=''):
  env = dict(os.environ, PATH=BIN + os.pathsep + os.environ.get('PATH', ''),
             OFFICIAL_TFX_MODEL='census',
             OFFICIAL_TFX_FLAGS=f'--data_root={data_root} --output_dir={output_dir} '
                                f'{ENGINE_FLAGS} {extra_flags}',
             PYTHONPATH=REPO)
  env.pop('OFFICIAL_TFX_DATA_ROOT', None)  # the flags name the data root
  return env


def _eval_lines(adult_lines):
  """The adult.test lines that ENGINE_FLAGS evaluates on."""
  return adult_lines['eval'][1:EVAL_ROWS + 1]


def _assert_census_pushed_a_blessed_model(out, started, adult_lines):
  """One blessing in the run's ML Metadata, blessed; one model pushed since `started` (a time),
  which serves ENGINE_FLAGS' eval rows at the seed's accuracy bar."""
  store = metadata.open_store(str(out / 'metadata.sqlite'))
  blessings = store.get_artifacts_by_type('ModelBlessing')
  assert [b.custom_properties['blessed'].int_value for b in blessings] == [1]
  (pushed,) = glob.glob(str(out / 'serving_model' / '*' / 'saved_model.pb'))
  assert os.path.getmtime(pushed) >= started
  assert helpers.census_serving_accuracy(os.path.dirname(pushed), _eval_lines(adult_lines)) >= SEED_BAR


def _run(args, env, cwd, timeout=900):
  result = subprocess.run(args, env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, check=False)
  assert result.returncode == 0, (args, result.stdout[-3000:], result.stderr[-5000:])
  return result


@pytest.mark.e2e
@pytest.mark.slow  # ~3 min; keeps the default run within 30 min (`-m slow` runs it)
def test_tfx_cli_registers_and_runs_census_on_the_local_and_beam_engines(tmp_path, data_root,
                                                                          adult_lines):
  out = tmp_path / 'out'
  env = _engine_env(tmp_path, data_root, out)
  env.update(LOCAL_HOME=str(tmp_path / 'local_home'), BEAM_HOME=str(tmp_path / 'beam_home'))

  created = _run(['tfx', 'pipeline', 'create', '--engine=local',
                  f'--pipeline_path={RUNNERS}/local_runner.py'], env, tmp_path)
  assert 'Pipeline "census" created successfully' in created.stdout
  with open(tmp_path / 'local_home' / 'census' / 'pipeline_args.json') as f:
    registered = json.load(f)
  assert registered['pipeline_name'] == 'census'
  assert registered['pipeline_root'] == str(out / 'pipeline_root')
  assert not (out / 'metadata.sqlite').exists()  # registering runs nothing

  _run(['tfx', 'run', 'create', '--engine=local', '--pipeline_name=census'], env, tmp_path)
  summary_metrics = dict(spec_lib.get('census').evaluation.summary_metrics)
  store = metadata.open_store(str(out / 'metadata.sqlite'))
  local = metadata.summarize(store, 'census', 0, summary_metrics)
  names = [s['name'] for s in local['stages']]
  assert {'TextLineExampleGen', 'Transform', 'Trainer', 'Evaluator', 'Pusher'} <= set(names)
  assert local['examples'] == {'train': 12000, 'eval': 6000}
  assert local['metrics']['example_count'] == EVAL_ROWS
  assert local['metrics']['accuracy'] >= SEED_BAR and local['blessed'], local['metrics']
  assert helpers.census_serving_accuracy(local['pushed_model'], _eval_lines(adult_lines)) == pytest.approx(
      local['metrics']['accuracy'], abs=2e-3)

  # The beam engine on the same pipeline root and ML Metadata: everything up to the Trainer is
  # served from the local engine's cache.
  since = metadata.now_ms()
  _run(['tfx', 'pipeline', 'create', '--engine=beam',
        f'--pipeline_path={RUNNERS}/beam_dag_runner.py'], env, tmp_path)
  _run(['tfx', 'run', 'create', '--engine=beam', '--pipeline_name=census'], env, tmp_path)
  beam = metadata.summarize(metadata.open_store(str(out / 'metadata.sqlite')), 'census', since,
                            summary_metrics)
  cached = {s['name'] for s in beam['stages'] if s['cached']}
  assert {'TextLineExampleGen', 'StatisticsGen', 'Transform', 'Trainer'} <= cached, beam['stages']
  # The Evaluator runs again: its baseline is now the model the first run blessed.
  assert beam['metrics']['accuracy'] == pytest.approx(local['metrics']['accuracy'])


@pytest.mark.slow  # minutes on 2 cores; the fast tier runs this pipeline on synthetic files (`-m slow` runs it)
@pytest.mark.e2e
def test_airflow_runs_the_census_dag_and_pushes_a_blessed_model(tmp_path, data_root, adult_lines):
  out = tmp_path / 'out'
  env = _engine_env(tmp_path, data_root, out)
  env.update(AIRFLOW_HOME=str(tmp_path / 'airflow'),
             AIRFLOW__CORE__DAGS_FOLDER=RUNNERS,
             AIRFLOW__CORE__LOAD_EXAMPLES='False',
             # A parse imports TF and TFX's components: ~22 s here, Airflow's default limit 30 s.
             AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT='300',
             AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f'sqlite:///{tmp_path}/airflow/airflow.db')
  _run(['airflow', 'db', 'migrate'], env, tmp_path)
  listed = _run(['airflow', 'dags', 'list', '--output', 'json'], env, tmp_path)
  (dags,) = [line for line in listed.stdout.splitlines() if line.startswith('[{')]
  assert [d['dag_id'] for d in json.loads(dags)] == ['census'], listed.stdout[-3000:]

  started = time.time()
  result = _run(['airflow', 'dags', 'test', 'census', '2026-11-21'], env, tmp_path)
  log = result.stdout + result.stderr
  for task in ('TextLineExampleGen', 'Transform', 'Trainer', 'Evaluator', 'Pusher'):
    assert f'task_id={task},' in log and f'Marking task as SUCCESS. dag_id=census, task_id={task}' in log
  assert 'state=success' in log

  # Blessed by the Evaluator (ML Metadata in the run's SQLite) and pushed by the Pusher.
  _assert_census_pushed_a_blessed_model(out, started, adult_lines)


# Airflow on PostgreSQL with the LocalExecutor (README, "Airflow on PostgreSQL"): two task instances
# at once, as many as the test machine's cores.
PARALLELISM = 2
RESOLVER = 'latest_blessed_model_resolver'
EXAMPLE_GENS = {'census': 'TextLineExampleGen', 'cifar10': 'ImageExampleGen',
                'higgs': 'TextLineExampleGen', 'imagenet': 'ImageExampleGen',
                'mnist': 'IdxExampleGen', 'movielens': 'TextLineExampleGen',
                'movielens-1m': 'TextLineExampleGen', 'movielens-20m': 'TextLineExampleGen',
                'mrpc': 'TextLineExampleGen', 'wmt': 'ParallelTextExampleGen'}
# The data root holds HIGGS' samples, not the 7.5 GB HIGGS.csv.
PARSE_FLAGS = {'higgs': '--sample'}
# MovieLens 1M and 20M are not in the data root (downloaded on a first run): a few ratings in
# their layouts stand in, given as --ratings_data (a parse reads no more than their digests).
RATINGS_LINES = {'movielens-1m': ('ratings.dat', '1::1193::5::978300760\n2::1357::4::978298709\n'),
                 'movielens-20m': ('ratings.csv', 'userId,movieId,rating,timestamp\n'
                                                  '1,2,3.5,1112486027\n2,29,3.5,1112484676\n')}


def _expected_upstream(example_gen, spec):
  """Each task's upstream tasks in the DAG of `spec` (its ExampleGen's id `example_gen`): its
  components' inputs and explicit orderings."""
  upstream = {example_gen: [], 'StatisticsGen': [example_gen], 'ImportSchemaGen': [],
              'ExampleValidator': ['ImportSchemaGen', 'StatisticsGen'],
              'AnomaliesGate': ['ExampleValidator', example_gen], RESOLVER: [],
              'Evaluator': ['Trainer', example_gen, RESOLVER],
              'ServingCheck': ['Evaluator', 'Trainer', example_gen],
              'Pusher': ['Evaluator', 'ServingCheck', 'Trainer']}
  if spec.preprocessing_fn:
    upstream['Transform'] = ['AnomaliesGate', 'ImportSchemaGen', example_gen]
    # Not materialized: the Trainer reads the raw examples with the transform graph.
    upstream['Trainer'] = ['ImportSchemaGen', 'Transform'] + (
        [] if spec.materialize_transform else [example_gen])
  else:  # the model reads the raw examples
    upstream['Trainer'] = ['AnomaliesGate', 'ImportSchemaGen', example_gen]
  return {task: sorted(tasks) for task, tasks in upstream.items()}


@pytest.fixture(scope='module')
def postgres():
  """A PostgreSQL server on loopback for this module's Airflow runs (Debian's `postgresql`)."""
  if not airflow_local.postgres_bindir():
    pytest.skip('PostgreSQL is not installed (apt-get install postgresql; .ci/run installs it)')
  with airflow_local.LocalPostgres() as server:
    yield server


def _local_executor_env(tmp_path, database_url, model, flags):
  return airflow_local.airflow_environment(str(tmp_path / 'airflow'), database_url,
                                           'LocalExecutor', model, flags, parallelism=PARALLELISM)


def _dag_run_failure(env, result):
  """The assertion message of an unsuccessful DAG run: its tasks and the failed ones' logs."""
  lines = [f'DAG run {result.state}:'] + [f'  {t.task_id}: {t.state}' for t in result.tasks]
  for task in result.tasks:
    if task.state not in ('success', None):
      lines.append(f'--- {task.task_id} log:\n' +
                   airflow_local.task_log(env, result.dag_id, result.run_id, task.task_id)[-4000:])
  return '\n'.join(lines + ['--- scheduler log:', result.scheduler_log[-3000:]])


def _assert_no_mlmd_lock_errors(env, result):
  """ML Metadata stays the run's SQLite file: writers of the same moment wait for its lock (MLMD
  retries 10 times, 100-300 ms apart, then fails with "Concurrent writes aborted")."""
  for task in result.tasks:
    log = airflow_local.task_log(env, result.dag_id, result.run_id, task.task_id)
    assert 'database is locked' not in log and 'Concurrent writes aborted' not in log, task.task_id


def _side_by_side(result):
  """The task table of a DAG run, for the assertion messages."""
  return '\n'.join(f'  {t.task_id}: queued {t.queued}, ran {t.start} .. {t.end}'
                    for t in result.tasks)


def _assert_dag_ran_roots_side_by_side(env, result, name):
  """A successful DAG run of model `name` under the LocalExecutor: every task of its graph ran and
  succeeded, two of its roots (ExampleGen, ImportSchemaGen, the resolver: they wait for nothing)
  were each queued, their processes started, before the other's end (under the SequentialExecutor,
  or parallelism 1, no two task instances overlap so), and no task met SQLite's lock."""
  assert result.state == 'success', _dag_run_failure(env, result)
  assert sorted(t.task_id for t in result.tasks) == sorted(
      _expected_upstream(EXAMPLE_GENS[name], spec_lib.get(name)))
  assert {t.state for t in result.tasks} == {'success'}
  roots = {EXAMPLE_GENS[name], 'ImportSchemaGen', RESOLVER}
  assert [(a, b) for a, b, _ in result.overlaps(queued=True) if {a, b} <= roots], (
      _side_by_side(result))
  _assert_no_mlmd_lock_errors(env, result)


def test_every_models_dag_parses_under_the_local_executor_with_independent_roots(tmp_path,
                                                                                 data_root):
  # Parsed as the scheduler does (DagBag, then the serialized DAG it stores in the database), with
  # the LocalExecutor on PostgreSQL configured: no server is needed to parse.
  url = f'postgresql+psycopg2://airflow@127.0.0.1:{airflow_local.free_port()}/airflow'
  envs = {}
  for name in spec_lib.names():
    flags = f'--data_root={data_root} --output_dir={tmp_path / name} {PARSE_FLAGS.get(name, "")}'
    if name in RATINGS_LINES:
      file_name, lines = RATINGS_LINES[name]
      (tmp_path / file_name).write_text(lines)
      flags += f' --ratings_data={tmp_path / file_name}'
    envs[name] = _local_executor_env(tmp_path, url, name, flags)
  graphs = airflow_local.dag_graphs(envs)
  assert sorted(graphs) == sorted(EXAMPLE_GENS) == list(spec_lib.names())
  assert {name: graph['import_errors'] for name, graph in graphs.items()
          if graph['import_errors']} == {}
  # Parsing no DAG started TensorFlow's runtime: each task's process is forked after the parse.
  assert [name for name, graph in graphs.items() if not graph['tensorflow_runs_after_fork']] == []
  for name, graph in graphs.items():
    assert graph['dag_ids'] == [name]
    assert graph['executor'] == 'LocalExecutor' and graph['parallelism'] == PARALLELISM
    expected = _expected_upstream(EXAMPLE_GENS[name], spec_lib.get(name))
    assert graph['upstream'] == expected, name
    assert graph['serialized_upstream'] == expected, name
    # What the LocalExecutor starts together: the tasks that wait for nothing.
    roots = {task for task, upstream in graph['upstream'].items() if not upstream}
    assert roots == {EXAMPLE_GENS[name], 'ImportSchemaGen', RESOLVER}, name
    assert graph['max_active_tasks'] >= PARALLELISM  # the DAG itself does not serialize them


@pytest.mark.slow  # 2.5-3 min on 2 cores: a scheduler, 11 task processes that each parse the DAG
@pytest.mark.e2e
def test_local_executor_on_postgres_runs_census_tasks_side_by_side_to_a_pushed_model(
    tmp_path, data_root, adult_lines, postgres):
  out = tmp_path / 'out'
  env = _local_executor_env(tmp_path, postgres.create_database('airflow_census'), 'census',
                            f'--data_root={data_root} --output_dir={out} {ENGINE_FLAGS}')
  started = time.time()
  result = airflow_local.run_dag(env, 'census', timeout=3600)
  # The executor ran independent tasks at once, judged from their queued times: Airflow's start
  # dates come after each process parsed the DAG file (7-45 s here); the ImportSchemaGen's and the
  # resolver's own work is under 2 s, so whether it falls inside the ExampleGen's [start, end]
  # depends on which parse ended first: it did in 7 of 8 runs measured here, not something to
  # assert.
  _assert_dag_ran_roots_side_by_side(env, result, 'census')
  _assert_census_pushed_a_blessed_model(out, started, adult_lines)


# Other models' DAGs on the same server, each from its real data: boosted trees on the HIGGS samples
# (no Transform), the MNIST CNN on the IDX files (IdxExampleGen), NCF on
# ml-100k (the ranking protocol's splits). The fast tier runs every model's components; these run
# them as Airflow tasks, each task in its own process under the LocalExecutor.
LOCAL_EXECUTOR_RUNS = {
    'higgs': '--sample',
    'mnist': '--train_steps=300',
    'movielens': '',  # the default 20 epochs: HR@10 passes ml-100k's bar
}


@pytest.mark.slow  # 2-4 min each on 2 cores
@pytest.mark.e2e
@pytest.mark.parametrize('name', sorted(LOCAL_EXECUTOR_RUNS))
def test_local_executor_on_postgres_runs_the_models_dag_to_a_pushed_model(name, tmp_path,
                                                                          data_root, postgres):
  out = tmp_path / 'out'
  env = _local_executor_env(tmp_path, postgres.create_database(f'airflow_{name}'), name,
                            f'--data_root={data_root} --output_dir={out} '
                            f'{LOCAL_EXECUTOR_RUNS[name]}')
  result = airflow_local.run_dag(env, name, timeout=3600)
  _assert_dag_ran_roots_side_by_side(env, result, name)

  # Read from ML Metadata's artifacts: Airflow's launcher names its contexts after the DAG run.
  store = metadata.open_store(str(out / 'metadata.sqlite'))
  # The ExampleGen's Examples (a Transform writes transformed ones too), with the valid rows of
  # each input split (movielens reads one ratings file, which its split_fn divides).
  (examples,) = [a for a in store.get_artifacts_by_type('Examples')
                 if any(k.startswith('valid_rows_') for k in a.custom_properties)]
  rows = {k[len('valid_rows_'):]: v.int_value for k, v in examples.custom_properties.items()
          if k.startswith('valid_rows_')}
  assert rows and min(rows.values()) > 0, rows
  assert json.loads(examples.properties['split_names'].string_value) == ['train', 'eval']
  (evaluation,) = store.get_artifacts_by_type('ModelEvaluation')
  overall = metadata.evaluation_metrics(evaluation.uri, model_name='candidate')['']
  if name == 'higgs':
    assert rows == {'train': 10984, 'eval': 5000}
    assert overall['example_count'] == 5000
    assert overall['binary_accuracy'] >= 0.70 and overall['auc'] >= 0.77, overall
  blessings = store.get_artifacts_by_type('ModelBlessing')
  assert [b.custom_properties['blessed'].int_value for b in blessings] == [1], overall
  (pushed,) = glob.glob(str(out / 'serving_model' / '*' / 'saved_model.pb'))
  (pushed_model,) = store.get_artifacts_by_type('PushedModel')
  assert pushed_model.custom_properties['pushed'].int_value == 1
  assert os.path.dirname(pushed) == pushed_model.custom_properties['pushed_destination'].string_value


def _remote_run(name, tmp_path):
  spec = spec_lib.get(name)
  config = RunConfig(output_dir=str(tmp_path / name), remote_root=f'gs://my-bucket/{name}/root')
  files = {split: f'gs://my-bucket/data/{spec.dataset.directory}/{file}'
           for split, file in spec.dataset.splits.items()}
  side_files = {}
  if spec.example_gen_files:  # imagenet's label order: any 1,000 distinct wnids build the spec
    synsets = tmp_path / 'synsets.txt'
    synsets.write_text(''.join(f'n{i:08d}\n' for i in range(1000)))
    side_files = {setting: str(synsets) for setting in spec.example_gen_files}
  return spec, config, factory.RunInputs(split_files=files, example_gen_files=side_files)


@pytest.mark.parametrize('name', spec_lib.names())
def test_every_pipeline_compiles_to_a_valid_kfp_v2_spec(name, tmp_path):
  spec, config, files = _remote_run(name, tmp_path)
  output_file = tmp_path / f'{name}.json'
  engines.kubeflow_v2_pipeline_job(spec, config, files, image=IMAGE, output_file=str(output_file))
  with open(output_file) as f:
    job = json.load(f)
  json_format.ParseDict(job, pipeline_spec_pb2.PipelineJob())  # strict: unknown fields fail
  pipeline_spec = json_format.ParseDict(job['pipelineSpec'], pipeline_spec_pb2.PipelineSpec())
  # KFP's own loader reads it as a pipeline it could run or nest.
  loaded = kfp_components.load_component_from_text(yaml.safe_dump(job['pipelineSpec']))
  assert loaded.pipeline_spec.pipeline_info.name == name
  assert job['runtimeConfig']['gcsOutputDirectory'] == f'gs://my-bucket/{name}/root'

  tasks = pipeline_spec.root.dag.tasks
  executor_classes = {'TextLineExampleGen': 'components.text_example_gen.Executor',
                      'IdxExampleGen': 'components.idx_example_gen.Executor',
                      'ImageExampleGen': 'components.image_example_gen.Executor',
                      'ParallelTextExampleGen': 'components.parallel_text_example_gen.Executor'}
  (example_gen_task,) = [t for t in tasks if t in executor_classes]
  expected = {example_gen_task, 'StatisticsGen', 'ImportSchemaGen', 'ExampleValidator',
              'AnomaliesGate', 'Trainer', 'Evaluator', 'Pusher'}
  assert expected <= set(tasks)
  assert ('Transform' in tasks) == bool(spec.preprocessing_fn)
  assert set(tasks['Evaluator'].dependent_tasks) >= {'Trainer', example_gen_task}
  executors = job['pipelineSpec']['deploymentSpec']['executors']
  assert {e['container']['image'] for e in executors.values() if 'container' in e} == {IMAGE}
  example_gen = json.dumps(executors[f'{example_gen_task}_executor'])
  assert f'gs://my-bucket/data/{spec.dataset.directory}' in json.dumps(job)
  assert executor_classes[example_gen_task] in example_gen
  assert 'model_fns.trainer.run_fn' in json.dumps(job)
  assert f'gs://my-bucket/{name}/root/serving_model' in json.dumps(job)


def test_kubeflow_needs_remote_data_root_and_push_destination(tmp_path):
  spec, config, inputs = _remote_run('census', tmp_path)
  files = {**inputs.split_files, 'eval': '/local/adult.test'}
  with pytest.raises(engines.EngineConfigError) as e:
    engines.kubeflow_v2_config(spec, dataclasses.replace(config, remote_root=None), files)
  assert "--eval_data must be a remote URI (gs://...), not '/local/adult.test'" in str(e.value)
  assert '--pipeline_root must be a remote URI' in str(e.value)


def test_compile_cli_writes_the_spec_with_the_image_and_dataflow_options(tmp_path):
  flags = ['compile', 'census', f'--image={IMAGE}', '--pipeline_root=gs://my-bucket/root',
           '--train_data=gs://my-bucket/census/adult.data',
           '--eval_data=gs://my-bucket/census/adult.test', '--beam_runner=dataflow',
           '--project=my-project', '--region=us-central1', '--temp_location=gs://my-bucket/tmp',
           f'--output_file={tmp_path}/census.json']
  result = helpers.run_cli(*flags)
  assert result.returncode == 0, result.stderr[-3000:]
  assert f'Kubeflow Pipelines v2 spec {tmp_path}/census.json' in result.stdout
  with open(tmp_path / 'census.json') as f:
    executors = json.load(f)['pipelineSpec']['deploymentSpec']['executors']
  args = executors['Transform_executor']['container']['args']
  assert '--runner=DataflowRunner' in args and '--project=my-project' in args
  # The workers run the same image; the checkout's setup.py is not in the container.
  assert f'--sdk_container_image={IMAGE}' in args
  assert not any(a.startswith('--setup_file') for a in args)

  result = helpers.run_cli('compile', 'census', f'--image={IMAGE}',
                           '--pipeline_root=gs://my-bucket/root')
  assert result.returncode == 1
  assert 'give --train_data and --eval_data as remote URIs' in result.stderr


def test_runner_files_read_model_and_flags_from_the_environment(monkeypatch, tmp_path):
  monkeypatch.setenv(engines.MODEL_ENV, 'higgs')
  monkeypatch.setenv(engines.FLAGS_ENV, f'--output_dir={tmp_path} --num_trees=7 --sample')
  assert engines.parse_environment() == 'higgs'
  assert engines.settings.FLAGS.num_trees == 7 and engines.settings.FLAGS.sample
  monkeypatch.setenv(engines.FLAGS_ENV, '--num_tree=7')
  with pytest.raises(engines.EngineConfigError, match=r'\$OFFICIAL_TFX_FLAGS: .*num_tree'):
    engines.parse_environment()
  monkeypatch.setenv(engines.FLAGS_ENV, '')
  monkeypatch.delenv(engines.MODEL_ENV)
  assert engines.parse_environment() == 'census'
  assert engines.settings.FLAGS.num_trees is None  # earlier settings do not leak


def test_remote_split_files_share_one_input_base():
  assert factory.split_patterns({'train': 'gs://b/d/census/adult.data',
                                 'eval': 'gs://b/d/census/adult.test'}) == (
                                     'gs://b/d/census', {'train': 'adult.data',
                                                         'eval': 'adult.test'})
  with pytest.raises(ValueError, match='all be local or all under one bucket'):
    factory.split_patterns({'train': 'gs://b/x', 'eval': '/local/y'})



def test_tfx_cli_compiles_the_vertex_runner_file(tmp_path, data_root):
  env = _engine_env(tmp_path, data_root, tmp_path / 'out')
  env['OFFICIAL_TFX_FLAGS'] = (
      f'--image={IMAGE} --pipeline_root=gs://my-bucket/root '
      '--train_data=gs://my-bucket/census/adult.data '
      f'--eval_data=gs://my-bucket/census/adult.test --output_file={tmp_path}/census.json')
  result = _run(['tfx', 'pipeline', 'compile', '--engine=vertex',
                 f'--pipeline_path={RUNNERS}/kubeflow_v2_runner.py'], env, tmp_path)
  assert 'Pipeline census compiled successfully' in result.stdout
  with open(tmp_path / 'census.json') as f:
    job = json.load(f)
  assert job['runtimeConfig']['gcsOutputDirectory'] == 'gs://my-bucket/root'
  assert 'gs://my-bucket/root/serving_model' in json.dumps(job)
