"""MRPC end to end on the real GLUE files through the command line: BERT-Tiny from scratch, the
WordPiece vocabulary from the data root inside the exported model, blessing and push, and the
pushed model scoring two raw sentences exactly as TFMA did."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_text  # noqa: F401  pylint: disable=unused-import  # the model's WordPiece ops

from components.text_example_gen import to_example
from preprocessing import mrpc
from tests import helpers

pytestmark = pytest.mark.e2e


@pytest.mark.slow  # minutes on 2 cores; the fast tier runs this pipeline on synthetic files (`-m slow` runs it)
def test_mrpc_from_scratch_is_blessed_pushed_and_serves_raw_sentence_pairs(tmp_path, data_root):
  out = tmp_path / 'out'
  result = helpers.run_cli('run', 'mrpc', f'--data_root={data_root}', f'--output_dir={out}',
                           '--train_steps=60', timeout=900)
  assert result.returncode == 0, result.stderr[-3000:]
  with open(out / 'run_summary.json') as f:
    summary = json.load(f)
  assert summary['model_type'] == 'bert_tiny'
  assert {s: d['examples'] for s, d in summary['data'].items()} == {'train': 3668, 'eval': 408}
  metrics = summary['metrics']
  assert metrics['example_count'] == 408
  assert metrics['accuracy'] >= 0.6 and metrics['f1'] >= 0.7  # the from-scratch bars
  assert summary['blessed'] is True
  # The pushed model takes the two raw sentences of each dev pair (no label, no tokens).
  with open(os.path.join(data_root, 'glue', 'MRPC', mrpc.DEV), encoding='utf-8') as f:
    rows = [r for r in map(mrpc.parse_line, f.read().split('\n')) if r]
  labels = np.array([r.pop(mrpc.LABEL_KEY) for r in rows])
  serve = tf.saved_model.load(summary['pushed_model']).signatures['serving_default']
  outputs = serve(examples=tf.constant([to_example(r).SerializeToString() for r in rows]))
  probabilities = outputs['probabilities'].numpy()
  assert probabilities.shape == (408, 1)
  assert np.all((probabilities >= 0) & (probabilities <= 1))
  accuracy = float(np.mean(outputs['class_ids'].numpy()[:, 0] == labels))
  assert accuracy == pytest.approx(metrics['accuracy'], abs=1e-6)
