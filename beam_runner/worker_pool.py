"""This project's Beam SDK worker pool, for `--environment_type=EXTERNAL`.

  python -m beam_runner.worker_pool --service_port=50000

then `official-tfx run MODEL --beam_runner=flink|spark|portable --environment_type=EXTERNAL
--environment_config=HOST:50000`. Run it where the workers are, with this package installed (from
any folder: the workers import the installed package, never a checkout). It is Beam's worker pool
(`apache_beam.runners.worker.worker_pool_main`) whose workers start as Beam's SDK containers start
theirs: each worker is a process of this Python that asks the runner's provision service for the
pipeline's options, then runs Beam's SDK worker (`sdk_worker_main`), which applies them (the
pickler, the state cache size) and imports the pipeline's `--beam_plugins`: the harness
configuration (beam_runner.worker_setup) and the model's op libraries (tensorflow_decision_forests,
tensorflow_text), registered before any SavedModel or transform graph is loaded.

Beam's plain worker pool also runs the pipelines: it starts `python` from the PATH (which must be
this environment's), with no state cache, no pipeline options and no plugins; TFT, TFMA and
tfx_bsl import TF-DF and TF Text themselves when they load a model.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from typing import List, Optional

# As in the launching process (pipelines.cli), before anything imports TensorFlow: tf.Transform
# 1.16 needs Keras 2. The workers inherit the pool's environment.
os.environ.setdefault('TF_USE_LEGACY_KERAS', '1')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

_LOGGER = logging.getLogger(__name__)


def worker_command(worker_id: str, control: str, provision: str, logging_endpoint: str) -> List[str]:
  """The command that starts one SDK worker: this module, in worker mode, with this Python."""
  return [sys.executable, '-m', 'beam_runner.worker_pool', '--worker', f'--id={worker_id}',
          f'--control_endpoint={control}', f'--provision_endpoint={provision}',
          f'--logging_endpoint={logging_endpoint}']


def _servicer_class():
  from apache_beam.portability.api import beam_fn_api_pb2  # pylint: disable=import-outside-toplevel
  from apache_beam.runners.worker import worker_pool_main  # pylint: disable=import-outside-toplevel

  class Servicer(worker_pool_main.BeamFnExternalWorkerPoolServicer):
    """Beam's worker pool servicer, whose workers are `worker_command` processes."""

    def StartWorker(self, start_worker_request, unused_context):  # pylint: disable=invalid-name
      request = start_worker_request
      try:
        command = worker_command(request.worker_id, request.control_endpoint.url,
                                 request.provision_endpoint.url, request.logging_endpoint.url)
        _LOGGER.info('Starting SDK worker %s', request.worker_id)
        self._worker_processes[request.worker_id] = subprocess.Popen(command, close_fds=True)
        return beam_fn_api_pb2.StartWorkerResponse()
      except Exception as e:  # pylint: disable=broad-except
        return beam_fn_api_pb2.StartWorkerResponse(error=f'{type(e).__name__}: {e}')

  return Servicer


def serve(port: int) -> None:
  """Serves Beam's worker pool API on `port` (all interfaces) until interrupted."""
  import grpc  # pylint: disable=import-outside-toplevel
  from apache_beam.portability.api import beam_fn_api_pb2_grpc  # pylint: disable=import-outside-toplevel
  from apache_beam.utils import thread_pool_executor  # pylint: disable=import-outside-toplevel
  import beam_runner  # pylint: disable=import-outside-toplevel
  servicer = _servicer_class()()
  server = grpc.server(thread_pool_executor.shared_unbounded_instance())
  bound = server.add_insecure_port(f'[::]:{port}')
  beam_fn_api_pb2_grpc.add_BeamFnExternalWorkerPoolServicer_to_server(servicer, server)
  server.start()
  print(f'official-tfx worker pool: serving at port {bound}, this package from '
        f'{os.path.dirname(os.path.dirname(os.path.abspath(beam_runner.__file__)))}', flush=True)
  try:
    while True:
      time.sleep(3600)
  except KeyboardInterrupt:
    pass
  finally:
    for process in servicer._worker_processes.values():  # pylint: disable=protected-access
      process.terminate()
    server.stop(0)


def run_worker(worker_id: str, control: str, provision: str, logging_endpoint: str) -> None:
  """Runs one SDK worker as Beam's SDK container does: the pipeline options from the provision
  service, then Beam's `sdk_worker_main` (which imports the `--beam_plugins`).

  Raises:
    grpc.RpcError: the provision service does not answer.
  """
  import grpc  # pylint: disable=import-outside-toplevel
  from apache_beam.portability.api import beam_provision_api_pb2  # pylint: disable=import-outside-toplevel
  from apache_beam.portability.api import beam_provision_api_pb2_grpc  # pylint: disable=import-outside-toplevel
  from apache_beam.portability.api import endpoints_pb2  # pylint: disable=import-outside-toplevel
  from apache_beam.runners.worker import sdk_worker_main  # pylint: disable=import-outside-toplevel
  from google.protobuf import json_format, text_format  # pylint: disable=import-outside-toplevel
  with grpc.insecure_channel(provision) as channel:
    info = beam_provision_api_pb2_grpc.ProvisionServiceStub(channel).GetProvisionInfo(
        beam_provision_api_pb2.GetProvisionInfoRequest(),
        metadata=[('worker_id', worker_id)]).info  # runners tell workers apart by it
  options = json.loads(json_format.MessageToJson(info.pipeline_options))
  descriptor = lambda url: text_format.MessageToString(endpoints_pb2.ApiServiceDescriptor(url=url))
  os.environ.update({
      'WORKER_ID': worker_id,
      'PIPELINE_OPTIONS': json.dumps(options),
      'CONTROL_API_SERVICE_DESCRIPTOR': descriptor(control),
      'LOGGING_API_SERVICE_DESCRIPTOR': descriptor(info.logging_endpoint.url or logging_endpoint),
      'SEMI_PERSISTENT_DIRECTORY': tempfile.mkdtemp(prefix='beam-worker-')})
  sdk_worker_main.main(sys.argv)


def main(argv: Optional[List[str]] = None) -> None:
  """`python -m beam_runner.worker_pool --service_port=PORT` (see the module doc)."""
  parser = argparse.ArgumentParser(description=__doc__.split('\n', 1)[0])
  parser.add_argument('--service_port', type=int, default=50000,
                      help='port of the worker pool service (all interfaces)')
  parser.add_argument('--worker', action='store_true', help=argparse.SUPPRESS)
  for name in ('id', 'control_endpoint', 'provision_endpoint', 'logging_endpoint'):
    parser.add_argument(f'--{name}', help=argparse.SUPPRESS)
  args = parser.parse_args(argv)
  logging.basicConfig(level=logging.INFO)
  if args.worker:
    run_worker(args.id, args.control_endpoint, args.provision_endpoint, args.logging_endpoint)
  else:
    serve(args.service_port)


if __name__ == '__main__':
  main()
