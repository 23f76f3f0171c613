"""ParallelTextExampleGen: a FileBasedExampleGen for translation corpora in their raw layouts.

Each split's pattern (relative to `input_base`) names one of:

- **the source side of a line-aligned file pair** (`newstest2014.en`, plain or `.gz`): its target
  side is the file beside it with the target language's suffix (`newstest2014.de`, plain or `.gz`;
  `target_path`). Line i of one file translates line i of the other, the layout of the WMT test
  sets, Europarl, News Commentary and most of OPUS. The two files must have the same number of
  lines: otherwise the run stops before anything is written, naming both files and both counts.
- **a folder of Tensor2Tensor subword TFRecords** (T2T's `translate_ende_wmt32k` data generator
  output: `<problem>-train-NNNNN-of-NNNNN` shards of tf.Examples with int64 `inputs` and `targets`
  subword ids ending in EOS = 1, and the `vocab.*` SubwordTextEncoder vocabulary beside them): the
  split reads the shards matching its `record_globs` entry and decodes them back to text with the
  vocabulary (`preprocessing.t2t_subwords`), so that the pipeline builds its own vocabulary from text
  like any other corpus.

Every pair becomes a tf.Example with `inputs` (the source sentence, UTF-8 bytes) and `targets` (its
translation), T2T's feature names. A UTF-8 byte-order mark at the start of either file is stripped
(a notice in the split's report). A pair with an empty side, or a line that is not UTF-8, is a
malformed row, reported with the file of the side at fault and its line number (record index for
TFRecords) like
TextLineExampleGen's malformed rows (`malformed_rows-<split>.json` in the Examples artifact, custom
properties `valid_rows_<split>` and `malformed_rows_<split>`); the run fails when more than
`max_malformed_fraction` of a split is malformed. Row ranges (first line, number of lines) apply to
file pairs.

Scale: a file pair is read by one worker (the lines of both files must be zipped in order), then
spread over the workers in chunks; the shards of a TFRecord folder are read in parallel.
"""

from __future__ import annotations

import codecs
import os
import re
from typing import Any, Dict, Iterable, List, Mapping, Optional, Tuple

import apache_beam as beam
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

SOURCE_KEY = 'inputs'
TARGET_KEY = 'targets'
CHUNK_LINES = 1000


class ParallelTextError(ValueError):
  """A parallel corpus is not line-aligned, or a split names neither a file pair nor a folder of
  subword TFRecords."""


def target_path(source_path: str, source_language: str, target_language: str) -> str:
  """The target-side file of a source-side file: its `.<source_language>` suffix (before any
  `.gz`) replaced by `.<target_language>`; the plain or `.gz` name that exists, preferring the
  source's own compression.

  Raises:
    ParallelTextError: the source file name does not end in `.<source_language>[.gz]`, or no
      target file exists.
  """
  match = re.fullmatch(rf'(.*)\.{re.escape(source_language)}(\.gz)?', source_path)
  if not match:
    raise ParallelTextError(f'{source_path}: the source side of a file pair must end in '
                            f'.{source_language} (or .{source_language}.gz)')
  base = f'{match.group(1)}.{target_language}'
  candidates = [base + '.gz', base] if match.group(2) else [base, base + '.gz']
  for candidate in candidates:
    if FileSystems.exists(candidate):
      return candidate
  raise ParallelTextError(f'{source_path}: its target side {base} (or {base}.gz) does not exist')


def _read_lines(path: str) -> List[bytes]:
  """The file's lines without their line ends (gzip by name); a final newline adds no line."""
  with FileSystems.open(path, compression_type=CompressionTypes.AUTO) as f:
    data = b''.join(iter(lambda: f.read(1 << 20), b''))
  return data.split(b'\n')[:-1] if data.endswith(b'\n') else data.split(b'\n')


def read_pair(source: str, target: str) -> Tuple[List[bytes], List[bytes]]:
  """Both sides of a line-aligned pair, as raw lines (bytes, `\\r` kept).

  Raises:
    ParallelTextError: the files have different numbers of lines (both named, with their counts).
  """
  source_lines, target_lines = _read_lines(source), _read_lines(target)
  if len(source_lines) != len(target_lines):
    raise ParallelTextError(
        f'{source} has {len(source_lines)} lines but {target} has {len(target_lines)}: the two '
        'sides of a parallel corpus must be line-aligned (line i translates line i)')
  return source_lines, target_lines


def _strip_bom(lines: List[bytes]) -> bool:
  """Strips a UTF-8 byte-order mark from the first line, in place; whether there was one."""
  if lines and lines[0].startswith(codecs.BOM_UTF8):
    lines[0] = lines[0][len(codecs.BOM_UTF8):]
    return True
  return False


def _pair_chunks(element: Tuple[str, str, int, Optional[int]]
                 ) -> Iterable[Tuple[str, str, int, List[Tuple[bytes, bytes]],
                                     List[Tuple[str, int, str]]]]:
  """(source file, target file, first line number, [(source line, target line)], notices)
  chunks of the row range; the first chunk carries the notices of the BOMs stripped."""
  source, target, first_row, num_rows = element
  source_lines, target_lines = read_pair(source, target)
  notices = [(path, 0, f'UTF-8 byte-order mark (BOM) stripped at the start of {path}')
             for path, lines in ((source, source_lines), (target, target_lines))
             if _strip_bom(lines) and first_row == 0]
  end = len(source_lines) if num_rows is None else min(first_row + num_rows, len(source_lines))
  for start in range(first_row, end, CHUNK_LINES):
    stop = min(start + CHUNK_LINES, end)
    yield (source, target, start + 1, list(zip(source_lines[start:stop], target_lines[start:stop])),
           notices if start == first_row else [])


def _check_pair(source: bytes, target: bytes) -> Tuple[Optional[Dict[str, str]], str, str]:
  """({inputs, targets}, '', '') for a good pair, else (None, the side at fault: `source` or
  `target`, why the pair is malformed)."""
  texts = []
  for side, raw in (('source', source), ('target', target)):
    try:
      text = raw.decode('utf-8').strip()
    except UnicodeDecodeError as e:
      return None, side, (f'the {side} line is not UTF-8 (byte 0x{raw[e.start]:02x} at column '
                          f'{e.start + 1}: {e.reason})')
    if not text:
      return None, side, f'the {side} line is empty'
    texts.append(text)
  return {SOURCE_KEY: texts[0], TARGET_KEY: texts[1]}, '', ''


class _EncodePairs(beam.DoFn):
  """(source file, target file, first line, pairs, notices) chunk -> tf.Examples; MALFORMED
  (file of the side at fault, line, reason, both lines) per bad pair, VALID the chunk's count of
  good pairs, NOTICE the chunk's notices."""

  def process(self, element):
    source_path, target_path_, first_line, pairs, notices = element
    for notice in notices:
      yield beam.pvalue.TaggedOutput(NOTICE, notice)
    valid = 0
    for offset, (source, target) in enumerate(pairs):
      row, side, reason = _check_pair(source, target)
      if row is None:
        text = source.decode('utf-8', 'replace') + ' ||| ' + target.decode('utf-8', 'replace')
        path = source_path if side == 'source' else target_path_
        yield beam.pvalue.TaggedOutput(MALFORMED, (path, first_line + offset, reason, text))
        continue
      valid += 1
      yield to_example(row)
    yield beam.pvalue.TaggedOutput(VALID, valid)


class _DecodeSubwordShard(beam.DoFn):
  """A shard of T2T tf.Examples -> tf.Examples of text; MALFORMED (shard, record index, reason, '')
  per record whose ids do not decode to two non-empty sentences, and VALID the shard's count of
  good records. The vocabulary is loaded once per worker."""

  def __init__(self, vocab_file: str):
    super().__init__()
    self._vocab_file = vocab_file
    self._decoder = None

  def setup(self):
    from preprocessing import t2t_subwords  # pylint: disable=import-outside-toplevel
    self._decoder = t2t_subwords.SubwordDecoder.from_file(self._vocab_file)

  def _decode(self, example: tf.train.Example) -> Tuple[Dict[str, str], str]:
    """({inputs, targets} text, '') or ({}, why the record is malformed)."""
    row = {}
    for key in (SOURCE_KEY, TARGET_KEY):
      feature = example.features.feature.get(key)
      ids = list(feature.int64_list.value) if feature is not None else []
      try:
        row[key] = self._decoder.decode(ids).strip()
      except ValueError as e:
        return {}, f'{key}: {e}'
      if not row[key]:
        return {}, f'{key}: no subword ids' if not ids else f'{key}: decodes to an empty sentence'
    return row, ''

  def process(self, path):
    valid = 0
    for index, record in enumerate(tf.data.TFRecordDataset(path).as_numpy_iterator()):
      row, reason = self._decode(tf.train.Example.FromString(record))
      if reason:
        yield beam.pvalue.TaggedOutput(MALFORMED, (path, index, reason, ''))
        continue
      valid += 1
      yield to_example(row)
    yield beam.pvalue.TaggedOutput(VALID, valid)


def _is_folder(path: str) -> bool:
  if '://' not in path:
    return os.path.isdir(path)
  return bool(FileSystems.match([FileSystems.join(path, '*')], limits=[1])[0].metadata_list)


def subword_folder_files(folder: str, record_glob: str, vocab_glob: str) -> Tuple[List[str], str]:
  """(sorted shards, vocabulary file) of a folder of T2T subword TFRecords.

  Raises:
    ParallelTextError: no shard matches `record_glob`, or not exactly one file `vocab_glob`.
  """
  shards = match_paths(FileSystems.join(escape_glob(folder), record_glob))
  vocabs = match_paths(FileSystems.join(escape_glob(folder), vocab_glob))
  if not shards:
    raise ParallelTextError(f'{folder}: no TFRecord shard matches {record_glob!r}')
  if len(vocabs) != 1:
    raise ParallelTextError(f'{folder}: expected one subword vocabulary {vocab_glob!r} beside the '
                            f'shards, found {len(vocabs)}')
  return shards, vocabs[0]


@beam.ptransform_fn
@beam.typehints.with_input_types(beam.Pipeline)
@beam.typehints.with_output_types(tf.train.Example)
def _ParallelTextToExample(pipeline: beam.Pipeline, exec_properties: Dict[str, Any],
                           split_pattern: str, split: Optional[str] = None
                           ) -> beam.pvalue.PCollection:
  """Reads the split (file pair or subword folder) into tf.Examples; the pair's alignment and the
  folder's layout are checked here, while the Beam graph is built, so that they stop the run at
  once."""
  config = custom_config(exec_properties)
  input_base = exec_properties[standard_component_specs.INPUT_BASE_KEY]
  split = split or split_pattern
  # A file pair or a folder is one path: the pattern is its name, glob characters escaped.
  path = FileSystems.join(input_base, literal_path(split_pattern) or split_pattern)
  first_row, num_rows = split_row_range(config, split)
  if _is_folder(path):
    if (first_row, num_rows) != (0, None):
      raise ParallelTextError(f'split {split!r}: row ranges apply to file pairs, not to the '
                              f'TFRecord folder {path}')
    record_glob = (config.get('record_globs') or {}).get(split)
    if not record_glob:
      raise ParallelTextError(f'split {split!r} reads the folder {path}: record_globs must name '
                              'its shards (e.g. wmt32k-train-*)')
    shards, vocab_file = subword_folder_files(path, record_glob, config['vocab_glob'])
    logging.info('Split %s: %d subword TFRecord shards in %s, vocabulary %s', split, len(shards),
                 path, vocab_file)
    decoded = (pipeline
               | 'Shards' >> beam.Create(shards)
               | 'Decode' >> beam.ParDo(_DecodeSubwordShard(vocab_file)).with_outputs(
                   MALFORMED, VALID, NOTICE, main='examples'))
    unit, files = 'record', [path]
  else:
    target = target_path(path, config['source_language'], config['target_language'])
    lines = len(read_pair(path, target)[0])
    if first_row >= lines or (num_rows is not None and first_row + num_rows > lines):
      raise ParallelTextError(f'{path}: lines {first_row + 1} to '
                              f'{"the end" if num_rows is None else first_row + num_rows} '
                              f'asked for, but the file has {lines}')
    logging.info('Split %s: %s and %s, %d lines from line %d', split, path, target,
                 (num_rows or lines - first_row), first_row + 1)
    decoded = (pipeline
               | 'Pair' >> beam.Create([(path, target, first_row, num_rows)])
               | 'ReadChunks' >> beam.FlatMap(_pair_chunks)
               | 'Spread' >> SpreadOverWorkers()
               | 'Encode' >> beam.ParDo(_EncodePairs()).with_outputs(
                   MALFORMED, VALID, NOTICE, main='examples'))
    unit, files = 'row', [path, target]
  add_split_check(pipeline, decoded, exec_properties, split, source=path, files=files,
                  row_range=(first_row, num_rows), unit=unit)
  return decoded.examples


class Executor(ReportingExecutor):
  """Beam executor of ParallelTextExampleGen; see the module docstring."""

  def GetInputSourceToExamplePTransform(self) -> beam.PTransform:
    return _ParallelTextToExample


class ParallelTextExampleGen(FileBasedExampleGen):
  """ExampleGen for translation: line-aligned file pairs or folders of T2T subword TFRecords.

  Example:
    ParallelTextExampleGen(input_base='/data/wmt',
                           splits={'train': 'wmt32k', 'eval': 'newstest/newstest2014.en'},
                           record_globs={'train': 'wmt32k-train-*'})

  Outputs `examples`: standard Examples (gzipped TFRecords of tf.Example with `inputs` and
  `targets` strings), one split per entry of `splits`, with the reports of the module docstring.
  """

  EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(Executor)

  def __init__(self, input_base: str, splits: Mapping[str, str], source_language: str = 'en',
               target_language: str = 'de', max_malformed_fraction: float = 0.0,
               row_ranges: Optional[Mapping[str, Tuple[int, Optional[int]]]] = None,
               record_globs: Optional[Mapping[str, str]] = None,
               vocab_glob: str = 'vocab.*'):
    """Args:
      input_base: folder holding the splits (any Beam file system).
      splits: split name -> source-side file of a pair, or a folder of subword TFRecords, relative
        to `input_base`.
      source_language, target_language: the file suffixes of the two sides (`en`, `de`).
      max_malformed_fraction: the run fails when more than this fraction of a split's pairs is
        malformed (0 <= value < 1; 0 fails on the first one).
      row_ranges: split -> (first line, number of lines or None); file pairs only.
      record_globs: split -> glob of its shards inside a TFRecord folder.
      vocab_glob: the subword vocabulary's name inside a TFRecord folder.

    Raises:
      ValueError: no split, equal languages, a fraction out of range, or a bad row range.
    """
    if source_language == target_language:
      raise ValueError(f'source and target language are both {source_language!r}')
    config = example_gen_config(splits, max_malformed_fraction, row_ranges,
                                source_language=source_language,
                                target_language=target_language,
                                record_globs=dict(record_globs or {}), vocab_glob=vocab_glob)
    super().__init__(
        input_base=input_base,
        input_config=example_gen_pb2.Input(splits=[
            example_gen_pb2.Input.Split(name=name, pattern=pattern)
            for name, pattern in splits.items()]),
        output_config=example_gen_pb2.Output(),
        custom_config=config)
