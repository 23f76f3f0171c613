"""WMT parts: registry, T2T subword decoding, ParallelTextExampleGen, SentencePiece Transform, the
Transformer, beam search, the learning-rate schedule and BLEU (on cases with known answers)."""

import gzip
import math
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf
import tf_keras
import tensorflow_transform as tft
import tensorflow_transform.beam as tft_beam

from components import parallel_text_example_gen as ptg
from components.record_checks import MalformedRowsError
from model_fns import beam_search, transformer, translation, translation_metrics
from preprocessing import datasets, t2t_subwords, wmt
from tests import helpers

DATA_ROOT = os.environ.get('OFFICIAL_TFX_DATA_ROOT', '')
NEWSTEST = os.path.join(DATA_ROOT, 'wmt', 'newstest')
WMT32K = os.path.join(DATA_ROOT, 'wmt', 'wmt32k')
needs_data = pytest.mark.skipif(not os.path.isdir(NEWSTEST), reason='needs ../shared/data/wmt')


def lines(name, count=None):
  with open(os.path.join(NEWSTEST, name), encoding='utf-8') as f:
    return f.read().split('\n')[:-1][:count]


# --- registry -----------------------------------------------------------------------------------

@needs_data
def test_registry_verifies_newstest_pairs_and_the_wmt32k_folder():
  path = datasets.resolve_file(wmt.DATASET, wmt.newstest(2014), DATA_ROOT)
  assert path.endswith('newstest/newstest2014.en')
  assert len(wmt.DATASET.files) == 25  # 12 years x 2 sides, and the wmt32k folder
  assert datasets.resolve_file(wmt.DATASET, wmt.WMT32K, DATA_ROOT).endswith('wmt/wmt32k')


@needs_data
def test_registry_names_a_tampered_side_of_a_pair(tmp_path):
  folder = tmp_path / 'wmt' / 'newstest'
  folder.mkdir(parents=True)
  shutil.copy(os.path.join(NEWSTEST, 'newstest2014.en'), folder)
  with open(os.path.join(NEWSTEST, 'newstest2014.de'), encoding='utf-8') as f:
    (folder / 'newstest2014.de').write_text(f.read().replace('Gutach', 'Gutac'), encoding='utf-8')
  with pytest.raises(datasets.DatasetError, match=r'newstest2014\.de: checksum mismatch'):
    datasets.resolve_file(wmt.DATASET, wmt.newstest(2014), str(tmp_path))


def test_flat_folder_checksum_names_the_folder(tmp_path):
  (tmp_path / 'a').write_text('x')
  entry = datasets.DataFile(name='flat', url=None, sha256=None,
                            tree_sha256={'.': datasets.tree_digest(str(tmp_path))})
  datasets.verify(str(tmp_path), entry)
  (tmp_path / 'b').write_text('extra file')
  with pytest.raises(datasets.DatasetError, match='checksum mismatch for flat'):
    datasets.verify(str(tmp_path), entry)


# --- T2T subwords -------------------------------------------------------------------------------

@needs_data
def test_t2t_records_decode_to_the_text_they_were_made_from():
  """The dev shard is newstest2013 (data README): its records decode to those lines exactly."""
  decoder = t2t_subwords.SubwordDecoder.from_file(os.path.join(WMT32K, 'vocab.ende.32768'))
  assert decoder.vocab_size == 15978
  english, german = lines('newstest2013.en', 200), lines('newstest2013.de', 200)
  records = tf.data.TFRecordDataset(os.path.join(WMT32K, 'wmt32k-dev-00001-of-00001'))
  for i, record in enumerate(records.take(200).as_numpy_iterator()):
    example = tf.train.Example.FromString(record)
    ids = example.features.feature['inputs'].int64_list.value
    assert ids[-1] == t2t_subwords.EOS_ID
    assert decoder.decode(ids) == english[i].strip()
    assert decoder.decode(example.features.feature['targets'].int64_list.value) == german[i]


def test_t2t_escapes_and_spacing():
  decoder = t2t_subwords.SubwordDecoder(
      ['<pad>', '<EOS>', 'snake\\u', 'case_', ', _', 'caf\\233;_', '\\\\_', 'x', 'y_'])
  assert decoder.decode([2, 3, 4, 5, 1, 0]) == 'snake_case, café'
  assert decoder.decode([7, 8, 8]) == 'xy y'  # single spaces between alphanumeric tokens
  assert decoder.decode([6]) == '\\'
  with pytest.raises(ValueError, match='outside the vocabulary of 9'):
    decoder.decode([9])


def test_t2t_vocabulary_line_errors_name_the_line(tmp_path):
  path = tmp_path / 'vocab.txt'
  path.write_text("'<pad>'\n'<EOS>'\nbare\n")
  with pytest.raises(ValueError, match=r'vocab\.txt:3: expected a quoted subtoken'):
    t2t_subwords.SubwordDecoder.from_file(str(path))


# --- ParallelTextExampleGen ---------------------------------------------------------------------

def write_pair(folder, stem, english, german, gz=False):
  for language, text in (('en', english), ('de', german)):
    path = os.path.join(folder, f'{stem}.{language}' + ('.gz' if gz else ''))
    data = ''.join(line + '\n' for line in text).encode('utf-8')
    with (gzip.open if gz else open)(path, 'wb') as f:
      f.write(data)


def run_gen(tmp_path, splits, out='out', **kwargs):
  component = ptg.ParallelTextExampleGen(input_base=str(tmp_path), splits=splits, **kwargs)
  return helpers.run_executor(component, ptg.Executor, str(tmp_path / out))


def texts(uri, split):
  return [(e.features.feature['inputs'].bytes_list.value[0].decode(),
           e.features.feature['targets'].bytes_list.value[0].decode())
          for e in helpers.read_examples(uri, split)]


def test_file_pairs_plain_and_gzipped_with_row_ranges(tmp_path):
  english = [f'sentence {i}' for i in range(2500)]
  german = [f'Satz {i}' for i in range(2500)]
  write_pair(str(tmp_path), 'train', english, german, gz=True)
  write_pair(str(tmp_path), 'test', english[:10], german[:10])
  examples = run_gen(tmp_path, {'train': 'train.en.gz', 'eval': 'test.en'},
                     row_ranges={'train': (100, 2000)})
  assert sorted(texts(examples.uri, 'train')) == sorted(zip(english[100:2100], german[100:2100]))
  assert sorted(texts(examples.uri, 'eval')) == sorted(zip(english[:10], german[:10]))
  assert examples.get_int_custom_property('valid_rows_train') == 2000


def test_misaligned_pair_names_both_files(tmp_path):
  write_pair(str(tmp_path), 'train', ['a', 'b', 'c'], ['x', 'y'])
  with pytest.raises(ptg.ParallelTextError,
                     match=r'train\.en has 3 lines but .*train\.de has 2'):
    run_gen(tmp_path, {'train': 'train.en'})
  assert not os.path.exists(tmp_path / 'out' / 'examples' / 'Split-train')


def test_missing_target_side_and_bad_suffix(tmp_path):
  (tmp_path / 'only.en').write_text('hello\n')
  with pytest.raises(ptg.ParallelTextError, match=r'only\.de \(or .*only\.de\.gz\) does not'):
    run_gen(tmp_path, {'train': 'only.en'})
  with pytest.raises(ptg.ParallelTextError, match=r'must end in \.en'):
    ptg.target_path(str(tmp_path / 'only.txt'), 'en', 'de')


def test_empty_and_non_utf8_lines_are_malformed_rows(tmp_path):
  (tmp_path / 'train.en').write_bytes(b'good\n\nfine\nbad \xff byte\n' + b'ok\n' * 996)
  (tmp_path / 'train.de').write_bytes(b'gut\nleer\n\nschlecht\n' + b'ok\n' * 996)
  with pytest.raises(MalformedRowsError) as error:
    run_gen(tmp_path, {'train': 'train.en'}, max_malformed_fraction=0.001)
  message = str(error.value)
  assert '3 of 1000 rows are malformed' in message
  assert 'train.en:2: the source line is empty' in message
  assert 'train.de:3: the target line is empty' in message  # the file of the side at fault
  assert 'train.en:4: the source line is not UTF-8' in message
  examples = run_gen(tmp_path, {'train': 'train.en'}, out='out2', max_malformed_fraction=0.01)
  assert examples.get_int_custom_property('malformed_rows_train') == 3
  assert len(texts(examples.uri, 'train')) == 997


@needs_data
def test_subword_folder_is_read_as_text(tmp_path):
  folder = tmp_path / 'wmt32k'
  folder.mkdir()
  shutil.copy(os.path.join(WMT32K, 'vocab.ende.32768'), folder)
  shutil.copy(os.path.join(WMT32K, 'wmt32k-dev-00001-of-00001'), folder / 'x-train-00001')
  examples = run_gen(tmp_path, {'train': 'wmt32k'}, record_globs={'train': 'x-train-*'})
  pairs = texts(examples.uri, 'train')
  expected = list(zip(lines('newstest2013.en'), lines('newstest2013.de')))
  assert len(pairs) == 3000
  assert sorted(pairs) == sorted((e.strip(), d.strip()) for e, d in expected)
  with pytest.raises(ptg.ParallelTextError, match='no TFRecord shard matches'):
    run_gen(tmp_path, {'train': 'wmt32k'}, record_globs={'train': 'nothing-*'})


# --- SentencePiece Transform --------------------------------------------------------------------

@pytest.fixture(scope='module')
def transform_output(tmp_path_factory):
  """The WMT preprocessing_fn analysed and applied on 3,000 real pairs (vocabulary 1,000)."""
  if not os.path.isdir(NEWSTEST):
    pytest.skip('needs ../shared/data/wmt')
  folder = str(tmp_path_factory.mktemp('wmt_transform'))
  english, german = lines('newstest2013.en'), lines('newstest2013.de')
  data = [{'inputs': [e.encode()], 'targets': [d.encode()]} for e, d in zip(english, german)]
  metadata = tft.DatasetMetadata.from_feature_spec({
      'inputs': tf.io.FixedLenFeature([1], tf.string),
      'targets': tf.io.FixedLenFeature([1], tf.string)})
  config = {'vocab_size': 1000, 'max_length': 32}
  with tft_beam.Context(temp_dir=os.path.join(folder, 'tmp'), force_tf_compat_v1=False):
    (transformed, _), transform_fn = ((data, metadata) | tft_beam.AnalyzeAndTransformDataset(
        lambda inputs: wmt.preprocessing_fn(inputs, config)))
    _ = transform_fn | tft_beam.WriteTransformFn(folder)
  return tft.TFTransformOutput(folder), transformed, english


def test_transform_trains_sentencepiece_and_tokenizes_in_graph(transform_output):
  import sentencepiece  # pylint: disable=import-outside-toplevel
  output, transformed, english = transform_output
  model_file = output.vocabulary_file_by_name(wmt.SENTENCEPIECE_ASSET)
  processor = sentencepiece.SentencePieceProcessor(model_file=model_file)
  assert processor.get_piece_size() == 1000
  assert (processor.pad_id(), processor.eos_id(), processor.unk_id()) == (0, 1, 2)
  # In-graph ids equal the sentencepiece library's, EOS-terminated, padded and cut at 32.
  for row, sentence in zip(transformed[:50], english[:50]):
    expected = processor.encode(sentence) + [wmt.EOS_ID]
    assert row['inputs_length'] == len(expected)
    kept = expected[:32]
    assert list(row['inputs'][:len(kept)]) == kept
    assert not any(row['inputs'][len(kept):])
  assert {r['inputs_length'] > 32 for r in transformed} == {True, False}
  # Serving: raw text in, the label's features are dropped when the label is absent.
  features = output.transform_features_layer()({'inputs': tf.constant([[english[0]]])})
  assert sorted(features) == ['inputs', 'inputs_length']


def test_tokenize_survives_batches_over_the_ops_limit(transform_output):
  """tensorflow-text's op aborts past ~32k ids in one call: a batch of 120,000 ids must work."""
  output, _, english = transform_output
  converted = os.path.join(output.transform_savedmodel_dir, 'assets', wmt.CONVERTED_ASSET)
  model = tf.io.decode_raw(tf.io.read_file(converted), tf.uint8)
  batch = tf.constant(english * 2)
  ids, lengths = tf.function(lambda text: wmt.tokenize(model, text, 256))(batch)
  assert int(tf.reduce_sum(lengths)) > 120_000
  assert ids.shape == (6000, 256)
  single, _ = wmt.tokenize(model, tf.constant(english[7:8]), 256)
  np.testing.assert_array_equal(single[0], ids[7])


# --- beam search --------------------------------------------------------------------------------

def table_model(table):
  """symbols_to_logits_fn of a model whose next-token log probabilities depend only on the last
  token: table[last] (float [vocab])."""
  log_table = tf.math.log(tf.constant(table, tf.float32))

  def fn(ids, step, cache):
    del step
    return tf.gather(log_table, ids[:, -1]), cache
  return fn


# Tokens: 0 start, 1 EOS, 2 "a", 3 "b". Greedy takes "a" (0.6), then "a"'s best is EOS at 0.4:
# "a EOS" = 0.24. Beam search finds "b EOS" = 0.4 * 0.9 = 0.36.
TABLE = [[0.0, 0.0, 0.6, 0.4],   # after start
         [1.0, 0.0, 0.0, 0.0],   # after EOS (unused)
         [0.0, 0.4, 0.3, 0.3],   # after "a"
         [0.0, 0.9, 0.05, 0.05]]  # after "b"


def search(beam_size, alpha=0.0, max_length=5, table=TABLE):
  sequences, scores = beam_search.beam_search(
      table_model(table), tf.zeros([1], tf.int32), {}, len(table), beam_size, alpha, max_length,
      1)
  return sequences.numpy()[0], scores.numpy()[0]


def test_beam_search_beats_greedy_on_a_known_case():
  sequences, scores = search(beam_size=1)
  assert list(sequences[0][:3]) == [0, 2, 1] and math.isclose(scores[0], math.log(0.24),
                                                              rel_tol=1e-5)
  sequences, scores = search(beam_size=2)
  assert list(sequences[0][:3]) == [0, 3, 1]
  assert math.isclose(scores[0], math.log(0.36), rel_tol=1e-5)
  assert list(sequences[1][:3]) == [0, 2, 1]  # the runner-up, best first
  assert not sequences[0][3:].any()  # zeros after EOS


def test_length_penalty_prefers_longer_hypotheses_as_alpha_grows():
  # Tokens 0 start, 1 EOS, 2 "a", 3 "b", 4 "c". "a EOS" = 0.5 * 0.5 = 0.25 (length 2);
  # "b c EOS" = 0.5 * 1.0 * 0.4 = 0.2 (length 3).
  table = [[0.0, 0.0, 0.5, 0.5, 0.0], [1.0, 0.0, 0.0, 0.0, 0.0], [0.0, 0.5, 0.25, 0.25, 0.0],
           [0.0, 0.0, 0.0, 0.0, 1.0], [0.0, 0.4, 0.3, 0.3, 0.0]]
  short, long_ = math.log(0.25), math.log(0.2)
  lp = lambda n, a: ((5 + n) / 6) ** a  # pylint: disable=unnecessary-lambda-assignment
  sequences, scores = search(beam_size=4, alpha=0.0, table=table)
  assert list(sequences[0][:3]) == [0, 2, 1] and math.isclose(scores[0], short, rel_tol=1e-5)
  # With alpha 2 the longer one wins: log P / lp(3) > log P / lp(2).
  assert long_ / lp(3, 2.0) > short / lp(2, 2.0)
  sequences, scores = search(beam_size=4, alpha=2.0, table=table)
  assert list(sequences[0][:4]) == [0, 3, 4, 1]
  assert math.isclose(scores[0], long_ / lp(3, 2.0), rel_tol=1e-5)


def test_unfinished_search_returns_alive_hypotheses():
  table = [[0.0, 0.0, 1.0, 0.0]] * 4  # never ends
  sequences, scores = search(beam_size=2, max_length=3, table=table)
  assert list(sequences[0]) == [0, 2, 2, 2]
  assert math.isclose(scores[0], 0.0, abs_tol=1e-6)


# --- Transformer --------------------------------------------------------------------------------

def test_transformer_sizes_match_the_paper():
  """Vaswani et al. 2017, table 3: base 65 M parameters, big 213 M (37,000 shared BPE tokens)."""
  for model_type, millions in (('base', 65), ('big', 213)):
    model = transformer.build(37000, model_type, {})
    model({'inputs': tf.ones([1, 3], tf.int32), 'targets': tf.ones([1, 2], tf.int32)})
    assert abs(model.count_params() / 1e6 - millions) / millions < 0.05, model.count_params()


def test_cached_beam_decoding_matches_teacher_forcing():
  tf_keras.utils.set_random_seed(1)  # Keras draws unseeded initializers from Python's `random`
  model = transformer.build(50, 'small', {'num_layers': 2, 'hidden_size': 32, 'num_heads': 4,
                                          'filter_size': 64, 'extra_decode_length': 6})
  inputs = tf.constant([[5, 6, 7, 1], [9, 1, 0, 0]])
  ids, scores = model.translate(inputs)
  assert ids.shape == (2, 10)
  for row, source_length in enumerate((4, 2)):
    sequence = ids[row].numpy()
    end = list(sequence).index(1) + 1
    assert end <= source_length + 6 and not sequence[end:].any()
    targets = tf.constant([sequence[:end]])
    logits = model({'inputs': inputs[row:row + 1], 'targets': targets})
    token_log_probs = tf.gather(tf.nn.log_softmax(logits)[0], targets[0], batch_dims=1).numpy()
    if end == source_length + 6:  # EOS forced at the sentence's own limit: log probability 0
      token_log_probs = token_log_probs[:-1]
    total = float(token_log_probs.sum())
    assert math.isclose(float(scores[row]), total / ((5 + end) / 6) ** 0.6, rel_tol=1e-3)
  # A sentence's translation does not depend on the other sentences of its batch.
  alone, alone_score = model.translate(inputs[1:, :2])
  np.testing.assert_array_equal(alone[0], ids[1, :alone.shape[1]])
  assert math.isclose(float(alone_score[0]), float(scores[1]), rel_tol=1e-4)


def test_label_smoothed_loss_known_values():
  model = transformer.build(10, 'small', {'num_layers': 1, 'hidden_size': 8, 'num_heads': 2,
                                          'filter_size': 8})
  labels = tf.constant([[3, 4, 0]])
  uniform = tf.zeros([1, 3, 10])
  loss, accuracy, tokens = model.loss_and_accuracy(uniform, labels)
  confidence, low = 0.9, 0.1 / 9
  entropy = -(confidence * math.log(confidence) + 9 * low * math.log(low))
  assert float(tokens) == 2.0  # the padding position does not count
  assert math.isclose(float(loss), math.log(10) - entropy, rel_tol=1e-5)
  # The smoothed targets themselves as the prediction: loss 0.
  soft = tf.one_hot(labels, 10, on_value=confidence, off_value=low)
  loss, accuracy, _ = model.loss_and_accuracy(tf.math.log(soft), labels)
  assert abs(float(loss)) < 1e-5 and float(accuracy) == 1.0


def test_learning_rate_schedule_is_the_seeds():
  schedule = translation.TransformerSchedule(2.0, 512, 16000)
  peak = 2.0 * 512 ** -0.5 * 16000 ** -0.5
  assert math.isclose(float(schedule(15999)), peak, rel_tol=1e-6)
  assert math.isclose(float(schedule(7999)), peak / 2, rel_tol=1e-6)
  assert math.isclose(float(schedule(63999)), peak / 2, rel_tol=1e-6)  # 1/sqrt(step) decay


def test_bucket_batch_sizes_hold_about_the_token_budget():
  assert translation.bucket_batch_sizes(2048, [8, 16, 64]) == [292, 136, 32, 16]


# --- BLEU ---------------------------------------------------------------------------------------

def test_corpus_bleu_known_values():
  reference = 'The cat sat on the mat.'
  assert translation_metrics.corpus_bleu([reference], [reference]) == pytest.approx(100.0)
  assert translation_metrics.corpus_bleu(['completely different words'], [reference]) < 1.0
  # Case: cased BLEU counts "the Cat" as a miss, uncased does not.
  cased = translation_metrics.corpus_bleu(['THE CAT SAT ON THE MAT.'], [reference])
  uncased = translation_metrics.corpus_bleu(['THE CAT SAT ON THE MAT.'], [reference], True)
  assert cased < 10 and uncased == pytest.approx(100.0)
  # A hypothesis of 4 of the reference's 7 tokens, all matching: precisions 1, brevity penalty
  # exp(1 - 7/4) (Papineni et al. 2002).
  assert translation_metrics.corpus_bleu(['The cat sat on'], [reference]) == pytest.approx(
      100 * math.exp(1 - 7 / 4), rel=1e-4)
