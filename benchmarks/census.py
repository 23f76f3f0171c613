"""Census benchmark: the plain-TFX workload of ../shared/docs/design.md, cold (no cache).

Runs the census pipeline in a fresh output directory (2,000 steps of batch 256 on adult.data,
evaluated on the 16,281 adult.test rows) and prints per-stage seconds beside the plain-TFX
reference, the pipeline wall time, the whole process time (imports included), Transform and
Evaluator rows/s, and accuracy.

With several `--beam_direct_num_workers` (e.g. `1,2`), it runs once per value, back to back, and
ends with a table of the Beam stages' figures per DirectRunner setting: 1 is in-process, more is
multi-process with that many worker processes.

The default model is `deep`, the plain-TFX reference's own (embeddings and a 100-75-50-25 DNN), so
the two runs do the same work; `--model_type=wide_deep` (the pipeline's default) or `wide` for the
others.

With `--plain_tfx`, it then runs the plain-TFX reference (benchmarks/plain_tfx_census.py, in its own
process) and compares the two from the same sitting: these VMs change speed by up to 2x from one
hour to the next, so that ratio, not the one against design.md's figures, is the one to quote.

`--scale=N` runs on the UCI files replicated N times (train and eval, each file repeated whole:
the same rows, N times as many; a size-scaled workload for per-row costs and memory, not for
accuracy). Several values (`--scale=1,10,20`) run one after the other, each in a fresh process
(with `--plain_tfx`, plain TFX right after ours at each size), and end with a table of the
growth side by side. Every run reports its peak resident memory, overall and per stage
(benchmarks/common.py: PeakMemory).

  .venv/bin/python benchmarks/census.py --data_root=../shared/data [--model_type=deep]
      [--scale=1[,10,20]] [--plain_tfx] [--beam_direct_num_workers=1[,2,...]]
      [--output_dir=DIR] [--json=FILE]
"""

import common  # benchmarks/common.py, beside this script; first: it starts the clock

import gzip
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

from absl import app, flags, logging

from beam_runner import options as beam_options
from pipelines import spec as spec_lib
from preprocessing import datasets

# Plain TFX, penguin-style census pipeline on this machine class (../shared/docs/design.md).
REFERENCE = {'ExampleGen': 11.3, 'StatisticsGen': 6.1, 'Transform': 39.9, 'Trainer': 29.1,
             'Evaluator': 28.3, 'pipeline': 115.7, 'process': 143.9, 'accuracy': 0.857}

FLAGS = flags.FLAGS
flags.DEFINE_string('data_root', None, 'Data root (default $OFFICIAL_TFX_DATA_ROOT).')
flags.DEFINE_string('model_type', 'deep', 'wide, deep or wide_deep (default: deep, the plain-TFX '
                    "reference's model).")
flags.DEFINE_list('beam_direct_num_workers', ['1'], 'Beam DirectRunner workers; several values '
                  '(1,2) run once each and compare them.')
flags.DEFINE_string('output_dir', None, 'Keep the run here (default: a temporary directory; '
                    'with several runs, one subdirectory per DirectRunner setting).')
flags.DEFINE_string('json', None, 'Also write the figures to this JSON file.')
flags.DEFINE_bool('plain_tfx', False, 'Then run the plain-TFX reference and compare the two.')
flags.DEFINE_list('scale', ['1'], 'Replicate the UCI files this many times; several values (1,10,20) '
                  'run one after the other in fresh processes and compare the growth.')


def scaled_files(files, scale: int, folder: str):
  """{split: file}: each split's UCI file repeated whole `scale` times (gzip) under `folder`; the
  canonical files themselves at scale 1."""
  if scale == 1:
    return dict(files)
  scaled = {}
  for split, path in files.items():
    with gzip.open(path, 'rb') as f:
      content = f.read()
    if not content.endswith(b'\n'):
      content += b'\n'
    scaled[split] = os.path.join(folder, os.path.basename(path))
    with gzip.open(scaled[split], 'wb', compresslevel=1) as f:
      for _ in range(scale):
        f.write(content)
  return scaled


def run_once(spec, files, workers: int, output_dir, first: bool = True, scale: int = 1):
  """One cold run with `workers` DirectRunner workers; prints its table, returns its figures."""
  summary = common.cold_run(spec, files, output_dir, model_type=FLAGS.model_type,
                            train_steps=2000, batch_size=256,
                            beam_pipeline_args=beam_options.direct_runner_args(workers))
  process = time.time() - common.PROCESS_START
  seconds = common.stage_seconds(summary)
  rows = {split: d['examples'] for split, d in summary['data'].items()}
  both = rows['train'] + rows['eval']
  # Rows the Transform reads: with materialize=False it analyzes the train split and writes nothing.
  transformed = both if spec.materialize_transform else rows['train']
  print(f'\ncensus x{scale} ({rows["train"]:,} train / {rows["eval"]:,} eval rows), '
        f'{FLAGS.model_type}, 2000 steps x 256, DirectRunner x{workers}')
  common.print_stages(seconds, REFERENCE if scale == 1 else {}, 'plain TFX' if scale == 1 else '')
  pipeline = summary['wall_seconds']
  figures = {
      'scale': scale, 'rows': rows,
      'direct_num_workers': workers,
      'stages': seconds, 'pipeline_seconds': pipeline,
      'process_seconds': round(process, 1) if first else None,
      'pipeline_vs_plain_tfx': round(pipeline / REFERENCE['pipeline'], 3) if scale == 1 else None,
      'example_gen_rows_per_s': round(both / seconds['ExampleGen']),
      'transform_rows_per_s': round(transformed / seconds['Transform']),
      'transform_materialized': spec.materialize_transform,
      'evaluator_rows_per_s': round(rows['eval'] / seconds['Evaluator']),
      'peak_rss_mb': summary['peak_rss_mb'], 'stage_peak_rss_mb': summary['stage_peak_rss_mb'],
      'accuracy': summary['metrics']['accuracy'], 'auc': summary['metrics']['auc'],
      'blessed': summary['blessed']}
  if scale == 1:
    print(f'{"pipeline (LocalDagRunner)":32s} {pipeline:8.1f} {REFERENCE["pipeline"]:10.1f}'
          f'   ({figures["pipeline_vs_plain_tfx"]:.2f}x design.md\'s plain TFX)')
  else:
    print(f'{"pipeline (LocalDagRunner)":32s} {pipeline:8.1f}')
  if first:  # later runs' process time also holds the earlier runs
    print(f'{"whole process, imports included":32s} {process:8.1f} {REFERENCE["process"]:10.1f}')
  print(f'ExampleGen {figures["example_gen_rows_per_s"]} rows/s, '
        f'Transform {figures["transform_rows_per_s"]} rows/s'
        f'{"" if spec.materialize_transform else " (the train split, analyzed: not materialized)"}, '
        f'Evaluator {figures["evaluator_rows_per_s"]} rows/s; peak RSS {figures["peak_rss_mb"]} MB '
        f'(per stage: {figures["stage_peak_rss_mb"]})')
  print(f'accuracy {figures["accuracy"]:.4f} (plain TFX {REFERENCE["accuracy"]}), '
        f'AUC {figures["auc"]:.4f}, blessed {summary["blessed"]}')
  return figures


def run_plain_tfx(scale: int = 1):
  """benchmarks/plain_tfx_census.py in its own process, on the files replicated `scale` times;
  returns its figures (its JSON).

  Raises:
    RuntimeError: the reference run failed (with the end of its output).
  """
  script = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'plain_tfx_census.py')
  with tempfile.TemporaryDirectory() as work:
    path = os.path.join(work, 'plain.json')
    args = [sys.executable, script, f'--json={path}', f'--scale={scale}']
    if FLAGS.data_root:
      args.append(f'--data_root={FLAGS.data_root}')
    result = subprocess.run(args, capture_output=True, text=True, check=False)
    if result.returncode:
      raise RuntimeError(f'the plain-TFX reference failed (exit {result.returncode}):\n'
                         f'{result.stdout[-2000:]}{result.stderr[-3000:]}')
    # Its table, without the pip lines of TFX's user-code wheels before it.
    print('\n' + result.stdout[result.stdout.find('plain TFX census'):].strip())
    with open(path) as f:
      return json.load(f)


def compare_with_plain_tfx(ours, plain):
  """Prints our first run beside the plain-TFX run of the same sitting; returns the ratios."""
  theirs = common.stage_seconds(plain)
  print(f'\nsame sitting, back to back: ours ({FLAGS.model_type}) and plain TFX')
  common.print_stages({k: v for k, v in ours['stages'].items() if k in theirs}, theirs,
                      'plain TFX')
  ratio = round(ours['pipeline_seconds'] / plain['pipeline_seconds'], 3)
  print(f'{"pipeline (LocalDagRunner)":32s} {ours["pipeline_seconds"]:8.1f} '
        f'{plain["pipeline_seconds"]:10.1f}   ({ratio:.2f}x plain TFX)')
  print(f'accuracy {ours["accuracy"]:.4f} against plain TFX {plain["accuracy"]:.4f}')
  return {'plain_tfx': plain, 'pipeline_vs_plain_tfx_same_sitting': ratio}


def print_growth(sizes) -> None:
  """The sizes' figures side by side (ours, and plain TFX's where it ran)."""
  print('\ncensus, one size a row (seconds, rows/s, MB):')
  columns = [('pipeline s', lambda f: f['runs'][0]['pipeline_seconds']),
             ('ExampleGen r/s', lambda f: f['runs'][0]['example_gen_rows_per_s']),
             ('Transform r/s', lambda f: f['runs'][0]['transform_rows_per_s']),
             ('Evaluator r/s', lambda f: f['runs'][0]['evaluator_rows_per_s']),
             ('peak RSS MB', lambda f: f['runs'][0]['peak_rss_mb']),
             ('accuracy', lambda f: f['runs'][0]['accuracy'])]
  if all(f.get('plain_tfx') for f in sizes):
    columns += [('plain TFX s', lambda f: f['plain_tfx']['pipeline_seconds']),
                ('plain RSS MB', lambda f: f['plain_tfx'].get('peak_rss_mb')),
                ('ours/plain', lambda f: f['pipeline_vs_plain_tfx_same_sitting'])]
  common.print_growth([(f'x{f["scale"]}', f) for f in sizes], columns)


def main(_):
  logging.set_verbosity(logging.WARNING)
  scales = [int(s) for s in FLAGS.scale]
  if any(s < 1 for s in scales):
    raise app.UsageError('--scale: each value must be a positive integer')
  if len(scales) > 1:
    sizes = common.run_sizes_in_children([str(s) for s in scales], 'scale')
    print_growth(sizes)
    common.write_json(FLAGS.json, {'sizes': sizes})
    return
  (scale,) = scales
  spec = spec_lib.get('census')
  settings = [int(w) for w in FLAGS.beam_direct_num_workers]
  if any(w < 1 for w in settings):
    raise app.UsageError('--beam_direct_num_workers: each value must be >= 1')
  work = tempfile.mkdtemp(prefix='census-scaled-')
  try:
    files = scaled_files(datasets.resolve_splits(spec.dataset, data_root=FLAGS.data_root), scale,
                         work)
    runs = []
    for workers in settings:
      output_dir = FLAGS.output_dir
      if output_dir and len(settings) > 1:
        output_dir = os.path.join(output_dir, f'direct_x{workers}')
      runs.append(run_once(spec, files, workers, output_dir, first=not runs, scale=scale))
  finally:
    shutil.rmtree(work, ignore_errors=True)
  if len(runs) > 1:
    print('\nDirectRunner, back to back (1 = in-process, N > 1 = multi-process):')
    print(f'{"workers":>8s} {"ExampleGen s":>13s} {"StatisticsGen s":>16s} '
          f'{"Transform rows/s":>17s} {"Evaluator rows/s":>17s} {"pipeline s":>11s}')
    for f in runs:
      print(f'{f["direct_num_workers"]:8d} {f["stages"]["ExampleGen"]:13.1f} '
            f'{f["stages"]["StatisticsGen"]:16.1f} {f["transform_rows_per_s"]:17d} '
            f'{f["evaluator_rows_per_s"]:17d} {f["pipeline_seconds"]:11.1f}')
  figures = {'scale': scale, 'runs': runs}
  if FLAGS.plain_tfx:
    figures.update(compare_with_plain_tfx(runs[0], run_plain_tfx(scale)))
  common.write_json(FLAGS.json, figures)


if __name__ == '__main__':
  app.run(main)
