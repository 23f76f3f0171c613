"""What `official-tfx predict` reads: a model's predict input format, as its spec declares it.

A spec's `predict_reader` (pipelines.spec.ModelSpec) turns raw input files into the raw tf.Examples
that the model's `serving_default` signature takes. pipelines.predict runs every reader the same
way, in Beam:

1. `sources(input)` (`sources_of` its paths), in the launching process: `--input` resolved into work units (`input_paths`:
   a file taken literally, a glob pattern, or a folder for a reader of image folders) and checked
   where that is cheap and concerns the whole input (an IDX labels file, the class folders'
   names). A problem of that kind is a `PredictError`, one line naming the file.
2. `chunks(source)`, in a worker: one unit split into chunks (lines, records, image paths), or a
   `Malformed` unit for a source that cannot be read at all (a truncated IDX file: its complete
   records, then one `Malformed` where it ends).
3. `rows(chunk)`, in a worker after a Reshuffle: a `Row` per input (the features of one raw
   tf.Example, where it came from, its label), or a `Malformed` (a line that does not parse, an
   image that does not decode or has the wrong size, a label out of range) or a `Notice` (a BOM
   stripped, a header line skipped). Nothing is dropped without a record saying so.
4. `prediction_fields(inputs, outputs)`: the output fields of one prediction from the signature's
   outputs for its example: by default `class_id` and `probabilities` for a classifier, else each
   output; a spec may name its own function (`prediction_fn`).

An output record is located by `file` and, by the reader's unit, `line` (a line of a text file,
from 1), `record` (a record of an IDX file or a CIFAR batch, from 0), or nothing more (an image
file: `file` is the image's path).

Readers (a spec configures one; none names a model):

- `LineReader`: one row a line, through a line parser, as TextLineExampleGen reads the same files.
- `IdxReader`: IDX images files (`*-images-idx3-ubyte[.gz]`, components.idx_example_gen); the
  labels file beside each (`*-labels-idx1-ubyte[.gz]`) is read only with --with_labels.
- `ImageReader`: image files (any format tf.io.decode_image reads), folders of them, and folders
  of class folders (components.image_example_gen's layout); with --with_labels an image's label is
  the name of its folder, or a labels file beside a flat folder (ImageNet's validation layout).
- `CifarBatchReader`: the CIFAR python batches: the `cifar-10-python.tar.gz` archive (its test
  batch) or an extracted batch file (`test_batch`, `data_batch_1`, ...).
- `AnyOf`: several formats; each input path goes to the first reader that takes it.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import functools
import glob
import gzip
import io
import os
import posixpath
from typing import Any, Callable, ClassVar, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import numpy as np
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from components import idx_example_gen as idx
from components import image_example_gen as images
from components import record_checks
from components import text_example_gen

CHUNK_RECORDS = 1000  # records of an IDX file or a CIFAR batch per chunk

# The output field that locates an input in its file, by unit: a line (from 1), a record (from 0);
# an image is its file.
POSITION_FIELDS = {'row': 'line', 'record': 'record', 'image': None}

Key = Tuple[str, str, Optional[int], Any, Optional[Dict[str, Any]]]


class PredictError(Exception):
  """A prediction that cannot start or finish: the message is the one line the user reads."""


def location(file: str, unit: str, position: Optional[int]) -> Dict[str, Any]:
  """The fields that locate an input: {'file': f} and its `line` or `record` (POSITION_FIELDS)
  when it has a position."""
  field = POSITION_FIELDS[unit]
  return {'file': file, field: position} if field and position is not None else {'file': file}


@dataclasses.dataclass(frozen=True)
class Row:
  """One input to score.

  Attributes:
    file: the input file (an image's own path).
    unit: `row`, `record` or `image` (see POSITION_FIELDS).
    position: line number from 1, record index from 0, or None for an image.
    features: the raw tf.Example's features ({name: value}, as text_example_gen.to_example takes).
    label: the input's integer label (only read with --with_labels), or None.
    inputs: input values the output record repeats (`prediction_fields`' `inputs`), or None.
  """
  file: str
  unit: str
  position: Optional[int]
  features: Dict[str, Any]
  label: Optional[int] = None
  inputs: Optional[Dict[str, Any]] = None

  def key(self) -> Key:
    """The row's key through RunInference: (file, unit, position, label, inputs)."""
    return (self.file, self.unit, self.position, self.label, self.inputs)


@dataclasses.dataclass(frozen=True)
class Malformed:
  """An input that cannot be scored: a line that does not parse, an image that does not decode or
  has the wrong size, a truncated or foreign record file (`position` None: the whole file)."""
  file: str
  unit: str
  position: Optional[int]
  error: str
  text: str = ''

  def record(self) -> Dict[str, Any]:
    """The output record: file, line / record, `error` and (a line) `text`."""
    record = location(self.file, self.unit, self.position)
    record['error'] = self.error
    if self.unit == 'row':
      record['text'] = self.text
    return record


@dataclasses.dataclass(frozen=True)
class Notice:
  """Something done to the input that the user should know of (a BOM stripped, a header line
  skipped); not an output record."""
  file: str
  unit: str
  position: Optional[int]
  notice: str

  def record(self) -> Dict[str, Any]:
    return {**location(self.file, self.unit, self.position), 'notice': self.notice}


@functools.lru_cache(maxsize=None)
def import_fn(path: str) -> Callable[..., Any]:
  """The function at module path `path` (text_example_gen.import_callable), imported once per
  process."""
  return text_example_gen.import_callable(path)


def _reason(error: Exception, path: str) -> str:
  """An error's message without the `path: ` its reader puts first (the record names the file)."""
  message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
  return message[len(path) + 2:] if message.startswith(f'{path}: ') else message


def input_paths(pattern: str, folders: bool = False) -> List[str]:
  """The sorted paths of `--input`: a file name (taken as it is, `[`, `*` and `?` included, when
  such a file exists) or a glob pattern, on any Beam file system.

  Args:
    pattern: the --input value.
    folders: whether a folder may be given, or matched by the pattern (readers of image
      folders).

  Returns:
    The matching paths, sorted (absolute when local).

  Raises:
    PredictError: a folder where a file is needed, or nothing matches.
  """
  if '://' not in pattern:
    pattern = os.path.abspath(pattern)
    if os.path.isdir(pattern):
      if folders:
        return [pattern]
      raise PredictError(f'--input {pattern} is a folder: give a file or a glob pattern '
                         f'({os.path.join(pattern, "*")})')
  exists = FileSystems.exists(pattern)
  literal = exists or not any(c in pattern for c in '*?[')
  if literal and folders and '://' in pattern and images.is_folder(pattern):
    return [pattern]
  paths = record_checks.match_paths(record_checks.escape_glob(pattern) if literal else pattern)
  if folders and not literal and '://' not in pattern:  # Beam matches files only
    paths = sorted(set(paths) | {path for path in glob.glob(pattern) if os.path.isdir(path)})
  if not paths:
    raise PredictError(f'--input: the file {pattern} does not exist' if literal
                       else f'--input: no file matches {pattern}')
  return paths


def default_prediction_fields(inputs: Optional[Mapping[str, Any]],
                              outputs: Mapping[str, np.ndarray]) -> Dict[str, Any]:
  """One example's output fields: the repeated `inputs`, then for a classifier (outputs
  `probabilities` and `class_ids`) `class_id` (int) and `probabilities` (floats: [P(class 1)] for
  a binary model, one per class otherwise); for any other model each output (lists of numbers,
  strings decoded as UTF-8).

  Args:
    inputs: input values to repeat, or None.
    outputs: the signature's outputs for this example (numpy arrays without the batch dimension).
  """
  fields = dict(inputs or {})
  if 'probabilities' in outputs and 'class_ids' in outputs:
    fields['class_id'] = int(np.asarray(outputs['class_ids']).reshape(-1)[0])
    fields['probabilities'] = [float(p) for p in np.asarray(outputs['probabilities']).reshape(-1)]
  else:
    fields.update((name, json_value(np.asarray(value))) for name, value in sorted(outputs.items()))
  return fields


def json_value(array: np.ndarray) -> Any:
  """One example's output as JSON: numbers as Python numbers, bytes as UTF-8 text."""
  if array.dtype.kind in ('S', 'O'):
    return [v.decode('utf-8', 'replace') if isinstance(v, bytes) else str(v)
            for v in array.reshape(-1)] if array.ndim else array.item().decode('utf-8', 'replace')
  return array.tolist()


@dataclasses.dataclass(frozen=True)
class PredictReader:
  """A predict input format (see the module doc). Subclasses set `unit` and implement
  `sources_of`, `chunks` and `rows`; a reader is a frozen dataclass, pickled into the Beam
  workers.

  Attributes:
    prediction_fn: module path of `fn(inputs, outputs) -> fields` (as `default_prediction_fields`)
      for a model whose outputs are not a classifier's; None: `default_prediction_fields`.
    input_keys: features of each row repeated in its output record (`inputs` of prediction_fn).
    with_labels: read the labels (set by `bind`).
  """
  prediction_fn: Optional[str] = None
  input_keys: Tuple[str, ...] = ()
  with_labels: bool = False

  unit: ClassVar[str] = 'row'  # what one input is: a `row` (line), a `record` or an `image`
  takes_folders: ClassVar[bool] = False  # whether --input may be a folder
  batch_rows: ClassVar[int] = 1000  # rows encoded and sent to the model at a time, at most

  def side_files(self) -> Tuple[str, ...]:
    """The spec's `example_gen_files` settings this reader needs resolved (by `bind`)."""
    return ()

  def bind(self, with_labels: bool, files: Mapping[str, str]) -> 'PredictReader':
    """This reader for one prediction: with or without labels, with its side files read.

    Args:
      with_labels: --with_labels.
      files: {setting: local path} of `side_files()` (as resolved for the run's ExampleGen).

    Raises:
      PredictError: a side file that cannot be read.
    """
    del files
    return dataclasses.replace(self, with_labels=with_labels)

  def accepts(self, path: str) -> bool:
    """Whether `path` (a file, or a folder for a reader that takes folders) is in this format:
    `AnyOf` gives each path to the first reader that accepts it."""
    del path
    return True

  def describe(self) -> str:
    """What the reader takes, for messages."""
    raise NotImplementedError

  def sources(self, input_pattern: str) -> List[Any]:
    """The work units of `--input` (see the module doc): `sources_of` its paths.

    Raises:
      PredictError: no input, or a problem of the whole input (naming the file).
    """
    return self.sources_of(input_paths(input_pattern, folders=self.takes_folders))

  def sources_of(self, paths: Sequence[str]) -> List[Any]:
    """The work units of existing input paths (files, or folders for a reader that takes them).

    Raises:
      PredictError: a problem of the whole input (naming the file).
    """
    raise NotImplementedError

  def chunks(self, source: Any) -> Iterable[Any]:
    """One unit's chunks, or Malformed / Notice units (in a worker)."""
    raise NotImplementedError

  def rows(self, chunk: Any) -> Iterable[Any]:
    """One chunk's Rows, Malformed and Notice units (in a worker)."""
    raise NotImplementedError

  def unit_for(self, sources: Sequence[Any]) -> str:
    """The unit of the inputs of `sources` (for the summary's wording)."""
    del sources
    return self.unit

  def prediction_fields(self, inputs: Optional[Mapping[str, Any]],
                        outputs: Mapping[str, np.ndarray]) -> Dict[str, Any]:
    """The output fields of one prediction (see `default_prediction_fields`)."""
    if self.prediction_fn:
      return import_fn(self.prediction_fn)(inputs, outputs)
    return default_prediction_fields(inputs, outputs)

  def _inputs(self, features: Mapping[str, Any]) -> Optional[Dict[str, Any]]:
    return {k: features.get(k) for k in self.input_keys} if self.input_keys else None


@dataclasses.dataclass(frozen=True)
class LineReader(PredictReader):
  """One row a line: every line of the files goes through `parser`, as TextLineExampleGen reads
  them (a UTF-8 BOM stripped, a header line of the parser's `columns` skipped with a notice, a
  line the parser returns None for, blank or comment, is no row; a ValueError is a malformed line
  with the parser's reason).

  Attributes:
    parser: module path of `parse(line: str) -> Optional[Dict[str, Any]]`.
    label_key: the feature of the parsed row that is the label: taken out of the example (the
      model never sees it), kept as the label with --with_labels.
  """
  parser: str = ''
  label_key: Optional[str] = None

  unit: ClassVar[str] = 'row'

  def describe(self) -> str:
    return f'text lines ({self.parser})'

  def sources_of(self, paths: Sequence[str]) -> List[str]:
    return list(paths)

  def chunks(self, source: str) -> Iterable[Tuple[str, int, List[bytes]]]:
    return text_example_gen.read_line_chunks(source)

  def rows(self, chunk: Tuple[str, int, List[bytes]]) -> Iterable[Any]:
    path, first, lines = chunk
    parse = import_fn(self.parser)
    is_header = _header_matcher(self.parser)
    for number, raw in enumerate(lines, start=first):
      text, reason, bom = text_example_gen.decode_line(raw, number)
      if bom:
        yield Notice(path, 'row', 1, 'UTF-8 byte-order mark (BOM) stripped')
      if text is None:
        yield Malformed(path, 'row', number, reason, raw.decode('utf-8', 'replace')[:200])
        continue
      if number == 1 and is_header(text):
        yield Notice(path, 'row', 1, 'header line (column names) skipped')
        continue
      try:
        row = parse(text)
      except ValueError as e:
        yield Malformed(path, 'row', number, str(e), text[:200])
        continue
      if row is None:
        continue
      label = row.pop(self.label_key, None) if self.label_key else None
      yield Row(path, 'row', number, row, label if self.with_labels else None,
                self._inputs(row))


@functools.lru_cache(maxsize=None)
def _header_matcher(parser: str) -> Callable[[str], bool]:
  columns = getattr(import_fn(parser), 'columns', None)
  return text_example_gen.header_matcher(columns) if columns else (lambda line: False)


def _record_rows(path: str, first: int, pixels: np.ndarray, labels: Optional[np.ndarray],
                 num_classes: int, labels_source: str) -> Iterable[Any]:
  """Rows of records `first`.. of a record file: uint8 [n, height, width(, channels)] pixels as
  lossless PNG `image` with `height` and `width`, as the record ExampleGens write them; a label
  outside 0..num_classes-1 is a Malformed record."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  height, width = pixels.shape[1:3]
  for index, image in enumerate(pixels, start=first):
    label = None if labels is None else int(labels[index - first])
    if label is not None and not 0 <= label < num_classes:
      yield Malformed(path, 'record', index,
                      f'label {label} in {labels_source} is not in 0-{num_classes - 1}')
      continue
    png = tf.io.encode_png(image if image.ndim == 3 else image[:, :, np.newaxis]).numpy()
    yield Row(path, 'record', index, {'image': png, 'height': int(height), 'width': int(width)},
              label)


def _record_chunks(path: str, pixels: np.ndarray, labels: Optional[np.ndarray],
                   first: int = 0) -> Iterable[Tuple[str, int, np.ndarray, Optional[np.ndarray]]]:
  for start in range(0, len(pixels), CHUNK_RECORDS):
    stop = start + CHUNK_RECORDS
    yield (path, first + start, pixels[start:stop],
           None if labels is None else labels[start:stop])


def _idx_images_count(path: str) -> Optional[int]:
  """The record count in an IDX images file's header, or None when the header cannot be read
  (the worker reports why)."""
  try:
    with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
      data = (gzip.GzipFile(fileobj=f) if path.endswith('.gz') else f).read(16)
    return idx.read_idx_header(data, path, idx.IMAGES_MAGIC)[0][0]
  except (OSError, EOFError, idx.IdxFormatError):
    return None


@dataclasses.dataclass(frozen=True)
class IdxReader(PredictReader):
  """IDX images files (components.idx_example_gen's format): one input per record, scored as a
  PNG `image`. With --with_labels the labels file beside each images file (`images-idx3` ->
  `labels-idx1` in its name, plain or .gz) gives the labels; it must hold as many labels as the
  images file announces. A file that is not an IDX images file, or holds images of another size
  than `image_size`, is one malformed unit; a truncated file's complete records are scored and
  one malformed record marks where it ends; bytes after the last record are reported the same
  way (its records are scored).

  Attributes:
    num_classes: labels must be in 0..num_classes-1.
    image_size: (height, width) every image must have, or None.
  """
  num_classes: int = idx.DEFAULT_NUM_CLASSES
  image_size: Optional[Tuple[int, int]] = None

  unit: ClassVar[str] = 'record'

  def describe(self) -> str:
    return 'IDX images files (*-images-idx3-ubyte[.gz])'

  def accepts(self, path: str) -> bool:
    return 'idx3' in os.path.basename(path)

  def sources_of(self, paths: Sequence[str]) -> List[Tuple[str, Optional[np.ndarray], str]]:
    sources = []
    for path in paths:
      labels, labels_file = None, ''
      if self.with_labels:
        try:
          labels_file = idx.labels_path(path)
          labels = idx.parse_idx(idx.read_idx_bytes(labels_file), labels_file, idx.LABELS_MAGIC)
        except (idx.IdxFormatError, OSError) as e:
          raise PredictError(f'--with_labels: {e}') from None
        count = _idx_images_count(path)
        if count is not None and count != len(labels):
          raise PredictError(f'--with_labels: {labels_file} holds {len(labels)} labels but '
                             f'{path} announces {count} images')
      sources.append((path, labels, labels_file))
    return sources

  def chunks(self, source: Tuple[str, Optional[np.ndarray], str]) -> Iterable[Any]:
    path, labels, labels_file = source
    try:
      data = idx.read_idx_bytes(path)
    except (idx.IdxFormatError, OSError) as e:
      yield Malformed(path, 'record', None, _reason(e, path))
      return
    try:
      pixels = idx.parse_idx(data, path, idx.IMAGES_MAGIC)
    except idx.IdxFormatError as e:
      try:
        dims, offset = idx.read_idx_header(data, path, idx.IMAGES_MAGIC)
      except idx.IdxFormatError:
        yield Malformed(path, 'record', None, _reason(e, path))
        return
      size = dims[1] * dims[2]
      complete = min(dims[0], (len(data) - offset) // size)
      pixels = np.frombuffer(data, np.uint8, complete * size, offset).reshape(
          (complete,) + dims[1:])
      yield Malformed(path, 'record', complete if complete < dims[0] else None, _reason(e, path))
    if self.image_size and tuple(pixels.shape[1:]) != tuple(self.image_size):
      yield Malformed(path, 'record', None,
                      f'images are {pixels.shape[1]}x{pixels.shape[2]}, expected '
                      f'{self.image_size[0]}x{self.image_size[1]}')
      return
    for chunk in _record_chunks(path, pixels, labels):
      yield chunk + (labels_file,)

  def rows(self, chunk: Tuple[str, int, np.ndarray, Optional[np.ndarray], str]) -> Iterable[Any]:
    path, first, pixels, labels, labels_file = chunk
    return _record_rows(path, first, pixels, labels, self.num_classes, labels_file)


@dataclasses.dataclass(frozen=True)
class CifarBatchReader(PredictReader):
  """The CIFAR python batches (components.image_example_gen.read_cifar_batches): the python
  archive (its members matching `archive_members`, records counted across them in name order) or
  an extracted batch file; one input per record, scored as a PNG `image`. The batches hold the
  labels, used with --with_labels. An archive or batch that is not of the canonical form is one
  malformed unit.

  Attributes:
    archive_members: glob of the archive members read (the canonical test set: `test_batch`).
    batch_names: globs of the names of an extracted batch file.
    num_classes: labels must be in 0..num_classes-1.
  """
  archive_members: str = 'test_batch'
  batch_names: Tuple[str, ...] = ('data_batch_*', 'test_batch')
  num_classes: int = 10

  unit: ClassVar[str] = 'record'

  def describe(self) -> str:
    return (f'CIFAR python batches (the archive\'s {self.archive_members}, or a batch file '
            f'named {" or ".join(self.batch_names)})')

  def accepts(self, path: str) -> bool:
    name = os.path.basename(path)
    return images.is_archive(name) or any(fnmatch.fnmatch(name, g) for g in self.batch_names)

  def sources_of(self, paths: Sequence[str]) -> List[str]:
    return list(paths)

  def chunks(self, source: str) -> Iterable[Any]:
    path = source
    try:
      if images.is_archive(path):
        batches = [(b[1], b[2]) for b in images.read_cifar_batches(path, self.archive_members)]
      else:
        with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
          batches = [images.parse_cifar_batch(io.BytesIO(f.read()), path)]
    except (images.ImageDataError, OSError) as e:
      yield Malformed(path, 'record', None, _reason(e, path))
      return
    first = 0
    for pixels, labels in batches:
      yield from _record_chunks(path, pixels, labels if self.with_labels else None, first)
      first += len(pixels)

  def rows(self, chunk: Tuple[str, int, np.ndarray, Optional[np.ndarray]]) -> Iterable[Any]:
    path, first, pixels, labels = chunk
    return _record_rows(path, first, pixels, labels, self.num_classes, path)


def folder_entries(folder: str) -> Tuple[List[str], List[str]]:
  """(files, subfolders) directly in `folder`, each sorted. Locally every entry is listed; on a
  remote file system (no folders, only names) the subfolders are the prefixes that hold files.

  Raises:
    OSError: a local folder that cannot be listed.
  """
  if '://' not in folder:
    with os.scandir(folder) as scan:
      entries = sorted(scan, key=lambda entry: entry.name)
    return ([e.path for e in entries if not e.is_dir()], [e.path for e in entries if e.is_dir()])
  pattern = FileSystems.join(record_checks.escape_glob(folder), '*', '*')
  return (images.list_folder(folder),
          sorted({posixpath.dirname(path) for path in record_checks.match_paths(pattern)}))


@dataclasses.dataclass(frozen=True)
class ImageReader(PredictReader):
  """Image files: one input per file, its bytes unchanged as `image` (with `height` and `width`
  from decoding it with tf.io.decode_image, as ImageExampleGen does).

  `--input` is an image file, a glob pattern, or a folder: its files and the files of its
  subfolders (class folders) are the images; a folder deeper down is reported, not read. Every
  file is decoded: one that does not decode (not an image, truncated, unreadable), or whose size
  is not `image_size`, is malformed. With --with_labels an image's label is the index of its
  folder's name in `class_names` (`<class>/<image>`, components.image_example_gen's layout); a
  flat folder may instead have `labels_file` beside it (one class name a line for its images in
  sorted file order, ImageNet's validation layout).

  Attributes:
    class_names: the classes in label order.
    class_names_file: the spec's `example_gen_files` setting of a file that holds the class
      names (ImageNet's synsets.txt), read by `class_names_fn` when --with_labels needs them.
    class_names_fn: module path of `fn(path) -> class names`.
    image_size: (height, width) every image must have, or None.
    labels_file: name of the labels file beside a flat folder, or None.
  """
  class_names: Tuple[str, ...] = ()
  class_names_file: Optional[str] = None
  class_names_fn: Optional[str] = None
  image_size: Optional[Tuple[int, int]] = None
  labels_file: Optional[str] = None

  unit: ClassVar[str] = 'image'
  takes_folders: ClassVar[bool] = True
  batch_rows: ClassVar[int] = 64

  def describe(self) -> str:
    size = f' of {self.image_size[0]}x{self.image_size[1]}' if self.image_size else ''
    return f'image files{size} (JPEG, PNG, GIF or BMP), or folders of them'

  def side_files(self) -> Tuple[str, ...]:
    return (self.class_names_file,) if self.class_names_file else ()

  def bind(self, with_labels: bool, files: Mapping[str, str]) -> 'ImageReader':
    reader = dataclasses.replace(self, with_labels=with_labels)
    if with_labels and self.class_names_file:
      try:
        names = import_fn(self.class_names_fn)(files[self.class_names_file])
      except (OSError, ValueError) as e:
        raise PredictError(f'--with_labels: the class names: {e}') from None
      reader = dataclasses.replace(reader, class_names=tuple(names))
    return reader

  def _class_index(self) -> Dict[str, int]:
    return {name: i for i, name in enumerate(self.class_names)}

  def _label_of(self, path: str) -> int:
    """The label of an image given by name: its folder's name as a class."""
    folder = os.path.basename(os.path.dirname(path.rstrip('/')))
    label = self._class_index().get(folder)
    if label is None:
      raise PredictError(
          f'--with_labels: {path}: its folder {folder!r} is not a class name '
          f'({", ".join(self.class_names[:3])}, ... {len(self.class_names)} classes): an '
          'image\'s label is the name of its folder (<class>/<image>)')
    return label

  def _folder_sources(self, folder: str) -> List[Tuple[str, Any]]:
    files, subfolders = folder_entries(folder)
    if not self.with_labels:
      return ([('files', tuple((path, None) for path in files))] if files else []) + [
          ('folder', (path, None)) for path in subfolders]
    try:
      if subfolders:
        if files:
          raise PredictError(
              f'--with_labels: {folder} holds {len(files)} file(s) beside its class folders '
              f'({os.path.basename(files[0])}, ...): an image\'s label is the name of its folder')
        return [('folder', pair) for pair in images.class_folders(folder, self.class_names)]
      if self.labels_file:
        labels_file = os.path.join(os.path.dirname(folder.rstrip('/')), self.labels_file)
        if FileSystems.exists(labels_file):
          return [('files', tuple(images.labelled_files(folder, labels_file,
                                                        self.class_names)))]
    except images.ImageDataError as e:
      raise PredictError(f'--with_labels: {e}') from None
    label = self._class_index().get(os.path.basename(folder.rstrip('/')))
    if label is not None:  # a class folder itself: its images are of that class
      return [('folder', (folder, label))]
    beside = f' and no {self.labels_file} beside it' if self.labels_file else ''
    raise PredictError(f'--with_labels: {folder} has no class folders{beside} and is not named '
                       'as a class: give images in class folders (<folder>/<class>/<image>) to '
                       'read their labels')

  def sources_of(self, paths: Sequence[str]) -> List[Tuple[str, Any]]:
    sources, files = [], []
    for path in paths:
      if images.is_folder(path):
        sources.extend(self._folder_sources(path))
      else:
        files.append((path, self._label_of(path) if self.with_labels else None))
    if files:
      sources.append(('files', tuple(files)))
    if not sources:
      raise PredictError(f'--input {", ".join(paths)}: no image file there')
    return sources

  def chunks(self, source: Tuple[str, Any]) -> Iterable[Any]:
    kind, content = source
    if kind == 'files':
      yield from content
      return
    folder, label = content
    files, subfolders = folder_entries(folder)
    for path in subfolders:
      yield Malformed(path, 'image', None, 'a folder inside a class folder: images are read from '
                      'the folder given and its subfolders only')
    for path in files:
      yield path, label

  def rows(self, chunk: Tuple[str, Optional[int]]) -> Iterable[Any]:
    path, label = chunk
    try:
      with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
        data = f.read()
      height, width = images.image_size(data)
    except (OSError, ValueError) as e:
      yield Malformed(path, 'image', None, _reason(e, path))
      return
    if self.image_size and (height, width) != tuple(self.image_size):
      yield Malformed(path, 'image', None, f'image is {height}x{width}, expected '
                      f'{self.image_size[0]}x{self.image_size[1]}')
      return
    yield Row(path, 'image', None, {'image': data, 'height': height, 'width': width}, label)


@dataclasses.dataclass(frozen=True)
class AnyOf(PredictReader):
  """Several formats (MNIST: IDX files or images): each path of `--input` goes to the first of
  `readers` that accepts it (a folder: to the first that takes folders).

  Attributes:
    readers: the formats, in order of preference; the last usually accepts any path.
  """
  readers: Tuple[PredictReader, ...] = ()

  unit: ClassVar[str] = 'input'

  @property
  def batch_rows(self) -> int:  # pylint: disable=invalid-overridden-method
    return min(r.batch_rows for r in self.readers)

  @property
  def takes_folders(self) -> bool:  # pylint: disable=invalid-overridden-method
    return any(r.takes_folders for r in self.readers)

  def describe(self) -> str:
    return '; or '.join(r.describe() for r in self.readers)

  def side_files(self) -> Tuple[str, ...]:
    return tuple(dict.fromkeys(f for r in self.readers for f in r.side_files()))

  def bind(self, with_labels: bool, files: Mapping[str, str]) -> 'AnyOf':
    return dataclasses.replace(self, with_labels=with_labels,
                               readers=tuple(r.bind(with_labels, files) for r in self.readers))

  def sources_of(self, paths: Sequence[str]) -> List[Tuple[int, Any]]:
    taken: Dict[int, List[str]] = {}
    for path in paths:
      folder = images.is_folder(path)
      index = next((i for i, r in enumerate(self.readers)
                    if (r.takes_folders or not folder) and r.accepts(path)), None)
      if index is None:
        raise PredictError(f'--input: {path} is none of {self.describe()}')
      taken.setdefault(index, []).append(path)
    return [(index, source) for index, group in sorted(taken.items())
            for source in self.readers[index].sources_of(group)]

  def chunks(self, source: Tuple[int, Any]) -> Iterable[Any]:
    index, inner = source
    for chunk in self.readers[index].chunks(inner):
      yield chunk if isinstance(chunk, (Malformed, Notice)) else (index, chunk)

  def rows(self, chunk: Tuple[int, Any]) -> Iterable[Any]:
    index, inner = chunk
    return self.readers[index].rows(inner)

  def unit_for(self, sources: Sequence[Tuple[int, Any]]) -> str:
    units = {self.readers[index].unit for index, _ in sources}
    return units.pop() if len(units) == 1 else self.unit
