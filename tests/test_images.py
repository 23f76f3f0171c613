"""The image models' parts, fast: ImageExampleGen on folders and on the CIFAR python batches (and
their bad inputs), the folder checksums, the shared image ops, the ResNets, the learning-rate
schedule and mixed precision."""

import io
import json
import os
import pickle
import shutil
import tarfile

import numpy as np
import pytest
import tensorflow as tf
import tf_keras
from PIL import Image

from components import image_example_gen as image_gen
from components.record_checks import MalformedRowsError
from model_fns import image_classification, resnet, trainer
from pipelines import factory, spec as spec_lib
from preprocessing import cifar10, datasets, images, imagenet
from tests import helpers


def copy_images(data_root, folder, split, per_class, classes=cifar10.CLASS_NAMES):
  """Copies the first `per_class` real CIFAR-10 JPEGs of each class into folder/<split>/<class>."""
  for name in classes:
    source = os.path.join(data_root, 'cifar10', split, name)
    os.makedirs(folder / split / name)
    for file in sorted(os.listdir(source))[:per_class]:
      shutil.copy(os.path.join(source, file), folder / split / name / file)


def run_image_example_gen(output_dir, input_base, splits, **kwargs):
  component = image_gen.ImageExampleGen(input_base=str(input_base), splits=splits,
                                        class_names=kwargs.pop('class_names', cifar10.CLASS_NAMES),
                                        **kwargs)
  return helpers.run_executor(component, image_gen.Executor, output_dir)


def decoded(example):
  return tf.io.decode_image(example.features.feature['image'].bytes_list.value[0]).numpy()


def feature(example, key):
  return example.features.feature[key].int64_list.value[0]


# --- image folders ------------------------------------------------------------------------------

def test_folders_keep_the_files_bytes_and_label_by_class_order(tmp_path, data_root):
  copy_images(data_root, tmp_path / 'in', 'train', 2, classes=('bird', 'truck'))
  examples = run_image_example_gen(tmp_path, tmp_path / 'in', {'train': 'train'})
  records = helpers.read_examples(examples.uri, 'train')
  originals = {open(os.path.join(tmp_path / 'in' / 'train', c, f), 'rb').read(): c
               for c in ('bird', 'truck') for f in os.listdir(tmp_path / 'in' / 'train' / c)}
  assert len(records) == 4
  for record in records:
    data = record.features.feature['image'].bytes_list.value[0]
    assert cifar10.CLASS_NAMES[feature(record, 'label')] == originals[data]  # bytes unchanged
    assert (feature(record, 'height'), feature(record, 'width')) == (32, 32)
  assert examples.get_int_custom_property('valid_rows_train') == 4


def test_corrupt_and_truncated_images_are_reported_by_file_name(tmp_path, data_root):
  copy_images(data_root, tmp_path / 'in', 'train', 3, classes=('cat',))
  cat = tmp_path / 'in' / 'train' / 'cat'
  whole = (cat / '0000.jpg').read_bytes()
  (cat / 'truncated.jpg').write_bytes(whole[:len(whole) // 3])
  (cat / 'notes.jpg').write_text('not an image')
  examples = run_image_example_gen(tmp_path, tmp_path / 'in', {'train': 'train'},
                                   max_malformed_fraction=0.5)
  assert len(helpers.read_examples(examples.uri, 'train')) == 3
  assert examples.get_int_custom_property('malformed_rows_train') == 2
  with open(os.path.join(examples.uri, 'malformed_rows-train.json')) as f:
    report = json.load(f)
  bad = {os.path.basename(b['file']): b['reason'] for b in report['first_malformed']}
  assert set(bad) == {'truncated.jpg', 'notes.jpg'}
  assert all(reason.startswith('not a decodable image') for reason in bad.values())
  # Over the threshold (default 0 for a curated dataset): the run stops, naming the files.
  with pytest.raises(MalformedRowsError, match=r'truncated\.jpg: not a decodable image'):
    run_image_example_gen(tmp_path / 'strict', tmp_path / 'in', {'train': 'train'})


def test_unknown_class_folder_stops_the_run(tmp_path, data_root):
  copy_images(data_root, tmp_path / 'in', 'train', 1, classes=('cat',))
  shutil.copytree(tmp_path / 'in' / 'train' / 'cat', tmp_path / 'in' / 'train' / 'kitten')
  with pytest.raises(image_gen.ImageDataError, match='kitten'):
    run_image_example_gen(tmp_path, tmp_path / 'in', {'train': 'train'})


def test_flat_folder_with_labels_file(tmp_path, data_root):
  folder = tmp_path / 'in' / 'validation'
  folder.mkdir(parents=True)
  sample = os.path.join(data_root, 'imagenet', 'sample')
  wnids = sorted(os.listdir(sample))[:3]
  for i, wnid in enumerate(wnids):
    (name,) = os.listdir(os.path.join(sample, wnid))
    shutil.copy(os.path.join(sample, wnid, name), folder / f'ILSVRC2012_val_{i + 1:08d}.JPEG')
  classes = imagenet.class_names(os.path.join(data_root, 'imagenet', 'synsets.txt'))
  (tmp_path / 'in' / 'labels.txt').write_text('\n'.join(wnids) + '\n')
  examples = run_image_example_gen(tmp_path, tmp_path / 'in', {'eval': 'validation'},
                                   class_names=classes, labels_files={'eval': 'labels.txt'})
  records = helpers.read_examples(examples.uri, 'eval')
  by_image = {r.features.feature['image'].bytes_list.value[0]: feature(r, 'label')
              for r in records}
  assert [by_image[(folder / f'ILSVRC2012_val_{i + 1:08d}.JPEG').read_bytes()]
          for i in range(3)] == [classes.index(w) for w in wnids] == [0, 1, 2]
  (tmp_path / 'in' / 'labels.txt').write_text('\n'.join(wnids[:2]) + '\n')
  with pytest.raises(image_gen.ImageDataError, match=r'labels\.txt has 2 labels but .*3 images'):
    run_image_example_gen(tmp_path / 'short', tmp_path / 'in', {'eval': 'validation'},
                          class_names=classes, labels_files={'eval': 'labels.txt'})


# --- CIFAR python batches -----------------------------------------------------------------------

def write_cifar_archive(path, batches, gz=True):
  """Writes a tar of cifar-10-batches-py/<name> pickles: {name: (uint8 [N, 32, 32, 3], labels)}."""
  with tarfile.open(path, 'w:gz' if gz else 'w') as tar:
    for name, value in batches.items():
      if isinstance(value, bytes):
        data = value
      else:
        pixels, labels = value
        data = pickle.dumps({b'data': pixels.transpose(0, 3, 1, 2).reshape(len(pixels), -1),
                             b'labels': list(labels), b'filenames': [b'x'] * len(pixels)})
      info = tarfile.TarInfo(f'cifar-10-batches-py/{name}')
      info.size = len(data)
      tar.addfile(info, io.BytesIO(data))
  return str(path)


def test_python_batches_become_lossless_png(tmp_path):
  rng = np.random.default_rng(0)
  train = [rng.integers(0, 256, (6, 32, 32, 3), dtype=np.uint8) for _ in range(2)]
  test = rng.integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
  write_cifar_archive(tmp_path / 'cifar-10-python.tar.gz', {
      'data_batch_1': (train[0], range(6)), 'data_batch_2': (train[1], [9] * 6),
      'test_batch': (test, [1, 2, 3, 4]), 'batches.meta': pickle.dumps({})})
  archive = 'cifar-10-python.tar.gz'
  examples = run_image_example_gen(
      tmp_path, tmp_path, {'train': archive, 'eval': archive},
      archive_members=cifar10.ARCHIVE_MEMBERS, row_ranges={'train': (3, 6)})
  records = helpers.read_examples(examples.uri, 'train')
  expected = {(feature(r, 'label'), decoded(r).tobytes()) for r in records}
  pixels = np.concatenate(train)[3:9]
  labels = (list(range(6)) + [9] * 6)[3:9]
  assert expected == {(l, p.tobytes()) for l, p in zip(labels, pixels)}  # records 3-8, exactly
  assert sorted(feature(r, 'label') for r in helpers.read_examples(examples.uri, 'eval')) == [
      1, 2, 3, 4]


def test_python_batch_errors(tmp_path):
  pixels = np.zeros((3, 32, 32, 3), np.uint8)
  write_cifar_archive(tmp_path / 'bad_label.tar.gz', {'test_batch': (pixels, [0, 12, 1])})
  with pytest.raises(MalformedRowsError, match=r'test_batch: record 1: label 12 is not in 0-9'):
    run_image_example_gen(tmp_path, tmp_path, {'eval': 'bad_label.tar.gz'},
                          archive_members={'eval': 'test_batch'})
  hostile = pickle.dumps({b'data': os.system})  # a global other than numpy's: never loaded
  write_cifar_archive(tmp_path / 'hostile.tar', {'test_batch': hostile}, gz=False)
  with pytest.raises(image_gen.ImageDataError, match=r'hostile\.tar: member .*test_batch: .*not '
                                                     'allowed'):
    image_gen.read_cifar_batches(str(tmp_path / 'hostile.tar'), 'test_batch')
  short = pickle.dumps({b'data': np.zeros((2, 100), np.uint8), b'labels': [0, 1]})
  write_cifar_archive(tmp_path / 'short.tar.gz', {'test_batch': short})
  with pytest.raises(image_gen.ImageDataError, match=r'uint8 \[2, 100\], expected uint8 '
                                                     r'\[N, 3072\]'):
    image_gen.read_cifar_batches(str(tmp_path / 'short.tar.gz'), 'test_batch')


# --- registry -----------------------------------------------------------------------------------

def test_cifar10_offline_reads_the_verified_image_folders(data_root, tmp_path):
  resolved = datasets.resolve(cifar10.DATASET, data_root=data_root, cache_dir=str(tmp_path))
  assert resolved.fallback is cifar10.DATASET.fallback
  assert resolved.files == {'train': os.path.join(data_root, 'cifar10', 'train'),
                            'eval': os.path.join(data_root, 'cifar10', 'test')}
  # A changed file in a copy fails its class folder's checksum, naming the folder.
  copy = tmp_path / 'root' / 'cifar10'
  shutil.copytree(os.path.join(data_root, 'cifar10', 'test'), copy / 'test')
  shutil.copytree(os.path.join(data_root, 'cifar10', 'train'), copy / 'train')
  (copy / 'test' / 'ship' / '0000.jpg').write_bytes(b'x')
  with pytest.raises(datasets.DatasetError, match=r'test/ship: checksum mismatch'):
    datasets.resolve(cifar10.DATASET, data_root=str(tmp_path / 'root'), cache_dir=str(tmp_path))


def test_imagenet_offline_falls_back_to_the_sample_with_its_own_bar(data_root, tmp_path):
  resolved = datasets.resolve(imagenet.DATASET, data_root=data_root, cache_dir=str(tmp_path))
  assert set(resolved.files.values()) == {os.path.join(data_root, 'imagenet', 'sample')}
  assert 'not accuracy' in resolved.fallback.notice
  spec = spec_lib.get('imagenet')
  bars = {t.metric: t.lower_bound for t in spec.evaluation_for(True).thresholds}
  assert bars == {'example_count': 100}
  assert {t.metric for t in spec.evaluation_for(False).thresholds} == {
      'sparse_categorical_accuracy'}


def test_imagenet_folders_in_a_data_root_are_read_without_checksums(data_root, tmp_path):
  root = tmp_path / 'root' / 'imagenet'
  (root / 'train' / 'n01440764').mkdir(parents=True)
  (root / 'validation').mkdir()
  shutil.copy(os.path.join(data_root, 'imagenet', 'synsets.txt'), root / 'synsets.txt')
  resolved = datasets.resolve(imagenet.DATASET, data_root=str(tmp_path / 'root'),
                              cache_dir=str(tmp_path))
  assert resolved.fallback is None
  assert resolved.files == {'train': str(root / 'train'), 'eval': str(root / 'validation')}
  (root / 'synsets.txt').write_text('n01440764\n')  # the label order is checked, not trusted
  with pytest.raises(datasets.DatasetError, match='checksum mismatch for synsets.txt'):
    datasets.resolve_file(imagenet.DATASET, imagenet.SYNSETS, data_root=str(tmp_path / 'root'))


# --- image ops ----------------------------------------------------------------------------------

def test_pad_crop_flip_takes_a_window_of_the_padded_image():
  tf.random.set_seed(1)
  batch = tf.reshape(tf.range(2 * 8 * 8 * 1, dtype=tf.float32) + 1, [2, 8, 8, 1])
  out = images.pad_crop_flip(batch, padding=2).numpy()
  assert out.shape == (2, 8, 8, 1)
  padded = np.pad(batch.numpy(), [(0, 0), (2, 2), (2, 2), (0, 0)])
  for i in range(2):
    windows = [w for y in range(5) for x in range(5)
               for w in (padded[i, y:y + 8, x:x + 8], padded[i, y:y + 8, x:x + 8][:, ::-1])]
    assert any(np.array_equal(out[i], w) for w in windows)


def test_decode_and_crop_center_and_random(tmp_path):
  image = np.zeros((60, 100, 3), np.uint8)
  image[:, 20:80] = 255  # a white centre square of the shorter side's size (60)
  jpeg = tf.io.encode_jpeg(image, quality=100).numpy()
  png = tf.io.encode_png(image).numpy()
  center = images.decode_and_crop(tf.constant([jpeg, png]), 16, training=False).numpy()
  assert center.shape == (2, 16, 16, 3)
  assert center.min() > 240  # the central 224/256 of the shorter side is all white
  np.testing.assert_allclose(center[0], center[1], atol=3)  # JPEG and PNG alike
  crops = images.decode_and_crop(tf.constant([png] * 8), 16, training=True).numpy()
  assert crops.shape == (8, 16, 16, 3) and crops.min() < 10  # random crops reach the black sides


# --- models -------------------------------------------------------------------------------------

def trainable(model):
  return int(sum(np.prod(w.shape) for w in model.trainable_weights))


@pytest.mark.parametrize('depth,params', [(20, 272_474), (56, 855_770)])
def test_cifar_resnet_sizes(depth, params):
  # He et al. 2016, table 6: 0.27M and 0.85M parameters.
  inputs = tf_keras.Input((32, 32, 3))
  model = tf_keras.Model(inputs, resnet.cifar_resnet(inputs, depth))
  assert trainable(model) == params
  assert model.output.shape[-1] == 10
  with pytest.raises(ValueError, match='6n \\+ 2'):
    resnet.cifar_resnet(inputs, 51)


def test_resnet50_size_matches_the_published_count():
  inputs = tf_keras.Input((64, 64, 3))
  model = tf_keras.Model(inputs, resnet.imagenet_resnet(inputs))
  assert trainable(model) == 25_557_032  # torchvision's resnet50 (the same v1.5 network)
  assert model.get_layer('stage2_block1_conv2').strides == (2, 2)  # v1.5: stride on the 3x3


def test_step_decay_follows_the_seed_schedule_at_any_budget():
  schedule = image_classification.StepDecay(0.1, 182, (91 / 182, 136 / 182), (0.1, 0.01))
  assert [round(float(schedule(s)), 6) for s in (0, 90, 91, 135, 136, 181)] == [
      0.1, 0.1, 0.01, 0.01, 0.001, 0.001]
  warm = image_classification.StepDecay(0.4, 90, (30 / 90,), (0.1,), warmup=5 / 90)
  assert [round(float(warm(s)), 6) for s in (0, 4, 5, 29, 30)] == [0.08, 0.4, 0.4, 0.4, 0.04]
  with pytest.raises(ValueError, match='bad schedule'):
    image_classification.StepDecay(0.1, 100, (0.8, 0.5), (0.1, 0.01))


def test_mixed_precision_keeps_float32_probabilities_and_trains():
  policy = tf_keras.mixed_precision.global_policy()
  tf_keras.mixed_precision.set_global_policy('mixed_bfloat16')
  try:
    task = image_classification.CifarResNetTask.create('resnet20', train_steps=2, batch_size=4)
    model = task.build_model(None)
    task.compile(model, 1)
    assert model.get_layer('stage1_block1_conv1').compute_dtype == 'bfloat16'
    assert model.output.dtype == tf.float32
    x = {'image_xf': tf.random.uniform((4, 32, 32, 3), 0, 255)}
    history = model.fit(x, tf.constant([0, 1, 2, 3]), epochs=1, verbose=0)
    assert np.isfinite(history.history['loss'][0])
  finally:
    tf_keras.mixed_precision.set_global_policy(policy)
  with pytest.raises(ValueError, match='does not support mixed precision'):
    trainer.load_task(trainer.TrainerConfig(task='model_fns.mnist.MnistTask', model_type='cnn',
                                            mixed_precision='float16'))


def test_mixed_precision_flag_reaches_the_trainer_config(tmp_path):
  config = factory.RunConfig(output_dir=str(tmp_path), mixed_precision='bfloat16')
  assert factory.trainer_config(spec_lib.get('cifar10'), config).mixed_precision == 'bfloat16'
  with pytest.raises(ValueError, match='CensusTask does not support mixed precision'):
    factory.trainer_config(spec_lib.get('census'), config)


def test_rgb_png_and_jpeg_sizes():
  png = io.BytesIO()
  Image.new('RGB', (7, 5)).save(png, format='PNG')
  assert image_gen.image_size(png.getvalue()) == (5, 7)
  with pytest.raises(ValueError, match='empty file'):
    image_gen.image_size(b'')
