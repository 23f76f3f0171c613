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
import subprocess
import sys
import tempfile
import threading
import warnings
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

os.environ.setdefault('TF_USE_LEGACY_KERAS', '1')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
warnings.filterwarnings('ignore', category=FutureWarning)

import psutil  # pylint: disable=g-import-not-at-top

from pipelines import metadata
from pipelines import runner
from pipelines.factory import RunConfig, RunInputs
from pipelines.spec import ModelSpec


class PeakMemory:
  """Samples, in a thread, the resident set size of this process and of every process it starts
  (DirectRunner's multi-process workers, the serving check's process), summed, every `interval`
  seconds: `peak_mb()` over the whole time or over a window (a stage's).

  Use as a context manager around the measured work. psutil's RSS counts pages shared between
  processes once per process, so the sum can exceed what the machine gives up; with one process
  (DirectRunner in-process, the default) it is exact.
  """

  def __init__(self, interval: float = 0.2):
    self._interval = interval
    self._samples: List[Tuple[float, float]] = []  # (time.time(), MB)
    self._stop = threading.Event()
    self._thread = threading.Thread(target=self._loop, daemon=True)

  def _rss_mb(self) -> float:
    me = psutil.Process()
    total = 0
    for process in [me] + me.children(recursive=True):
      try:
        total += process.memory_info().rss
      except psutil.Error:  # ended between the listing and the reading
        pass
    return total / 2 ** 20

  def _loop(self):
    while not self._stop.is_set():
      self._samples.append((time.time(), self._rss_mb()))
      self._stop.wait(self._interval)

  def __enter__(self) -> 'PeakMemory':
    self._thread.start()
    return self

  def __exit__(self, *exc) -> None:
    self._stop.set()
    self._thread.join()
    self._samples.append((time.time(), self._rss_mb()))

  def peak_mb(self, start: Optional[float] = None, end: Optional[float] = None) -> Optional[float]:
    """The largest sample taken between `start` and `end` (seconds since the epoch; None: no
    bound), rounded to 1 MB; None when no sample fell in the window."""
    values = [mb for at, mb in self._samples
              if (start is None or at >= start) and (end is None or at <= end)]
    return round(max(values)) if values else None


def stage_peak_memory(memory: PeakMemory, metadata_path: str, pipeline_name: str,
                      since_ms: int) -> Dict[str, Optional[float]]:
  """{stage: peak RSS in MB while its execution ran} (ML Metadata's create and last-update
  times bound each stage; the model's ExampleGen is reported as ExampleGen)."""
  stages = metadata.stages_since(metadata.open_store(metadata_path), pipeline_name, since_ms)
  return {('ExampleGen' if s.name.endswith('ExampleGen') else s.name):
          memory.peak_mb(s.started_ms / 1000, s.ended_ms / 1000) for s in stages}


def run_sizes_in_children(sizes: Sequence[str], size_flag: str) -> List[Dict[str, Any]]:
  """Runs this benchmark script once per size, each in a fresh process (so that one size's
  memory does not inflate the next one's peak), with `--<size_flag>=<size>` and `--json` set and
  the other command-line flags kept; the children print their own tables. Returns each size's
  figures, in order.

  Raises:
    RuntimeError: a child failed (its exit status; its output is already on the terminal).
  """
  script = os.path.abspath(sys.argv[0])
  kept = [a for a in sys.argv[1:] if not a.startswith((f'--{size_flag}=', '--json='))]
  figures = []
  with tempfile.TemporaryDirectory() as work:
    for size in sizes:
      path = os.path.join(work, f'{size}.json')
      result = subprocess.run([sys.executable, script, *kept, f'--{size_flag}={size}',
                               f'--json={path}'], check=False)
      if result.returncode:
        raise RuntimeError(f'{os.path.basename(script)} --{size_flag}={size} failed '
                           f'(exit {result.returncode})')
      with open(path) as f:
        figures.append(json.load(f))
  return figures


def print_growth(rows: Sequence[Tuple[str, Mapping[str, Any]]], columns: Sequence[
    Tuple[str, Callable[[Mapping[str, Any]], Any]]]) -> None:
  """A side-by-side table, one row per size: `rows` are (size label, figures), `columns` are
  (header, figures -> value) pairs; floats print with one decimal in a column of seconds or MB
  (its header ends with ` s` or `MB`), else with four under 10 (metrics, ratios) and one above;
  None as n/a."""
  def text(value, header):
    if value is None:
      return 'n/a'
    if isinstance(value, float):
      coarse = header.endswith((' s', 'MB')) or abs(value) >= 10
      return f'{value:.1f}' if coarse else f'{value:.4f}'
    return str(value)
  widths = [max(len(header), 10) for header, _ in columns]
  print(f'{"size":>8s} ' + ' '.join(f'{h:>{w}s}' for (h, _), w in zip(columns, widths)))
  for label, figures in rows:
    print(f'{label:>8s} ' + ' '.join(f'{text(get(figures), header):>{w}s}'
                                     for (header, get), w in zip(columns, widths)))


def cold_run(spec: ModelSpec, inputs: 'RunInputs | Mapping[str, str]', output_dir: Optional[str],
             **config: Any) -> Dict[str, Any]:
  """Runs `spec` once, uncached, and returns the run summary, with `peak_rss_mb` (the whole run's
  peak resident memory, this process and the processes it started: `PeakMemory`) and
  `stage_peak_rss_mb` ({stage: peak MB while it ran}) added.

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
    since_ms = metadata.now_ms()
    with PeakMemory() as memory:
      summary = runner.run(spec, RunConfig(output_dir=directory, **config), inputs,
                           progress=False)
    summary['peak_rss_mb'] = memory.peak_mb()
    summary['stage_peak_rss_mb'] = stage_peak_memory(
        memory, os.path.join(directory, 'metadata.sqlite'), spec.name, since_ms)
    return summary
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
