"""ResNet in Keras 2 (tf_keras): the seed's CIFAR-10 ResNets and ResNet-50 v1.5 for ImageNet.

CIFAR ResNets (He et al. 2016, "Deep Residual Learning for Image Recognition", section 4.2; the
seed: tensorflow/models official/vision/image_classification/resnet_cifar_model.py): a 3x3
convolution of 16 filters, then 3 stages of n basic blocks (two 3x3 convolutions) of 16, 32 and 64
filters, the second and third stage starting with stride 2 and a 1x1 projection shortcut, then
global average pooling and a 10-way softmax: depth 6n + 2 (ResNet-20: n = 3, ResNet-56: n = 9).
The seed's constants: L2 weight decay 2e-4, batch-norm momentum 0.997 and epsilon 1e-5, He-normal
initialization.

ResNet-50 v1.5 (He et al. 2016, table 1, with the stride of each downsampling bottleneck on its 3x3
convolution instead of its first 1x1, as in the seed's official/vision/image_classification/resnet/
resnet_model.py and NVIDIA's "ResNet50 v1.5"): a 7x7/2 convolution of 64 filters, 3x3/2 max pooling,
stages of (3, 4, 6, 3) bottleneck blocks (1x1, 3x3, 1x1 with 4x expansion) of 64, 128, 256 and 512
filters, global average pooling, a 1000-way softmax. The seed's constants: L2 weight decay 1e-4,
batch-norm momentum 0.9 and epsilon 1e-5. `bottleneck_depths` gives ResNet-101 (3, 4, 23, 3) and
ResNet-152 (3, 8, 36, 3); `width_multiplier` scales every stage's filters.

All convolutions are channels-last. Under a mixed-precision policy (`mixed_float16` on GPU,
`mixed_bfloat16` on TPU) the layers compute in 16 bits and the final softmax stays float32.
"""

from __future__ import annotations

from typing import Sequence

import tf_keras
from tf_keras import layers


def _regularizer(weight_decay: float):
  return tf_keras.regularizers.L2(weight_decay) if weight_decay else None


def _conv(filters: int, kernel_size: int, strides: int, weight_decay: float,
          name: str) -> layers.Conv2D:
  return layers.Conv2D(filters, kernel_size, strides=strides, padding='same', use_bias=False,
                       kernel_initializer='he_normal',
                       kernel_regularizer=_regularizer(weight_decay), name=name)


def _batch_norm(momentum: float, epsilon: float, name: str, zero_init: bool = False):
  return layers.BatchNormalization(momentum=momentum, epsilon=epsilon, name=name,
                                   gamma_initializer='zeros' if zero_init else 'ones')


def _classifier(x, num_classes: int, weight_decay: float):
  """Global average pooling, then a dense softmax layer (float32 under mixed precision)."""
  x = layers.GlobalAveragePooling2D(name='avg_pool')(x)
  logits = layers.Dense(num_classes, kernel_initializer=tf_keras.initializers.RandomNormal(
      stddev=0.01), kernel_regularizer=_regularizer(weight_decay),
                        bias_regularizer=_regularizer(weight_decay), name='logits')(x)
  return layers.Activation('softmax', dtype='float32', name='probabilities')(logits)


def _basic_block(x, filters: int, strides: int, weight_decay: float, momentum: float,
                 epsilon: float, name: str):
  """Two 3x3 convolutions and a shortcut (a 1x1 projection where the shape changes)."""
  shortcut = x
  if strides != 1 or x.shape[-1] != filters:
    shortcut = _conv(filters, 1, strides, weight_decay, f'{name}_proj')(x)
    shortcut = _batch_norm(momentum, epsilon, f'{name}_proj_bn')(shortcut)
  y = _conv(filters, 3, strides, weight_decay, f'{name}_conv1')(x)
  y = _batch_norm(momentum, epsilon, f'{name}_bn1')(y)
  y = layers.Activation('relu', name=f'{name}_relu1')(y)
  y = _conv(filters, 3, 1, weight_decay, f'{name}_conv2')(y)
  y = _batch_norm(momentum, epsilon, f'{name}_bn2')(y)
  y = layers.Add(name=f'{name}_add')([y, shortcut])
  return layers.Activation('relu', name=f'{name}_out')(y)


def cifar_resnet(images, depth: int = 56, num_classes: int = 10, weight_decay: float = 2e-4,
                 batch_norm_momentum: float = 0.997, batch_norm_epsilon: float = 1e-5):
  """The CIFAR ResNet of depth 6n + 2 over `images` (a Keras tensor, float [batch, 32, 32, 3]).

  Returns:
    The float32 [batch, num_classes] class probabilities (a Keras tensor).

  Raises:
    ValueError: `depth` is not 6n + 2 for some n >= 1.
  """
  if depth < 8 or (depth - 2) % 6:
    raise ValueError(f'a CIFAR ResNet has depth 6n + 2 (20, 32, 44, 56, 110, ...), got {depth}')
  blocks = (depth - 2) // 6
  bn = dict(momentum=batch_norm_momentum, epsilon=batch_norm_epsilon)
  x = _conv(16, 3, 1, weight_decay, 'conv1')(images)
  x = _batch_norm(name='bn1', **bn)(x)
  x = layers.Activation('relu', name='relu1')(x)
  for stage, filters in enumerate((16, 32, 64)):
    for block in range(blocks):
      strides = 2 if stage and not block else 1
      x = _basic_block(x, filters, strides, weight_decay, name=f'stage{stage + 1}_block{block + 1}',
                       **bn)
  return _classifier(x, num_classes, weight_decay)


def _bottleneck_block(x, filters: int, strides: int, weight_decay: float, momentum: float,
                      epsilon: float, name: str):
  """ResNet v1.5 bottleneck: 1x1 (filters), 3x3 (filters, stride), 1x1 (4 x filters), plus a
  projection shortcut on the first block of a stage."""
  shortcut = x
  if strides != 1 or x.shape[-1] != 4 * filters:
    shortcut = _conv(4 * filters, 1, strides, weight_decay, f'{name}_proj')(x)
    shortcut = _batch_norm(momentum, epsilon, f'{name}_proj_bn')(shortcut)
  y = _conv(filters, 1, 1, weight_decay, f'{name}_conv1')(x)
  y = _batch_norm(momentum, epsilon, f'{name}_bn1')(y)
  y = layers.Activation('relu', name=f'{name}_relu1')(y)
  y = _conv(filters, 3, strides, weight_decay, f'{name}_conv2')(y)
  y = _batch_norm(momentum, epsilon, f'{name}_bn2')(y)
  y = layers.Activation('relu', name=f'{name}_relu2')(y)
  y = _conv(4 * filters, 1, 1, weight_decay, f'{name}_conv3')(y)
  y = _batch_norm(momentum, epsilon, f'{name}_bn3')(y)
  y = layers.Add(name=f'{name}_add')([y, shortcut])
  return layers.Activation('relu', name=f'{name}_out')(y)


def imagenet_resnet(images, bottleneck_depths: Sequence[int] = (3, 4, 6, 3),
                    width_multiplier: float = 1.0, num_classes: int = 1000,
                    weight_decay: float = 1e-4, batch_norm_momentum: float = 0.9,
                    batch_norm_epsilon: float = 1e-5):
  """ResNet v1.5 with bottleneck blocks over `images` (a Keras tensor, float [batch, H, W, 3];
  224 x 224 as published; any size of at least 32 works).

  Args:
    bottleneck_depths: blocks per stage: (3, 4, 6, 3) is ResNet-50.
    width_multiplier: scales the filters of the stem and every stage (1.0 as published).

  Returns:
    The float32 [batch, num_classes] class probabilities (a Keras tensor).

  Raises:
    ValueError: not 4 positive stage depths, or a non-positive width multiplier.
  """
  if len(bottleneck_depths) != 4 or min(bottleneck_depths) < 1 or width_multiplier <= 0:
    raise ValueError(f'ResNet v1.5 needs 4 positive stage depths and a positive width '
                     f'multiplier, got {tuple(bottleneck_depths)} and {width_multiplier}')
  bn = dict(momentum=batch_norm_momentum, epsilon=batch_norm_epsilon)
  width = lambda filters: max(int(filters * width_multiplier), 8)  # pylint: disable=unnecessary-lambda-assignment
  x = _conv(width(64), 7, 2, weight_decay, 'conv1')(images)
  x = _batch_norm(name='bn1', **bn)(x)
  x = layers.Activation('relu', name='relu1')(x)
  x = layers.MaxPooling2D(3, 2, padding='same', name='pool1')(x)
  for stage, (blocks, filters) in enumerate(zip(bottleneck_depths, (64, 128, 256, 512))):
    for block in range(blocks):
      strides = 2 if stage and not block else 1
      x = _bottleneck_block(x, width(filters), strides, weight_decay,
                            name=f'stage{stage + 1}_block{block + 1}', **bn)
  return _classifier(x, num_classes, weight_decay)
