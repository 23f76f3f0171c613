"""ServingCheck: TFX's InfraValidator without a model server, between the Evaluator and the Pusher.

TFX's InfraValidator (tfx/components/infra_validator) blesses a model once TF Serving, started in
Docker or on Kubernetes, has loaded it and answered requests built from real examples. Neither
runs here, so this component does the next best thing on the same contract: it loads the
candidate SavedModel (`<model uri>/Format-Serving`) in a fresh Python process whose only imports
are TensorFlow, tensorflow_serving's request protos and the op libraries the model needs
(components/serving_check_worker.py, started with `python -I` by path: no TFX, nothing of this
project), sends it TF Serving requests (`PredictRequest` for predict signatures,
`ClassificationRequest` / `RegressionRequest` for classify / regress signatures) built from the
eval split's tf.Examples, and answers them through the loaded signatures as TF Serving's handlers
map them. The model is infra-blessed when every answer equals, within `tolerance` (absolute, on
float outputs; strings and integers exactly), the outputs of the same model loaded in this
component's process (the Evaluator's view) for the same examples.

Same names as InfraValidator, so that moving to it (TF Serving on Kubernetes) replaces this one
component: inputs `model` (Model) and `examples` (Examples), output `blessing`
(standard_artifacts.InfraBlessing, custom property `blessed` 1 or 0 and an empty `INFRA_BLESSED` or
`INFRA_NOT_BLESSED` file, as InfraValidator's executor writes them), parameters `request_spec`
(infra_validator_pb2.RequestSpec: `tensorflow_serving.signature_names` (default: every signature
TF Serving can serve from serialized tf.Examples), `tensorflow_serving.tag_set`, `split_name`
(default: the first split, as InfraValidator), `num_examples`, `make_warmup`) and
`validation_spec` (`max_loading_time_seconds`: the serving process's whole time limit). Its own
parameters: `serving_op_modules` (the spec's op libraries), `model_name` (the requests'
`model_spec.name`), `tolerance`, `throughput_batch_size`. The Pusher takes `infra_blessing=` and
pushes nothing without `blessed` = 1.

Measured and recorded (custom properties of the blessing, and `serving_check.json` in it): the
model's load time in the serving process (`load_seconds`), the latency of batch-1 requests to the
first predict signature (`latency_p50_ms`, `latency_p99_ms`, over `num_examples` requests after
one untimed warm-up request, as a server that replayed its warm-up file answers them) and the
throughput of one `throughput_batch_size` PredictRequest repeated for a second
(`throughput_examples_per_second`). A model that does not load, lacks an op library, fails a
request or answers differently is not blessed; `reason` says why, and the component logs it as an
error line.

With `make_warmup` (the default here), a blessed model gets TF Serving's warm-up file
`assets.extra/tf_serving_warmup_requests` (a TFRecord of `prediction_log_pb2.PredictionLog`s: the
first request of every signature checked) written into the candidate's own Format-Serving
directory, which the Pusher then copies; InfraValidator instead writes a copy of the model into
the blessing (`has_model`), which this component does not, to keep the node cheap.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import tensorflow as tf
from absl import logging
from tensorflow_serving.apis import classification_pb2
from tensorflow_serving.apis import predict_pb2
from tensorflow_serving.apis import prediction_log_pb2
from tensorflow_serving.apis import regression_pb2
from tfx import types
from tfx.components.util import examples_utils
from tfx.dsl.components.base import base_component, base_executor, executor_spec
from tfx.proto import example_gen_pb2, infra_validator_pb2
from tfx.types import artifact_utils, standard_artifacts
from tfx.types.component_spec import ChannelParameter, ComponentSpec, ExecutionParameter
from tfx.utils import io_utils, path_utils, proto_utils

WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'serving_check_worker.py')
REPORT_FILE = 'serving_check.json'
# InfraValidator's conventions (tfx/components/infra_validator/executor.py).
BLESSED_KEY = 'blessed'
BLESSED_FILE = 'INFRA_BLESSED'
NOT_BLESSED_FILE = 'INFRA_NOT_BLESSED'
DEFAULT_NUM_EXAMPLES = 100
DEFAULT_THROUGHPUT_BATCH_SIZE = 256
DEFAULT_TOLERANCE = 1e-5
# A guard against a serving process that hangs, not a speed bar: generous, since ResNet-50's
# requests on a loaded 2-core machine have outlived a tighter limit.
DEFAULT_TIMEOUT_SECONDS = 1800
THROUGHPUT_SECONDS = 1.0

Request = Union[predict_pb2.PredictRequest, classification_pb2.ClassificationRequest,
                regression_pb2.RegressionRequest]
_SERVE = tf.saved_model.SERVING


# ----------------------------------------------------------------------------------------------
# Requests.


def servable_signatures(model_dir: str, tag_set: Sequence[str] = (),
                        names: Sequence[str] = ()) -> Dict[str, Tuple[str, str]]:
  """{signature name: (method name, serialized-examples input key)} of the SavedModel's
  signatures that a TF Serving request can be built for from tf.Examples: predict signatures with
  one string [None] input (InfraValidator's rule), classify and regress ones (input `inputs`).

  Args:
    model_dir: the SavedModel directory.
    tag_set: the MetaGraphDef's tags; default {serve}.
    names: the signatures to check; default every servable one, `serving_default` first.

  Raises:
    ValueError: no MetaGraphDef with `tag_set`, a named signature missing or not servable from
      tf.Examples, or no servable signature at all.
  """
  from tensorflow.core.protobuf import saved_model_pb2  # pylint: disable=g-direct-tensorflow-import
  saved_model = saved_model_pb2.SavedModel()
  with tf.io.gfile.GFile(os.path.join(model_dir, tf.saved_model.SAVED_MODEL_FILENAME_PB),
                         'rb') as f:
    saved_model.ParseFromString(f.read())
  tags = set(tag_set or (_SERVE,))
  meta_graphs = [m for m in saved_model.meta_graphs if tags <= set(m.meta_info_def.tags)]
  if not meta_graphs:
    raise ValueError(f'{model_dir} has no MetaGraphDef with tags {sorted(tags)}')
  signature_defs = meta_graphs[0].signature_def
  found = {}
  for name, signature in signature_defs.items():
    if signature.method_name in (tf.saved_model.CLASSIFY_METHOD_NAME,
                                 tf.saved_model.REGRESS_METHOD_NAME):
      if set(signature.inputs) == {tf.saved_model.CLASSIFY_INPUTS}:
        found[name] = (signature.method_name, tf.saved_model.CLASSIFY_INPUTS)
    elif signature.method_name == tf.saved_model.PREDICT_METHOD_NAME and len(signature.inputs) == 1:
      (key, info), = signature.inputs.items()
      if (info.dtype == tf.string.as_datatype_enum
          and info.tensor_shape == tf.TensorShape([None]).as_proto()):
        found[name] = (signature.method_name, key)
  for name in names:
    if name not in found:
      raise ValueError(f'signature {name!r} of {model_dir} is missing or does not take serialized '
                       f'tf.Examples; servable: {sorted(found)}')
  if names:
    return {name: found[name] for name in names}
  if not found:
    raise ValueError(f'{model_dir} has no signature that serves serialized tf.Examples')
  order = sorted(found, key=lambda n: (n != tf.saved_model.DEFAULT_SERVING_SIGNATURE_DEF_KEY, n))
  return {name: found[name] for name in order}


def build_request(signature: str, method: str, input_key: str, records: Sequence[bytes],
                  model_name: str) -> Request:
  """One TF Serving request for `records` (serialized tf.Examples) to `signature`: a
  PredictRequest (`input_key`: string [len(records)]) for a predict signature, else a
  ClassificationRequest or RegressionRequest whose `input.example_list` holds the examples.

  Raises:
    ValueError: an unknown method.
  """
  if method == tf.saved_model.PREDICT_METHOD_NAME:
    request = predict_pb2.PredictRequest()
    request.inputs[input_key].CopyFrom(tf.make_tensor_proto(list(records), dtype=tf.string))
  elif method == tf.saved_model.CLASSIFY_METHOD_NAME:
    request = classification_pb2.ClassificationRequest()
  elif method == tf.saved_model.REGRESS_METHOD_NAME:
    request = regression_pb2.RegressionRequest()
  else:
    raise ValueError(f'unknown signature method {method!r}')
  if not isinstance(request, predict_pb2.PredictRequest):
    for record in records:
      request.input.example_list.examples.add().ParseFromString(record)
  request.model_spec.name = model_name
  request.model_spec.signature_name = signature
  return request


def prediction_log(request: Request) -> prediction_log_pb2.PredictionLog:
  """The PredictionLog holding `request`: the record format of TF Serving's warm-up file."""
  if isinstance(request, classification_pb2.ClassificationRequest):
    return prediction_log_pb2.PredictionLog(
        classify_log=prediction_log_pb2.ClassifyLog(request=request))
  if isinstance(request, regression_pb2.RegressionRequest):
    return prediction_log_pb2.PredictionLog(
        regress_log=prediction_log_pb2.RegressLog(request=request))
  return prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(
      request=request))


def read_records(examples: types.Artifact, split: Optional[str], count: int) -> List[bytes]:
  """The first `count` serialized tf.Examples of a split of an Examples artifact (gzipped
  TFRecords, files in name order); `split` None: the first split, as InfraValidator.

  Raises:
    ValueError: the payload is not tf.Example, the split is unknown, or it has no record.
  """
  if examples_utils.get_payload_format(examples) != example_gen_pb2.FORMAT_TF_EXAMPLE:
    raise ValueError(f'{examples.uri}: the serving check needs tf.Example payloads, not '
                     f'{examples_utils.get_payload_format_string(examples)}')
  splits = artifact_utils.decode_split_names(examples.split_names)
  split = split or (splits[0] if splits else None)
  if split not in splits:
    raise ValueError(f'no split {split!r} in {examples.uri}; splits: {splits}')
  files = sorted(tf.io.gfile.glob(os.path.join(
      artifact_utils.get_split_uri([examples], split), '*')))
  records = []
  for path in files:
    for record in tf.data.TFRecordDataset(path, compression_type='GZIP').take(
        count - len(records)):
      records.append(record.numpy())
    if len(records) >= count:
      break
  if not records:
    raise ValueError(f'split {split!r} of {examples.uri} has no examples')
  return records


# ----------------------------------------------------------------------------------------------
# The serving process and the reference.


@dataclasses.dataclass
class WorkerRun:
  """What the serving process returned: `responses` (one PredictionLog per request, None after a
  failure), its JSON `report` (see serving_check_worker), its `returncode` and stderr's tail."""
  responses: Optional[List[prediction_log_pb2.PredictionLog]]
  report: Dict[str, Any]
  returncode: Optional[int]
  stderr_tail: str


@contextlib.contextmanager
def start_worker(model_dir: str, requests: Sequence[Request], op_modules: Sequence[str],
                 warmup: Sequence[int] = (), throughput_index: int = -1,
                 timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS) -> Iterator[Any]:
  """Starts the serving process on `requests` and yields a function that waits for it and
  returns its WorkerRun; the caller works meanwhile (the process spends seconds importing
  TensorFlow). The process is killed when it outlives `timeout_seconds` or the block."""
  scratch = tempfile.mkdtemp(prefix='serving_check_')
  paths = {name: os.path.join(scratch, name) for name in ('requests', 'responses', 'report')}
  io_utils.write_tfrecord_file(paths['requests'], *[prediction_log(r) for r in requests])
  command = [sys.executable, '-I', WORKER, '--model_dir', model_dir,
             '--requests', paths['requests'], '--responses', paths['responses'],
             '--report', paths['report'], '--throughput_index', str(throughput_index),
             '--throughput_seconds', str(THROUGHPUT_SECONDS)]
  command += [f'--op_module={m}' for m in op_modules] + [f'--warmup={i}' for i in warmup]
  # A model server's environment: not this process's Keras choice (TF_USE_LEGACY_KERAS would make
  # TensorFlow import tf_keras), and TensorFlow's C++ logs at warnings and up.
  env = {k: v for k, v in os.environ.items() if k != 'TF_USE_LEGACY_KERAS'}
  env.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
  stderr_path = os.path.join(scratch, 'stderr')
  deadline = time.monotonic() + timeout_seconds
  with open(stderr_path, 'wb') as stderr:
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=stderr, env=env)

  def wait() -> WorkerRun:
    try:
      returncode = process.wait(timeout=max(deadline - time.monotonic(), 0.1))
    except subprocess.TimeoutExpired:
      process.kill()
      process.wait()
      returncode = None
    report = {}
    if os.path.exists(paths['report']):
      with open(paths['report']) as f:
        report = json.load(f)
    if returncode is None:
      report.setdefault('error', {'stage': 'timeout', 'message': (
          f'the serving process did not finish within {timeout_seconds:.0f} s')})
    with open(stderr_path, 'rb') as f:
      tail = f.read()[-4000:].decode('utf-8', 'replace')
    responses = None
    if returncode == 0 and 'error' not in report:
      responses = [prediction_log_pb2.PredictionLog.FromString(r)
                   for r in tf.data.TFRecordDataset(paths['responses']).as_numpy_iterator()]
    elif returncode not in (0, 1, None) and 'error' not in report:
      report['error'] = {'stage': 'crash', 'message': (
          f'the serving process exited with status {returncode}: ...{tail[-600:]}')}
    return WorkerRun(responses, report, returncode, tail)

  try:
    yield wait
  finally:
    if process.poll() is None:
      process.kill()
      process.wait()
    shutil.rmtree(scratch, ignore_errors=True)


def reference_answers(model_dir: str, requests: Sequence[Request]) -> List[Dict[str, np.ndarray]]:
  """The outputs of the model loaded in this process (`tf.saved_model.load`, as the Evaluator
  loads it) for each request's examples: {output name: array} of the request's signature, called
  on the request's serialized examples (the same batch). The op libraries must be imported.

  Raises:
    Whatever loading or calling the model raises.
  """
  model = tf.saved_model.load(model_dir, tags=[_SERVE])
  answers = []
  for request in requests:
    function = model.signatures[request.model_spec.signature_name]
    if isinstance(request, predict_pb2.PredictRequest):
      inputs = {k: tf.constant(tf.make_ndarray(v)) for k, v in request.inputs.items()}
    else:
      inputs = {tf.saved_model.CLASSIFY_INPUTS: tf.constant(
          [e.SerializeToString() for e in request.input.example_list.examples], tf.string)}
    answers.append({k: v.numpy() for k, v in function(**inputs).items()})
  return answers


def response_arrays(log: prediction_log_pb2.PredictionLog) -> Dict[str, np.ndarray]:
  """A response as {output name: array}, in the signature's terms: a PredictResponse's outputs;
  a ClassificationResponse's `classes` (bytes [batch, C]) and `scores` (float [batch, C]); a
  RegressionResponse's `outputs` (float [batch])."""
  kind = log.WhichOneof('log_type')
  if kind == 'predict_log':
    return {k: tf.make_ndarray(v) for k, v in log.predict_log.response.outputs.items()}
  if kind == 'classify_log':
    rows = log.classify_log.response.result.classifications
    return {'classes': np.array([[c.label.encode() for c in r.classes] for r in rows], object),
            'scores': np.array([[c.score for c in r.classes] for r in rows], np.float32)}
  rows = log.regress_log.response.result.regressions
  return {'outputs': np.array([r.value for r in rows], np.float32)}


def compare(request: Request, served: Dict[str, np.ndarray], expected: Dict[str, np.ndarray],
            tolerance: float) -> Tuple[Optional[str], float]:
  """(None or why the served answer differs from the expected one, the largest absolute
  difference of the float outputs). Classify answers are compared on the outputs the signature
  has; a [batch, 1] regression output as [batch]."""
  if not isinstance(request, predict_pb2.PredictRequest):
    expected = {k: v.reshape([-1]) if k == 'outputs' else v for k, v in expected.items()}
    served = {k: v for k, v in served.items() if k in expected}
  if set(served) != set(expected):
    return f'outputs {sorted(served)} instead of {sorted(expected)}', 0.0
  worst = 0.0
  for key in sorted(expected):
    got, want = np.asarray(served[key]), np.asarray(expected[key])
    if got.shape != want.shape:
      return f'output {key!r} has shape {got.shape} instead of {want.shape}', worst
    if want.dtype.kind == 'f':
      difference = float(np.max(np.abs(got.astype(np.float64) - want), initial=0.0))
      if not np.isfinite(difference) and not np.array_equal(got, want, equal_nan=True):
        return f'output {key!r} differs: non-finite values', worst
      worst = max(worst, difference if np.isfinite(difference) else 0.0)
      if difference > tolerance:
        return f'output {key!r} differs by {difference:.3g} (tolerance {tolerance:g})', worst
    elif not np.array_equal(got.astype(want.dtype), want):
      return f'output {key!r} differs: {got.ravel()[:4]} instead of {want.ravel()[:4]}', worst
  return None, worst


# ----------------------------------------------------------------------------------------------
# The check.


@dataclasses.dataclass
class ServingCheckResult:
  """The outcome of `check_serving`.

  Attributes:
    blessed: the model served every request with the expected answers.
    reason: why not ('' when blessed).
    signatures: {signature name: method name} checked.
    measurements: `load_seconds`, `import_seconds`, `op_library_seconds`, `first_request_ms`,
      `latency_p50_ms`, `latency_p99_ms` (batch 1, first predict signature),
      `throughput_examples_per_second`, `throughput_batch_size`, `requests`,
      `max_abs_difference`; those reached before a failure.
    requests: the requests sent, in order.
    responses: the served answers (PredictionLogs), None after a failure.
    warmup: the requests of the warm-up file (the first one of each signature).
    worker_modules: the top-level modules the serving process imported.
  """
  blessed: bool
  reason: str
  signatures: Dict[str, str]
  measurements: Dict[str, float]
  requests: List[Request] = dataclasses.field(default_factory=list)
  responses: Optional[List[prediction_log_pb2.PredictionLog]] = None
  warmup: List[Request] = dataclasses.field(default_factory=list)
  worker_modules: List[str] = dataclasses.field(default_factory=list)

  def to_json(self) -> Dict[str, Any]:
    return {'blessed': self.blessed, 'reason': self.reason, 'signatures': self.signatures,
            **self.measurements}


def check_serving(model_dir: str, records: Sequence[bytes], op_modules: Sequence[str] = (),
                  num_examples: int = DEFAULT_NUM_EXAMPLES,
                  throughput_batch_size: int = DEFAULT_THROUGHPUT_BATCH_SIZE,
                  signature_names: Sequence[str] = (), tag_set: Sequence[str] = (),
                  model_name: str = 'model', tolerance: float = DEFAULT_TOLERANCE,
                  timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS) -> ServingCheckResult:
  """Serves the SavedModel in `model_dir` in a fresh process and checks its answers.

  Args:
    model_dir: the SavedModel (a Model artifact's `Format-Serving`).
    records: serialized tf.Examples; the first `num_examples` become one batch-1 request each
      per signature, the first `throughput_batch_size` one batched PredictRequest.
    op_modules: the op libraries both processes import before loading the model.
    num_examples, throughput_batch_size: see `records`.
    signature_names, tag_set: as in InfraValidator's TensorFlowServingRequestSpec.
    model_name: the requests' `model_spec.name`.
    tolerance: the largest absolute difference allowed between a served float output and the
      same output computed in this process.
    timeout_seconds: the serving process's time limit (import, load and every request).

  Returns:
    The ServingCheckResult; a model that fails is reported there, not raised.

  Raises:
    ValueError: no records, or a non-positive count.
  """
  if not records or num_examples < 1 or throughput_batch_size < 1:
    raise ValueError(f'need records and positive counts: {len(records)} records, '
                     f'num_examples={num_examples}, throughput_batch_size={throughput_batch_size}')
  measurements: Dict[str, float] = {}
  try:
    signatures = servable_signatures(model_dir, tag_set, signature_names)
  except Exception as e:  # pylint: disable=broad-except  # a model without its saved_model.pb
    return ServingCheckResult(False, f'the model cannot be read: {type(e).__name__}: {e}', {},
                              measurements)
  requests, warmup_indices, latency_indices = [], [], []
  predict_signatures = [n for n, (m, _) in signatures.items()
                        if m == tf.saved_model.PREDICT_METHOD_NAME]
  for name, (method, input_key) in signatures.items():
    warmup_indices.append(len(requests))
    if predict_signatures and name == predict_signatures[0]:
      latency_indices = list(range(len(requests), len(requests) + len(records[:num_examples])))
    requests.extend(build_request(name, method, input_key, [r], model_name)
                    for r in records[:num_examples])
  throughput_index = -1
  if predict_signatures:
    name = predict_signatures[0]
    batch = records[:throughput_batch_size]
    throughput_index = len(requests)
    requests.append(build_request(name, *signatures[name], batch, model_name))
    measurements['throughput_batch_size'] = len(batch)
  result = ServingCheckResult(False, '', {n: m for n, (m, _) in signatures.items()},
                              measurements, requests,
                              warmup=[requests[i] for i in warmup_indices])

  with start_worker(model_dir, requests, op_modules, warmup_indices, throughput_index,
                    timeout_seconds) as wait:
    reference, reference_error = None, None
    try:  # meanwhile, the Evaluator's view in this process
      for module in op_modules:
        __import__(module)
      reference = reference_answers(model_dir, requests)
    except Exception as e:  # pylint: disable=broad-except
      reference_error = f'{type(e).__name__}: {_first_lines(str(e))}'
    run = wait()
  report = run.report
  result.worker_modules = report.get('top_level_modules', [])
  for key in ('import_seconds', 'op_library_seconds', 'load_seconds'):
    if key in report:
      measurements[key] = report[key]
  first = report.get('first_request_seconds', {}).get(str(latency_indices[0])
                                                      if latency_indices else '')
  if first is not None:
    measurements['first_request_ms'] = 1000 * first
  if 'error' in report:
    error = report['error']
    where = f' (request {error["request"]}: {_describe(requests[error["request"]])})' if (
        'request' in error) else ''
    result.reason = f'serving process, {error["stage"]}{where}: {error["message"]}'
    return result
  if run.responses is None or len(run.responses) != len(requests):
    result.reason = (f'the serving process answered {len(run.responses or [])} of '
                     f'{len(requests)} requests: {run.stderr_tail[-600:]}')
    return result
  result.responses = run.responses
  seconds = report['request_seconds']
  if latency_indices:
    latencies = 1000 * np.array([seconds[i] for i in latency_indices])
    measurements['latency_p50_ms'] = float(np.percentile(latencies, 50))
    measurements['latency_p99_ms'] = float(np.percentile(latencies, 99))
  if 'throughput' in report:
    throughput = report['throughput']
    measurements['throughput_examples_per_second'] = (
        throughput['examples'] / max(throughput['seconds'], 1e-9))
  measurements['requests'] = len(requests)
  if reference_error:
    result.reason = f'the model does not load or answer in the Evaluator\'s view: {reference_error}'
    return result
  worst = 0.0
  for index, (request, log) in enumerate(zip(requests, run.responses)):
    problem, difference = compare(request, response_arrays(log), reference[index], tolerance)
    worst = max(worst, difference)
    if problem:
      measurements['max_abs_difference'] = worst
      result.reason = (f'request {index} ({_describe(request)}) is answered differently than in '
                       f'the Evaluator\'s view: {problem}')
      return result
  measurements['max_abs_difference'] = worst
  result.blessed = True
  return result


def _describe(request: Request) -> str:
  kind = type(request).__name__
  return f'{kind} to {request.model_spec.signature_name!r}'


def _first_lines(text: str, count: int = 6) -> str:
  lines = text.strip().splitlines()
  return '\n'.join(lines[:count]) + (' ...' if len(lines) > count else '')


def write_warmup_file(model_dir: str, requests: Sequence[Request]) -> str:
  """Writes TF Serving's warm-up file into the SavedModel (`assets.extra/
  tf_serving_warmup_requests`, a TFRecord of PredictionLogs, at most TF Serving's 1,000 records),
  replacing any; returns its path. Written beside, then renamed over, so a reader never sees a
  partial file."""
  path = path_utils.warmup_file_path(model_dir)
  tf.io.gfile.makedirs(os.path.dirname(path))
  partial = path + '.partial'
  io_utils.write_tfrecord_file(partial, *[prediction_log(r) for r in requests[:1000]])
  tf.io.gfile.rename(partial, path, overwrite=True)
  return path


# ----------------------------------------------------------------------------------------------
# The component.


class ServingCheckSpec(ComponentSpec):
  """ServingCheck's inputs, output and parameters (InfraValidatorSpec's names, and its own)."""

  PARAMETERS = {
      'request_spec': ExecutionParameter(type=infra_validator_pb2.RequestSpec, optional=True),
      'validation_spec': ExecutionParameter(type=infra_validator_pb2.ValidationSpec,
                                            optional=True),
      'serving_op_modules': ExecutionParameter(type=str, optional=True),  # JSON list
      'model_name': ExecutionParameter(type=str, optional=True),
      'tolerance': ExecutionParameter(type=float, optional=True),
      'throughput_batch_size': ExecutionParameter(type=int, optional=True),
  }
  INPUTS = {
      'model': ChannelParameter(type=standard_artifacts.Model),
      'examples': ChannelParameter(type=standard_artifacts.Examples),
  }
  OUTPUTS = {
      'blessing': ChannelParameter(type=standard_artifacts.InfraBlessing),
  }


def default_request_spec(split_name: str = '', num_examples: int = DEFAULT_NUM_EXAMPLES
                         ) -> infra_validator_pb2.RequestSpec:
  """A RequestSpec for every servable signature, `num_examples` examples of `split_name`, with a
  warm-up file."""
  return infra_validator_pb2.RequestSpec(
      tensorflow_serving=infra_validator_pb2.TensorFlowServingRequestSpec(),
      split_name=split_name, num_examples=num_examples, make_warmup=True)


class Executor(base_executor.BaseExecutor):
  """Runs `check_serving` on the Model's Format-Serving directory and writes the InfraBlessing."""

  def Do(self, input_dict: Dict[str, List[types.Artifact]],
         output_dict: Dict[str, List[types.Artifact]], exec_properties: Dict[str, Any]) -> None:
    """Blesses or not; raises nothing for a model that fails the check (the Pusher skips it).

    Raises:
      ValueError: the examples cannot make requests (no such split, no records, not tf.Example).
    """
    self._log_startup(input_dict, output_dict, exec_properties)
    model = artifact_utils.get_single_instance(input_dict['model'])
    examples = artifact_utils.get_single_instance(input_dict['examples'])
    blessing = artifact_utils.get_single_instance(output_dict['blessing'])
    request_spec = default_request_spec()
    if exec_properties.get('request_spec'):
      request_spec = infra_validator_pb2.RequestSpec()
      proto_utils.json_to_proto(exec_properties['request_spec'], request_spec)
    validation_spec = infra_validator_pb2.ValidationSpec()
    if exec_properties.get('validation_spec'):
      proto_utils.json_to_proto(exec_properties['validation_spec'], validation_spec)
    op_modules = json.loads(exec_properties.get('serving_op_modules') or '[]')
    tolerance = exec_properties.get('tolerance')
    tolerance = DEFAULT_TOLERANCE if tolerance is None else float(tolerance)
    num_examples = request_spec.num_examples or DEFAULT_NUM_EXAMPLES
    batch = int(exec_properties.get('throughput_batch_size') or DEFAULT_THROUGHPUT_BATCH_SIZE)

    model_dir = path_utils.serving_model_path(model.uri, path_utils.is_old_model_artifact(model))
    records = read_records(examples, request_spec.split_name or None, max(num_examples, batch))
    serving = request_spec.tensorflow_serving
    start = time.perf_counter()
    result = check_serving(
        model_dir, records, op_modules, num_examples=num_examples, throughput_batch_size=batch,
        signature_names=list(serving.signature_names), tag_set=list(serving.tag_set),
        model_name=exec_properties.get('model_name') or 'model', tolerance=tolerance,
        timeout_seconds=validation_spec.max_loading_time_seconds or DEFAULT_TIMEOUT_SECONDS)
    result.measurements['check_seconds'] = time.perf_counter() - start
    record_result(blessing, result)
    if result.blessed and request_spec.make_warmup:
      path = write_warmup_file(model_dir, result.warmup)
      logging.info('ServingCheck: wrote %d warm-up requests to %s', len(result.warmup), path)


def record_result(blessing: types.Artifact, result: ServingCheckResult) -> None:
  """Writes the check's outcome into the InfraBlessing: InfraValidator's `blessed` property and
  marker file, `reason`, the measurements as float properties, `serving_check.json`; logs it."""
  io_utils.write_string_file(os.path.join(blessing.uri, REPORT_FILE),
                             json.dumps(result.to_json(), indent=2, sort_keys=True))
  io_utils.write_string_file(
      os.path.join(blessing.uri, BLESSED_FILE if result.blessed else NOT_BLESSED_FILE), '')
  blessing.set_int_custom_property(BLESSED_KEY, int(result.blessed))
  blessing.set_string_custom_property('signatures', ','.join(result.signatures))
  for key, value in result.measurements.items():
    blessing.set_float_custom_property(key, float(value))
  m = result.measurements
  if result.blessed:
    logging.info('ServingCheck: the model serves %s; load %.2f s, batch-1 latency p50 %.2f ms '
                 'p99 %.2f ms, %.0f examples/s at batch %d', ', '.join(result.signatures),
                 m.get('load_seconds', float('nan')), m.get('latency_p50_ms', float('nan')),
                 m.get('latency_p99_ms', float('nan')),
                 m.get('throughput_examples_per_second', float('nan')),
                 int(m.get('throughput_batch_size', 0)))
  else:
    blessing.set_string_custom_property('reason', result.reason)
    logging.error('ServingCheck: the model is not infra-blessed and will not be pushed: %s',
                  result.reason)


class ServingCheck(base_component.BaseComponent):
  """Infra-blesses a model that a fresh TensorFlow process serves as the Evaluator sees it.

  Args:
    model: the candidate Model (the Trainer's).
    examples: Examples to build the requests from (the ExampleGen's).
    request_spec: InfraValidator's RequestSpec (`tensorflow_serving` signature names and tag
      set, `split_name`, `num_examples`, `make_warmup`); default `default_request_spec()`.
    validation_spec: InfraValidator's ValidationSpec; `max_loading_time_seconds` limits the
      serving process (default 300 s).
    serving_op_modules: op libraries the serving process imports (ModelSpec.serving_op_modules).
    model_name: the requests' `model_spec.name`.
    tolerance: largest absolute difference of a served float output (default 1e-5).
    throughput_batch_size: examples in the throughput request (default 256).
  """

  SPEC_CLASS = ServingCheckSpec
  EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(Executor)

  def __init__(self, model: types.BaseChannel, examples: types.BaseChannel,
               request_spec: Optional[infra_validator_pb2.RequestSpec] = None,
               validation_spec: Optional[infra_validator_pb2.ValidationSpec] = None,
               serving_op_modules: Sequence[str] = (), model_name: Optional[str] = None,
               tolerance: Optional[float] = None, throughput_batch_size: Optional[int] = None):
    super().__init__(spec=ServingCheckSpec(
        model=model, examples=examples,
        blessing=types.Channel(type=standard_artifacts.InfraBlessing),
        request_spec=request_spec, validation_spec=validation_spec,
        serving_op_modules=json.dumps(list(serving_op_modules)), model_name=model_name,
        tolerance=tolerance, throughput_batch_size=throughput_batch_size))


def serving_check_summary(blessing_properties: Mapping[str, Any]) -> Dict[str, Any]:
  """{blessed, reason, measurements...} from an InfraBlessing's custom properties (MLMD Value
  protos or plain values), for a run summary."""
  summary: Dict[str, Any] = {}
  for key, value in blessing_properties.items():
    if hasattr(value, 'WhichOneof'):
      value = getattr(value, value.WhichOneof('value'))
    summary[key] = value
  if BLESSED_KEY in summary:
    summary[BLESSED_KEY] = bool(summary[BLESSED_KEY])
  return summary
