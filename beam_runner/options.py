"""Beam pipeline arguments for TFX's Beam-based components (ExampleGen, StatisticsGen, Transform,
Evaluator), validated before anything starts.

The embedded default is Beam's DirectRunner in-process; with more than one worker it runs
multi-process (`--direct_running_mode=multi_processing`), which side-steps the GIL on this CPU-bound
work at the cost of pickling elements between processes.
"""

from __future__ import annotations

from typing import List

from apache_beam.options import pipeline_options

DIRECT_RUNNING_MODES = ('in_memory', 'multi_threading', 'multi_processing')


def direct_runner_args(num_workers: int = 1, running_mode: str = '') -> List[str]:
  """Arguments for Beam's DirectRunner.

  Args:
    num_workers: parallel workers (>= 1). 1 runs in-process.
    running_mode: one of DIRECT_RUNNING_MODES; default `in_memory` for one worker, else
      `multi_processing`.

  Returns:
    [] for one in-process worker: Beam's default runner is already the in-process DirectRunner, and
    with no arguments TFX's Beam executors skip building and attaching an ephemeral sdist of TFX
    (tfx.utils.dependency_utils.make_beam_dependency_flags: about 2 s per Beam component, useless
    to a local runner). Otherwise, e.g. ['--runner=DirectRunner',
    '--direct_running_mode=multi_processing', '--direct_num_workers=2'].

  Raises:
    ValueError: num_workers < 1 or an unknown running mode.
  """
  if num_workers < 1:
    raise ValueError(f'beam_direct_num_workers must be >= 1, got {num_workers}')
  mode = running_mode or ('in_memory' if num_workers == 1 else 'multi_processing')
  if mode not in DIRECT_RUNNING_MODES:
    raise ValueError(f'unknown DirectRunner running mode {mode!r}; expected one of '
                     f'{DIRECT_RUNNING_MODES}')
  if mode == 'in_memory' and num_workers == 1:
    return []
  return ['--runner=DirectRunner', f'--direct_running_mode={mode}',
          f'--direct_num_workers={num_workers}']


def runs_in_one_process(options: pipeline_options.PipelineOptions) -> bool:
  """Whether `options` run a pipeline on Beam's DirectRunner in this process with one worker: the
  embedded default (no `--runner`, or DirectRunner in `in_memory` mode with one worker), the
  options `direct_runner_args(1)` gives."""
  runner = options.view_as(pipeline_options.StandardOptions).runner
  name = runner if runner is None or isinstance(runner, str) else type(runner).__name__
  direct = options.view_as(pipeline_options.DirectOptions)
  return ((name or 'DirectRunner').lower().removesuffix('runner') in ('direct', 'switchingdirect')
          and direct.direct_num_workers == 1
          and (direct.direct_running_mode or 'in_memory') == 'in_memory')
