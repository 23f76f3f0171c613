"""MNIST end to end on the real offline data (the documented t10k split: records 0-7,999 to train,
8,000-9,999 to evaluate), on the embedded default: the issue's bar, blessing and push, serving
encoded images, and bad input through the command line."""

import gzip
import json
import os
import struct

import numpy as np
import pytest
import tensorflow as tf

from components import idx_example_gen as idx
from components.text_example_gen import to_example
from pipelines import fingerprint, runner, spec as spec_lib
from pipelines.factory import RunConfig, RunInputs
from preprocessing import datasets, mnist
from tests import helpers

pytestmark = pytest.mark.e2e
BAR = 0.97


@pytest.fixture(scope='module')
def mnist_files(data_root):
  """The documented offline split's files: t10k for both splits (verified, labels included),
  whether or not the data root also has the training images."""
  t10k = datasets.resolve_file(mnist.DATASET, mnist.TEST_IMAGES, data_root=data_root)
  return {'train': t10k, 'eval': t10k}


@pytest.fixture(scope='module')
def mnist_run(tmp_path_factory, mnist_files):
  config = RunConfig(output_dir=str(tmp_path_factory.mktemp('mnist')))
  inputs = RunInputs(split_files=mnist_files, row_ranges=dict(mnist.DATASET.fallback.row_ranges))
  return config, runner.run(spec_lib.get('mnist'), config, inputs, progress=False)


@pytest.mark.slow  # minutes on 2 cores; the fast tier runs this pipeline on synthetic files (`-m slow` runs it)
def test_cnn_reaches_the_bar_on_the_t10k_split_and_is_pushed(mnist_run, mnist_files):
  config, summary = mnist_run
  assert summary['error'] is None
  assert summary['model'] == 'mnist' and summary['model_type'] == 'cnn'
  metrics = summary['metrics']
  assert metrics['example_count'] == 2000
  assert metrics['accuracy'] >= BAR, metrics
  assert summary['blessed'] is True
  assert os.path.isfile(os.path.join(summary['pushed_model'], 'saved_model.pb'))
  assert {f'label={d}' for d in range(10)} <= set(summary['slices'])
  # Each split's content digest: the images file's with its labels file beside it (both splits
  # read rows of the same t10k files).
  digests = fingerprint.input_digests(mnist_files, dataset=mnist.DATASET)
  assert summary['data'] == {
      'train': {'file': mnist_files['train'], 'sha256': digests['train'], 'first_row': 0,
                'num_rows': 8000, 'examples': 8000},
      'eval': {'file': mnist_files['eval'], 'sha256': digests['eval'], 'first_row': 8000,
               'num_rows': 2000, 'examples': 2000}}
  names = [s['name'] for s in summary['stages']]
  assert names.index('AnomaliesGate') < names.index('Transform') < names.index('Trainer')
  with open(os.path.join(config.output_dir, 'run_summary.json')) as f:
    assert json.load(f) == summary
  print(f'mnist e2e: accuracy {metrics["accuracy"]:.4f}, stages '
        f'{ {s["name"]: s["seconds"] for s in summary["stages"]} }, '
        f'pipeline {summary["wall_seconds"]} s')


@pytest.mark.slow  # minutes on 2 cores; the fast tier runs this pipeline on synthetic files (`-m slow` runs it)
def test_pushed_model_scores_encoded_images_as_tfma_reported(mnist_run, mnist_files):
  _, summary = mnist_run
  images, labels = idx.read_idx_pair(mnist_files['eval'], idx.labels_path(mnist_files['eval']),
                                     8000, 2000)
  examples = [to_example({'image': tf.io.encode_png(image[:, :, None]).numpy()})
              .SerializeToString() for image in images]  # no label, height or width at serving
  serve = tf.saved_model.load(summary['pushed_model']).signatures['serving_default']
  outputs = serve(examples=tf.constant(examples))
  probabilities = outputs['probabilities'].numpy()
  assert probabilities.shape == (2000, 10) and probabilities.dtype == np.float32
  np.testing.assert_allclose(probabilities.sum(axis=1), 1, atol=1e-5)
  class_ids = outputs['class_ids'].numpy()
  assert class_ids.shape == (2000, 1)
  np.testing.assert_array_equal(class_ids[:, 0], probabilities.argmax(axis=1))
  accuracy = float(np.mean(class_ids[:, 0] == labels))
  assert accuracy == pytest.approx(summary['metrics']['accuracy'], abs=1e-4)
  # JPEG bytes are served too (lossy at quality 95: the same digits, nearly the same accuracy).
  jpegs = [to_example({'image': tf.io.encode_jpeg(image[:, :, None], quality=95).numpy()})
           .SerializeToString() for image in images[:500]]
  jpeg_ids = serve(examples=tf.constant(jpegs))['class_ids'].numpy()[:, 0]
  assert np.mean(jpeg_ids == labels[:500]) >= BAR - 0.02


def test_cli_falls_back_offline_and_stops_on_a_label_out_of_range(tmp_path, data_root,
                                                                    mnist_files):
  """`official-tfx run mnist` on a data root without training images (links to the real offline
  files) and an eval file of 1,000 t10k records whose label 417 is 11: the command line announces
  the t10k split and its records, and the run stops in ExampleGen naming file and record."""
  root = tmp_path / 'root' / 'mnist'
  root.mkdir(parents=True)
  for name in (mnist.TEST_IMAGES, mnist.TEST_LABELS):
    os.symlink(os.path.join(data_root, 'mnist', name + '.gz'), root / (name + '.gz'))
  images, labels = idx.read_idx_pair(mnist_files['eval'], idx.labels_path(mnist_files['eval']),
                                     0, 1000)
  labels = labels.copy()
  labels[417] = 11
  images_file = str(tmp_path / 'bad-images-idx3-ubyte.gz')
  labels_file = str(tmp_path / 'bad-labels-idx1-ubyte.gz')
  with gzip.open(images_file, 'wb') as f:
    f.write(struct.pack('>IIII', idx.IMAGES_MAGIC, 1000, 28, 28) + images.tobytes())
  with gzip.open(labels_file, 'wb') as f:
    f.write(struct.pack('>II', idx.LABELS_MAGIC, 1000) + labels.tobytes())
  out = tmp_path / 'out'
  result = helpers.run_cli('run', 'mnist', f'--data_root={root.parent}',
                           f'--eval_data={images_file}', f'--output_dir={out}')
  assert result.returncode == 1, result.stderr[-3000:]
  assert ('note: train-images-idx3-ubyte is missing: training on t10k-images-idx3-ubyte records '
          '0-7,999') in result.stdout
  t10k = root / (mnist.TEST_IMAGES + '.gz')
  assert f'train: {t10k} (rows 0 to 7999)' in result.stdout
  assert f'eval: {images_file}\n' in result.stdout
  assert '1 of 1000 records are malformed' in result.stderr
  assert f'{labels_file}: record 417: label 11 is not in 0-9' in result.stderr
  assert 'Nothing was pushed' in result.stderr
  assert 'IdxExampleGen FAILED' in result.stdout
  assert not (out / 'serving_model').exists()
  with open(out / 'run_summary.json') as f:
    summary = json.load(f)
  assert 'MalformedRowsError' in summary['error']
  assert summary['data']['train']['num_rows'] == 8000
