"""Image classification benchmark (cifar10, imagenet): the whole pipeline, cold, on a step budget.

Reads what `official-tfx run` reads: CIFAR-10's python batches when the data root (or the cache)
has them, else its JPEG image folders; ImageNet's folders, else its 100-image sample (both are
documented fallbacks). Prints per-stage seconds, ExampleGen images/s (read and decoded once),
Transform images/s (CIFAR-10: decoded to float pixels, both splits; ImageNet has no Transform),
training images/s (steps x batch / Trainer seconds, model building, tracing and export included),
Evaluator images/s, the training loss at every logged point (from the Trainer's TensorBoard logs,
weight decay included) beside chance's ln(classes), and top-1 (and ImageNet's top-5) accuracy
beside chance and the seed's published figure.

  .venv/bin/python benchmarks/images.py --model=cifar10 --data_root=../shared/data
      [--model_type=resnet20] [--train_steps=1000] [--batch_size=128] [--json=FILE]
"""

import common  # benchmarks/common.py, beside this script; first: it starts the clock

import glob
import math
import os
import shutil
import tempfile
import time

import tensorflow as tf
from absl import app, flags, logging

from pipelines import spec as spec_lib
from pipelines.factory import RunInputs
from preprocessing import cifar10, datasets, imagenet

NUM_CLASSES = {'cifar10': cifar10.NUM_CLASSES, 'imagenet': imagenet.NUM_CLASSES}

# Top-1 accuracy to compare with (the seed's figures: ../shared/docs/design.md).
REFERENCES = {
    'cifar10': {'chance (10 classes)': 0.1, 'seed ResNet-56, 182 epochs': 0.929},
    'imagenet': {'chance (1,000 classes)': 0.001, 'seed ResNet-50, 90 epochs on 8 GPUs': 0.76},
}

FLAGS = flags.FLAGS
flags.DEFINE_string('data_root', None, 'Data root (default $OFFICIAL_TFX_DATA_ROOT).')
flags.DEFINE_enum('model', 'cifar10', sorted(REFERENCES), 'The image model.')
flags.DEFINE_string('model_type', None, 'ResNet (default: the spec\'s: resnet56, resnet50).')
flags.DEFINE_integer('train_steps', None, 'Training steps (default: the spec\'s).')
flags.DEFINE_integer('batch_size', None, 'Global batch size (default: the spec\'s).')
flags.DEFINE_string('json', None, 'Also write the figures to this JSON file.')


def training_losses(pipeline_root: str):
  """[(step, loss)] of the Trainer's TensorBoard `epoch_loss` points, in step order."""
  points = []
  for path in glob.glob(os.path.join(pipeline_root, 'Trainer', 'model_run', '*', 'train',
                                     'events.out.tfevents.*')):
    for event in tf.compat.v1.train.summary_iterator(path):
      for value in event.summary.value:
        if value.tag == 'epoch_loss':
          points.append((event.step, float(tf.make_ndarray(value.tensor))))
  return sorted(points)


def main(_):
  logging.set_verbosity(logging.WARNING)
  spec = spec_lib.get(FLAGS.model)
  resolved = datasets.resolve(spec.dataset, data_root=FLAGS.data_root)
  model_type = FLAGS.model_type or spec.default_model_type
  steps = FLAGS.train_steps or spec.train_steps
  batch_size = FLAGS.batch_size or spec.batch_size
  directory = tempfile.mkdtemp(prefix=f'{spec.name}-bench-')
  try:
    side_files = {setting: datasets.resolve_file(dataset, name, data_root=FLAGS.data_root)
                  for setting, (dataset, name) in spec.example_gen_files.items()}
    inputs = RunInputs(split_files=resolved.files, example_gen_files=side_files,
                       reduced_data=resolved.fallback is not None)
    summary = common.cold_run(spec, inputs, directory, model_type=model_type,
                              train_steps=steps, batch_size=batch_size)
    losses = training_losses(os.path.join(directory, 'pipeline_root'))
  finally:
    shutil.rmtree(directory, ignore_errors=True)
  process = time.time() - common.PROCESS_START
  seconds = common.stage_seconds(summary)
  images = {split: d['examples'] for split, d in summary['data'].items()}
  trained = steps * batch_size
  data = (f'the documented fallback ({resolved.fallback.notice})' if resolved.fallback
          else 'the canonical files')
  print(f'{spec.name} {model_type} on {data}: {images["train"]} training images, '
        f'{images["eval"]} eval images; {steps} steps of {batch_size} '
        f'({trained / images["train"]:.2f} epochs)')
  common.print_stages(seconds, {}, '')
  total = images['train'] + images['eval']
  metrics = summary['metrics']
  figures = {
      **common.base_figures(summary, seconds, process), 'model': spec.name,
      'model_type': model_type, 'images': images, 'train_steps': steps, 'batch_size': batch_size,
      'example_gen_images_per_s': round(total / seconds['ExampleGen']),
      'transform_images_per_s': (round(total / seconds['Transform']) if 'Transform' in seconds
                                 else None),
      'training_images_per_s': round(trained / seconds['Trainer']),
      'evaluator_images_per_s': round(images['eval'] / seconds['Evaluator']),
      'training_loss': losses, 'accuracy': metrics['accuracy'],
      'top5_accuracy': metrics.get('top5_accuracy'), 'log_loss': metrics['log_loss'],
      'blessed': summary['blessed'], 'fallback': bool(resolved.fallback)}
  common.print_times(summary, process)
  transform = (f'Transform {figures["transform_images_per_s"]} images/s, '
               if figures['transform_images_per_s'] else 'no Transform, ')
  print(f'ExampleGen {figures["example_gen_images_per_s"]} images/s, {transform}training '
        f'{figures["training_images_per_s"]} images/s, Evaluator '
        f'{figures["evaluator_images_per_s"]} images/s')
  classes = NUM_CLASSES[spec.name]
  print(f'training loss (chance {math.log(classes):.3f}, weight decay included): '
        + ', '.join(f'step {(epoch + 1) * steps // max(len(losses), 1)}: {loss:.3f}'
                    for epoch, loss in losses))
  top5 = (f', top-5 {metrics["top5_accuracy"]:.4f}' if metrics.get('top5_accuracy') is not None
          else '')
  print(f'accuracy {metrics["accuracy"]:.4f}{top5}, log loss {metrics["log_loss"]:.4f}, '
        f'blessed {summary["blessed"]}')
  for name, accuracy in REFERENCES[spec.name].items():
    print(f'  reference {name}: accuracy {accuracy}')
  common.write_json(FLAGS.json, figures)


if __name__ == '__main__':
  app.run(main)
