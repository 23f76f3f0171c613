"""BERT and MRPC, fast: the encoder against a NumPy re-computation of google-research/bert's
modeling.py, the loading of a checkpoint that the test writes in Google's released format (TF1
names), MRPC parsing and its errors, WordPiece on known answers, the fine-tuning task."""

import dataclasses
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from components.record_checks import MalformedRowsError
from model_fns import bert, text_classification
from pipelines import spec as spec_lib
from preprocessing import mrpc
from tests import helpers

CONFIG = bert.BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=2,
                         num_attention_heads=2, intermediate_size=32, max_position_embeddings=16)


def google_variables(config, seed=0):
  """{name: array} of a BERT checkpoint as google-research/bert names and shapes its variables,
  with the pre-training heads and global_step that released checkpoints also hold."""
  rng = np.random.default_rng(seed)
  h, i = config.hidden_size, config.intermediate_size
  r = lambda *shape: rng.normal(0, 0.5, shape).astype(np.float32)  # noqa: E731
  values = {'bert/embeddings/word_embeddings': r(config.vocab_size, h),
            'bert/embeddings/token_type_embeddings': r(config.type_vocab_size, h),
            'bert/embeddings/position_embeddings': r(config.max_position_embeddings, h),
            'bert/embeddings/LayerNorm/gamma': 1 + r(h), 'bert/embeddings/LayerNorm/beta': r(h),
            'bert/pooler/dense/kernel': r(h, h), 'bert/pooler/dense/bias': r(h),
            'cls/predictions/output_bias': r(config.vocab_size),
            'cls/seq_relationship/output_weights': r(2, h)}
  for n in range(config.num_hidden_layers):
    g = f'bert/encoder/layer_{n}'
    for part in ('query', 'key', 'value'):
      values[f'{g}/attention/self/{part}/kernel'] = r(h, h)
      values[f'{g}/attention/self/{part}/bias'] = r(h)
    values.update({
        f'{g}/attention/output/dense/kernel': r(h, h), f'{g}/attention/output/dense/bias': r(h),
        f'{g}/attention/output/LayerNorm/gamma': 1 + r(h),
        f'{g}/attention/output/LayerNorm/beta': r(h),
        f'{g}/intermediate/dense/kernel': r(h, i), f'{g}/intermediate/dense/bias': r(i),
        f'{g}/output/dense/kernel': r(i, h), f'{g}/output/dense/bias': r(h),
        f'{g}/output/LayerNorm/gamma': 1 + r(h), f'{g}/output/LayerNorm/beta': r(h)})
  return values


def write_google_checkpoint(folder, values, config=CONFIG):
  """Writes `values` with a TF1 Saver (name-based, like bert_model.ckpt) and bert_config.json."""
  graph = tf.Graph()
  with graph.as_default():
    variables = [tf.compat.v1.get_variable(name, initializer=value)
                 for name, value in values.items()]
    variables.append(tf.compat.v1.train.get_or_create_global_step())
    saver = tf.compat.v1.train.Saver(variables)
    with tf.compat.v1.Session() as session:
      session.run(tf.compat.v1.global_variables_initializer())
      prefix = saver.save(session, str(folder / 'bert_model.ckpt'), write_meta_graph=False)
  (folder / 'bert_config.json').write_text(json.dumps({
      'attention_probs_dropout_prob': 0.1, 'hidden_act': 'gelu', 'hidden_dropout_prob': 0.1,
      'hidden_size': config.hidden_size, 'initializer_range': 0.02,
      'intermediate_size': config.intermediate_size,
      'max_position_embeddings': config.max_position_embeddings,
      'num_attention_heads': config.num_attention_heads,
      'num_hidden_layers': config.num_hidden_layers, 'type_vocab_size': config.type_vocab_size,
      'vocab_size': config.vocab_size}))
  return prefix


def layer_norm(x, gamma, beta):
  mean = x.mean(-1, keepdims=True)
  variance = ((x - mean) ** 2).mean(-1, keepdims=True)
  return (x - mean) / np.sqrt(variance + 1e-12) * gamma + beta


def reference_bert(v, config, ids, mask, types):
  """modeling.py's forward pass in NumPy (no dropout): (sequence output, pooled output)."""
  length = ids.shape[1]
  heads, size = config.num_attention_heads, config.hidden_size // config.num_attention_heads
  x = (v['bert/embeddings/word_embeddings'][ids] + v['bert/embeddings/token_type_embeddings'][types]
       + v['bert/embeddings/position_embeddings'][:length])
  x = layer_norm(x, v['bert/embeddings/LayerNorm/gamma'], v['bert/embeddings/LayerNorm/beta'])
  adder = (1.0 - mask[:, None, None, :]) * -10000.0  # modeling.py's attention mask
  for n in range(config.num_hidden_layers):
    g = f'bert/encoder/layer_{n}'
    def project(part):
      y = x @ v[f'{g}/attention/self/{part}/kernel'] + v[f'{g}/attention/self/{part}/bias']
      return y.reshape(len(x), length, heads, size).transpose(0, 2, 1, 3)
    q, k, val = project('query'), project('key'), project('value')
    scores = q @ k.transpose(0, 1, 3, 2) / np.sqrt(size) + adder
    probs = np.exp(scores - scores.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    context = (probs @ val).transpose(0, 2, 1, 3).reshape(len(x), length, -1)
    attended = context @ v[f'{g}/attention/output/dense/kernel'] + v[
        f'{g}/attention/output/dense/bias']
    x = layer_norm(x + attended, v[f'{g}/attention/output/LayerNorm/gamma'],
                   v[f'{g}/attention/output/LayerNorm/beta'])
    inner = x @ v[f'{g}/intermediate/dense/kernel'] + v[f'{g}/intermediate/dense/bias']
    inner = 0.5 * inner * (1 + np.tanh(np.sqrt(2 / np.pi) * (inner + 0.044715 * inner ** 3)))
    out = inner @ v[f'{g}/output/dense/kernel'] + v[f'{g}/output/dense/bias']
    x = layer_norm(x + out, v[f'{g}/output/LayerNorm/gamma'], v[f'{g}/output/LayerNorm/beta'])
  pooled = np.tanh(x[:, 0] @ v['bert/pooler/dense/kernel'] + v['bert/pooler/dense/bias'])
  return x, pooled


def test_google_checkpoint_loads_and_the_encoder_computes_what_modeling_py_does(tmp_path):
  values = google_variables(CONFIG)
  prefix = write_google_checkpoint(tmp_path, values)
  config = bert.checkpoint_config(str(tmp_path))
  assert config == CONFIG
  encoder = bert.build_encoder(config)
  loaded = bert.load_google_checkpoint(encoder, prefix)
  assert set(loaded) == {n for n in values if n.startswith('bert/')}  # heads and step skipped
  rng = np.random.default_rng(1)
  ids = rng.integers(0, CONFIG.vocab_size, (3, 7)).astype(np.int32)
  mask = np.ones((3, 7), np.int32)
  mask[1, 4:] = 0  # padding
  types = np.zeros((3, 7), np.int32)
  types[:, 3:] = 1  # the second sentence
  outputs = encoder((tf.constant(ids), tf.constant(mask), tf.constant(types)), training=False)
  sequence, pooled = reference_bert(values, CONFIG, ids, mask.astype(np.float32), types)
  np.testing.assert_allclose(outputs['pooled_output'].numpy(), pooled, atol=2e-4)
  keep = mask.astype(bool)  # padded positions' outputs are not used
  np.testing.assert_allclose(outputs['sequence_output'].numpy()[keep], sequence[keep], atol=2e-4)


def test_a_checkpoint_of_another_shape_or_with_unknown_variables_is_refused(tmp_path):
  (tmp_path / 'big').mkdir()
  big = bert.BertConfig(vocab_size=50, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=16)
  prefix = write_google_checkpoint(tmp_path / 'big', google_variables(big), big)
  with pytest.raises(ValueError, match='another BertConfig'):
    bert.load_google_checkpoint(bert.build_encoder(CONFIG), prefix)
  (tmp_path / 'extra').mkdir()
  values = dict(google_variables(CONFIG), **{'bert/encoder/layer_9/output/dense/bias':
                                             np.zeros(16, np.float32)})
  prefix = write_google_checkpoint(tmp_path / 'extra', values)
  with pytest.raises(ValueError, match=r'not in the BERT encoder mapping.*layer_9'):
    bert.load_google_checkpoint(bert.build_encoder(CONFIG), prefix)


def test_configs(tmp_path):
  assert bert.BertConfig.named('tiny') == bert.BertConfig(
      hidden_size=128, num_hidden_layers=2, num_attention_heads=2, intermediate_size=512)
  (tmp_path / 'bert_config.json').write_text('{"hidden_size": 64, "use_bias": true}')
  with pytest.raises(ValueError, match=r"unknown BERT config keys \['use_bias'\]"):
    bert.BertConfig.from_json_file(str(tmp_path / 'bert_config.json'))
  with pytest.raises(ValueError, match='not a multiple'):
    bert.BertConfig(hidden_size=10, num_attention_heads=3)


# --- MRPC: parsing, WordPiece, the task ----------------------------------------------------------

@pytest.mark.parametrize('line, expected', [
    ('\ufeffQuality\t#1 ID\t#2 ID\t#1 String\t#2 String', None),  # GLUE header, after a BOM
    ('', None),
    ('1\t702876\t702977\tAmrozi accused "the witness".\tReferring to him.',
     {'label': 1, 'sentence1': 'Amrozi accused "the witness".', 'sentence2': 'Referring to him.'}),
])
def test_parse_line(line, expected):
  assert mrpc.parse_line(line) == expected


@pytest.mark.parametrize('line, message', [
    ('1\t2\t3\tonly four fields', 'expected 5 tab-separated fields'),
    ('2\t1\t2\ta\tb', 'expected 0 or 1'),
    ('0\t1\t2\t \tb', 'empty sentence'),
])
def test_parse_line_errors(line, message):
  with pytest.raises(ValueError, match=message):
    mrpc.parse_line(line)


@pytest.mark.parametrize('name, pairs, paraphrases', [
    (mrpc.TRAIN, 3668, 2474), (mrpc.DEV, 408, 279), (mrpc.MSR_TRAIN, 4076, None),
    (mrpc.MSR_TEST, 1725, 1147), (mrpc.TEST, 1725, None)])
def test_every_real_file_parses(data_root, name, pairs, paraphrases):
  with open(os.path.join(data_root, 'glue', 'MRPC', name), encoding='utf-8') as f:
    lines = f.read().split('\n')
  parse = mrpc.parse_test_line if name == mrpc.TEST else mrpc.parse_line
  rows = [r for r in map(parse, lines) if r]
  assert len(rows) == pairs  # the counts of ../shared/data/README.md
  if paraphrases is not None:
    assert sum(r['label'] for r in rows) == paraphrases
  assert all(r['sentence1'] and r['sentence2'] for r in rows)


def test_malformed_pair_is_reported_with_file_and_line(tmp_path):
  (tmp_path / 'dev.tsv').write_text('\ufeffQuality\t#1 ID\t#2 ID\t#1 String\t#2 String\n'
                                    '1\t1\t2\tA cat.\tA feline.\n1\t3\t4\tbroken\n')
  with pytest.raises(MalformedRowsError, match=r'dev\.tsv:3: expected 5 tab-separated fields'):
    helpers.run_example_gen(str(tmp_path), str(tmp_path), {'eval': 'dev.tsv'},
                            'preprocessing.mrpc.parse_line', 0.0)


def test_wordpiece_pairs_match_bert_tokenization(data_root):
  vocab_file = os.path.join(data_root, 'bert', mrpc.VOCAB)
  with open(vocab_file, encoding='utf-8') as f:
    vocab = [line.rstrip('\n') for line in f]
  features = mrpc.tokenize_pairs(tf.constant([['Hello, World!'], ['a']]),
                                 tf.constant([['Unaffable héllo'], ['b ' * 20]]),
                                 vocab_file, max_length=12)
  ids = features[mrpc.WORD_IDS].numpy()
  # The BERT paper's WordPiece example ("unaffable"), lower-casing and accent stripping.
  assert [vocab[i] for i in ids[0]] == ['[CLS]', 'hello', ',', 'world', '!', '[SEP]', 'una',
                                        '##ffa', '##ble', 'hello', '[SEP]', '[PAD]']
  assert features[mrpc.MASK].numpy()[0].tolist() == [1] * 11 + [0]
  assert features[mrpc.TYPE_IDS].numpy()[0].tolist() == [0] * 6 + [1] * 5 + [0]
  # The longest sentence is trimmed first: 'a' keeps its token, 'b' x 20 gets the other 8.
  assert [vocab[i] for i in ids[1]] == ['[CLS]', 'a', '[SEP]'] + ['b'] * 8 + ['[SEP]']


def test_classifier_fine_tunes_from_a_google_checkpoint(tmp_path):
  def task(checkpoint):
    return text_classification.BertClassifierTask.create(
        'bert_tiny', {'init_checkpoint': checkpoint}, train_steps=10)

  short = write_google_checkpoint(tmp_path, google_variables(CONFIG))
  with pytest.raises(ValueError, match='128 tokens but the checkpoint has 16 positions'):
    task(short).build_model(None)
  config = dataclasses.replace(CONFIG, max_position_embeddings=mrpc.MAX_LENGTH)
  values = google_variables(config)
  (tmp_path / 'long').mkdir()
  prefix = write_google_checkpoint(tmp_path / 'long', values, config)
  fine_tuning = task(prefix)
  model = fine_tuning.build_model(None)  # the checkpoint's sizes, not Tiny's
  encoder = model.get_layer('bert_encoder')
  assert encoder.config == config
  np.testing.assert_array_equal(encoder.get_layer('pooler').kernel.numpy(),
                                values['bert/pooler/dense/kernel'])
  fine_tuning.compile(model, 1)
  ids = np.random.default_rng(0).integers(0, 50, (4, mrpc.MAX_LENGTH))
  inputs = {mrpc.WORD_IDS: ids, mrpc.MASK: np.ones_like(ids), mrpc.TYPE_IDS: np.zeros_like(ids)}
  history = model.fit(inputs, np.array([0, 1, 1, 0]), epochs=2, verbose=0)
  assert np.all(np.isfinite(history.history['loss']))
  assert not np.array_equal(encoder.get_layer('pooler').kernel.numpy(),
                            values['bert/pooler/dense/kernel'])  # fine-tuned
  with pytest.raises(ValueError, match='no bert_config.json'):
    task(str(tmp_path / 'x' / 'bert_model.ckpt')).build_model(None)


def test_warmup_then_linear_decay_and_the_bars_per_start():
  schedule = text_classification.WarmupLinearDecay(1.0, 100, 0.1)
  assert [round(float(schedule(s)), 4) for s in (0, 5, 10, 55, 100)] == [0.0, 0.5, 1.0, 0.5, 0.0]
  spec = spec_lib.get('mrpc')
  bars = lambda e: {t.metric: t.lower_bound for t in e.thresholds}  # noqa: E731
  assert bars(spec.evaluation_for()) == {'binary_accuracy': 0.6, 'f1_score': 0.7}
  pretrained = spec.evaluation_for(hparams={'init_checkpoint': '/ckpt/bert_model.ckpt'})
  assert bars(pretrained) == {'binary_accuracy': 0.84, 'f1_score': 0.88}
  assert bars(spec.evaluation_for(hparams={'init_checkpoint': ''})) == bars(spec.evaluation_for())
