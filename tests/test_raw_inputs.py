"""Ordinary variants of raw files (issue 17): a UTF-8 BOM, a header line, a file name with glob
characters, bytes that are not UTF-8, and the reports and messages every ExampleGen gives about
them. Every test writes its own small files in tmp_path (no real data needed)."""

import codecs
import gzip
import json
import os

import numpy as np
import pytest
import tensorflow as tf
from tensorflow_metadata.proto.v0 import anomalies_pb2
from tfx.components.example_gen import utils as example_gen_utils
from tfx.proto import example_gen_pb2
from tfx.types import artifact_utils, standard_artifacts

from components import anomalies_gate
from components import idx_example_gen as idx
from components import image_example_gen as image_gen
from components import parallel_text_example_gen as ptg
from components import text_example_gen
from components.record_checks import MalformedRowsError, escape_glob, literal_path
from pipelines import factory
from preprocessing import census, higgs, movielens, mrpc
from tests import helpers

ROW = ('39, State-gov, 77516, Bachelors, 13, Never-married, Adm-clerical, Not-in-family, White, '
       'Male, 2174, 0, 40, United-States, <=50K')
ROWS = [ROW.replace('77516', str(77516 + i)) for i in range(20)]
HEADER = ('Age, Workclass, fnlwgt, "Education", Education-Num, marital status, occupation, '
          'relationship, race, gender, capital-gain, capital_loss, hours-per-week, '
          'native-country, income')
BOM = codecs.BOM_UTF8


def write(path, lines, prefix=b'', gz=False):
  data = prefix + b''.join((l if isinstance(l, bytes) else l.encode('utf-8')) + b'\n'
                           for l in lines)
  with (gzip.open if gz else open)(path, 'wb') as f:
    f.write(data)
  return str(path)


def report(examples, split):
  with open(os.path.join(examples.uri, f'malformed_rows-{split}.json')) as f:
    return json.load(f)


def run_census(tmp_path, splits, max_fraction=0.0, parser='preprocessing.census.parse_line'):
  return helpers.run_example_gen(str(tmp_path / 'out'), str(tmp_path / 'data'), splits, parser,
                                 max_fraction)


def fnlwgts(examples, split):
  return sorted(e.features.feature['fnlwgt'].int64_list.value[0]
                for e in helpers.read_examples(examples.uri, split))


# --- header recognition ------------------------------------------------------------------------

def test_header_matcher_is_lenient_in_spelling_and_strict_in_columns():
  matches = text_example_gen.header_matcher(census.parse_line.columns)
  assert matches(HEADER)
  assert matches(','.join(census.COLUMNS))
  assert matches('\t'.join(f'"{c.upper()}"' for c in census.COLUMNS))
  assert matches(' '.join(census.COLUMNS))  # white space only: one field a name
  assert not matches(','.join(census.COLUMNS[:-1]))  # a column short
  assert not matches(','.join(reversed(census.COLUMNS)))  # another order
  assert not matches(ROW)
  assert text_example_gen.header_matcher(higgs.parse_line.columns)(
      'class,lepton pT,lepton eta,lepton phi,missing energy magnitude,missing energy phi,'
      + ','.join(f'jet {j} pt,jet {j} eta,jet {j} phi,jet {j} b-tag' for j in range(1, 5))
      + ',m_jj,m_jjj,m_lv,m_jlv,m_bb,m_wbb,m_wwbb')
  ratings = text_example_gen.header_matcher(movielens.parse_ml_1m.columns)
  assert ratings('UserID::MovieID::Rating::Timestamp')
  assert ratings('user id | item id | rating | timestamp')
  assert ratings('userId,movieId,rating,timestamp')
  assert not ratings('1::1193::5::978300760')
  assert text_example_gen.header_matcher(mrpc.parse_line.columns)(
      'Quality\t#1 ID\t#2 ID\t#1 String\t#2 String')
  with pytest.raises(ValueError, match='at least one column'):
    text_example_gen.header_matcher(())


# --- TextLineExampleGen --------------------------------------------------------------------------

def test_bom_is_stripped_and_a_first_line_header_skipped_with_notices(tmp_path):
  (tmp_path / 'data').mkdir()
  train = write(tmp_path / 'data' / 'train.csv.gz', [HEADER] + ROWS, prefix=BOM, gz=True)
  test = write(tmp_path / 'data' / 'test.csv', ROWS[:5], prefix=BOM)
  examples = run_census(tmp_path, {'train': 'train.csv.gz', 'eval': 'test.csv'})
  assert fnlwgts(examples, 'train') == list(range(77516, 77536))
  assert fnlwgts(examples, 'eval') == list(range(77516, 77521))  # the BOM's row is not lost
  train_report = report(examples, 'train')
  assert train_report['notices'] == [
      f'UTF-8 byte-order mark (BOM) stripped at the start of {train}',
      f'header line (column names) skipped at {train}:1']
  assert train_report['valid_rows'] == 20 and train_report['malformed_rows'] == 0
  assert train_report['first_malformed'] == []
  assert report(examples, 'eval')['notices'] == [
      f'UTF-8 byte-order mark (BOM) stripped at the start of {test}']
  assert examples.get_int_custom_property('valid_rows_eval') == 5


def test_header_after_the_first_line_is_malformed_not_skipped(tmp_path):
  (tmp_path / 'data').mkdir()
  path = write(tmp_path / 'data' / 'train.csv', ROWS[:10] + [HEADER] + ROWS[10:])
  examples = run_census(tmp_path, {'train': 'train.csv'}, max_fraction=0.1)
  assert len(fnlwgts(examples, 'train')) == 20
  train_report = report(examples, 'train')
  assert train_report['notices'] == []
  assert train_report['malformed_rows'] == 1
  (bad,) = train_report['first_malformed']
  assert bad['file'] == path and bad['line'] == 11 and bad['text'] == HEADER
  assert 'a header line (the column names) after the first line of the file' in bad['reason']
  with pytest.raises(MalformedRowsError) as e:  # with no tolerance, the run stops naming it
    helpers.run_example_gen(str(tmp_path / 'out2'), str(tmp_path / 'data'),
                            {'train': 'train.csv'}, 'preprocessing.census.parse_line', 0.0)
  assert f'{path}:11: a header line (the column names) after the first line' in str(e.value)


def test_a_line_that_is_not_utf8_is_malformed_with_file_line_and_byte(tmp_path):
  (tmp_path / 'data').mkdir()
  latin1 = ROW.replace('State-gov', 'Gouvernement-d\u00e9partemental').encode('latin-1')
  path = write(tmp_path / 'data' / 'train.csv', [ROWS[0], latin1, ROWS[1]])
  with pytest.raises(MalformedRowsError) as e:
    run_census(tmp_path, {'train': 'train.csv'})
  message = str(e.value)
  assert "split 'train'" in message and '1 of 3 rows are malformed' in message
  assert f'{path}:2: not UTF-8 (byte 0xe9 at column 19' in message
  (bad,) = report_from(tmp_path / 'out', 'train')['first_malformed']
  assert (bad['file'], bad['line']) == (path, 2) and bad['reason'].startswith('not UTF-8')
  assert 'Gouvernement-d\ufffdpartemental' in bad['text']


def report_from(output_dir, split):
  with open(os.path.join(output_dir, 'examples', f'malformed_rows-{split}.json')) as f:
    return json.load(f)


def test_utf16_file_is_named_as_such(tmp_path):
  (tmp_path / 'data').mkdir()
  (tmp_path / 'data' / 'train.csv').write_bytes(('\n'.join(ROWS[:3]) + '\n').encode('utf-16'))
  with pytest.raises(MalformedRowsError, match=r'train\.csv:1: the file is UTF-16'):
    run_census(tmp_path, {'train': 'train.csv'})


@pytest.mark.parametrize('name', ['adult [copy 1].data', 'adult*?.data', 'a]b.data'])
def test_file_names_with_glob_characters_are_read_literally(tmp_path, name):
  folder = tmp_path / 'my [data]'
  folder.mkdir()
  train = write(folder / name, ROWS)
  write(folder / 'adult [copy 2].data', ROWS[:3])  # what a pattern [copy 1] would not match
  write(folder / 'adultXY.data', ROWS[:4])  # what adult*?.data would match as a pattern
  test = write(folder / 'adult.test', ROWS[:5])
  input_base, patterns = factory.split_patterns({'train': train, 'eval': test})
  assert input_base == str(tmp_path)  # the bracketed folder goes into the escaped patterns
  assert literal_path(patterns['train']) == os.path.join('my [data]', name)
  # TFX's FileBasedExampleGen driver fingerprints input_base/pattern before the executor runs.
  input_config = example_gen_pb2.Input(splits=[
      example_gen_pb2.Input.Split(name=s, pattern=p) for s, p in patterns.items()])
  fingerprint, _, _ = example_gen_utils.calculate_splits_fingerprint_span_and_version(
      input_base, input_config.splits)
  assert 'split:train,num_files:1,' in fingerprint and 'split:eval,num_files:1,' in fingerprint
  examples = helpers.run_example_gen(str(tmp_path / 'out'), input_base, patterns,
                                     'preprocessing.census.parse_line', 0.0)
  assert fnlwgts(examples, 'train') == list(range(77516, 77536))
  assert report(examples, 'train')['files'] == [train]
  assert report(examples, 'train')['source'] == train


def test_a_missing_literal_file_is_named_as_a_file(tmp_path):
  (tmp_path / 'data').mkdir()
  with pytest.raises(FileNotFoundError) as e:
    run_census(tmp_path, {'train': escape_glob('adult [copy 1].data')})
  assert str(e.value) == (f"split 'train': the file {tmp_path / 'data' / 'adult [copy 1].data'} "
                          'does not exist')


def test_higgs_and_movielens_headers_and_mrpc_bom_header(tmp_path):
  (tmp_path / 'data').mkdir()
  values = ','.join(['1'] + ['0.5'] * 28)
  path = write(tmp_path / 'data' / 'higgs.csv', [','.join(higgs.COLUMNS), values, values])
  examples = helpers.run_example_gen(str(tmp_path / 'h'), str(tmp_path / 'data'),
                                     {'train': 'higgs.csv'}, 'preprocessing.higgs.parse_line', 0.0)
  assert len(helpers.read_examples(examples.uri, 'train')) == 2
  assert report(examples, 'train')['notices'] == [
      f'header line (column names) skipped at {path}:1']

  ratings = write(tmp_path / 'data' / 'ratings.csv',
                  ['userId,movieId,rating,timestamp', '1,2,3.5,1112486027',
                   'userId,movieId,rating,timestamp', '1,3,4.0,1112486028'])
  with pytest.raises(MalformedRowsError) as e:  # ml-20m's parser alone skips it anywhere
    helpers.run_example_gen(str(tmp_path / 'm'), str(tmp_path / 'data'),
                            {'ratings': 'ratings.csv'}, 'preprocessing.movielens.parse_ml_20m',
                            0.0)
  assert f'{ratings}:3: a header line (the column names) after the first line' in str(e.value)
  assert report_from(tmp_path / 'm', 'ratings')['notices'] == [
      f'header line (column names) skipped at {ratings}:1']

  dev = write(tmp_path / 'data' / 'dev.tsv', ['Quality\t#1 ID\t#2 ID\t#1 String\t#2 String',
                                             '1\t1\t2\tA cat.\tA feline.'], prefix=BOM)
  examples = helpers.run_example_gen(str(tmp_path / 'b'), str(tmp_path / 'data'),
                                     {'eval': 'dev.tsv'}, 'preprocessing.mrpc.parse_line', 0.0)
  (row,) = helpers.read_examples(examples.uri, 'eval')
  assert row.features.feature['sentence1'].bytes_list.value == [b'A cat.']
  assert report(examples, 'eval')['notices'] == [
      f'UTF-8 byte-order mark (BOM) stripped at the start of {dev}',
      f'header line (column names) skipped at {dev}:1']


# --- ParallelTextExampleGen ----------------------------------------------------------------------

def test_wmt_pair_reports_a_latin1_line_by_the_file_at_fault_and_strips_a_bom(tmp_path):
  folder = tmp_path / 'news [2014]'
  folder.mkdir()
  english = write(folder / 'test.en', ['One.', 'Two.', 'Three.'], prefix=BOM)
  german = write(folder / 'test.de', [b'Eins.', 'Zw\u00f6lf.'.encode('latin-1'), b'Drei.'])
  input_base, patterns = factory.split_patterns({'eval': english})
  component = ptg.ParallelTextExampleGen(input_base=input_base, splits=patterns)
  with pytest.raises(MalformedRowsError) as e:
    helpers.run_executor(component, ptg.Executor, str(tmp_path / 'out'))
  assert f'{german}:2: the target line is not UTF-8 (byte 0xf6 at column 3' in str(e.value)
  bad_report = report_from(tmp_path / 'out', 'eval')
  assert bad_report['malformed_rows'] == 1 and bad_report['valid_rows'] == 2
  (bad,) = bad_report['first_malformed']
  assert (bad['file'], bad['line']) == (german, 2)
  assert bad_report['notices'] == [f'UTF-8 byte-order mark (BOM) stripped at the start of '
                                   f'{english}']
  assert bad_report['files'] == [english, german]
  component = ptg.ParallelTextExampleGen(input_base=input_base, splits=patterns,
                                         max_malformed_fraction=0.5)
  examples = helpers.run_executor(component, ptg.Executor, str(tmp_path / 'out2'))
  pairs = sorted((e.features.feature['inputs'].bytes_list.value[0],
                  e.features.feature['targets'].bytes_list.value[0])
                 for e in helpers.read_examples(examples.uri, 'eval'))
  assert pairs == [(b'One.', b'Eins.'), (b'Three.', b'Drei.')]  # the BOM is not in `One.`


# --- IdxExampleGen and ImageExampleGen: the report, for every split -------------------------------

def test_idx_report_has_notices_and_reads_a_bracketed_name(tmp_path):
  folder = tmp_path / 'mnist [copy]'
  folder.mkdir()
  images = np.zeros((4, 28, 28), np.uint8)
  images_file = str(folder / 'toy-images-idx3-ubyte')
  for path, magic, array in ((images_file, idx.IMAGES_MAGIC, images),
                             (str(folder / 'toy-labels-idx1-ubyte'), idx.LABELS_MAGIC,
                              np.array([1, 2, 11, 3], np.uint8))):
    header = magic.to_bytes(4, 'big') + b''.join(d.to_bytes(4, 'big') for d in array.shape)
    with open(path, 'wb') as f:
      f.write(header + array.tobytes())
  input_base, patterns = factory.split_patterns({'train': images_file})
  component = idx.IdxExampleGen(input_base=input_base, splits=patterns,
                                max_malformed_fraction=0.5)
  examples = helpers.run_executor(component, idx.Executor, str(tmp_path / 'out'))
  assert len(helpers.read_examples(examples.uri, 'train')) == 3
  train = report(examples, 'train')
  assert train['notices'] == []
  assert train['first_malformed'] == [{'file': str(folder / 'toy-labels-idx1-ubyte'),
                                       'record': 2, 'reason': 'label 11 is not in 0-9'}]


def _png(height=2, width=3):
  return tf.io.encode_png(np.zeros((height, width, 1), np.uint8)).numpy()


def test_image_folder_with_a_bom_labels_file_and_a_bad_image(tmp_path):
  folder = tmp_path / 'val [flat]'
  folder.mkdir()
  for name, data in (('a.png', _png()), ('b.png', b'not an image'), ('c.png', _png(4, 5))):
    (folder / name).write_bytes(data)
  labels = write(tmp_path / 'labels.txt', ['dog', 'cat', 'dog', ''], prefix=BOM)
  input_base, patterns = factory.split_patterns({'eval': str(folder)})
  component = image_gen.ImageExampleGen(input_base=input_base, splits=patterns,
                                        class_names=('cat', 'dog'),
                                        labels_files={'eval': 'labels.txt'},
                                        max_malformed_fraction=0.5)
  examples = helpers.run_executor(component, image_gen.Executor, str(tmp_path / 'out'))
  written = helpers.read_examples(examples.uri, 'eval')
  assert sorted((e.features.feature['label'].int64_list.value[0],
                 e.features.feature['width'].int64_list.value[0]) for e in written) == [(1, 3),
                                                                                         (1, 5)]
  eval_report = report(examples, 'eval')
  assert eval_report['notices'] == [
      f'UTF-8 byte-order mark (BOM) stripped at the start of {labels}']
  (bad,) = eval_report['first_malformed']
  assert bad['file'] == str(folder / 'b.png') and bad['reason'].startswith('not a decodable')
  assert eval_report['files'] == [str(folder), labels]


def test_labels_file_with_a_blank_line_or_latin1_names_the_line(tmp_path):
  folder = tmp_path / 'val'
  folder.mkdir()
  for name in ('a.png', 'b.png'):
    (folder / name).write_bytes(_png())
  write(tmp_path / 'labels.txt', ['dog', '', 'cat'])
  with pytest.raises(image_gen.ImageDataError, match=r'labels\.txt:2: blank line'):
    image_gen.labelled_files(str(folder), str(tmp_path / 'labels.txt'), ('cat', 'dog'))
  write(tmp_path / 'labels.txt', ['dog', 'ch\u00e4t'.encode('latin-1')])
  with pytest.raises(image_gen.ImageDataError, match=r'labels\.txt:2: not UTF-8 \(byte 0xe4'):
    image_gen.labelled_files(str(folder), str(tmp_path / 'labels.txt'), ('cat', 'dog'))


# --- AnomaliesGate -------------------------------------------------------------------------------

def _anomalies_artifact(tmp_path, per_split):
  artifact = standard_artifacts.ExampleAnomalies()
  artifact.uri = str(tmp_path / 'anomalies')
  artifact.split_names = artifact_utils.encode_split_names(list(per_split))
  for split, features in per_split.items():
    anomalies = anomalies_pb2.Anomalies()
    for feature, (short, long) in features.items():
      info = anomalies.anomaly_info[feature]
      info.short_description, info.description = short, long
    folder = os.path.join(artifact.uri, f'Split-{split}')
    os.makedirs(folder)
    with open(os.path.join(folder, anomalies_gate.ANOMALIES_FILE), 'wb') as f:
      f.write(anomalies.SerializeToString())
  return artifact


def test_gate_message_names_each_anomalous_split_with_its_files(tmp_path):
  (tmp_path / 'data').mkdir()
  train = write(tmp_path / 'data' / 'adult [copy 1].data', ROWS)
  test = write(tmp_path / 'data' / 'adult.test', ROWS[:3])
  input_base, patterns = factory.split_patterns({'train': train, 'eval': test})
  examples = helpers.run_example_gen(str(tmp_path / 'out'), input_base, patterns,
                                     'preprocessing.census.parse_line', 0.0)
  anomalies = _anomalies_artifact(tmp_path, {
      'train': {'age': ('Out-of-range values', 'Unexpectedly large value: 390.')},
      'eval': {}})
  message = anomalies_gate.gate_message(anomalies, examples)
  assert message == (
      'ExampleValidator found 1 anomaly against the curated schema; the run stops before '
      f"Transform:\n  split 'train', read from {train}:\n"
      '    train: age: Out-of-range values: Unexpectedly large value: 390.')
  assert "split 'train':" in anomalies_gate.gate_message(anomalies)  # without examples
  assert anomalies_gate.gate_message(_anomalies_artifact(tmp_path / 'x', {'eval': {}}),
                                     examples) is None
  with pytest.raises(anomalies_gate.AnomaliesFoundError, match=r'adult \[copy 1\]\.data'):
    anomalies_gate.AnomaliesGate.EXECUTOR_SPEC.executor_class().Do(
        {'anomalies': [anomalies], 'examples': [examples]}, {}, {})


def test_gate_names_every_input_file_for_splits_built_by_a_split_fn(tmp_path):
  examples = standard_artifacts.Examples()
  examples.uri = str(tmp_path / 'examples')
  os.makedirs(examples.uri)
  with open(os.path.join(examples.uri, 'malformed_rows-ratings.json'), 'w') as f:
    json.dump({'split': 'ratings', 'files': ['/d/u.data']}, f)
  anomalies = _anomalies_artifact(tmp_path, {'eval': {'items': ('Bad', 'Too many.')}})
  assert "split 'eval', read from /d/u.data:" in anomalies_gate.gate_message(anomalies, examples)


# --- a whole pipeline on a bracketed file name ---------------------------------------------------

@pytest.mark.e2e
def test_pipeline_reads_a_bracketed_file_and_the_gate_names_it(tmp_path):
  """TFX's driver, the executor and the AnomaliesGate on `adult [copy 1].test` (a BOM and a header
  line too), in a real LocalDagRunner run that stops at the gate: `sex` has an unknown value."""
  from pipelines import runner, spec as spec_lib  # pylint: disable=import-outside-toplevel
  from pipelines.factory import RunConfig  # pylint: disable=import-outside-toplevel
  folder = tmp_path / 'exports [2024]'
  folder.mkdir()
  rows = [ROW.replace('77516', str(77516 + i)).replace('<=50K', '<=50K' if i % 2 else '>50K')
          for i in range(200)]
  train = write(folder / 'adult [copy 1].data', [HEADER] + rows, prefix=BOM)
  test = write(folder / 'adult [copy 1].test', rows[:50] + [ROW.replace('Male', 'Unknown')])
  config = RunConfig(output_dir=str(tmp_path / 'out'))
  with pytest.raises(Exception) as e:
    runner.run(spec_lib.get('census'), config, {'train': train, 'eval': test}, progress=False)
  message = str(e.value)
  assert 'ExampleValidator found' in message
  assert f"split 'eval', read from {test}:" in message and 'eval: sex:' in message
  examples_dir = os.path.join(config.pipeline_root, 'TextLineExampleGen', 'examples')
  (run_dir,) = os.listdir(examples_dir)
  with open(os.path.join(examples_dir, run_dir, 'malformed_rows-train.json')) as f:
    train_report = json.load(f)
  assert train_report['valid_rows'] == 200 and train_report['files'] == [train]
  assert train_report['notices'] == [
      f'UTF-8 byte-order mark (BOM) stripped at the start of {train}',
      f'header line (column names) skipped at {train}:1']
