"""Image classification tasks of the shared trainer: ResNets on CIFAR-10 and on ImageNet.

Both train with SGD and momentum 0.9 under the seed's step schedule, expressed as fractions of the
run so that it keeps its shape at any step budget (`StepDecay`); the run's length is
`--train_steps`:

- CIFAR-10 (the seed's official/vision/image_classification/resnet_cifar_main.py): batch 128,
  learning rate 0.1 x batch / 128, divided by 10 at epochs 91 and 136 of 182 (50.0% and 74.7% of
  the run), no warmup. The seed's full schedule is `--train_steps=71094` (182 epochs of 50,000
  images at batch 128), which puts the drops at its epochs 91 and 136; a CPU budget of a few
  thousand steps keeps the same shape.
- ImageNet (the seed's resnet_imagenet_main.py, after Goyal et al. 2017): learning rate 0.1 x batch
  / 256, linear warmup over the first 5 of 90 epochs, then divided by 10 at epochs 30, 60 and 80;
  label smoothing 0.1 (Model Garden's ResNet-50 configuration). The full schedule is
  `--train_steps=450360 --batch_size=256` (90 epochs of 1,281,167 images).

Model types: CIFAR `resnet56` (the seed's default), `resnet20`, `resnet32`, `resnet44`,
`resnet110`; ImageNet `resnet50` (v1.5), `resnet101`, `resnet152`, with `width_multiplier` as a
hyperparameter. Both allow mixed precision (`--mixed_precision=float16|bfloat16`).

Serving (`serving_default`): serialized tf.Examples with `image` (JPEG or PNG bytes) ->
`probabilities` float32 [batch, classes] and `class_ids` int64 [batch, 1].
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Sequence

import tensorflow as tf
import tf_keras

from model_fns import resnet
from model_fns.trainer import KerasTask, ModelInputs
from preprocessing import cifar10, images, imagenet


class StepDecay(tf_keras.optimizers.schedules.LearningRateSchedule):
  """Linear warmup, then a piecewise-constant learning rate, over a run of `total_steps`.

  lr(step) = base * (step + 1) / warmup_steps during the warmup, then base * multipliers[i] after
  boundaries[i] (fractions of `total_steps`, increasing), else base.
  """

  def __init__(self, base: float, total_steps: int, boundaries: Sequence[float],
               multipliers: Sequence[float], warmup: float = 0.0):
    """Args:
      base: the peak learning rate.
      total_steps: the run's training steps (> 0).
      boundaries: where each multiplier starts, as fractions of the run, in (0, 1), increasing.
      multipliers: one per boundary.
      warmup: fraction of the run over which the rate rises linearly to `base`.

    Raises:
      ValueError: a non-positive run, boundaries out of order or range, or not one multiplier
        per boundary.
    """
    super().__init__()
    if total_steps <= 0 or len(boundaries) != len(multipliers) or list(boundaries) != sorted(
        boundaries) or any(not 0 < b < 1 for b in boundaries) or not 0 <= warmup < 1:
      raise ValueError(f'bad schedule: {total_steps} steps, boundaries {list(boundaries)}, '
                       f'multipliers {list(multipliers)}, warmup {warmup}')
    self.base, self.total_steps, self.warmup = float(base), int(total_steps), float(warmup)
    self.boundaries, self.multipliers = list(boundaries), list(multipliers)
    self._steps = [max(int(round(b * total_steps)), 1) for b in boundaries]
    self._warmup_steps = int(round(warmup * total_steps))

  def __call__(self, step):
    step = tf.cast(step, tf.float32)
    rate = tf_keras.optimizers.schedules.PiecewiseConstantDecay(
        [s - 0.5 for s in self._steps],  # the new rate from step `s` (counted from 0) on
        [self.base] + [self.base * m for m in self.multipliers])(
            step) if self._steps else tf.constant(self.base)
    if self._warmup_steps:
      rate = tf.where(step < self._warmup_steps,
                      self.base * (step + 1.0) / float(self._warmup_steps), rate)
    return rate

  def get_config(self) -> Dict[str, Any]:
    return {'base': self.base, 'total_steps': self.total_steps, 'boundaries': self.boundaries,
            'multipliers': self.multipliers, 'warmup': self.warmup}


class _ResNetTask(KerasTask):
  """SGD with momentum under the task's `StepDecay`, sparse cross-entropy, top-1 accuracy."""

  supports_mixed_precision = True
  classification_signature = True  # TF Serving classify: class ids '0' .. 'C-1'
  num_classes: int
  reference_batch: int  # the batch at which the base learning rate is given
  boundaries: Sequence[float]
  multipliers: Sequence[float] = (0.1, 0.01)
  warmup: float = 0.0

  def build_optimizer(self):
    """SGD, momentum 0.9, learning rate `learning_rate` x batch / reference batch under the seed's
    schedule over `train_steps` (set by the trainer)."""
    base = self.hparams['learning_rate'] * (self.batch_size or self.reference_batch) / (
        self.reference_batch)
    schedule = StepDecay(base, self.train_steps or 1, self.boundaries, self.multipliers,
                         self.warmup)
    return tf_keras.optimizers.SGD(schedule, momentum=0.9)

  def build_losses(self):
    if self.hparams.get('label_smoothing'):  # sparse labels: smoothing needs the one-hot form
      smoothing = self.hparams['label_smoothing']
      num_classes = self.num_classes

      def loss(labels, probabilities):
        one_hot = tf.one_hot(tf.cast(tf.reshape(labels, [-1]), tf.int32), num_classes)
        return tf_keras.losses.categorical_crossentropy(one_hot, probabilities,
                                                        label_smoothing=smoothing)
      return loss
    return tf_keras.losses.SparseCategoricalCrossentropy()

  def build_metrics(self) -> List[tf_keras.metrics.Metric]:
    return [tf_keras.metrics.SparseCategoricalAccuracy(name='accuracy')]


class CifarResNetTask(_ResNetTask):
  """The CIFAR ResNet of depth 6n + 2 over the Transform's `image_xf` (float32 [32, 32, 3] in
  [0, 255]): pad-crop-flip augmentation in training, per-image standardization in the model."""

  label_key = cifar10.LABEL_KEY
  model_types = ('resnet56', 'resnet20', 'resnet32', 'resnet44', 'resnet110')
  num_classes = cifar10.NUM_CLASSES
  reference_batch = 128
  boundaries = (91 / 182, 136 / 182)
  default_hparams = {
      'learning_rate': 0.1,  # seed BASE_LEARNING_RATE, at batch 128
      'weight_decay': 2e-4,  # seed L2_WEIGHT_DECAY
      'batch_norm_momentum': 0.997,  # seed BATCH_NORM_DECAY
      'label_smoothing': 0.0,
  }

  def preprocess_batch(self, features, training):
    if not training:
      return features
    key = cifar10.transformed_name(cifar10.IMAGE_KEY)
    return {**features, key: images.pad_crop_flip(features[key])}

  def build_model(self, inputs: ModelInputs) -> tf_keras.Model:
    """`model_type` resnetD: the CIFAR ResNet of depth D -> float32 [batch, 10] probabilities."""
    name = cifar10.transformed_name(cifar10.IMAGE_KEY)
    image = tf_keras.Input(shape=(cifar10.IMAGE_SIZE, cifar10.IMAGE_SIZE, 3), dtype='float32',
                           name=name)
    standardized = tf_keras.layers.Lambda(tf.image.per_image_standardization,
                                          name='per_image_standardization')(image)
    probabilities = resnet.cifar_resnet(
        standardized, depth=int(self.model_type[len('resnet'):]), num_classes=self.num_classes,
        weight_decay=self.hparams['weight_decay'],
        batch_norm_momentum=self.hparams['batch_norm_momentum'])
    return tf_keras.Model(inputs={name: image}, outputs=probabilities, name=f'cifar10_{self.model_type}')


_IMAGENET_DEPTHS = {'resnet50': (3, 4, 6, 3), 'resnet101': (3, 4, 23, 3),
                    'resnet152': (3, 8, 36, 3)}


class ImagenetResNetTask(_ResNetTask):
  """ResNet v1.5 over the raw examples' `image` bytes: decoded and cropped in the input pipeline
  (random crop and flip to train, the central crop to evaluate and serve) to float32
  [size, size, 3], then normalized by the ImageNet RGB mean and deviation in the model."""

  label_key = imagenet.LABEL_KEY
  model_types = tuple(_IMAGENET_DEPTHS)
  num_classes = imagenet.NUM_CLASSES
  reference_batch = 256
  boundaries = (30 / 90, 60 / 90, 80 / 90)
  multipliers = (0.1, 0.01, 0.001)
  warmup = 5 / 90
  default_hparams = {
      'learning_rate': 0.1,  # at batch 256 (Goyal et al. 2017)
      'weight_decay': 1e-4,
      'batch_norm_momentum': 0.9,
      'label_smoothing': 0.1,
      'width_multiplier': 1.0,
      'image_size': imagenet.IMAGE_SIZE,
  }

  @property
  def image_size(self) -> int:
    """Side of the square crop the model reads, in pixels (hparam `image_size`)."""
    return int(self.hparams['image_size'])

  def preprocess_batch(self, features, training):
    key = imagenet.IMAGE_KEY
    return {**features, key: images.decode_and_crop(features[key], self.image_size, training)}

  def build_model(self, inputs: ModelInputs) -> tf_keras.Model:
    """ResNet v1.5 of `model_type` over float32 [batch, size, size, 3] pixels in [0, 255] ->
    float32 [batch, 1000] probabilities."""
    image = tf_keras.Input(shape=(self.image_size, self.image_size, 3), dtype='float32',
                           name=imagenet.IMAGE_KEY)
    normalized = tf_keras.layers.Normalization(
        mean=images.IMAGENET_MEAN_RGB, variance=[s * s for s in images.IMAGENET_STDDEV_RGB],
        name='normalize_rgb')(image)
    probabilities = resnet.imagenet_resnet(
        normalized, bottleneck_depths=_IMAGENET_DEPTHS[self.model_type],
        width_multiplier=self.hparams['width_multiplier'], num_classes=self.num_classes,
        weight_decay=self.hparams['weight_decay'], batch_norm_momentum=self.hparams['batch_norm_momentum'])
    return tf_keras.Model(inputs={imagenet.IMAGE_KEY: image}, outputs=probabilities,
                          name=f'imagenet_{self.model_type}')
