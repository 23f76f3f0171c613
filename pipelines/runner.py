"""Runs a spec's pipeline on the embedded default (LocalDagRunner, SQLite MLMD, Beam DirectRunner)
and writes `run_summary.json`.

The summary has the same keys for every model: `model`, `model_type`, `stages` (a list of
`{name, seconds, cached}` in execution order), `metrics` (the spec's summary metrics of the overall
slice, at least `accuracy` and `auc` for classifiers), `slices` (TFMA metrics per slice), `blessed`,
`pushed_model` (the pushed SavedModel directory or null), `data` (per split: the raw `file`, the
`first_row` and `num_rows` asked for, null meaning to the end, and the `examples` written),
`wall_seconds` and `error` (null, or the message of the failure that stopped the run).
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from typing import Any, Dict, Mapping, Optional

from tfx import v1 as tfx

from pipelines import metadata
from pipelines.factory import RunConfig, create_pipeline, trainer_config
from pipelines.spec import ModelSpec

SUMMARY_FILE = 'run_summary.json'


def write_json_atomically(path: str, value: Any) -> None:
  """Writes JSON to a temporary file beside `path`, then renames it (never half-written)."""
  fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix='.' + os.path.basename(path))
  with os.fdopen(fd, 'w') as f:
    json.dump(value, f, indent=2, sort_keys=False)
    f.write('\n')
  os.replace(tmp, path)


def run(spec: ModelSpec, config: RunConfig, split_files: Mapping[str, str],
        progress: Optional[Any] = None) -> Dict[str, Any]:
  """Runs the pipeline of `spec` to the end and returns the run summary (also in run_summary.json).

  Args:
    spec: the model.
    config: the run's settings (output_dir receives everything).
    split_files: {split: raw data file}, resolved and verified (preprocessing.datasets).
    progress: stream for the per-component progress lines (default stdout); False silences them.

  Raises:
    Whatever stopped the run (a component's error: malformed rows, anomalies, ...), after the
    summary with its `error` has been written.
  """
  model_type = trainer_config(spec, config).model_type
  pipeline = create_pipeline(spec, config, split_files)
  os.makedirs(config.output_dir, exist_ok=True)
  node_ids = [c.id for c in pipeline.components]
  started, since_ms = time.time(), metadata.now_ms()
  error = None
  try:
    if progress is False:
      tfx.orchestration.LocalDagRunner().run(pipeline)
    else:
      kwargs = {'out': progress} if progress else {}
      with metadata.ProgressMonitor(config.metadata_path, spec.name, node_ids, since_ms, **kwargs):
        tfx.orchestration.LocalDagRunner().run(pipeline)
  except Exception as e:  # pylint: disable=broad-except
    error = e
  wall = time.time() - started
  summary = {'model': spec.name, 'model_type': model_type}
  if os.path.exists(config.metadata_path):
    summary.update(metadata.summarize(metadata.open_store(config.metadata_path), spec.name,
                                      since_ms, dict(spec.evaluation.summary_metrics)))
  else:
    summary.update({'stages': [], 'metrics': {}, 'slices': {}, 'blessed': False,
                    'pushed_model': None, 'examples': {}})
  examples = summary.pop('examples', {})
  data = {}
  for split, path in split_files.items():
    first_row, num_rows = config.row_ranges.get(split, (0, None))
    data[split] = {'file': path, 'first_row': first_row, 'num_rows': num_rows,
                   'examples': examples.get(split)}
  summary.update({'data': data, 'wall_seconds': round(wall, 2),
                  'error': None if error is None else f'{type(error).__name__}: {error}'})
  write_json_atomically(os.path.join(config.output_dir, SUMMARY_FILE), summary)
  if error is not None:
    raise error
  return summary
