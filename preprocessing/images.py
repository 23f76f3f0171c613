"""Image decoding and the standard augmentations, as TensorFlow ops on batches.

Used inside tf.Transform graphs (CIFAR-10 decodes in Transform), in the Trainer's tf.data input
(augmentation, ImageNet decoding) and in the exported serving signature (ImageNet's evaluation
crop), so that training and serving share one definition.

Sources of the methods: CIFAR augmentation (pad 4 pixels, random 32x32 crop, random horizontal
flip) from He et al. 2016, section 4.2, as the seed's official/vision/image_classification/
cifar_preprocessing.py applies it; ImageNet's Inception-style random crop (sampled box covering
5-100% of the image, aspect ratio 3/4-4/3, 10 attempts, else the center crop) and the evaluation's
central crop of 224/256 of the shorter side (Szegedy et al. 2015; the seed's
official/vision/image_classification/resnet/imagenet_preprocessing.py and official/vision/ops/
preprocess_ops.py).
"""

from __future__ import annotations

from typing import Tuple

import tensorflow as tf

# Model Garden's ImageNet RGB statistics, on the 0-255 scale (official/vision/ops/preprocess_ops.py
# MEAN_RGB, STDDEV_RGB).
IMAGENET_MEAN_RGB = (0.485 * 255, 0.456 * 255, 0.406 * 255)
IMAGENET_STDDEV_RGB = (0.229 * 255, 0.224 * 255, 0.225 * 255)
CROP_PADDING = 32  # the evaluation crop is image_size / (image_size + 32) of the shorter side


def _flat(encoded: tf.Tensor) -> tf.Tensor:
  return tf.reshape(encoded, [-1])


def decode_resized(encoded: tf.Tensor, size: int, channels: int = 3) -> tf.Tensor:
  """Decodes a batch of encoded images to one size.

  Args:
    encoded: tf.string [batch] or [batch, 1]: JPEG, PNG, GIF or BMP bytes.
    size: output height and width; an image of another size is resized bilinearly (a `size` x
      `size` image is left as it is).
    channels: 3 (RGB; grayscale is repeated) or 1.

  Returns:
    float32 [batch, size, size, channels], pixel values in [0, 255].

  Raises:
    tf.errors.InvalidArgumentError (when run): bytes that are not a decodable image.
  """
  def decode(data):
    image = tf.io.decode_image(data, channels=channels, dtype=tf.uint8, expand_animations=False)
    image = tf.image.resize(tf.cast(image, tf.float32), [size, size])
    return tf.reshape(image, [size, size, channels])

  return tf.map_fn(decode, _flat(encoded),
                   fn_output_signature=tf.TensorSpec([size, size, channels], tf.float32))


def pad_crop_flip(images: tf.Tensor, padding: int = 4) -> tf.Tensor:
  """CIFAR training augmentation of a batch: zero-pad `padding` pixels on each side, crop a random
  window of the original size, flip left-right with probability 1/2 (each image on its own).

  Args:
    images: float32 [batch, height, width, channels].

  Returns:
    float32, the shape of `images`.
  """
  shape = tf.shape(images)
  padded = tf.pad(images, [[0, 0], [padding, padding], [padding, padding], [0, 0]])
  crop = tf.stack([shape[1], shape[2], shape[3]])
  cropped = tf.map_fn(lambda image: tf.image.random_crop(image, crop), padded)
  return tf.ensure_shape(tf.image.random_flip_left_right(cropped), images.shape)


def _center_crop_window(image_shape: tf.Tensor, size: int) -> tf.Tensor:
  """[y, x, height, width] of the central square of size/(size + 32) of the shorter side."""
  height, width = image_shape[0], image_shape[1]
  side = tf.cast(tf.cast(size / (size + CROP_PADDING), tf.float32)
                 * tf.cast(tf.minimum(height, width), tf.float32), tf.int32)
  return tf.stack([(height - side + 1) // 2, (width - side + 1) // 2, side, side])


def _random_crop_window(image_shape: tf.Tensor, area_range: Tuple[float, float] = (0.05, 1.0),
                        aspect_ratio_range: Tuple[float, float] = (0.75, 1.33),
                        attempts: int = 10) -> tf.Tensor:
  """[y, x, height, width] of an Inception-style random crop (the seed's parameters)."""
  begin, crop_size, _ = tf.image.sample_distorted_bounding_box(
      image_shape, bounding_boxes=tf.constant([0.0, 0.0, 1.0, 1.0], shape=[1, 1, 4]),
      min_object_covered=0.1, aspect_ratio_range=aspect_ratio_range, area_range=area_range,
      max_attempts=attempts, use_image_if_no_bounding_boxes=True)
  return tf.stack([begin[0], begin[1], crop_size[0], crop_size[1]])


def decode_and_crop(encoded: tf.Tensor, size: int, training: bool) -> tf.Tensor:
  """ImageNet input of a batch: decode, crop, resize to `size`, and (training) flip.

  Training: a random Inception-style crop and a random left-right flip; evaluation and serving:
  the central crop of size/(size + 32) of the shorter side (224/256 for 224). JPEGs are decoded
  inside the crop window only (`tf.image.decode_and_crop_jpeg`); PNGs and other formats whole.

  Args:
    encoded: tf.string [batch] or [batch, 1].
    size: output height and width (224 for ResNet-50).
    training: which crop.

  Returns:
    float32 [batch, size, size, 3], pixel values in [0, 255].

  Raises:
    tf.errors.InvalidArgumentError (when run): bytes that are not a decodable image.
  """
  def window(shape):
    return _random_crop_window(shape) if training else _center_crop_window(shape, size)

  def decode_jpeg_window(data):  # decodes the window only
    return tf.image.decode_and_crop_jpeg(data, window(tf.image.extract_jpeg_shape(data)),
                                         channels=3)

  def decode_then_crop(data):  # PNG, GIF, BMP: decoded whole, once
    image = tf.io.decode_image(data, channels=3, dtype=tf.uint8, expand_animations=False)
    y, x, height, width = tf.unstack(window(tf.shape(image)))
    return tf.image.crop_to_bounding_box(image, y, x, height, width)

  def crop(data):
    image = tf.cond(tf.io.is_jpeg(data), lambda: decode_jpeg_window(data),
                    lambda: decode_then_crop(data))
    image = tf.image.resize(tf.cast(image, tf.float32), [size, size])
    if training:
      image = tf.image.random_flip_left_right(image)
    return tf.reshape(image, [size, size, 3])

  return tf.map_fn(crop, _flat(encoded), fn_output_signature=tf.TensorSpec([size, size, 3],
                                                                             tf.float32))
