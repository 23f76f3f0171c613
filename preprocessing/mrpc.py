"""GLUE MRPC: the paraphrase TSV files, BERT's uncased WordPiece vocabulary, and tf.Transform.

Source: Dolan & Brockett 2005, "Automatically Constructing a Corpus of Sentential Paraphrases"
(Microsoft Research Paraphrase Corpus, Microsoft Research Shared Source License: non-commercial
use), in the GLUE layout of Wang et al. 2019 (GLUE's download_glue_data.py splits MSR's
`msr_paraphrase_train.txt` into `train.tsv`, 3,668 pairs, and `dev.tsv`, 408 pairs, by its dev
ids; `test.tsv` is MSR's test file without labels). The GLUE files have no download address of
their own, so only a data root provides them; MSR's two files are the ones SentEval mirrors. Each
file is checked by the SHA-256 of the copy in ../shared/data (byte-identical to those releases).

Format (`parse_line`): a header line (`Quality	#1 ID	#2 ID	#1 String	#2 String`, after a UTF-8
byte-order mark in the GLUE files), then one pair per line: the label (1: paraphrase), the two
sentence ids and the two sentences, tab-separated. The sentences are the raw text (quotes
included), as GLUE's reader takes them (no CSV quoting).

Vocabulary: the uncased WordPiece vocabulary of Google's BERT releases (`vocab.txt` of
uncased_L-12_H-768_A-12.zip and of every uncased model, 30,522 tokens), `bert/uncased_vocab.txt`
in ../shared/data.

Transform (`preprocessing_fn`): tensorflow-text's BertTokenizer (lower-casing, accent stripping,
punctuation splitting, WordPiece) applied in-graph to both sentences; the pair is trimmed to
`MAX_LENGTH` tokens, longest sentence first (google-research/bert's `_truncate_seq_pair`), packed as
`[CLS] a [SEP] b [SEP]` and padded: so the exported model takes two raw sentences.
"""

from __future__ import annotations

from typing import Any, Dict, Mapping, Optional

import tensorflow as tf

from preprocessing import datasets

TRAIN, DEV, TEST = 'train.tsv', 'dev.tsv', 'test.tsv'
MSR_TRAIN, MSR_TEST = 'msr_paraphrase_train.txt', 'msr_paraphrase_test.txt'
SENTEVAL = 'https://dl.fbaipublicfiles.com/senteval/senteval_data/'

DATASET = datasets.register(datasets.Dataset(
    name='mrpc',
    folder='glue/MRPC',
    files=(
        datasets.DataFile(name=TRAIN, url=None, size=919_457,
                          sha256='122becc469405bc16f9defcb8715d2a4b7ce600e9d9381e6dc42bfdd1494c51d'),
        datasets.DataFile(name=DEV, url=None, size=103_255,
                          sha256='81c8a1a9e1dfe461dd2c1a4f98f43fe18bece44d2bf9e3d0b245b88e5aa5eaf7'),
        datasets.DataFile(name=TEST, url=None, size=435_216,
                          sha256='4ee428d354c01fa35c2f0f6ab835398abb0bec01f17ed68fbcb6c04265505b0a'),
        datasets.DataFile(name=MSR_TRAIN, url=SENTEVAL + MSR_TRAIN, size=1_022_669,
                          sha256='61a88818ec384d8465297dda1883b469f1b22d442ab90183d13e06233b180591'),
        datasets.DataFile(name=MSR_TEST, url=SENTEVAL + MSR_TEST, size=431_156,
                          sha256='0360d0d3427a0ae14882e2b3a799df0fab6cb5203d5e8ee481949283da62acb6'),
    ),
    splits={'train': TRAIN, 'eval': DEV},
    citation='Dolan & Brockett 2005 (MSRP, MSR Shared Source License); Wang et al. 2019 (GLUE)'))

VOCAB = 'uncased_vocab.txt'
VOCABULARY = datasets.register(datasets.Dataset(
    name='bert_uncased_vocab',
    folder='bert',
    files=(datasets.DataFile(
        name=VOCAB, url=None, size=231_508,
        sha256='07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3'),),
    splits={},
    citation='Devlin et al. 2019; google-research/bert uncased vocab.txt (Apache-2.0)'))

LABEL_KEY = 'label'
SENTENCE1, SENTENCE2 = 'sentence1', 'sentence2'
WORD_IDS, MASK, TYPE_IDS = 'input_word_ids', 'input_mask', 'input_type_ids'
MAX_LENGTH = 128  # the seed's max_seq_length for MRPC
VOCAB_FILE_KEY = 'vocab_file'  # Transform custom_config: the WordPiece vocabulary
COLUMNS = ('Quality', '#1 ID', '#2 ID', '#1 String', '#2 String')  # the header of the TSV files
TEST_COLUMNS = ('index',) + COLUMNS[1:]  # test.tsv's header
_HEADER = COLUMNS[0]
_FIELDS = len(COLUMNS)


def parse_line(line: str) -> Optional[Dict[str, Any]]:
  """Parses one line of a GLUE MRPC TSV (train.tsv, dev.tsv) or of MSR's original files.

  Returns:
    None for the header (with or without a byte-order mark) and blank lines; otherwise
    {'label': 0 or 1, 'sentence1': str, 'sentence2': str}.

  Raises:
    ValueError: not 5 tab-separated fields, a label other than 0 or 1, or an empty sentence.
  """
  line = line.lstrip('\ufeff')
  if not line.strip() or line.startswith(_HEADER):
    return None
  fields = line.rstrip('\r').split('\t')
  if len(fields) != _FIELDS:
    raise ValueError(f'expected {_FIELDS} tab-separated fields (label, two ids, two sentences), '
                     f'found {len(fields)}')
  label, _, _, first, second = fields
  if label not in ('0', '1'):
    raise ValueError(f'field Quality: expected 0 or 1, got {label!r}')
  if not first.strip() or not second.strip():
    raise ValueError('empty sentence')
  return {LABEL_KEY: int(label), SENTENCE1: first, SENTENCE2: second}


# TextLineExampleGen skips a file's first line when it is this header (after any BOM), and reports
# it anywhere else as malformed.
parse_line.columns = COLUMNS


def parse_test_line(line: str) -> Optional[Dict[str, Any]]:
  """Parses one line of GLUE's unlabelled `test.tsv` (`index	#1 ID	#2 ID	#1 String	#2 String`).

  Returns:
    None for the header and blank lines; otherwise {'sentence1': str, 'sentence2': str}, what the
    exported model's serving signature takes.

  Raises:
    ValueError: not 5 tab-separated fields, or an empty sentence.
  """
  if not line.strip() or line.lstrip('\ufeff').startswith('index\t'):
    return None
  row = parse_line('0' + line[line.index('\t'):] if '\t' in line else line)
  row.pop(LABEL_KEY)
  return row


parse_test_line.columns = TEST_COLUMNS


def tokenize_pairs(first: tf.Tensor, second: tf.Tensor, vocab_file: str,
                   max_length: int = MAX_LENGTH) -> Dict[str, tf.Tensor]:
  """BERT's inputs for sentence pairs.

  Args:
    first, second: tf.string [batch] (or [batch, 1]) raw sentences.
    vocab_file: the WordPiece vocabulary (one token per line; [PAD] 0, [UNK], [CLS], [SEP]).
    max_length: tokens per pair, [CLS] and the two [SEP] included.

  Returns:
    int64 [batch, max_length] each: `input_word_ids` ([CLS] a [SEP] b [SEP], then [PAD] = 0),
    `input_mask` (1 on tokens, 0 on padding), `input_type_ids` (0 for a and its [CLS] and [SEP],
    1 for b and its [SEP]).
  """
  import tensorflow_text as tf_text  # pylint: disable=g-import-not-at-top  (registers its ops)
  table = tf.lookup.StaticVocabularyTable(
      tf.lookup.TextFileInitializer(vocab_file, tf.string, tf.lookup.TextFileIndex.WHOLE_LINE,
                                    tf.int64, tf.lookup.TextFileIndex.LINE_NUMBER),
      num_oov_buckets=1)
  tokenizer = tf_text.BertTokenizer(table, token_out_type=tf.int64, lower_case=True,
                                    unknown_token='[UNK]')
  cls_id, sep_id = table.lookup(tf.constant('[CLS]')), table.lookup(tf.constant('[SEP]'))
  segments = [tokenizer.tokenize(tf.reshape(text, [-1])).merge_dims(-2, -1)
              for text in (first, second)]
  segments = tf_text.ShrinkLongestTrimmer(max_length - 3).trim(segments)
  word_ids, type_ids = tf_text.combine_segments(segments, cls_id, sep_id)
  word_ids, mask = tf_text.pad_model_inputs(word_ids, max_length)
  type_ids, _ = tf_text.pad_model_inputs(type_ids, max_length)
  return {WORD_IDS: word_ids, MASK: mask, TYPE_IDS: type_ids}


def preprocessing_fn(inputs: Mapping[str, tf.Tensor],
                     custom_config: Mapping[str, Any]) -> Dict[str, tf.Tensor]:
  """tf.Transform preprocessing for MRPC (named by module path in the Transform component).

  Args:
    inputs: `sentence1`, `sentence2` tf.string [batch, 1]; `label` int64 [batch, 1].
    custom_config: {'vocab_file': path of the WordPiece vocabulary}, saved as an asset of the
      transform graph (so the exported model carries it).

  Returns:
    `tokenize_pairs`' three int64 [batch, 128] features and `label` int64 [batch].

  Raises:
    ValueError: no vocabulary in `custom_config`.
  """
  vocab_file = (custom_config or {}).get(VOCAB_FILE_KEY)
  if not vocab_file:
    raise ValueError(f'MRPC\'s Transform needs custom_config[{VOCAB_FILE_KEY!r}], the WordPiece '
                     'vocabulary (--vocab_file)')
  features = tokenize_pairs(inputs[SENTENCE1], inputs[SENTENCE2], vocab_file)
  features[LABEL_KEY] = tf.reshape(inputs[LABEL_KEY], [-1])
  return features
