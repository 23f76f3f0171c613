"""`official-tfx predict`: batch prediction on raw files (pipelines/predict.py).

Unit tests of the parts (parser lookup, model and input resolution, TFMA's accuracy rule, the
atomic writer, one-line errors), and end to end on census: a small real run, then predictions on
all of adult.test whose accuracy is the run's TFMA accuracy.
"""

from __future__ import annotations

import csv
import dataclasses
import glob
import gzip
import json
import os
import pickle
import struct
import tarfile

import numpy as np
import pytest

from pipelines import predict
from pipelines import predict_readers
from pipelines import runner
from pipelines import spec as spec_lib
from pipelines.factory import RunConfig, RunInputs
from preprocessing import cifar10
from preprocessing import datasets
from tests import helpers
from tests import synthetic

ADULT_TEST_ROWS = 16281  # adult.test's lines less its `|1x3 Cross validator` line and last blank


def test_the_predict_reader_comes_from_the_spec():
  census = predict.reader_for(spec_lib.get('census'))
  assert isinstance(census, predict_readers.LineReader)
  assert (census.parser, census.label_key) == ('preprocessing.census.parse_line', 'income_bracket')
  assert predict.reader_for(spec_lib.get('higgs')).parser == 'preprocessing.higgs.parse_line'
  assert predict.reader_for(spec_lib.get('mrpc')).parser == 'preprocessing.mrpc.parse_line'
  assert predict.reader_for(spec_lib.get('wmt')).parser == 'preprocessing.wmt.parse_source_sentence'
  mnist = predict.reader_for(spec_lib.get('mnist'))
  assert [type(r) for r in mnist.readers] == [predict_readers.IdxReader,
                                              predict_readers.ImageReader]
  assert predict.reader_for(spec_lib.get('movielens')).parser == (
      'preprocessing.movielens.parse_candidate_ml_100k')
  assert predict.reader_for(spec_lib.get('imagenet')).side_files() == ('synsets_file',)
  # Without a reader of its own, a line format whose examples are groups of rows has none.
  grouped = dataclasses.replace(spec_lib.get('movielens'), predict_reader=None)
  with pytest.raises(predict.PredictError, match='groups of rows'):
    predict.reader_for(grouped)
  with pytest.raises(predict.PredictError, match='mnist declares no predict input format'):
    predict.reader_for(dataclasses.replace(spec_lib.get('mnist'), predict_reader=None))


def test_accuracy_counts_a_probability_of_one_half_as_positive_like_tfma():
  # model_fns.binary_metrics: histogram buckets closed on the left, so 0.5 is class 1.
  assert predict.is_correct([0.5], 1) and not predict.is_correct([0.5], 0)
  assert predict.is_correct([0.4999], 0) and not predict.is_correct([0.4999], 1)
  assert predict.is_correct([0.1, 0.7, 0.2], 1) and not predict.is_correct([0.1, 0.7, 0.2], 2)


def test_model_resolution_takes_the_newest_version_and_names_what_is_missing(tmp_path):
  serving = tmp_path / 'out' / 'serving_model'
  for version in ('9', '10', 'tmp'):
    (serving / version).mkdir(parents=True)
    (serving / version / 'saved_model.pb').write_bytes(b'')
  assert predict.resolve_model('census', str(tmp_path / 'out'), None) == str(serving / '10')
  assert predict.resolve_model('census', None, str(serving / '9')) == str(serving / '9')
  assert predict.resolve_model('census', None, str(serving)) == str(serving / '10')
  with pytest.raises(predict.PredictError, match='no pushed model under .*empty/serving_model'):
    predict.resolve_model('census', str(tmp_path / 'empty'), None)
  with pytest.raises(predict.PredictError, match='--model_dir .*: no SavedModel there'):
    predict.resolve_model('census', None, str(tmp_path))


def test_input_resolution(tmp_path):
  (tmp_path / 'a [1].txt').write_text('x\n')
  (tmp_path / 'b.txt').write_text('x\n')
  assert predict.input_paths(str(tmp_path / 'a [1].txt')) == [str(tmp_path / 'a [1].txt')]
  assert predict.input_paths(str(tmp_path / '*.txt')) == [str(tmp_path / 'a [1].txt'),
                                                          str(tmp_path / 'b.txt')]
  with pytest.raises(predict.PredictError, match=r'--input: the file .*nope\.txt does not exist'):
    predict.input_paths(str(tmp_path / 'nope.txt'))
  with pytest.raises(predict.PredictError, match=r'--input: no file matches .*\*\.csv'):
    predict.input_paths(str(tmp_path / '*.csv'))
  with pytest.raises(predict.PredictError, match=r'--input .* is a folder: give a file or a glob'):
    predict.input_paths(str(tmp_path))


def test_output_is_replaced_atomically_in_either_format(tmp_path):
  records = [{'file': 'f', 'line': 2, 'class_id': 1, 'probabilities': [0.75], 'label': 1},
             {'file': 'f', 'line': 3, 'error': 'field age: bad', 'text': 'x, y'}]
  out = tmp_path / 'p.csv'
  out.write_text('old\n')
  predict.write_output(records, str(out), 'csv')
  assert os.listdir(tmp_path) == ['p.csv']  # no temporary file left
  rows = list(csv.DictReader(out.open()))
  assert rows[0] == {'file': 'f', 'line': '2', 'class_id': '1', 'probability': '0.75',
                     'label': '1', 'error': '', 'text': ''}
  assert rows[1]['error'] == 'field age: bad' and rows[1]['class_id'] == ''
  predict.write_output(records, str(tmp_path / 'p.jsonl'), 'jsonl')
  assert [json.loads(l) for l in (tmp_path / 'p.jsonl').read_text().splitlines()] == records


def test_cli_errors_are_one_line(tmp_path):
  result = helpers.run_cli('predict', 'census', '--output', str(tmp_path / 'p.jsonl'))
  assert result.returncode == 1
  assert result.stderr.strip().splitlines()[0] == (
      'official-tfx: predict needs --input FILE_OR_PATTERN and --output FILE')
  result = helpers.run_cli('predict', 'census', '--input', str(tmp_path / 'missing.data'),
                           '--output', str(tmp_path / 'p.jsonl'))
  assert result.returncode == 1
  assert result.stderr.strip() == (f'official-tfx: predict failed: --input: the file '
                                   f'{tmp_path / "missing.data"} does not exist')
  (tmp_path / 'adult.test').write_text('39, State-gov, 77516\n')
  result = helpers.run_cli('predict', 'census', '--input', str(tmp_path / 'adult.test'),
                           '--output', str(tmp_path / 'p.jsonl'),
                           '--output_dir', str(tmp_path / 'no_run'))
  assert result.returncode == 1
  assert 'no pushed model under' in result.stderr and len(result.stderr.strip().splitlines()) == 1
  assert not os.path.exists(tmp_path / 'p.jsonl')


def _echo_translator(path: str) -> str:
  """A stand-in translation SavedModel with wmt's serving interface: `serving_default` takes
  serialized tf.Examples (`examples`, string [batch]) with the feature `inputs` and returns
  `outputs` (the sentence upper-cased, string [batch]) and `scores` (its length, float32
  [batch])."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel

  class Echo(tf.Module):

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name='examples')])
    def serve(self, examples):
      text = tf.io.parse_example(examples, {'inputs': tf.io.FixedLenFeature([], tf.string)})
      upper = tf.strings.upper(text['inputs'])
      return {'outputs': upper, 'scores': tf.cast(tf.strings.length(upper), tf.float32)}

  module = Echo()
  tf.saved_model.save(module, path, signatures={'serving_default': module.serve})
  return path


def test_wmt_scores_english_lines_in_order_with_every_output(tmp_path):
  model = _echo_translator(str(tmp_path / 'model'))
  english = tmp_path / 'newstest.en'
  english.write_text('Hello world\n\n  The cat sat.\n'
                     + ''.join(f'line {i}\n' for i in range(50)))
  out = tmp_path / 'de.jsonl'
  summary = predict.predict('wmt', str(english), str(out), model_dir=model)
  assert (summary.predictions, summary.malformed, summary.accuracy) == (52, 0, None)
  records = [json.loads(line) for line in out.read_text().splitlines()]
  assert records[:2] == [
      {'file': str(english), 'line': 1, 'outputs': 'HELLO WORLD', 'scores': 11.0},
      {'file': str(english), 'line': 3, 'outputs': 'THE CAT SAT.', 'scores': 12.0}]
  assert [r['outputs'] for r in records[2:]] == [f'LINE {i}' for i in range(50)]
  assert sorted(os.listdir(tmp_path)) == ['de.jsonl', 'model', 'newstest.en']  # no shards left


# End to end on census -----------------------------------------------------------------------------


@pytest.fixture(scope='module')
def census_model(tmp_path_factory, data_root):
  """A small census run (200 steps on 3,000 training rows) evaluated on all of adult.test;
  returns (run summary, output dir, SavedModel): the pushed model, or the Trainer's when the
  run was not blessed at that size."""
  files = datasets.resolve_splits(spec_lib.get('census').dataset, data_root=data_root)
  config = RunConfig(output_dir=str(tmp_path_factory.mktemp('census_predict')), train_steps=200)
  summary = runner.run(spec_lib.get('census'), config,
                       RunInputs(split_files=files, row_ranges={'train': (0, 3000)}),
                       progress=False)
  assert summary['error'] is None
  assert summary['metrics']['example_count'] == ADULT_TEST_ROWS
  model = summary['pushed_model'] or glob.glob(os.path.join(
      config.output_dir, 'pipeline_root', 'Trainer', 'model', '*', 'Format-Serving'))[-1]
  return summary, config.output_dir, model


@pytest.mark.e2e
@pytest.mark.slow  # runs census of its own: `-m slow`, to keep the default run within 30 min
def test_census_predictions_on_adult_test_match_the_runs_tfma_accuracy(census_model, data_root,
                                                                       tmp_path):
  summary, output_dir, model = census_model
  out = tmp_path / 'predictions.jsonl'
  which = (['--output_dir', output_dir] if summary['pushed_model'] else ['--model_dir', model])
  result = helpers.run_cli('predict', 'census', '--input',
                           os.path.join(data_root, 'census', 'adult.test.gz'), '--output',
                           str(out), '--with_labels', *which)
  assert result.returncode == 0, result.stderr
  assert f'accuracy {summary["metrics"]["accuracy"]:.4f} (' in result.stdout
  assert f'Predictions: 16,281 in {out}' in result.stdout
  assert 'malformed' not in result.stdout
  records = [json.loads(line) for line in out.read_text().splitlines()]
  assert len(records) == ADULT_TEST_ROWS
  assert [r['line'] for r in records] == list(range(2, ADULT_TEST_ROWS + 2))  # input order
  first = records[0]
  assert set(first) == {'file', 'line', 'class_id', 'probabilities', 'label'}
  assert first['file'] == os.path.join(data_root, 'census', 'adult.test.gz')
  assert all(r['class_id'] == int(r['probabilities'][0] > 0.5) for r in records)
  assert {r['label'] for r in records} == {0, 1}
  # The same accuracy as the model served directly (tests/helpers.py, TF Serving's way).
  with gzip.open(os.path.join(data_root, 'census', 'adult.test.gz'), 'rt') as f:
    lines = f.read().split('\n')
  correct = sum(predict.is_correct(r['probabilities'], r['label']) for r in records)
  assert correct / len(records) == pytest.approx(
      helpers.census_serving_accuracy(model, lines), abs=1e-4)


@pytest.mark.e2e
@pytest.mark.slow  # runs census of its own: `-m slow`, to keep the default run within 30 min
def test_census_malformed_rows_are_reported_and_kept_in_place(census_model, adult_lines,
                                                             tmp_path):
  summary, output_dir, model = census_model
  raw = tmp_path / 'mixed.data'
  good = adult_lines['eval'][1:4]
  bad = good[1].replace(', Private,', ', Private, extra,', 1)
  raw.write_text('\n'.join(['age, workclass, fnlwgt, education, education-num, marital-status, '
                            'occupation, relationship, race, sex, capital-gain, capital-loss, '
                            'hours-per-week, native-country, income',
                            good[0], bad, good[2], '']))
  out = tmp_path / 'p.csv'
  result = helpers.run_cli('predict', 'census', '--input', str(raw), '--output', str(out),
                           '--output_format=csv', '--model_dir', model)
  assert result.returncode == 0, result.stderr
  assert '1 malformed row not scored' in result.stdout
  assert f'{raw}:3: ' in result.stdout
  assert f'{raw}:1: header line (column names) skipped' in result.stdout
  assert 'Predictions: 2 in' in result.stdout and 'accuracy' not in result.stdout
  rows = list(csv.DictReader(out.open()))
  assert [(r['line'], bool(r['error'])) for r in rows] == [('2', False), ('3', True),
                                                           ('4', False)]
  assert 'label' not in rows[0]  # only with --with_labels
  assert 0 <= float(rows[0]['probability']) <= 1


# Readers of record and image formats, without a model ---------------------------------------------


def _idx_images(path, pixels, magic=0x803):
  """Writes uint8 [n, rows, columns] pixels as an IDX images file (plain or .gz by name)."""
  data = struct.pack('>IIII', magic, *pixels.shape) + pixels.astype(np.uint8).tobytes()
  with (gzip.open if str(path).endswith('.gz') else open)(path, 'wb') as f:
    f.write(data)
  return str(path)


def _idx_labels(path, labels, count=None):
  """Writes an IDX labels file of `labels` whose header announces `count` (default: all)."""
  with open(path, 'wb') as f:
    f.write(struct.pack('>II', 0x801, len(labels) if count is None else count)
            + np.asarray(labels, np.uint8).tobytes())
  return str(path)


def _units(reader, source):
  """Every Row, Malformed and Notice of one source, as the Beam stages make them."""
  units = []
  for chunk in reader.chunks(source):
    if isinstance(chunk, (predict_readers.Malformed, predict_readers.Notice)):
      units.append(chunk)
    else:
      units.extend(reader.rows(chunk))
  return units


def test_idx_reader_scores_what_is_readable_and_reports_the_rest(tmp_path):
  reader = predict.reader_for(spec_lib.get('mnist'))
  pixels = np.arange(6 * 28 * 28, dtype=np.int64).reshape(6, 28, 28) % 256
  good = _idx_images(tmp_path / 'a-images-idx3-ubyte.gz', pixels)
  _idx_labels(tmp_path / 'a-labels-idx1-ubyte', [1, 2, 3, 4, 5, 11])
  full = open(_idx_images(tmp_path / 'plain-images-idx3-ubyte', pixels), 'rb').read()
  cut = tmp_path / 'cut-images-idx3-ubyte'
  cut.write_bytes(full[:16 + 784 * 2 + 100])  # ends inside record 2
  long = tmp_path / 'long-images-idx3-ubyte'
  long.write_bytes(full + b'\0' * 7)
  swapped = _idx_labels(tmp_path / 'swapped-images-idx3-ubyte', [1, 2])
  big = _idx_images(tmp_path / 'big-images-idx3-ubyte', np.zeros((2, 32, 32)))
  notgz = tmp_path / 'x-images-idx3-ubyte.gz'
  notgz.write_bytes(full)

  bound = reader.bind(with_labels=True, files={})
  (source,) = bound.sources(good)
  assert source[0] == 0 and source[1][0] == good  # the IDX reader, with the labels beside it
  units = _units(bound, source)
  rows = [u for u in units if isinstance(u, predict_readers.Row)]
  assert [(r.position, r.label) for r in rows] == [(0, 1), (1, 2), (2, 3), (3, 4), (4, 5)]
  (bad_label,) = [u for u in units if isinstance(u, predict_readers.Malformed)]
  assert (bad_label.position, bad_label.error) == (
      5, f'label 11 in {tmp_path / "a-labels-idx1-ubyte"} is not in 0-9')
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  decoded = tf.io.decode_png(rows[3].features['image']).numpy()[:, :, 0]
  assert (decoded == pixels[3]).all()  # lossless, record 3
  assert (rows[0].features['height'], rows[0].features['width']) == (28, 28)

  unlabeled = reader.bind(with_labels=False, files={})
  def malformed(path):
    (source,) = unlabeled.sources(str(path))
    units = _units(unlabeled, source)
    return ([u.position for u in units if isinstance(u, predict_readers.Row)],
            [(u.position, u.error) for u in units if isinstance(u, predict_readers.Malformed)])
  rows, errors = malformed(cut)
  assert rows == [0, 1] and errors[0][0] == 2 and errors[0][1].startswith(
      'truncated: the header announces 6 images of 784 byte(s) but the file ends inside record 2')
  assert malformed(long) == ([0, 1, 2, 3, 4, 5],
                             [(None, '7 bytes after the last of the 6 images the header '
                                     'announces')])
  assert malformed(swapped)[1] == [(None, 'wrong magic number 0x00000801 (a labels file): '
                                          'expected 0x00000803, an IDX file of uint8 images')]
  assert malformed(big) == ([], [(None, 'images are 32x32, expected 28x28')])
  assert malformed(notgz)[1][0][1].startswith('not a readable gzip file')


def test_idx_labels_are_checked_before_anything_runs(tmp_path):
  reader = predict.reader_for(spec_lib.get('mnist')).bind(with_labels=True, files={})
  images = _idx_images(tmp_path / 'a-images-idx3-ubyte', np.zeros((3, 28, 28)))
  with pytest.raises(predict.PredictError, match=r'^--with_labels: .*a-images-idx3-ubyte: its '
                     r'labels file is missing: looked at .*a-labels-idx1-ubyte, '):
    reader.sources(images)
  _idx_labels(tmp_path / 'a-labels-idx1-ubyte', [1, 2])
  with pytest.raises(predict.PredictError, match=r'a-labels-idx1-ubyte holds 2 labels but .*'
                     r'a-images-idx3-ubyte announces 3 images$'):
    reader.sources(images)
  # Without --with_labels the labels file is not read at all.
  assert len(predict.reader_for(spec_lib.get('mnist')).sources(images)) == 1


def _png(path, pixels):
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  pixels = np.asarray(pixels, np.uint8)
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_bytes(tf.io.encode_png(pixels if pixels.ndim == 3 else pixels[:, :, None]).numpy())
  return str(path)


def test_image_folders_take_labels_from_class_folders_or_a_labels_file(tmp_path):
  cifar = predict.reader_for(spec_lib.get('cifar10'))
  labeled = cifar.bind(with_labels=True, files={})
  for name in ('cat/1.png', 'cat/2.png', 'ship/3.png'):
    _png(tmp_path / 'test' / name, np.zeros((32, 32, 3)))
  sources = labeled.sources(str(tmp_path / 'test'))
  assert sources == [(1, ('folder', (str(tmp_path / 'test' / 'cat'), 3))),
                     (1, ('folder', (str(tmp_path / 'test' / 'ship'), 8)))]
  # A class folder itself (by name, or matched by a pattern), and an image file by name:
  # labelled by their folder's name.
  assert labeled.sources(str(tmp_path / 'test' / 'ship')) == [
      (1, ('folder', (str(tmp_path / 'test' / 'ship'), 8)))]
  assert labeled.sources(str(tmp_path / 'test' / '*')) == sources
  assert labeled.sources(str(tmp_path / 'test' / '*' / '[12].png')) == [
      (1, ('files', ((str(tmp_path / 'test' / 'cat' / '1.png'), 3),
                     (str(tmp_path / 'test' / 'cat' / '2.png'), 3))))]
  (tmp_path / 'test' / 'notes.txt').write_text('x')
  with pytest.raises(predict.PredictError, match=r'^--with_labels: .*test holds 1 file\(s\) '
                     r'beside its class folders \(notes\.txt, \.\.\.\)'):
    labeled.sources(str(tmp_path / 'test'))
  (tmp_path / 'test' / 'notes.txt').unlink()
  _png(tmp_path / 'test' / 'kitten' / '4.png', np.zeros((32, 32, 3)))
  with pytest.raises(predict.PredictError, match=r'1 subfolder\(s\) are not classes of this '
                     r'dataset: kitten'):
    labeled.sources(str(tmp_path / 'test'))
  with pytest.raises(predict.PredictError, match=r"its folder 'kitten' is not a class name "
                     r"\(airplane, automobile, bird, \.\.\. 10 classes\)"):
    labeled.sources(str(tmp_path / 'test' / 'kitten' / '4.png'))
  # Without labels every folder is read, class folders or not; a file named with `[` literally.
  literal = _png(tmp_path / 'flat' / 'a[1].png', np.zeros((32, 32, 3)))
  assert cifar.sources(literal) == [(1, ('files', ((literal, None),)))]
  assert cifar.sources(str(tmp_path / 'flat')) == [(1, ('files', ((literal, None),)))]
  with pytest.raises(predict.PredictError, match=r'flat has no class folders and is not named '
                     'as a class'):
    labeled.sources(str(tmp_path / 'flat'))

  # ImageNet: wnid class names from the synsets file (resolved like the ExampleGen's), and a flat
  # validation folder labelled by synset_labels.txt beside it.
  wnids = [f'n{i:08d}' for i in range(1000)]
  synsets = tmp_path / 'synsets.txt'
  synsets.write_text('\n'.join(wnids) + '\n')
  imagenet = predict.reader_for(spec_lib.get('imagenet')).bind(
      with_labels=True, files={'synsets_file': str(synsets)})
  for name in ('b.JPEG', 'a.JPEG'):
    _png(tmp_path / 'imagenet' / 'validation' / name, np.zeros((5, 7, 3)))
  (tmp_path / 'imagenet' / 'synset_labels.txt').write_text(f'{wnids[7]}\n{wnids[9]}\n')
  validation = tmp_path / 'imagenet' / 'validation'
  assert imagenet.sources(str(validation)) == [
      ('files', ((str(validation / 'a.JPEG'), 7), (str(validation / 'b.JPEG'), 9)))]
  units = _units(imagenet, imagenet.sources(str(validation))[0])
  assert [(u.file, u.label, u.features['height'], u.features['width']) for u in units] == [
      (str(validation / 'a.JPEG'), 7, 5, 7), (str(validation / 'b.JPEG'), 9, 5, 7)]


def test_movielens_lines_are_one_user_and_one_candidate_item():
  from preprocessing import movielens  # pylint: disable=import-outside-toplevel
  assert movielens.parse_candidate_ml_100k('196\t242\t3\t881250949') == {'user': 196,
                                                                        'items': [242]}
  assert movielens.parse_candidate_ml_100k('196\t242') == {'user': 196, 'items': [242]}
  assert movielens.parse_candidate_ml_1m('1::1193::5::978300760') == {'user': 1, 'items': [1193]}
  assert movielens.parse_candidate_ml_20m('1,2') == {'user': 1, 'items': [2]}
  assert movielens.parse_candidate_ml_100k('  ') is None
  with pytest.raises(ValueError, match=r'^field item: expected an integer id, got \'x\'$'):
    movielens.parse_candidate_ml_100k('1\tx')
  with pytest.raises(ValueError, match=r'^expected user and item ids .*found 1 fields$'):
    movielens.parse_candidate_ml_100k('1,2')
  with pytest.raises(ValueError, match=r'^field user: expected an id >= 0, got -1$'):
    movielens.parse_candidate_ml_1m('-1::2')
  fields = movielens.candidate_prediction(
      {'user': 3, 'items': [9]}, {'scores': np.array([0.25], np.float32),
                                  'known_user': np.array(True), 'known_items': np.array([False])})
  assert fields == {'user': 3, 'item': 9, 'score': 0.25, 'known_user': True, 'known_item': False}


# Scoring with models: MNIST and MovieLens trained on synthetic files, stand-in image classifiers --


def _exported_model(model, folder, files, **settings):
  """Runs `model`'s pipeline on synthetic files; returns the pushed SavedModel, else the one the
  Trainer exported (a handful of steps need not reach the real data's bar)."""
  config = RunConfig(output_dir=str(folder / 'out'), **settings)
  summary = runner.run(spec_lib.get(model), config, files, progress=False)
  assert summary['error'] is None, summary['error']
  return summary['pushed_model'] or glob.glob(os.path.join(
      config.pipeline_root, 'Trainer', 'model', '*', 'Format-Serving'))[-1]


@pytest.fixture(scope='module')
def mnist_model(tmp_path_factory):
  """(SavedModel, {split: IDX images file}) of a small MNIST run on synthetic IDX files
  (tests/synthetic.py: 300 training and 100 eval records, 10 steps)."""
  folder = tmp_path_factory.mktemp('mnist_predict')
  files = synthetic.mnist_files(str(folder), {'train': 300, 'eval': 100})
  return _exported_model('mnist', folder, files, train_steps=10, batch_size=32), files


def _serve_mnist(model, pixels):
  """Class probabilities of uint8 [n, 28, 28] images from the SavedModel itself: each image
  sent as a PNG `image` in a tf.Example (float32 [n, 10])."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  examples = []
  for image in pixels:
    example = tf.train.Example()
    example.features.feature['image'].bytes_list.value.append(
        tf.io.encode_png(image[:, :, None]).numpy())
    examples.append(example.SerializeToString())
  serve = tf.saved_model.load(model).signatures['serving_default']
  return np.concatenate([serve(examples=tf.constant(examples[i:i + 1000]))['probabilities']
                         .numpy() for i in range(0, len(examples), 1000)])


def test_mnist_idx_files_and_png_folders_score_alike_with_bad_records_reported(mnist_model,
                                                                              tmp_path):
  from components import idx_example_gen as idx  # pylint: disable=import-outside-toplevel
  model, files = mnist_model
  pixels, labels = idx.read_idx_pair(files['eval'], idx.labels_path(files['eval']))
  inputs = tmp_path / 'in'
  inputs.mkdir()
  _idx_images(inputs / 'eval-images-idx3-ubyte.gz', pixels)
  _idx_labels(inputs / 'eval-labels-idx1-ubyte', labels)
  data = open(_idx_images(inputs / 'cut-images-idx3-ubyte', pixels), 'rb').read()
  (inputs / 'cut-images-idx3-ubyte').write_bytes(data[:16 + 784 * 5 + 300])
  _idx_labels(inputs / 'cut-labels-idx1-ubyte', labels)
  out = tmp_path / 'idx.jsonl'
  summary = predict.predict('mnist', str(inputs / '*-images-idx3-ubyte*'), str(out),
                            with_labels=True, model_dir=model)
  assert (summary.predictions, summary.malformed, summary.unit) == (105, 1, 'record')
  assert summary.first_errors == [
      f'{inputs / "cut-images-idx3-ubyte"}: record 5: truncated: the header announces 100 images '
      'of 784 byte(s) but the file ends inside record 5 (index from 0; 4220 data bytes, '
      'expected 78400)']
  records = [json.loads(line) for line in out.read_text().splitlines()]
  cut, full = records[:6], records[6:]
  assert [(r['file'], r['record']) for r in full] == [
      (str(inputs / 'eval-images-idx3-ubyte.gz'), i) for i in range(100)]
  assert [r['record'] for r in cut] == [0, 1, 2, 3, 4, 5] and 'error' in cut[5]
  assert [r['label'] for r in full] == labels.tolist()
  served = _serve_mnist(model, pixels)
  assert np.allclose([r['probabilities'] for r in full], served, atol=1e-5)
  # Probabilities agree to float32 rounding (a batch of another size may sum in another order).
  assert np.allclose([r['probabilities'] for r in cut[:5]], served[:5], atol=1e-5)
  assert all(abs(sum(r['probabilities']) - 1) < 1e-5 for r in full)
  assert [r['class_id'] for r in full] == np.argmax(served, axis=1).tolist()
  assert summary.correct == int(np.sum(np.argmax(served, axis=1) == labels)) + sum(
      int(np.argmax(served[i]) == labels[i]) for i in range(5))
  assert summary.labeled == 105

  # The same images as PNG files in class folders 0-9, with an undecodable file and a 32x32
  # image among them: the same probabilities, labels from the folder names.
  folder = tmp_path / 'digits'
  for i in range(20):
    _png(folder / str(labels[i]) / f'{i:03d}.png', pixels[i])
  (folder / str(labels[0]) / 'notes.txt').write_text('not an image')
  _png(folder / str(labels[1]) / 'big.png', np.zeros((32, 32)))
  out = tmp_path / 'png.jsonl'
  summary = predict.predict('mnist', str(folder), str(out), with_labels=True, model_dir=model)
  assert (summary.predictions, summary.malformed, summary.unit) == (20, 2, 'image')
  assert sorted(summary.first_errors) == sorted([
      f'{folder / str(labels[0]) / "notes.txt"}: not a decodable image (Unknown image file '
      'format. One of JPEG, PNG, GIF, BMP required.)',
      f'{folder / str(labels[1]) / "big.png"}: image is 32x32, expected 28x28'])
  records = {r['file']: r for r in map(json.loads, out.read_text().splitlines())}
  for i in range(20):
    record = records[str(folder / str(labels[i]) / f'{i:03d}.png')]
    assert set(record) == {'file', 'class_id', 'probabilities', 'label'}
    assert record['label'] == labels[i]
    assert np.allclose(record['probabilities'], served[i], atol=1e-5)


@pytest.mark.e2e
def test_cli_mnist_scores_the_t10k_idx_file_with_its_accuracy(mnist_model, data_root, tmp_path):
  """The issue's acceptance: `official-tfx predict mnist --input t10k-images-idx3-ubyte.gz
  --with_labels` writes 10,000 predictions and prints the accuracy (here of a model trained on
  synthetic digits: the figure is checked against the model served directly, not its size)."""
  from components import idx_example_gen as idx  # pylint: disable=import-outside-toplevel
  model, _ = mnist_model
  images = os.path.join(data_root, 'mnist', 't10k-images-idx3-ubyte.gz')
  out = tmp_path / 'p.jsonl'
  result = helpers.run_cli('predict', 'mnist', '--input', images, '--output', str(out),
                           '--with_labels', '--model_dir', model)
  assert result.returncode == 0, result.stderr
  pixels, labels = idx.read_idx_pair(images, idx.labels_path(images))
  predicted = np.argmax(_serve_mnist(model, pixels), axis=1)
  correct = int(np.sum(predicted == labels))
  assert (f'accuracy {correct / 10000:.4f} ({correct:,} of 10,000 labeled records)'
          in result.stdout), result.stdout
  assert f'Predictions: 10,000 in {out}' in result.stdout and 'malformed' not in result.stdout
  records = [json.loads(line) for line in out.read_text().splitlines()]
  assert [(r['file'], r['record']) for r in records] == [(images, i) for i in range(10000)]
  assert [r['label'] for r in records] == labels.tolist()
  assert [r['class_id'] for r in records] == predicted.tolist()
  assert all(abs(sum(r['probabilities']) - 1) < 1e-5 for r in records)


@pytest.fixture(scope='module')
def movielens_model(tmp_path_factory):
  """(SavedModel, u.data) of a small NCF run on synthetic ratings (40 users, 150 items, one
  epoch)."""
  folder = tmp_path_factory.mktemp('movielens_predict')
  files = synthetic.movielens_files(str(folder))
  model = _exported_model('movielens', folder, files, batch_size=64,
                          hparams={'train_epochs': 1, 'num_factors': 4, 'layers': [16, 8]})
  return model, files['ratings']


def test_movielens_scores_each_user_item_line(movielens_model, tmp_path):
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  model, ratings = movielens_model
  lines = open(ratings, encoding='utf-8').read().splitlines()[:30]
  candidates = tmp_path / 'candidates.tsv'
  candidates.write_text('user_id\titem_id\trating\ttimestamp\n' + '\n'.join(lines)
                        + '\n3\t7\n9999\t7\n3\t99999\nthree\t7\n')
  out = tmp_path / 'scores.jsonl'
  summary = predict.predict('movielens', str(candidates), str(out), model_dir=model)
  assert (summary.predictions, summary.malformed) == (33, 1)
  assert summary.notices == [f'{candidates}:1: header line (column names) skipped']
  assert summary.first_errors == [
      f"{candidates}:35: field user: expected an integer id, got 'three': 'three\\t7'"]
  records = [json.loads(line) for line in out.read_text().splitlines()]
  assert [r['line'] for r in records] == list(range(2, 36))
  scored = records[:-1]
  pairs = [(int(l.split('\t')[0]), int(l.split('\t')[1])) for l in lines] + [
      (3, 7), (9999, 7), (3, 99999)]
  assert [(r['user'], r['item']) for r in scored] == pairs
  assert set(scored[0]) == {'file', 'line', 'user', 'item', 'score', 'known_user', 'known_item'}
  # The scores of the model's own id signature, one candidate list per user.
  score = tf.saved_model.load(model).signatures['score_candidates']
  expected = score(user=tf.constant([u for u, _ in pairs], tf.int64),
                   items=tf.constant([[i] for _, i in pairs], tf.int64))
  assert np.allclose([r['score'] for r in scored], expected['scores'].numpy()[:, 0], atol=1e-6)
  assert [(r['known_user'], r['known_item']) for r in scored[-3:]] == [
      (True, True), (False, True), (True, False)]
  assert [r['score'] for r in scored[-2:]] == [-1.0, -1.0]
  assert all(0 < r['score'] < 1 for r in scored[:-2])


def _mean_pixel_classifier(path, num_classes):
  """A stand-in image classifier with the image models' serving interface: `serving_default` takes
  serialized tf.Examples with `image` (encoded bytes), `height` and `width` (required here, so a
  reader that leaves them out fails) and returns `probabilities` (float32 [batch, C]) and
  `class_ids` (int64 [batch, 1]): the class of an image is its mean RGB pixel value * C / 256,
  with probability 0.5 + 0.5 / C, every other class 0.5 / C."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel

  class Classifier(tf.Module):

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name='examples')])
    def serve(self, examples):
      features = tf.io.parse_example(examples, {
          'image': tf.io.FixedLenFeature([], tf.string),
          'height': tf.io.FixedLenFeature([], tf.int64),
          'width': tf.io.FixedLenFeature([], tf.int64)})
      means = tf.map_fn(lambda data: tf.reduce_mean(tf.cast(tf.io.decode_image(
          data, channels=3, expand_animations=False), tf.float32)), features['image'],
                        fn_output_signature=tf.float32)
      classes = tf.minimum(tf.cast(means * num_classes / 256.0, tf.int64), num_classes - 1)
      return {'probabilities': 0.5 * tf.one_hot(classes, num_classes) + 0.5 / num_classes,
              'class_ids': classes[:, None]}

  module = Classifier()
  tf.saved_model.save(module, path, signatures={'serving_default': module.serve})
  return path


def _mean_pixel_class(pixels, num_classes):
  return min(int(np.mean(np.asarray(pixels, np.float32)) * num_classes / 256), num_classes - 1)


def test_cifar10_python_batches_and_image_folders(tmp_path):
  from tests.test_images import write_cifar_archive  # pylint: disable=import-outside-toplevel
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  model = _mean_pixel_classifier(str(tmp_path / 'model'), 10)
  rng = np.random.default_rng(0)
  # Images of every brightness, so that every class is predicted.
  test = (rng.integers(0, 26, size=(30, 32, 32, 3)) + np.arange(30)[:, None, None, None] * 8
          ).astype(np.uint8)
  labels = [int(k) for k in rng.integers(0, 10, size=30)]
  train = rng.integers(0, 256, size=(7, 32, 32, 3)).astype(np.uint8)
  archive = write_cifar_archive(tmp_path / 'cifar-10-python.tar.gz', {
      'data_batch_1': (train, [0] * 7), 'test_batch': (test, labels),
      'batches.meta': pickle.dumps({})})
  batch = tmp_path / 'cifar-10-batches-py' / 'test_batch'
  batch.parent.mkdir()
  with tarfile.open(archive) as tar:
    batch.write_bytes(tar.extractfile('cifar-10-batches-py/test_batch').read())
  expected = [_mean_pixel_class(image, 10) for image in test]

  for path in (archive, str(batch)):  # the archive's test_batch only, or the batch itself
    out = tmp_path / 'p.csv'
    summary = predict.predict('cifar10', path, str(out), output_format='csv', with_labels=True,
                              model_dir=model)
    assert (summary.predictions, summary.malformed, summary.unit) == (30, 0, 'record')
    assert summary.correct == sum(e == l for e, l in zip(expected, labels))
    rows = list(csv.DictReader(out.open()))
    assert list(rows[0]) == ['file', 'record', 'class_id'] + [
        f'probability_{k}' for k in range(10)] + ['label']
    assert [(r['file'], int(r['record']), int(r['label'])) for r in rows] == [
        (path, i, labels[i]) for i in range(30)]
    assert [int(r['class_id']) for r in rows] == expected
    assert all(float(r[f'probability_{e}']) == pytest.approx(0.55) for r, e in zip(rows, expected))

  # The same pixels as PNG files in class folders, with a truncated JPEG and a 40x40 image.
  folder = tmp_path / 'test'
  for i in range(12):
    _png(folder / cifar10.CLASS_NAMES[labels[i]] / f'{i:04d}.png', test[i])
  jpeg = tf.io.encode_jpeg(test[0]).numpy()
  (folder / 'cat' / 'cut.jpg').write_bytes(jpeg[:len(jpeg) // 2])
  _png(folder / 'dog' / 'big.png', np.zeros((40, 40, 3)))
  out = tmp_path / 'folders.jsonl'
  summary = predict.predict('cifar10', str(folder), str(out), with_labels=True, model_dir=model)
  assert (summary.predictions, summary.malformed, summary.unit) == (12, 2, 'image')
  assert summary.first_errors[0].startswith(
      f'{folder / "cat" / "cut.jpg"}: not a decodable image (')
  assert summary.first_errors[1] == f'{folder / "dog" / "big.png"}: image is 40x40, expected 32x32'
  records = [json.loads(line) for line in out.read_text().splitlines()]
  scored = [r for r in records if 'error' not in r]
  assert [r['file'] for r in scored] == sorted(r['file'] for r in scored)
  by_file = {r['file']: r for r in scored}
  for i in range(12):
    record = by_file[str(folder / cifar10.CLASS_NAMES[labels[i]] / f'{i:04d}.png')]
    assert (record['label'], record['class_id']) == (labels[i], expected[i])
  assert {r['file'] for r in records if 'error' in r} == {str(folder / 'cat' / 'cut.jpg'),
                                                          str(folder / 'dog' / 'big.png')}
  # No input that can be scored: one line, naming the first reason.
  with pytest.raises(predict.PredictError, match=r'^no image of .*cut\.jpg could be scored as '
                     r'cifar10 input \(1 malformed: .*cut\.jpg: not a decodable image'):
    predict.predict('cifar10', str(folder / 'cat' / 'cut.jpg'), str(out), model_dir=model)


@pytest.mark.e2e
def test_real_image_folders_cifar10_by_glob_and_the_imagenet_sample_by_cli(data_root, tmp_path):
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  from preprocessing import imagenet  # pylint: disable=import-outside-toplevel
  cifar = _mean_pixel_classifier(str(tmp_path / 'cifar'), 10)
  pattern = os.path.join(data_root, 'cifar10', 'test', '*', '000[0-4].jpg')
  out = tmp_path / 'cifar.jsonl'
  summary = predict.predict('cifar10', pattern, str(out), with_labels=True, model_dir=cifar)
  assert (summary.predictions, summary.malformed) == (50, 0)
  records = [json.loads(line) for line in out.read_text().splitlines()]
  for record in records:
    folder = os.path.basename(os.path.dirname(record['file']))
    assert record['label'] == cifar10.CLASS_NAMES.index(folder)
    pixels = tf.io.decode_image(open(record['file'], 'rb').read(), channels=3).numpy()
    assert record['class_id'] == _mean_pixel_class(pixels, 10)
  assert summary.correct == sum(r['class_id'] == r['label'] for r in records)

  # ImageNet's sample (a wnid class folder per image) through the CLI: the labels are the wnids'
  # lines in synsets.txt, resolved from the data root as the run resolves it.
  model = _mean_pixel_classifier(str(tmp_path / 'imagenet'), imagenet.NUM_CLASSES)
  out = tmp_path / 'imagenet.jsonl'
  result = helpers.run_cli('predict', 'imagenet', '--input',
                           os.path.join(data_root, 'imagenet', 'sample'), '--output', str(out),
                           '--with_labels', '--model_dir', model, '--data_root', data_root)
  assert result.returncode == 0, result.stderr
  assert 'Predictions: 100 in' in result.stdout and 'labeled images)' in result.stdout
  synsets = imagenet.class_names(os.path.join(data_root, 'imagenet', 'synsets.txt'))
  records = [json.loads(line) for line in out.read_text().splitlines()]
  assert len(records) == 100
  assert [r['label'] for r in records] == [
      synsets.index(os.path.basename(os.path.dirname(r['file']))) for r in records]
  assert sorted(r['label'] for r in records) == list(range(100))  # the first 100 classes
  assert all(len(r['probabilities']) == 1000 for r in records)


@pytest.mark.e2e
@pytest.mark.slow  # trains MNIST on the real offline split (about 2 min on 2 cores): `-m slow`
def test_mnist_predictions_on_the_held_out_t10k_records_match_the_runs_tfma_accuracy(
    data_root, tmp_path):
  """The offline run trains on t10k records 0-7,999 and evaluates on 8,000-9,999: predict's labels
  and classes for those records give the accuracy TFMA computed in the run."""
  resolved = datasets.resolve(spec_lib.get('mnist').dataset, data_root=data_root)
  config = RunConfig(output_dir=str(tmp_path / 'run'))
  summary = runner.run(spec_lib.get('mnist'), config, RunInputs(
      split_files=dict(resolved.files), row_ranges=dict(resolved.row_ranges)), progress=False)
  assert summary['error'] is None, summary['error']
  assert summary['metrics']['example_count'] == 2000
  model = summary['pushed_model'] or glob.glob(os.path.join(
      config.pipeline_root, 'Trainer', 'model', '*', 'Format-Serving'))[-1]
  out = tmp_path / 'p.jsonl'
  result = helpers.run_cli('predict', 'mnist', '--input',
                           os.path.join(data_root, 'mnist', 't10k-images-idx3-ubyte.gz'),
                           '--output', str(out), '--with_labels', '--model_dir', model)
  assert result.returncode == 0, result.stderr
  records = [json.loads(line) for line in out.read_text().splitlines()]
  held_out = [r for r in records if r['record'] >= 8000]
  assert len(records) == 10000 and len(held_out) == 2000
  accuracy = sum(predict.is_correct(r['probabilities'], r['label']) for r in held_out) / 2000
  assert accuracy == pytest.approx(summary['metrics']['accuracy'], abs=1e-6)
