"""What a user at a terminal sees: `official-tfx run` under a pseudo-terminal draws the live stage
table (rich), keeps the library output in the log, and ends with the table's final state and the
project's own error lines. Small synthetic census files; no real data."""

import os
import pty
import re
import select
import sys
import time

from tests import helpers

ROW = ('39, State-gov, 77516, Bachelors, 13, Never-married, Adm-clerical, Not-in-family, White, '
       'Male, 2174, 0, 40, United-States, <=50K')


def _run_in_pty(args, timeout=600):
  """(exit status, everything the terminal received) of `official-tfx ARGS` under a pty."""
  pid, fd = pty.fork()
  if pid == 0:  # the child: the CLI, its stdio on the pty
    # The pty's size is never set (0 x 0, as under some CI runners and editors): the table
    # takes $COLUMNS.
    env = dict(os.environ, TERM='xterm-256color', COLUMNS='120', LINES='40')
    os.execve(sys.executable, [sys.executable, '-m', 'pipelines.cli', *args], env)
  received, deadline = b'', time.time() + timeout
  try:
    while time.time() < deadline:
      ready, _, _ = select.select([fd], [], [], 1.0)
      if ready:
        try:
          chunk = os.read(fd, 65536)
        except OSError:  # EIO: the child closed the terminal
          break
        if not chunk:
          break
        received += chunk
  finally:
    os.close(fd)
  while True:  # the terminal is closed; the process may still be exiting
    finished, status = os.waitpid(pid, os.WNOHANG)
    if finished or time.time() > deadline:
      break
    time.sleep(0.2)
  if not finished:
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    raise AssertionError(f'the run did not end in {timeout} s: {received.decode()[-3000:]}')
  return os.waitstatus_to_exitcode(status), received.decode('utf-8', 'replace')


def test_a_failed_run_on_a_terminal_shows_the_live_table_and_the_rows_at_fault(tmp_path):
  train = tmp_path / 'train.csv'
  train.write_text((ROW + '\n') * 60)
  eval_ = tmp_path / 'eval.csv'
  eval_.write_text((ROW + '\n') * 20 + 'not, a, census, row\n' * 5)
  out = tmp_path / 'out'
  status, screen = _run_in_pty(['run', 'census', f'--train_data={train}', f'--eval_data={eval_}',
                                f'--output_dir={out}', '--train_steps=5'])
  assert status == 1, screen[-3000:]
  assert '\x1b[' in screen  # drawn with terminal control sequences: the live table
  plain = re.sub(r'\x1b\[[0-9;?]*[A-Za-z]', '', screen)
  final = plain[plain.rindex('Stage'):]  # the table as it stays on the screen
  assert re.search(r'^\s*2/11\s+TextLineExampleGen\s+failed\s+[\d.]+ s', final, re.M), final
  assert re.search(r'^\s*8/11\s+Trainer\s+not run\s*$', final, re.M), final
  assert 'run failed' in plain and 'eval.csv:21' in plain, plain[-3000:]
  assert 'Traceback' not in plain and 'tensorflow' not in plain.lower().replace(
      'official-tfx', ''), plain[-3000:]
  (log,) = os.listdir(out / 'logs')
  assert 'Traceback' in (out / 'logs' / log).read_text()  # the details are in the log
  assert not (out / 'serving_model').exists()


def test_off_a_terminal_the_same_run_prints_plain_lines(tmp_path):
  train = tmp_path / 'train.csv'
  train.write_text((ROW + '\n') * 60)
  eval_ = tmp_path / 'eval.csv'
  eval_.write_text((ROW + '\n') * 20 + 'not, a, census, row\n' * 5)
  result = helpers.run_cli('run', 'census', f'--train_data={train}', f'--eval_data={eval_}',
                           f'--output_dir={tmp_path / "out"}', '--train_steps=5', timeout=600)
  assert result.returncode == 1
  assert '\x1b[' not in result.stdout + result.stderr
  assert re.search(r'^\[ ?\d+/\d+\] TextLineExampleGen FAILED', result.stdout, re.M), result.stdout


def test_a_run_on_a_terminal_shows_the_trainers_steps_and_loss_as_it_trains(tmp_path):
  from tests import synthetic  # pylint: disable=import-outside-toplevel
  files = synthetic.census_files(str(tmp_path), {'train': 400, 'eval': 200})
  out = tmp_path / 'out'
  status, screen = _run_in_pty(['run', 'census', f'--train_data={files["train"]}',
                                f'--eval_data={files["eval"]}', f'--output_dir={out}',
                                '--train_steps=3000', '--batch_size=32'])
  plain = re.sub(r'\x1b\[[0-9;?]*[A-Za-z]', '', screen)
  assert status == 0, plain[-3000:]
  # The live block under the table, redrawn as training goes: `step N/3000`, a bar, `P%`, then
  # `loss L  R steps/s  ETA ...`. Several different steps were drawn, each with its loss.
  drawn = [(int(step), float(loss)) for step, loss in re.findall(
      r'Trainer\s+step (\d+)/3000[^\n]*\n\s*loss (\d+\.\d{4})', plain)]
  steps = sorted({step for step, _ in drawn})
  assert len(steps) >= 2 and steps[0] < 3000 and steps[-1] == 3000, drawn
  losses = [loss for _, loss in sorted(drawn)]
  assert all(0 <= loss < 10 for loss in losses) and losses[0] > losses[-1], drawn  # it learns
  final = plain[plain.rindex('Stage'):]
  assert re.search(r'^\s*8/11\s+Trainer\s+done\s+[\d.]+ s', final, re.M), final
  assert 'Traceback' not in plain
