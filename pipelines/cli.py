"""`official-tfx`: run a model's TFX pipeline end to end on the embedded default.

  official-tfx list
  official-tfx run census [--model_type=wide_deep] [--data_root=../shared/data] [--output_dir=...]
      [--train_steps=2000] [--batch_size=256] [--distribution_strategy=default]
      [--beam_direct_num_workers=1] [--hparams='{"learning_rate": 0.001}'] ...

Flags are shared by every model. Exit status: 0 on a finished run (blessed or not), 1 on a failed
run (bad data, anomalies, a component error), 2 on a usage error.
"""

from __future__ import annotations

import json
import os
import sys
import warnings

os.environ.setdefault('TF_USE_LEGACY_KERAS', '1')  # tf.Transform 1.16 needs Keras 2.
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
# google-cloud clients warn about Python 3.10 on import; TFX 1.16 supports only 3.9-3.10.
warnings.filterwarnings('ignore', category=FutureWarning)

from absl import app, flags, logging

from beam_runner import options as beam_options
from model_fns.strategy import STRATEGIES
from pipelines import spec as spec_lib
from pipelines.factory import RunConfig
from preprocessing import datasets

FLAGS = flags.FLAGS
flags.DEFINE_string('model_type', None, 'Model variant; default: the model\'s first (census: '
                    'wide_deep, wide or deep).')
flags.DEFINE_string('data_root', None, 'Local data root laid out like ../shared/data (plain or .gz '
                    f'files); default ${datasets.DATA_ROOT_ENV}. When unset, canonical files are '
                    'downloaded into the cache.')
flags.DEFINE_string('cache_dir', None, f'Download cache; default ${datasets.CACHE_DIR_ENV} or '
                    f'{datasets.DEFAULT_CACHE_DIR}.')
flags.DEFINE_string('output_dir', None, 'Where the run writes pipeline artifacts, ML Metadata, the '
                    'pushed model, logs and run_summary.json; default ./output/<model>.')
flags.DEFINE_integer('train_steps', None, 'Training steps; default: the model\'s.')
flags.DEFINE_integer('batch_size', None, 'Global training batch size; default: the model\'s.')
flags.DEFINE_string('hparams', '{}', 'JSON object of hyperparameter overrides, e.g. '
                    '\'{"learning_rate": 0.003, "hidden_units": [64, 32]}\'.')
flags.DEFINE_enum('distribution_strategy', 'default', STRATEGIES, 'tf.distribute strategy.')
flags.DEFINE_integer('num_gpus', 0, 'GPUs for one_device / mirrored.')
flags.DEFINE_string('tpu', None, 'TPU name or grpc:// address for the tpu strategy.')
flags.DEFINE_integer('beam_direct_num_workers', 1, 'Beam DirectRunner workers; more than 1 runs '
                     'multi-process.')
flags.DEFINE_boolean('enable_cache', True, 'Reuse the outputs of unchanged components.')
flags.DEFINE_float('max_malformed_fraction', 0.001, 'Fail when more than this fraction of a '
                   'split\'s raw rows is malformed.')
flags.DEFINE_boolean('transform_statistics', False, 'Let Transform compute pre- and '
                     'post-transform statistics (slower).')
flags.DEFINE_string('train_data', None, 'Read the train split from this file instead of the '
                    'canonical one (same raw format; not checksummed).')
flags.DEFINE_string('eval_data', None, 'Likewise for the eval split.')

USAGE = 'usage: official-tfx run MODEL [flags] | official-tfx list'


def _split_files(spec) -> dict:
  overrides = {'train': FLAGS.train_data, 'eval': FLAGS.eval_data}
  files = {}
  for split, name in spec.dataset.splits.items():
    if overrides.get(split):
      path = os.path.abspath(overrides[split])
      if not os.path.isfile(path):
        raise datasets.DatasetError(f'--{split}_data: no file at {path}')
      files[split] = path
    else:
      files[split] = datasets.resolve_file(spec.dataset, name, FLAGS.data_root, FLAGS.cache_dir)
  return files


def _print_result(summary) -> None:
  print('\nMetrics (eval split, overall):')
  for name, value in summary['metrics'].items():
    print(f'  {name:14s} {value:.4f}' if isinstance(value, float) else f'  {name:14s} {value}')
  print(f'Blessed: {"yes" if summary["blessed"] else "no"}')
  print(f'Pushed model: {summary["pushed_model"] or "none (not blessed)"}')


def run_command(model: str) -> int:
  """`official-tfx run MODEL`: returns the exit status."""
  spec = spec_lib.get(model)
  try:
    hparams = json.loads(FLAGS.hparams)
  except json.JSONDecodeError as e:
    raise app.UsageError(f'--hparams is not a JSON object: {e}')
  if not isinstance(hparams, dict):
    raise app.UsageError('--hparams must be a JSON object')
  output_dir = os.path.abspath(FLAGS.output_dir or os.path.join('output', model))
  os.makedirs(os.path.join(output_dir, 'logs'), exist_ok=True)
  logging.get_absl_handler().use_absl_log_file('official_tfx', os.path.join(output_dir, 'logs'))
  config = RunConfig(
      output_dir=output_dir, model_type=FLAGS.model_type, train_steps=FLAGS.train_steps,
      batch_size=FLAGS.batch_size, hparams=hparams,
      distribution_strategy=FLAGS.distribution_strategy, num_gpus=FLAGS.num_gpus, tpu=FLAGS.tpu,
      beam_pipeline_args=beam_options.direct_runner_args(FLAGS.beam_direct_num_workers),
      enable_cache=FLAGS.enable_cache, max_malformed_fraction=FLAGS.max_malformed_fraction,
      transform_statistics=FLAGS.transform_statistics)
  from pipelines import runner  # imports TFX: after flag checks, so usage errors are quick.
  try:
    split_files = _split_files(spec)
    print(f'official-tfx: {model} ({config.model_type or spec.default_model_type}) -> {output_dir}')
    for split, path in split_files.items():
      print(f'  {split}: {path}')
    summary = runner.run(spec, config, split_files)
  except Exception as e:  # pylint: disable=broad-except
    logging.exception('Run failed')
    print(f'\nofficial-tfx: run failed: {type(e).__name__}: {e}', file=sys.stderr)
    print(f'Nothing was pushed. Logs: {os.path.join(output_dir, "logs")}', file=sys.stderr)
    return 1
  _print_result(summary)
  print(f'Run summary: {os.path.join(output_dir, runner.SUMMARY_FILE)}')
  return 0


def main(argv):
  args = argv[1:]
  if args == ['list']:
    for name in spec_lib.names():
      print(f'{name:12s} {spec_lib.get(name).description}')
    return 0
  if len(args) != 2 or args[0] != 'run':
    raise app.UsageError(USAGE)
  try:
    return run_command(args[1])
  except (KeyError, ValueError) as e:
    raise app.UsageError(str(e).strip('"'))


def entry_point():
  """Console script `official-tfx`."""
  app.run(main)


if __name__ == '__main__':
  entry_point()
