"""`official-tfx predict MODEL`: batch prediction on raw files with a pushed model, in Beam.

  official-tfx predict census --input adult.test.gz --output predictions.jsonl [--with_labels]
      [--output_dir ./output/census | --model_dir DIR] [--output_format=jsonl|csv]
      [--beam_runner=...]

The input is in the format the model's spec declares (`ModelSpec.predict_reader`,
pipelines.predict_readers; a line format's ExampleGen line parser when it declares none): census
UCI lines, HIGGS CSV, MRPC TSV, one English sentence a line for wmt, IDX images files or image
files for mnist, image folders or the python batches for cifar10, image folders for imagenet,
(user, item) lines for movielens. `--input` is a file (taken literally, `[` and all, when it
exists), a glob pattern, or for image readers a folder. The reader turns every input into the raw
tf.Example the model's `serving_default` signature takes (`to_serialized_examples`); tfx_bsl's
RunInference (BulkInferrer's engine) scores them, so the `--beam_runner` flags apply as they do
to a run. With --with_labels the reader also reads the labels (a line's label column, an IDX
labels file, an image's class folder) and the accuracy is printed; the model never sees them.

Output, one record per input, in input order (files in sorted order, then line or record):

- a prediction: `file` and, by the input's kind, `line` (a line, from 1) or `record` (a record of
  an IDX file or a CIFAR batch, from 0); an image is its `file`. Then for a classifier (outputs
  `probabilities` and `class_ids`) `class_id` (int, the model's) and `probabilities` (floats, the
  model's output: [P(class 1)] for a binary model, one per class otherwise); for another model the
  fields its reader makes of the outputs (each output as it is by default; movielens: `user`,
  `item`, `score`, `known_user`, `known_item`). With --with_labels, `label` too.
- a malformed input (a line that does not parse, an image that does not decode or is not the
  model's size, a truncated or foreign record file): `file`, `line` / `record` where there is
  one, `error` (the reason) and, for a line, `text`. They are counted and the first few printed;
  none is skipped silently.

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
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

import apache_beam as beam
import numpy as np
from absl import app
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions

from beam_runner import runners as beam_runners
from components import text_example_gen
from pipelines import console
from pipelines import predict_readers
from pipelines import settings
from pipelines import spec as spec_lib
from preprocessing import datasets

FLAGS = settings.FLAGS
MAX_SHOWN_ERRORS = 5  # malformed rows listed on the console
BATCH_ROWS = 1000  # rows encoded at a time (to_serialized_examples)
SERVING_SIGNATURE = 'serving_default'
BINARY_THRESHOLD = 0.5  # TFMA's (model_fns.binary_metrics): probability >= 0.5 is class 1


PredictError = predict_readers.PredictError
input_paths = predict_readers.input_paths


def reader_for(spec: spec_lib.ModelSpec) -> predict_readers.PredictReader:
  """The reader of `spec`'s predict input: its `predict_reader`, else a LineReader of the line
  parser that the ExampleGen factory of a line format (`spec.text_line_example_gen(parser)`) names
  in its `line_parser` attribute, the label being the evaluation's label key.

  Raises:
    PredictError: the spec declares no predict reader and its raw format is not a line format
      (a TFX component of its own), or its examples are not one per line (built by a split_fn
      from groups of rows).
  """
  if spec.predict_reader:
    return spec.predict_reader
  parser = getattr(spec.example_gen, 'line_parser', None)
  if not isinstance(parser, str):
    raise PredictError(f'{spec.name} declares no predict input format (ModelSpec.predict_reader) '
                       'and its raw format is not a line format')
  if getattr(spec.example_gen, 'split_fn', None):
    raise PredictError(f'{spec.name}\'s examples are built from groups of rows (split_fn), not '
                       'one per line, and it declares no predict input format '
                       '(ModelSpec.predict_reader)')
  return predict_readers.LineReader(parser=parser, label_key=spec.evaluation.label_key)


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


class _ReadRows(beam.DoFn):
  """Chunks of input -> keyed rows (the reader's `rows`): ((file, unit, position, label, inputs),
  {feature: value}); tagged `malformed` and `notice`: their output records."""

  def __init__(self, reader: predict_readers.PredictReader):
    self._reader = reader

  def process(self, element):
    units = ([element] if isinstance(element, (predict_readers.Malformed, predict_readers.Notice))
             else self._reader.rows(element))
    for unit in units:
      if isinstance(unit, predict_readers.Row):
        yield unit.key(), unit.features
      elif isinstance(unit, predict_readers.Malformed):
        yield beam.pvalue.TaggedOutput('malformed', unit.record())
      else:
        yield beam.pvalue.TaggedOutput('notice', unit.record())


def encode_rows(batch: Sequence[Tuple[Any, Dict[str, Any]]]) -> List[Tuple[Any, bytes]]:
  """A batch of keyed rows -> [(key, serialized raw tf.Example)] (to_serialized_examples).

  Raises:
    ValueError: a feature whose values are of more than one kind in the batch.
  """
  examples = text_example_gen.to_serialized_examples([row for _, row in batch])
  return list(zip((key for key, _ in batch), examples))


def prediction_record(key: predict_readers.Key, log,
                      reader: predict_readers.PredictReader) -> Dict[str, Any]:
  """A PredictionLog of one row -> its output record (see the module doc).

  Args:
    key: (file, unit, position, label or None, repeated inputs or None), as Row.key().
    log: tensorflow_serving PredictionLog with a `predict_log` of one example.
    reader: the reader whose `prediction_fields` make the prediction's fields.
  """
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  path, unit, position, label, inputs = key
  outputs = {name: np.asarray(tf.make_ndarray(tensor)[0])
             for name, tensor in log.predict_log.response.outputs.items()}
  record = predict_readers.location(path, unit, position)
  record.update(reader.prediction_fields(inputs, outputs))
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


def build_pipeline(pipeline: beam.Pipeline, reader: predict_readers.PredictReader,
                   sources: Sequence[Any], model_path: str, op_modules: Sequence[str],
                   shard_prefix: str) -> None:
  """Adds the prediction stages to `pipeline`: read the reader's sources into chunks, spread them,
  make rows, encode, RunInference, and write every record (predictions, malformed inputs,
  notices) as JSON lines to `shard_prefix`-*."""
  from tfx_bsl.public.beam import RunInference  # pylint: disable=import-outside-toplevel
  from tfx_bsl.public.proto import model_spec_pb2  # pylint: disable=import-outside-toplevel
  inference_spec = model_spec_pb2.InferenceSpecType(saved_model_spec=model_spec_pb2.SavedModelSpec(
      model_path=model_path, signature_name=[SERVING_SIGNATURE], tag=['serve']))
  parsed = (pipeline
            | 'Sources' >> beam.Create(list(sources))
            | 'ReadChunks' >> beam.FlatMap(reader.chunks)
            | 'Spread' >> beam.Reshuffle()
            | 'Rows' >> beam.ParDo(_ReadRows(reader)).with_outputs(
                'malformed', 'notice', main='rows'))
  predictions = (parsed.rows
                 | 'Batch' >> beam.BatchElements(min_batch_size=1,
                                                 max_batch_size=min(BATCH_ROWS, reader.batch_rows))
                 # Keyed by position: RunInference reads the key from the element type.
                 | 'Encode' >> beam.FlatMap(encode_rows).with_output_types(
                     beam.typehints.Tuple[beam.typehints.Tuple[str, str, Any, Any, Any], bytes])
                 # pylint: disable-next=no-value-for-parameter
                 | 'RunInference' >> RunInference(
                     inference_spec, functools.partial(load_model, op_modules=tuple(op_modules)))
                 | 'ToRecord' >> beam.Map(lambda keyed: prediction_record(*keyed, reader)))
  _ = ((predictions, parsed.malformed, parsed.notice)
       | 'All' >> beam.Flatten()
       | 'ToJson' >> beam.Map(json.dumps)
       | 'WriteShards' >> beam.io.WriteToText(shard_prefix, file_name_suffix='.jsonl'))


@dataclasses.dataclass
class Summary:
  """What a prediction wrote: counts, the first malformed inputs, notices and the accuracy.

  Attributes:
    unit: what one input is (`row`, `record`, `image`, or `input` for a mix), for the wording.
    predictions: inputs scored.
    malformed: inputs that could not be scored (error records in the output).
    first_errors: up to MAX_SHOWN_ERRORS of them, in input order, as `file:line: reason: 'text'`
      (a line), `file: record N: reason` (a record) or `file: reason` (an image, a whole file).
    notices: BOMs stripped and header lines skipped, as `file:line: sentence`.
    labeled: predictions with a label (only counted with --with_labels).
    correct: labeled predictions right by TFMA's rule (see the module doc).
    model_path: the SavedModel that scored them.
    accuracy: correct / labeled (float), None without labels.
  """
  model_path: str = ''
  unit: str = 'row'
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
  """CSV columns: file, line or record (those the records have), then the prediction fields
  (probabilities spread into columns; the others in the order of the first record that has
  them), label, error, text."""
  width = max((len(r['probabilities']) for r in records if 'probabilities' in r), default=0)
  probability = ['probability'] if width == 1 else [f'probability_{k}' for k in range(width)]
  located = [f for f in ('line', 'record') if any(f in r for r in records)]
  fixed = {'file', 'line', 'record', 'class_id', 'probabilities', 'label', 'error', 'text'}
  others = list(dict.fromkeys(k for r in records if 'error' not in r for k in r if k not in fixed))
  fields = ['file'] + located
  if width:
    fields += ['class_id'] + probability
  fields += others
  if any('label' in r for r in records):
    fields.append('label')
  if any('error' in r for r in records):
    fields += ['error'] + (['text'] if any('text' in r for r in records) else [])
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


def _position(record: Dict[str, Any]) -> int:
  """A record's line or record number; -1 for an image or a whole file (first in its file)."""
  return record.get('line', record.get('record', -1))


def describe_error(record: Dict[str, Any]) -> str:
  """An error record as the user reads it: `file:line: reason: 'text'` (a line), `file: record N:
  reason` (a record), `file: reason` (an image, or a whole file)."""
  if 'line' in record:
    return f'{record["file"]}:{record["line"]}: {record["error"]}: {record["text"][:120]!r}'
  if 'record' in record:
    return f'{record["file"]}: record {record["record"]}: {record["error"]}'
  return f'{record["file"]}: {record["error"]}'


def collect(shard_prefix: str, paths: Sequence[str], with_labels: bool
            ) -> Tuple[List[Dict[str, Any]], Summary]:
  """The output records of the shards in input order (`paths`' order, then file name, then line
  or record), and their summary."""
  order = {path: i for i, path in enumerate(paths)}
  summary = Summary()
  notices, records = [], []
  for record in _read_shards(shard_prefix):
    if 'notice' in record:
      notices.append(record)
    else:
      records.append(record)
  records.sort(key=lambda r: (order.get(r['file'], len(order)), r['file'], _position(r)))
  notices.sort(key=lambda r: (order.get(r['file'], len(order)), r['file'], _position(r)))
  summary.notices = [f'{n["file"]}:{n["line"]}: {n["notice"]}' if 'line' in n
                     else f'{n["file"]}: {n["notice"]}' for n in notices]
  for record in records:
    if 'error' in record:
      summary.malformed += 1
      if len(summary.first_errors) < MAX_SHOWN_ERRORS:
        summary.first_errors.append(describe_error(record))
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
            model_dir: Optional[str] = None, beam_pipeline_args: Sequence[str] = (),
            side_files: Optional[Mapping[str, str]] = None) -> Summary:
  """Scores the raw inputs of `input_pattern` with `model`'s pushed (or `model_dir`'s) SavedModel
  and writes one record per input to `output` (see the module doc).

  Args:
    model: registered model name, e.g. `census`.
    input_pattern: a file, glob pattern or (image readers) folder in the model's predict format.
    output: the predictions file.
    output_format: `jsonl` or `csv`.
    with_labels: read the labels, keep them in the output and compute the accuracy.
    output_dir: the run's output directory (default ./output/<model>).
    model_dir: a SavedModel, or a folder of numbered versions, instead.
    beam_pipeline_args: Beam options (settings' runner flags).
    side_files: {setting: local path} of the spec's `example_gen_files` the reader needs
      (ImageNet's synsets.txt, for its labels); those not given are resolved from the registry
      ($OFFICIAL_TFX_DATA_ROOT, the cache, a download).

  Returns:
    The Summary (counts, first malformed inputs, accuracy).

  Raises:
    KeyError: unknown model.
    PredictError: no predict format, no model, no input, a side file or a labels file that cannot
      be read, an unwritable output, or no input of `input_pattern` that could be scored.
  """
  spec = spec_lib.get(model)
  reader = reader_for(spec).bind(with_labels, resolve_side_files(spec, with_labels, side_files))
  sources = reader.sources(input_pattern)
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
      build_pipeline(pipeline, reader, sources, model_path, spec.serving_op_modules,
                     os.path.join(work, 'records'))
    records, summary = collect(os.path.join(work, 'records'),
                               input_paths(input_pattern, folders=reader.takes_folders),
                               with_labels)
    summary.unit = reader.unit_for(sources)
    if not summary.predictions:
      raise PredictError(f'no {summary.unit} of {input_pattern} could be scored as {spec.name} '
                         f'input ({summary.malformed} malformed'
                         f'{": " if summary.first_errors else ""}'
                         f'{summary.first_errors[0] if summary.first_errors else ""})')
    write_output(records, output, output_format)
  finally:
    shutil.rmtree(work, ignore_errors=True)
  summary.model_path = model_path
  return summary


def resolve_side_files(spec: spec_lib.ModelSpec, with_labels: bool,
                       given: Optional[Mapping[str, str]] = None) -> Dict[str, str]:
  """{setting: local path} of the spec's `example_gen_files` that its predict reader needs
  (`side_files`, only with labels), `given` first, the others resolved and verified from the
  registry as a run resolves them.

  Raises:
    PredictError: a file missing from the data root, not downloadable, or corrupt.
  """
  files = dict(given or {})
  if not with_labels:
    return files
  for setting in reader_for(spec).side_files():
    if setting not in files:
      dataset, name = spec.example_gen_files[setting]
      try:
        files[setting] = datasets.resolve_file(dataset, name)
      except datasets.DatasetError as e:
        raise PredictError(f'--with_labels: {e}') from None
  return files


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
    files = {}
    if FLAGS.with_labels:  # the spec's side files, as a run resolves them (--data_root, flags)
      spec = spec_lib.get(model)
      files = settings._side_files({  # pylint: disable=protected-access
          setting: spec.example_gen_files[setting]
          for setting in reader_for(spec).side_files()})
    summary = predict(model, FLAGS.input, FLAGS.output, FLAGS.output_format, FLAGS.with_labels,
                      FLAGS.output_dir, FLAGS.model_dir, beam_args, files)
  except datasets.DatasetError as e:
    print(f'official-tfx: predict failed: --with_labels: {e}', file=console.err())
    return 1
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
    plural = 's' if summary.malformed > 1 else ''
    print(f'  {summary.malformed:,} malformed {summary.unit}{plural} not scored (error records '
          'in the output), the first:')
    for line in summary.first_errors:
      print(f'    {line}')
  if FLAGS.with_labels:
    if summary.accuracy is None:
      print(f'  accuracy: undefined (no labeled {summary.unit})')
    else:
      print(f'  accuracy {summary.accuracy:.4f} ({summary.correct:,} of {summary.labeled:,} '
            f'labeled {summary.unit}s)')
  print(f'Predictions: {summary.predictions:,} in {os.path.abspath(FLAGS.output)}')
  return 0
