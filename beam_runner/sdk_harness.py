"""Settings of the Beam SDK harness that runs in this process.

The in-process DirectRunner, and Flink, Spark or the portable runner with
`--environment_type=LOOPBACK`, execute the Beam stages of ExampleGen, StatisticsGen, Transform and
the Evaluator in the process that runs the pipeline (pipelines.factory configures it). Workers in
other processes configure theirs when they start, by importing beam_runner.worker_setup (named in
the pipeline's `--beam_plugins`). Their harness keeps a state cache (side inputs, e.g. tf.Transform's analyzer results)
and weighs every value it loads with `objsize.get_deep_size`.

objsize's default excludes module globals from the size. It finds them by walking the globals of
every loaded module on every call: with TensorFlow, TFX and Beam loaded (about 9,700 modules) that
is about 4 ms per value against 0.04 ms without the walk. On census, py-spy found the walk in 19%
of the Transform's samples and 4% of the Evaluator's; turning it off took the Transform from 38.3
to 35.5 s of CPU (three runs each, alternating).

`configure()` turns the walk off through objsize's documented `default_settings`. A weight then
also counts any module-level object the value refers to. The weights only decide evictions from
the 100 MB cache, so the cache evicts a little earlier; results are unchanged.
"""

from __future__ import annotations

import objsize


def configure() -> None:
  """Makes the state cache's weighing skip the walk over module globals. Idempotent.

  Affects every `objsize` caller in this process. In the pinned stack the other one is Beam's
  BigQuery streaming-insert sink, which sizes rows against BigQuery's payload limit; a row that
  refers to module-level objects is then sized larger, never smaller.
  """
  objsize.default_settings.update(exclude_modules_globals=False)


def state_cache_walks_module_globals() -> bool:
  """Whether objsize still walks every module's globals per call (False after `configure()`)."""
  return bool(objsize.default_settings.exclude_modules_globals)
