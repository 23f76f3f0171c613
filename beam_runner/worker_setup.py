"""Imported by every Beam SDK worker of a remote or portable runner when it starts.

`beam_runner.runners.worker_args` names this module (and the model's op libraries) in the
pipeline's `--beam_plugins`, which Beam's SDK worker (`sdk_worker_main`: Beam's SDK containers,
PROCESS environments, Dataflow) and this project's worker pool (`beam_runner.worker_pool`) import
before the first bundle. Importing it applies the harness configuration of beam_runner.sdk_harness
in the worker, as `pipelines.factory.create_pipeline` does in the launching process (whose harness
runs the Beam stages with DirectRunner and LOOPBACK). It also selects Keras 2, as the launching
process does (pipelines.cli), for a worker that has not imported TensorFlow yet.
"""

import logging
import os

os.environ.setdefault('TF_USE_LEGACY_KERAS', '1')  # tf.Transform 1.16 needs Keras 2

from beam_runner import sdk_harness  # pylint: disable=wrong-import-position

sdk_harness.configure()
logging.getLogger(__name__).info(
    'official-tfx worker setup: Beam SDK harness configured (state cache weighing without the '
    'walk over module globals: %s)', not sdk_harness.state_cache_walks_module_globals())
