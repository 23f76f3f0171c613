"""Shared fixtures: the real data root (../shared/data or $OFFICIAL_TFX_DATA_ROOT) and its files.

Every test that needs the real data (the `data_root` fixture, directly or through another fixture)
is marked `e2e`, so `pytest -m "not e2e"` is the tier that runs without ../shared.
"""

import gzip
import os

os.environ.setdefault('TF_USE_LEGACY_KERAS', '1')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def pytest_collection_modifyitems(items):
  for item in items:
    if 'data_root' in getattr(item, 'fixturenames', ()):
      item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope='session')
def data_root():
  root = os.environ.get('OFFICIAL_TFX_DATA_ROOT') or os.path.join(REPO, '..', 'shared', 'data')
  root = os.path.abspath(root)
  if not os.path.isfile(os.path.join(root, 'census', 'adult.data.gz')):
    pytest.fail(f'real data not found under {root}: set OFFICIAL_TFX_DATA_ROOT')
  return root


@pytest.fixture(scope='session')
def adult_lines(data_root):
  """{'train': lines of adult.data, 'eval': lines of adult.test}, without line endings."""
  def read(name):
    with gzip.open(os.path.join(data_root, 'census', name + '.gz'), 'rt') as f:
      return f.read().split('\n')
  return {'train': read('adult.data'), 'eval': read('adult.test')}
