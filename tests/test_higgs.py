"""HIGGS without a pipeline run: the line parser, the registry entry and its samples, row ranges in
TextLineExampleGen, and the spec's settings."""

import gzip
import hashlib
import json
import os

import pytest

from components import text_example_gen
from pipelines import factory, spec as spec_lib
from preprocessing import datasets, higgs
from tests import helpers

CANONICAL_LINE = ','.join(['1.000000000000000000e+00'] + ['8.692932128906250000e-01'] * 28)


@pytest.fixture(scope='module')
def sample_files(data_root):
  return datasets.resolve_splits(higgs.DATASET, data_root=data_root, sample=True)


@pytest.fixture(scope='module')
def sample_lines(sample_files):
  with open(sample_files['train']) as f:
    return f.read().splitlines()


def test_parses_the_sample_and_the_canonical_number_format(sample_lines):
  row = higgs.parse_line(sample_lines[0])
  assert list(row) == list(higgs.COLUMNS)
  assert isinstance(row['label'], int) and row['label'] in (0, 1)
  assert all(isinstance(row[f], float) for f in higgs.FEATURES)
  assert float(sample_lines[0].split(',')[28]) == row['m_wwbb']
  canonical = higgs.parse_line(CANONICAL_LINE)
  assert canonical['label'] == 1 and canonical['lepton_pt'] == pytest.approx(0.869293212890625)
  assert higgs.parse_line('') is None


@pytest.mark.parametrize('line, message', [
    (','.join(['1'] * 28), 'expected 29 comma-separated fields (label and 28 features), found 28'),
    (','.join(['1'] * 30), 'found 30'),
    ('1,abc' + ',1' * 27, "field lepton_pt: expected a number, got 'abc'"),
    ('1,1' + ',1' * 26 + ',nan', 'field m_wwbb: expected a finite number'),
    ('2' + ',1' * 28, "field label: expected 0 or 1, got '2'"),
])
def test_malformed_lines_raise_naming_the_field(line, message):
  with pytest.raises(ValueError) as e:
    higgs.parse_line(line)
  assert message in str(e.value)


def test_samples_resolve_verified_and_the_full_file_is_missing_offline(sample_files, data_root):
  assert sample_files == {'train': os.path.join(data_root, 'higgs', 'HIGGS.sample-11k.csv'),
                          'eval': os.path.join(data_root, 'higgs', 'HIGGS.sample-5k.csv')}
  with pytest.raises(datasets.DatasetError) as e:
    datasets.resolve_splits(higgs.DATASET, data_root=data_root)
  assert 'HIGGS.csv of dataset' in str(e.value) and 'HIGGS.csv.gz' in str(e.value)
  assert 'are read with --sample' in str(e.value)


def test_gz_checksum_verifies_the_gzipped_copy_only(tmp_path):
  folder = tmp_path / 'toy'
  folder.mkdir()
  with gzip.open(folder / 'big.csv.gz', 'wb') as f:
    f.write(b'1,2\n')
  gz_sha = hashlib.sha256((folder / 'big.csv.gz').read_bytes()).hexdigest()
  toy = datasets.Dataset(name='toy', files=(datasets.DataFile('big.csv', 'file:///none.gz', None,
                                                              gz_sha256=gz_sha),),
                         splits={'train': 'big.csv'})
  assert datasets.resolve_file(toy, 'big.csv', data_root=str(tmp_path)).endswith('big.csv.gz')
  (folder / 'big.csv.gz').unlink()
  (folder / 'big.csv').write_bytes(b'1,2\n')
  with pytest.raises(datasets.DatasetError, match='can only be verified as the canonical big.csv.gz'):
    datasets.resolve_file(toy, 'big.csv', data_root=str(tmp_path))
  with pytest.raises(ValueError, match='needs sha256, gz_sha256 or archive_md5'):
    datasets.DataFile('x', None, None)


def test_read_line_chunks_reads_only_the_row_range(tmp_path):
  path = tmp_path / 'rows.txt'
  path.write_text(''.join(f'{i}\n' for i in range(25)))
  chunks = list(text_example_gen.read_line_chunks(str(path), chunk_lines=4, first_row=5,
                                                  num_rows=10))
  assert [(first, [int(x) for x in lines]) for _, first, lines in chunks] == [
      (6, [5, 6, 7, 8]), (10, [9, 10, 11, 12]), (14, [13, 14])]
  rest = list(text_example_gen.read_line_chunks(str(path), chunk_lines=100, first_row=20))
  assert [int(x) for x in rest[0][2]] == [20, 21, 22, 23, 24]
  assert not list(text_example_gen.read_line_chunks(str(path), first_row=30))


def _run_example_gen(tmp_path, input_base, splits, row_ranges, max_fraction=0.0):
  return helpers.run_example_gen(str(tmp_path), input_base, splits,
                                 'preprocessing.higgs.parse_line', max_fraction, row_ranges)


def _labels(uri, split):
  return sorted(e.features.feature['m_wwbb'].float_list.value[0]
                for e in helpers.read_examples(uri, split))


def test_two_splits_read_two_row_ranges_of_one_file(tmp_path, sample_files, sample_lines):
  """The seed's layout in small: train and eval are row ranges of one HIGGS file."""
  folder, name = os.path.split(sample_files['train'])
  examples = _run_example_gen(tmp_path, folder, {'train': name, 'eval': name},
                              {'train': (0, 300), 'eval': (1000, 200)})
  expected = lambda lines: sorted(float(line.split(',')[28]) for line in lines)  # noqa: E731
  assert _labels(examples.uri, 'train') == pytest.approx(expected(sample_lines[:300]))
  assert _labels(examples.uri, 'eval') == pytest.approx(expected(sample_lines[1000:1200]))
  assert examples.get_int_custom_property('valid_rows_eval') == 200
  assert examples.get_int_custom_property('first_row_eval') == 1000
  with open(os.path.join(examples.uri, 'malformed_rows-eval.json')) as f:
    report = json.load(f)
  assert (report['first_row'], report['num_rows'], report['valid_rows']) == (1000, 200, 200)


def test_one_bad_row_fails_the_split_with_its_line_number(tmp_path, sample_lines):
  lines = sample_lines[:500]
  lines[41] = lines[41].rsplit(',', 1)[0]  # 28 fields
  lines[300] = lines[300].replace(',', ',x', 1)  # non-numeric lepton_pt
  (tmp_path / 'bad.csv').write_text('\n'.join(lines) + '\n')
  with pytest.raises(Exception) as e:
    _run_example_gen(tmp_path, str(tmp_path), {'train': 'bad.csv'}, {})
  message = str(e.value)
  assert '2 of 500 rows are malformed' in message
  assert 'bad.csv:42: expected 29 comma-separated fields' in message
  assert "bad.csv:301: field lepton_pt: expected a number, got 'x" in message


def test_a_row_range_past_the_end_of_the_file_is_a_clear_error(tmp_path, sample_files):
  folder, name = os.path.split(sample_files['eval'])
  with pytest.raises(Exception, match='the file ends before the first row asked for'):
    _run_example_gen(tmp_path, folder, {'eval': name}, {'eval': (10_000_000, 1_000_000)})
  with pytest.raises(ValueError, match='unknown split'):
    text_example_gen.TextLineExampleGen(input_base=folder, splits={'eval': name},
                                        line_parser='preprocessing.higgs.parse_line',
                                        row_ranges={'train': (0, 1)})


def test_row_ranges_follow_the_seed_for_the_canonical_file_only():
  spec = spec_lib.get('higgs')
  assert factory.row_ranges(spec, ['train', 'eval']) == {
      'train': (0, 1_000_000), 'eval': (10_000_000, 1_000_000)}
  assert factory.row_ranges(spec, ['train']) == {'train': (0, 1_000_000)}  # eval from a file
  assert factory.row_ranges(spec, [], {'train': (None, 5000), 'eval': (100, None)}) == {
      'train': (0, 5000), 'eval': (100, None)}
  assert factory.row_ranges(spec_lib.get('census'), ['train', 'eval']) == {}


def test_the_spec_has_no_transform_and_refuses_steps_and_other_strategies(tmp_path):
  spec = spec_lib.get('higgs')
  assert spec.preprocessing_fn is None and spec.train_steps is None
  files = {'train': '/data/higgs/a.csv', 'eval': '/data/higgs/b.csv'}
  pipeline = factory.create_pipeline(spec, factory.RunConfig(output_dir=str(tmp_path)), files)
  ids = [c.id for c in pipeline.components]
  assert 'Transform' not in ids and ids.index('AnomaliesGate') < ids.index('Trainer')
  with pytest.raises(ValueError, match='does not train by steps'):
    factory.create_pipeline(spec, factory.RunConfig(output_dir=str(tmp_path), train_steps=10),
                            files)
  with pytest.raises(ValueError, match="cannot train under distribution strategy 'mirrored'"):
    factory.trainer_config(spec, factory.RunConfig(output_dir=str(tmp_path),
                                                   distribution_strategy='mirrored'))
  config = factory.trainer_config(spec, factory.RunConfig(
      output_dir=str(tmp_path), hparams={'num_trees': 20}))
  assert config.hparams == {'num_trees': 20}
  with pytest.raises(ValueError, match='unknown hyperparameters'):
    factory.trainer_config(spec, factory.RunConfig(output_dir=str(tmp_path),
                                                   hparams={'hidden_units': [1]}))
