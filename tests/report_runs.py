"""Two small real census runs in one output directory, built once per test session and shared by
tests/test_report.py and tests/test_history.py (each pipeline run takes minutes on 2 cores).

Run 1: `wide`, 20 steps, blessing bar accuracy >= 0.99 (not met: not blessed, nothing pushed).
Run 2: `wide_deep`, 30 steps, bar accuracy >= 0.5 (met: blessed and pushed). Both read rows
0-599 of adult.data and 0-299 of adult.test from the real data root, batch 64. Run 2 takes
ExampleGen, StatisticsGen, the validation and Transform from the cache.

The bars differ from the registered census spec's 0.83 on purpose: the report must show the
thresholds the Evaluator ran with (its eval_config exec property), not the registry's.
"""

from __future__ import annotations

import atexit
import dataclasses
import shutil
import tempfile
from typing import Any, Dict, List, Tuple

from pipelines import runner, spec as spec_lib
from pipelines.factory import RunConfig, RunInputs
from preprocessing import datasets

ROWS = {'train': (0, 600), 'eval': (0, 300)}
RUNS = (('wide', 20, 0.99), ('wide_deep', 30, 0.5))  # (model type, train steps, accuracy bar)
_BUILT: Dict[str, Any] = {}


def census_spec(accuracy_bar: float) -> spec_lib.ModelSpec:
  """The census spec with its accuracy bar replaced by `accuracy_bar` (no-regression kept)."""
  census = spec_lib.get('census')
  thresholds = tuple(dataclasses.replace(t, lower_bound=accuracy_bar)
                     if t.metric == 'binary_accuracy' else t
                     for t in census.evaluation.thresholds)
  return dataclasses.replace(census, evaluation=dataclasses.replace(census.evaluation,
                                                                    thresholds=thresholds))


def two_census_runs(data_root: str) -> Tuple[str, List[Dict[str, Any]]]:
  """(output_dir, [summary of run 1, summary of run 2]), built on the first call of the session.

  Raises:
    Whatever stopped a run (the runner's exceptions).
  """
  if 'error' in _BUILT:  # one failed build fails every test that needs it, without a rerun
    raise RuntimeError(f'the census runs failed: {_BUILT["error"]}')
  if not _BUILT:
    output_dir = tempfile.mkdtemp(prefix='official_tfx_report_')
    atexit.register(shutil.rmtree, output_dir, ignore_errors=True)
    files = datasets.resolve_splits(spec_lib.get('census').dataset, data_root=data_root)
    summaries = []
    try:
      for model_type, steps, bar in RUNS:
        config = RunConfig(output_dir=output_dir, model_type=model_type, train_steps=steps,
                           batch_size=64)
        summaries.append(runner.run(census_spec(bar), config,
                                    RunInputs(split_files=files, row_ranges=dict(ROWS)),
                                    progress=False))
    except Exception as e:
      _BUILT['error'] = runner.error_message(e)
      raise
    _BUILT.update(output_dir=output_dir, summaries=summaries)
  return _BUILT['output_dir'], _BUILT['summaries']
