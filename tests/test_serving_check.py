"""The serving check (components.serving_check) and TF Serving's classification signature.

Tiny Keras models built here and exported with the shared trainer's `export_serving_model` are
served by the check's fresh process; one e2e test runs census with few steps."""

from __future__ import annotations

import dataclasses
import glob
import json
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf
import tf_keras
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow_serving.apis import classification_pb2, predict_pb2, prediction_log_pb2
from tfx.components.pusher import executor as pusher_executor
from tfx.proto import pusher_pb2
from tfx.types import standard_artifacts
from tfx.utils import proto_utils

from components import serving_check
from model_fns import trainer
from pipelines import factory, spec as spec_lib

COLORS = (b'red', b'green', b'blue', b'pink')  # pink: out of the vocabulary
FEATURE_SPEC = {'x': tf.io.FixedLenFeature([1], tf.float32),
                'color': tf.io.FixedLenFeature([1], tf.string),
                'label': tf.io.FixedLenFeature([1], tf.int64)}
# Modules a model server has not: the serving process must import none of them.
NOT_IN_A_SERVER = {'tfx', 'tensorflow_transform', 'tensorflow_model_analysis', 'apache_beam',
                   'tf_keras', 'model_fns', 'components', 'pipelines', 'preprocessing'}


class TinyTask(trainer.KerasTask):
  """x (float) and color (string, looked up in a vocabulary file: a SavedModel asset) -> the
  probability of class 1 ([batch, 1]) or of each of `classes` classes."""

  label_key = 'label'
  classification_signature = True

  def __init__(self, vocabulary: str, classes: int = 1, text_op: bool = False):
    super().__init__(trainer.TaskParams(model_type='default', hparams={}))
    self.vocabulary, self.classes, self.text_op = vocabulary, classes, text_op

  def build_model(self, inputs):
    x = tf_keras.Input(shape=(1,), dtype='float32', name='x')
    color = tf_keras.Input(shape=(1,), dtype='string', name='color')
    ids = tf_keras.layers.StringLookup(vocabulary=self.vocabulary, output_mode='one_hot')(color)
    hidden = tf_keras.layers.Concatenate()([x, tf_keras.layers.Flatten()(ids)])
    hidden = tf_keras.layers.Dense(4, activation='tanh')(hidden)
    activation = 'sigmoid' if self.classes == 1 else 'softmax'
    output = tf_keras.layers.Dense(self.classes, activation=activation)(hidden)
    return tf_keras.Model({'x': x, 'color': color}, output)

  def preprocess_batch(self, features, training):
    if self.text_op:  # a tensorflow_text op (NormalizeUTF8) in the serving graph
      import tensorflow_text  # pylint: disable=import-outside-toplevel
      features = dict(features, color=tensorflow_text.normalize_utf8(features['color'], 'NFKC'))
    return features


def example(x: float, color: bytes) -> bytes:
  return tf.train.Example(features=tf.train.Features(feature={
      'x': tf.train.Feature(float_list=tf.train.FloatList(value=[x])),
      'color': tf.train.Feature(bytes_list=tf.train.BytesList(value=[color])),
      'label': tf.train.Feature(int64_list=tf.train.Int64List(value=[int(x > 0)]))})
  ).SerializeToString()


RECORDS = [example(float(np.sin(i)), COLORS[i % 4]) for i in range(64)]


def export(path, classes=1, text_op=False):
  """Exports a TinyTask model (random weights) to `path`; returns (model, model_dir)."""
  vocabulary = os.path.join(os.path.dirname(str(path)), 'colors.txt')
  with open(vocabulary, 'w') as f:
    f.write('red\ngreen\nblue\n')
  task = TinyTask(vocabulary, classes, text_op)
  tf_keras.utils.set_random_seed(classes)
  model = task.build_model(None)
  inputs = trainer.ModelInputs(FEATURE_SPEC, FEATURE_SPEC)
  trainer.export_serving_model(model, task, inputs, str(path))
  return model, str(path)


def keras_probabilities(model, records):
  parsed = tf.io.parse_example(records, FEATURE_SPEC)
  return model({'x': parsed['x'], 'color': parsed['color']}).numpy()


def signature_methods(model_dir):
  saved_model = saved_model_pb2.SavedModel()
  with open(os.path.join(model_dir, 'saved_model.pb'), 'rb') as f:
    saved_model.ParseFromString(f.read())
  return {k: v.method_name for k, v in saved_model.meta_graphs[0].signature_def.items()
          if not k.startswith('__')}  # not `__saved_model_init_op`, which is no signature


def examples_artifact(root, records):
  """An Examples artifact with the `records` as its gzipped `eval` split."""
  examples = standard_artifacts.Examples()
  examples.uri = os.path.join(str(root), 'examples')
  examples.split_names = '["eval"]'
  os.makedirs(os.path.join(examples.uri, 'Split-eval'))
  with tf.io.TFRecordWriter(os.path.join(examples.uri, 'Split-eval', 'data.gz'),
                            options='GZIP') as writer:
    for record in records:
      writer.write(record)
  return examples


def model_artifact(model_dir, root):
  """A Model artifact holding a copy of the SavedModel in `model_dir` as Format-Serving."""
  model = standard_artifacts.Model()
  model.uri = os.path.join(str(root), 'model')
  shutil.copytree(model_dir, os.path.join(model.uri, 'Format-Serving'))
  return model


def run_check(root, model, examples, **properties):
  blessing = standard_artifacts.InfraBlessing()
  blessing.uri = os.path.join(str(root), 'blessing')
  os.makedirs(blessing.uri)
  spec = serving_check.default_request_spec(split_name='eval', num_examples=8)
  exec_properties = {'request_spec': proto_utils.proto_to_json(spec),
                     'throughput_batch_size': 16, 'model_name': 'tiny', **properties}
  serving_check.Executor().Do({'model': [model], 'examples': [examples]},
                              {'blessing': [blessing]}, exec_properties)
  return blessing


def push(root, model, infra_blessing):
  """Runs TFX's Pusher executor on an Evaluator-blessed `model`; returns (pushed?, destination)."""
  model_blessing = standard_artifacts.ModelBlessing()
  model_blessing.uri = os.path.join(str(root), 'model_blessing')
  model_blessing.set_int_custom_property('blessed', 1)
  pushed = standard_artifacts.PushedModel()
  pushed.uri = os.path.join(str(root), 'pushed_model')
  destination = os.path.join(str(root), 'serving_model')
  push_destination = pusher_pb2.PushDestination(
      filesystem=pusher_pb2.PushDestination.Filesystem(base_directory=destination))
  pusher_executor.Executor().Do(
      {'model': [model], 'model_blessing': [model_blessing], 'infra_blessing': [infra_blessing]},
      {'pushed_model': [pushed]},
      {'push_destination': proto_utils.proto_to_json(push_destination), 'custom_config': '{}'})
  return bool(pushed.get_int_custom_property('pushed')), destination


# ------------------------------------------------------------------------------------------------
# The classification signature.


@pytest.mark.parametrize('classes', [1, 3])
def test_export_adds_a_servable_classify_signature_and_keeps_serving_default(tmp_path, classes):
  model, model_dir = export(tmp_path / 'model', classes)
  methods = signature_methods(model_dir)
  assert methods == {'serving_default': tf.saved_model.PREDICT_METHOD_NAME,
                     'classification': tf.saved_model.CLASSIFY_METHOD_NAME}
  loaded = tf.saved_model.load(model_dir)
  default = loaded.signatures['serving_default'](examples=tf.constant(RECORDS))
  assert sorted(default) == ['class_ids', 'probabilities']
  probabilities = keras_probabilities(model, RECORDS)
  np.testing.assert_allclose(default['probabilities'].numpy(), probabilities, atol=1e-6)
  classify = loaded.signatures['classification'](inputs=tf.constant(RECORDS))
  columns = max(classes, 2)
  assert classify['classes'].dtype == tf.string and classify['scores'].dtype == tf.float32
  assert classify['classes'].shape == classify['scores'].shape == (len(RECORDS), columns)
  assert classify['classes'].numpy()[5].tolist() == [str(i).encode() for i in range(columns)]
  expected = np.hstack([1 - probabilities, probabilities]) if classes == 1 else probabilities
  np.testing.assert_allclose(classify['scores'].numpy(), expected, atol=1e-6)
  assert len(tf.io.gfile.listdir(os.path.join(model_dir, 'assets'))) == 1  # the vocabulary


def test_a_signature_that_breaks_the_classify_contract_is_refused(tmp_path):
  _, model_dir = export(tmp_path / 'model')
  with pytest.raises(ValueError, match="signature 'serving_default' is not servable"):
    trainer.set_signature_methods(model_dir,  # its input is `examples`, not `inputs`
                                  {'serving_default': tf.saved_model.CLASSIFY_METHOD_NAME})
  with pytest.raises(ValueError, match='has no signature'):
    trainer.set_signature_methods(model_dir, {'missing': tf.saved_model.CLASSIFY_METHOD_NAME})


def test_classifiers_export_the_classification_signature_and_the_others_do_not():
  from tfx.utils import import_utils  # pylint: disable=import-outside-toplevel
  for name in spec_lib.names():
    spec = spec_lib.get(name)
    task = import_utils.import_class_by_path(spec.task)
    classifier = name in ('census', 'higgs', 'mnist', 'cifar10', 'imagenet', 'mrpc')
    assert task.classification_signature is classifier, name


# ------------------------------------------------------------------------------------------------
# The spec's op libraries, the pipeline.


def test_specs_declare_the_op_libraries_a_server_needs():
  assert spec_lib.get('higgs').serving_op_modules == ('tensorflow_decision_forests',)
  assert spec_lib.get('mrpc').serving_op_modules == ('tensorflow_text',)
  assert spec_lib.get('wmt').serving_op_modules == ('tensorflow_text',)
  for name in ('census', 'mnist', 'cifar10', 'imagenet', 'movielens'):
    assert spec_lib.get(name).serving_op_modules == (), name
  census = spec_lib.get('census')
  with pytest.raises(ValueError, match='serving_op_modules'):
    dataclasses.replace(census, model_ops_module='tensorflow_text')
  with pytest.raises(ValueError, match='not a module name'):
    dataclasses.replace(census, serving_op_modules=('tensorflow text',))


def test_pipeline_checks_serving_between_evaluator_and_pusher(tmp_path, data_root):
  from preprocessing import datasets  # pylint: disable=import-outside-toplevel
  spec = spec_lib.get('higgs')
  files = datasets.resolve_splits(spec.dataset, data_root=data_root, sample=True)
  pipeline = factory.create_pipeline(spec, factory.RunConfig(output_dir=str(tmp_path)), files)
  nodes = {c.id: c for c in pipeline.components}
  ids = [c.id for c in pipeline.components]
  assert ids.index('Evaluator') < ids.index('ServingCheck') < ids.index('Pusher')
  check, pusher = nodes['ServingCheck'], nodes['Pusher']
  assert pusher.inputs['infra_blessing'].producer_component_id == 'ServingCheck'
  assert check.inputs['model'].producer_component_id == 'Trainer'
  assert 'Evaluator' in check.upstream_nodes or any(
      n.id == 'Evaluator' for n in check.upstream_nodes)
  assert json.loads(check.exec_properties['serving_op_modules']) == [
      'tensorflow_decision_forests']
  assert check.exec_properties['model_name'] == 'higgs'


# ------------------------------------------------------------------------------------------------
# The serving check (each test starts one serving process: tens of seconds on a busy machine).


@pytest.mark.parametrize('classes', [1, 3])
def test_served_predict_and_classify_answers_equal_the_model_probabilities(tmp_path, classes):
  model, model_dir = export(tmp_path / 'model', classes)
  result = serving_check.check_serving(model_dir, RECORDS, num_examples=10,
                                       throughput_batch_size=32, model_name='tiny')
  assert result.blessed, result.reason
  assert result.signatures == {'serving_default': tf.saved_model.PREDICT_METHOD_NAME,
                               'classification': tf.saved_model.CLASSIFY_METHOD_NAME}
  assert not NOT_IN_A_SERVER & set(result.worker_modules), result.worker_modules
  assert 'tensorflow' in result.worker_modules
  probabilities = keras_probabilities(model, RECORDS)
  kinds = {'predict': 0, 'classify': 0}
  for request, log in zip(result.requests, result.responses):
    if isinstance(request, predict_pb2.PredictRequest):
      served = tf.make_ndarray(log.predict_log.response.outputs['probabilities'])
      indices = [RECORDS.index(r) for r in request.inputs['examples'].string_val]
      np.testing.assert_allclose(served, probabilities[indices], atol=1e-5)
      kinds['predict'] += 1
    else:
      assert isinstance(request, classification_pb2.ClassificationRequest)
      index = RECORDS.index(request.input.example_list.examples[0].SerializeToString())
      (classification,) = log.classify_log.response.result.classifications
      labels = [c.label for c in classification.classes]
      scores = np.array([c.score for c in classification.classes])
      assert labels == [str(i) for i in range(max(classes, 2))]
      want = probabilities[index]
      np.testing.assert_allclose(scores, [1 - want[0], want[0]] if classes == 1 else want,
                                 atol=1e-5)
      kinds['classify'] += 1
  assert kinds == {'predict': 11, 'classify': 10}  # 10 at batch 1 and one of 32; 10 classify
  m = result.measurements
  assert m['load_seconds'] > 0 and m['max_abs_difference'] <= 1e-5
  assert 0 < m['latency_p50_ms'] <= m['latency_p99_ms']
  assert m['throughput_examples_per_second'] > 0 and m['throughput_batch_size'] == 32


def test_blessed_model_gets_warmup_records_and_is_pushed_with_them(tmp_path):
  _, model_dir = export(tmp_path / 'export')
  model = model_artifact(model_dir, tmp_path)
  blessing = run_check(tmp_path, model, examples_artifact(tmp_path, RECORDS))
  assert blessing.get_int_custom_property('blessed') == 1
  assert os.path.exists(os.path.join(blessing.uri, 'INFRA_BLESSED'))
  assert not os.path.exists(os.path.join(blessing.uri, 'INFRA_NOT_BLESSED'))
  assert blessing.get_float_custom_property('latency_p99_ms') > 0
  with open(os.path.join(blessing.uri, 'serving_check.json')) as f:
    report = json.load(f)
  assert report['blessed'] is True and report['requests'] == 8 * 2 + 1
  assert report['throughput_batch_size'] == 16

  warmup = os.path.join(model.uri, 'Format-Serving', 'assets.extra',
                        'tf_serving_warmup_requests')
  logs = [prediction_log_pb2.PredictionLog.FromString(r.numpy())
          for r in tf.data.TFRecordDataset(warmup)]
  assert [log.WhichOneof('log_type') for log in logs] == ['predict_log', 'classify_log']
  assert logs[0].predict_log.request.model_spec.name == 'tiny'
  assert logs[0].predict_log.request.inputs['examples'].string_val == [RECORDS[0]]
  assert logs[1].classify_log.request.model_spec.signature_name == 'classification'
  assert len(logs[1].classify_log.request.input.example_list.examples) == 1

  pushed, destination = push(tmp_path, model, blessing)
  assert pushed
  (version,) = os.listdir(destination)
  assert os.path.isfile(os.path.join(destination, version, 'assets.extra',
                                     'tf_serving_warmup_requests'))


def test_model_without_its_asset_file_is_not_blessed_nor_pushed(tmp_path):
  _, model_dir = export(tmp_path / 'export')
  model = model_artifact(model_dir, tmp_path)
  (asset,) = glob.glob(os.path.join(model.uri, 'Format-Serving', 'assets', '*'))
  os.remove(asset)
  blessing = run_check(tmp_path, model, examples_artifact(tmp_path, RECORDS))
  assert blessing.get_int_custom_property('blessed') == 0
  assert os.path.exists(os.path.join(blessing.uri, 'INFRA_NOT_BLESSED'))
  reason = blessing.get_string_custom_property('reason')
  assert reason.startswith('serving process, load:') and 'colors.txt' in reason, reason
  assert not os.path.exists(os.path.join(model.uri, 'Format-Serving', 'assets.extra'))
  pushed, destination = push(tmp_path, model, blessing)
  assert not pushed and not os.path.exists(destination)


def test_model_needing_an_op_library_the_server_does_not_load_is_not_blessed(tmp_path):
  _, model_dir = export(tmp_path / 'model', text_op=True)
  result = serving_check.check_serving(model_dir, RECORDS, op_modules=(), num_examples=2,
                                       throughput_batch_size=4)
  assert not result.blessed
  assert result.reason.startswith('serving process, load:'), result.reason
  assert 'NormalizeUTF8' in result.reason, result.reason
  assert 'load_seconds' not in result.measurements


# ------------------------------------------------------------------------------------------------
# Census end to end.


@pytest.mark.e2e
@pytest.mark.slow  # runs census of its own: `-m slow`, to keep the default run within 30 min
def test_census_run_records_the_infra_blessing_and_pushes_a_model_that_serves(tmp_path,
                                                                            data_root):
  """A short census run (4,000 training rows, 1,000 eval rows, 100 steps; the accuracy bar
  lowered to 0.6 so that the short training is pushed): the ServingCheck blesses, the pushed
  model holds the warm-up file, and served through the check's process it answers a
  PredictRequest and a ClassificationRequest over the whole eval split with the probabilities
  TFMA's metrics came from."""
  from pipelines import metadata, runner  # pylint: disable=import-outside-toplevel
  # pylint: disable-next=import-outside-toplevel
  from preprocessing import census as census_data, datasets
  census = spec_lib.get('census')
  spec = dataclasses.replace(census, evaluation=dataclasses.replace(
      census.evaluation, thresholds=(spec_lib.Threshold('binary_accuracy', lower_bound=0.6),)))
  config = factory.RunConfig(output_dir=str(tmp_path), train_steps=100)
  files = datasets.resolve_splits(census.dataset, data_root=data_root)
  summary = runner.run(spec, config, factory.RunInputs(
      split_files=files, row_ranges={'train': (0, 4000), 'eval': (0, 1000)}), progress=False)
  assert summary['error'] is None and summary['blessed'] is True, summary
  names = [s['name'] for s in summary['stages']]
  assert names.index('Evaluator') < names.index('ServingCheck') < names.index('Pusher')

  store = metadata.open_store(config.metadata_path)
  (blessing,) = store.get_artifacts_by_type('InfraBlessing')
  properties = serving_check.serving_check_summary(blessing.custom_properties)
  assert properties['blessed'] is True and 'reason' not in properties, properties
  assert properties['signatures'] == 'serving_default,classification'
  for key in ('load_seconds', 'latency_p50_ms', 'latency_p99_ms',
              'throughput_examples_per_second'):
    assert properties[key] > 0, (key, properties)
  assert os.path.exists(os.path.join(blessing.uri, 'INFRA_BLESSED'))

  pushed = summary['pushed_model']
  assert pushed and os.path.isdir(pushed)
  warmup = os.path.join(pushed, 'assets.extra', 'tf_serving_warmup_requests')
  logs = [prediction_log_pb2.PredictionLog.FromString(r.numpy())
          for r in tf.data.TFRecordDataset(warmup)]
  assert [log.WhichOneof('log_type') for log in logs] == ['predict_log', 'classify_log']

  (examples,) = [a for a in store.get_artifacts_by_type('Examples')  # not Transform's
                 if '/TextLineExampleGen/' in a.uri]
  records = [r.numpy() for r in tf.data.TFRecordDataset(
      sorted(glob.glob(os.path.join(examples.uri, 'Split-eval', '*'))), compression_type='GZIP')]
  assert len(records) == summary['metrics']['example_count']
  labels = np.array([tf.train.Example.FromString(r).features.feature[census_data.LABEL_KEY]
                     .int64_list.value[0] for r in records])
  requests = [serving_check.build_request('serving_default', tf.saved_model.PREDICT_METHOD_NAME,
                                          'examples', records, 'census'),
              serving_check.build_request('classification', tf.saved_model.CLASSIFY_METHOD_NAME,
                                          'inputs', records, 'census')]
  with serving_check.start_worker(pushed, requests, spec.serving_op_modules) as wait:
    run = wait()
  assert run.responses is not None, run.report
  assert run.report['warmup_file_records'] == 2
  predicted = tf.make_ndarray(
      run.responses[0].predict_log.response.outputs['probabilities'])[:, 0]
  classified = run.responses[1].classify_log.response.result.classifications
  assert len(classified) == len(records)
  assert [c.label for c in classified[0].classes] == ['0', '1']
  np.testing.assert_allclose([c.classes[1].score for c in classified], predicted, atol=1e-5)
  np.testing.assert_allclose([c.classes[0].score for c in classified], 1 - predicted, atol=1e-5)

  (evaluation,) = store.get_artifacts_by_type('ModelEvaluation')
  tfma_metrics = metadata.evaluation_metrics(evaluation.uri)['']
  assert float(np.mean(predicted)) == pytest.approx(tfma_metrics['mean_prediction'], abs=1e-5)
  assert float(np.mean((predicted > 0.5) == labels)) == pytest.approx(
      tfma_metrics['binary_accuracy'], abs=1e-4)
