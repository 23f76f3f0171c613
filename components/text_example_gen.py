"""TextLineExampleGen: a FileBasedExampleGen for line-oriented raw text formats (UCI CSV, ratings files).

Stock CsvExampleGen needs a header row and a single-character separator, and drops the line number of a
bad row. This component reads each split's files line by line in Beam (plain or compressed, any Beam
file system), hands every line to a *line parser* named by module path, and writes gzipped TFRecords of
tf.Examples exactly like the stock ExampleGens, so the rest of TFX takes them as they are.

A line parser is `parse(line: str) -> dict | None`: None skips the line (blank, comment), a dict
maps feature name to an int, float, str, bytes, a list of one of those, or None (missing: an empty
feature of the tf.Example, which TFX's decoders and tf.io.parse_example read as missing), and
`ValueError` marks the line malformed with its message. A feature's values are of one kind across
rows. Rows are encoded a thousand at a time by tfx_bsl's C++ encoder (`to_serialized_examples`).

Ordinary variants of a raw file are read as the canonical file:

- a UTF-8 byte-order mark (BOM) at the start of a file is stripped, and its first line parses as
  usual (a file in UTF-16 is reported as such, line 1 malformed);
- a header line: a parser may carry `columns`, the dataset's column names in field order (each a
  name, or a tuple of the names the column goes by), declared once in its dataset module
  (`preprocessing.census.parse_line.columns`). A file's first line that spells them is skipped
  (`header_matcher`: fields split on `,` `;` tab `|` `::` or else on white space; case, spaces,
  `-`/`_` and quotes do not count). The same line anywhere else is a malformed row, since a
  concatenated export or a shifted row range is not what the user meant.
- split patterns are globs; pipelines.factory escapes the glob characters of the file names a
  user gives (components.record_checks.escape_glob), so `adult [copy 1].data` is read as named.

Each stripped BOM and skipped header is a notice in the split's report. Rows are lines counted
from 0 for row ranges, a header line included.

Malformed rows are never dropped silently. Per split, the executor counts them, writes
`malformed_rows-<split>.json` (count, fraction, the first `MAX_REPORTED` rows with file, line
number, reason and text, and the `notices`) into the Examples artifact, logs the same, and fails
the run when the malformed fraction exceeds `max_malformed_fraction` (default 0.001, i.e. 0.1%: a
few broken lines in a large export are tolerated and reported; more means the file is not in the
expected format). A split with no valid row always fails.
"""

from __future__ import annotations

import codecs
import importlib
import itertools
import os
import re
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import apache_beam as beam
import numpy as np
import pyarrow as pa
import tensorflow as tf
from absl import logging
from apache_beam.io.filesystems import FileSystems
from tfx.components.example_gen.component import FileBasedExampleGen
from tfx.dsl.components.base import executor_spec
from tfx.proto import example_gen_pb2
from tfx.types import standard_component_specs
from tfx_bsl.coders import example_coder

from components.record_checks import (MALFORMED, NOTICE, VALID, ReportingExecutor,
                                      SpreadOverWorkers,
                                      add_split_check, custom_config, display_pattern,
                                      example_gen_config, input_splits, match_paths,
                                      split_row_range)

DEFAULT_MAX_MALFORMED_FRACTION = 0.001
CHUNK_LINES = 1000


def import_callable(path: str) -> Callable[..., Any]:
  """Imports `package.module.attr` (without reloading the module, unlike TFX's importer).

  Raises:
    ImportError: the path is not of that form, or the module or attribute does not exist.
  """
  module, _, name = path.rpartition('.')
  if not module:
    raise ImportError(f'{path!r} is not a module path of the form package.module.function')
  try:
    return getattr(importlib.import_module(module), name)
  except AttributeError:
    raise ImportError(f'module {module!r} has no attribute {name!r}') from None


Columns = Sequence[Union[str, Sequence[str]]]
_HEADER_SEPARATORS = re.compile(r'::|[,;\t|]')
_NAME_NOISE = re.compile(r'[\s_\-"\'`]+')
_UTF16_BOMS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)


def decode_line(raw: bytes, number: int) -> Tuple[Optional[str], Optional[str], bool]:
  """A raw line (bytes, no line ending) as text: (text or None, why it is not UTF-8 or None,
  whether a UTF-8 byte-order mark was stripped). `number` is the line's number from 1: only line 1
  may carry a byte-order mark (UTF-8: stripped; UTF-16: named in the reason)."""
  bom = number == 1 and raw.startswith(codecs.BOM_UTF8)
  if bom:
    raw = raw[len(codecs.BOM_UTF8):]
  try:
    return raw.decode('utf-8'), None, bom
  except UnicodeDecodeError as e:
    reason = f'not UTF-8 (byte 0x{raw[e.start]:02x} at column {e.start + 1}: {e.reason})'
    if number == 1 and raw.startswith(_UTF16_BOMS):
      reason = 'the file is UTF-16 (it starts with a UTF-16 byte-order mark); save it as UTF-8'
    return None, reason, bom


def _normalized_name(name: str) -> str:
  """A column name compared leniently: lower case, no spaces, `-`, `_` or quotes."""
  return _NAME_NOISE.sub('', name).lower()


def header_matcher(columns: Columns) -> Callable[[str], bool]:
  """A test of whether a line spells the column names `columns` (a header line).

  Args:
    columns: the column names in field order; an entry may be a tuple of the names the column
      goes by (`('sex', 'gender')`).

  Returns:
    `matches(line: str) -> bool`: True when the line's fields, split on `::`, `,`, `;`, tab or `|`
    (or else on white space), are the columns in order, compared with `_normalized_name` (so
    `Education-Num`, `"education_num"` and `education num` are one name).

  Raises:
    ValueError: no columns.
  """
  if not columns:
    raise ValueError('a header needs at least one column name')
  names = [{_normalized_name(n) for n in ((c,) if isinstance(c, str) else c)} for c in columns]

  def matches(line: str) -> bool:
    fields = _HEADER_SEPARATORS.split(line.strip())
    if len(fields) != len(names):
      fields = line.split()
    return len(fields) == len(names) and all(
        _normalized_name(field) in accepted for field, accepted in zip(fields, names))

  return matches


def to_example(row: Dict[str, Any]) -> tf.train.Example:
  """Converts {name: value} (int, float, str, bytes, a list of one of them, or None) to a tf.Example.

  Raises:
    ValueError: a value has another type.
  """
  example = tf.train.Example()
  for name, value in row.items():
    if value is None:
      continue
    values = value if isinstance(value, (list, tuple)) else [value]
    if not values:
      continue
    feature = example.features.feature[name]
    first = values[0]
    if isinstance(first, bool) or isinstance(first, int):
      feature.int64_list.value.extend(values)
    elif isinstance(first, float):
      feature.float_list.value.extend(values)
    elif isinstance(first, str):
      feature.bytes_list.value.extend(v.encode('utf-8') for v in values)
    elif isinstance(first, bytes):
      feature.bytes_list.value.extend(values)
    else:
      raise ValueError(f'feature {name}: unsupported value type {type(first).__name__}')
  return example


def _arrow_type(name: str, value: Any) -> pa.DataType:
  """The Arrow list type that holds `value` (a row's value or the first of its list)."""
  if isinstance(value, (bool, int)):
    return pa.list_(pa.int64())
  if isinstance(value, float):
    return pa.list_(pa.float32())
  if isinstance(value, (str, bytes)):
    return pa.list_(pa.binary())
  raise ValueError(f'feature {name}: unsupported value type {type(value).__name__}')


def _scalar_column(name: str, values: List[Any], kinds: set) -> Optional[pa.Array]:
  """The Arrow list column of a feature with one value or None a row (None: no value in the
  batch), typed by its first value as `to_serialized_examples`' general path types it, with the
  same errors; the lists built by Arrow from one flat array, not row by row in Python."""
  kinds = kinds - {type(None)}
  if not kinds:
    return None
  present = [v is not None for v in values]
  flat = [v for v in values if v is not None]
  arrow_type = _arrow_type(name, flat[0])
  if arrow_type == pa.list_(pa.int64()):
    if not kinds <= {int, bool}:  # Arrow would truncate
      raise ValueError(f'feature {name}: values of more than one kind in a batch of rows '
                       f'(int, then {sorted(k.__name__ for k in kinds)})')
    if bool in kinds:  # Arrow takes no bool as int64
      flat = [int(x) for x in flat]
  elif arrow_type == pa.list_(pa.binary()) and not kinds <= {str, bytes}:
    raise ValueError(f'feature {name}: values of more than one kind in a batch of rows '
                     f'({sorted(k.__name__ for k in kinds)})')
  try:
    flat_array = pa.array(flat, type=arrow_type.value_type)
  except (pa.ArrowException, TypeError, ValueError, OverflowError) as e:
    raise ValueError(f'feature {name}: values of more than one kind in a batch of rows '
                     f'({e})') from e
  offsets = np.zeros(len(values) + 1, dtype=np.int32)
  np.cumsum(present, out=offsets[1:])
  return pa.ListArray.from_arrays(pa.array(offsets), flat_array,
                                  mask=pa.array(np.logical_not(present)))


def to_serialized_examples(rows: Sequence[Dict[str, Any]]) -> List[bytes]:
  """Serialized tf.Examples of rows ({name: value} as for `to_example`), encoded in one batch.

  tfx_bsl's C++ encoder does the work: about 25 us a census row against about 130 us for
  `to_example` and serializing. The examples decode to the same values as `to_example`'s, with
  TFX's decoders (TFXIO) and with tf.io.parse_example alike; the one difference in the bytes is
  that a missing value is an empty feature, not an absent one.

  Raises:
    ValueError: a value of an unsupported type, or a feature whose values are not all of one kind
      (int, float, or str/bytes), naming the feature.
  """
  names, arrays = [], []
  for name in dict.fromkeys(itertools.chain.from_iterable(rows)):  # every row's keys, in order
    values = [row.get(name) for row in rows]
    kinds = set(map(type, values))
    if not kinds & {list, tuple}:  # one value or None a row (a CSV field): columnar in Arrow
      array = _scalar_column(name, values, kinds)
      if array is not None:
        arrays.append(array)
        names.append(name)
      continue
    lists = [(list(v) if isinstance(v, (list, tuple)) else [v]) if v is not None else None
             for v in values]
    lists = [v or None for v in lists]  # missing, as `to_example` leaves out an empty list
    first = next((v[0] for v in lists if v), None)
    if first is None:  # missing in every row of the batch
      continue
    arrow_type = _arrow_type(name, first)
    if arrow_type == pa.list_(pa.binary()):
      lists = [None if v is None else [x.encode('utf-8') if isinstance(x, str) else x for x in v]
               for v in lists]
    elif arrow_type == pa.list_(pa.int64()):
      if not all(isinstance(x, int) for v in lists if v for x in v):  # Arrow would truncate
        raise ValueError(f'feature {name}: values of more than one kind in a batch of rows '
                         f'(int, then {sorted({type(x).__name__ for v in lists if v for x in v})})')
      if isinstance(first, bool):  # Arrow takes no bool as int64
        lists = [None if v is None else [int(x) for x in v] for v in lists]
    try:
      arrays.append(pa.array(lists, type=arrow_type))
    except (pa.ArrowException, TypeError, ValueError, OverflowError) as e:
      raise ValueError(f'feature {name}: values of more than one kind in a batch of rows '
                       f'({e})') from e
    names.append(name)
  if not names:  # no row has a value: empty tf.Examples
    return [tf.train.Example().SerializeToString()] * len(rows)
  return example_coder.RecordBatchToExamplesEncoder().encode(
      pa.RecordBatch.from_arrays(arrays, names))


def read_line_chunks(path: str, chunk_lines: int = CHUNK_LINES, first_row: int = 0,
                     num_rows: Optional[int] = None) -> Iterable[Tuple[str, int, List[bytes]]]:
  """Yields (path, 1-based number of the chunk's first line, up to `chunk_lines` lines) of a file.

  Lines are bytes without their line ending. Compression is detected from the file name (`.gz`,
  `.bz2`, ...); any Beam file system works. Chunks, not lines, travel through the Reshuffle
  (record_checks.SpreadOverWorkers) that spreads parsing over workers: Beam's per-element cost is
  paid once per chunk.

  Only rows `first_row` .. `first_row + num_rows - 1` are read (rows are lines counted from 0; all
  the rest when `num_rows` is None): earlier lines are skipped unparsed, and the file is closed as
  soon as the range ends.
  """
  end = None if num_rows is None else first_row + num_rows
  with FileSystems.open(path) as f:
    lines = iter(f.readline, b'')
    for _ in itertools.islice(lines, first_row):
      pass
    chunk: List[bytes] = []
    first = first_row + 1
    for number, line in enumerate(itertools.islice(lines, None if end is None else end - first_row),
                                  start=first_row + 1):
      chunk.append(line.rstrip(b'\r\n'))
      if len(chunk) == chunk_lines:
        yield path, first, chunk
        chunk, first = [], number + 1
    if chunk:
      yield path, first, chunk


class _ParseLines(beam.DoFn):
  """Parses chunks of numbered lines into rows ({feature: value} dicts).

  A file's first line loses a UTF-8 BOM, and is skipped when it is the parser's header (see the
  module doc). Outputs: the rows; `malformed`: (path, line, reason, text) per bad line; `valid`:
  the number of rows of each chunk; `notice`: (path, line, sentence) per BOM stripped or header
  skipped.
  """

  def __init__(self, line_parser: str):
    self._line_parser = line_parser
    self._parse = None
    self._is_header = None

  def setup(self):
    self._parse = import_callable(self._line_parser)
    columns = getattr(self._parse, 'columns', None)
    self._is_header = header_matcher(columns) if columns else (lambda line: False)

  def process(self, element):
    path, first, lines = element
    valid = 0
    for number, raw in enumerate(lines, start=first):
      text, reason, bom = decode_line(raw, number)
      if bom:
        yield beam.pvalue.TaggedOutput(NOTICE, (
            path, 0, f'UTF-8 byte-order mark (BOM) stripped at the start of {path}'))
      if text is None:
        yield beam.pvalue.TaggedOutput(MALFORMED, (path, number, reason,
                                                    raw.decode('utf-8', 'replace')))
        continue
      if number == 1 and self._is_header(text):
        yield beam.pvalue.TaggedOutput(NOTICE, (
            path, 1, f'header line (column names) skipped at {path}:1'))
        continue
      try:
        row = self._parse(text)
      except ValueError as e:
        row, error = None, str(e)
      else:
        error = None
      if (row is None or error) and self._is_header(text):
        error = ('a header line (the column names) after the first line of the file: only a '
                 "file's first line may be a header")
      if error:
        yield beam.pvalue.TaggedOutput(MALFORMED, (path, number, error, text))
      elif row is not None:
        yield row
        valid += 1
    yield beam.pvalue.TaggedOutput(VALID, valid)


@beam.ptransform_fn
@beam.typehints.with_output_types(bytes)
def _RowsToExamples(rows: beam.pvalue.PCollection) -> beam.pvalue.PCollection:
  """Rows -> serialized tf.Examples, encoded CHUNK_LINES rows at a time (to_serialized_examples)."""
  return (rows
          | 'Batch' >> beam.BatchElements(min_batch_size=CHUNK_LINES, max_batch_size=CHUNK_LINES)
          | 'Encode' >> beam.FlatMap(to_serialized_examples))


@beam.ptransform_fn
@beam.typehints.with_input_types(beam.Pipeline)
@beam.typehints.with_output_types(bytes)
def _TextLinesToExample(pipeline: beam.Pipeline, exec_properties: Dict[str, Any],
                        split_pattern: str, split: Optional[str] = None) -> beam.pvalue.PCollection:
  """Reads the files matching `split_pattern` under input_base into serialized tf.Examples (see
  the module doc).

  `split` names the split (its row range and reports); TFX's default caller passes only the
  pattern, which then stands for the split.
  """
  return (pipeline
          | 'ReadRows' >> _TextLinesToRows(exec_properties, split_pattern, split)  # pylint: disable=no-value-for-parameter
          | 'ToExample' >> _RowsToExamples())  # pylint: disable=no-value-for-parameter


@beam.ptransform_fn
@beam.typehints.with_input_types(beam.Pipeline)
def _TextLinesToRows(pipeline: beam.Pipeline, exec_properties: Dict[str, Any],
                     split_pattern: str, split: Optional[str] = None) -> beam.pvalue.PCollection:
  """Reads the files matching `split_pattern` into rows, checking and reporting malformed lines.

  Raises:
    FileNotFoundError: no file matches (naming the file when the pattern is an escaped name).
    ValueError: a row range over a pattern that matches several files.
  """
  config = custom_config(exec_properties)
  input_base = exec_properties[standard_component_specs.INPUT_BASE_KEY]
  pattern = os.path.join(input_base, split_pattern)
  shown = display_pattern(pattern)
  split = split or split_pattern
  paths = match_paths(pattern)
  if not paths:
    raise FileNotFoundError(f'split {split!r}: no file matches {shown}' if shown == pattern
                            else f'split {split!r}: the file {shown} does not exist')
  first_row, num_rows = split_row_range(config, split)
  if (first_row or num_rows is not None) and len(paths) > 1:
    raise ValueError(f'split {split!r}: a row range needs one file, but {shown} matches '
                     f'{len(paths)}: {", ".join(paths)}')
  logging.info('Split %s: reading %s, rows %d to %s', split, ', '.join(paths), first_row,
               'the end' if num_rows is None else first_row + num_rows - 1)

  parsed = (pipeline
            | 'Files' >> beam.Create(paths)
            | 'ReadLineChunks' >> beam.FlatMap(read_line_chunks, first_row=first_row,
                                               num_rows=num_rows)
            | 'Spread' >> SpreadOverWorkers()
            | 'Parse' >> beam.ParDo(_ParseLines(config['line_parser'])).with_outputs(
                MALFORMED, VALID, NOTICE, main='rows'))
  add_split_check(pipeline, parsed, exec_properties, split, source=shown, files=paths,
                  row_range=(first_row, num_rows), unit='row',
                  default_threshold=DEFAULT_MAX_MALFORMED_FRACTION)
  rows = parsed.rows
  return rows


class Executor(ReportingExecutor):
  """Beam executor of TextLineExampleGen; see the module docstring."""

  def GetInputSourceToExamplePTransform(self) -> beam.PTransform:
    return _TextLinesToExample

  def GenerateExamplesByBeam(self, pipeline: beam.Pipeline, exec_properties: Dict[str, Any]
                             ) -> Dict[str, beam.pvalue.PCollection]:
    """Each input split as it is (ReportingExecutor), or the splits `split_fn` builds from the rows
    of the one input split."""
    config = custom_config(exec_properties)
    if not config.get('split_fn'):
      return super().GenerateExamplesByBeam(pipeline, exec_properties)
    (source,) = input_splits(exec_properties)
    rows = pipeline | f'InputToRows[{source.name}]' >> _TextLinesToRows(  # pylint: disable=no-value-for-parameter
        exec_properties, source.pattern, split=source.name)
    outputs = import_callable(config['split_fn'])(rows, **(config.get('split_fn_args') or {}))
    expected = list(config['output_splits'])
    if sorted(outputs) != sorted(expected):
      raise ValueError(f'{config["split_fn"]} returned splits {sorted(outputs)}, expected '
                       f'{sorted(expected)}')
    return {name: outputs[name] | f'ToExample[{name}]' >> _RowsToExamples()  # pylint: disable=no-value-for-parameter
            for name in expected}


class TextLineExampleGen(FileBasedExampleGen):
  """ExampleGen for line-oriented raw text: one line parser, one file pattern per split.

  Example:
    TextLineExampleGen(input_base='/data/census',
                       splits={'train': 'adult.data.gz', 'eval': 'adult.test.gz'},
                       line_parser='preprocessing.census.parse_line')

  Outputs `examples`: standard Examples (gzipped TFRecords of tf.Example), one split per entry of
  `splits`, with `malformed_rows_<split>`, `valid_rows_<split>` and `first_row_<split>` custom
  properties and `malformed_rows-<split>.json`.
  """

  EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(Executor)

  def __init__(self, input_base: str, splits: Dict[str, str], line_parser: str,
               max_malformed_fraction: float = DEFAULT_MAX_MALFORMED_FRACTION,
               row_ranges: Optional[Mapping[str, Tuple[int, Optional[int]]]] = None,
               split_fn: Optional[str] = None, split_fn_args: Optional[Mapping[str, Any]] = None,
               output_splits: Sequence[str] = ()):
    """Args:
      input_base: folder holding the raw files (any Beam file system).
      splits: split name -> file pattern relative to `input_base` (e.g. `adult.data*`). Two
        splits may name the same file with different row ranges.
      line_parser: module path of the line parser, e.g. `preprocessing.census.parse_line`.
      max_malformed_fraction: the run fails when more than this fraction of a split's rows is
        malformed (0 <= value < 1; 0 fails on the first malformed row).
      row_ranges: split name -> (first row, number of rows or None for the rest), rows being the
        lines of the split's single file counted from 0. Splits not listed read everything.
      split_fn: module path of `fn(rows, **split_fn_args) -> {split: PCollection of rows}`, which
        builds the output splits from the rows of the one input split (MovieLens: leave-one-out
        per user); None writes each input split as it is.
      split_fn_args: JSON-serializable keyword arguments of `split_fn`.
      output_splits: the names of the splits `split_fn` returns.

    Raises:
      ValueError: `splits` is empty, `max_malformed_fraction` is out of range, a row range
        names an unknown split or has a negative start or a non-positive length, or `split_fn`
        is given without one input split and `output_splits`.
    """
    if split_fn and (len(splits) != 1 or not output_splits):
      raise ValueError('split_fn needs exactly one input split and the output_splits it returns')
    config = example_gen_config(splits, max_malformed_fraction, row_ranges,
                                line_parser=line_parser, split_fn=split_fn,
                                split_fn_args=dict(split_fn_args or {}),
                                output_splits=list(output_splits))
    super().__init__(
        input_base=input_base,
        input_config=example_gen_pb2.Input(splits=[
            example_gen_pb2.Input.Split(name=name, pattern=pattern)
            for name, pattern in splits.items()]),
        # Output splits are the input splits, even for one split (no 2:1 hash re-split), or
        # those of split_fn (the hash buckets are not used).
        output_config=example_gen_pb2.Output(split_config=example_gen_pb2.SplitConfig(splits=[
            example_gen_pb2.SplitConfig.Split(name=name, hash_buckets=1)
            for name in output_splits])) if split_fn else example_gen_pb2.Output(),
        custom_config=config)
