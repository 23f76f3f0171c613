"""`official-tfx`: run a model's TFX pipeline end to end on the embedded default.

  official-tfx list
  official-tfx run census [--model_type=wide_deep] [--data_root=../shared/data] [--output_dir=...]
      [--train_steps=2000] [--batch_size=256] [--distribution_strategy=default]
      [--beam_direct_num_workers=1] [--hparams='{"learning_rate": 0.001}'] ...

  official-tfx compile census --image=IMAGE --pipeline_root=gs://... --train_data=gs://...
      --eval_data=gs://... [--output_file=census_pipeline.json]    (Kubeflow Pipelines v2 / Vertex)

Flags are shared by every model and every command. Exit status: 0 on a finished run (blessed or
not), 1 on a failed run (bad data, anomalies, a component error) or a usage error.
"""

from __future__ import annotations

import os
import sys
import warnings

os.environ.setdefault('TF_USE_LEGACY_KERAS', '1')  # tf.Transform 1.16 needs Keras 2.
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
# google-cloud clients warn about Python 3.10 on import; TFX 1.16 supports only 3.9-3.10.
warnings.filterwarnings('ignore', category=FutureWarning)

from absl import app, logging

from pipelines import spec as spec_lib
from pipelines.settings import FLAGS, build_run
from preprocessing import datasets

USAGE = 'usage: official-tfx run MODEL [flags] | official-tfx compile MODEL [flags] | official-tfx list'


def _print_result(summary) -> None:
  print('\nMetrics (eval split, overall):')
  for name, value in summary['metrics'].items():
    print(f'  {name:14s} {value:.4f}' if isinstance(value, float) else f'  {name:14s} {value}')
  print(f'Blessed: {"yes" if summary["blessed"] else "no"}')
  print(f'Pushed model: {summary["pushed_model"] or "none (not blessed)"}')


def run_command(model: str) -> int:
  """`official-tfx run MODEL`: returns the exit status."""
  spec_lib.get(model)  # an unknown model is a usage error before anything is written
  output_dir = os.path.abspath(FLAGS.output_dir or os.path.join('output', model))
  os.makedirs(os.path.join(output_dir, 'logs'), exist_ok=True)
  logging.get_absl_handler().use_absl_log_file('official_tfx', os.path.join(output_dir, 'logs'))
  from pipelines import runner  # imports TFX: after flag checks, so usage errors are quick.
  try:
    spec, config, split_files = build_run(model)  # bad flags raise: main() reports them
  except datasets.DatasetError as e:
    return _run_failed(e, output_dir)
  print(f'official-tfx: {model} ({config.model_type or spec.default_model_type}) -> {output_dir}')
  if config.data_notice:
    print(f'  note: {config.data_notice}')
  for split, path in split_files.items():
    first, count = config.row_ranges.get(split, (0, None))
    rows = f' (rows {first} to {"the end" if count is None else first + count - 1})'
    print(f'  {split}: {path}{rows if (first, count) != (0, None) else ""}')
  try:
    summary = runner.run(spec, config, split_files)
  except Exception as e:  # pylint: disable=broad-except
    return _run_failed(e, output_dir)
  _print_result(summary)
  print(f'Run summary: {os.path.join(output_dir, runner.SUMMARY_FILE)}')
  return 0


def _run_failed(error: Exception, output_dir: str) -> int:
  logging.exception('Run failed')
  print(f'\nofficial-tfx: run failed: {type(error).__name__}: {error}', file=sys.stderr)
  print(f'Nothing was pushed. Logs: {os.path.join(output_dir, "logs")}', file=sys.stderr)
  return 1


def compile_command(model: str) -> int:
  """`official-tfx compile MODEL`: writes the model's KFP v2 pipeline spec; returns the status."""
  from pipelines import engines  # imports TFX and KFP
  path = engines.compile_kubeflow_v2(model, FLAGS.output_file, FLAGS.image)
  print(f'official-tfx: {model} -> Kubeflow Pipelines v2 spec {path}')
  return 0


def main(argv):
  args = argv[1:]
  if args == ['list']:
    width = max(map(len, spec_lib.names())) + 2
    for name in spec_lib.names():
      print(f'{name:{width}s}{spec_lib.get(name).description}')
    return 0
  if len(args) != 2 or args[0] not in COMMANDS:
    raise app.UsageError(USAGE)
  try:
    return COMMANDS[args[0]](args[1])
  except (KeyError, ValueError) as e:
    raise app.UsageError(str(e).strip('"'))


COMMANDS = {'run': run_command, 'compile': compile_command}


def entry_point():
  """Console script `official-tfx`."""
  app.run(main)


if __name__ == '__main__':
  entry_point()
