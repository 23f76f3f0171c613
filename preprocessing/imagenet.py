"""ImageNet (ILSVRC-2012 classification): folder layouts, the synsets file and the offline sample.

Source: Russakovsky et al. 2015, ImageNet Large Scale Visual Recognition Challenge
(https://image-net.org/challenges/LSVRC/2012/); the images are under ImageNet's terms of access
(non-commercial research and education). The archives sit behind an image-net.org login, so there
is no download: a data root must hold them, in the layout of the TPU tools' `imagenet_to_gcs.py`:

- `imagenet/train/<wnid>/*.JPEG`: 1,281,167 images in 1,000 class folders;
- `imagenet/validation/*.JPEG` with `imagenet/synset_labels.txt` (one wnid per line, for the
  images in sorted file-name order), or `imagenet/validation/<wnid>/*.JPEG`;
- `imagenet/synsets.txt`: the 1,000 wnids in label order (sorted; tensorflow/models research/slim/
  datasets/imagenet_lsvrc_2015_synsets.txt), checked by SHA-256.

The folders have no published checksum and are not verified.

Offline: ../shared/data/imagenet holds `synsets.txt` and `sample/<wnid>/*.JPEG`, one real image for
each of the first 100 classes (EliSchwartz/imagenet-sample-images), verified per class folder.
Without `train/`, the run says so and trains and evaluates on the sample (`DATASET.fallback`).
That proves ingestion, training steps, export and serving, not accuracy: the sample has one image
per class and no held-out images.

No Transform: decoded 224x224 images would be 600 KB each. The examples keep the JPEG bytes; the
Trainer's input pipeline decodes and crops them (random crop and flip to train,
`preprocessing.images.decode_and_crop`), and the serving signature applies the evaluation crop
inside the model, so a client sends JPEG (or PNG) bytes.
"""

from __future__ import annotations

import os
from typing import Tuple

from preprocessing import datasets

SYNSETS = 'synsets.txt'
SYNSETS_URL = ('https://raw.githubusercontent.com/tensorflow/models/master/research/slim/'
               'datasets/imagenet_lsvrc_2015_synsets.txt')
NUM_CLASSES = 1000
TRAIN_EXAMPLES = 1_281_167  # ILSVRC-2012 training images
IMAGE_KEY = 'image'
LABEL_KEY = 'label'
IMAGE_SIZE = 224
SLICE_FEATURES: Tuple[str, ...] = ()  # 1,000 per-class slices say little on 50 images each

_NOT_PUBLIC = ('ImageNet\'s archives need an image-net.org login and have no published checksum '
               'for this layout')

# The sample's class folders (../shared/data/SHA256SUMS lists their files; each digest here is the
# SHA-256 of its folder's sha256sum listing, `datasets.tree_digest`).
_SAMPLE_TREE_FILE = os.path.join(os.path.dirname(__file__), 'checksums', 'imagenet_sample.txt')


def _sample_tree():
  with open(_SAMPLE_TREE_FILE, encoding='utf-8') as f:
    return dict(line.split() for line in f if line.strip() and not line.startswith('#'))


DATASET = datasets.register(datasets.Dataset(
    name='imagenet',
    files=(
        datasets.DataFile(name=SYNSETS, url=SYNSETS_URL, size=10_000,
                          sha256='70002b0ff5de60a3a17a82dbfcff291931f96225ddf941ad2e182fc39e183d15'),
        datasets.DataFile(name='train', url=None, sha256=None, unverifiable=_NOT_PUBLIC),
        datasets.DataFile(name='validation', url=None, sha256=None, unverifiable=_NOT_PUBLIC),
        datasets.DataFile(name='sample', url=None, sha256=None, tree_sha256=_sample_tree()),
    ),
    splits={'train': 'train', 'eval': 'validation'},
    sample_splits={'train': 'sample', 'eval': 'sample'},
    fallback=datasets.Fallback(
        missing='train', splits={'train': 'sample', 'eval': 'sample'}, row_ranges={},
        notice=('training and evaluating on the 100-image sample/ (one image for each of the '
                'first 100 classes): this proves the pipeline, not accuracy.')),
    citation='Russakovsky et al. 2015 (ILSVRC-2012); ImageNet terms of access'))


def class_names(data_root_or_file: str) -> Tuple[str, ...]:
  """The 1,000 wnids in label order, from a synsets file (one per line).

  Raises:
    ValueError: not 1,000 distinct wnids.
  """
  with open(data_root_or_file, encoding='utf-8') as f:
    names = tuple(line.strip() for line in f if line.strip())
  if len(names) != NUM_CLASSES or len(set(names)) != NUM_CLASSES:
    raise ValueError(f'{data_root_or_file}: expected {NUM_CLASSES} distinct wnids, one per line, '
                     f'got {len(names)} lines ({len(set(names))} distinct)')
  return names
