"""MNIST: canonical IDX files, the offline t10k fallback and tf.Transform preprocessing.

Source: LeCun, Y., Cortes, C. & Burges, C. J. C., The MNIST database of handwritten digits
(http://yann.lecun.com/exdb/mnist/), CC BY-SA 3.0 as stated in TensorFlow's `keras.datasets.mnist`
docs. Four IDX files (format in that page): `train-images-idx3-ubyte` (60,000 images, 28x28 uint8,
magic 0x00000803), `train-labels-idx1-ubyte` (60,000 uint8 labels 0-9, magic 0x00000801) and the
`t10k-*` pair (10,000). The download addresses are TensorFlow's mirror (the one
`tf.keras.datasets.mnist` and the seed's official/mnist/dataset.py use).

Checksums:
- `sha256`: of the *uncompressed* IDX bytes, computed here from the complete files in
  ../shared/data/mnist (their `.gz` wrappers are recompressions, so the published MD5s of the
  canonical `.gz` files do not match them, but the IDX bytes do not depend on the wrapper).
- `gz_md5`: the MD5 of each canonical `.gz` as torchvision publishes it (pytorch/vision,
  torchvision/datasets/mnist.py, `MNIST.resources`). For `train-images-idx3-ubyte`, which is not in
  the offline data root, it is the only checksum known: a downloaded or supplied `.gz` copy verifies
  against it; a plain copy cannot be verified (pass it as --train_data, unverified).

Offline fallback: the offline data root has no training images. When `train-images-idx3-ubyte`
is neither there nor downloadable, the run says so and trains on t10k records 0-7,999 and
evaluates on t10k records 8,000-9,999 (`DATASET.fallback`; rows of an IDX file are its records).
Models trained that way see 8,000 images instead of 60,000 and are evaluated on 2,000 images that
are not the canonical test set: their figures are not comparable with published MNIST results. (The
eval records come from t10k's second half, drawn from NIST's original test set, which LeCun's MNIST
page calls harder than the first 5,000.) The same split, unverified, from the command line:
`--train_data=DIR/t10k-images-idx3-ubyte.gz --train_count=8000 --eval_data=<same>
--eval_start=8000`.

Examples (components.idx_example_gen): `image` (PNG bytes of a 28x28 grayscale image), `label`
(int64 0-9), `height`, `width` (int64). The Transform decodes the image inside the graph, so the
exported model takes encoded PNG or JPEG bytes in a tf.Example.
"""

from __future__ import annotations

import tensorflow as tf

from preprocessing import datasets

MIRROR = 'https://storage.googleapis.com/cvdf-datasets/mnist/'
TRAIN_IMAGES = 'train-images-idx3-ubyte'
TRAIN_LABELS = 'train-labels-idx1-ubyte'
TEST_IMAGES = 't10k-images-idx3-ubyte'
TEST_LABELS = 't10k-labels-idx1-ubyte'

# The documented offline split of the 10,000 t10k records (first 8,000 to train, last 2,000 to
# evaluate), used when the training images cannot be had.
FALLBACK_TRAIN_ROWS = (0, 8000)
FALLBACK_EVAL_ROWS = (8000, 2000)

DATASET = datasets.register(datasets.Dataset(
    name='mnist',
    files=(
        datasets.DataFile(
            name=TRAIN_IMAGES, url=MIRROR + TRAIN_IMAGES + '.gz', sha256=None, size=47_040_016,
            gz_md5='f68b3c2dcbeaaa9fbdd348bbdeb94873', companion=TRAIN_LABELS),
        datasets.DataFile(
            name=TRAIN_LABELS, url=MIRROR + TRAIN_LABELS + '.gz',
            sha256='65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5',
            size=60_008, gz_md5='d53e105ee54ea40749a09fcbcd1e9432'),
        datasets.DataFile(
            name=TEST_IMAGES, url=MIRROR + TEST_IMAGES + '.gz',
            sha256='0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7',
            size=7_840_016, gz_md5='9fb629c4189551a2d022fa330f9573f3', companion=TEST_LABELS),
        datasets.DataFile(
            name=TEST_LABELS, url=MIRROR + TEST_LABELS + '.gz',
            sha256='ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2',
            size=10_008, gz_md5='ec29112dd5afa0611ce80d1b7f02629c'),
    ),
    # A split names its images file; its labels file is the companion beside it
    # (components.idx_example_gen.labels_path).
    splits={'train': TRAIN_IMAGES, 'eval': TEST_IMAGES},
    fallback=datasets.Fallback(
        missing=TRAIN_IMAGES,
        splits={'train': TEST_IMAGES},
        row_ranges={'train': FALLBACK_TRAIN_ROWS, 'eval': FALLBACK_EVAL_ROWS},
        notice=(f'training on {TEST_IMAGES} records 0-7,999 and evaluating on its records '
                '8,000-9,999 (not comparable with results on the canonical 60,000 / 10,000 '
                'split).')),
    citation='LeCun, Cortes & Burges, The MNIST database, CC BY-SA 3.0'))

IMAGE_KEY = 'image'
LABEL_KEY = 'label'
HEIGHT_KEY = 'height'
WIDTH_KEY = 'width'
IMAGE_SIZE = 28
NUM_CLASSES = 10
SLICE_FEATURES = (LABEL_KEY,)


def transformed_name(key: str) -> str:
  """Name of the Transform output for raw feature `key`."""
  return key + '_xf'


def decode_images(encoded: tf.Tensor) -> tf.Tensor:
  """Decodes a batch of encoded images to the model's input.

  Args:
    encoded: tf.string [batch] (or [batch, 1]): PNG, JPEG, GIF or BMP bytes, grayscale or color.

  Returns:
    float32 [batch, 28, 28, 1], pixel values in [0, 1] (color images converted to grayscale;
    another size resized bilinearly to 28x28, which leaves a 28x28 image unchanged).

  Raises:
    tf.errors.InvalidArgumentError (when run): bytes that are not a decodable image.
  """
  encoded = tf.reshape(encoded, [-1])

  def decode(data):
    image = tf.io.decode_image(data, channels=1, dtype=tf.uint8, expand_animations=False)
    image = tf.image.resize(tf.cast(image, tf.float32), [IMAGE_SIZE, IMAGE_SIZE])
    return tf.reshape(image, [IMAGE_SIZE, IMAGE_SIZE, 1]) / 255.0

  return tf.map_fn(decode, encoded, fn_output_signature=tf.TensorSpec(
      [IMAGE_SIZE, IMAGE_SIZE, 1], tf.float32))


def preprocessing_fn(inputs):
  """tf.Transform preprocessing for MNIST (named by module path in the Transform component).

  No analyzer: the images are scaled to [0, 1] as the seed does (official/mnist/dataset.py divides
  the uint8 pixels by 255), so the same graph serves at once.

  Args:
    inputs: raw features parsed with the curated schema: `image` tf.string [batch, 1] (encoded
      bytes) and the int64 `label` [batch, 1] (height and width are not used).

  Returns:
    {'image_xf': float32 [batch, 28, 28, 1] in [0, 1], 'label': int64 [batch]}.
  """
  return {
      transformed_name(IMAGE_KEY): decode_images(inputs[IMAGE_KEY]),
      LABEL_KEY: tf.reshape(inputs[LABEL_KEY], [-1]),
  }
