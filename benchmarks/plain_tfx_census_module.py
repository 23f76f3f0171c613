"""User module of the plain-TFX census reference (benchmarks/plain_tfx_census.py), written the way the
TFX penguin example teaches (module_file, TFXIO input_fn, Keras model.save with a tf.Example
signature). Deliberately plain: it is the baseline the project's pipeline is measured against."""

import tensorflow as tf
import tensorflow_transform as tft
import tf_keras
from tfx_bsl.public import tfxio

NUMERIC = ['age', 'fnlwgt', 'education_num', 'capital_gain', 'capital_loss', 'hours_per_week']
CATEGORICAL = ['workclass', 'education', 'marital_status', 'occupation', 'relationship', 'race',
               'sex', 'native_country']
LABEL = 'label'


def _fill(x, default):
  if isinstance(x, tf.SparseTensor):
    x = tf.sparse.to_dense(tf.SparseTensor(x.indices, x.values, [x.dense_shape[0], 1]), default)
  return tf.squeeze(x, axis=1)


def preprocessing_fn(inputs):
  out = {}
  for key in NUMERIC:
    out[key] = tft.scale_to_z_score(tf.cast(_fill(inputs[key], 0), tf.float32))
  for key in CATEGORICAL:
    out[key] = tft.compute_and_apply_vocabulary(_fill(inputs[key], ''), num_oov_buckets=1,
                                                vocab_filename=key)
  out[LABEL] = _fill(inputs[LABEL], 0)
  return out


def _input_fn(files, data_accessor, tf_transform_output, batch_size):
  return data_accessor.tf_dataset_factory(
      files, tfxio.TensorFlowDatasetOptions(batch_size=batch_size, label_key=LABEL),
      tf_transform_output.transformed_metadata.schema).repeat()


def _build(tf_transform_output):
  inputs, parts = {}, []
  for key in NUMERIC:
    inputs[key] = tf_keras.Input(shape=(1,), name=key)
    parts.append(inputs[key])
  for key in CATEGORICAL:
    inputs[key] = tf_keras.Input(shape=(1,), name=key, dtype='int64')
    size = tf_transform_output.vocabulary_size_by_name(key) + 1
    parts.append(tf_keras.layers.Flatten()(tf_keras.layers.Embedding(size, 8)(inputs[key])))
  x = tf_keras.layers.concatenate(parts)
  for units in (100, 75, 50, 25):
    x = tf_keras.layers.Dense(units, activation='relu')(x)
  output = tf_keras.layers.Dense(1, activation='sigmoid')(x)
  model = tf_keras.Model(inputs, output)
  model.compile(optimizer='adam', loss='binary_crossentropy', metrics=['binary_accuracy'])
  return model


def run_fn(fn_args):
  tf_transform_output = tft.TFTransformOutput(fn_args.transform_output)
  train = _input_fn(fn_args.train_files, fn_args.data_accessor, tf_transform_output, 256)
  evaluation = _input_fn(fn_args.eval_files, fn_args.data_accessor, tf_transform_output, 256)
  model = _build(tf_transform_output)
  model.fit(train, steps_per_epoch=fn_args.train_steps, validation_data=evaluation,
            validation_steps=fn_args.eval_steps, verbose=0)
  model.tft_layer = tf_transform_output.transform_features_layer()

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name='examples')])
  def serve(serialized):
    spec = tf_transform_output.raw_feature_spec()
    spec.pop(LABEL)
    transformed = model.tft_layer(tf.io.parse_example(serialized, spec))
    return {'outputs': model(transformed)}

  model.save(fn_args.serving_model_dir, save_format='tf', signatures={'serving_default': serve})
