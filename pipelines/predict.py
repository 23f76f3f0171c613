"""`official-tfx predict MODEL`: batch prediction on raw files with a pushed model, in Beam.

  official-tfx predict census --input adult.test.gz --output predictions.jsonl [--with_labels]
      [--output_dir ./output/census | --model_dir DIR] [--output_format=jsonl|csv]
      [--beam_runner=...]

The input is the model's canonical line format (census UCI lines, HIGGS CSV, MRPC TSV), or for
wmt English text, one sentence a line (the spec's `predict_line_parser`): the files matching `--input` are read
with Beam and every line goes through the spec's line parser, as TextLineExampleGen does (a UTF-8
BOM is stripped, a header line of column names skipped, a line the parser returns None for, blank
or comment, is no row). The label feature is taken out of each row, the rows are encoded as raw
tf.Examples (`to_serialized_examples`) and scored by tfx_bsl's RunInference (BulkInferrer's engine)
through the SavedModel's `serving_default` signature, so the `--beam_runner` flags apply as they
do to a run.

Output, one record per input row, in input order (files in sorted order, then line number):

- a prediction: `file`, `line` (1-based), then for a classifier (outputs `probabilities` and
  `class_ids`) `class_id` (int, the model's) and `probabilities` (floats, the model's output:
  [P(class 1)] for a binary model, one per class otherwise); for any other model, each output of
  the signature (lists of numbers, strings decoded as UTF-8). With --with_labels, `label` too.
- a malformed row: `file`, `line`, `error` (the parser's reason) and `text`.

JSON lines by default; with --output_format=csv a header and the same fields (`probability`
for a binary model's one column, `probability_<k>` per class otherwise). The file is written to a
temporary name beside `--output` and renamed. Beam writes the records unordered to shards in a
temporary folder beside `--output`; the launching process sorts them, holding all of them at once
(a few hundred bytes a row: fine for evaluation files, several GB for HIGGS' 11M rows).

Accuracy (--with_labels) counts as TFMA does in the run's evaluation: a binary model's row is
positive when its probability is >= 0.5 (model_fns.binary_metrics: histogram buckets closed on
the left), a multiclass model's class is the arg max (SparseCategoricalAccuracy). The model's own
`class_ids` use > 0.5; the two differ only for a probability of exactly 0.5.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import io
import json
import os
import shutil
import tempfile
import time
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import apache_beam as beam
import numpy as np
from absl import app
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions

from beam_runner import runners as beam_runners
from components import record_checks
from components import text_example_gen
from pipelines import console
from pipelines import settings
from pipelines import spec as spec_lib

FLAGS = settings.FLAGS
MAX_SHOWN_ERRORS = 5  # malformed rows listed on the console
BATCH_ROWS = 1000  # rows encoded at a time (to_serialized_examples)
SERVING_SIGNATURE = 'serving_default'
BINARY_THRESHOLD = 0.5  # TFMA's (model_fns.binary_metrics): probability >= 0.5 is class 1


class PredictError(Exception):
  """A prediction that cannot start or finish: the message is the one line the user reads."""


def line_parser(spec: spec_lib.ModelSpec) -> str:
  """The module path of `spec`'s line parser, e.g. `preprocessing.census.parse_line`.

  The spec's `predict_line_parser` when it has one (wmt: one English sentence a line); else the
  one the ExampleGen factory of a line format (`spec.text_line_example_gen(parser)`) names in its
  `line_parser` attribute.

  Raises:
    PredictError: the spec's raw format is not a line format (IDX images, parallel text, ...),
      or its examples are not one per line (MovieLens' per-user examples).
  """
  if spec.predict_line_parser:
    return spec.predict_line_parser
  parser = getattr(spec.example_gen, 'line_parser', None)
  if not isinstance(parser, str):
    raise PredictError(f'predict reads line formats only (census, higgs, mrpc; wmt\'s sentences); '
                       f'{spec.name}\'s raw format is not one')
  if getattr(spec.example_gen, 'split_fn', None):
    raise PredictError(f'{spec.name}\'s examples are built from groups of rows (split_fn), not '
                       'one per line: predict does not apply')
  return parser


def _saved_model_in(path: str) -> Optional[str]:
  """`path` if it is a SavedModel, else its newest numbered version that is one, else None."""
  if FileSystems.exists(os.path.join(path, 'saved_model.pb')):
    return path
  if not os.path.isdir(path):
    return None
  versions = sorted((int(name) for name in os.listdir(path) if name.isdigit()), reverse=True)
  for version in versions:
    candidate = os.path.join(path, str(version))
    if os.path.isfile(os.path.join(candidate, 'saved_model.pb')):
      return candidate
  return None


def resolve_model(model: str, output_dir: Optional[str], model_dir: Optional[str]) -> str:
  """The SavedModel to score with: `model_dir` (a SavedModel or a folder of numbered versions),
  else the newest version under `<output_dir>/serving_model/` (default ./output/<model>).

  Raises:
    PredictError: no SavedModel there.
  """
  if model_dir:
    path = model_dir if '://' in model_dir else os.path.abspath(model_dir)
    found = _saved_model_in(path)
    if not found:
      raise PredictError(f'--model_dir {path}: no SavedModel there (no saved_model.pb, nor in a '
                         'numbered version folder)')
    return found
  output_dir = os.path.abspath(output_dir or os.path.join('output', model))
  serving = os.path.join(output_dir, 'serving_model')
  found = _saved_model_in(serving) if os.path.isdir(serving) else None
  if not found:
    raise PredictError(f'no pushed model under {serving}: run `official-tfx run {model} '
                       f'--output_dir {output_dir}` until a model is pushed, or give --model_dir')
  return found


def input_paths(pattern: str) -> List[str]:
  """The sorted files of `--input`: a file name (taken as it is, `[`, `*` and `?` included, when
  such a file exists) or a glob pattern, on any Beam file system.

  Raises:
    PredictError: a folder, or nothing matches.
  """
  if '://' not in pattern:
    pattern = os.path.abspath(pattern)
    if os.path.isdir(pattern):
      raise PredictError(f'--input {pattern} is a folder: give a file or a glob pattern '
                         f'({os.path.join(pattern, "*")})')
  exists = FileSystems.exists(pattern)
  literal = exists or not any(c in pattern for c in '*?[')
  paths = record_checks.match_paths(record_checks.escape_glob(pattern) if literal else pattern)
  if not paths:
    raise PredictError(f'--input: the file {pattern} does not exist' if literal
                       else f'--input: no file matches {pattern}')
  return paths


class _ParseNumberedLines(beam.DoFn):
  """Chunks of lines (path, first line number, [bytes]) -> rows keyed by their position.

  Main output: ((path, line, label or None), {feature: value} without the label). Tagged
  `malformed`: {'file', 'line', 'error', 'text'}; `notice`: {'file', 'line', 'notice'} (a BOM
  stripped, a header skipped), as TextLineExampleGen reads the same lines.
  """

  def __init__(self, parser: str, label_key: Optional[str]):
    self._parser_path = parser
    self._label_key = label_key
    self._parse = None
    self._is_header = None

  def setup(self):
    self._parse = text_example_gen.import_callable(self._parser_path)
    columns = getattr(self._parse, 'columns', None)
    self._is_header = (text_example_gen.header_matcher(columns) if columns
                       else (lambda line: False))

  def process(self, element):
    path, first, lines = element
    for number, raw in enumerate(lines, start=first):
      text, reason, bom = text_example_gen.decode_line(raw, number)
      if bom:
        yield beam.pvalue.TaggedOutput('notice', {
            'file': path, 'line': 1, 'notice': 'UTF-8 byte-order mark (BOM) stripped'})
      if text is None:
        yield beam.pvalue.TaggedOutput('malformed', {
            'file': path, 'line': number, 'error': reason,
            'text': raw.decode('utf-8', 'replace')[:200]})
        continue
      if number == 1 and self._is_header(text):
        yield beam.pvalue.TaggedOutput('notice', {
            'file': path, 'line': 1, 'notice': 'header line (column names) skipped'})
        continue
      try:
        row = self._parse(text)
      except ValueError as e:
        yield beam.pvalue.TaggedOutput('malformed', {
            'file': path, 'line': number, 'error': str(e), 'text': text[:200]})
        continue
      if row is None:
        continue
      label = row.pop(self._label_key, None) if self._label_key else None
      yield (path, number, label), row


def encode_rows(batch: Sequence[Tuple[Any, Dict[str, Any]]]) -> List[Tuple[Any, bytes]]:
  """A batch of keyed rows -> [(key, serialized raw tf.Example)] (to_serialized_examples).

  Raises:
    ValueError: a feature whose values are of more than one kind in the batch.
  """
  examples = text_example_gen.to_serialized_examples([row for _, row in batch])
  return list(zip((key for key, _ in batch), examples))


def _value(array: np.ndarray) -> Any:
  """One example's output as JSON: numbers as Python numbers, bytes as UTF-8 text."""
  if array.dtype.kind in ('S', 'O'):
    return [v.decode('utf-8', 'replace') if isinstance(v, bytes) else str(v)
            for v in array.reshape(-1)] if array.ndim else array.item().decode('utf-8', 'replace')
  return array.tolist()


def prediction_record(key: Tuple[str, int, Any], log) -> Dict[str, Any]:
  """A PredictionLog of one row -> its output record (see the module doc).

  Args:
    key: (file, 1-based line, label or None).
    log: tensorflow_serving PredictionLog with a `predict_log` of one example.
  """
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  path, line, label = key
  outputs = {name: tf.make_ndarray(tensor)[0]
             for name, tensor in log.predict_log.response.outputs.items()}
  record = {'file': path, 'line': line}
  if 'probabilities' in outputs and 'class_ids' in outputs:
    record['class_id'] = int(np.asarray(outputs['class_ids']).reshape(-1)[0])
    record['probabilities'] = [float(p) for p in np.asarray(outputs['probabilities']).reshape(-1)]
  else:
    record.update((name, _value(np.asarray(value))) for name, value in sorted(outputs.items()))
  if label is not None:
    record['label'] = label
  return record


class _StringSafeSession:
  """A TF1 session whose `run` returns a rank-1 string output ([batch]) as fixed-width bytes.

  tfx_bsl's predict post-processing splits each output per example and asks the piece for its
  dtype: a string [batch] output (wmt's `outputs`) comes from TF as an object array whose pieces
  are plain `bytes`, which has none. As numpy `S` (fixed-width bytes, trailing NUL bytes dropped)
  each piece is a numpy scalar with a dtype; other outputs pass unchanged.
  """

  def __init__(self, session):
    self._session = session

  def run(self, fetches, feed_dict=None):
    result = self._session.run(fetches, feed_dict=feed_dict)
    return {name: value.astype(np.bytes_) if value.dtype == object and value.ndim == 1 else value
            for name, value in result.items()}

  def __getattr__(self, name):
    return getattr(self._session, name)


def load_model(path: str, tags: Sequence[str], op_modules: Sequence[str] = ()):
  """RunInference's model loader (its `load_override_fn`): imports the model's op libraries, then
  loads the SavedModel into a TF1 session as tfx_bsl does, wrapped in `_StringSafeSession`."""
  import importlib  # pylint: disable=import-outside-toplevel
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  for module in op_modules:
    importlib.import_module(module)
  session = tf.compat.v1.Session(graph=tf.compat.v1.Graph())
  tf.compat.v1.saved_model.loader.load(session, list(tags), path)
  return _StringSafeSession(session)


def build_pipeline(pipeline: beam.Pipeline, paths: Sequence[str], parser: str,
                   label_key: Optional[str], model_path: str, op_modules: Sequence[str],
                   shard_prefix: str) -> None:
  """Adds the prediction stages to `pipeline`: read, parse, encode, RunInference, and write
  every record (predictions, malformed rows, notices) as JSON lines to `shard_prefix`-*."""
  from tfx_bsl.public.beam import RunInference  # pylint: disable=import-outside-toplevel
  from tfx_bsl.public.proto import model_spec_pb2  # pylint: disable=import-outside-toplevel
  inference_spec = model_spec_pb2.InferenceSpecType(saved_model_spec=model_spec_pb2.SavedModelSpec(
      model_path=model_path, signature_name=[SERVING_SIGNATURE], tag=['serve']))
  parsed = (pipeline
            | 'Files' >> beam.Create(list(paths))
            | 'ReadLineChunks' >> beam.FlatMap(text_example_gen.read_line_chunks)
            | 'Spread' >> beam.Reshuffle()
            | 'Parse' >> beam.ParDo(_ParseNumberedLines(parser, label_key)).with_outputs(
                'malformed', 'notice', main='rows'))
  predictions = (parsed.rows
                 | 'Batch' >> beam.BatchElements(min_batch_size=1, max_batch_size=BATCH_ROWS)
                 # Keyed by position: RunInference reads the key from the element type.
                 | 'Encode' >> beam.FlatMap(encode_rows).with_output_types(
                     beam.typehints.Tuple[Tuple[str, int, Any], bytes])
                 # pylint: disable-next=no-value-for-parameter
                 | 'RunInference' >> RunInference(
                     inference_spec, functools.partial(load_model, op_modules=tuple(op_modules)))
                 | 'ToRecord' >> beam.MapTuple(prediction_record))
  _ = ((predictions, parsed.malformed, parsed.notice)
       | 'All' >> beam.Flatten()
       | 'ToJson' >> beam.Map(json.dumps)
       | 'WriteShards' >> beam.io.WriteToText(shard_prefix, file_name_suffix='.jsonl'))


@dataclasses.dataclass
class Summary:
  """What a prediction wrote: counts, the first malformed rows, notices and the accuracy.

  Attributes:
    predictions: rows scored.
    malformed: rows that did not parse (error records in the output).
    first_errors: up to MAX_SHOWN_ERRORS of them as `file:line: reason: 'text'`, in input order.
    notices: BOMs stripped and header lines skipped, as `file:line: sentence`.
    labeled: predictions with a label (only counted with --with_labels).
    correct: labeled predictions right by TFMA's rule (see the module doc).
    model_path: the SavedModel that scored them.
    accuracy: correct / labeled (float), None without labels.
  """
  model_path: str = ''
  predictions: int = 0
  malformed: int = 0
  first_errors: List[str] = dataclasses.field(default_factory=list)
  notices: List[str] = dataclasses.field(default_factory=list)
  labeled: int = 0
  correct: int = 0

  @property
  def accuracy(self) -> Optional[float]:
    return self.correct / self.labeled if self.labeled else None


def is_correct(probabilities: Sequence[float], label: int) -> bool:
  """TFMA's accuracy of one row: binary ([p]) p >= 0.5 against label 1, else arg max."""
  if len(probabilities) == 1:
    return (probabilities[0] >= BINARY_THRESHOLD) == (int(label) == 1)
  return int(np.argmax(probabilities)) == int(label)


def _read_shards(shard_prefix: str) -> Iterator[Dict[str, Any]]:
  """The records (JSON objects) of the shard files `shard_prefix`*, in no particular order."""
  for match in FileSystems.match([shard_prefix + '*'])[0].metadata_list:
    with FileSystems.open(match.path) as f:
      for line in io.TextIOWrapper(f, encoding='utf-8'):
        if line.strip():
          yield json.loads(line)


def _csv_fields(records: Sequence[Dict[str, Any]]) -> List[str]:
  """CSV columns: file, line, then the prediction fields (probabilities spread into columns),
  label, error, text."""
  width = max((len(r['probabilities']) for r in records if 'probabilities' in r), default=0)
  probability = ['probability'] if width == 1 else [f'probability_{k}' for k in range(width)]
  others = sorted({k for r in records for k in r} - {'file', 'line', 'class_id', 'probabilities',
                                                    'label', 'error', 'text'})
  fields = ['file', 'line']
  if width:
    fields += ['class_id'] + probability
  fields += others
  if any('label' in r for r in records):
    fields.append('label')
  if any('error' in r for r in records):
    fields += ['error', 'text']
  return fields


def _csv_row(record: Dict[str, Any], fields: Sequence[str]) -> Dict[str, Any]:
  row = {k: v for k, v in record.items() if k != 'probabilities'}
  probabilities = record.get('probabilities') or []
  names = [f for f in fields if f.startswith('probability')]
  row.update(zip(names, probabilities))
  return {k: json.dumps(v) if isinstance(v, list) else v for k, v in row.items()}


def write_output(records: Sequence[Dict[str, Any]], output: str, output_format: str) -> None:
  """Writes `records` as JSON lines or CSV to a temporary file beside `output`, then renames it
  (atomic on a local file system: a reader sees the old file or the whole new one).

  Raises:
    OSError: the folder of `output` is not writable.
  """
  folder = os.path.dirname(output) or '.'
  fd, tmp = tempfile.mkstemp(prefix=f'.{os.path.basename(output)}.', suffix='.tmp', dir=folder)
  try:
    with os.fdopen(fd, 'w', encoding='utf-8', newline='') as f:
      if output_format == 'csv':
        fields = _csv_fields(records)
        writer = csv.DictWriter(f, fieldnames=fields, extrasaction='ignore')
        writer.writeheader()
        writer.writerows(_csv_row(r, fields) for r in records)
      else:
        for record in records:
          f.write(json.dumps(record) + '\n')
    os.chmod(tmp, 0o644)
    os.replace(tmp, output)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise


def collect(shard_prefix: str, paths: Sequence[str], with_labels: bool
            ) -> Tuple[List[Dict[str, Any]], Summary]:
  """The output records of the shards in input order, and their summary."""
  order = {path: i for i, path in enumerate(paths)}
  summary = Summary()
  notices, records = [], []
  for record in _read_shards(shard_prefix):
    if 'notice' in record:
      notices.append(record)
    else:
      records.append(record)
  records.sort(key=lambda r: (order.get(r['file'], len(order)), r['file'], r['line']))
  notices.sort(key=lambda r: (order.get(r['file'], len(order)), r['line']))
  summary.notices = [f'{n["file"]}:{n["line"]}: {n["notice"]}' for n in notices]
  for record in records:
    if 'error' in record:
      summary.malformed += 1
      if len(summary.first_errors) < MAX_SHOWN_ERRORS:
        summary.first_errors.append(f'{record["file"]}:{record["line"]}: {record["error"]}: '
                                    f'{record["text"][:120]!r}')
      continue
    summary.predictions += 1
    if not with_labels:
      record.pop('label', None)
    elif 'label' in record and 'probabilities' in record:
      summary.labeled += 1
      summary.correct += is_correct(record['probabilities'], record['label'])
  return records, summary


def predict(model: str, input_pattern: str, output: str, output_format: str = 'jsonl',
            with_labels: bool = False, output_dir: Optional[str] = None,
            model_dir: Optional[str] = None, beam_pipeline_args: Sequence[str] = ()) -> Summary:
  """Scores the raw rows of `input_pattern` with `model`'s pushed (or `model_dir`'s) SavedModel
  and writes one record per row to `output` (see the module doc).

  Args:
    model: registered model name, e.g. `census`.
    input_pattern: a file or glob in the model's canonical line format.
    output: the predictions file.
    output_format: `jsonl` or `csv`.
    with_labels: keep the labels in the output and compute the accuracy.
    output_dir: the run's output directory (default ./output/<model>).
    model_dir: a SavedModel, or a folder of numbered versions, instead.
    beam_pipeline_args: Beam options (settings' runner flags).

  Returns:
    The Summary (counts, first malformed rows, accuracy).

  Raises:
    KeyError: unknown model.
    PredictError: not a line format, no model, no input file, an unwritable output, or no row of
      the input parsed.
  """
  spec = spec_lib.get(model)
  parser = line_parser(spec)
  paths = input_paths(input_pattern)
  model_path = resolve_model(model, output_dir, model_dir)
  output = os.path.abspath(output)
  if os.path.isdir(output):
    raise PredictError(f'--output {output} is a folder; give a file name')
  folder = os.path.dirname(output)
  if not os.path.isdir(folder) or not os.access(folder, os.W_OK | os.X_OK):
    raise PredictError(f'--output {output}: {folder} is not a writable folder')
  work = tempfile.mkdtemp(prefix=f'.{os.path.basename(output)}.shards.', dir=folder)
  try:
    options = PipelineOptions(beam_runners.worker_args(list(beam_pipeline_args),
                                                       list(spec.serving_op_modules)))
    with beam.Pipeline(options=options) as pipeline:
      build_pipeline(pipeline, paths, parser, spec.evaluation.label_key, model_path,
                     spec.serving_op_modules, os.path.join(work, 'records'))
    records, summary = collect(os.path.join(work, 'records'), paths, with_labels)
    if not summary.predictions:
      raise PredictError(f'no row of {input_pattern} parsed as {spec.name} input '
                         f'({summary.malformed} malformed{": " if summary.first_errors else ""}'
                         f'{summary.first_errors[0] if summary.first_errors else ""})')
    write_output(records, output, output_format)
  finally:
    shutil.rmtree(work, ignore_errors=True)
  summary.model_path = model_path
  return summary


def main(model: str) -> int:
  """`official-tfx predict MODEL` from the parsed flags: returns the exit status (0, or 1 with a
  one-line error on stderr)."""
  if not FLAGS.input or not FLAGS.output:
    raise app.UsageError('predict needs --input FILE_OR_PATTERN and --output FILE')
  spec_lib.get(model)  # an unknown model is a usage error (cli: KeyError)
  try:
    beam_args = settings._beam_pipeline_args()  # pylint: disable=protected-access
  except beam_runners.BeamOptionsError as e:
    raise app.UsageError(str(e)) from None
  settings.check_beam_services(say=print)  # the jar, the job service, the worker pool
  output_dir = os.path.abspath(FLAGS.output_dir or os.path.join('output', model))
  log_dir = os.path.join(output_dir, 'logs') if os.path.isdir(output_dir) else tempfile.gettempdir()
  log_path = os.path.join(log_dir, f'official_tfx-predict-{time.strftime("%Y%m%d-%H%M%S")}-'
                          f'{os.getpid()}.log')
  if not FLAGS['verbosity'].present:
    os.makedirs(log_dir, exist_ok=True)
    console.to_log(log_path)
  try:
    summary = predict(model, FLAGS.input, FLAGS.output, FLAGS.output_format, FLAGS.with_labels,
                      FLAGS.output_dir, FLAGS.model_dir, beam_args)
  except PredictError as e:
    print(f'official-tfx: predict failed: {e}', file=console.err())
    return 1
  except Exception as e:  # pylint: disable=broad-except
    from absl import logging  # pylint: disable=import-outside-toplevel
    logging.exception('predict failed')
    first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    print(f'official-tfx: predict failed: {type(e).__name__}: {first}', file=console.err())
    print(f'Log: {log_path}', file=console.err())
    return 1
  print(f'official-tfx: predict {model} with {summary.model_path}')
  for notice in summary.notices:
    print(f'  note: {notice}')
  if summary.malformed:
    print(f'  {summary.malformed:,} malformed row{"s" if summary.malformed > 1 else ""} '
          'not scored (error records in the output), the first:')
    for line in summary.first_errors:
      print(f'    {line}')
  if FLAGS.with_labels:
    if summary.accuracy is None:
      print('  accuracy: undefined (no labeled row)')
    else:
      print(f'  accuracy {summary.accuracy:.4f} ({summary.correct:,} of {summary.labeled:,} '
            'labeled rows)')
  print(f'Predictions: {summary.predictions:,} in {os.path.abspath(FLAGS.output)}')
  return 0
