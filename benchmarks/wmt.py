"""WMT benchmark: the Transformer English -> German through the whole pipeline, cold, on a CPU budget.

Prints per-stage seconds; ExampleGen pairs/s (the wmt32k subword records decoded to text);
Transform pairs/s (SentencePiece training and tokenization of both sides); training target
tokens/s (non-padding target subwords per second of `fit`, from the Trainer's
`eval_metrics.json`); decode sentences/s (the pushed model's `translate` signature, beam 4, on
newstest2014 sentences in batches of 64, after one warm-up batch); and newstest2014 BLEU
(sacrebleu, cased and uncased, all 3,003 sentences, as the Evaluator computed it).

  .venv/bin/python benchmarks/wmt.py --data_root=../shared/data [--model_type=small]
      [--train_steps=N] [--batch_size=TOKENS] [--output_dir=DIR] [--json=FILE]
"""

import common  # benchmarks/common.py, beside this script; first: it starts the clock

import glob
import json
import os
import tempfile
import time

import tensorflow as tf
import tensorflow_text  # pylint: disable=unused-import  (the SentencePiece ops of the model)
from absl import app, flags, logging

from pipelines import spec as spec_lib
from preprocessing import datasets

FLAGS = flags.FLAGS
flags.DEFINE_string('data_root', None, 'Data root (default $OFFICIAL_TFX_DATA_ROOT).')
flags.DEFINE_string('model_type', None, 'small (default), base or big.')
flags.DEFINE_integer('train_steps', None, 'Training steps (default: the spec\'s).')
flags.DEFINE_integer('batch_size', None, 'Tokens per batch (default: the spec\'s).')
flags.DEFINE_string('hparams', '{}', 'JSON hyperparameter overrides.')
flags.DEFINE_string('output_dir', None, 'Keep the run here (default: a new temporary folder, '
                    'kept: the pushed model is read after the run).')
flags.DEFINE_integer('decode_sentences', 512, 'newstest2014 sentences timed through `translate`.')
flags.DEFINE_string('json', None, 'Also write the figures to this JSON file.')


def decode_rate(model_dir: str, sentences, batch: int = 64):
  """(sentences/s of the SavedModel's `translate` signature, first translations)."""
  translate = tf.saved_model.load(model_dir).signatures['translate']
  first = translate(inputs=tf.constant(sentences[:batch]))['outputs'].numpy()
  start = time.time()
  for i in range(0, len(sentences), batch):
    translate(inputs=tf.constant(sentences[i:i + batch]))
  return len(sentences) / (time.time() - start), [t.decode('utf-8') for t in first[:3]]


def main(_):
  logging.set_verbosity(logging.WARNING)
  spec = spec_lib.get('wmt')
  files = datasets.resolve(spec.dataset, data_root=FLAGS.data_root).files
  output_dir = FLAGS.output_dir or tempfile.mkdtemp(prefix='wmt-bench-')
  steps = FLAGS.train_steps or spec.train_steps
  batch = FLAGS.batch_size or spec.batch_size
  summary = common.cold_run(spec, files, output_dir, model_type=FLAGS.model_type,
                            train_steps=steps, batch_size=batch,
                            hparams=json.loads(FLAGS.hparams))
  process = time.time() - common.PROCESS_START
  seconds = common.stage_seconds(summary)
  pairs = {split: d['examples'] for split, d in summary['data'].items()}
  (trainer_metrics,) = glob.glob(os.path.join(output_dir, 'pipeline_root', 'Trainer',
                                              'model_run', '*', 'eval_metrics.json'))
  with open(trainer_metrics) as f:
    trainer_metrics = json.load(f)
  with open(files['eval'], encoding='utf-8') as f:
    sentences = f.read().split('\n')[:FLAGS.decode_sentences]
  model_dir = summary['pushed_model'] or glob.glob(os.path.join(
      output_dir, 'pipeline_root', 'Trainer', 'model', '*', 'Format-Serving'))[0]
  rate, examples = decode_rate(model_dir, sentences)
  metrics = summary['metrics']
  print(f'wmt {summary["model_type"]}: {pairs["train"]} training pairs, {pairs["eval"]} '
        f'newstest2014 pairs; {steps} steps of {batch} tokens')
  common.print_stages(seconds, {}, '')
  common.print_times(summary, process)
  figures = {
      **common.base_figures(summary, seconds, process), 'model_type': summary['model_type'],
      'pairs': pairs, 'train_steps': steps, 'batch_tokens': batch,
      'example_gen_pairs_per_s': round(sum(pairs.values()) / seconds['ExampleGen']),
      'transform_pairs_per_s': round(sum(pairs.values()) / seconds['Transform']),
      'training_target_tokens_per_s': round(trainer_metrics['train_target_tokens_per_second']),
      'eval_loss': trainer_metrics['loss'], 'eval_token_accuracy': trainer_metrics['token_accuracy'],
      'decode_sentences_per_s': round(rate, 2),
      'bleu': metrics['bleu'], 'bleu_uncased': metrics['bleu_uncased'],
      'blessed': summary['blessed'], 'output_dir': output_dir, 'translations': examples}
  print(f'ExampleGen {figures["example_gen_pairs_per_s"]} pairs/s, Transform '
        f'{figures["transform_pairs_per_s"]} pairs/s, training '
        f'{figures["training_target_tokens_per_s"]} target tokens/s, decoding (beam 4) '
        f'{figures["decode_sentences_per_s"]} sentences/s')
  print(f'newstest2014: BLEU {metrics["bleu"]:.2f} cased, {metrics["bleu_uncased"]:.2f} '
        f'uncased; teacher-forced loss {trainer_metrics["loss"]:.3f}, token accuracy '
        f'{trainer_metrics["token_accuracy"]:.3f}; blessed {summary["blessed"]}')
  for source, translation in zip(sentences, examples):
    print(f'  {source}\n  -> {translation}')
  print('  reference: the seed\'s base model, 27.3-27.7 uncased BLEU (design.md)')
  common.write_json(FLAGS.json, figures)


if __name__ == '__main__':
  app.run(main)
