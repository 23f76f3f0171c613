"""ImageExampleGen: a FileBasedExampleGen for image classification data in its canonical layouts.

Each split's pattern (relative to `input_base`) names one of:

- **an image folder with one subfolder per class** (`train/<class>/*.jpg`, ImageNet's
  `train/<wnid>/*.JPEG`, Keras' `image_dataset_from_directory` layout): the label is the class's index
  in `class_names` (CIFAR-10's canonical order; ImageNet's synsets file). A subfolder that is not a
  known class stops the run, naming it; a class may be absent (ImageNet samples).
- **a flat image folder with a labels file** (ImageNet's validation set as `imagenet_to_gcs.py`
  lays it out: `validation/ILSVRC2012_val_*.JPEG` and `synset_labels.txt` beside the folder, one
  class name per line for the images in sorted file-name order): `labels_files` maps the split to
  that file's name. It is read only when the split's folder has no class subfolders, so one
  setting serves both validation layouts. A line count that differs from the image count stops
  the run, naming both.
- **the CIFAR-10 python batches** (`cifar-10-python.tar.gz`, https://www.cs.toronto.edu/~kriz/
  cifar.html): a split reads the archive's members matching its entry in `archive_members`
  (`data_batch_*` for train, `test_batch` for test). Each member is a pickled dict with `data`
  (uint8 [N, 3072]: the red, green and blue 32x32 planes of N images) and `labels` (N ints). The
  pickles are read with an unpickler that admits nothing but numpy arrays, so a hostile archive
  cannot run code. A member of the wrong shape stops the run, naming the archive and the member.

Every image becomes a tf.Example with `image` (encoded bytes: the file's own bytes, unchanged; the
python batches' pixels as lossless PNG), `label` (int64), `height` and `width` (int64, read from the
decoded image). Every image is decoded with `tf.io.decode_image` on the way in, so a corrupt or
truncated file is found here and never deep in training: it is a malformed unit, counted and
reported by file name like TextLineExampleGen's malformed rows (`malformed_rows-<split>.json` in
the Examples artifact, custom properties `valid_rows_<split>` and `malformed_rows_<split>`), and
the run fails when more than `max_malformed_fraction` of a split is malformed. A label outside
0..num_classes-1 in the python batches is malformed too, reported by member and record index.
A labels file may start with a UTF-8 byte-order mark (stripped, a notice in the split's report);
a labels file that is not UTF-8, or has a blank line before its last name, stops the run naming
the file and line. Folder and archive names are taken literally (glob characters escaped by
pipelines.factory).

Folder listing is done in the Beam workers, one class folder per element, so that the pipeline
graph stays small for ImageNet's 1.28 million files; the graph builder only lists the subfolders
to check them against `class_names`. Row ranges apply to the python batches only (records counted
across the split's members in archive order); an image folder is read whole.
"""

from __future__ import annotations

import codecs
import fnmatch
import io
import os
import pickle
import posixpath
import re
import tarfile
from typing import Any, BinaryIO, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import apache_beam as beam
import numpy as np
import tensorflow as tf
from absl import logging
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from tfx.components.example_gen.component import FileBasedExampleGen
from tfx.dsl.components.base import executor_spec
from tfx.proto import example_gen_pb2
from tfx.types import standard_component_specs

from components.record_checks import (MALFORMED, NOTICE, VALID, ReportingExecutor,
                                      SpreadOverWorkers,
                                      add_split_check, custom_config, escape_glob,
                                      example_gen_config, literal_path, match_paths,
                                      split_row_range)
from components.text_example_gen import to_example

CHUNK_RECORDS = 1000
CIFAR_IMAGE_SHAPE = (3, 32, 32)  # the python batches store channel planes: [N, 3 * 32 * 32]
ARCHIVE_SUFFIXES = ('.tar.gz', '.tgz', '.tar')


class ImageDataError(ValueError):
  """The image data's layout is wrong: an unknown class folder, a labels file that does not match
  its images, or a python batch of the wrong form."""


def _join(base: str, *parts: str) -> str:
  return FileSystems.join(base, *parts)


def list_folder(folder: str) -> List[str]:
  """Paths of the entries directly under `folder`, sorted (files and, locally, folders); the
  folder's name is taken literally (glob characters escaped)."""
  return match_paths(_join(escape_glob(folder), '*'))


def _parent(path: str) -> str:
  path = path.rstrip('/')
  return posixpath.dirname(path) if '://' in path else os.path.dirname(path)


def _has_subfolders(folder: str) -> bool:
  """Whether `folder` holds files one level down (class folders)."""
  return bool(FileSystems.match([_join(escape_glob(folder), '*', '*')],
                               limits=[1])[0].metadata_list)


def is_folder(path: str) -> bool:
  """Whether `path` is a folder (remote: a prefix with at least one file under it)."""
  if '://' not in path:
    return os.path.isdir(path)
  return bool(FileSystems.match([_join(escape_glob(path), '*')], limits=[1])[0].metadata_list)


def class_folders(folder: str, class_names: Sequence[str]) -> List[Tuple[str, int]]:
  """(class folder path, label) of every subfolder of `folder`.

  Raises:
    ImageDataError: no class subfolder, or a subfolder that is not one of `class_names`.
  """
  index = {name: i for i, name in enumerate(class_names)}
  subfolders = sorted({posixpath.dirname(path) if '://' in path else os.path.dirname(path)
                       for path in match_paths(_join(escape_glob(folder), '*', '*'))})
  unknown = [path for path in subfolders if os.path.basename(path.rstrip('/')) not in index]
  if unknown:
    raise ImageDataError(
        f'{folder}: {len(unknown)} subfolder(s) are not classes of this dataset: '
        f'{", ".join(os.path.basename(p) for p in unknown[:5])}; expected names among the '
        f'{len(class_names)} classes ({", ".join(class_names[:3])}, ...)')
  if not subfolders:
    raise ImageDataError(f'{folder}: no class subfolders with images (expected '
                         f'{folder}/<class>/<image>, or a labels file for a flat folder)')
  return [(path, index[os.path.basename(path.rstrip('/'))]) for path in subfolders]


def read_label_names(labels_file: str) -> Tuple[List[str], bool]:
  """(class names, one per line, stripped; whether a UTF-8 byte-order mark was stripped) of a
  labels file. Blank lines at the end are ignored.

  Raises:
    ImageDataError: the file is not UTF-8, or has a blank line before its last name (it would
      shift every label after it), naming the file and line.
  """
  with FileSystems.open(labels_file) as f:
    data = f.read()
  bom = data.startswith(codecs.BOM_UTF8)
  lines = data[len(codecs.BOM_UTF8) if bom else 0:].split(b'\n')
  names = []
  for number, raw in enumerate(lines, start=1):
    try:
      names.append(raw.decode('utf-8').strip())
    except UnicodeDecodeError as e:
      raise ImageDataError(f'{labels_file}:{number}: not UTF-8 (byte 0x{raw[e.start]:02x} at '
                           f'column {e.start + 1}); a labels file holds one class name a line, '
                           'in UTF-8') from None
  while names and not names[-1]:
    names.pop()
  if '' in names:
    raise ImageDataError(f'{labels_file}:{names.index("") + 1}: blank line; a labels file holds '
                         'one class name a line for every image, in sorted file order')
  return names, bom


def labelled_files(folder: str, labels_file: str,
                   class_names: Sequence[str]) -> List[Tuple[str, int]]:
  """(image path, label) of a flat image folder labelled by a file of class names, one per line,
  for the images in sorted file-name order (ImageNet's `synset_labels.txt`).

  Raises:
    ImageDataError: an unknown class name (with its line number), as many labels as images, or
      a labels file that `read_label_names` rejects.
  """
  index = {name: i for i, name in enumerate(class_names)}
  names, _ = read_label_names(labels_file)
  images = [path for path in list_folder(folder) if not is_folder(path)]
  if len(images) != len(names):
    raise ImageDataError(f'{labels_file} has {len(names)} labels but {folder} holds '
                         f'{len(images)} images: one label per image, in sorted file order')
  labels = []
  for line, name in enumerate(names, start=1):
    if name not in index:
      raise ImageDataError(f'{labels_file}:{line}: {name!r} is not a class of this dataset')
    labels.append(index[name])
  return list(zip(images, labels))


def _list_class_folder(element: Tuple[str, int]) -> Iterable[Tuple[str, int]]:
  folder, label = element
  for path in list_folder(folder):
    yield path, label


class _DecodeImageFiles(beam.DoFn):
  """(image path, label) -> tf.Example with the file's bytes, after decoding them once.

  Outputs: the examples; `malformed`: (path, 0, reason, '') per file that does not decode;
  `valid`: 1 per example.
  """

  def process(self, element):
    path, label = element
    with FileSystems.open(path) as f:
      data = f.read()
    try:
      height, width = image_size(data)
    except ValueError as e:
      yield beam.pvalue.TaggedOutput(MALFORMED, (path, 0, str(e), ''))
      return
    yield to_example({'image': data, 'label': int(label), 'height': height, 'width': width})
    yield beam.pvalue.TaggedOutput(VALID, 1)


def image_size(data: bytes) -> Tuple[int, int]:
  """(height, width) of an encoded image, found by decoding all of it with TensorFlow (the decoder
  training and serving use).

  Raises:
    ValueError: the bytes are not a complete JPEG, PNG, GIF or BMP image (empty, truncated,
      corrupt or another format), with TensorFlow's reason.
  """
  if not data:
    raise ValueError('empty file, not an image')
  try:
    image = tf.io.decode_image(data, expand_animations=False)
  except (tf.errors.InvalidArgumentError, tf.errors.UnknownError) as e:
    reason = re.sub(r'\{\{.*?\}\}|\[Op:\w+\]', '', e.message).strip().splitlines()[0]
    raise ValueError(f'not a decodable image ({reason})') from None
  return int(image.shape[0]), int(image.shape[1])


class _RestrictedUnpickler(pickle.Unpickler):
  """Unpickles numpy arrays and plain Python values only (the CIFAR-10 python batches)."""

  _ALLOWED = {('numpy.core.multiarray', '_reconstruct'), ('numpy._core.multiarray', '_reconstruct'),
              ('numpy', 'ndarray'), ('numpy', 'dtype'), ('numpy.core.multiarray', 'scalar'),
              ('numpy._core.multiarray', 'scalar')}

  def find_class(self, module, name):
    if (module, name) not in self._ALLOWED:
      raise pickle.UnpicklingError(f'{module}.{name} is not allowed in a CIFAR python batch')
    return super().find_class(module, name)


def _open_archive(path: str) -> tarfile.TarFile:
  with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
    data = f.read()
  try:
    return tarfile.open(fileobj=io.BytesIO(data), mode='r:*')  # plain or gzipped
  except tarfile.TarError as e:
    raise ImageDataError(f'{path}: not a readable tar archive ({e})') from e


def read_cifar_batches(archive: str, member_glob: str) -> List[Tuple[str, np.ndarray, np.ndarray]]:
  """The CIFAR python batches of `archive` whose base name matches `member_glob`, in name order.

  Returns:
    [(member name, uint8 [N, 32, 32, 3] images, int [N] labels)].

  Raises:
    ImageDataError: no member matches, or a member that is not a pickled batch of the canonical
      form (naming the archive and member).
  """
  batches = []
  with _open_archive(archive) as tar:
    members = sorted((m for m in tar.getmembers()
                      if m.isfile() and fnmatch.fnmatch(posixpath.basename(m.name), member_glob)),
                     key=lambda m: m.name)
    if not members:
      raise ImageDataError(f'{archive}: no member matches {member_glob!r} (the CIFAR-10 python '
                           'archive holds cifar-10-batches-py/data_batch_1..5 and test_batch)')
    for member in members:
      images, labels = parse_cifar_batch(tar.extractfile(member),
                                         f'{archive}: member {member.name}')
      batches.append((member.name, images, labels))
  return batches


def parse_cifar_batch(file: BinaryIO, where: str) -> Tuple[np.ndarray, np.ndarray]:
  """One CIFAR python batch (`test_batch`, `data_batch_1`, ...: a pickled dict with b"data" and
  b"labels"), unpickled by an unpickler that admits numpy arrays only.

  Args:
    file: the batch's bytes (an archive member or an extracted file).
    where: the batch's name in messages (`archive: member m`, or the file's path).

  Returns:
    (uint8 [N, 32, 32, 3] images, int [N] labels).

  Raises:
    ImageDataError: not a pickled batch of the canonical form, naming `where`.
  """
  try:
    batch = _RestrictedUnpickler(file, encoding='bytes').load()
    data = np.asarray(batch[b'data'])
    labels = np.asarray(batch[b'labels'])
  except (pickle.UnpicklingError, EOFError, KeyError, TypeError, AttributeError,
          ValueError) as e:
    raise ImageDataError(f'{where}: not a CIFAR python batch (a pickled dict with b"data" '
                         f'and b"labels"): {e}') from e
  size = int(np.prod(CIFAR_IMAGE_SHAPE))
  if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != size:
    raise ImageDataError(f'{where}: data is {data.dtype} {list(data.shape)}, expected uint8 '
                         f'[N, {size}] (3 planes of 32x32)')
  if labels.shape != (len(data),):
    raise ImageDataError(f'{where}: {labels.size} labels for {len(data)} images')
  return data.reshape((-1,) + CIFAR_IMAGE_SHAPE).transpose(0, 2, 3, 1), labels


def _cifar_chunks(element: Tuple[str, str, int, Optional[int]],
                  chunk_records: int = CHUNK_RECORDS):
  """Yields (member name, index of the chunk's first record in the split, images, labels) for the
  split's records first_row.. of `archive`'s members matching the glob."""
  archive, member_glob, first_row, num_rows = element
  end = None if num_rows is None else first_row + num_rows
  offset = 0
  for member, images, labels in read_cifar_batches(archive, member_glob):
    lo, hi = max(first_row - offset, 0), len(images) if end is None else min(end - offset,
                                                                              len(images))
    for start in range(lo, hi, chunk_records):
      stop = min(start + chunk_records, hi)
      yield f'{archive}:{member}', offset + start, images[start:stop], labels[start:stop]
    offset += len(images)


class _EncodeCifarRecords(beam.DoFn):
  """Chunks of python-batch records -> tf.Examples with PNG `image`; a label out of range is a
  malformed record (member, record index in the split)."""

  def __init__(self, num_classes: int):
    self._num_classes = num_classes

  def process(self, element):
    source, first, images, labels = element
    valid = 0
    for index, (image, label) in enumerate(zip(images, labels), start=first):
      if not 0 <= int(label) < self._num_classes:
        yield beam.pvalue.TaggedOutput(MALFORMED, (
            source, index, f'label {int(label)} is not in 0-{self._num_classes - 1}', ''))
        continue
      yield to_example({'image': tf.io.encode_png(image).numpy(), 'label': int(label),
                        'height': int(image.shape[0]), 'width': int(image.shape[1])})
      valid += 1
    yield beam.pvalue.TaggedOutput(VALID, valid)


def is_archive(pattern: str) -> bool:
  """Whether a split pattern names the CIFAR python archive rather than an image folder."""
  return pattern.endswith(ARCHIVE_SUFFIXES)


@beam.ptransform_fn
@beam.typehints.with_input_types(beam.Pipeline)
@beam.typehints.with_output_types(tf.train.Example)
def _ImagesToExample(pipeline: beam.Pipeline, exec_properties: Dict[str, Any], split_pattern: str,
                     split: Optional[str] = None) -> beam.pvalue.PCollection:
  """Reads the split's images (folder or python batches) into tf.Examples; the layout is checked
  here, while the Beam graph is built, so that a layout error stops the run at once."""
  config = custom_config(exec_properties)
  input_base = exec_properties[standard_component_specs.INPUT_BASE_KEY]
  split = split or split_pattern
  # A folder or an archive is one path: the pattern is its name, glob characters escaped.
  path = _join(input_base, literal_path(split_pattern) or split_pattern)
  class_names = list(config['class_names'])
  first_row, num_rows = split_row_range(config, split)
  known_notices = []
  labels_file = (config.get('labels_files') or {}).get(split)
  if labels_file and not is_archive(split_pattern) and _has_subfolders(path):
    labels_file = None  # class folders: the labels file is for the flat layout only
  elif labels_file:
    labels_file = _join(_parent(path), labels_file)
  if is_archive(split_pattern):
    member_glob = (config.get('archive_members') or {}).get(split)
    if not member_glob:
      raise ImageDataError(f'split {split!r} reads the archive {path}: archive_members must name '
                           'its members (e.g. data_batch_*)')
    total = sum(len(images) for _, images, _ in read_cifar_batches(path, member_glob))
    if first_row >= total or (num_rows is not None and first_row + num_rows > total):
      raise ImageDataError(f'{path}: records {first_row} to '
                           f'{"the end" if num_rows is None else first_row + num_rows - 1} '
                           f'asked for, but its {member_glob} members hold {total}')
    logging.info('Split %s: reading %s members %s, records %d to %s', split, path, member_glob,
                 first_row, 'the end' if num_rows is None else first_row + num_rows - 1)
    decoded = (pipeline
               | 'Archive' >> beam.Create([(path, member_glob, first_row, num_rows)])
               | 'ReadChunks' >> beam.FlatMap(_cifar_chunks)
               | 'Spread' >> SpreadOverWorkers()
               | 'Encode' >> beam.ParDo(_EncodeCifarRecords(len(class_names))).with_outputs(
                   MALFORMED, VALID, NOTICE, main='examples'))
    unit, files = 'record', [path]
  else:
    if (first_row, num_rows) != (0, None):
      raise ImageDataError(f'split {split!r}: row ranges apply to record files, not to the '
                           f'image folder {path}')
    if labels_file:
      labelled = labelled_files(path, labels_file, class_names)
      logging.info('Split %s: %d images in %s, labels from %s', split, len(labelled), path,
                   labels_file)
      if read_label_names(labels_file)[1]:
        known_notices.append((labels_file, 0, 'UTF-8 byte-order mark (BOM) stripped at the '
                              f'start of {labels_file}'))
      files_with_labels = pipeline | 'Folder' >> beam.Create([path]) | 'List' >> beam.FlatMap(
          lambda folder: labelled_files(folder, labels_file, class_names))
    else:
      folders = class_folders(path, class_names)
      logging.info('Split %s: %d class folders in %s', split, len(folders), path)
      files_with_labels = (pipeline | 'ClassFolders' >> beam.Create(folders)
                           | 'List' >> beam.FlatMap(_list_class_folder))
    decoded = (files_with_labels
               | 'Spread' >> SpreadOverWorkers()
               | 'Decode' >> beam.ParDo(_DecodeImageFiles()).with_outputs(
                   MALFORMED, VALID, NOTICE, main='examples'))
    unit, files = 'file', [path] + ([labels_file] if labels_file else [])
  add_split_check(pipeline, decoded, exec_properties, split, source=path, files=files,
                  row_range=(first_row, num_rows), unit=unit, known_notices=known_notices)
  return decoded.examples


class Executor(ReportingExecutor):
  """Beam executor of ImageExampleGen; see the module docstring."""

  def GetInputSourceToExamplePTransform(self) -> beam.PTransform:
    return _ImagesToExample


class ImageExampleGen(FileBasedExampleGen):
  """ExampleGen for image classification: image folders or the CIFAR-10 python batches.

  Example:
    ImageExampleGen(input_base='/data/cifar10', splits={'train': 'train', 'eval': 'test'},
                    class_names=cifar10.CLASS_NAMES)
    ImageExampleGen(input_base='/data/cifar10',
                    splits={'train': 'cifar-10-python.tar.gz', 'eval': 'cifar-10-python.tar.gz'},
                    class_names=cifar10.CLASS_NAMES,
                    archive_members={'train': 'data_batch_*', 'eval': 'test_batch'})

  Outputs `examples`: standard Examples (gzipped TFRecords of tf.Example with `image` bytes,
  `label`, `height`, `width`), one split per entry of `splits`, with the reports of the module
  docstring.
  """

  EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(Executor)

  def __init__(self, input_base: str, splits: Mapping[str, str], class_names: Sequence[str],
               max_malformed_fraction: float = 0.0,
               row_ranges: Optional[Mapping[str, Tuple[int, Optional[int]]]] = None,
               labels_files: Optional[Mapping[str, str]] = None,
               archive_members: Optional[Mapping[str, str]] = None):
    """Args:
      input_base: folder holding the splits (any Beam file system).
      splits: split name -> image folder, or the python archive, relative to `input_base`.
      class_names: the classes in label order (label i is class_names[i]).
      max_malformed_fraction: the run fails when more than this fraction of a split's images
        does not decode (0 <= value < 1; 0 fails on the first one).
      row_ranges: split -> (first record, number of records or None); python batches only.
      labels_files: split -> name of the labels file beside the split's folder, read when the
        folder is flat (no class subfolders).
      archive_members: split -> glob of the archive members it reads (python batches).

    Raises:
      ValueError: no split or class, a fraction out of range, or a bad row range.
    """
    if not class_names:
      raise ValueError('class_names must name the classes in label order')
    config = example_gen_config(splits, max_malformed_fraction, row_ranges,
                                class_names=list(class_names),
                                labels_files=dict(labels_files or {}),
                                archive_members=dict(archive_members or {}))
    super().__init__(
        input_base=input_base,
        input_config=example_gen_pb2.Input(splits=[
            example_gen_pb2.Input.Split(name=name, pattern=pattern)
            for name, pattern in splits.items()]),
        output_config=example_gen_pb2.Output(),
        custom_config=config)
