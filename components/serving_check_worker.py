"""The serving process of components.serving_check: answers TF Serving requests from a SavedModel.

Run as a program by path (`python -I serving_check_worker.py ...`), never imported by the pipeline:
its only imports are the standard library, TensorFlow, tensorflow_serving's request protos and the
op libraries named by `--op_module`, as in a model server, which has neither TFX nor this project.
It stands in for TF Serving's model server, which cannot run here (no Docker, no server binary),
and answers requests the way TF Serving's RPC handlers map them onto a SavedModel's signatures
(tensorflow_serving/servables/tensorflow/{predict,classifier,regressor}_util.cc and
input_util.cc, read for the mapping, not copied):

- PredictRequest: the signature named by `model_spec.signature_name` (default
  `serving_default`); `inputs` must be exactly the signature's input keys, each a TensorProto;
  `output_filter`, when set, selects outputs. The response holds one TensorProto per output.
- ClassificationRequest / RegressionRequest: the signature must have method
  `tensorflow/serving/classify` (`.../regress`) and one string input, `inputs`. The request's
  tf.Examples are serialized (an `example_list_with_context` example as its context's bytes
  followed by its own, so that its features override the context's); `classes` (string
  [batch, C]) and `scores` (float [batch, C]) become one `Classifications` per example, `outputs`
  ([batch] or [batch, 1]) one `Regression` per example.

What it does, in order, timing each step: import TensorFlow and the protos, import every op
library (`--op_module`), load the model (`tf.saved_model.load`, tag set `serve`), replay the
model's own warm-up file `assets.extra/tf_serving_warmup_requests` if it has one (as TF Serving
does at load; a failing record fails the load), answer the `--warmup` requests once untimed
(their first-call time is reported), answer every request of `--requests` (TFRecord of
`PredictionLog`s holding requests) timed one by one, writing the responses in the same order to
`--responses` (`PredictionLog`s holding responses), then repeat request `--throughput_index`
for at least `--throughput_seconds`.

Its report (`--report`, JSON) holds `import_seconds`, `op_library_seconds`, `load_seconds`,
`warmup_file_records`, `first_request_seconds`, `request_seconds` (one per request),
`throughput` ({`examples`, `repeats`, `seconds`}), `top_level_modules` (every top-level module
the process imported), and on failure `error` ({`stage`: `op_library` | `load` | `warmup_file` |
`request`, `message`, and `request` (index) for a request). The exit status is 0 on success, 1
after a reported failure.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time
import traceback

_PREDICT = 'tensorflow/serving/predict'
_CLASSIFY = 'tensorflow/serving/classify'
_REGRESS = 'tensorflow/serving/regress'
_DEFAULT_SIGNATURE = 'serving_default'
_WARMUP_FILE = os.path.join('assets.extra', 'tf_serving_warmup_requests')


class RequestError(ValueError):
  """A request the model cannot answer (TF Serving's INVALID_ARGUMENT / FAILED_PRECONDITION)."""


def _parse_args(argv):
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--model_dir', required=True)
  parser.add_argument('--requests', required=True)
  parser.add_argument('--responses', required=True)
  parser.add_argument('--report', required=True)
  parser.add_argument('--op_module', action='append', default=[])
  parser.add_argument('--warmup', type=int, action='append', default=[],
                      help='index of a request answered once, untimed, before the timed pass')
  parser.add_argument('--throughput_index', type=int, default=-1)
  parser.add_argument('--throughput_seconds', type=float, default=1.0)
  return parser.parse_args(argv)


class Server:
  """A loaded SavedModel and its SignatureDefs, answering TF Serving's request protos."""

  def __init__(self, tf, apis, model_dir: str):
    # pylint: disable-next=g-direct-tensorflow-import
    from tensorflow.core.protobuf import saved_model_pb2
    self._tf, self._apis = tf, apis
    self.model = tf.saved_model.load(model_dir, tags=['serve'])
    saved_model = saved_model_pb2.SavedModel()
    with tf.io.gfile.GFile(os.path.join(model_dir, 'saved_model.pb'), 'rb') as f:
      saved_model.ParseFromString(f.read())
    meta_graphs = [m for m in saved_model.meta_graphs if 'serve' in m.meta_info_def.tags]
    if not meta_graphs:
      raise RequestError(f'{model_dir} has no MetaGraphDef with tag set {{serve}}')
    self.signature_defs = meta_graphs[0].signature_def

  def _signature(self, model_spec, methods):
    name = model_spec.signature_name or _DEFAULT_SIGNATURE
    if name not in self.signature_defs or name not in self.model.signatures:
      raise RequestError(f'serving signature name {name!r} not found in the signature def; '
                         f'the model has {sorted(self.signature_defs)}')
    method = self.signature_defs[name].method_name
    if method not in methods:
      raise RequestError(f'signature {name!r} has method {method!r}; this request needs '
                         f'{" or ".join(methods)}')
    return name, self.model.signatures[name], self.signature_defs[name]

  def _examples(self, request_input):
    kind = request_input.WhichOneof('kind')
    if kind == 'example_list':
      serialized = [e.SerializeToString() for e in request_input.example_list.examples]
    elif kind == 'example_list_with_context':
      with_context = request_input.example_list_with_context
      context = with_context.context.SerializeToString()
      serialized = [context + e.SerializeToString() for e in with_context.examples]
    else:
      raise RequestError('the request has no input examples')
    if not serialized:
      raise RequestError('the request has an empty example list')
    return self._tf.constant(serialized, self._tf.string)

  def predict(self, request):
    tf = self._tf
    name, function, signature_def = self._signature(request.model_spec,
                                                    (_PREDICT, _CLASSIFY, _REGRESS))
    if set(request.inputs) != set(signature_def.inputs):
      raise RequestError(f'request inputs {sorted(request.inputs)} do not match signature '
                         f'{name!r} inputs {sorted(signature_def.inputs)}')
    inputs = {key: tf.constant(tf.make_ndarray(proto)) for key, proto in request.inputs.items()}
    outputs = function(**inputs)
    keys = list(request.output_filter) or sorted(outputs)
    unknown = set(keys) - set(outputs)
    if unknown:
      raise RequestError(f'output_filter names {sorted(unknown)}, not outputs of {name!r}')
    response = self._apis.predict_pb2.PredictResponse()
    response.model_spec.CopyFrom(request.model_spec)
    response.model_spec.signature_name = name
    for key in keys:
      response.outputs[key].CopyFrom(tf.make_tensor_proto(outputs[key].numpy()))
    return response

  def classify(self, request):
    name, function, signature_def = self._signature(request.model_spec, (_CLASSIFY,))
    if set(signature_def.inputs) != {'inputs'}:
      raise RequestError(f'classify signature {name!r} must have the one input `inputs`')
    examples = self._examples(request.input)
    outputs = function(inputs=examples)
    classes = outputs['classes'].numpy() if 'classes' in outputs else None
    scores = outputs['scores'].numpy() if 'scores' in outputs else None
    if classes is None and scores is None:
      raise RequestError(f'classify signature {name!r} has neither `classes` nor `scores`')
    batch = int(examples.shape[0])
    for tensor in (classes, scores):
      if tensor is not None and (tensor.ndim != 2 or tensor.shape[0] != batch):
        raise RequestError(f'expected classes / scores of shape [{batch}, C], got {tensor.shape}')
    if classes is not None and scores is not None and classes.shape != scores.shape:
      raise RequestError(f'classes {classes.shape} and scores {scores.shape} differ in shape')
    response = self._apis.classification_pb2.ClassificationResponse()
    response.model_spec.CopyFrom(request.model_spec)
    response.model_spec.signature_name = name
    num_classes = (classes if classes is not None else scores).shape[1]
    for i in range(batch):
      result = response.result.classifications.add()
      for c in range(num_classes):
        entry = result.classes.add()
        if classes is not None:
          entry.label = classes[i, c].decode('utf-8')
        if scores is not None:
          entry.score = float(scores[i, c])
    return response

  def regress(self, request):
    name, function, signature_def = self._signature(request.model_spec, (_REGRESS,))
    if set(signature_def.inputs) != {'inputs'}:
      raise RequestError(f'regress signature {name!r} must have the one input `inputs`')
    examples = self._examples(request.input)
    values = function(inputs=examples)['outputs'].numpy()
    batch = int(examples.shape[0])
    if values.shape not in ((batch,), (batch, 1)):
      raise RequestError(f'expected outputs of shape [{batch}] or [{batch}, 1], got '
                         f'{values.shape}')
    response = self._apis.regression_pb2.RegressionResponse()
    response.model_spec.CopyFrom(request.model_spec)
    response.model_spec.signature_name = name
    for value in values.reshape([-1]):
      response.result.regressions.add(value=float(value))
    return response

  def answer(self, log):
    """Answers the request of a PredictionLog; returns a PredictionLog holding the response."""
    log_pb2 = self._apis.prediction_log_pb2
    kind = log.WhichOneof('log_type')
    if kind == 'predict_log':
      return log_pb2.PredictionLog(predict_log=log_pb2.PredictLog(
          response=self.predict(log.predict_log.request)))
    if kind == 'classify_log':
      return log_pb2.PredictionLog(classify_log=log_pb2.ClassifyLog(
          response=self.classify(log.classify_log.request)))
    if kind == 'regress_log':
      return log_pb2.PredictionLog(regress_log=log_pb2.RegressLog(
          response=self.regress(log.regress_log.request)))
    raise RequestError(f'unsupported request kind {kind!r}')


def _batch_size(log) -> int:
  kind = log.WhichOneof('log_type')
  if kind == 'predict_log':
    shapes = [p.tensor_shape.dim[0].size for p in log.predict_log.request.inputs.values()
              if p.tensor_shape.dim]
    return shapes[0] if shapes else 1
  request = getattr(log, kind).request
  which = request.input.WhichOneof('kind')
  return len(getattr(request.input, which).examples) if which else 0


def main(argv) -> int:
  args = _parse_args(argv)
  report = {'pid': os.getpid()}
  stage = 'import'

  def fail(stage_name, message, **extra):
    report['error'] = {'stage': stage_name, 'message': message, **extra}
    return 1

  try:
    start = time.perf_counter()
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    from tensorflow_serving.apis import (  # pylint: disable=import-outside-toplevel
        classification_pb2, predict_pb2, prediction_log_pb2, regression_pb2)
    apis = argparse.Namespace(classification_pb2=classification_pb2, predict_pb2=predict_pb2,
                              prediction_log_pb2=prediction_log_pb2,
                              regression_pb2=regression_pb2)
    report['import_seconds'] = time.perf_counter() - start

    stage = 'op_library'
    start = time.perf_counter()
    for module in args.op_module:
      try:
        importlib.import_module(module)
      except Exception as e:  # pylint: disable=broad-except
        return fail(stage, f'op library {module!r} does not import: {type(e).__name__}: {e}')
    report['op_library_seconds'] = time.perf_counter() - start

    stage = 'load'
    start = time.perf_counter()
    try:
      server = Server(tf, apis, args.model_dir)
    except Exception as e:  # pylint: disable=broad-except
      return fail(stage, f'{type(e).__name__}: {_first_lines(str(e))}')
    report['load_seconds'] = time.perf_counter() - start

    stage = 'warmup_file'
    warmup_path = os.path.join(args.model_dir, _WARMUP_FILE)
    report['warmup_file_records'] = 0
    if tf.io.gfile.exists(warmup_path):
      for record in tf.data.TFRecordDataset(warmup_path).as_numpy_iterator():
        try:
          server.answer(prediction_log_pb2.PredictionLog.FromString(record))
        except Exception as e:  # pylint: disable=broad-except
          return fail(stage, f'warm-up record {report["warmup_file_records"]} of {warmup_path} '
                      f'fails: {type(e).__name__}: {_first_lines(str(e))}')
        report['warmup_file_records'] += 1

    stage = 'request'
    logs = [prediction_log_pb2.PredictionLog.FromString(r)
            for r in tf.data.TFRecordDataset(args.requests).as_numpy_iterator()]
    report['first_request_seconds'] = {}
    for index in args.warmup:
      start = time.perf_counter()
      try:
        server.answer(logs[index])
      except Exception as e:  # pylint: disable=broad-except
        return fail(stage, f'{type(e).__name__}: {_first_lines(str(e))}', request=index)
      report['first_request_seconds'][str(index)] = time.perf_counter() - start
    report['request_seconds'] = []
    with tf.io.TFRecordWriter(args.responses) as writer:
      for index, log in enumerate(logs):
        start = time.perf_counter()
        try:
          response = server.answer(log)
        except Exception as e:  # pylint: disable=broad-except
          return fail(stage, f'{type(e).__name__}: {_first_lines(str(e))}', request=index)
        report['request_seconds'].append(time.perf_counter() - start)
        writer.write(response.SerializeToString())

    if 0 <= args.throughput_index < len(logs):
      log = logs[args.throughput_index]
      repeats, start = 0, time.perf_counter()
      while repeats < 3 or time.perf_counter() - start < args.throughput_seconds:
        server.answer(log)
        repeats += 1
      report['throughput'] = {'examples': _batch_size(log) * repeats, 'repeats': repeats,
                              'seconds': time.perf_counter() - start}
    return 0
  except Exception:  # pylint: disable=broad-except
    return fail(stage, traceback.format_exc(limit=5))
  finally:
    report['top_level_modules'] = sorted({name.split('.')[0] for name in sys.modules})
    with open(args.report, 'w') as f:
      json.dump(report, f)


def _first_lines(text: str, count: int = 6) -> str:
  """The first `count` lines of an error message (TensorFlow's can run to pages)."""
  lines = text.strip().splitlines()
  return '\n'.join(lines[:count]) + (' ...' if len(lines) > count else '')


if __name__ == '__main__':
  sys.exit(main(sys.argv[1:]))
