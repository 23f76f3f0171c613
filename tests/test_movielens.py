"""MovieLens / NCF without a pipeline run: rating parsers, the NCF protocol in Beam, zip-member
datasets, the ranking metrics and the ItemPop baseline."""

import hashlib
import os
import zipfile

import apache_beam as beam
import numpy as np
import pytest
from apache_beam.testing import util as beam_util

from model_fns import ncf, ranking_metrics
from preprocessing import datasets, movielens


@pytest.fixture(scope='module')
def u_data(data_root):
  path = datasets.resolve_file(movielens.ML_100K, 'u.data', data_root=data_root)
  with open(path) as f:
    return f.read().splitlines()


def test_the_three_rating_formats_parse_alike(u_data):
  assert movielens.parse_ml_100k(u_data[0]) == {
      'user': 196, 'item': 242, 'rating': 3.0, 'timestamp': 881250949}
  assert movielens.parse_ml_1m('1::1193::5::978300760') == {
      'user': 1, 'item': 1193, 'rating': 5.0, 'timestamp': 978300760}
  assert movielens.parse_ml_20m('userId,movieId,rating,timestamp') is None
  assert movielens.parse_ml_20m('1,2,3.5,1112486027') == {
      'user': 1, 'item': 2, 'rating': 3.5, 'timestamp': 1112486027}


@pytest.mark.parametrize('parser, line, message', [
    (movielens.parse_ml_100k, '196\t242\t3', 'expected 4 fields'),
    (movielens.parse_ml_100k, '196\tx\t3\t881250949', "field item: expected an integer, got 'x'"),
    (movielens.parse_ml_1m, '1::1193::7::978300760', 'expected a rating in (0, 5], got 7.0'),
    (movielens.parse_ml_20m, '1,2,three,1112486027', "field rating: expected a number"),
])
def test_malformed_rating_rows_name_the_field(parser, line, message):
  with pytest.raises(ValueError) as e:
    parser(line)
  assert message in str(e.value)


def test_the_ncf_test_files_are_readable(data_root):
  files = datasets.resolve_splits(movielens.NCF_ML_1M_TEST, data_root=data_root)
  with open(files['test']) as f:
    first_rating = movielens.parse_ml_100k(f.readline().rstrip('\n'))
  with open(files['negatives']) as f:
    lines = f.read().splitlines()
  first = movielens.parse_ncf_test_negative(lines[0])
  assert (first['user'], first['item']) == (first_rating['user'], first_rating['item']) == (0, 25)
  assert len(first['negatives']) == 99 and first['negatives'][:3] == [1064, 174, 2791]
  assert len(lines) == 6040
  with pytest.raises(ValueError, match='expected 99 negatives, found 2'):
    movielens.parse_ncf_test_negative('(0,25)\t1\t2')


def _ratings(u_data, users):
  return [r for r in map(movielens.parse_ml_100k, u_data) if r['user'] in users]


def test_ncf_protocol_holds_out_the_latest_rating_with_99_unrated_negatives(u_data):
  users = set(range(1, 41))
  ratings = _ratings(u_data, users)
  all_items = sorted({r['item'] for r in ratings})
  latest = {}
  for r in sorted(ratings, key=lambda r: (r['timestamp'], r['item'])):
    latest[r['user']] = r['item']
  rated = {u: {r['item'] for r in ratings if r['user'] == u} for u in users}

  def check_eval(rows):
    assert sorted(r['user'] for r in rows) == sorted(users)
    for row in rows:
      items, labels = row['items'], row['labels']
      assert len(items) == len(set(items)) == 100 and sum(labels) == 1
      assert items[labels.index(1)] == latest[row['user']]
      negatives = set(items) - {latest[row['user']]}
      assert not negatives & rated[row['user']] and negatives <= set(all_items)

  def check_train(rows):
    for row in rows:
      assert sorted(row['items'] + [latest[row['user']]]) == sorted(rated[row['user']])
      assert set(row['labels']) == {1} and row['rated'] == sorted(rated[row['user']])

  with beam.Pipeline() as pipeline:
    splits = movielens.ncf_splits(pipeline | beam.Create(ratings))
    beam_util.assert_that(splits['eval'], check_eval, label='CheckEval')
    beam_util.assert_that(splits['train'], check_train, label='CheckTrain')

  # The per-user step is seeded by (seed, user): the same lists on every run and runner.
  user_1 = [r for r in ratings if r['user'] == 1]
  def draw(rows, seed):
    return [o.value for o in movielens._leave_one_out((1, rows), all_items, 99, seed)]  # pylint: disable=protected-access
  assert draw(user_1, 0) == draw(list(reversed(user_1)), 0)  # input order does not matter
  assert draw(user_1, 0)[1]['items'] != draw(user_1, 1)[1]['items']


def test_an_archive_member_is_checked_through_its_zip(tmp_path):
  folder = tmp_path / 'root' / 'toy'
  folder.mkdir(parents=True)
  with zipfile.ZipFile(folder / 'toy.zip', 'w') as zf:
    zf.writestr('toy/ratings.dat', '1::2::3::4\n')
  md5 = hashlib.md5((folder / 'toy.zip').read_bytes()).hexdigest()
  toy = datasets.Dataset(name='toy-zip', folder='toy', splits={'ratings': 'ratings.dat'}, files=(
      datasets.DataFile('ratings.dat', 'https://example.org/toy.zip', None,
                        archive_member='toy/ratings.dat', archive_md5=md5),))
  cache = tmp_path / 'cache'
  path = datasets.resolve_file(toy, 'ratings.dat', data_root=str(tmp_path / 'root'),
                               cache_dir=str(cache))
  assert path == str(cache / 'toy' / 'ratings.dat')
  assert open(path).read() == '1::2::3::4\n'
  bad = datasets.Dataset(name='toy-zip-bad', folder='toy', splits={}, files=(
      datasets.DataFile('ratings.dat', 'https://example.org/toy.zip', None,
                        archive_member='toy/ratings.dat', archive_md5='0' * 32),))
  with pytest.raises(datasets.DatasetError, match='checksum mismatch for toy.zip: expected MD5'):
    datasets.resolve_file(bad, 'ratings.dat', data_root=str(tmp_path / 'root'),
                          cache_dir=str(tmp_path / 'cache2'))
  assert not (tmp_path / 'cache2' / 'toy' / 'ratings.dat').exists()  # nothing half-written
  os.remove(folder / 'toy.zip')
  (folder / 'ratings.dat').write_text('1::2::3::4\n')
  with pytest.raises(datasets.DatasetError, match='can only be verified inside the canonical toy.zip'):
    datasets.resolve_file(bad, 'ratings.dat', data_root=str(tmp_path / 'root'),
                          cache_dir=str(tmp_path / 'cache3'))


def test_ranking_metrics_on_known_answers():
  labels = np.array([[0, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 1]])
  scores = np.array([[0.9, 0.8, 0.1, 0.0],   # relevant ranked 1 (0-based)
                     [0.1, 0.2, 0.3, 0.4],   # ranked 3
                     [0.5, 0.5, 0.5, 0.5]])  # ties favour it: ranked 0
  np.testing.assert_array_equal(ranking_metrics.rank_of_relevant(labels, scores), [1, 3, 0])
  hit_rate, ndcg = ranking_metrics.HitRateAtK(k=2), ranking_metrics.NdcgAtK(k=2)
  hit_rate.update_state(labels, scores)
  ndcg.update_state(labels, scores)
  assert float(hit_rate.result()) == pytest.approx(2 / 3)
  assert float(ndcg.result()) == pytest.approx((1 / np.log2(3) + 0 + 1) / 3)


def test_item_popularity_ranks_by_training_counts():
  result = ncf.item_popularity_baseline(
      [np.array([5, 6]), np.array([5])], eval_items=np.array([[7, 5, 6], [6, 7, 8]]),
      eval_labels=np.array([[0, 1, 0], [0, 0, 1]]), k=1)
  assert result == {'hit_rate_at_1': 0.5, 'ndcg_at_1': 0.5}
