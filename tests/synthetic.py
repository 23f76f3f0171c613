"""Small synthetic inputs in each model's canonical raw format, written by the tests themselves
(no ../shared/data): a few hundred rows with a learnable label, values inside the curated schema's
domains so that the ExampleValidator lets them through.

Each writer takes a folder and returns {split: file} as the pipeline's `split_files`.
"""

from __future__ import annotations

import gzip
import os
import random
import struct
from typing import Dict

import numpy as np
from google.protobuf import text_format
from tensorflow_metadata.proto.v0 import schema_pb2

from pipelines import spec as spec_lib
from preprocessing import census, higgs, mnist


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
