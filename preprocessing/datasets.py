"""Registry of the canonical public datasets and the resolution of their files.

Every dataset names its files with the canonical download address and the SHA-256 of the file's
*uncompressed* bytes, so that a plain copy and a gzipped copy of the same file both verify. A file that
is distributed gzipped (HIGGS.csv.gz) may instead carry the SHA-256 of its `.gz` bytes: only the
gzipped copy then verifies, and a check does not have to inflate gigabytes.

Resolution order for a file `NAME` of dataset `DS`:

1. a data root (the `--data_root` flag or the `OFFICIAL_TFX_DATA_ROOT` environment variable), laid out
   like `../shared/data`: `<root>/<DS>/NAME` or `<root>/<DS>/NAME.gz`. Nothing is downloaded when a data
   root is given: offline machines and CI point it at a local copy;
2. otherwise the download cache (`--cache_dir`, `OFFICIAL_TFX_CACHE_DIR`, default
   `~/.cache/official_tfx`), filled from the canonical address when the file is missing there.

A file published inside a zip (MovieLens' `ml-1m.zip`) is checked through the zip: the zip must match
its publisher's MD5, and the file is extracted from it into the cache. A data root may hold either the
zip or, when the file's own SHA-256 is known, the plain file.

A dataset may also name a folder (the CIFAR-10 and ImageNet image-folder layouts): a `DataFile` with
`tree_sha256` is checked per subfolder against the SHA-256 of its `sha256sum` listing (see
`tree_digest`). A folder whose contents cannot be known in advance (a user's copy of the ImageNet
training set, which has no public address) is named with an `unverifiable` reason instead, and is
then only checked for existence.

A file is always checked against its SHA-256 (or, for a file known only by its publisher's checksum
of the `.gz`, that MD5) before use. A missing file or a checksum mismatch raises a `DatasetError`
that names the file and every place looked at; a missing file raises its subclass
`MissingFileError`.

A dataset may name a documented `Fallback` for one missing file (MNIST's training images, absent
from the offline data root): `resolve` then reads other files of the dataset, over the fallback's
row ranges, and says so in the `ResolvedSplits` it returns.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import os
import shutil
import tempfile
import urllib.request
import zipfile
from typing import Dict, Mapping, Optional, Sequence, Tuple

from absl import logging

DATA_ROOT_ENV = 'OFFICIAL_TFX_DATA_ROOT'
CACHE_DIR_ENV = 'OFFICIAL_TFX_CACHE_DIR'
DEFAULT_CACHE_DIR = os.path.join('~', '.cache', 'official_tfx')
_CHUNK = 1 << 20


class DatasetError(Exception):
  """A dataset file is missing, unreadable or fails its checksum."""


class MissingFileError(DatasetError):
  """A dataset file is neither in the data root or the cache nor downloadable."""


@dataclasses.dataclass(frozen=True)
class DataFile:
  """One canonical file of a dataset.

  Attributes:
    name: canonical file name, uncompressed, e.g. `adult.data` or `HIGGS.csv`.
    url: canonical download address (of the `.gz` when the file is distributed gzipped), or None
      for a file that only a data root provides (a converted sample).
    sha256: hex SHA-256 of the uncompressed bytes, or None when only `gz_sha256` is known.
    size: size in bytes of the uncompressed file (for messages only; None if unknown).
    gz_sha256: hex SHA-256 of the canonical `NAME.gz` as distributed, or None.
    archive_member: for a file distributed inside a zip (MovieLens): its path in the zip at `url`.
    archive_md5: hex MD5 of that zip, as its publisher gives it (GroupLens' `.md5` files).
    gz_md5: hex MD5 of the canonical `NAME.gz` as distributed, where that is the only published
      checksum (MNIST's training images: torchvision's list). Used only when `sha256` is None: a
      recompressed `.gz` has other bytes, so the uncompressed SHA-256 is preferred when known.
    companion: another file of the dataset that is always read with this one (MNIST: the labels
      file of an images file); `resolve_file` resolves and verifies it too, into the same folder.
    tree_sha256: for a folder: subfolder name -> `tree_digest` of that subfolder (the key `.`: of
      the folder's own files, for a flat folder); the folder must hold exactly these subfolders.
    unverifiable: for a folder with no known checksum: why (shown when it is used).
  """
  name: str
  url: Optional[str]
  sha256: Optional[str]
  size: Optional[int] = None
  gz_sha256: Optional[str] = None
  archive_member: Optional[str] = None
  archive_md5: Optional[str] = None
  gz_md5: Optional[str] = None
  companion: Optional[str] = None
  tree_sha256: Optional[Mapping[str, str]] = None
  unverifiable: str = ''

  def __post_init__(self):
    if not (self.sha256 or self.gz_sha256 or self.archive_md5 or self.gz_md5 or self.tree_sha256
            or self.unverifiable):
      raise ValueError(f'{self.name}: a DataFile needs sha256, gz_sha256 or archive_md5 (or '
                       'gz_md5 where only the .gz MD5 is published; tree_sha256 or an '
                       'unverifiable reason for a folder)')

  @property
  def is_folder(self) -> bool:
    return self.tree_sha256 is not None or bool(self.unverifiable)

  @property
  def archive_name(self) -> Optional[str]:
    """File name of the zip that holds this file, or None."""
    return self.url.rsplit('/', 1)[-1] if self.archive_member and self.url else None


@dataclasses.dataclass(frozen=True)
class Fallback:
  """What a dataset reads when one canonical file cannot be had (missing and not downloadable).

  Attributes:
    missing: the canonical file whose absence triggers the fallback.
    splits: split name -> file read instead (the splits not listed keep their canonical file).
    row_ranges: split name -> (first row, number of rows or None) of the files then read; replaces
      `Dataset.row_ranges` for every split.
    notice: one sentence for the user saying what is read instead, e.g. MNIST's "training on t10k
      records 0-7,999, evaluating on records 8,000-9,999".
  """
  missing: str
  splits: Mapping[str, str]
  row_ranges: Mapping[str, Tuple[int, Optional[int]]]
  notice: str


@dataclasses.dataclass(frozen=True)
class Dataset:
  """A public dataset: its files and which file feeds which pipeline split.

  Attributes:
    name: registry key, e.g. `census`, `ml-100k`.
    files: the canonical files.
    splits: pipeline split name -> file name, e.g. {'train': 'adult.data', 'eval': 'adult.test'}.
      Two splits may read different rows of one file (see `row_ranges`).
    citation: the source to cite, with its licence.
    row_ranges: split name -> (first row, number of rows or None for the rest) of that split's
      canonical file; rows are the file's lines, counted from 0. A split not listed reads the
      whole file. E.g. the seed's HIGGS split: {'train': (0, 1_000_000),
      'eval': (10_000_000, 1_000_000)}.
    sample_splits: split name -> file name of a small sample in the same layout, read instead of
      `splits` when asked for (`--sample`); a sample is read whole.
    folder: the dataset's folder under a data root or the cache (`movielens/ml-100k`); default
      `name`.
    fallback: what to read when a canonical file is missing (see `Fallback`), or None: fail.
  """
  name: str
  files: Tuple[DataFile, ...]
  splits: Mapping[str, str]
  citation: str = ''
  row_ranges: Mapping[str, Tuple[int, Optional[int]]] = dataclasses.field(default_factory=dict)
  sample_splits: Mapping[str, str] = dataclasses.field(default_factory=dict)
  folder: Optional[str] = None
  fallback: Optional[Fallback] = None

  @property
  def directory(self) -> str:
    """The dataset's folder under a data root or the cache: `folder`, else `name`."""
    return self.folder or self.name

  def file(self, name: str) -> DataFile:
    for data_file in self.files:
      if data_file.name == name:
        return data_file
    raise KeyError(f'dataset {self.name!r} has no file {name!r}')


_REGISTRY: Dict[str, Dataset] = {}


def register(dataset: Dataset) -> Dataset:
  """Adds `dataset` to the registry and returns it.

  Registering an equal dataset again is a no-op: TFX's user-code importer reloads the modules that
  register datasets (tfx.utils.import_utils.import_func_from_module).

  Raises:
    ValueError: another, different dataset has the same name.
  """
  if _REGISTRY.get(dataset.name, dataset) != dataset:
    raise ValueError(f'two different datasets are registered as {dataset.name!r}')
  _REGISTRY[dataset.name] = dataset
  return dataset


def get(name: str) -> Dataset:
  """Returns the registered dataset `name`; raises KeyError listing the known names."""
  try:
    return _REGISTRY[name]
  except KeyError:
    raise KeyError(f'unknown dataset {name!r}; known: {sorted(_REGISTRY)}') from None


def sha256_of_file(path: str, uncompressed: bool = True, algorithm: str = 'sha256') -> str:
  """Hex digest (SHA-256 unless `algorithm` says otherwise, e.g. `md5`) of the file's bytes;
  gunzipped first when `uncompressed` and the name ends in `.gz`.

  Raises:
    DatasetError: the file cannot be read or is not valid gzip.
  """
  opener = gzip.open if uncompressed and path.endswith('.gz') else open
  digest = hashlib.new(algorithm)
  try:
    with opener(path, 'rb') as f:
      for chunk in iter(lambda: f.read(_CHUNK), b''):
        digest.update(chunk)
  except (OSError, EOFError) as e:
    raise DatasetError(f'{path}: cannot be read ({e})') from e
  return digest.hexdigest()


def tree_digest(folder: str) -> str:
  """SHA-256 of what `sha256sum` prints for the files of `folder`, listed by name in C-locale
  order: one `<64 hex>  <name>\\n` line per file (the scheme of ../shared/data/SHA256SUMS for
  the CIFAR-10 class folders). Subfolders are not descended into.

  Raises:
    DatasetError: the folder or a file cannot be read.
  """
  listing = hashlib.sha256()
  try:
    names = sorted(os.listdir(folder), key=lambda name: name.encode())
  except OSError as e:
    raise DatasetError(f'{folder}: cannot be listed ({e})') from e
  for name in names:
    path = os.path.join(folder, name)
    if os.path.isfile(path):
      listing.update(f'{sha256_of_file(path, uncompressed=False)}  {name}\n'.encode())
  return listing.hexdigest()


def verify_tree(path: str, data_file: DataFile) -> None:
  """Raises DatasetError unless folder `path` holds exactly the subfolders of `data_file`, each
  with its `tree_digest`; a folder without checksums is only logged, with the reason."""
  if not data_file.tree_sha256:
    logging.warning('%s: not verified: %s', path, data_file.unverifiable)
    return
  found = sorted(name for name in os.listdir(path) if os.path.isdir(os.path.join(path, name)))
  expected_folders = sorted(set(data_file.tree_sha256) - {'.'})
  if found != expected_folders:
    missing = sorted(set(expected_folders) - set(found))
    extra = sorted(set(found) - set(expected_folders))
    raise DatasetError(f'{path}: the subfolders of {data_file.name} differ from the canonical '
                       f'ones: missing {missing or "none"}, unexpected {extra or "none"}')
  for name, expected in sorted(data_file.tree_sha256.items()):
    folder = os.path.normpath(os.path.join(path, name))
    actual = tree_digest(folder)
    if actual != expected:
      raise DatasetError(f'{folder}: checksum mismatch for '
                         f'{data_file.name if name == "." else data_file.name + "/" + name}: '
                         f'expected SHA-256 {expected} of its sha256sum listing, got '
                         f'{actual}. A file there is corrupt, missing or extra.')


def verify(path: str, data_file: DataFile) -> None:
  """Raises DatasetError unless `path` holds the bytes of `data_file` (compressed or not), or,
  for a folder, its files (`verify_tree`)."""
  if data_file.is_folder:
    verify_tree(path, data_file)
    return
  gzipped = path.endswith('.gz')
  algorithm = 'SHA-256'
  if gzipped and data_file.gz_sha256:
    expected, actual, what = data_file.gz_sha256, sha256_of_file(path, False), 'gzipped'
  elif data_file.sha256:
    expected, actual, what = data_file.sha256, sha256_of_file(path), 'uncompressed'
  elif gzipped and data_file.gz_md5:
    expected, actual, what = data_file.gz_md5, sha256_of_file(path, False, 'md5'), 'gzipped'
    algorithm = 'MD5'
  elif data_file.gz_sha256 or data_file.gz_md5:
    checksum = (f'SHA-256 {data_file.gz_sha256}' if data_file.gz_sha256
                else f'MD5 {data_file.gz_md5}')
    raise DatasetError(
        f'{path}: {data_file.name} can only be verified as the canonical {data_file.name}.gz '
        f'({checksum}); keep the download gzipped, or pass the file as '
        f'--train_data / --eval_data, which reads it unverified.')
  else:
    raise DatasetError(
        f'{path}: {data_file.name} can only be verified inside the canonical '
        f'{data_file.archive_name} (MD5 {data_file.archive_md5}); put that zip in the same '
        f'folder instead, or pass the file as --train_data / --eval_data (unverified).')
  if actual != expected:
    raise DatasetError(
        f'{path}: checksum mismatch for {data_file.name}: expected {algorithm} {expected} '
        f'of the {what} bytes, got {actual}. The file is corrupt, truncated or not the '
        f'canonical {data_file.name} ({data_file.url}).')


def default_data_root() -> Optional[str]:
  return os.environ.get(DATA_ROOT_ENV) or None


def default_cache_dir() -> str:
  return os.path.expanduser(os.environ.get(CACHE_DIR_ENV) or DEFAULT_CACHE_DIR)


def _exists(path: str, data_file: DataFile) -> bool:
  return os.path.isdir(path) if data_file.is_folder else os.path.isfile(path)


def _candidates(folder: str, name: str) -> Sequence[str]:
  return [os.path.join(folder, name), os.path.join(folder, name + '.gz')]


def _temporary_beside(destination: str, prefix: str) -> str:
  os.makedirs(os.path.dirname(destination), exist_ok=True)
  fd, tmp = tempfile.mkstemp(prefix=os.path.basename(prefix) + '.', suffix='.part',
                             dir=os.path.dirname(destination))
  os.close(fd)
  return tmp


def extract_member(archive: str, data_file: DataFile, destination: str) -> None:
  """Checks `archive` against the publisher's MD5, then extracts `data_file` from it to
  `destination` (through a temporary file: never half-written) and verifies it.

  Raises:
    DatasetError: MD5 mismatch, a bad zip, the member missing, or the member's checksum.
  """
  digest = hashlib.md5()
  with open(archive, 'rb') as f:
    for chunk in iter(lambda: f.read(_CHUNK), b''):
      digest.update(chunk)
  if data_file.archive_md5 and digest.hexdigest() != data_file.archive_md5:
    raise DatasetError(f'{archive}: checksum mismatch for {data_file.archive_name}: expected MD5 '
                       f'{data_file.archive_md5}, got {digest.hexdigest()}')
  tmp = _temporary_beside(destination, data_file.name)
  try:
    with zipfile.ZipFile(archive) as zf, zf.open(data_file.archive_member) as src, \
        open(tmp, 'wb') as out:
      shutil.copyfileobj(src, out, _CHUNK)
    if data_file.sha256:
      verify(tmp, data_file)
    os.replace(tmp, destination)
  except (zipfile.BadZipFile, KeyError) as e:
    raise DatasetError(f'{archive}: cannot extract {data_file.archive_member} ({e})') from e
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)


def _download(data_file: DataFile, destination: str) -> None:
  """Downloads to a temporary file beside `destination`, verifies, then renames (never
  half-written); a file inside a zip is extracted from the verified zip."""
  if not data_file.url:
    raise MissingFileError(f'{data_file.name} cannot be downloaded (no public copy in this '
                           f'layout): set --data_root or ${DATA_ROOT_ENV} to a folder that holds it')
  logging.info('Downloading %s from %s', data_file.name, data_file.url)
  tmp = _temporary_beside(destination, data_file.archive_name or data_file.name)
  try:
    with open(tmp, 'wb') as out, urllib.request.urlopen(data_file.url, timeout=60) as src:
      shutil.copyfileobj(src, out, _CHUNK)
    if data_file.archive_member:
      extract_member(tmp, data_file, destination)
    else:
      verify(tmp, data_file)
      os.replace(tmp, destination)
  except OSError as e:
    raise MissingFileError(f'{data_file.name}: download from {data_file.url} failed ({e}); '
                           f'set --data_root or ${DATA_ROOT_ENV} to a local copy') from e
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)


def resolve_file(dataset: Dataset, name: str, data_root: Optional[str] = None,
                 cache_dir: Optional[str] = None) -> str:
  """Returns a verified local path of file `name` of `dataset`, after resolving its companion.

  Args:
    dataset: the registered dataset.
    name: one of its file names.
    data_root: local data root; default $OFFICIAL_TFX_DATA_ROOT. When set, the file must be there.
    cache_dir: download cache; default $OFFICIAL_TFX_CACHE_DIR or ~/.cache/official_tfx.

  Returns:
    Absolute path to the plain or `.gz` file.

  Raises:
    MissingFileError: the file (or its companion) is missing from the data root or cannot be
      downloaded.
    DatasetError: a checksum mismatch or an unreadable file.
  """
  path = _resolve_one(dataset, name, data_root, cache_dir)
  companion = dataset.file(name).companion
  if companion:
    _resolve_one(dataset, companion, data_root, cache_dir)
  return path


def _resolve_one(dataset: Dataset, name: str, data_root: Optional[str],
                 cache_dir: Optional[str]) -> str:
  """`resolve_file` of one file, without its companion or a fallback.

  Raises:
    MissingFileError: missing from the data root, or not in the cache and not downloadable.
    DatasetError: a checksum mismatch or an unreadable file.
  """
  data_file = dataset.file(name)
  data_root = data_root or default_data_root()
  cache_dir = os.path.abspath(cache_dir or default_cache_dir())
  cached = _candidates(os.path.join(cache_dir, dataset.directory), name)
  checksummed = bool(data_file.sha256 or data_file.gz_sha256 or data_file.gz_md5
                     or data_file.is_folder)
  if data_root:
    folder = os.path.join(os.path.abspath(data_root), dataset.directory)
    looked = list(_candidates(folder, name))
    found = [p for p in looked if _exists(p, data_file)]
    if found and checksummed:
      verify(found[0], data_file)
      return found[0]
    if data_file.archive_name:  # the canonical zip in the data root: extracted into the cache
      archive = os.path.join(folder, data_file.archive_name)
      looked.append(archive)
      if os.path.isfile(archive):
        if not os.path.isfile(cached[0]):
          extract_member(archive, data_file, cached[0])
        return cached[0]
    if found:
      verify(found[0], data_file)  # raises: only the zip can be verified
    hint = (f' Its small samples ({", ".join(sorted(set(dataset.sample_splits.values())))}) '
            'are read with --sample.' if dataset.sample_splits else '')
    raise MissingFileError(f'{name} of dataset {dataset.name!r} is missing: looked at '
                           f'{", ".join(looked)} (data root {data_root!r}).{hint}')
  found = [p for p in cached if _exists(p, data_file)]
  if found:
    if checksummed:  # (a member without its own checksum was extracted from a verified zip)
      verify(found[0], data_file)
    return found[0]
  destination = cached[1] if data_file.url and data_file.url.endswith('.gz') else cached[0]
  _download(data_file, destination)
  return destination


@dataclasses.dataclass(frozen=True)
class ResolvedSplits:
  """The raw files a run reads and where in them.

  Attributes:
    files: split name -> verified local path.
    row_ranges: split name -> (first row, number of rows or None) to start from: the dataset's
      ranges, the fallback's when it was taken, none for samples (read whole).
    fallback: the Fallback taken, or None (its `notice` is for the user).
  """
  files: Dict[str, str]
  row_ranges: Mapping[str, Tuple[int, Optional[int]]]
  fallback: Optional[Fallback] = None


def resolve(dataset: Dataset, data_root: Optional[str] = None, cache_dir: Optional[str] = None,
            sample: bool = False, splits: Optional[Sequence[str]] = None) -> ResolvedSplits:
  """Resolves the splits' files (see `resolve_file`), taking the dataset's Fallback if its
  `missing` file cannot be had.

  Args:
    sample: resolve `dataset.sample_splits` instead of `dataset.splits` (no fallback applies).
    splits: only these splits; default all.

  Raises:
    MissingFileError: a file is missing and no fallback applies.
    DatasetError: a checksum mismatch (never replaced by a fallback), or `sample` for a dataset
      without samples.
  """
  names = dataset.sample_splits if sample else dataset.splits
  if sample and not names:
    raise DatasetError(f'dataset {dataset.name!r} has no sample files')
  wanted = {split: names[split] for split in (names if splits is None else splits)}
  fallback = dataset.fallback if not sample else None
  files: Dict[str, str] = {}
  for split, name in wanted.items():
    try:
      files[split] = resolve_file(dataset, name, data_root, cache_dir)
    except MissingFileError as e:
      if fallback is None or name != fallback.missing:
        raise
      logging.warning('%s: %s Falling back, as documented: %s', dataset.name, e, fallback.notice)
      files = {split: resolve_file(dataset, fallback.splits.get(split, name), data_root, cache_dir)
               for split, name in wanted.items()}
      return ResolvedSplits(files, dict(fallback.row_ranges), fallback)
  return ResolvedSplits(files, {} if sample else dict(dataset.row_ranges))


def resolve_splits(dataset: Dataset, data_root: Optional[str] = None,
                   cache_dir: Optional[str] = None, sample: bool = False) -> Dict[str, str]:
  """{split name: verified local path} of every split: `resolve(...).files`."""
  return resolve(dataset, data_root, cache_dir, sample).files
