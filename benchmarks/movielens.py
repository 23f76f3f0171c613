"""NCF benchmark: NeuMF on MovieLens through the whole pipeline, cold, beside the ItemPop baseline.

Prints per-stage seconds, training pairs/s (positives and sampled negatives of every epoch over the
Trainer's seconds, export included), the Evaluator's HR@10 and NDCG@10, and ItemPop (every list
ranked by training popularity) on the same 100-candidate lists.

  .venv/bin/python benchmarks/movielens.py --data_root=../shared/data [--model=movielens]
      [--hparams='{"num_factors": 64, "layers": [256, 256, 128, 64]}'] [--output_dir=DIR] [--json=FILE]
"""

import common  # benchmarks/common.py, beside this script; first: it starts the clock

import glob
import json
import os
import shutil
import tempfile
import time

import numpy as np
import tensorflow as tf
from absl import app, flags, logging

from model_fns import ncf
from pipelines import spec as spec_lib
from preprocessing import datasets

FLAGS = flags.FLAGS
flags.DEFINE_string('data_root', None, 'Data root (default $OFFICIAL_TFX_DATA_ROOT).')
flags.DEFINE_enum('model', 'movielens', ['movielens', 'movielens-1m', 'movielens-20m'],
                  'Which MovieLens spec.')
flags.DEFINE_string('hparams', '{}', 'JSON hyperparameter overrides.')
flags.DEFINE_string('output_dir', None, 'Keep the run here (default: a temporary directory).')
flags.DEFINE_string('json', None, 'Also write the figures to this JSON file.')


def _lists(examples_uri: str, split: str):
  rows = [(np.array(e.features.feature['items'].int64_list.value),
           np.array(e.features.feature['labels'].int64_list.value))
          for e in (tf.train.Example.FromString(r.numpy()) for r in tf.data.TFRecordDataset(
              glob.glob(os.path.join(examples_uri, f'Split-{split}', '*')), 'GZIP'))]
  return [items for items, _ in rows], [labels for _, labels in rows]


def main(_):
  logging.set_verbosity(logging.WARNING)
  spec = spec_lib.get(FLAGS.model)
  files = datasets.resolve_splits(spec.dataset, data_root=FLAGS.data_root)
  hparams = json.loads(FLAGS.hparams)
  directory = FLAGS.output_dir or tempfile.mkdtemp(prefix='movielens-bench-')
  try:
    summary = common.cold_run(spec, files, directory, hparams=hparams)
    (examples_uri,) = glob.glob(os.path.join(directory, 'pipeline_root', 'TextLineExampleGen',
                                             'examples', '*'))
    train_items, _ = _lists(examples_uri, 'train')
    eval_items, eval_labels = _lists(examples_uri, 'eval')
  finally:
    if not FLAGS.output_dir:
      shutil.rmtree(directory, ignore_errors=True)
  item_pop = ncf.item_popularity_baseline(train_items, np.stack(eval_items), np.stack(eval_labels))
  process = time.time() - common.PROCESS_START
  seconds = common.stage_seconds(summary)
  task_hparams = {**ncf.NCFTask.default_hparams, **hparams}
  positives = sum(len(items) for items in train_items)
  pairs = positives * (1 + task_hparams['num_neg']) * task_hparams['train_epochs']
  print(f'{FLAGS.model} NeuMF {task_hparams}: {len(eval_items)} users, {positives} training '
        f'positives')
  common.print_stages(seconds, {}, '')
  metrics = summary['metrics']
  figures = {
      **common.base_figures(summary, seconds, process),
      'training_pairs_per_s': round(pairs / seconds['Trainer']),
      'hit_rate_at_10': metrics['hit_rate_at_10'], 'ndcg_at_10': metrics['ndcg_at_10'],
      'item_pop': item_pop, 'blessed': summary['blessed']}
  common.print_times(summary, process)
  print(f'training {figures["training_pairs_per_s"]} pairs/s ({pairs} pairs in '
        f'{task_hparams["train_epochs"]} epochs)')
  print(f'NeuMF   HR@10 {metrics["hit_rate_at_10"]:.4f}  NDCG@10 {metrics["ndcg_at_10"]:.4f}  '
        f'blessed {summary["blessed"]}')
  print(f'ItemPop HR@10 {item_pop["hit_rate_at_10"]:.4f}  NDCG@10 {item_pop["ndcg_at_10"]:.4f}')
  common.write_json(FLAGS.json, figures)


if __name__ == '__main__':
  app.run(main)
