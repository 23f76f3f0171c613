"""MRPC benchmark: BERT on GLUE MRPC through the whole pipeline, cold, beside the majority class.

Prints per-stage seconds, Transform pairs/s (WordPiece on both sentences, train and dev), training
examples/s (steps x batch over the Trainer's seconds, model building, tracing, the end-of-training
evaluation and the export included), Evaluator pairs/s, and dev accuracy and F1 beside the majority
class's (always "paraphrase") on the same dev file.

  .venv/bin/python benchmarks/mrpc.py --data_root=../shared/data [--model_type=bert_tiny]
      [--train_steps=344] [--learning_rate=1e-4] [--init_checkpoint=.../bert_model.ckpt]
      [--json=FILE]
"""

import common  # benchmarks/common.py, beside this script; first: it starts the clock

import time

from absl import app, flags, logging

from pipelines import spec as spec_lib
from pipelines.factory import RunInputs
from preprocessing import datasets, mrpc

FLAGS = flags.FLAGS
flags.DEFINE_string('data_root', None, 'Data root (default $OFFICIAL_TFX_DATA_ROOT).')
flags.DEFINE_string('model_type', None, 'bert_tiny (default), bert_base or bert_large.')
flags.DEFINE_integer('train_steps', None, 'Training steps (default: the spec\'s 344, 3 epochs).')
flags.DEFINE_float('learning_rate', None, 'Peak learning rate (default: the task\'s).')
flags.DEFINE_string('init_checkpoint', None, 'A Google BERT checkpoint prefix to fine-tune.')
flags.DEFINE_string('json', None, 'Also write the figures to this JSON file.')


def majority_class(dev_file: str):
  """(accuracy, F1) of always predicting "paraphrase" on `dev_file`."""
  with open(dev_file, encoding='utf-8') as f:
    labels = [row[mrpc.LABEL_KEY] for row in map(mrpc.parse_line, f.read().split('\n')) if row]
  accuracy = sum(labels) / len(labels)
  return accuracy, 2 * accuracy / (1 + accuracy)


def main(_):
  logging.set_verbosity(logging.WARNING)
  spec = spec_lib.get('mrpc')
  files = datasets.resolve(spec.dataset, data_root=FLAGS.data_root).files
  vocab = datasets.resolve_file(mrpc.VOCABULARY, mrpc.VOCAB, data_root=FLAGS.data_root)
  hparams = {k: v for k, v in (('learning_rate', FLAGS.learning_rate),
                               ('init_checkpoint', FLAGS.init_checkpoint)) if v}
  steps = FLAGS.train_steps or spec.train_steps
  summary = common.cold_run(
      spec, RunInputs(split_files=files, transform_files={mrpc.VOCAB_FILE_KEY: vocab}), None,
      model_type=FLAGS.model_type, train_steps=steps, hparams=hparams)
  process = time.time() - common.PROCESS_START
  seconds = common.stage_seconds(summary)
  pairs = {split: d['examples'] for split, d in summary['data'].items()}
  trained = steps * spec.batch_size
  start = f'from {FLAGS.init_checkpoint}' if FLAGS.init_checkpoint else 'from scratch'
  print(f'mrpc {summary["model_type"]} ({start}): {pairs["train"]} training pairs, '
        f'{pairs["eval"]} dev pairs; {steps} steps of {spec.batch_size} '
        f'({trained / pairs["train"]:.2f} epochs)')
  common.print_stages(seconds, {}, '')
  common.print_times(summary, process)
  metrics = summary['metrics']
  majority = majority_class(files['eval'])
  figures = {
      **common.base_figures(summary, seconds, process), 'model_type': summary['model_type'],
      'pairs': pairs, 'train_steps': steps,
      'transform_pairs_per_s': round((pairs['train'] + pairs['eval']) / seconds['Transform']),
      'training_examples_per_s': round(trained / seconds['Trainer']),
      'evaluator_pairs_per_s': round(pairs['eval'] / seconds['Evaluator']),
      'accuracy': metrics['accuracy'], 'f1': metrics['f1'], 'auc': metrics['auc'],
      'majority_accuracy': majority[0], 'majority_f1': majority[1],
      'blessed': summary['blessed']}
  print(f'Transform {figures["transform_pairs_per_s"]} pairs/s, training '
        f'{figures["training_examples_per_s"]} examples/s, Evaluator '
        f'{figures["evaluator_pairs_per_s"]} pairs/s')
  print(f'dev accuracy {metrics["accuracy"]:.4f}, F1 {metrics["f1"]:.4f}, AUC '
        f'{metrics["auc"]:.4f}, blessed {summary["blessed"]}')
  print(f'  majority class: accuracy {majority[0]:.4f}, F1 {majority[1]:.4f}')
  print('  reference: the seed\'s pretrained BERT, accuracy 0.84-0.88 (design.md)')
  common.write_json(FLAGS.json, figures)


if __name__ == '__main__':
  app.run(main)
