"""What every model's benchmark shares: one cold pipeline run and its per-stage figures.

A benchmark imports this module first: `PROCESS_START` then times the whole process, imports
included, and the environment is set before TensorFlow loads (Keras 2 for tf.Transform, quiet
C++ logs and google-cloud's Python-version warnings).

A cold run needs an empty output directory (no cache, no earlier blessed model); by default it is a
temporary directory, removed afterwards.
"""

import time

PROCESS_START = time.time()

import json  # pylint: disable=g-import-not-at-top,wrong-import-position
import os
import shutil
import sys
import tempfile
import warnings
from typing import Any, Dict, Mapping, Optional

os.environ.setdefault('TF_USE_LEGACY_KERAS', '1')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
warnings.filterwarnings('ignore', category=FutureWarning)

from pipelines import runner  # pylint: disable=g-import-not-at-top
from pipelines.factory import RunConfig, RunInputs
from pipelines.spec import ModelSpec


def cold_run(spec: ModelSpec, inputs: 'RunInputs | Mapping[str, str]', output_dir: Optional[str],
             **config: Any) -> Dict[str, Any]:
  """Runs `spec` once, uncached, and returns the run summary.

  Args:
    spec: the model.
    inputs: what the run reads (`factory.RunInputs`), or just {split: raw file}.
    output_dir: keep the run here (must hold no earlier run); None: a removed temporary directory.
    **config: RunConfig fields.

  Raises:
    SystemExit: `output_dir` holds an earlier run.
  """
  directory = output_dir or tempfile.mkdtemp(prefix=f'{spec.name}-bench-')
  if os.path.exists(os.path.join(directory, 'metadata.sqlite')):
    sys.exit(f'{directory} holds an earlier run: a cold benchmark needs an empty directory')
  try:
    return runner.run(spec, RunConfig(output_dir=directory, **config), inputs, progress=False)
  finally:
    if not output_dir:
      shutil.rmtree(directory, ignore_errors=True)


def stage_seconds(summary: Mapping[str, Any]) -> Dict[str, float]:
  """{stage: seconds}, the model's ExampleGen (TextLineExampleGen, IdxExampleGen) reported as
  ExampleGen."""
  return {('ExampleGen' if s['name'].endswith('ExampleGen') else s['name']): s['seconds']
          for s in summary['stages']}


def print_stages(seconds: Mapping[str, float], reference: Mapping[str, float],
                 reference_name: str) -> None:
  """A table of stage seconds, beside the reference's where it has the stage."""
  print(f'{"stage":32s} {"seconds":>8s} {reference_name:>10s}')
  for name, value in seconds.items():
    ref = reference.get(name)
    print(f'{name:32s} {value:8.1f} {"" if ref is None else f"{ref:10.1f}"}')


def base_figures(summary: Mapping[str, Any], seconds: Mapping[str, float],
                 process_seconds: float) -> Dict[str, Any]:
  """The figures every benchmark reports: stage seconds, pipeline and process wall times."""
  return {'stages': dict(seconds), 'pipeline_seconds': summary['wall_seconds'],
          'process_seconds': round(process_seconds, 1)}


def print_times(summary: Mapping[str, Any], process_seconds: float) -> None:
  """The pipeline's wall time and the whole process's (imports included)."""
  print(f'{"pipeline (LocalDagRunner)":32s} {summary["wall_seconds"]:8.1f}')
  print(f'{"whole process, imports included":32s} {process_seconds:8.1f}')


def write_json(path: Optional[str], figures: Mapping[str, Any]) -> None:
  if path:
    with open(path, 'w') as f:
      json.dump(figures, f, indent=2)
