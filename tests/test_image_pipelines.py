"""CIFAR-10 and ImageNet end to end on the embedded default, on real images: CIFAR-10 on a small
copy of the offline JPEG folders (an unblessed model is not pushed; the trained model serves JPEG
and PNG bytes as TFMA scored them), ImageNet on the real 100-image sample through the command line
(ingestion, training steps, blessing on the sample's bar, push, and serving a real JPEG)."""

import glob
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from components.text_example_gen import to_example
from pipelines import runner, spec as spec_lib
from pipelines.factory import RunConfig
from preprocessing import cifar10, imagenet
from tests import helpers
from tests.test_images import copy_images

pytestmark = pytest.mark.e2e


@pytest.fixture(scope='module')
def cifar_run(tmp_path_factory, data_root):
  """ResNet-20, 30 steps of 32, on 30 real training and 10 real test JPEGs of each class."""
  images = tmp_path_factory.mktemp('cifar10_images')
  copy_images(data_root, images, 'train', 30)
  copy_images(data_root, images, 'test', 10)
  config = RunConfig(output_dir=str(tmp_path_factory.mktemp('cifar10')), model_type='resnet20',
                     train_steps=30, batch_size=32)
  files = {'train': str(images / 'train'), 'eval': str(images / 'test')}
  return config, files, runner.run(spec_lib.get('cifar10'), config, files, progress=False)


def test_cifar10_pipeline_runs_and_an_unblessed_model_is_not_pushed(cifar_run):
  config, _, summary = cifar_run
  assert summary['error'] is None
  assert summary['model'] == 'cifar10' and summary['model_type'] == 'resnet20'
  assert {s: d['examples'] for s, d in summary['data'].items()} == {'train': 300, 'eval': 100}
  names = [s['name'] for s in summary['stages']]
  assert names.index('ImageExampleGen') < names.index('AnomaliesGate') < names.index(
      'Transform') < names.index('Trainer') < names.index('Evaluator')
  assert summary['metrics']['example_count'] == 100
  assert {f'label={d}' for d in range(10)} <= set(summary['slices'])
  # 30 steps cannot reach the 0.45 bar: the Evaluator does not bless and nothing is pushed.
  assert summary['metrics']['accuracy'] < 0.45
  assert summary['blessed'] is False and summary['pushed_model'] is None
  assert not os.path.exists(config.serving_model_dir)


def test_cifar10_model_serves_jpeg_and_png_as_tfma_scored(cifar_run):
  config, files, summary = cifar_run
  (model_dir,) = glob.glob(os.path.join(config.pipeline_root, 'Trainer', 'model', '*',
                                        'Format-Serving'))
  serve = tf.saved_model.load(model_dir).signatures['serving_default']
  paths, labels = [], []
  for label, name in enumerate(cifar10.CLASS_NAMES):
    for file in sorted(os.listdir(os.path.join(files['eval'], name))):
      paths.append(os.path.join(files['eval'], name, file))
      labels.append(label)
  jpegs = [open(p, 'rb').read() for p in paths]
  outputs = serve(examples=tf.constant([to_example({'image': j}).SerializeToString()
                                        for j in jpegs]))
  probabilities = outputs['probabilities'].numpy()
  assert probabilities.shape == (100, 10)
  np.testing.assert_allclose(probabilities.sum(axis=1), 1, atol=1e-4)
  class_ids = outputs['class_ids'].numpy()[:, 0]
  assert np.mean(class_ids == np.array(labels)) == pytest.approx(summary['metrics']['accuracy'],
                                                                 abs=1e-6)
  # The same images as PNG (lossless re-encoding of the decoded JPEG): the same predictions.
  pngs = [tf.io.encode_png(tf.io.decode_jpeg(j)).numpy() for j in jpegs[:20]]
  png_probabilities = serve(examples=tf.constant(
      [to_example({'image': p}).SerializeToString() for p in pngs]))['probabilities'].numpy()
  np.testing.assert_allclose(png_probabilities, probabilities[:20], atol=1e-4)


@pytest.mark.slow  # minutes on 2 cores; the fast tier runs this pipeline on synthetic files (`-m slow` runs it)
def test_imagenet_sample_through_the_cli_is_blessed_pushed_and_serves_a_jpeg(tmp_path, data_root):
  out = tmp_path / 'out'
  result = helpers.run_cli('run', 'imagenet', f'--data_root={data_root}', f'--output_dir={out}',
                           '--train_steps=3', '--batch_size=8', timeout=900)
  assert result.returncode == 0, result.stderr[-3000:]
  assert 'note: train is missing: training and evaluating on the 100-image sample/' in (
      result.stdout)
  with open(out / 'run_summary.json') as f:
    summary = json.load(f)
  assert summary['model_type'] == 'resnet50'
  assert {s: d['examples'] for s, d in summary['data'].items()} == {'train': 100, 'eval': 100}
  assert 'Transform' not in [s['name'] for s in summary['stages']]  # no Transform for ImageNet
  metrics = summary['metrics']
  assert metrics['example_count'] == 100  # the sample's bar: every image served and scored
  assert 0 <= metrics['accuracy'] <= metrics['top5_accuracy'] <= 1
  assert summary['blessed'] is True
  serve = tf.saved_model.load(summary['pushed_model']).signatures['serving_default']
  sample = os.path.join(data_root, 'imagenet', 'sample')
  wnid = sorted(os.listdir(sample))[0]
  (name,) = os.listdir(os.path.join(sample, wnid))
  with open(os.path.join(sample, wnid, name), 'rb') as f:
    jpeg = f.read()  # a real 500x375 JPEG of class 0 (tench), cropped inside the model
  outputs = serve(examples=tf.constant([to_example({'image': jpeg}).SerializeToString()]))
  probabilities = outputs['probabilities'].numpy()
  assert probabilities.shape == (1, imagenet.NUM_CLASSES)
  assert probabilities.sum() == pytest.approx(1, abs=1e-4)
  assert outputs['class_ids'].numpy()[0, 0] == probabilities.argmax()
