"""Census benchmark: the plain-TFX workload of ../shared/docs/design.md, cold (no cache).

Runs the census pipeline once in a fresh output directory (2,000 steps of batch 256 on adult.data,
evaluated on the 16,281 adult.test rows) and prints per-stage seconds beside the plain-TFX
reference, the pipeline wall time, the whole process time (imports included), Transform and
Evaluator rows/s, and accuracy.

  .venv/bin/python benchmarks/census.py --data_root=../shared/data [--model_type=wide_deep]
      [--beam_direct_num_workers=1] [--output_dir=DIR] [--json=FILE]
"""

import time

PROCESS_START = time.time()

import os  # pylint: disable=g-import-not-at-top,wrong-import-position
import warnings

os.environ.setdefault('TF_USE_LEGACY_KERAS', '1')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
warnings.filterwarnings('ignore', category=FutureWarning)

from absl import app, flags, logging  # pylint: disable=g-import-not-at-top

from beam_runner import options as beam_options
import common  # benchmarks/common.py, beside this script
from pipelines import spec as spec_lib
from preprocessing import datasets

# Plain TFX, penguin-style census pipeline on this machine class (../shared/docs/design.md).
REFERENCE = {'ExampleGen': 11.3, 'StatisticsGen': 6.1, 'Transform': 39.9, 'Trainer': 29.1,
             'Evaluator': 28.3, 'pipeline': 115.7, 'process': 143.9, 'accuracy': 0.857}
TRAIN_ROWS, EVAL_ROWS = 32_561, 16_281

FLAGS = flags.FLAGS
flags.DEFINE_string('data_root', None, 'Data root (default $OFFICIAL_TFX_DATA_ROOT).')
flags.DEFINE_string('model_type', 'wide_deep', 'wide, deep or wide_deep.')
flags.DEFINE_integer('beam_direct_num_workers', 1, 'Beam DirectRunner workers.')
flags.DEFINE_string('output_dir', None, 'Keep the run here (default: a temporary directory).')
flags.DEFINE_string('json', None, 'Also write the figures to this JSON file.')


def main(_):
  logging.set_verbosity(logging.WARNING)
  spec = spec_lib.get('census')
  files = datasets.resolve_splits(spec.dataset, data_root=FLAGS.data_root)
  summary = common.cold_run(spec, files, FLAGS.output_dir, model_type=FLAGS.model_type,
                            train_steps=2000, batch_size=256,
                            beam_pipeline_args=beam_options.direct_runner_args(
                                FLAGS.beam_direct_num_workers))
  process = time.time() - PROCESS_START
  seconds = common.stage_seconds(summary)
  print(f'census {FLAGS.model_type}, 2000 steps x 256, DirectRunner x{FLAGS.beam_direct_num_workers}')
  common.print_stages(seconds, REFERENCE, 'plain TFX')
  pipeline = summary['wall_seconds']
  figures = {
      'stages': seconds, 'pipeline_seconds': pipeline, 'process_seconds': round(process, 1),
      'pipeline_vs_plain_tfx': round(pipeline / REFERENCE['pipeline'], 3),
      'transform_rows_per_s': round((TRAIN_ROWS + EVAL_ROWS) / seconds['Transform']),
      'evaluator_rows_per_s': round(EVAL_ROWS / seconds['Evaluator']),
      'accuracy': summary['metrics']['accuracy'], 'auc': summary['metrics']['auc'],
      'blessed': summary['blessed']}
  print(f'{"pipeline (LocalDagRunner)":32s} {pipeline:8.1f} {REFERENCE["pipeline"]:10.1f}'
        f'   ({figures["pipeline_vs_plain_tfx"]:.2f}x plain TFX; target <= 0.50x)')
  print(f'{"whole process, imports included":32s} {process:8.1f} {REFERENCE["process"]:10.1f}')
  print(f'Transform {figures["transform_rows_per_s"]} rows/s, '
        f'Evaluator {figures["evaluator_rows_per_s"]} rows/s')
  print(f'accuracy {figures["accuracy"]:.4f} (plain TFX {REFERENCE["accuracy"]}), '
        f'AUC {figures["auc"]:.4f}, blessed {summary["blessed"]}')
  common.write_json(FLAGS.json, figures)


if __name__ == '__main__':
  app.run(main)
