"""MovieLens for NCF: canonical files, rating-file parsers, the NCF protocol in Beam, and Transform.

Sources: F. M. Harper & J. A. Konstan (2015), "The MovieLens Datasets: History and Context", ACM TiiS
5(4) (GroupLens terms: research use, no redistribution); X. He et al. (2017), "Neural Collaborative
Filtering", WWW (arXiv:1708.05031), for the protocol and its ml-1m test files.

Formats, one rating per line, no header unless said:
- ml-100k `u.data`: `user \\t item \\t rating \\t timestamp`;
- ml-1m `ratings.dat`: `user::item::rating::timestamp`;
- ml-20m `ratings.csv`: `userId,movieId,rating,timestamp` with that header line, half-star ratings;
- NCF's `ml-1m.test.rating` (as u.data, 0-based ids) and `ml-1m.test.negative`
  (`(user,item)` then 99 tab-separated negative items).

The NCF protocol (`ncf_splits`, run inside ExampleGen): every rating is an implicit positive; per
user, the latest rating (by timestamp, ties broken by the larger item id) is held out for evaluation, the rest
are training positives. Each held-out item is ranked among 100 candidates: itself and 99 items the
user never rated, drawn uniformly without replacement from all items of the data by a generator seeded
with (seed, user), so the lists are the same on every run and runner. Training negatives (4 per
positive by default) are drawn per epoch by the trainer, also among items the user never rated
(model_fns.ncf). Users with fewer than 2 ratings are left out (none in ml-100k / ml-1m / ml-20m).

Both splits hold one example per user: `user` (int), `items` (int list), `labels` (int list, same
length) and `rated` (int list: every item the user rated). Train: `items` are the positives, all
labelled 1. Eval: `items` are the 100 candidates in a seeded random order, `labels` one-hot.

Prediction (`official-tfx predict movielens`, pipelines.predict_readers.LineReader): what a
recommender is asked is how likely a user is to take up each of some candidate items, to rank them.
The input is one (user, candidate item) pair a line, in the ratings file's own layout (ml-100k
`user \t item`, ml-1m `user::item`, ml-20m `user,item`), optionally followed by the rating and
timestamp, which are not read: a ratings file (say a held-out part of u.data) is scored as it is,
and a list of candidates needs only its two ids. `parse_candidate_*` make each line the per-user
example `serving_default` takes (`user`, `items` = [item]); `candidate_prediction` makes its output
record: `user`, `item`, `score` (the model's probability that the user interacts with the item)
and `known_user` / `known_item` (an id the training split never saw scores -1 and is flagged, not
an error). To rank a user's candidates, sort that user's records by score. A line that is not two
non-negative integer ids (then at most rating and timestamp) is malformed, reported by file:line.
"""

from __future__ import annotations

import random
from typing import Any, Dict, Iterable, List, Optional, Tuple

import apache_beam as beam
import numpy as np
import tensorflow as tf
import tensorflow_transform as tft

from preprocessing import datasets

_GROUPLENS = 'https://files.grouplens.org/datasets/movielens/'


def _grouplens(name: str, member: str, archive_md5: str, **checksum: Any) -> datasets.Dataset:
  """A MovieLens release: its ratings file inside `<name>.zip`, checked by the zip's MD5 as
  GroupLens publishes it beside the zip (`ml-100k.zip.md5`, ...)."""
  return datasets.register(datasets.Dataset(
      name=name, folder=f'movielens/{name}',
      files=(datasets.DataFile(name=member, url=f'{_GROUPLENS}{name}.zip',
                               archive_member=f'{name}/{member}', archive_md5=archive_md5,
                               sha256=checksum.pop('sha256', None), **checksum),),
      splits={'ratings': member},
      citation=f'Harper & Konstan (2015), MovieLens {name[3:].upper()}, GroupLens terms'))


ML_100K = _grouplens('ml-100k', 'u.data', '0e33842e24a9c977be4e0107933c0723', size=1_979_173,
                     sha256='06416e597f82b7342361e41163890c81036900f418ad91315590814211dca490')
ML_1M = _grouplens('ml-1m', 'ratings.dat', 'c4d9eecfca2ab87c1945afe126590906')
ML_20M = _grouplens('ml-20m', 'ratings.csv', 'cd245b17a1ae2cc31bb14903e1204af3')
_NCF = ('https://raw.githubusercontent.com/hexiangnan/neural_collaborative_filtering/'
        '4aab159e81c44b062c091bdaed0ab54ac632371f/Data/')
NCF_ML_1M_TEST = datasets.register(datasets.Dataset(
    name='ncf-ml-1m', folder='movielens/ncf-ml-1m',
    files=(
        datasets.DataFile(
            name='ml-1m.test.rating', url=_NCF + 'ml-1m.test.rating',
            sha256='231ae11eb060b643a8c58c063cd17ffc743b54f569afb073d1abb6cf126b88b5',
            size=128_039),
        datasets.DataFile(
            name='ml-1m.test.negative', url=_NCF + 'ml-1m.test.negative',
            sha256='127853228a76b7d21c0481e8ef8d00dd009cd5c88670dbdd9e9debfdb9f93de4',
            size=2_891_424)),
    splits={'test': 'ml-1m.test.rating', 'negatives': 'ml-1m.test.negative'},
    citation='He et al. (2017), NCF ml-1m test files; MovieLens 1M, GroupLens terms'))

DATASETS = {d.name: d for d in (ML_100K, ML_1M, ML_20M)}
USER, ITEM, RATING, TIMESTAMP = 'user', 'item', 'rating', 'timestamp'
ITEMS, LABELS, RATED = 'items', 'labels', 'rated'
NUM_EVAL_NEGATIVES = 99
SEED = 0
NUM_OOV_BUCKETS = 1
# A rating file's columns as GroupLens' READMEs name them (ml-100k `user id | item id | rating |
# timestamp`, ml-1m `UserID::MovieID::Rating::Timestamp`, ml-20m's header
# `userId,movieId,rating,timestamp`): a header line of a ratings file spells them so.
RATING_COLUMNS = ((USER, 'user_id'), (ITEM, 'item_id', 'movie_id'), (RATING,), (TIMESTAMP,))


def _rating(fields: List[str], line: str) -> Dict[str, Any]:
  if len(fields) != 4:
    raise ValueError(f'expected 4 fields (user, item, rating, timestamp), found {len(fields)}')
  row: Dict[str, Any] = {}
  for name, text, kind in zip((USER, ITEM, RATING, TIMESTAMP), fields, (int, int, float, int)):
    try:
      row[name] = kind(text.strip())
    except ValueError:
      raise ValueError(f'field {name}: expected {"a number" if kind is float else "an integer"}, '
                       f'got {text.strip()!r}') from None
  if not 0 < row[RATING] <= 5:
    raise ValueError(f'field rating: expected a rating in (0, 5], got {row[RATING]}')
  if row[USER] < 0 or row[ITEM] < 0:
    raise ValueError('fields user and item: expected ids >= 0')
  return row


def parse_ml_100k(line: str) -> Optional[Dict[str, Any]]:
  """One line of ml-100k `u.data` (or NCF's `.test.rating`): {user, item, rating, timestamp}.

  Returns None for a blank line. Raises ValueError naming the field for a malformed line.
  """
  return _rating(line.split('\t'), line) if line.strip() else None


def parse_ml_1m(line: str) -> Optional[Dict[str, Any]]:
  """One line of ml-1m `ratings.dat` (`::` separated); see `parse_ml_100k`."""
  return _rating(line.split('::'), line) if line.strip() else None


def parse_ml_20m(line: str) -> Optional[Dict[str, Any]]:
  """One line of ml-20m `ratings.csv`; None for its header line (TextLineExampleGen skips the
  header itself, and only as a file's first line); see `parse_ml_100k`."""
  if not line.strip() or line.startswith('userId,'):
    return None
  return _rating(line.split(','), line)


# TextLineExampleGen skips a ratings file's first line when it is a header of these columns.
parse_ml_100k.columns = parse_ml_1m.columns = parse_ml_20m.columns = RATING_COLUMNS


def _candidate(fields: List[str]) -> Dict[str, Any]:
  if not 2 <= len(fields) <= 4:
    raise ValueError(f'expected user and item ids (then rating and timestamp, not read), found '
                     f'{len(fields)} fields')
  ids = []
  for name, text in zip((USER, ITEM), fields):
    try:
      ids.append(int(text.strip()))
    except ValueError:
      raise ValueError(f'field {name}: expected an integer id, got {text.strip()!r}') from None
    if ids[-1] < 0:
      raise ValueError(f'field {name}: expected an id >= 0, got {ids[-1]}')
  return {USER: ids[0], ITEMS: [ids[1]]}


def parse_candidate_ml_100k(line: str) -> Optional[Dict[str, Any]]:
  """One (user, candidate item) line in u.data's layout, `user \t item [\t rating \t timestamp]`
  (rating and timestamp not read) -> the serving example's features {'user': int, 'items': [int]};
  None for a blank line.

  Raises:
    ValueError: not 2 to 4 fields, or an id that is not a non-negative integer (naming it).
  """
  return _candidate(line.split('\t')) if line.strip() else None


def parse_candidate_ml_1m(line: str) -> Optional[Dict[str, Any]]:
  """`parse_candidate_ml_100k` for ratings.dat's layout, `user::item[::rating::timestamp]`."""
  return _candidate(line.split('::')) if line.strip() else None


def parse_candidate_ml_20m(line: str) -> Optional[Dict[str, Any]]:
  """`parse_candidate_ml_100k` for ratings.csv's layout, `user,item[,rating,timestamp]`."""
  return _candidate(line.split(',')) if line.strip() else None


# A file's first line that spells the ratings columns is a header (skipped, with a notice).
parse_candidate_ml_100k.columns = parse_candidate_ml_1m.columns = RATING_COLUMNS
parse_candidate_ml_20m.columns = RATING_COLUMNS


def candidate_prediction(inputs: Dict[str, Any], outputs: Dict[str, np.ndarray]
                         ) -> Dict[str, Any]:
  """The output fields of one scored (user, item) line (a predict reader's `prediction_fn`).

  Args:
    inputs: the line's `user` (int) and `items` ([item]).
    outputs: `serving_default`'s outputs for its example: `scores` float32 [1], `known_user`
      bool [], `known_items` bool [1] (model_fns.ncf).

  Returns:
    {'user': int, 'item': int, 'score': float (-1 for an unknown id), 'known_user': bool,
    'known_item': bool}.
  """
  return {USER: int(inputs[USER]), ITEM: int(inputs[ITEMS][0]),
          'score': float(np.asarray(outputs['scores']).reshape(-1)[0]),
          'known_user': bool(np.asarray(outputs['known_user']).reshape(-1)[0]),
          'known_item': bool(np.asarray(outputs['known_items']).reshape(-1)[0])}


def parse_ncf_test_negative(line: str) -> Optional[Dict[str, Any]]:
  """One line of NCF's `.test.negative`: {'user', 'item', 'negatives': list of 99 ints}.

  Raises:
    ValueError: not `(user,item)` followed by 99 integer item ids.
  """
  if not line.strip():
    return None
  head, *rest = line.rstrip('\t').split('\t')
  if not (head.startswith('(') and head.endswith(')')) or head.count(',') != 1:
    raise ValueError(f'expected "(user,item)" first, got {head!r}')
  try:
    user, item = (int(x) for x in head[1:-1].split(','))
    negatives = [int(x) for x in rest]
  except ValueError as e:
    raise ValueError(f'expected integer ids ({e})') from None
  if len(negatives) != NUM_EVAL_NEGATIVES:
    raise ValueError(f'expected {NUM_EVAL_NEGATIVES} negatives, found {len(negatives)}')
  return {USER: user, ITEM: item, 'negatives': negatives}


def _leave_one_out(user_ratings: Tuple[int, Iterable[Dict[str, Any]]], all_items: List[int],
                   num_negatives: int, seed: int):
  """(user, ratings) -> tagged train and eval rows of the NCF protocol (see the module doc)."""
  user, ratings = user_ratings
  ordered = sorted(ratings, key=lambda r: (r[TIMESTAMP], r[ITEM]))
  if len(ordered) < 2:
    return
  rated = sorted({r[ITEM] for r in ordered})
  held_out = ordered[-1][ITEM]
  positives = [r[ITEM] for r in ordered[:-1]]
  rng = random.Random(seed * 1_000_003 + user)
  rated_set = set(rated)
  pool_size = len(all_items) - len(rated_set)
  if pool_size < num_negatives:
    raise ValueError(f'user {user} rated {len(rated_set)} of {len(all_items)} items: fewer than '
                     f'{num_negatives} are left to sample negatives from')
  negatives: List[int] = []
  chosen = set()
  while len(negatives) < num_negatives:
    item = all_items[rng.randrange(len(all_items))]
    if item not in rated_set and item not in chosen:
      chosen.add(item)
      negatives.append(item)
  candidates = negatives + [held_out]
  rng.shuffle(candidates)
  yield beam.pvalue.TaggedOutput('train', {USER: user, ITEMS: positives,
                                           LABELS: [1] * len(positives), RATED: rated})
  yield beam.pvalue.TaggedOutput('eval', {
      USER: user, ITEMS: candidates, LABELS: [int(i == held_out) for i in candidates],
      RATED: rated})


def ncf_splits(rows: beam.PCollection, num_eval_negatives: int = NUM_EVAL_NEGATIVES,
               seed: int = SEED) -> Dict[str, beam.PCollection]:
  """The NCF protocol as a TextLineExampleGen `split_fn`: rating rows -> {'train', 'eval'} rows.

  Args:
    rows: {user, item, rating, timestamp} dicts, one per rating line.
    num_eval_negatives: sampled negatives per held-out item (NCF: 99).
    seed: seed of the negative sampling and candidate order.

  Returns:
    {'train': one row per user with its training positives, 'eval': one row per user with its 100
    candidates}; see the module doc for the row layout.
  """
  all_items = (rows
               | 'Items' >> beam.Map(lambda r: r[ITEM])
               | 'DistinctItems' >> beam.Distinct()
               | 'AllItems' >> beam.combiners.ToList()
               | 'Sort' >> beam.Map(sorted))
  split = (rows
           | 'ByUser' >> beam.Map(lambda r: (r[USER], r))
           | 'GroupByUser' >> beam.GroupByKey()
           | 'LeaveOneOut' >> beam.FlatMap(
               _leave_one_out, all_items=beam.pvalue.AsSingleton(all_items),
               num_negatives=num_eval_negatives, seed=seed).with_outputs('train', 'eval'))
  return {'train': split.train, 'eval': split.eval}


def preprocessing_fn(inputs):
  """tf.Transform preprocessing for NCF: raw ids -> contiguous vocabulary indices.

  Args:
    inputs: `user` int64 [batch, 1]; `items`, `labels`, `rated`: int64 SparseTensors [batch, None].

  Returns:
    `user_xf` int64 [batch] and `items_xf`, `rated_xf` int64 SparseTensors of indices in
    [0, vocabulary size] (the last index is the one OOV bucket: ids not in the training split),
    `labels` unchanged. The item vocabulary is built from the training positives and ordered by
    frequency, so index order is popularity order.
  """
  user = tf.strings.as_string(tf.reshape(inputs[USER], [-1]))
  items = tf.sparse.map_values(tf.strings.as_string, inputs[ITEMS])
  rated = tf.sparse.map_values(tf.strings.as_string, inputs[RATED])
  item_vocabulary = tft.vocabulary(items, vocab_filename=ITEM)
  return {
      'user_xf': tft.compute_and_apply_vocabulary(user, num_oov_buckets=NUM_OOV_BUCKETS,
                                                  vocab_filename=USER),
      'items_xf': tft.apply_vocabulary(items, item_vocabulary, num_oov_buckets=NUM_OOV_BUCKETS),
      'rated_xf': tft.apply_vocabulary(rated, item_vocabulary, num_oov_buckets=NUM_OOV_BUCKETS),
      LABELS: inputs[LABELS],
  }
