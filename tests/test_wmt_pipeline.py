"""WMT end to end on real text through the command line: newstest2013 pairs to train, newstest2014
to evaluate; the unblessed model is not pushed, both serving signatures translate raw English, and
the BLEU the Evaluator reported is sacrebleu's on the model's own translations."""

import glob
import json
import os

import pytest
import tensorflow as tf
import tensorflow_text  # noqa: F401  pylint: disable=unused-import  # the model's SentencePiece ops

from components.text_example_gen import to_example
from model_fns import translation_metrics
from tests import helpers

pytestmark = pytest.mark.e2e
EVAL_PAIRS = 40


@pytest.mark.slow  # minutes on 2 cores; the fast tier runs this pipeline on synthetic files (`-m slow` runs it)
def test_wmt_trains_evaluates_bleu_and_serves_raw_text(tmp_path, data_root):
  out = tmp_path / 'out'
  newstest = os.path.join(data_root, 'wmt', 'newstest')
  result = helpers.run_cli(
      'run', 'wmt', f'--data_root={data_root}', f'--output_dir={out}',
      f'--train_data={newstest}/newstest2013.en', '--train_count=2000',
      f'--eval_count={EVAL_PAIRS}', '--train_steps=30', '--batch_size=1024', timeout=900)
  assert result.returncode == 0, result.stderr[-3000:]
  with open(out / 'run_summary.json') as f:
    summary = json.load(f)
  assert {s: d['examples'] for s, d in summary['data'].items()} == {'train': 2000,
                                                                     'eval': EVAL_PAIRS}
  assert [s['name'] for s in summary['stages']][-4:] == ['Trainer', 'Evaluator', 'ServingCheck',
                                                        'Pusher']
  metrics = summary['metrics']
  assert metrics['example_count'] == EVAL_PAIRS
  # 30 steps stay under 1 BLEU, far under the 5-BLEU bar: not blessed, nothing pushed.
  assert metrics['bleu_uncased'] < 1 and summary['blessed'] is False
  assert summary['pushed_model'] is None and not os.path.exists(out / 'serving_model')

  (model_dir,) = glob.glob(str(out / 'pipeline_root' / 'Trainer' / 'model' / '*' /
                               'Format-Serving'))
  model = tf.saved_model.load(model_dir)
  with open(os.path.join(newstest, 'newstest2014.en'), encoding='utf-8') as f:
    english = f.read().split('\n')[:EVAL_PAIRS]
  with open(os.path.join(newstest, 'newstest2014.de'), encoding='utf-8') as f:
    german = f.read().split('\n')[:EVAL_PAIRS]
  translated = model.signatures['translate'](inputs=tf.constant(english))
  outputs = [t.decode('utf-8') for t in translated['outputs'].numpy()]
  assert len(outputs) == EVAL_PAIRS and all(isinstance(t, str) for t in outputs)
  assert translated['scores'].shape == (EVAL_PAIRS,)
  # serving_default (serialized raw tf.Examples, no target) translates the same way.
  examples = [to_example({'inputs': e}).SerializeToString() for e in english]
  served = model.signatures['serving_default'](examples=tf.constant(examples))
  assert [t.decode('utf-8') for t in served['outputs'].numpy()] == outputs
  # The Evaluator's BLEU is sacrebleu's, cased and uncased, on these translations.
  assert translation_metrics.corpus_bleu(outputs, german) == pytest.approx(metrics['bleu'],
                                                                           abs=1e-6)
  assert translation_metrics.corpus_bleu(outputs, german, lowercase=True) == pytest.approx(
      metrics['bleu_uncased'], abs=1e-6)
