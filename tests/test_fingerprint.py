"""pipelines.fingerprint and the cache keys it gives the pipeline: code, curated files and data
content reach TFX's cache, so an edit re-runs what it affects and an unchanged rerun is cached."""

import hashlib
import importlib
import json
import os
import time
import shutil
import subprocess
import sys
import textwrap
import uuid

import pytest
from tfx.dsl.compiler import compiler

from pipelines import factory, fingerprint, spec as spec_lib
from pipelines.factory import RunConfig
from preprocessing import census, datasets

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CODE_PACKAGES = ('components', 'model_fns', 'pipelines', 'preprocessing', 'beam_runner')


def _write(path, text):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, 'w') as f:
    f.write(textwrap.dedent(text))
  importlib.invalidate_caches()


@pytest.fixture
def toy_package(tmp_path, monkeypatch):
  """A throwaway package on sys.path (a unique name, never imported): `<pkg>.a` uses `<pkg>.b`
  in `f`, not in `g`; `<pkg>.c` is imported by nothing."""
  name = f'fp_toy_{uuid.uuid4().hex[:8]}'
  root = tmp_path / 'checkout1'
  _write(root / name / '__init__.py', '"""Toy package."""\n')
  _write(root / name / 'a.py', f'''\
      """Module a."""
      from {name} import b
      from {name}.c import UNUSED

      SCALE = 2


      def _helper(x):
        return x * SCALE


      def f(x):
        return b.offset(_helper(x))


      def g(x):
        return -x
      ''')
  _write(root / name / 'b.py', 'def offset(x):\n  return x + 1\n')
  _write(root / name / 'c.py', 'UNUSED = 1\nOTHER = 2\n')
  monkeypatch.syspath_prepend(str(root))
  return name, root


def _edit(path, old, new):
  with open(path) as f:
    text = f.read()
  assert old in text, (old, path)
  _write(path, text.replace(old, new))


def test_code_fingerprint_follows_the_code_a_definition_uses(toy_package):
  name, root = toy_package
  packages = (name,)

  def digest(*paths):
    return fingerprint.code_fingerprint(paths, packages=packages)

  f, module = digest(f'{name}.a.f'), digest(f'{name}.a')
  assert len(f) == 64 and f != module
  assert digest(f'{name}.a.f') == f  # deterministic
  assert digest(f'{name}.a.f', f'{name}.a') == digest(f'{name}.a', f'{name}.a.f')

  _edit(root / name / 'a.py', 'def g(x):', '# a comment\n\ndef g(x):')  # comments do not count
  assert (digest(f'{name}.a.f'), digest(f'{name}.a')) == (f, module)

  _edit(root / name / 'a.py', 'return -x', 'return -2 * x')  # g: not used by f
  assert digest(f'{name}.a.f') == f
  assert digest(f'{name}.a') != module
  module = digest(f'{name}.a')

  _edit(root / name / 'c.py', 'OTHER = 2', 'OTHER = 3')  # c: only UNUSED is imported, by nobody
  assert digest(f'{name}.a.f') == f

  _edit(root / name / 'a.py', 'SCALE = 2', 'SCALE = 3')  # a module constant f's helper reads
  assert digest(f'{name}.a.f') != f
  f = digest(f'{name}.a.f')

  _edit(root / name / 'b.py', 'x + 1', 'x + 2')  # the module f calls into
  assert digest(f'{name}.a.f') != f
  assert digest(f'{name}.a') != module
  f = digest(f'{name}.a.f')

  _edit(root / name / '__init__.py', 'Toy package.', 'Toy package, edited.')  # runs on import
  assert digest(f'{name}.a.f') != f


def test_code_fingerprint_is_the_same_in_another_checkout(toy_package, tmp_path, monkeypatch):
  name, root = toy_package
  before = fingerprint.code_fingerprint([f'{name}.a.f', f'{name}.a'], packages=(name,))
  other = tmp_path / 'elsewhere' / 'checkout2'
  shutil.copytree(root, other)
  os.utime(other / name / 'b.py', (1, 1))  # another mtime: it must not count either
  monkeypatch.syspath_prepend(str(other))
  importlib.invalidate_caches()
  assert importlib.util.find_spec(name).origin.startswith(str(other))
  assert fingerprint.code_fingerprint([f'{name}.a', f'{name}.a.f'], packages=(name,)) == before


def test_code_fingerprint_names_a_missing_module(toy_package):
  name, root = toy_package
  with pytest.raises(ModuleNotFoundError, match='no_such_module'):
    fingerprint.code_fingerprint(['no_such_module.fn'])
  # A project module that imports a missing one is still fingerprinted (it fails when run).
  _write(root / name / 'd.py', f'from {name}.gone import x\n\n\ndef h():\n  return x\n')
  assert len(fingerprint.code_fingerprint([f'{name}.d.h'], packages=(name,))) == 64


def test_data_fingerprint_is_cached_until_the_file_changes(tmp_path, monkeypatch):
  data = tmp_path / 'data' / 'rows.csv'
  _write(data, 'a,b\n1,2\n')
  cache_dir = tmp_path / 'cache'
  reads = []
  real = fingerprint._sha256_bytes
  monkeypatch.setattr(fingerprint, '_sha256_bytes', lambda p: reads.append(p) or real(p))

  first = fingerprint.data_fingerprint(str(data), str(cache_dir))
  assert first == hashlib.sha256(b'a,b\n1,2\n').hexdigest() and len(reads) == 1
  with open(cache_dir / fingerprint.DIGEST_CACHE_FILE) as f:
    entry = json.load(f)[str(data)]
  assert entry['sha256'] == first and entry['size'] == 8

  assert fingerprint.data_fingerprint(str(data), str(cache_dir)) == first
  assert len(reads) == 1  # served from the JSON cache

  # Replaced by another file of the same size, its mtime set back: the change time (which no
  # user sets) tells, and the content is read again.
  stat = os.stat(data)
  time.sleep(0.01)
  _write(data, 'a,b\n3,4\n')
  os.utime(data, ns=(stat.st_atime_ns, stat.st_mtime_ns))
  assert os.stat(data).st_mtime_ns == stat.st_mtime_ns and os.stat(data).st_size == 8
  second = fingerprint.data_fingerprint(str(data), str(cache_dir))
  assert second == hashlib.sha256(b'a,b\n3,4\n').hexdigest() and len(reads) == 2
  assert fingerprint.data_fingerprint(str(data), str(cache_dir)) == second and len(reads) == 2

  _write(data, 'a,b\n3,4\n5,6\n')  # a new size
  os.utime(data, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
  assert fingerprint.data_fingerprint(str(data), str(cache_dir)) not in (first, second)
  assert len(reads) == 3

  assert fingerprint.data_fingerprint('gs://bucket/rows.csv', str(cache_dir)) is None
  with pytest.raises(FileNotFoundError):
    fingerprint.data_fingerprint(str(tmp_path / 'missing.csv'), str(cache_dir))


def test_data_fingerprint_of_a_folder_sees_names_and_contents(tmp_path):
  folder = tmp_path / 'images'
  _write(folder / 'cat' / '1.png', 'one')
  _write(folder / 'dog' / '2.png', 'two')
  cache_dir = str(tmp_path / 'cache')
  first = fingerprint.data_fingerprint(str(folder), cache_dir)
  assert fingerprint.data_fingerprint(str(folder), cache_dir) == first
  os.rename(folder / 'dog' / '2.png', folder / 'dog' / '3.png')
  renamed = fingerprint.data_fingerprint(str(folder), cache_dir)
  assert renamed != first
  _write(folder / 'dog' / '3.png', 'six')  # same size, new content and mtime
  os.utime(folder / 'dog' / '3.png', ns=(0, 5 * 10**18))
  assert fingerprint.data_fingerprint(str(folder), cache_dir) not in (first, renamed)


def test_input_digests_reuse_the_registry_for_verified_files(tmp_path, data_root, monkeypatch):
  files = {'train': os.path.join(data_root, 'census', 'adult.data.gz'),
           'eval': os.path.join(data_root, 'census', 'adult.test.gz'),
           'remote': 'gs://bucket/adult.test'}
  cache_dir = str(tmp_path / 'cache')
  computed = fingerprint.input_digests(files, cache_dir)
  assert set(computed) == {'train', 'eval'}  # remote: left to TFX
  with open(files['train'], 'rb') as f:
    assert computed['train'] == hashlib.sha256(f.read()).hexdigest()

  def no_reading(*_):
    raise AssertionError('a verified canonical file was read again')
  monkeypatch.setattr(fingerprint, 'data_fingerprint', no_reading)
  reused = fingerprint.input_digests(files, cache_dir, dataset=census.DATASET,
                                     canonical=['train', 'eval'])
  assert reused == {'train': census.DATASET.file('adult.data').sha256,
                    'eval': census.DATASET.file('adult.test').sha256}


def test_input_digests_include_a_registered_companion(tmp_path, data_root):
  from preprocessing import mnist  # pylint: disable=import-outside-toplevel
  folder = tmp_path / 'mnist'
  folder.mkdir()
  for name in ('t10k-images-idx3-ubyte.gz', 't10k-labels-idx1-ubyte.gz'):
    shutil.copy(os.path.join(data_root, 'mnist', name), folder / name)
  images = str(folder / 't10k-images-idx3-ubyte.gz')
  cache_dir = str(tmp_path / 'cache')
  first = fingerprint.input_digests({'eval': images}, cache_dir, dataset=mnist.DATASET)
  assert first['eval'] != fingerprint.data_fingerprint(images, cache_dir)
  with open(folder / 't10k-labels-idx1-ubyte.gz', 'ab') as f:  # only the labels change
    f.write(b'\0')
  assert fingerprint.input_digests({'eval': images}, cache_dir,
                                   dataset=mnist.DATASET) != first


def _census_pipeline(tmp_path, **inputs):
  files = {'train': str(tmp_path / 'adult.data'), 'eval': str(tmp_path / 'adult.test')}
  return factory.create_pipeline(spec_lib.get('census'),
                                 RunConfig(output_dir=str(tmp_path / 'out')),
                                 factory.RunInputs(split_files=files, **inputs))


def test_every_project_component_carries_its_fingerprint_into_the_compiled_pipeline(tmp_path):
  pipeline = _census_pipeline(tmp_path, input_digests={'train': 'a' * 64, 'eval': 'b' * 64})
  keyed = {c.id: json.loads(c.exec_properties[fingerprint.FINGERPRINT_KEY])
           for c in pipeline.components if fingerprint.FINGERPRINT_KEY in c.exec_properties}
  assert {'TextLineExampleGen', 'ImportSchemaGen', 'AnomaliesGate', 'Transform', 'Trainer',
          'Evaluator'} <= set(keyed)
  for component in pipeline.components:  # every component of project code has its key
    if fingerprint.is_project_code(type(component).__module__):
      assert component.id in keyed, component.id
  assert keyed['TextLineExampleGen']['data'] == {'train': 'a' * 64, 'eval': 'b' * 64}
  with open(spec_lib.curated_schema('census'), 'rb') as f:
    assert keyed['ImportSchemaGen'] == {'schema': hashlib.sha256(f.read()).hexdigest()}
  assert keyed['Transform'] == {'code': fingerprint.code_fingerprint(
      ['preprocessing.census.preprocessing_fn'])}
  assert keyed['Trainer'] == {'code': fingerprint.code_fingerprint(
      ['model_fns.trainer.run_fn', 'model_fns.census.CensusTask'])}
  # The line parser is in the ExampleGen's key, but not the preprocessing_fn beside it.
  (example_gen,) = [c for c in pipeline.components if c.id == 'TextLineExampleGen']
  example_gen_code = fingerprint.component_code(
      example_gen, {'line_parser': 'preprocessing.census.parse_line'})
  assert 'preprocessing.census.parse_line' in example_gen_code
  assert keyed['TextLineExampleGen']['code'] == fingerprint.code_fingerprint(example_gen_code)
  assert len({keyed[node_id]['code'] for node_id in (
      'TextLineExampleGen', 'AnomaliesGate', 'Transform', 'Trainer', 'Evaluator')}) == 5

  ir = compiler.Compiler().compile(pipeline)
  compiled = {node.pipeline_node.node_info.id:
              node.pipeline_node.parameters.parameters.get(fingerprint.FINGERPRINT_KEY)
              for node in ir.nodes}
  for node_id, parts in keyed.items():
    assert json.loads(compiled[node_id].field_value.string_value) == parts

  again = _census_pipeline(tmp_path, input_digests={'train': 'a' * 64, 'eval': 'b' * 64})
  assert {c.id: c.exec_properties.get(fingerprint.FINGERPRINT_KEY) for c in again.components} == {
      c.id: c.exec_properties.get(fingerprint.FINGERPRINT_KEY) for c in pipeline.components}
  unknown = _census_pipeline(tmp_path)  # no digests: no data part, the code part stays
  (example_gen,) = [c for c in unknown.components if c.id == 'TextLineExampleGen']
  assert json.loads(example_gen.exec_properties[fingerprint.FINGERPRINT_KEY]) == {
      'code': keyed['TextLineExampleGen']['code']}


# ---------------------------------------------------------------------------------------------
# Acceptance: edits in a copied checkout re-run what they affect, and only that.

CENSUS_FLAGS = ['--train_steps', '20', '--train_count', '500', '--eval_count', '300']
BEFORE_TRANSFORM = ('TextLineExampleGen', 'StatisticsGen', 'ImportSchemaGen', 'ExampleValidator',
                    'AnomaliesGate')


def _run_census(checkout, data_root, output_dir):
  env = dict(os.environ, PYTHONPATH=str(checkout), TF_USE_LEGACY_KERAS='1')
  env.pop('OFFICIAL_TFX_DATA_ROOT', None)
  result = subprocess.run(
      [sys.executable, '-m', 'pipelines.cli', 'run', 'census', '--data_root', data_root,
       '--output_dir', str(output_dir), *CENSUS_FLAGS],
      cwd=checkout, env=env, capture_output=True, text=True, timeout=900, check=False)
  assert result.returncode == 0, (result.stdout[-3000:], result.stderr[-5000:])
  with open(output_dir / 'run_summary.json') as f:
    summary = json.load(f)
  assert summary['error'] is None, summary['error']
  return {stage['name']: stage['cached'] for stage in summary['stages']}


@pytest.mark.e2e
@pytest.mark.slow  # runs census of its own: `-m slow`, to keep the default run within 30 min
def test_edits_rerun_what_they_affect_and_an_unchanged_rerun_is_cached(tmp_path, data_root):
  checkout = tmp_path / 'checkout'
  for package in CODE_PACKAGES:
    shutil.copytree(os.path.join(REPO, package), checkout / package,
                    ignore=shutil.ignore_patterns('__pycache__'))
  output_dir = tmp_path / 'out'

  first = _run_census(checkout, data_root, output_dir)
  assert set(BEFORE_TRANSFORM + ('Transform', 'Trainer', 'Evaluator', 'Pusher')) <= set(first)
  assert not any(first.values()), first

  unchanged = _run_census(checkout, data_root, output_dir)
  upto_trainer = BEFORE_TRANSFORM + ('Transform', 'Trainer')
  assert all(unchanged[name] for name in upto_trainer), unchanged

  _edit(checkout / 'preprocessing' / 'census.py', 'tft.scale_to_z_score(', 'tft.scale_to_0_1(')
  preprocessing_edited = _run_census(checkout, data_root, output_dir)
  assert all(preprocessing_edited[name] for name in BEFORE_TRANSFORM), preprocessing_edited
  assert not any(preprocessing_edited[name]
                 for name in ('Transform', 'Trainer', 'Evaluator', 'Pusher')), preprocessing_edited

  _edit(checkout / 'model_fns' / 'census.py', '"""Binary classification of `income_bracket`',
        '"""Binary classification (edited) of `income_bracket`')
  task_edited = _run_census(checkout, data_root, output_dir)
  assert all(task_edited[name] for name in BEFORE_TRANSFORM + ('Transform',)), task_edited
  assert not any(task_edited[name] for name in ('Trainer', 'Evaluator', 'Pusher')), task_edited
