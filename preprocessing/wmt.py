"""WMT English-German: the registered corpora and the tf.Transform preprocessing (SentencePiece).

Data (../shared/data/README.md, `wmt/`):

- `newstest/<set>.{en,de}`: the WMT news test sets 2008-2019, line-aligned plain text, from
  Helsinki-NLP/OPUS-MT-testsets (commit ac0f19c0, `testsets/en-de/`), byte-identical there and in
  the data root; SHA-256 of each file from ../shared/data/SHA256SUMS. newstest2014 (3,003 pairs)
  is the seed's test set, the eval split here.
- `wmt32k/`: 270,769 English-German training pairs as T2T subword TFRecords (100 shards, the
  vocabulary that decodes them, and newstest2013 as a dev shard) from
  swetharajagopalan17/EdgeTPU (commit 6ac6e947, `data/`). It is not the full T2T
  `translate_ende_wmt32k` corpus (about 4.5 million pairs of Europarl, Common Crawl and News
  Commentary); its first records look like News Commentary. There is no public download of it
  in this layout: a data root must hold it. Checked as a whole folder (`tree_sha256['.']`).

ExampleGen (components.parallel_text_example_gen) turns both layouts into tf.Examples of text,
`inputs` (English) and `targets` (German).

Transform (`preprocessing_fn`): a SentencePiece model (Kudo & Richardson, EMNLP 2018; unigram
language model, Kudo ACL 2018), one vocabulary shared by both languages as in Vaswani et al.
2017, is trained on the training split inside tf.Transform's analysis phase
(`TrainSentencePiece`, a Beam PTransform analyzer): a deterministic sample of at most
`max_sentences` sentences (both sides) is gathered on one worker and handed to the
`sentencepiece` trainer. Ids: 0 padding, 1 end of sentence (EOS, appended to every sentence),
2 unknown, as T2T numbers them. The text is then tokenized in-graph with tensorflow-text's
`FastSentencepieceTokenizer` ops, so the exported model takes raw text; the SentencePiece model
file is an asset of the transform graph (`SENTENCEPIECE_ASSET`), from which the Trainer builds the
detokenizer of its serving signature.

Transformed features: `inputs`, `targets` (int64 [MAX_LENGTH]: ids, EOS-terminated, zero-padded,
cut at MAX_LENGTH) and `inputs_length`, `targets_length` (int64: the lengths before the cut, EOS
included, so that the Trainer can leave out the pairs that were cut).
"""

from __future__ import annotations

import hashlib
import io
import os
from typing import Any, Dict, Mapping, Optional, Tuple

import apache_beam as beam
import numpy as np
import tensorflow as tf
import tensorflow_transform as tft
import tensorflow_transform.beam as tft_beam

from preprocessing import datasets

SOURCE_KEY = 'inputs'
TARGET_KEY = 'targets'
LENGTH_SUFFIX = '_length'
PAD_ID, EOS_ID, UNK_ID = 0, 1, 2
MAX_LENGTH = 128  # subwords (EOS included) kept per sentence; newstest2014's longest English
                  # sentence is 103 subwords with the 8k vocabulary trained here
VOCAB_SIZE = 8000
MAX_SENTENCES = 400_000  # sentences (of both languages) the SentencePiece trainer reads
SENTENCEPIECE_ASSET = 'sentencepiece.model'  # the model proto, as `spm_train` writes it
CONVERTED_ASSET = 'sentencepiece.fast'  # the same, converted for FastSentencepieceTokenizer

_OPUS = ('https://raw.githubusercontent.com/Helsinki-NLP/OPUS-MT-testsets/'
         'ac0f19c0be3cb4e0d9450fcb2d7a9847c4bdd180/testsets/en-de/')
# ../shared/data/SHA256SUMS (equal to the source files).
_NEWSTEST_SHA256 = {
    'news-test2008.de': '6d86c805e6cd008c11143816daac272fdf5a3afea816983c43005717d6fe3ae2',
    'news-test2008.en': '134e1140848bb0d05e774dbe35b8b69602faf401250c03dbb437bdbe38c37b6f',
    'newstest2009.de': 'c3a23d90e89c080cd3257a23365187e91939be4067176861fb88df7f61864b40',
    'newstest2009.en': '3fc92718e7b994ca0a5dc57e63b68d5c80244a56e5bb1cec11d2e8dd10b3ff3c',
    'newstest2010.de': '4f4b02d3abe150ca47a745d138d90f688edb20dd2d2fedca16aa05fd1e2018b1',
    'newstest2010.en': '1ebece77e333965cbc66fde735a6f17e026b4d6690f4f7fdaba839b7bdadac3b',
    'newstest2011.de': '033bc05659f61c5e51170973267d21e23a9a968557b866f3842c92e416a60e1b',
    'newstest2011.en': 'd387569743c0fa9097df4d4e2c1dd9e6ba9ef3cee6e0f473da3204c887dcf8fd',
    'newstest2012.de': '946b9587b79271b0f3ce9cc8c0e5b310e3021ef598e1ba5dc2a24fef8960de30',
    'newstest2012.en': 'f9e51f85c4948033fc7d77ef427f4d88908a8dd3f778970f62d0baafac3ff97e',
    'newstest2013.de': 'd7ea35ab91ff3709e03ad9cb6bf5b4f2cc775cd2d72efd5254c4aec5e69663ca',
    'newstest2013.en': 'ace268a1d9724ca76f6d8e5c720ffdc08f01bdce45630ed8b269dc7918e1c16e',
    'newstest2014.de': 'ae5d110486bc33d7175e9e28c7d0051eb3e5fcd2166dd93371089852c091a20e',
    'newstest2014.en': '7294bccf2879a97b3706b95c9595f1459617a8ee7130d5d8581c910e69736971',
    'newstest2015.de': '796cce52ab248469187b60f60715a738a0b92944dc010a69a0083de7fae1b513',
    'newstest2015.en': '422fbb5a274c7aae1a0890381cd4516307ca7bc957604220d4871a91664121e5',
    'newstest2016.de': '738ca1ced4099937127be3208ba70d46e7a93550cd57cfd645f3d35e0e52a254',
    'newstest2016.en': 'cd5c112a358d9c99b9557eb358e16d7a94f8fa93ad7aa61bf5f1141f2e1f8854',
    'newstest2017.de': '675e4f7e6045dacf56507e29b24106d771a571e0eb58d822806b086cdcf892f4',
    'newstest2017.en': '11adaec47477928dab9cb3fc9279d99dbbbfec7161f3abf6fddd759668fcd703',
    'newstest2018.de': 'c53059fc440b3771aef2a83b15fddd8d2b3490c55b552dcae245f9a2df126c9c',
    'newstest2018.en': '721b207ca2b4e4689f978e17ee5edb0988d7c901acd651fd666bcd9c1950233b',
    'newstest2019.de': 'ba6b9c811a564c7747bdc92de2b31513bc608fd9c7c24df85b654e38b83bca81',
    'newstest2019.en': '3a62f94f5c42a395d4452ec890ca45afc75866b5b4b1d493429433cfe8469fe9',
}
# The wmt32k folder's tree_digest (../shared/data/SHA256SUMS lines of wmt/wmt32k/*, by name).
_WMT32K_TREE = '6890e6096e2220680fe3f35af1aa7da37299697a11fafaca6cc6c06946dbee3f'
WMT32K = 'wmt32k'
WMT32K_TRAIN_GLOB = 'wmt32k-train-*'
NEWSTEST_YEARS = tuple(range(2008, 2020))


def parse_source_sentence(line: str) -> Optional[Dict[str, str]]:
  """The line parser of `official-tfx predict`'s input: one English sentence a line, as the
  feature `inputs` (SOURCE_KEY) that the serving signature translates; a blank line is no row.
  Never raises."""
  text = line.strip()
  return {SOURCE_KEY: text} if text else None


def newstest(year: int, language: str = 'en') -> str:
  """The registered file name of a news test set side, e.g. `newstest/newstest2014.en`."""
  stem = 'news-test2008' if year == 2008 else f'newstest{year}'
  return f'newstest/{stem}.{language}'


def _newstest_files():
  for name, sha256 in sorted(_NEWSTEST_SHA256.items()):
    stem, language = name.rsplit('.', 1)
    yield datasets.DataFile(
        name=f'newstest/{name}', url=_OPUS + name, sha256=sha256,
        companion=f'newstest/{stem}.de' if language == 'en' else None)


DATASET = datasets.register(datasets.Dataset(
    name='wmt-ende',
    folder='wmt',
    files=(*_newstest_files(),
           datasets.DataFile(name=WMT32K, url=None, sha256=None,
                             tree_sha256={'.': _WMT32K_TREE})),
    splits={'train': WMT32K, 'eval': newstest(2014)},
    citation=('WMT news test sets (statmt.org, via Helsinki-NLP/OPUS-MT-testsets); wmt32k '
              'training pairs via swetharajagopalan17/EdgeTPU (T2T format); no licence stated '
              'by either copy (see ../shared/data/README.md)')))


def _stable_key(sentence: bytes) -> bytes:
  return hashlib.md5(sentence).digest()


class TrainSentencePiece(tft_beam.experimental.PTransformAnalyzer):
  """tf.Transform analyzer (Beam PTransform): trains a SentencePiece model on the text batches.

  Input: a PCollection of tuples of string ndarray batches (one per analyzed tensor; every
  sentence of every batch is used). Output: the paths of two files written under the analyzer's
  temp dir, which tf.Transform copies into the transform graph's assets: the SentencePiece model
  (`SENTENCEPIECE_ASSET`) and the same model converted for tensorflow-text's
  FastSentencepieceTokenizer ops (`CONVERTED_ASSET`).

  The `max_sentences` sentences with the largest MD5 digests are kept (a deterministic, uniform
  sample; all when there are fewer) and sorted, so the same data gives the same model.

  Raises (in the Beam job):
    ValueError: no sentence to train on.
  """

  def __init__(self, vocab_size: int, max_sentences: int):
    super().__init__()
    self._vocab_size = vocab_size
    self._max_sentences = max_sentences

  def expand(self, pcoll):
    def sentences(batches):
      for batch in batches:
        for value in np.asarray(batch).reshape(-1):
          if value:
            yield value

    def train(sample, vocab_size, temp_dir):
      from tensorflow_text.core.pybinds import pywrap_model_converter  # pylint: disable=import-outside-toplevel
      if not sample:
        raise ValueError('SentencePiece: the training split has no sentence to learn from')
      model = _train_sentencepiece(sorted(sample), vocab_size)
      tf.io.gfile.makedirs(temp_dir)
      paths = []
      for name, content in ((SENTENCEPIECE_ASSET, model),
                            (CONVERTED_ASSET,
                             pywrap_model_converter.convert_sentencepiece_model(model))):
        paths.append(os.path.join(temp_dir, name))
        with tf.io.gfile.GFile(paths[-1], 'wb') as f:
          f.write(content)
      return [beam.pvalue.TaggedOutput('model_path', np.array(paths[0].encode(), dtype=object)),
              beam.pvalue.TaggedOutput('tokenizer_path',
                                       np.array(paths[1].encode(), dtype=object))]

    outputs = (pcoll
               | 'Sentences' >> beam.FlatMap(sentences)
               | 'Sample' >> beam.combiners.Top.Of(self._max_sentences, key=_stable_key)
               | 'Train' >> beam.FlatMap(train, self._vocab_size,
                                         os.path.join(self.base_temp_dir, 'sentencepiece'))
               .with_outputs('model_path', 'tokenizer_path'))
    return outputs.model_path, outputs.tokenizer_path


def _train_sentencepiece(sentences, vocab_size: int) -> bytes:
  """The serialized SentencePiece model (unigram) of `sentences` (UTF-8 bytes, in order)."""
  import sentencepiece  # pylint: disable=import-outside-toplevel  (only the analyzer needs it)
  model = io.BytesIO()
  sentencepiece.SentencePieceTrainer.train(
      sentence_iterator=iter(s.decode('utf-8', 'replace') for s in sentences),
      model_writer=model, vocab_size=vocab_size, model_type='unigram',
      pad_id=PAD_ID, eos_id=EOS_ID, unk_id=UNK_ID, bos_id=-1,
      input_sentence_size=0, num_threads=os.cpu_count() or 1,
      hard_vocab_limit=False,  # a small training set may not support vocab_size pieces
      minloglevel=2)
  return model.getvalue()


# tensorflow-text 2.16's FastSentencepieceTokenize op aborts the process when one call produces
# more than about 32,000 ids (measured: 29,081 ids worked, 36,000 aborted in TensorShape). Calls
# are therefore made on chunks of TOKENIZE_CHUNK sentences, each cut to MAX_SENTENCE_CHARS
# characters (at most one id per character, plus EOS): 32 * 1001 ids at most per call.
TOKENIZE_CHUNK = 32
MAX_SENTENCE_CHARS = 1000


def tokenize(converted_model: tf.Tensor, text: tf.Tensor, max_length: int
             ) -> Tuple[tf.Tensor, tf.Tensor]:
  """SentencePiece ids of a batch of sentences, EOS appended, zero-padded to `max_length`.

  Args:
    converted_model: the model as FastSentencepieceTokenizer's ops take it (uint8 [n]); empty
      (tf.Transform's placeholder before analysis) gives no ids.
    text: tf.string [batch]; a sentence is first cut to MAX_SENTENCE_CHARS characters.
    max_length: ids kept per sentence.

  Returns:
    (ids int64 [batch, max_length], lengths int64 [batch]: before the cut to max_length, EOS
    included).
  """
  from tensorflow_text.python.ops import fast_sentencepiece_tokenizer as fast  # pylint: disable=import-outside-toplevel
  text = tf.strings.substr(tf.reshape(text, [-1]), 0, MAX_SENTENCE_CHARS, unit='UTF8_CHAR')
  batch = tf.size(text)
  chunks = -(-batch // TOKENIZE_CHUNK)
  padded = tf.reshape(tf.pad(text, [[0, chunks * TOKENIZE_CHUNK - batch]]),
                      [chunks, TOKENIZE_CHUNK])

  def chunk_ids(sentences):
    values, row_splits = fast.gen_fast_sentencepiece_tokenizer.tf_text_fast_sentencepiece_tokenize(
        converted_model, sentences, 0, 0, False, True, False)  # nbest, alpha, bos, eos, reverse
    ids = tf.RaggedTensor.from_row_splits(tf.cast(values, tf.int64), row_splits, validate=False)
    return (ids.to_tensor(default_value=PAD_ID, shape=[TOKENIZE_CHUNK, max_length]),
            tf.cast(ids.row_lengths(), tf.int64))

  def no_model(sentences):  # the op would abort on an empty model
    del sentences
    return (tf.zeros([TOKENIZE_CHUNK, max_length], tf.int64), tf.zeros([TOKENIZE_CHUNK], tf.int64))

  ids, lengths = tf.cond(
      tf.size(converted_model) > 0,
      lambda: tf.map_fn(chunk_ids, padded, fn_output_signature=(tf.int64, tf.int64)),
      lambda: tf.map_fn(no_model, padded, fn_output_signature=(tf.int64, tf.int64)))
  return (tf.reshape(ids, [-1, max_length])[:batch], tf.reshape(lengths, [-1])[:batch])


def preprocessing_fn(inputs: Mapping[str, tf.Tensor],
                     custom_config: Optional[Mapping[str, Any]] = None) -> Mapping[str, tf.Tensor]:
  """tf.Transform preprocessing_fn (named by module path in the pipeline).

  Args:
    inputs: raw features, `inputs` and `targets` (tf.string [batch]).
    custom_config: optional `vocab_size` (default VOCAB_SIZE), `max_length` (MAX_LENGTH) and
      `max_sentences` (MAX_SENTENCES).

  Returns:
    `inputs`, `targets` (int64 [batch, max_length]) and `inputs_length`, `targets_length` (int64
    [batch]); see the module docstring.
  """
  config = dict(custom_config or {})
  max_length = int(config.get('max_length', MAX_LENGTH))
  texts = {key: tf.reshape(inputs[key], [-1]) for key in (SOURCE_KEY, TARGET_KEY)}
  model_path, converted_path = tft.experimental.ptransform_analyzer(
      inputs=[texts[SOURCE_KEY], texts[TARGET_KEY]],
      ptransform=TrainSentencePiece(int(config.get('vocab_size', VOCAB_SIZE)),
                                    int(config.get('max_sentences', MAX_SENTENCES))),
      output_dtypes=[tf.string, tf.string], output_shapes=[[], []],
      output_asset_default_values=[b'', b''], name='sentencepiece')
  del model_path  # an asset of the transform graph, found by its name (the Trainer's detokenizer)
  tft.annotate_asset(SENTENCEPIECE_ASSET, SENTENCEPIECE_ASSET)
  # Read where it is used (a few hundred KB from the SavedModel's assets): the tokenizer ops take
  # the model as a tensor, and tf.Transform outputs analyzer results as assets or constants.
  model = tf.io.decode_raw(tf.io.read_file(converted_path), tf.uint8)
  outputs = {}
  for key, text in texts.items():
    outputs[key], outputs[key + LENGTH_SUFFIX] = tokenize(model, text, max_length)
  return outputs
