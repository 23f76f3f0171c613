"""MNIST's parts, fast: IDX parsing and its errors, IdxExampleGen's executor, the registry and its
t10k fallback, the preprocessing_fn, the model and the spec."""

import gzip
import hashlib
import io
import json
import os
import struct

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from components import idx_example_gen as idx
from components.record_checks import MalformedRowsError
from pipelines import factory, spec as spec_lib
from preprocessing import datasets, mnist
from tests import helpers


def write_idx(path, magic, array, extra=b'', cut=0):
  """Writes uint8 `array` as an IDX file (gzipped when `path` ends in .gz); `extra` appends
  bytes, `cut` drops that many from the end."""
  data = struct.pack('>I', magic) + struct.pack(f'>{array.ndim}I', *array.shape)
  data += array.astype(np.uint8).tobytes() + extra
  data = data[:len(data) - cut]
  with (gzip.open if str(path).endswith('.gz') else open)(path, 'wb') as f:
    f.write(data)
  return str(path)


def toy_pair(folder, count=30, prefix='toy', labels=None, gz=True):
  """An images / labels IDX pair of `count` random 28x28 images; returns (images, labels) paths
  and arrays."""
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (count, 28, 28), dtype=np.uint8)
  labels = np.arange(count) % 10 if labels is None else np.asarray(labels)
  suffix = '.gz' if gz else ''
  return (write_idx(folder / f'{prefix}-images-idx3-ubyte{suffix}', idx.IMAGES_MAGIC, images),
          write_idx(folder / f'{prefix}-labels-idx1-ubyte{suffix}', idx.LABELS_MAGIC, labels),
          images, labels)


def run_idx_example_gen(output_dir, input_base, splits, row_ranges=None,
                        max_malformed_fraction=0.0):
  """Runs IdxExampleGen's executor in process; returns the Examples artifact it wrote."""
  component = idx.IdxExampleGen(input_base=str(input_base), splits=splits,
                                max_malformed_fraction=max_malformed_fraction,
                                row_ranges=row_ranges)
  return helpers.run_executor(component, idx.Executor, output_dir)


# --- IDX parsing -------------------------------------------------------------------------------

def test_real_t10k_pair_parses_with_the_published_class_counts(data_root):
  folder = os.path.join(data_root, 'mnist')
  images_file = os.path.join(folder, 't10k-images-idx3-ubyte.gz')
  assert idx.labels_path(images_file) == os.path.join(folder, 't10k-labels-idx1-ubyte.gz')
  images, labels = idx.read_idx_pair(images_file, idx.labels_path(images_file))
  assert images.shape == (10000, 28, 28) and images.dtype == np.uint8
  # ../shared/data/README.md: 980/1135/1032/1010/982/892/958/1028/974/1009
  assert np.bincount(labels).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
  part, part_labels = idx.read_idx_pair(images_file, idx.labels_path(images_file), 8000, 2000)
  assert part.shape == (2000, 28, 28)
  np.testing.assert_array_equal(part[0], images[8000])
  np.testing.assert_array_equal(part_labels, labels[8000:])


def test_wrong_magic_number_names_the_file(tmp_path):
  images_file, labels_file, *_ = toy_pair(tmp_path)
  with pytest.raises(idx.IdxFormatError,
                     match=r'labels-idx1-ubyte.gz: wrong magic number 0x00000801 \(a labels '
                           r'file\): expected 0x00000803'):
    idx.read_idx_pair(labels_file, labels_file)
  bad = write_idx(tmp_path / 'bad-images-idx3-ubyte', 0x00000813, np.zeros((2, 28, 28)))
  with pytest.raises(idx.IdxFormatError, match=f'{bad}: wrong magic number 0x00000813: expected'):
    idx.parse_idx(open(bad, 'rb').read(), bad, idx.IMAGES_MAGIC)


def test_truncated_file_names_the_record_it_ends_in(tmp_path):
  images = np.zeros((5, 28, 28), np.uint8)
  path = write_idx(tmp_path / 'cut-images-idx3-ubyte.gz', idx.IMAGES_MAGIC, images, cut=1000)
  with gzip.open(path) as f:
    data = f.read()
  # 5 * 784 = 3920 data bytes, 2920 left: the file ends inside record 3 (2920 // 784).
  with pytest.raises(idx.IdxFormatError, match=rf'{path}: truncated: the header announces 5 '
                                               r'images of 784 byte\(s\) but the file ends '
                                               r'inside record 3'):
    idx.parse_idx(data, path, idx.IMAGES_MAGIC)
  with pytest.raises(idx.IdxFormatError, match='bytes after the last of the 5 images'):
    idx.parse_idx(data + b'\0' * 2000, path, idx.IMAGES_MAGIC)
  with pytest.raises(idx.IdxFormatError, match='truncated header'):
    idx.parse_idx(data[:10], path, idx.IMAGES_MAGIC)


def test_count_mismatch_and_range_past_the_end(tmp_path):
  images_file, _, images, _ = toy_pair(tmp_path, count=30)
  labels_file = write_idx(tmp_path / 'toy-labels-idx1-ubyte.gz', idx.LABELS_MAGIC,
                          np.zeros(29))
  with pytest.raises(idx.IdxFormatError, match=r'count mismatch: .*toy-images-idx3-ubyte.gz '
                                               r'holds 30 images but .* holds 29 labels'):
    idx.read_idx_pair(images_file, labels_file)
  write_idx(tmp_path / 'toy-labels-idx1-ubyte.gz', idx.LABELS_MAGIC, np.zeros(30))
  with pytest.raises(idx.IdxFormatError, match=r'records 20 to 39 asked for, but the file '
                                               r'holds 30'):
    idx.read_idx_pair(images_file, labels_file, 20, 20)


def test_labels_file_must_sit_beside_the_images(tmp_path):
  images_file = write_idx(tmp_path / 'x-images-idx3-ubyte', idx.IMAGES_MAGIC,
                          np.zeros((1, 28, 28)))
  with pytest.raises(idx.IdxFormatError, match='its labels file is missing'):
    idx.labels_path(images_file)
  with pytest.raises(idx.IdxFormatError, match='must contain "images-idx3"'):
    idx.labels_path(str(tmp_path / 'digits.idx'))


# --- IdxExampleGen's executor ------------------------------------------------------------------

def test_example_gen_writes_png_examples_per_record_range(tmp_path):
  images_file, _, images, labels = toy_pair(tmp_path, count=30)
  name = os.path.basename(images_file)
  examples = run_idx_example_gen(tmp_path / 'out', tmp_path, {'train': name, 'eval': name},
                                 row_ranges={'train': (0, 20), 'eval': (20, 10)})
  for split, (first, count) in {'train': (0, 20), 'eval': (20, 10)}.items():
    written = helpers.read_examples(examples.uri, split)
    assert len(written) == count
    assert examples.get_int_custom_property(f'valid_rows_{split}') == count
    assert examples.get_int_custom_property(f'malformed_rows_{split}') == 0
    assert examples.get_int_custom_property(f'first_row_{split}') == first
    by_label = {}
    for example in written:
      f = example.features.feature
      assert f['height'].int64_list.value == [28] and f['width'].int64_list.value == [28]
      png = f['image'].bytes_list.value[0]
      assert png.startswith(b'\x89PNG')
      by_label.setdefault(f['label'].int64_list.value[0], []).append(
          np.array(Image.open(io.BytesIO(png))))
    for index in range(first, first + count):  # every record, losslessly, with its label
      assert any(np.array_equal(p, images[index]) for p in by_label[labels[index]])


def test_label_out_of_range_fails_naming_file_and_record(tmp_path):
  labels = np.arange(30) % 10
  labels[17] = 12
  images_file, labels_file, *_ = toy_pair(tmp_path, count=30, labels=labels)
  name = os.path.basename(images_file)
  with pytest.raises(MalformedRowsError) as e:
    run_idx_example_gen(tmp_path / 'out', tmp_path, {'train': name})
  assert '1 of 30 records are malformed' in str(e.value)
  assert f'{labels_file}: record 17: label 12 is not in 0-9' in str(e.value)
  with open(tmp_path / 'out' / 'examples' / 'malformed_rows-train.json') as f:
    report = json.load(f)
  assert report['first_malformed'] == [
      {'file': labels_file, 'record': 17, 'reason': 'label 12 is not in 0-9'}]
  # Tolerated (and still reported) under a malformed fraction above 1/30.
  examples = run_idx_example_gen(tmp_path / 'out2', tmp_path, {'train': name},
                                 max_malformed_fraction=0.05)
  assert examples.get_int_custom_property('malformed_rows_train') == 1
  assert len(helpers.read_examples(examples.uri, 'train')) == 29


def test_example_gen_stops_on_a_wrong_magic_number(tmp_path):
  images_file, labels_file, *_ = toy_pair(tmp_path, count=5)
  write_idx(labels_file, idx.IMAGES_MAGIC, np.zeros((5, 28, 28)))  # images where labels belong
  with pytest.raises(idx.IdxFormatError, match=r'toy-labels-idx1-ubyte.gz: wrong magic number '
                                               r'0x00000803 \(an images file\)'):
    run_idx_example_gen(tmp_path / 'out', tmp_path, {'train': os.path.basename(images_file)})


def test_component_checks_its_arguments():
  with pytest.raises(ValueError, match='unknown split'):
    idx.IdxExampleGen(input_base='/x', splits={'train': 'a'}, row_ranges={'eval': (0, 1)})
  with pytest.raises(ValueError, match='positive number of rows'):
    idx.IdxExampleGen(input_base='/x', splits={'train': 'a'}, row_ranges={'train': (0, 0)})
  with pytest.raises(ValueError, match=r'max_malformed_fraction must be in \[0, 1\)'):
    idx.IdxExampleGen(input_base='/x', splits={'train': 'a'}, max_malformed_fraction=1.0)


# --- Registry, checksums and the t10k fallback ---------------------------------------------------

def offline_root(data_root, tmp_path):
  """A data root with the offline MNIST files (links to the real ones) and no training images."""
  folder = tmp_path / 'offline' / 'mnist'
  folder.mkdir(parents=True)
  for name in (mnist.TEST_IMAGES, mnist.TEST_LABELS, mnist.TRAIN_LABELS):
    os.symlink(os.path.join(data_root, 'mnist', name + '.gz'), folder / (name + '.gz'))
  return str(folder.parent)


def test_offline_data_root_falls_back_to_the_documented_t10k_split(data_root, tmp_path):
  root = offline_root(data_root, tmp_path)
  resolved = datasets.resolve(mnist.DATASET, data_root=root)
  t10k = os.path.join(root, 'mnist', 't10k-images-idx3-ubyte.gz')
  assert resolved.files == {'train': t10k, 'eval': t10k}
  assert resolved.fallback is mnist.DATASET.fallback
  assert 'records 0-7,999 and evaluating on its records 8,000-9,999' in resolved.fallback.notice
  spec = spec_lib.get('mnist')
  base = resolved.row_ranges
  assert factory.row_ranges(spec, ['train', 'eval'], base=base) == {
      'train': (0, 8000), 'eval': (8000, 2000)}
  assert factory.row_ranges(spec, ['train', 'eval'], {'train': (None, 4000)}, base=base) == {
      'train': (0, 4000), 'eval': (8000, 2000)}
  assert factory.row_ranges(spec, [], base=base) == {}  # --train_data / --eval_data: whole files
  # Asked for the eval split only, nothing is missing: no fallback, the whole t10k file.
  eval_only = datasets.resolve(mnist.DATASET, data_root=root, splits=['eval'])
  assert eval_only.fallback is None and eval_only.row_ranges == {}


def test_checksums_of_the_offline_files_are_those_registered(data_root):
  for name in (mnist.TEST_IMAGES, mnist.TEST_LABELS, mnist.TRAIN_LABELS):
    path = datasets.resolve_file(mnist.DATASET, name, data_root=data_root)
    assert datasets.sha256_of_file(path) == mnist.DATASET.file(name).sha256
    # The shared copies are recompressed: their .gz bytes differ from the canonical ones.
    assert datasets.sha256_of_file(path, False, 'md5') != mnist.DATASET.file(name).gz_md5


def test_a_corrupt_file_is_never_replaced_by_the_fallback(tmp_path):
  folder = tmp_path / 'mnist'
  folder.mkdir()
  write_idx(folder / 'train-images-idx3-ubyte.gz', idx.IMAGES_MAGIC, np.zeros((3, 28, 28)))
  with pytest.raises(datasets.DatasetError, match='checksum mismatch for train-images-idx3-ubyte: '
                                                  'expected MD5 f68b3c2dcbeaaa9fbdd348bbdeb94873'):
    datasets.resolve_file(mnist.DATASET, mnist.TRAIN_IMAGES, data_root=str(tmp_path))
  (folder / 'train-images-idx3-ubyte.gz').rename(folder / 'train-images-idx3-ubyte')
  with pytest.raises(datasets.DatasetError, match='can only be verified as the canonical '
                                                  r'train-images-idx3-ubyte.gz \(MD5 '):
    datasets.resolve_file(mnist.DATASET, mnist.TRAIN_IMAGES, data_root=str(tmp_path))


def test_fallback_and_companion_mechanism_on_a_toy_dataset(tmp_path):
  root = tmp_path / 'root'
  (root / 'toy').mkdir(parents=True)
  images_file, labels_file, *_ = toy_pair(root / 'toy', count=4, prefix='small', gz=False)
  sha = {p: hashlib.sha256(open(p, 'rb').read()).hexdigest() for p in (images_file, labels_file)}
  fallback = datasets.Fallback(missing='big-images-idx3-ubyte',
                               splits={'train': 'small-images-idx3-ubyte'},
                               row_ranges={'train': (0, 2), 'eval': (2, 2)}, notice='use small.')
  toy = datasets.Dataset(
      name='toy-idx', splits={'train': 'big-images-idx3-ubyte', 'eval': 'small-images-idx3-ubyte'},
      files=(datasets.DataFile('big-images-idx3-ubyte', None, 'ab' * 32),
             datasets.DataFile('small-images-idx3-ubyte', None, sha[images_file],
                               companion='small-labels-idx1-ubyte'),
             datasets.DataFile('small-labels-idx1-ubyte', None, sha[labels_file])),
      row_ranges={'train': (0, 1)}, fallback=fallback, folder='toy')
  resolved = datasets.resolve(toy, data_root=str(root))
  assert resolved.files == {'train': images_file, 'eval': images_file}
  assert resolved.fallback is fallback and resolved.row_ranges == {'train': (0, 2), 'eval': (2, 2)}
  with pytest.raises(datasets.MissingFileError):  # resolve_file itself never falls back
    datasets.resolve_file(toy, 'big-images-idx3-ubyte', data_root=str(root))
  os.remove(labels_file)  # the companion is resolved (and verified) with its images
  with pytest.raises(datasets.MissingFileError, match='small-labels-idx1-ubyte of dataset'):
    datasets.resolve_file(toy, 'small-images-idx3-ubyte', data_root=str(root))
  with pytest.raises(datasets.MissingFileError):  # no fallback for the fallback's own file
    datasets.resolve(toy, data_root=str(root))
  big = root / 'toy' / 'big-images-idx3-ubyte'
  big.write_bytes(b'x')
  big_file = datasets.DataFile('big-images-idx3-ubyte', None, hashlib.sha256(b'x').hexdigest())
  toy_ok = datasets.Dataset(name='toy-idx-2', splits={'train': 'big-images-idx3-ubyte'},
                            fallback=fallback, folder='toy', row_ranges=toy.row_ranges,
                            files=(big_file,) + toy.files[1:])
  resolved = datasets.resolve(toy_ok, data_root=str(root))
  assert resolved.files == {'train': str(big)}
  assert resolved.fallback is None and resolved.row_ranges == {'train': (0, 1)}


def test_gz_md5_verifies_a_gzipped_copy(tmp_path):
  path = tmp_path / 'f.gz'
  with gzip.open(path, 'wb') as f:
    f.write(b'hello')
  md5 = hashlib.md5(path.read_bytes()).hexdigest()
  datasets.verify(str(path), datasets.DataFile('f', None, None, gz_md5=md5))
  with pytest.raises(datasets.DatasetError, match='expected MD5 0+ of the gzipped bytes'):
    datasets.verify(str(path), datasets.DataFile('f', None, None, gz_md5='0' * 32))


# --- Transform, model and spec -------------------------------------------------------------------

def _png(array):
  return tf.io.encode_png(tf.constant(array, tf.uint8)).numpy()


def test_preprocessing_fn_decodes_png_and_jpeg_to_unit_floats():
  rng = np.random.default_rng(1)
  image = rng.integers(0, 256, (28, 28, 1), dtype=np.uint8)
  color = rng.integers(0, 256, (56, 40, 3), dtype=np.uint8)  # another size, 3 channels
  jpeg = tf.io.encode_jpeg(tf.constant(np.zeros((28, 28, 1), np.uint8)), quality=100).numpy()
  inputs = {'image': tf.constant([[_png(image)], [_png(color)], [jpeg]]),
            'label': tf.constant([[3], [4], [5]], tf.int64)}
  outputs = mnist.preprocessing_fn(inputs)
  assert sorted(outputs) == ['image_xf', 'label']
  pixels = outputs['image_xf'].numpy()
  assert pixels.shape == (3, 28, 28, 1) and pixels.dtype == np.float32
  assert pixels.min() >= 0 and pixels.max() <= 1
  np.testing.assert_allclose(pixels[0], image / 255.0, atol=1e-6)  # a 28x28 PNG is exact
  np.testing.assert_allclose(pixels[2], 0, atol=2 / 255)
  assert outputs['label'].numpy().tolist() == [3, 4, 5]
  with pytest.raises(tf.errors.InvalidArgumentError):
    mnist.decode_images(tf.constant([b'\x89PNG\r\n\x1a\n not really']))


def test_model_is_the_seed_cnn_and_the_spec_is_registered():
  from model_fns import mnist as mnist_model  # pylint: disable=import-outside-toplevel
  model = mnist_model.MnistTask.create('cnn').build_model(None)
  kinds = [(type(layer).__name__, getattr(layer, 'filters', None) or getattr(layer, 'units', None)
            or getattr(layer, 'rate', None)) for layer in model.layers]
  assert kinds == [('InputLayer', None), ('Conv2D', 32), ('MaxPooling2D', None), ('Conv2D', 64),
                   ('MaxPooling2D', None), ('Flatten', None), ('Dense', 1024), ('Dropout', 0.4),
                   ('Dense', 10), ('Softmax', None)]
  assert model.output_shape == (None, 10)
  assert model.layers[1].kernel_size == (5, 5)
  spec = spec_lib.get('mnist')
  config = spec.evaluation.eval_config()
  assert config.model_specs[0].label_key == 'label'
  assert [s.feature_keys for s in config.slicing_specs] == [[], ['label']]
  # Equal, not identical: TFX's Transform import reloads preprocessing modules in a test session.
  assert spec.dataset == mnist.DATASET and spec.max_malformed_fraction == 0.0
