"""The Beam stages of census, higgs and mrpc on Flink, on Spark and on SDK workers in other
processes give DirectRunner's outputs: the same example counts, the same metrics to 4 decimals, the
same predictions of `official-tfx predict`.

All slow (`-m slow`): every test runs whole pipelines, and Flink and Spark fetch Beam's job server
jar (150-250 MB) from Maven Central on first use. A Flink or Spark test skips, saying why, when
its jar can be neither found in Beam's cache nor fetched (.ci/run fetches them for the slow tier).
The EXTERNAL tests run their SDK workers in `python -m beam_runner.worker_pool`, started in an
empty folder with only an installed copy of this package (`pip install --target`) on its path.
"""

import glob
import json
import os
import shutil
import socket
import subprocess
import sys
import time

import pytest

from beam_runner import runners
from tests import helpers

pytestmark = pytest.mark.slow

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Few rows and steps: the point is the Beam stages, not the model.
MODELS = {
    'census': ['--train_count=2000', '--eval_count=1000', '--train_steps=20'],
    'higgs': ['--sample', '--train_count=2000', '--eval_count=1000', '--num_trees=10'],
    'mrpc': ['--train_count=300', '--eval_count=100', '--train_steps=5'],
}
# A few raw rows of each model's eval file for `official-tfx predict` (path under the data root).
PREDICT_INPUT = {'census': 'census/adult.test.gz', 'higgs': 'higgs/HIGGS.sample-5k.csv',
                 'mrpc': 'glue/MRPC/dev.tsv'}
PREDICT_ROWS = 200
PACKAGES = ('beam_runner', 'components', 'model_fns', 'pipelines', 'preprocessing')  # setup.py's
ENGINES = {
    'flink': ['--beam_runner=flink'],  # Flink's embedded mini-cluster, LOOPBACK workers
    'spark': ['--beam_runner=spark'],  # Spark local[2], LOOPBACK workers
}


def _predict_input(data_root: str, model: str, folder) -> str:
  """The first PREDICT_ROWS lines of the model's eval file, as a plain file in `folder`."""
  import gzip  # pylint: disable=import-outside-toplevel
  source = os.path.join(data_root, PREDICT_INPUT[model])
  opener = gzip.open if source.endswith('.gz') else open
  with opener(source, 'rt', encoding='utf-8') as f:
    lines = [next(f) for _ in range(PREDICT_ROWS)]
  path = os.path.join(str(folder), f'{model}-input.txt')
  with open(path, 'w', encoding='utf-8') as f:
    f.writelines(lines)
  return path


def run_and_predict(model: str, data_root: str, folder, engine_flags):
  """`official-tfx run` then `official-tfx predict` of `model` with `engine_flags`: returns
  (run_summary.json, the predictions, the seconds each took)."""
  output_dir = os.path.join(str(folder), 'out')
  started = time.time()
  result = helpers.run_cli('run', model, f'--data_root={data_root}', f'--output_dir={output_dir}',
                           *MODELS[model], *engine_flags, timeout=1800)
  run_seconds = time.time() - started
  assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
  with open(os.path.join(output_dir, 'run_summary.json')) as f:
    summary = json.load(f)
  predictions = os.path.join(str(folder), 'predictions.jsonl')
  # The trained model, pushed or not (few steps rarely pass the blessing bars).
  (model_dir,) = glob.glob(os.path.join(output_dir, 'pipeline_root', 'Trainer', 'model', '*',
                                        'Format-Serving'))
  started = time.time()
  result = helpers.run_cli('predict', model, f'--input={_predict_input(data_root, model, folder)}',
                           f'--output={predictions}', f'--model_dir={model_dir}',
                           *engine_flags, timeout=900)
  predict_seconds = time.time() - started
  assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
  with open(predictions) as f:
    records = [json.loads(line) for line in f]
  return summary, records, (run_seconds, predict_seconds)


def assert_same_outputs(reference, other):
  """The same examples per split, metrics to 4 decimals, and predictions row by row."""
  (summary, records, _), (other_summary, other_records, _) = reference, other
  assert other_summary['error'] is None
  assert ({split: entry['examples'] for split, entry in other_summary['data'].items()}
          == {split: entry['examples'] for split, entry in summary['data'].items()})
  assert all(entry['examples'] for entry in summary['data'].values())
  assert other_summary['metrics'].keys() == summary['metrics'].keys()
  for name, value in summary['metrics'].items():
    assert other_summary['metrics'][name] == pytest.approx(value, abs=5e-5), name
  assert len(other_records) == len(records) > 0
  for mine, theirs in zip(other_records, records):
    assert (mine['line'], mine.get('class_id')) == (theirs['line'], theirs.get('class_id'))
    assert mine.get('probabilities') == pytest.approx(theirs.get('probabilities'), abs=5e-5)


@pytest.fixture(scope='module')
def direct(tmp_path_factory, data_root):
  """DirectRunner's run and predictions of each model, made once for the module's tests."""
  made = {}

  def reference(model):
    if model not in made:
      made[model] = run_and_predict(model, data_root, tmp_path_factory.mktemp(f'{model}-direct'),
                                    [])
    return made[model]
  return reference


def _job_server_or_skip(runner: str) -> None:
  """Skips the test when Beam's job server jar for `runner` can be neither found nor fetched."""
  try:
    runners.check_services(runners.BeamRunnerConfig(runner=runner))
  except runners.BeamOptionsError as e:
    pytest.skip(f'no {runner} job server here: {e}')


@pytest.mark.parametrize('engine', sorted(ENGINES))
@pytest.mark.parametrize('model', sorted(MODELS))
def test_beam_stages_on_flink_and_spark_equal_direct_runner(model, engine, direct, data_root,
                                                             tmp_path):
  _job_server_or_skip(engine)
  reference = direct(model)
  assert_same_outputs(reference, run_and_predict(model, data_root, tmp_path, ENGINES[engine]))


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(('localhost', 0))
    return s.getsockname()[1]


@pytest.fixture(scope='module')
def worker_pool(tmp_path_factory):
  """`python -m beam_runner.worker_pool` serving on a free port, started in an empty folder with
  an installed copy of this package as its only project code (no checkout on its path): yields
  its `--environment_config` address."""
  source = tmp_path_factory.mktemp('source')  # a copy: the build writes beside setup.py
  for name in ('setup.py', 'README.md', *PACKAGES):
    copy = shutil.copytree if os.path.isdir(os.path.join(REPO, name)) else shutil.copy
    copy(os.path.join(REPO, name), str(source / name))
  site = tmp_path_factory.mktemp('installed')
  subprocess.run([sys.executable, '-m', 'pip', 'install', '--quiet', '--no-deps',
                  '--no-build-isolation', '--target', str(site), str(source)], check=True,
                 capture_output=True, timeout=600)
  folder = tmp_path_factory.mktemp('workers')
  env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
  env['PYTHONPATH'] = str(site)  # the installed copy, ahead of any editable install
  port = _free_port()
  log = open(folder / 'worker_pool.log', 'w+')  # pylint: disable=consider-using-with
  pool = subprocess.Popen([sys.executable, '-m', 'beam_runner.worker_pool',
                           f'--service_port={port}'], cwd=str(folder), env=env, stdout=log,
                          stderr=subprocess.STDOUT)
  try:
    deadline = time.time() + 120
    while 'serving at port' not in (folder / 'worker_pool.log').read_text():
      assert pool.poll() is None and time.time() < deadline, (
          (folder / 'worker_pool.log').read_text()[-3000:])
      time.sleep(1)
    served_from = (folder / 'worker_pool.log').read_text().split('this package from ')[1].split()[0]
    assert os.path.realpath(served_from) == os.path.realpath(str(site))
    yield f'localhost:{port}', folder
  finally:
    pool.terminate()
    pool.wait(timeout=60)
    log.close()


@pytest.mark.parametrize('model', sorted(MODELS))
def test_beam_stages_on_external_workers_that_cannot_see_the_checkout(model, direct, worker_pool,
                                                                       data_root, tmp_path):
  """The Beam stages on SDK workers in other processes, which import only the installed package:
  the line parsers, the op libraries of TF-DF (higgs) and TF Text (mrpc's Transform graph and
  model), the harness configuration."""
  address, folder = worker_pool
  flags = ['--beam_runner=portable', '--environment_type=EXTERNAL',
           f'--environment_config={address}']
  assert_same_outputs(direct(model), run_and_predict(model, data_root, tmp_path, flags))
  log = (folder / 'worker_pool.log').read_text()
  assert 'Starting SDK worker' in log
  plugins = 'tensorflow_decision_forests' if model == 'higgs' else (
      'tensorflow_text' if model == 'mrpc' else 'beam_runner.worker_setup')
  assert f"'beam_plugins': ['beam_runner.worker_setup'" in log and plugins in log
  # beam_runner.worker_setup ran in the workers: their harness is configured as this process's.
  assert ('official-tfx worker setup: Beam SDK harness configured (state cache weighing without '
          'the walk over module globals: True)') in log
  assert REPO not in log.split('this package from ')[1].split()[0]
