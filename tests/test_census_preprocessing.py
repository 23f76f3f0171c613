"""The UCI Adult parser on the real files, its errors, and the census preprocessing_fn."""

import collections

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_transform as tft
from google.protobuf import text_format
from tensorflow_metadata.proto.v0 import schema_pb2

from pipelines import spec as spec_lib
from preprocessing import census


def test_every_real_row_parses(adult_lines):
  for split, expected_rows, expected_positive in (('train', 32561, 7841), ('eval', 16281, 3846)):
    rows = [census.parse_line(line) for line in adult_lines[split]]
    rows = [r for r in rows if r is not None]
    assert len(rows) == expected_rows
    assert sum(r['income_bracket'] for r in rows) == expected_positive  # UCI: 24.1% / 23.6% >50K


def test_first_test_row_and_junk_header(adult_lines):
  assert census.parse_line(adult_lines['eval'][0]) is None  # '|1x3 Cross validator'
  row = census.parse_line(adult_lines['eval'][1])
  assert row == {'age': 25, 'workclass': 'Private', 'fnlwgt': 226802, 'education': '11th',
                 'education_num': 7, 'marital_status': 'Never-married',
                 'occupation': 'Machine-op-inspct', 'relationship': 'Own-child', 'race': 'Black',
                 'sex': 'Male', 'capital_gain': 0, 'capital_loss': 0, 'hours_per_week': 40,
                 'native_country': 'United-States', 'income_bracket': 0}


def test_question_mark_is_missing():
  row = census.parse_line('54, ?, 180211, Some-college, 10, Married-civ-spouse, ?, Husband, '
                          'Asian-Pac-Islander, Male, 0, 0, 60, South, >50K')
  assert row['workclass'] is None and row['occupation'] is None and row['income_bracket'] == 1


@pytest.mark.parametrize('line, message', [
    ('39, State-gov, 77516, Bachelors, 13', 'expected 15 comma-separated fields, found 5'),
    ('thirty, State-gov, 77516, Bachelors, 13, Never-married, Adm-clerical, Not-in-family, '
     'White, Male, 2174, 0, 40, United-States, <=50K', "field age: expected an integer, got 'thirty'"),
    ('39, State-gov, 77516, Bachelors, 13, Never-married, Adm-clerical, Not-in-family, '
     'White, Male, 2174, 0, 40, United-States, 50K', "field income_bracket: expected one of"),
])
def test_malformed_rows_raise_with_the_field(line, message):
  with pytest.raises(ValueError, match=message.replace('(', r'\(')):
    census.parse_line(line)


def test_preprocessing_fn_outputs(adult_lines, tmp_path):
  """Runs the preprocessing_fn with tf.Transform's Beam implementation on 2,000 real rows."""
  import tensorflow_transform.beam as tft_beam
  from tensorflow_transform.tf_metadata import dataset_metadata, schema_utils
  rows = [r for r in map(census.parse_line, adult_lines['train'][:2000]) if r]
  spec = {k: tf.io.FixedLenFeature([], tf.int64) for k in census.NUMERIC_FEATURES}
  spec.update({k: tf.io.FixedLenFeature([], tf.string) for k in census.CATEGORICAL_FEATURES})
  spec[census.LABEL_KEY] = tf.io.FixedLenFeature([], tf.int64)
  data = [{k: (v if v is not None else ('' if k in census.CATEGORICAL_FEATURES else 0))
           for k, v in r.items()} for r in rows]
  metadata = dataset_metadata.DatasetMetadata(schema_utils.schema_from_feature_spec(spec))
  with tft_beam.Context(temp_dir=str(tmp_path / 'tmp'), force_tf_compat_v1=False):
    (transformed, _), transform_fn = (
        (data, metadata) | tft_beam.AnalyzeAndTransformDataset(census.preprocessing_fn))
    _ = transform_fn | tft_beam.WriteTransformFn(str(tmp_path / 'transform'))
  assert len(transformed) == len(rows)
  # The approximate vocabularies are exact here: every value, by decreasing frequency, then
  # reverse lexicographic order, without the empty string (missing values: the OOV id).
  tft_output = tft.TFTransformOutput(str(tmp_path / 'transform'))
  for key in census.CATEGORICAL_FEATURES:
    counts = collections.Counter(d[key] for d in data if d[key])
    expected = [v for v, _ in sorted(counts.items(), key=lambda kv: (kv[1], kv[0]), reverse=True)]
    vocabulary = [v.decode() for v in tft_output.vocabulary_by_name(key)]
    assert vocabulary == expected, key
    ids = [t[census.transformed_name(key)] for t in transformed]
    assert ids == [vocabulary.index(d[key]) if d[key] else len(vocabulary) for d in data], key
  ages = np.array([t['age_xf'] for t in transformed])
  assert abs(ages.mean()) < 1e-3 and abs(ages.std() - 1) < 1e-2  # z-score
  assert {t['age_bucket_xf'] for t in transformed} <= set(range(len(census.AGE_BOUNDARIES) + 1))
  assert all(0 <= t['education_x_occupation_xf'] < 1000 for t in transformed)
  assert [t[census.LABEL_KEY] for t in transformed] == [r[census.LABEL_KEY] for r in rows]


def test_curated_schema_keeps_vocabularies_exact():
  """The approximate vocabularies are exact while no column has more than VOCABULARY_TOP_K
  distinct values; the curated schema's domains (which ExampleValidator enforces) bound them."""
  with open(spec_lib.curated_schema('census')) as f:
    schema = text_format.Parse(f.read(), schema_pb2.Schema())
  domains = {d.name: len(d.value) for d in schema.string_domain}
  features = {f.name: f.domain for f in schema.feature if f.HasField('domain')}
  assert set(features) == set(census.CATEGORICAL_FEATURES)
  assert max(domains[features[k]] for k in census.CATEGORICAL_FEATURES) <= census.VOCABULARY_TOP_K
