"""The plain-TFX census reference of ../shared/docs/design.md, measured in the same sitting as ours.

This VM's speed varies by up to 2x from one hour to the next, so the ratio that matters is plain TFX
against `benchmarks/census.py` run back to back. The reference is built the way the TFX penguin
example teaches: CsvExampleGen (the UCI files turned into headered CSV with a 0/1 label, as
CsvExampleGen and TFMA need), default StatisticsGen / SchemaGen / ExampleValidator, Transform and
Trainer with a `module_file` (benchmarks/plain_tfx_census_module.py: z-scores, vocabularies, a
100-75-50-25 DNN with embeddings, 2,000 steps of 256), Evaluator with BinaryAccuracy >= 0.8, and a
filesystem Pusher.

  .venv/bin/python benchmarks/plain_tfx_census.py --data_root=../shared/data [--scale=N]
      [--json=FILE]

`benchmarks/census.py --plain_tfx` runs this right after its own run and compares the two.
`--scale=N` writes each split's rows N times (the UCI file repeated whole), as census.py's.
"""

import common  # benchmarks/common.py, beside this script; first: it starts the clock

import csv  # pylint: disable=g-import-not-at-top,wrong-import-position
import gzip
import json
import os
import shutil
import tempfile
import time

import tensorflow_model_analysis as tfma  # pylint: disable=g-import-not-at-top
from absl import app, flags, logging
from tfx import v1 as tfx

from pipelines import metadata
from preprocessing import census, datasets

FLAGS = flags.FLAGS
flags.DEFINE_string('data_root', None, 'Data root (default $OFFICIAL_TFX_DATA_ROOT).')
flags.DEFINE_string('json', None, 'Also write the figures to this JSON file.')
flags.DEFINE_integer('scale', 1, 'Write each split\'s rows this many times.', lower_bound=1)
MODULE_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                           'plain_tfx_census_module.py')


def _write_csv(source: str, destination: str, scale: int = 1) -> None:
  """UCI raw file -> headered CSV with the label as 0/1 (the preparation CsvExampleGen needs),
  its rows written `scale` times (the file repeated whole)."""
  os.makedirs(os.path.dirname(destination))
  columns = [c if c != census.LABEL_KEY else 'label' for c in census.COLUMNS]
  with gzip.open(source, 'rt') as f:
    rows = [row for row in (census.parse_line(line.rstrip('\n')) for line in f) if row]
  with open(destination, 'w', newline='') as out:
    writer = csv.writer(out)
    writer.writerow(columns)
    for _ in range(scale):
      for row in rows:
        writer.writerow(['' if row[c] is None else row[c] for c in census.COLUMNS])


def main(_):
  logging.set_verbosity(logging.WARNING)
  files = datasets.resolve_splits(census.DATASET, data_root=FLAGS.data_root)
  work = tempfile.mkdtemp(prefix='plain-tfx-census-')
  try:
    for split, path in files.items():
      _write_csv(path, os.path.join(work, 'data', split, f'{split}.csv'), FLAGS.scale)
    example_gen = tfx.components.CsvExampleGen(
        input_base=os.path.join(work, 'data'),
        input_config=tfx.proto.Input(splits=[tfx.proto.Input.Split(name='train', pattern='train/*'),
                                             tfx.proto.Input.Split(name='eval', pattern='eval/*')]))
    statistics_gen = tfx.components.StatisticsGen(examples=example_gen.outputs['examples'])
    schema_gen = tfx.components.SchemaGen(statistics=statistics_gen.outputs['statistics'])
    validator = tfx.components.ExampleValidator(statistics=statistics_gen.outputs['statistics'],
                                                schema=schema_gen.outputs['schema'])
    transform = tfx.components.Transform(examples=example_gen.outputs['examples'],
                                         schema=schema_gen.outputs['schema'],
                                         module_file=MODULE_FILE)
    trainer = tfx.components.Trainer(
        module_file=MODULE_FILE, examples=transform.outputs['transformed_examples'],
        transform_graph=transform.outputs['transform_graph'], schema=schema_gen.outputs['schema'],
        train_args=tfx.proto.TrainArgs(num_steps=2000), eval_args=tfx.proto.EvalArgs(num_steps=64))
    eval_config = tfma.EvalConfig(
        model_specs=[tfma.ModelSpec(signature_name='serving_default', label_key='label',
                                    prediction_key='outputs')],
        slicing_specs=[tfma.SlicingSpec()],
        metrics_specs=[tfma.MetricsSpec(metrics=[tfma.MetricConfig(
            class_name='BinaryAccuracy', threshold=tfma.MetricThreshold(
                value_threshold=tfma.GenericValueThreshold(lower_bound={'value': 0.8})))])])
    evaluator = tfx.components.Evaluator(examples=example_gen.outputs['examples'],
                                         model=trainer.outputs['model'], eval_config=eval_config)
    pusher = tfx.components.Pusher(
        model=trainer.outputs['model'], model_blessing=evaluator.outputs['blessing'],
        push_destination=tfx.proto.PushDestination(filesystem=tfx.proto.PushDestination.Filesystem(
            base_directory=os.path.join(work, 'serving'))))
    db = os.path.join(work, 'metadata.sqlite')
    pipeline = tfx.dsl.Pipeline(
        pipeline_name='plain_census', pipeline_root=os.path.join(work, 'root'),
        components=[example_gen, statistics_gen, schema_gen, validator, transform, trainer,
                    evaluator, pusher],
        metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(db))
    since, started = metadata.now_ms(), time.time()
    with common.PeakMemory() as memory:
      tfx.orchestration.LocalDagRunner().run(pipeline)
    wall = time.time() - started
    summary = metadata.summarize(metadata.open_store(db), 'plain_census', since,
                                 {'accuracy': 'binary_accuracy'})
    stage_peaks = common.stage_peak_memory(memory, db, 'plain_census', since)
  finally:
    shutil.rmtree(work, ignore_errors=True)
  process = time.time() - common.PROCESS_START
  print(f'plain TFX census (penguin-style), x{FLAGS.scale}, 2000 steps x 256')
  for stage in summary['stages']:
    print(f'{stage["name"]:32s} {stage["seconds"]:8.1f}')
  print(f'{"pipeline (LocalDagRunner)":32s} {wall:8.1f}')
  print(f'{"whole process, imports included":32s} {process:8.1f}')
  print(f'accuracy {summary["metrics"]["accuracy"]:.4f}, blessed {summary["blessed"]}; '
        f'peak RSS {memory.peak_mb()} MB')
  if FLAGS.json:
    with open(FLAGS.json, 'w') as f:
      json.dump({'stages': summary['stages'],
                 'pipeline_seconds': round(wall, 1), 'process_seconds': round(process, 1),
                 'accuracy': summary['metrics']['accuracy'], 'blessed': summary['blessed'],
                 'peak_rss_mb': memory.peak_mb(), 'stage_peak_rss_mb': stage_peaks},
                f, indent=2)


if __name__ == '__main__':
  app.run(main)
