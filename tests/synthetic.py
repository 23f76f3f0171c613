"""Small synthetic inputs in each model's canonical raw format, written by the tests themselves
(no ../shared/data): a few hundred rows with a learnable label, values inside the curated schema's
domains so that the ExampleValidator lets them through.

Each writer takes a folder and returns {split: file} as the pipeline's `split_files`. The side
files some models read are written by the same writers (ImageNet's synsets.txt, beside the class
folders) or by their own (`bert_vocab`: the WordPiece vocabulary of MRPC's Transform).
"""

from __future__ import annotations

import gzip
import io
import os
import pickle
import random
import struct
import tarfile
from typing import Dict, List, Sequence, Tuple

import numpy as np
from google.protobuf import text_format
from tensorflow_metadata.proto.v0 import schema_pb2

from pipelines import spec as spec_lib
from preprocessing import census, cifar10, higgs, imagenet, mnist, mrpc, t2t_subwords, wmt


def _schema(name: str) -> schema_pb2.Schema:
  with open(spec_lib.curated_schema(name), encoding='utf-8') as f:
    return text_format.Parse(f.read(), schema_pb2.Schema())


def census_files(folder: str, rows: Dict[str, int], seed: int = 0) -> Dict[str, str]:
  """UCI Adult lines (adult.data's layout: 15 comma-separated fields), every value drawn from the
  curated schema's domain; the label is >50K for people over 40 with 13+ years of education."""
  rng = random.Random(seed)
  schema = _schema('census')
  domains = {d.name: list(d.value) for d in schema.string_domain}
  features = {f.name: f for f in schema.feature}
  files = {}
  for split, count in rows.items():
    lines = []
    for _ in range(count):
      row = {}
      for column in census.COLUMNS[:-1]:
        feature = features[column]
        if feature.HasField('int_domain'):
          low, high = feature.int_domain.min, min(feature.int_domain.max, 500_000)
          row[column] = str(rng.randint(low, high))
        else:
          row[column] = rng.choice(domains[feature.domain])
      rich = int(row['age']) > 40 and int(row['education_num']) >= 13
      row[census.LABEL_KEY] = census.LABEL_VALUES[int(rich)]
      lines.append(', '.join(row[c] for c in census.COLUMNS))
    path = os.path.join(folder, f'adult.{split}')
    with open(path, 'w', encoding='utf-8') as f:
      f.write('\n'.join(lines) + '\n')
    files[split] = path
  return files


def higgs_files(folder: str, rows: Dict[str, int], seed: int = 0) -> Dict[str, str]:
  """HIGGS.csv lines (label, then 28 features, in UCI's float format), normal values (absolute
  where the schema's float domain starts at 0: magnitudes and masses); the label is signal when
  the first two features sum above 1."""
  rng = np.random.default_rng(seed)
  features = {f.name: f for f in _schema('higgs').feature}
  non_negative = np.array([features[name].HasField('float_domain')
                           and features[name].float_domain.HasField('min')
                           and features[name].float_domain.min >= 0 for name in higgs.FEATURES])
  files = {}
  for split, count in rows.items():
    values = rng.normal(size=(count, len(higgs.FEATURES)))
    values[:, non_negative] = np.abs(values[:, non_negative])
    labels = (values[:, 0] + values[:, 1] > 1).astype(float)
    path = os.path.join(folder, f'HIGGS.{split}.csv.gz')
    with gzip.open(path, 'wt') as f:
      for label, row in zip(labels, values):
        f.write(','.join(f'{v:.18e}' for v in (label, *row)) + '\n')
    files[split] = path
  return files


def movielens_files(folder: str, users: int = 40, items: int = 150, per_user: int = 12,
                    seed: int = 0) -> Dict[str, str]:
  """MovieLens 100K's u.data (user, item, rating, timestamp, tab-separated): each user rates
  `per_user` of the `items` items, leaving the 99 sampled negatives of leave-one-out room."""
  rng = random.Random(seed)
  lines = []
  for user in range(1, users + 1):
    for item in rng.sample(range(1, items + 1), per_user):
      lines.append(f'{user}\t{item}\t{rng.randint(1, 5)}\t{880000000 + rng.randint(0, 10 ** 6)}')
  path = os.path.join(folder, 'u.data')
  with open(path, 'w', encoding='utf-8') as f:
    f.write('\n'.join(lines) + '\n')
  return {'ratings': path}


def mnist_files(folder: str, rows: Dict[str, int], seed: int = 0) -> Dict[str, str]:
  """IDX image and label files under the canonical names (the labels file is the images file's
  companion beside it): 28 x 28 uint8 images, a bright square whose corner encodes the digit."""
  rng = np.random.default_rng(seed)
  names = {'train': (mnist.TRAIN_IMAGES, mnist.TRAIN_LABELS),
           'eval': (mnist.TEST_IMAGES, mnist.TEST_LABELS)}
  files = {}
  for split, count in rows.items():
    labels = rng.integers(0, mnist.NUM_CLASSES, size=count).astype(np.uint8)
    images = rng.integers(0, 40, size=(count, 28, 28)).astype(np.uint8)
    for i, label in enumerate(labels):
      row, col = divmod(int(label), 5)
      images[i, 4 + 10 * row:12 + 10 * row, 2 + 5 * col:6 + 5 * col] = 255
    images_name, labels_name = names[split]
    with open(os.path.join(folder, images_name), 'wb') as f:
      f.write(struct.pack('>IIII', 0x803, count, 28, 28) + images.tobytes())
    with open(os.path.join(folder, labels_name), 'wb') as f:
      f.write(struct.pack('>II', 0x801, count) + labels.tobytes())
    files[split] = os.path.join(folder, images_name)
  return files


def _class_image(rng: np.random.Generator, label: int, height: int, width: int,
                 num_classes: int = 10) -> np.ndarray:
  """uint8 [height, width, 3]: dim noise with a bright square whose place and colour encode
  `label` (learnable by a small CNN)."""
  image = rng.integers(0, 60, size=(height, width, 3)).astype(np.uint8)
  row, col = divmod(label % num_classes, 5)
  side = max(min(height, width) // 5, 2)
  top, left = row * (height - side) // 2, col * (width - side) // 4
  image[top:top + side, left:left + side] = (255, 40 + 20 * (label % 10), 255 - 20 * (label % 10))
  return image


class _Python2Pickler(pickle._Pickler):  # pylint: disable=protected-access  (pure-Python pickler)
  """Pickles bytes as Python 2 strings (SHORT_BINSTRING / BINSTRING), as Python 2's cPickle wrote
  the real CIFAR batches; Python 3 reads them back as bytes with `encoding='bytes'`. (Python 3's
  own protocol 2 writes bytes as `_codecs.encode(...)` calls, which no reader of the real files
  has to admit.)"""

  # pickle's own savers of the types a batch holds (classes and functions are saved by name):
  # dill, imported with Beam, puts its own into pickle._Pickler's table.
  dispatch = {t: getattr(pickle._Pickler, f'save_{name}')  # pylint: disable=protected-access
              for t, name in ((type(None), 'none'), (bool, 'bool'), (int, 'long'),
                              (float, 'float'), (str, 'str'), (tuple, 'tuple'), (list, 'list'),
                              (dict, 'dict'))}

  def _save_python2_str(self, obj):
    if len(obj) < 256:
      self.write(pickle.SHORT_BINSTRING + bytes([len(obj)]) + obj)
    else:
      self.write(pickle.BINSTRING + struct.pack('<i', len(obj)) + obj)
    self.memoize(obj)

  dispatch[bytes] = _save_python2_str


def _python2_pickle(value) -> bytes:
  out = io.BytesIO()
  _Python2Pickler(out, protocol=2).dump(value)
  return out.getvalue()


def cifar10_files(folder: str, rows: Dict[str, int], train_batches: int = 2,
                  seed: int = 0) -> Dict[str, str]:
  """`cifar-10-python.tar.gz` as the CIFAR page ships it: `cifar-10-batches-py/` holding
  `data_batch_1..N` (the training rows, spread over `train_batches` members), `test_batch` and
  `batches.meta`, each a protocol-2 pickle in the Python 2 form of the real files
  (`_Python2Pickler`) of a dict with bytes keys: `data` uint8 [N, 3072] (the red, green and blue
  32x32 planes of each image), `labels` (a list of ints), `batch_label` and `filenames`. Both
  splits read the one archive."""
  rng = np.random.default_rng(seed)
  members = []
  for split, count in rows.items():
    names = ([f'data_batch_{i + 1}' for i in range(train_batches)] if split == 'train'
             else ['test_batch'])
    for index, name in enumerate(names):
      size = count // len(names) + (index < count % len(names))
      labels = [int(label) for label in rng.integers(0, cifar10.NUM_CLASSES, size=size)]
      images = np.stack([_class_image(rng, label, 32, 32) for label in labels])
      batch = {b'batch_label': f'{name.replace("_", " ")} (synthetic)'.encode(),
               b'labels': labels,
               b'data': images.transpose(0, 3, 1, 2).reshape(size, 3 * 32 * 32),
               b'filenames': [f'synthetic_{name}_{i}.png'.encode() for i in range(size)]}
      members.append((name, _python2_pickle(batch)))
  members.append(('batches.meta', _python2_pickle(
      {b'num_cases_per_batch': max(rows.values()), b'num_vis': 3072,
       b'label_names': [name.encode() for name in cifar10.CLASS_NAMES]})))
  path = os.path.join(folder, cifar10.ARCHIVE + '.gz')
  with tarfile.open(path, 'w:gz') as tar:
    for name, data in members:
      info = tarfile.TarInfo(f'cifar-10-batches-py/{name}')
      info.size = len(data)
      tar.addfile(info, io.BytesIO(data))
  return {split: path for split in rows}


def _encode(image: np.ndarray, image_format: str) -> bytes:
  from PIL import Image  # pylint: disable=import-outside-toplevel  (pillow: via tensorboard)
  out = io.BytesIO()
  Image.fromarray(image.squeeze()).save(out, format=image_format, quality=90)
  return out.getvalue()


def imagenet_wnids() -> List[str]:
  """1,000 distinct synthetic wnids in ImageNet's form (`n` and 8 digits), sorted."""
  return [f'n{90000000 + 1000 * i:08d}' for i in range(imagenet.NUM_CLASSES)]


def imagenet_files(folder: str, classes: int = 8, train_per_class: int = 6,
                   eval_images: int = 16, seed: int = 0) -> Dict[str, str]:
  """ImageNet in the layout of the TPU tools' `imagenet_to_gcs.py`: `synsets.txt` (1,000 wnids in
  label order, `imagenet_wnids`), `train/<wnid>/<wnid>_<n>.JPEG` for the first `classes` classes
  and the flat `validation/ILSVRC2012_val_<n>.JPEG` labelled by `synset_labels.txt` beside it (one
  wnid a line, in file-name order). Images of assorted sizes (ImageNet's come in every size),
  JPEG, and as in ILSVRC-2012's training set one grayscale JPEG and one PNG named `.JPEG`.
  Returns {'train': train folder, 'eval': validation folder}; synsets.txt is
  `os.path.join(folder, imagenet.SYNSETS)`."""
  rng = np.random.default_rng(seed)
  wnids = imagenet_wnids()
  with open(os.path.join(folder, imagenet.SYNSETS), 'w', encoding='utf-8') as f:
    f.write('\n'.join(wnids) + '\n')

  def image(label):
    return _class_image(rng, label, int(rng.integers(36, 65)), int(rng.integers(36, 65)), classes)

  train = os.path.join(folder, 'train')
  for label in range(classes):
    os.makedirs(os.path.join(train, wnids[label]))
    for n in range(train_per_class):
      pixels, image_format = image(label), 'JPEG'
      if (label, n) == (1, 0):
        pixels = pixels.mean(axis=2).astype(np.uint8)  # a grayscale JPEG
      elif (label, n) == (2, 0):
        image_format = 'PNG'  # ILSVRC-2012 has a PNG named .JPEG
      with open(os.path.join(train, wnids[label], f'{wnids[label]}_{n + 1}.JPEG'), 'wb') as f:
        f.write(_encode(pixels, image_format))
  validation = os.path.join(folder, 'validation')
  os.makedirs(validation)
  labels = [int(label) for label in rng.integers(0, classes, size=eval_images)]
  for n, label in enumerate(labels):
    with open(os.path.join(validation, f'ILSVRC2012_val_{n + 1:08d}.JPEG'), 'wb') as f:
      f.write(_encode(image(label), 'JPEG'))
  with open(os.path.join(folder, 'synset_labels.txt'), 'w', encoding='utf-8') as f:
    f.write('\n'.join(wnids[label] for label in labels) + '\n')
  return {'train': train, 'eval': validation}


_WORDS = ('the', 'a', 'company', 'said', 'shares', 'market', 'year', 'police', 'court', 'report',
          'government', 'million', 'percent', 'officials', 'thursday', 'monday', 'price', 'bank',
          'state', 'new', 'first', 'quarter', 'profit', 'sales', 'rose', 'fell', 'announced',
          'expected', 'president', 'city', 'people', 'week', 'investors', 'today', 'workers',
          'plan', 'deal', 'billion', 'analysts', 'stock')


def mrpc_files(folder: str, rows: Dict[str, int], seed: int = 0) -> Dict[str, str]:
  """GLUE's MRPC `train.tsv` and `dev.tsv`: a UTF-8 byte-order mark and the header `Quality	#1 ID
  	#2 ID	#1 String	#2 String`, then one pair a line, tab-separated. About two thirds are
  paraphrases (label 1: the same words, two of them swapped, MRPC's share); the others pair
  unrelated sentences. Every word is in `bert_vocab`'s vocabulary."""
  rng = random.Random(seed)

  def sentence():
    words = [rng.choice(_WORDS) for _ in range(rng.randint(6, 12))]
    return ' '.join(words).capitalize() + rng.choice(('.', ' .', ', they said.'))

  names = {'train': mrpc.TRAIN, 'eval': mrpc.DEV}
  files, next_id = {}, 1000
  for split, count in rows.items():
    lines = ['\t'.join(mrpc.COLUMNS)]
    for i in range(count):
      first = sentence()
      label = int(i % 3 != 2)
      if label:
        words = first.split(' ')
        j = rng.randrange(len(words) - 1)
        words[j], words[j + 1] = words[j + 1], words[j]
        second = ' '.join(words)
      else:
        second = sentence()
      lines.append(f'{label}\t{next_id}\t{next_id + 1}\t{first}\t{second}')
      next_id += 2
    path = os.path.join(folder, names[split])
    with open(path, 'w', encoding='utf-8') as f:
      f.write('\ufeff' + '\n'.join(lines) + '\n')
    files[split] = path
  return files


def bert_vocab(folder: str) -> str:
  """A WordPiece vocabulary in BERT's uncased `vocab.txt` layout (`[PAD]` first, then `[UNK]`,
  `[CLS]`, `[SEP]`, `[MASK]`, punctuation, words and `##` continuations), covering `mrpc_files`'
  words; returns its path."""
  tokens = ['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]', '.', ',', "'", '"']
  tokens += sorted(set(_WORDS) | {'they'})
  tokens += ['##s', '##ed', '##ing', '##ly']
  path = os.path.join(folder, 'vocab.txt')
  with open(path, 'w', encoding='utf-8') as f:
    f.write('\n'.join(tokens) + '\n')
  return path


# English -> German, word for word (nouns capitalized in German): a translation a Transformer can
# learn from a few hundred pairs.
_LEXICON = {
    'the': 'die', 'a': 'eine', 'small': 'kleine', 'big': 'große', 'old': 'alte', 'new': 'neue',
    'house': 'Haus', 'city': 'Stadt', 'car': 'Auto', 'dog': 'Hund', 'cat': 'Katze',
    'government': 'Regierung', 'market': 'Markt', 'bank': 'Bank', 'president': 'Präsident',
    'sees': 'sieht', 'buys': 'kauft', 'sells': 'verkauft', 'likes': 'mag', 'finds': 'findet',
    'today': 'heute', 'again': 'wieder', 'also': 'auch', 'now': 'jetzt', 'and': 'und',
}


def _pairs(rng: random.Random, count: int) -> List[Tuple[str, str]]:
  english = list(_LEXICON)
  pairs = []
  for _ in range(count):
    words = [rng.choice(english) for _ in range(rng.randint(3, 9))]
    pairs.append((' '.join(words).capitalize() + '.',
                  ' '.join(_LEXICON[w] for w in words) + '.'))
  return [(e, g[0].upper() + g[1:]) for e, g in pairs]


def _subword_vocab() -> List[str]:
  """A T2T SubwordTextEncoder vocabulary (`<pad>`, `<EOS>`, then subtokens ending a token with
  `_`) for `_LEXICON`'s words: words longer than five letters are cut into two subtokens."""
  subtokens = ['<pad>', '<EOS>', '._']
  words = {w for pair in _LEXICON.items() for w in pair}
  for word in sorted(words | {w[0].upper() + w[1:] for w in words}):  # sentences start upper-case
    subtokens += [word[:3], word[3:] + '_'] if len(word) > 5 else [word + '_']
  return list(dict.fromkeys(subtokens))


def _subword_ids(sentence: str, index: Dict[str, int]) -> List[int]:
  """T2T's encoding of a sentence of words and a final `.`: one token per word (the space
  between two words is implied), `.` a token of its own, EOS (1) at the end."""
  ids = []
  for word in sentence[:-1].split(' '):
    pieces = [word[:3], word[3:] + '_'] if len(word) > 5 else [word + '_']
    ids += [index[p] for p in pieces]
  return ids + [index['._'], t2t_subwords.EOS_ID]


def wmt_files(folder: str, train_pairs: int = 300, eval_pairs: int = 20, shards: int = 2,
              seed: int = 0) -> Dict[str, str]:
  """WMT English-German in the registered layouts: the training pairs as the `wmt32k/` folder of
  Tensor2Tensor subword TFRecords (`wmt32k-train-0000N-of-0000M` shards of tf.Examples with int64
  `inputs` and `targets` ids ending in EOS, a `wmt32k-dev-*` shard the train split must skip, and
  the `vocab.ende.32768` SubwordTextEncoder vocabulary that decodes them), and the eval split as
  the line-aligned pair `newstest/newstest2014.en` / `.de`. The German side translates the English
  word for word (`_LEXICON`). Returns {'train': the wmt32k folder, 'eval': the .en file}."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  rng = random.Random(seed)
  records = os.path.join(folder, wmt.WMT32K)
  os.makedirs(records)
  vocab = _subword_vocab()
  with open(os.path.join(records, 'vocab.ende.32768'), 'w', encoding='utf-8') as f:
    f.write(''.join(f"'{subtoken}'\n" for subtoken in vocab))
  index = {subtoken: i for i, subtoken in enumerate(vocab)}
  decoder = t2t_subwords.SubwordDecoder(vocab)

  def write_shard(name, pairs):
    with tf.io.TFRecordWriter(os.path.join(records, name)) as writer:
      for english, german in pairs:
        ids = {wmt.SOURCE_KEY: _subword_ids(english, index),
               wmt.TARGET_KEY: _subword_ids(german, index)}
        # The records decode back to the text they were made from (T2T's format, checked here).
        assert (decoder.decode(ids[wmt.SOURCE_KEY]), decoder.decode(ids[wmt.TARGET_KEY])) == (
            english, german)
        writer.write(tf.train.Example(features=tf.train.Features(feature={
            key: tf.train.Feature(int64_list=tf.train.Int64List(value=value))
            for key, value in ids.items()})).SerializeToString())

  train = _pairs(rng, train_pairs)
  for shard in range(shards):
    write_shard(f'wmt32k-train-{shard:05d}-of-{shards:05d}', train[shard::shards])
  write_shard('wmt32k-dev-00000-of-00001', _pairs(rng, 5))
  newstest = os.path.join(folder, 'newstest')
  os.makedirs(newstest)
  test = _pairs(rng, eval_pairs)
  for side, language in enumerate(('en', 'de')):
    with open(os.path.join(newstest, f'newstest2014.{language}'), 'w', encoding='utf-8') as f:
      f.write('\n'.join(pair[side] for pair in test) + '\n')
  return {'train': records, 'eval': os.path.join(newstest, 'newstest2014.en')}
