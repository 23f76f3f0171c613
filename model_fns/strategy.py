"""tf.distribute strategy by name, as chosen by `--distribution_strategy`."""

from __future__ import annotations

from typing import Optional

import tensorflow as tf

STRATEGIES = ('default', 'one_device', 'mirrored', 'multi_worker', 'tpu')


def get_strategy(name: str = 'default', num_gpus: int = 0,
                 tpu: Optional[str] = None) -> tf.distribute.Strategy:
  """Returns the tf.distribute strategy `name`.

  Args:
    name: `default` (TensorFlow's default strategy: one device, no distribution), `one_device` (the
      first GPU, else the CPU), `mirrored` (MirroredStrategy over `num_gpus` GPUs, the CPU when 0),
      `multi_worker` (MultiWorkerMirroredStrategy; the cluster comes from $TF_CONFIG) or `tpu`
      (TPUStrategy on the TPU named by `tpu`: a name, a grpc:// address, or `local`).
    num_gpus: GPUs for `one_device` / `mirrored`.
    tpu: the TPU for `tpu`.

  Raises:
    ValueError: unknown name, negative `num_gpus`, more GPUs asked than visible, or `tpu` without
      a TPU name.
  """
  if name not in STRATEGIES:
    raise ValueError(f'unknown distribution strategy {name!r}; expected one of {STRATEGIES}')
  if num_gpus < 0:
    raise ValueError(f'num_gpus must be >= 0, got {num_gpus}')
  if name in ('one_device', 'mirrored') and num_gpus:
    visible = len(tf.config.list_physical_devices('GPU'))
    if num_gpus > visible:
      raise ValueError(f'{num_gpus} GPUs asked for, {visible} visible')
  if name == 'default':
    return tf.distribute.get_strategy()
  if name == 'one_device':
    return tf.distribute.OneDeviceStrategy('/gpu:0' if num_gpus else '/cpu:0')
  if name == 'mirrored':
    devices = [f'/gpu:{i}' for i in range(num_gpus)] or ['/cpu:0']
    return tf.distribute.MirroredStrategy(devices)
  if name == 'multi_worker':
    return tf.distribute.MultiWorkerMirroredStrategy()
  if not tpu:
    raise ValueError('distribution strategy tpu needs --tpu (a TPU name, grpc:// address or local)')
  resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu='' if tpu == 'local' else tpu)
  tf.config.experimental_connect_to_cluster(resolver)
  tf.tpu.experimental.initialize_tpu_system(resolver)
  return tf.distribute.TPUStrategy(resolver)
