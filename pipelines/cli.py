"""`official-tfx`: run a model's TFX pipeline end to end on the embedded default.

  official-tfx list
  official-tfx run census [--model_type=wide_deep] [--data_root=../shared/data] [--output_dir=...]
      [--train_steps=2000] [--batch_size=256] [--distribution_strategy=default]
      [--beam_direct_num_workers=1] [--hparams='{"learning_rate": 0.001}'] ...

  official-tfx run census --config=output/census/run_summary.json [--output_dir=...]
      (the settings of an earlier run, or of a YAML / JSON file of flag values)

  official-tfx compile census --image=IMAGE --pipeline_root=gs://... --train_data=gs://...
      --eval_data=gs://... [--output_file=census_pipeline.json]    (Kubeflow Pipelines v2 / Vertex)

  official-tfx run census --metadata_mysql_host=HOST --metadata_mysql_database=DB
      --metadata_mysql_user=USER    (ML Metadata on MySQL; the password in
                                     $OFFICIAL_TFX_METADATA_MYSQL_PASSWORD)

  official-tfx report OUTPUT_DIR                 (writes OUTPUT_DIR/report.html of the last run)
  official-tfx runs OUTPUT_DIR [--compare=A,B]   (the runs there; two runs' differences)
  official-tfx predict MODEL --input FILE --output FILE [--with_labels] [--output_format=csv]
      [--model_dir DIR | --output_dir DIR]        (batch prediction on raw files)

Flags are shared by every model and every command. Exit status: 0 on a finished run (blessed or
not), 1 on a failed run (bad data, anomalies, a component error), a usage error, an ML Metadata
server that cannot be used (down, a refused login, a database it cannot create) or an output
directory in use by another run, 130 / 143 on SIGINT / SIGTERM (the same command resumes).
After the signal, a run has STOP_GRACE_S seconds to mark its stage canceled and write its summary;
past that the process exits anyway, the threads' stacks in the log. `kill -USR1 PID` writes the
stacks of a running `official-tfx run` to its log without stopping it (Python's faulthandler).
"""

from __future__ import annotations

import faulthandler
import json
import os
import shlex
import signal
import sys
import textwrap
import time
import warnings

os.environ.setdefault('TF_USE_LEGACY_KERAS', '1')  # tf.Transform 1.16 needs Keras 2.
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
# google-cloud clients warn about Python 3.10 on import; TFX 1.16 supports only 3.9-3.10.
warnings.filterwarnings('ignore', category=FutureWarning)

from pipelines import console

if __name__ == '__main__' or os.path.basename(sys.argv[0]) == 'official-tfx':
  console.capture()  # before TensorFlow's imports print to the terminal
  # `kill -USR1 PID`: every thread's stack to descriptor 2, which is the run's log once it is known.
  faulthandler.register(signal.SIGUSR1, file=sys.__stderr__, all_threads=True)

from absl import app, flags, logging

from pipelines import metadata_store
from pipelines import spec as spec_lib
from pipelines.settings import (FLAGS, apply_config_file, build_run, check_beam_services,
                                check_flags, given_metadata_connection, metadata_connection)
from preprocessing import datasets

# After SIGINT / SIGTERM: marking the stage canceled, removing its folders and writing the summary
# take seconds; a clean-up still going after this long is stuck, and the process exits.
STOP_GRACE_S = 60
USAGE = ('usage: official-tfx run MODEL [flags] | official-tfx compile MODEL [flags] | '
         'official-tfx list | official-tfx report OUTPUT_DIR | '
         'official-tfx runs OUTPUT_DIR [--compare A B] | '
         'official-tfx predict MODEL --input FILE --output FILE [flags]')


_COUNTS = ('count', 'classes', 'users')  # summary metrics that count things


def _number(name: str, value) -> str:
  """A metric as the console shows it: counts whole, other values to 4 decimals."""
  if isinstance(value, float) and value.is_integer() and name.endswith(_COUNTS):
    return f'{int(value):,}'
  return f'{value:.4f}' if isinstance(value, float) else str(value)


def _print_result(summary) -> None:
  shown = [f'{name} {"undefined" if value is None else _number(name, value)}'
           for name, value in summary['metrics'].items()]
  print(textwrap.fill(', '.join(shown), width=100, initial_indent='Metrics (eval split, overall): ',
                      subsequent_indent='  '))
  if summary.get('undefined_metrics'):
    print(f'Undefined on this eval data: {", ".join(summary["undefined_metrics"])}')
  print(f'Blessed: {"yes" if summary["blessed"] else "no"}')
  infra = summary.get('infra_blessing') or {}
  if infra:
    verdict = 'passed' if infra.get('blessed') else f'FAILED: {infra.get("reason")}'
    print(f'Serving check: {verdict}')
  why = 'not blessed' if not summary['blessed'] else 'the serving check failed'
  print(f'Pushed model: {summary["pushed_model"] or f"none ({why})"}')


def check_output_dir(path: str) -> None:
  """Raises app.UsageError (one line) unless `path` is, or can be made, a writable directory."""
  if os.path.exists(path) and not os.path.isdir(path):
    raise app.UsageError(f'--output_dir {path} is a file, not a directory')
  existing = path
  while not os.path.exists(existing):
    existing = os.path.dirname(existing)
  if not os.path.isdir(existing):
    raise app.UsageError(f'--output_dir {path}: {existing} is a file, not a directory')
  if not os.access(existing, os.W_OK | os.X_OK):
    raise app.UsageError(f'--output_dir {path}: {existing} is not writable (read-only file '
                         'system or no permission)')


def resume_command() -> str:
  """The command line of this run, as the user can type it again."""
  return shlex.join(['official-tfx', *sys.argv[1:]])


def run_command(model: str) -> int:
  """`official-tfx run MODEL`: returns the exit status."""
  spec = spec_lib.get(model)  # an unknown model is a usage error before anything is written
  replayed = apply_config_file(model)
  output_dir = os.path.abspath(FLAGS.output_dir or os.path.join('output', model))
  check_output_dir(output_dir)
  check_flags(spec)
  # A MySQL server that is down, refuses the login or cannot create the database is one line
  # now (main() prints it), before anything is written.
  connection = metadata_connection(output_dir)
  # The job server jar (fetched on first use), the job service, the master and the worker pool
  # that the Beam runner flags name: a one-line usage error before anything is written.
  check_beam_services(say=print)
  try:
    os.makedirs(os.path.join(output_dir, 'logs'), exist_ok=True)
  except OSError as e:
    raise app.UsageError(f'--output_dir {output_dir}: cannot create it ({e.strerror})')
  log_path = os.path.join(output_dir, 'logs',
                          f'official_tfx-{time.strftime("%Y%m%d-%H%M%S")}-{os.getpid()}.log')
  if FLAGS['verbosity'].present:  # absl's --verbosity: the library output on the terminal
    console.to_terminal()
  else:
    console.to_log(log_path)
    logging.set_verbosity(logging.INFO)
  from pipelines import runner  # imports TFX: after flag checks, so usage errors are quick.
  try:
    spec, config, inputs = build_run(model)  # bad flags raise: main() reports them
  except datasets.DatasetError as e:
    return _run_failed(e, output_dir)
  print(f'official-tfx: {model} ({config.model_type}) -> {output_dir}')
  if not FLAGS['verbosity'].present:
    print(f'  log: {log_path}')
  if connection is not None:
    print(f'  ML Metadata: {metadata_store.describe(connection)}')
  if replayed:
    print(f'  config: {len(replayed)} settings from {FLAGS.config} (the command line\'s own '
          'flags override it)')
  if inputs.data_notice:
    print(f'  note: {inputs.data_notice}')
  for split, path in inputs.split_files.items():
    first, count = inputs.row_ranges.get(split, (0, None))
    rows = f' (rows {first} to {"the end" if count is None else first + count - 1})'
    print(f'  {split}: {path}{rows if (first, count) != (0, None) else ""}')
  try:
    summary = runner.run(spec, config, inputs, from_stage=FLAGS.from_stage,
                         to_stage=FLAGS.to_stage, force_exit_after_s=STOP_GRACE_S)
  except runner.OutputDirBusy as e:
    print(f'official-tfx: {e}', file=console.err())
    return 1
  except runner.RunInterrupted as e:
    return _interrupted(e, output_dir)
  except Exception as e:  # pylint: disable=broad-except
    return _run_failed(e, output_dir, resumable=True)
  _print_result(summary)
  print(f'Run summary: {os.path.join(output_dir, runner.SUMMARY_FILE)}')
  return 0


def _interrupted(error, output_dir: str) -> int:
  """Reports a run stopped by SIGINT / SIGTERM (summary already written); returns 130 / 143."""
  from pipelines import runner  # pylint: disable=import-outside-toplevel
  logging.warning('Run interrupted by %s', error.signal_name)
  summary_path = os.path.join(output_dir, runner.SUMMARY_FILE)
  stage = None
  if os.path.exists(summary_path):
    with open(summary_path) as f:
      stage = (json.load(f).get('interrupted') or {}).get('stage')
  print(f'\nofficial-tfx: interrupted ({error.signal_name}){f" during {stage}" if stage else ""}'
        f'; the finished stages are kept, nothing was pushed by this run. Resume with: '
        f'{resume_command()}', file=console.err())
  return error.exit_status


def _log_dir(output_dir: str) -> str:
  return os.path.join(output_dir, 'logs')


def _parse_flags(argv):
  """absl's flag parsing, its errors on the terminal (library output may be captured by now)."""
  try:
    return FLAGS(argv)
  except flags.Error as e:
    print(f'FATAL Flags parsing error: {e}', file=console.err())
    print('Pass --helpshort or --helpfull to see help on flags.', file=console.err())
    sys.exit(1)


def _run_failed(error: Exception, output_dir: str, resumable: bool = False) -> int:
  from pipelines import runner  # pylint: disable=import-outside-toplevel
  logging.exception('Run failed')
  print(f'\nofficial-tfx: run failed: {runner.error_message(error)}', file=console.err())
  print(f'Nothing was pushed. Log: {_log_dir(output_dir)}', file=console.err())
  if resumable:
    print(f'Once fixed, resume with: {resume_command()} (finished stages come from the cache)',
          file=console.err())
  return 1


def predict_command(model: str) -> int:
  """`official-tfx predict MODEL --input FILE --output FILE`: scores raw input with a pushed model
  (pipelines/predict.py); returns the exit status."""
  from pipelines import predict  # pylint: disable=import-outside-toplevel
  return predict.main(model)


def compile_command(model: str) -> int:
  """`official-tfx compile MODEL`: writes the model's KFP v2 pipeline spec; returns the status."""
  spec_lib.get(model)
  apply_config_file(model)
  from pipelines import engines  # imports TFX and KFP
  path = engines.compile_kubeflow_v2(model, FLAGS.output_file, FLAGS.image)
  print(f'official-tfx: {model} -> Kubeflow Pipelines v2 spec {path}')
  return 0


def main(argv):
  """Runs the command; a usage error, or an ML Metadata store that cannot be used, is one line on
  stderr (and `USAGE` when the command line itself is off), with exit status 1, and nothing
  written."""
  try:
    return _dispatch(argv[1:])
  except (app.UsageError, metadata_store.MetadataConnectionError) as e:
    print(f'official-tfx: {e}', file=console.err())
    if str(e) == USAGE:
      print('Flags: official-tfx --helpshort', file=console.err())
    return 1


def _existing_output_dir(path: str) -> str:
  """`path` made absolute; app.UsageError unless it holds a run (metadata.sqlite, or the store
  an earlier run recorded in metadata_connection.pbtxt)."""
  path = os.path.abspath(path)
  if not metadata_store.holds_runs(path):
    raise app.UsageError(f'{path} holds no run (no {metadata_store.SQLITE_FILE}, no '
                         f'{metadata_store.RECORD_FILE}): give the --output_dir of an '
                         'official-tfx run')
  return path


def _store_of(output_dir: str):
  """The ML Metadata store of `report` / `runs`: the one the metadata flags name (e.g. a
  --metadata_connection_config holding the password), else the directory's own; connected to
  once here, so that a server that cannot be used is one line before anything is written."""
  connection = given_metadata_connection() or metadata_store.for_output_dir(output_dir)
  if not isinstance(connection, str):
    metadata_store.connect(connection)
  return connection


def report_command(output_dir: str) -> int:
  """`official-tfx report OUTPUT_DIR`: writes report.html of the last run there again."""
  output_dir = _existing_output_dir(output_dir)
  connection = _store_of(output_dir)
  from pipelines import report  # pylint: disable=import-outside-toplevel
  print(f'official-tfx: report {report.write_report(output_dir, connection=connection)}')
  return 0


def runs_command(output_dir: str, extra=()) -> int:
  """`official-tfx runs OUTPUT_DIR [--compare A B]`: the runs there, or two runs' differences."""
  output_dir = _existing_output_dir(output_dir)
  connection = _store_of(output_dir)
  from pipelines import history  # pylint: disable=import-outside-toplevel
  which = list(FLAGS.compare or []) + list(extra)
  if not which:
    print(history.format_runs(history.list_runs(output_dir, connection)))
    return 0
  if len(which) != 2:
    raise app.UsageError(f'--compare takes two runs, got {len(which)}: {" ".join(which)}')
  print(history.compare_runs(output_dir, *which, connection=connection))
  return 0


def _dispatch(args):
  if len(args) == 3 and args[0] == 'runs':  # `runs OUT --compare A B`: B is left positional
    return runs_command(args[1], args[2:])
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
  except KeyboardInterrupt:  # before the run started (a run reports its own interrupts)
    print('\nofficial-tfx: interrupted before the run started; nothing was written by a stage',
          file=console.err())
    return 130


COMMANDS = {'run': run_command, 'compile': compile_command, 'report': report_command,
            'runs': runs_command, 'predict': predict_command}


def entry_point():
  """Console script `official-tfx`."""
  app.run(main, flags_parser=_parse_flags)


if __name__ == '__main__':
  entry_point()
