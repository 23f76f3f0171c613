"""Dataset registry: resolution from a data root and the cache, checksums, errors."""

import gzip
import hashlib
import os
import pathlib

import pytest

from preprocessing import census, datasets


def test_census_resolves_from_the_data_root_and_verifies(data_root):
  files = datasets.resolve_splits(census.DATASET, data_root=data_root)
  assert files == {'train': os.path.join(data_root, 'census', 'adult.data.gz'),
                   'eval': os.path.join(data_root, 'census', 'adult.test.gz')}


def test_environment_variable_is_the_default_data_root(data_root, monkeypatch):
  monkeypatch.setenv(datasets.DATA_ROOT_ENV, data_root)
  assert datasets.resolve_file(census.DATASET, 'adult.test').endswith('adult.test.gz')


def test_plain_and_gzipped_copies_have_the_same_checksum(data_root, tmp_path):
  plain = tmp_path / 'census' / 'adult.test'
  plain.parent.mkdir()
  with gzip.open(os.path.join(data_root, 'census', 'adult.test.gz'), 'rb') as f:
    plain.write_bytes(f.read())
  assert datasets.resolve_file(census.DATASET, 'adult.test', data_root=str(tmp_path)) == str(plain)


def test_missing_file_names_the_file_and_where_it_looked(tmp_path):
  with pytest.raises(datasets.DatasetError) as e:
    datasets.resolve_file(census.DATASET, 'adult.data', data_root=str(tmp_path))
  message = str(e.value)
  assert 'adult.data' in message and 'missing' in message
  assert os.path.join(str(tmp_path), 'census', 'adult.data.gz') in message


def test_checksum_mismatch_is_a_clear_error(data_root, tmp_path):
  corrupt = tmp_path / 'census' / 'adult.data'
  corrupt.parent.mkdir()
  with gzip.open(os.path.join(data_root, 'census', 'adult.data.gz'), 'rb') as f:
    corrupt.write_bytes(f.read().replace(b'Private', b'Privat3', 1))
  with pytest.raises(datasets.DatasetError) as e:
    datasets.resolve_file(census.DATASET, 'adult.data', data_root=str(tmp_path))
  assert 'checksum mismatch' in str(e.value) and str(corrupt) in str(e.value)
  assert census.DATASET.file('adult.data').sha256 in str(e.value)


def _toy_dataset(source: pathlib.Path, sha256: str) -> datasets.Dataset:
  return datasets.Dataset(
      name='toy', files=(datasets.DataFile('toy.csv', source.as_uri(), sha256),),
      splits={'train': 'toy.csv'})


@pytest.fixture
def no_data_root(monkeypatch):
  """Resolution with no data root at all, as on a fresh machine (CI exports one)."""
  monkeypatch.delenv(datasets.DATA_ROOT_ENV, raising=False)


def test_download_into_the_cache_then_reuse(tmp_path, no_data_root):
  source = tmp_path / 'remote.csv'
  source.write_bytes(b'1,2\n3,4\n')
  toy = _toy_dataset(source, hashlib.sha256(b'1,2\n3,4\n').hexdigest())
  cache = tmp_path / 'cache'
  path = datasets.resolve_file(toy, 'toy.csv', cache_dir=str(cache))
  assert path == str(cache / 'toy' / 'toy.csv')
  assert pathlib.Path(path).read_bytes() == b'1,2\n3,4\n'
  source.unlink()  # the second resolution must not download again
  assert datasets.resolve_file(toy, 'toy.csv', cache_dir=str(cache)) == path


def test_a_download_with_the_wrong_checksum_leaves_nothing_behind(tmp_path, no_data_root):
  source = tmp_path / 'remote.csv'
  source.write_bytes(b'tampered\n')
  toy = _toy_dataset(source, '0' * 64)
  cache = tmp_path / 'cache'
  with pytest.raises(datasets.DatasetError, match='checksum mismatch'):
    datasets.resolve_file(toy, 'toy.csv', cache_dir=str(cache))
  assert list((cache / 'toy').iterdir()) == []


def test_registering_a_different_dataset_under_a_taken_name_fails():
  clash = datasets.Dataset(name='census', files=(), splits={})
  with pytest.raises(ValueError, match='census'):
    datasets.register(clash)
  assert datasets.register(census.DATASET) is census.DATASET  # an equal one is a no-op
