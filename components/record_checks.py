"""Malformed input in this project's ExampleGens: counted, reported, and fatal over a threshold.

An ExampleGen's parsing DoFn tags each bad unit of input (a text row, an IDX record) as `MALFORMED`
with `(file, position, reason, text)`, emits under `VALID` the number of good units of each chunk it
parsed, and under `NOTICE` `(file, position, sentence)` for what it did to the input without
failing (a byte-order mark stripped, a header line skipped). `add_malformed_check` wires the
split's check into the Beam pipeline: `check_malformed` writes `malformed_rows-<split>.json` into
the Examples artifact (counts, fraction, the first `MAX_REPORTED` bad units by file and position,
the notices), logs them, and raises
`MalformedRowsError` when the split has no valid unit or more than `max_malformed_fraction` bad
ones. After the Beam job, `record_reports` copies each split's counts into the artifact's custom
properties (`valid_rows_<split>`, `malformed_rows_<split>`, `first_row_<split>`), where the run
summary reads them.

`ReportingExecutor` is the executor every ExampleGen here builds on: it reads every input split
with the split's name (two splits may read different row ranges of one file, so a pattern does not
name a split), writes each split with `components.split_writer.WriteSplit` (TFX's writer, except
on the in-process runner, where it shuffles with bounded memory) and records the reports after the
Beam job.

File names are taken literally where a user gives them: `escape_glob` makes a file name a pattern
that matches only itself (pipelines.factory.split_patterns), `literal_path` turns such a pattern
back into the name (for the readers that open a path rather than match a pattern), and
`match_paths` matches a pattern through Beam's file systems.

`SpreadOverWorkers` is the ExampleGens' Reshuffle between reading a file and parsing its chunks,
left out where there is no other worker to spread to (the in-process DirectRunner).

`example_gen_config` checks and packs the settings shared by the ExampleGens (row ranges and the
malformed threshold) into FileBasedExampleGen's `custom_config`; `custom_config` unpacks them.
"""

from __future__ import annotations

import json
import os
import re
import warnings
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import apache_beam as beam
import tensorflow as tf
from absl import logging
from google.protobuf import any_pb2, json_format, struct_pb2
from tfx.components.example_gen import base_example_gen_executor
from tfx.components.example_gen import utils as example_gen_utils
from tfx.components.example_gen import write_split as tfx_write_split
from tfx.components.util import examples_utils
from tfx.proto import example_gen_pb2
from tfx.types import artifact as tfx_artifact
from tfx.types import artifact_utils
from tfx.types import standard_component_specs
from tfx.utils import proto_utils

from beam_runner import options as beam_options
from components import split_writer

MAX_REPORTED = 10
MAX_NOTICES = 20
REPORT_DIR_KEY = '_malformed_report_dir'  # exec property: the Examples artifact's directory
MALFORMED = 'malformed'
VALID = 'valid'
NOTICE = 'notice'
_REPORT_PREFIX = 'malformed_rows-'


class SpreadOverWorkers(beam.PTransform):
  """A Reshuffle, so that what follows (parsing, encoding, writing) runs on every worker instead
  of on the one that read the file; nothing on the in-process DirectRunner with one worker
  (`beam_runner.options.runs_in_one_process`). There it would spread nothing, and Beam's
  in-process runner materializes a Reshuffle's whole input, so the split's raw chunks would all be
  held in memory: without it, reading, parsing and writing fuse into one streaming stage."""

  def expand(self, pcoll: beam.PCollection) -> beam.PCollection:
    if beam_options.runs_in_one_process(pcoll.pipeline.options):
      return pcoll
    return pcoll | beam.Reshuffle()


class MalformedRowsError(ValueError):
  """Too many rows (or records) of a split could not be parsed."""


def _describe(unit: str, path: str, position: int, reason: str, text: str) -> str:
  """One bad unit as the user reads it: `file:line: reason: 'text'` or `file: record N: reason`."""
  if unit == 'row':
    return f'{path}:{position}: {reason}: {text[:120]!r}'
  if unit == 'file':
    return f'{path}: {reason}'
  return f'{path}: {unit} {position}: {reason}'


_GLOB_CHARS = '[*?'
_ESCAPED = re.compile(r'\[([]*?[])\]')


def escape_glob(name: str) -> str:
  """A file name (or relative path) as a glob pattern that matches only itself: each `[`, `*`
  and `?` becomes a one-character class (`[[]`, `[*]`, `[?]`), which Beam's FileSystems.match,
  tf.io.gfile.glob (TFX's input fingerprint) and fnmatch all read as the character. `]` needs no
  escape outside a class."""
  return re.sub(r'([*?[])', r'[\1]', name)


def literal_path(pattern: str) -> Optional[str]:
  """The one path `pattern` stands for when its only glob characters are `escape_glob`'s
  escapes (`a[[]1].txt` -> `a[1].txt`); None when it has a real wildcard (`*`, `?`, `[...]`)."""
  literal = _ESCAPED.sub('', pattern)
  if any(c in literal for c in _GLOB_CHARS):
    return None
  return _ESCAPED.sub(lambda m: m.group(1), pattern)


def display_pattern(pattern: str) -> str:
  """The pattern as the user should read it: the literal file name when it names one file."""
  return literal_path(pattern) or pattern


def match_paths(pattern: str) -> List[str]:
  """The sorted paths matching a glob pattern, through Beam's FileSystems (any file system).

  Python's `re` warns about the `[[]` escape in the regular expression Beam builds from the
  pattern; that warning is silenced here (the escape is meant)."""
  from apache_beam.io.filesystems import FileSystems  # pylint: disable=import-outside-toplevel
  with warnings.catch_warnings():
    warnings.filterwarnings('ignore', message='Possible nested set', category=FutureWarning)
    return sorted(m.path for r in FileSystems.match([pattern]) for m in r.metadata_list)


def _notice_sentences(notices: Sequence[Tuple[str, int, str]], count: int) -> List[str]:
  """The report's `notices`: the first sentences by file and position, and the count of the rest."""
  sentences = [sentence for _, _, sentence in sorted(notices)]
  if count > len(sentences):
    sentences.append(f'... and {count - len(sentences)} more notices of the same kinds '
                     f'({count} in all)')
  return sentences


def check_malformed(_, valid: int, malformed: int, first: Sequence[Tuple[str, int, str, str]],
                    split: str, source: str, files: List[str], threshold: float,
                    report_dir: Optional[str], row_range: Tuple[int, Optional[int]],
                    unit: str = 'row', notices: Sequence[Tuple[str, int, str]] = (),
                    notice_count: Optional[int] = None) -> None:
  """Writes the split's report and raises MalformedRowsError when the split is unusable.

  Args:
    valid, malformed: counts of good and bad units of the split.
    first: the first bad units, (file, position, reason, text), position being the line number
      (`unit='row'`, from 1) or the record index (from 0).
    split, source: the split's name and what it reads (a file pattern, or its first file).
    files: the files read. threshold: the largest tolerated malformed fraction.
    report_dir: where `malformed_rows-<split>.json` goes; None writes nothing.
    row_range: (first row, number of rows or None) the split asked for.
    unit: `row` (text lines; the report gives `line` and `text`), `record` (binary records) or
      `file` (one file per unit, such as an image; the position is not reported).
    notices: (file, position, sentence) of what was done to the input without failing (BOM
      stripped, header line skipped); the report's `notices` lists the sentences by file and
      position. notice_count: how many notices there were in all (default: len(notices)).

  The report (`malformed_rows-<split>.json`) holds split, source, files, first_row, num_rows,
  valid_rows, malformed_rows, malformed_fraction, max_malformed_fraction, notices (list of
  str) and first_malformed ([{file, line or record, reason, text}]).

  Raises:
    MalformedRowsError: no valid unit, or a malformed fraction above `threshold`; the message
      lists the first bad units.
  """
  total = valid + malformed
  fraction = malformed / total if total else 0.0
  position_key = {'row': 'line', 'file': None}.get(unit, unit)
  report = {
      'split': split, 'source': source, 'files': files, 'first_row': row_range[0],
      'num_rows': row_range[1], 'valid_rows': valid, 'malformed_rows': malformed,
      'malformed_fraction': fraction, 'max_malformed_fraction': threshold,
      'first_malformed': [
          {'file': p, **({position_key: n} if position_key else {}), 'reason': r,
           **({'text': t[:200]} if unit == 'row' else {})}
          for p, n, r, t in sorted(first)],
      'notices': _notice_sentences(notices, len(notices) if notice_count is None
                                   else notice_count),
  }
  if report_dir:
    path = os.path.join(report_dir, f'{_REPORT_PREFIX}{split}.json')
    with tf.io.gfile.GFile(path, 'w') as f:
      json.dump(report, f, indent=2)
  listing = ''.join('\n  ' + _describe(unit, *bad) for bad in sorted(first))
  for sentence in report['notices']:
    logging.warning('Split %s: %s', split, sentence)
  if malformed:
    logging.warning('Split %s: %d of %d %ss malformed (%.4f%%); first ones:%s', split, malformed,
                    total, unit, 100 * fraction, listing)
  if valid == 0:
    where = f', {unit}s from {row_range[0]}' if row_range[0] else ''
    raise MalformedRowsError(
        f'split {split!r} ({source}{where}): no valid {unit} in {total} {unit}s{listing}'
        + (' (the file ends before the first row asked for)' if not total and row_range[0] else ''))
  if fraction > threshold:
    raise MalformedRowsError(
        f'split {split!r} ({source}): {malformed} of {total} {unit}s are malformed '
        f'({100 * fraction:.3f}%, more than the allowed {100 * threshold:.3f}%); '
        f'first {len(first)}:{listing}')


def add_malformed_check(pipeline: beam.Pipeline, valid_counts: beam.PCollection,
                        malformed: beam.PCollection,
                        notices: Optional[beam.PCollection] = None,
                        known_notices: Sequence[Tuple[str, int, str]] = (),
                        **check_args: Any) -> None:
  """Adds the split's `check_malformed` to the Beam pipeline (inside the split's composite).

  Args:
    valid_counts: ints, the good units of each parsed chunk.
    malformed: (file, position, reason, text) per bad unit.
    notices: (file, position, sentence) per notice found by the workers; None for none.
    known_notices: notices found while the pipeline was built (a labels file's BOM).
    **check_args: check_malformed's split, source, files, threshold, report_dir, row_range, unit.
  """
  valid = valid_counts | 'CountValid' >> beam.CombineGlobally(sum)
  count = malformed | 'CountMalformed' >> beam.combiners.Count.Globally()
  first = malformed | 'FirstMalformed' >> beam.combiners.Top.Smallest(
      MAX_REPORTED, key=lambda bad: (bad[0], bad[1]))
  if notices is None:
    notices = pipeline | 'NoNotices' >> beam.Create([])
  if known_notices:
    notices = ((notices, pipeline | 'KnownNotices' >> beam.Create(list(known_notices)))
               | 'AllNotices' >> beam.Flatten())
  notice_count = notices | 'CountNotices' >> beam.combiners.Count.Globally()
  first_notices = notices | 'FirstNotices' >> beam.combiners.Top.Smallest(
      MAX_NOTICES, key=lambda notice: (notice[0], notice[1]))
  _ = (pipeline
       | 'CheckTrigger' >> beam.Create([None])
       | 'CheckMalformed' >> beam.Map(
           check_malformed, valid=beam.pvalue.AsSingleton(valid),
           malformed=beam.pvalue.AsSingleton(count), first=beam.pvalue.AsSingleton(first),
           notices=beam.pvalue.AsSingleton(first_notices),
           notice_count=beam.pvalue.AsSingleton(notice_count), **check_args))


def add_split_check(pipeline: beam.Pipeline, outputs: beam.pvalue.DoOutputsTuple,
                    exec_properties: Dict[str, Any], split: str, source: str,
                    files: Sequence[str], row_range: Tuple[int, Optional[int]], unit: str,
                    default_threshold: float = 0.0,
                    known_notices: Sequence[Tuple[str, int, str]] = ()) -> None:
  """`add_malformed_check` of a split read by an ExampleGen executor: the `VALID`, `MALFORMED`
  and `NOTICE` outputs of its parsing DoFn (declared with `with_outputs(MALFORMED, VALID,
  NOTICE, main=...)`), the component's `max_malformed_fraction` (`default_threshold` when unset)
  and the report directory from its exec properties."""
  threshold = float(custom_config(exec_properties).get('max_malformed_fraction',
                                                       default_threshold))
  add_malformed_check(pipeline, outputs[VALID], outputs[MALFORMED], notices=outputs[NOTICE],
                      known_notices=known_notices, split=split, source=source,
                      files=list(files), threshold=threshold,
                      report_dir=exec_properties.get(REPORT_DIR_KEY), row_range=row_range,
                      unit=unit)


def record_reports(examples: tfx_artifact.Artifact) -> None:
  """Copies every split's report counts into the Examples artifact's custom properties."""
  for name in tf.io.gfile.listdir(examples.uri):
    if name.startswith(_REPORT_PREFIX) and name.endswith('.json'):
      with tf.io.gfile.GFile(os.path.join(examples.uri, name)) as f:
        report = json.load(f)
      for key in ('malformed_rows', 'valid_rows', 'first_row'):
        examples.set_int_custom_property(f'{key}_{report["split"]}', report[key])


def input_splits(exec_properties: Dict[str, Any]) -> List[example_gen_pb2.Input.Split]:
  """The component's input splits (name and file pattern), from its `input_config`."""
  input_config = example_gen_pb2.Input()
  proto_utils.json_to_proto(exec_properties[standard_component_specs.INPUT_CONFIG_KEY],
                            input_config)
  return list(input_config.splits)


class ReportingExecutor(base_example_gen_executor.BaseExampleGenExecutor):
  """An ExampleGen executor whose reader (`GetInputSourceToExamplePTransform`, called as
  `reader(exec_properties, pattern, split=name)`) writes malformed-input reports, which `Do` then
  copies into the Examples artifact's custom properties (`record_reports`)."""

  def GenerateExamplesByBeam(self, pipeline: beam.Pipeline, exec_properties: Dict[str, Any]
                             ) -> Dict[str, beam.pvalue.PCollection]:
    """One PCollection of tf.Examples per input split, each read knowing its split name."""
    read = self.GetInputSourceToExamplePTransform()
    return {split.name: pipeline | f'InputToRecord[{split.name}]' >> read(  # pylint: disable=no-value-for-parameter
                exec_properties, split.pattern, split=split.name)
            for split in input_splits(exec_properties)}

  def Do(self, input_dict, output_dict, exec_properties):
    """BaseExampleGenExecutor.Do with each split written by `split_writer.WriteSplit` (bounded
    memory on the in-process runner) instead of TFX's WriteSplit; then the reports recorded."""
    examples = artifact_utils.get_single_instance(
        output_dict[standard_component_specs.EXAMPLES_KEY])
    exec_properties = dict(exec_properties, **{REPORT_DIR_KEY: examples.uri})
    self._log_startup(input_dict, output_dict, exec_properties)
    input_config = example_gen_pb2.Input()
    proto_utils.json_to_proto(exec_properties[standard_component_specs.INPUT_CONFIG_KEY],
                              input_config)
    output_config = example_gen_pb2.Output()
    proto_utils.json_to_proto(exec_properties[standard_component_specs.OUTPUT_CONFIG_KEY],
                              output_config)
    examples.split_names = artifact_utils.encode_split_names(
        example_gen_utils.generate_output_split_names(input_config, output_config))
    with self._make_beam_pipeline() as pipeline:
      for name, split in self.GenerateExamplesByBeam(pipeline, exec_properties).items():
        _ = split | f'WriteSplit[{name}]' >> split_writer.WriteSplit(  # pylint: disable=no-value-for-parameter
            artifact_utils.get_split_uri([examples], name), exec_properties)
    payload_format = exec_properties.get(standard_component_specs.OUTPUT_DATA_FORMAT_KEY)
    if payload_format:
      examples_utils.set_payload_format(examples, payload_format)
    file_format = exec_properties.get(standard_component_specs.OUTPUT_FILE_FORMAT_KEY)
    if file_format:
      examples_utils.set_file_format(examples, tfx_write_split.to_file_format_str(file_format))
    record_reports(examples)


def example_gen_config(splits: Mapping[str, str], max_malformed_fraction: float,
                       row_ranges: Optional[Mapping[str, Tuple[int, Optional[int]]]],
                       **settings: Any) -> example_gen_pb2.CustomConfig:
  """The ExampleGen settings, checked, packed as a Struct in a CustomConfig.

  Args:
    splits: split name -> file pattern.
    max_malformed_fraction: 0 <= value < 1.
    row_ranges: split name -> (first row >= 0, number of rows > 0 or None for the rest).
    **settings: the component's own JSON-serializable settings.

  Raises:
    ValueError: no split, a fraction out of range, or a row range of an unknown split, with a
      negative start or a non-positive length.
  """
  if not splits:
    raise ValueError('splits must name at least one split')
  if not 0 <= max_malformed_fraction < 1:
    raise ValueError(f'max_malformed_fraction must be in [0, 1), got {max_malformed_fraction}')
  row_ranges = dict(row_ranges or {})
  for split, (first_row, num_rows) in row_ranges.items():
    if split not in splits:
      raise ValueError(f'row range for unknown split {split!r}; splits: {sorted(splits)}')
    if first_row < 0 or (num_rows is not None and num_rows <= 0):
      raise ValueError(f'split {split!r}: row range ({first_row}, {num_rows}) needs a first row '
                       '>= 0 and a positive number of rows')
  struct = struct_pb2.Struct()
  struct.update({'max_malformed_fraction': max_malformed_fraction,
                 'row_ranges': {k: [int(a), None if b is None else int(b)]
                                for k, (a, b) in row_ranges.items()},
                 **settings})
  packed = any_pb2.Any()
  packed.Pack(struct)
  return example_gen_pb2.CustomConfig(custom_config=packed)


def custom_config(exec_properties: Dict[str, Any]) -> Dict[str, Any]:
  """The executor's settings: the Struct packed in FileBasedExampleGen's `custom_config`."""
  value = exec_properties.get(standard_component_specs.CUSTOM_CONFIG_KEY)
  if not value:
    return {}
  config = example_gen_pb2.CustomConfig()
  if isinstance(value, str):
    proto_utils.json_to_proto(value, config)
  else:
    config.CopyFrom(value)
  struct = struct_pb2.Struct()
  config.custom_config.Unpack(struct)
  return json_format.MessageToDict(struct)


def split_row_range(config: Mapping[str, Any], split: str) -> Tuple[int, Optional[int]]:
  """(first row, number of rows or None) of `split` in the unpacked settings."""
  first_row, num_rows = (config.get('row_ranges') or {}).get(split, (0, None))
  return int(first_row), None if num_rows is None else int(num_rows)
