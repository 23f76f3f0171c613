"""NCF end to end on the real ml-100k, on the embedded default: HR@10 / NDCG@10 from the Evaluator,
blessing and push, serving candidate lists (unknown ids included), and malformed rating rows."""

import glob
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from model_fns.ncf import UNKNOWN_SCORE
from pipelines import runner, spec as spec_lib
from pipelines.factory import RunConfig
from preprocessing import datasets, movielens
from tests import helpers

pytestmark = pytest.mark.e2e


@pytest.fixture(scope='module')
def ratings_file(data_root):
  return datasets.resolve_file(movielens.ML_100K, 'u.data', data_root=data_root)


@pytest.fixture(scope='module')
def ncf_run(tmp_path_factory, ratings_file):
  config = RunConfig(output_dir=str(tmp_path_factory.mktemp('movielens')))
  return config, runner.run(spec_lib.get('movielens'), config, {'ratings': ratings_file},
                            progress=False)


@pytest.mark.slow  # minutes on 2 cores; the fast tier runs this pipeline on synthetic files (`-m slow` runs it)
def test_neumf_reaches_the_bar_in_the_evaluator_and_is_pushed(ncf_run):
  config, summary = ncf_run
  assert summary['error'] is None, summary['error']
  metrics = summary['metrics']
  assert metrics['users'] == 943
  assert metrics['hit_rate_at_10'] >= 0.60 and metrics['ndcg_at_10'] >= 0.33, metrics
  assert summary['blessed'] is True and summary['pushed_model']
  # The Evaluator's figures are the Trainer's own end-of-training ranking of the same lists.
  (trainer_metrics,) = glob.glob(os.path.join(config.pipeline_root, 'Trainer', 'model_run', '*',
                                              'eval_metrics.json'))
  with open(trainer_metrics) as f:
    logged = json.load(f)
  assert logged['hit_rate_at_10'] == pytest.approx(metrics['hit_rate_at_10'], abs=1e-6)
  assert logged['ndcg_at_10'] == pytest.approx(metrics['ndcg_at_10'], abs=1e-6)


@pytest.mark.slow  # minutes on 2 cores; the fast tier runs this pipeline on synthetic files (`-m slow` runs it)
def test_serving_scores_candidates_and_flags_unknown_ids(ncf_run):
  config, summary = ncf_run
  model = tf.saved_model.load(summary['pushed_model'])
  score = model.signatures['score_candidates']
  out = score(user=tf.constant([196, 99_999], tf.int64),
              items=tf.constant([[242, 302, 99_998], [242, 302, 377]], tf.int64))
  scores = out['scores'].numpy()
  assert scores.shape == (2, 3)
  np.testing.assert_array_equal(out['known_user'].numpy(), [True, False])
  np.testing.assert_array_equal(out['known_items'].numpy(), [[True, True, False], [True] * 3])
  assert np.all((scores[0, :2] > 0) & (scores[0, :2] < 1))
  np.testing.assert_array_equal(scores[0, 2], UNKNOWN_SCORE)
  np.testing.assert_array_equal(scores[1], [UNKNOWN_SCORE] * 3)

  # serving_default over the eval split's raw examples scores the same lists the same way.
  eval_uri = os.path.join(config.pipeline_root, 'TextLineExampleGen', 'examples')
  examples = helpers.read_examples(glob.glob(os.path.join(eval_uri, '*'))[0], 'eval')[:5]
  users = [e.features.feature['user'].int64_list.value[0] for e in examples]
  items = [list(e.features.feature['items'].int64_list.value) for e in examples]
  for example in examples:  # serving receives no labels and no rated items
    del example.features.feature['labels']
    del example.features.feature['rated']
  served = model.signatures['serving_default'](
      examples=tf.constant([e.SerializeToString() for e in examples]))
  direct = score(user=tf.constant(users, tf.int64), items=tf.constant(items, tf.int64))
  np.testing.assert_allclose(served['scores'].numpy(), direct['scores'].numpy(), rtol=1e-6)


def test_malformed_rating_rows_stop_the_run_with_their_lines(tmp_path, ratings_file):
  with open(ratings_file) as f:
    lines = f.read().splitlines()[:2000]
  for number in (10, 20, 30, 40, 50):
    lines[number - 1] = lines[number - 1].replace('\t', ' ', 1)  # 3 tab-separated fields
  bad = tmp_path / 'u.data'
  bad.write_text('\n'.join(lines) + '\n')
  config = RunConfig(output_dir=str(tmp_path / 'out'))
  with pytest.raises(Exception) as e:
    runner.run(spec_lib.get('movielens'), config, {'ratings': str(bad)}, progress=False)
  message = str(e.value)
  assert '5 of 2000 rows are malformed' in message
  assert f'{bad}:10: expected 4 fields (user, item, rating, timestamp), found 3' in message
  assert not os.path.exists(config.serving_model_dir)
