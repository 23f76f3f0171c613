"""NCF on MovieLens (NeuMF, the seed's official/recommendation) as specs of the shared pipeline.

`movielens` reads ml-100k; `movielens-1m` and `movielens-20m` the larger sets. ExampleGen parses the
ratings file and applies the NCF protocol (preprocessing.movielens.ncf_splits: leave-one-out by
latest timestamp, 99 seeded negatives per held-out item); Transform maps ids to vocabulary indices;
the Evaluator ranks each user's 100 candidates with the pushed model's scores and computes HR@10 and
NDCG@10 (model_fns.ranking_metrics as TFMA metrics); the blessing is on HR@10.
"""

from __future__ import annotations

import json

import tensorflow_model_analysis as tfma

from pipelines import predict_readers, spec
from preprocessing import movielens


def _ranking_metric(class_name: str, name: str) -> tfma.MetricConfig:
  return tfma.MetricConfig(class_name=class_name, module='model_fns.ranking_metrics',
                           config=json.dumps({'k': 10, 'name': name}))


def _register(name: str, dataset, line_parser: str, candidate_parser: str, hit_rate_bar: float,
              note: str):
  return spec.register(spec.ModelSpec(
      name=name,
      dataset=dataset,
      example_gen=spec.text_line_example_gen(
          line_parser, split_fn='preprocessing.movielens.ncf_splits',
          split_fn_args={'num_eval_negatives': movielens.NUM_EVAL_NEGATIVES,
                         'seed': movielens.SEED},
          output_splits=('train', 'eval')),
      schema_file=spec.curated_schema('movielens'),
      preprocessing_fn='preprocessing.movielens.preprocessing_fn',
      task='model_fns.ncf.NCFTask',
      train_steps=None,  # by epochs (hparam train_epochs), with fresh negatives each epoch
      batch_size=256,  # seed
      evaluation=spec.EvalSpec(
          label_key=movielens.LABELS,
          prediction_key='scores',
          metrics=('ExampleCount', _ranking_metric('HitRateAtK', 'hit_rate_at_10'),
                   _ranking_metric('NdcgAtK', 'ndcg_at_10')),
          thresholds=(spec.Threshold('hit_rate_at_10', lower_bound=hit_rate_bar),),
          summary_metrics={'hit_rate_at_10': 'hit_rate_at_10', 'ndcg_at_10': 'ndcg_at_10',
                           'users': 'example_count'}),
      description=f'NeuMF recommender, HR@10 / NDCG@10 on {note}',
      hparam_flags=HPARAM_FLAGS,
      # `official-tfx predict`: one (user, candidate item) line in the ratings file's layout,
      # scored alone (see preprocessing.movielens' docstring).
      predict_reader=predict_readers.LineReader(
          parser=candidate_parser, input_keys=(movielens.USER, movielens.ITEMS),
          prediction_fn='preprocessing.movielens.candidate_prediction')))


# The seed's flags (official/recommendation/ncf_main.py).
HPARAM_FLAGS = (
    spec.HparamFlag('learning_rate', 'float', 'Adam\'s learning rate (seed 0.001)'),
    spec.HparamFlag('num_factors', 'integer', 'GMF embedding size (seed 8; benchmark 64)'),
    spec.HparamFlag('layers', 'integers', 'MLP layer sizes, the first split between the user '
                    'and item embeddings (seed 64,32,16,8; benchmark 256,256,128,64)'),
    spec.HparamFlag('num_neg', 'integer', 'sampled negatives per positive (seed 4)'),
    spec.HparamFlag('train_epochs', 'integer', 'training epochs (default 20)'))


# Bars: ml-100k, the acceptance (ItemPop reaches about 0.32 / 0.16 on this protocol);
# ml-1m and ml-20m, He et al. (2017) report NeuMF HR@10 0.73 on ml-1m and the seed 0.635 on ml-20m.
ML_100K = _register('movielens', movielens.ML_100K, 'preprocessing.movielens.parse_ml_100k',
                    'preprocessing.movielens.parse_candidate_ml_100k', 0.60, 'MovieLens 100K')
ML_1M = _register('movielens-1m', movielens.ML_1M, 'preprocessing.movielens.parse_ml_1m',
                  'preprocessing.movielens.parse_candidate_ml_1m', 0.65, 'MovieLens 1M')
ML_20M = _register('movielens-20m', movielens.ML_20M, 'preprocessing.movielens.parse_ml_20m',
                   'preprocessing.movielens.parse_candidate_ml_20m', 0.60, 'MovieLens 20M')
