"""NCF benchmark: NeuMF on MovieLens through the whole pipeline, cold, beside the ItemPop baseline.

Prints per-stage seconds, training pairs/s (positives and sampled negatives of every epoch over the
Trainer's seconds, export included), the Evaluator's HR@10 and NDCG@10, and ItemPop (every list
ranked by training popularity) on the same 100-candidate lists.

`--ratings=N` runs on ml-100k expanded to about N ratings (`expanded_ratings`): whole copies of its
users with new user and item ids, so users and items grow in proportion and the per-user rating
counts keep their distribution (a size-scaled workload, not new preferences). Several values
(`--ratings=100000,1000000`) run one after the other, each in a fresh process, and end with a
table of the growth side by side. Every run reports its peak resident memory, overall and per
stage.

  .venv/bin/python benchmarks/movielens.py --data_root=../shared/data [--model=movielens]
      [--ratings=N[,N...]] [--hparams='{"num_factors": 64, "layers": [256, 256, 128, 64]}']
      [--output_dir=DIR] [--json=FILE]
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
flags.DEFINE_list('ratings', [], 'Expand ml-100k to about this many ratings; several values run one '
                  'after the other in fresh processes and compare the growth.')


def expanded_ratings(path: str, ratings: int, folder: str) -> str:
  """u.data (user, item, rating, timestamp, tab-separated) expanded to the first whole users
  holding at least `ratings` ratings: copy c of the file has its user ids shifted by c x the
  largest user id and its item ids by c x the largest item id. Returns the new u.data's path.

  Raises:
    ValueError: `path` has no ratings.
  """
  with open(path, encoding='utf-8') as f:
    rows = [line.rstrip('\n').split('\t') for line in f if line.strip()]
  if not rows:
    raise ValueError(f'{path}: no ratings')
  users = max(int(r[0]) for r in rows)
  items = max(int(r[1]) for r in rows)
  by_user = {}
  for row in rows:
    by_user.setdefault(int(row[0]), []).append(row)
  out_path = os.path.join(folder, 'u.data')
  written, copy = 0, 0
  with open(out_path, 'w', encoding='utf-8') as out:
    while written < ratings:
      for user in sorted(by_user):
        if written >= ratings:
          break
        for _, item, rating, timestamp in by_user[user]:
          out.write(f'{user + copy * users}\t{int(item) + copy * items}\t{rating}\t{timestamp}\n')
        written += len(by_user[user])
      copy += 1
  return out_path


def _lists(examples_uri: str, split: str):
  rows = [(np.array(e.features.feature['items'].int64_list.value),
           np.array(e.features.feature['labels'].int64_list.value))
          for e in (tf.train.Example.FromString(r.numpy()) for r in tf.data.TFRecordDataset(
              glob.glob(os.path.join(examples_uri, f'Split-{split}', '*')), 'GZIP'))]
  return [items for items, _ in rows], [labels for _, labels in rows]


def main(_):
  logging.set_verbosity(logging.WARNING)
  sizes = [int(n) for n in FLAGS.ratings]
  if any(n < 1 for n in sizes):
    raise app.UsageError('--ratings: each value must be a positive integer')
  if len(sizes) > 1:
    figures = common.run_sizes_in_children([str(n) for n in sizes], 'ratings')
    print(f'\n{FLAGS.model}, one size a row (seconds, pairs/s, MB):')
    common.print_growth([(f'{f["ratings"]:,}', f) for f in figures], [
        ('pipeline s', lambda f: f['pipeline_seconds']),
        ('ExampleGen s', lambda f: f['stages']['ExampleGen']),
        ('Transform s', lambda f: f['stages']['Transform']),
        ('train pairs/s', lambda f: f['training_pairs_per_s']),
        ('Evaluator s', lambda f: f['stages']['Evaluator']),
        ('peak RSS MB', lambda f: f['peak_rss_mb']),
        ('HR@10', lambda f: f['hit_rate_at_10'])])
    common.write_json(FLAGS.json, {'sizes': figures})
    return
  spec = spec_lib.get(FLAGS.model)
  files = datasets.resolve_splits(spec.dataset, data_root=FLAGS.data_root)
  hparams = json.loads(FLAGS.hparams)
  directory = FLAGS.output_dir or tempfile.mkdtemp(prefix='movielens-bench-')
  work = tempfile.mkdtemp(prefix='movielens-ratings-')
  try:
    if sizes:
      (split,) = files  # MovieLens: one ratings file feeds both splits
      files = {split: expanded_ratings(files[split], sizes[0], work)}
    with open(next(iter(files.values())), encoding='utf-8') as f:
      ratings = sum(1 for line in f if line.strip())
    summary = common.cold_run(spec, files, directory, hparams=hparams)
    (examples_uri,) = glob.glob(os.path.join(directory, 'pipeline_root', 'TextLineExampleGen',
                                             'examples', '*'))
    train_items, _ = _lists(examples_uri, 'train')
    eval_items, eval_labels = _lists(examples_uri, 'eval')
  finally:
    shutil.rmtree(work, ignore_errors=True)
    if not FLAGS.output_dir:
      shutil.rmtree(directory, ignore_errors=True)
  item_pop = ncf.item_popularity_baseline(train_items, np.stack(eval_items), np.stack(eval_labels))
  process = time.time() - common.PROCESS_START
  seconds = common.stage_seconds(summary)
  task_hparams = {**ncf.NCFTask.default_hparams, **hparams}
  positives = sum(len(items) for items in train_items)
  pairs = positives * (1 + task_hparams['num_neg']) * task_hparams['train_epochs']
  print(f'{FLAGS.model} NeuMF {task_hparams}: {ratings:,} ratings, {len(eval_items):,} users, '
        f'{positives:,} training positives')
  common.print_stages(seconds, {}, '')
  metrics = summary['metrics']
  figures = {
      **common.base_figures(summary, seconds, process),
      'training_pairs_per_s': round(pairs / seconds['Trainer']),
      'hit_rate_at_10': metrics['hit_rate_at_10'], 'ndcg_at_10': metrics['ndcg_at_10'],
      'item_pop': item_pop, 'ratings': ratings, 'users': len(eval_items),
      'peak_rss_mb': summary['peak_rss_mb'], 'stage_peak_rss_mb': summary['stage_peak_rss_mb'],
      'blessed': summary['blessed']}
  common.print_times(summary, process)
  print(f'training {figures["training_pairs_per_s"]} pairs/s ({pairs} pairs in '
        f'{task_hparams["train_epochs"]} epochs); peak RSS {figures["peak_rss_mb"]} MB '
        f'(per stage: {figures["stage_peak_rss_mb"]})')
  print(f'NeuMF   HR@10 {metrics["hit_rate_at_10"]:.4f}  NDCG@10 {metrics["ndcg_at_10"]:.4f}  '
        f'blessed {summary["blessed"]}')
  print(f'ItemPop HR@10 {item_pop["hit_rate_at_10"]:.4f}  NDCG@10 {item_pop["ndcg_at_10"]:.4f}')
  common.write_json(FLAGS.json, figures)


if __name__ == '__main__':
  app.run(main)
