"""Helpers shared by the tests: run an ExampleGen's executor, read its output, run the CLI (to
the end, or in the background with deadlines on what it prints), score a census SavedModel."""

import glob
import html.parser
import io
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from contextlib import redirect_stderr, redirect_stdout
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf
from tfx.types import standard_artifacts

from components import text_example_gen
from preprocessing import census


def run_example_gen(output_dir: str, input_base: str, splits: Mapping[str, str],
                    line_parser: str, max_malformed_fraction: float,
                    row_ranges: Optional[Mapping[str, Tuple[int, Optional[int]]]] = None):
  """Runs TextLineExampleGen's executor in process; returns the Examples artifact it wrote."""
  component = text_example_gen.TextLineExampleGen(
      input_base=input_base, splits=dict(splits), line_parser=line_parser,
      max_malformed_fraction=max_malformed_fraction, row_ranges=row_ranges)
  return run_executor(component, text_example_gen.Executor, output_dir)


def run_executor(component, executor_class, output_dir: str):
  """Runs an ExampleGen component's executor in process on its exec properties; returns the
  Examples artifact it wrote under `output_dir`/examples."""
  examples = standard_artifacts.Examples()
  examples.uri = os.path.join(str(output_dir), 'examples')
  properties = {k: v for k, v in component.exec_properties.items() if v is not None}
  executor_class().Do({}, {'examples': [examples]}, properties)
  return examples


def read_examples(uri: str, split: str) -> List[tf.train.Example]:
  """The tf.Examples of one split of an Examples artifact."""
  files = tf.io.gfile.glob(os.path.join(uri, f'Split-{split}', '*'))
  return [tf.train.Example.FromString(r.numpy())
          for r in tf.data.TFRecordDataset(files, compression_type='GZIP')]


def run_cli(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
  """`official-tfx ARGS...` in a fresh process; returns the finished process (text output)."""
  return subprocess.run([sys.executable, '-m', 'pipelines.cli', *args], capture_output=True,
                        text=True, timeout=timeout, check=False)


class BackgroundCli:
  """`official-tfx ARGS...` started in its own process group, its stdout read line by line by a
  thread so that every wait has a deadline, and a stuck run is explained, not waited on forever.

  `lines` holds the stdout lines read so far; stderr goes to `stderr_path`. On a deadline
  `explain` sends SIGUSR1 (the CLI writes every thread's stack to its log), then returns the
  stderr and the newest log under `output_dir/logs`, last parts, for the failure message.
  """

  def __init__(self, args: Sequence[str], stderr_path: str, output_dir: str):
    self.output_dir, self.stderr_path = output_dir, stderr_path
    self.lines: List[str] = []
    self._queue: 'queue.Queue[Optional[str]]' = queue.Queue()
    with open(stderr_path, 'w') as stderr:
      self.process = subprocess.Popen([sys.executable, '-m', 'pipelines.cli', *args],
                                      stdout=subprocess.PIPE, stderr=stderr, text=True,
                                      start_new_session=True)
    threading.Thread(target=self._read, daemon=True).start()

  def _read(self) -> None:
    for line in self.process.stdout:
      self._queue.put(line)
    self._queue.put(None)  # end of file

  def _next_line(self, deadline: float, waiting_for: str) -> Optional[str]:
    """The next stdout line (kept in `lines`), None at its end; AssertionError past `deadline`."""
    try:
      line = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
    except queue.Empty:
      raise AssertionError(f'{waiting_for}: not within the deadline\n{self.explain()}') from None
    if line is not None:
      self.lines.append(line)
    return line

  def wait_for_line(self, text: str, timeout: float) -> Optional[str]:
    """The first line from here on that contains `text`; None if stdout ended first.

    Raises:
      AssertionError: `timeout` seconds passed first (the message has `explain()`).
    """
    deadline = time.monotonic() + timeout
    while (line := self._next_line(deadline, f'a line with {text!r}')) is not None:
      if text in line:
        return line
    return None

  def wait(self, timeout: float) -> int:
    """The exit status, once stdout has ended (the rest read into `lines`).

    Raises:
      AssertionError: the process did not end within `timeout` seconds (with `explain()`).
    """
    deadline = time.monotonic() + timeout
    while self._next_line(deadline, 'the end of the run') is not None:
      pass
    try:
      return self.process.wait(timeout=max(0.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
      raise AssertionError(f'the run had not ended {timeout:g} s on\n{self.explain()}') from None

  def explain(self) -> str:
    """Kills the process group, first asking a running CLI for its threads' stacks (SIGUSR1:
    Python's faulthandler writes them to the log); returns the ends of stdout and stderr, the
    log's end before the stacks, and the stacks."""
    logs = sorted(glob.glob(os.path.join(self.output_dir, 'logs', '*.log')), key=os.path.getmtime)
    log_path = logs[-1] if logs else None
    before = os.path.getsize(log_path) if log_path else 0
    if self.process.poll() is None:
      os.kill(self.process.pid, signal.SIGUSR1)
      time.sleep(3)
    try:
      os.killpg(self.process.pid, signal.SIGKILL)
    except ProcessLookupError:
      pass
    log = ''
    if log_path:
      with open(log_path, 'rb') as f:
        log = f.read().decode(errors='replace')
    with open(self.stderr_path, errors='replace') as f:
      stderr = f.read()
    return (f'--- stdout ---\n{"".join(self.lines)[-2000:]}\n--- stderr ---\n{stderr[-3000:]}\n'
            f'--- {log_path or "no log"}, its end ---\n{log[:before][-4000:]}\n'
            f'--- the threads\' stacks (SIGUSR1) and what followed ---\n{log[before:][:12000]}')


def cli_in_process(args: Sequence[str]) -> Tuple[int, str]:
  """(exit status, stderr) of `official-tfx ARGS` run in this process, flags parsed as absl's
  app.run parses them (a flag parsing error is what absl prints for it)."""
  from absl import flags  # pylint: disable=import-outside-toplevel
  from pipelines import cli  # pylint: disable=import-outside-toplevel
  argv = ['official-tfx', *args]
  flags.FLAGS.unparse_flags()
  stderr = io.StringIO()
  try:
    try:
      remaining = flags.FLAGS(argv)
    except flags.Error as e:
      return 1, f'FATAL Flags parsing error: {e}'
    with redirect_stderr(stderr), redirect_stdout(io.StringIO()):
      status = cli.main(remaining)
    return status, stderr.getvalue()
  finally:
    flags.FLAGS.unparse_flags()


def census_serving_accuracy(model_dir: str, lines: Sequence[str], batch_size: int = 4096) -> float:
  """Accuracy of a census SavedModel's `serving_default` on raw UCI Adult lines.

  Every line that parses (adult.test's junk first line and blank lines do not) is sent as a
  serialized raw tf.Example, as TF Serving would send it; a probability over 0.5 predicts >50K.
  """
  rows = [r for r in map(census.parse_line, lines) if r]
  labels = np.array([r.pop(census.LABEL_KEY) for r in rows])
  examples = [text_example_gen.to_example(r).SerializeToString() for r in rows]
  serve = tf.saved_model.load(model_dir).signatures['serving_default']
  probabilities = np.concatenate([
      serve(examples=tf.constant(examples[i:i + batch_size]))['probabilities'].numpy()[:, 0]
      for i in range(0, len(examples), batch_size)])
  assert probabilities.shape == labels.shape
  return float(np.mean((probabilities > 0.5) == labels))


class _ReportCells(html.parser.HTMLParser):
  """The text of every `<td data-metric>` cell, by (table id, row's data-slice, metric)."""

  def __init__(self):
    super().__init__()
    self.cells, self._table, self._slice, self._key, self._text = {}, None, None, None, ''

  def handle_starttag(self, tag, attrs):
    attrs = dict(attrs)
    if tag == 'table':
      self._table = attrs.get('id')
    elif tag == 'tr':
      self._slice = attrs.get('data-slice')
    elif tag == 'td' and 'data-metric' in attrs:
      self._key, self._text = (self._table, self._slice, attrs['data-metric']), ''

  def handle_data(self, data):
    if self._key:
      self._text += data

  def handle_endtag(self, tag):
    if tag == 'td' and self._key:
      self.cells[self._key] = self._text.strip()
      self._key = None


def report_cells(page: str) -> Dict[Tuple[Any, Any, str], str]:
  """{(table id, the row's data-slice or None, metric name): the cell's text} of a report.html's
  metric cells (`<td data-metric=...>`)."""
  parser = _ReportCells()
  parser.feed(page)
  return parser.cells


def check_report_screenshot(report_path: str, shot: str) -> None:
  """Renders a report.html in headless Chromium (no network: a file:// page) into the PNG `shot`
  and checks what it shows: a 1280 x 4000 page of text, tables and charts (more than 50 colours),
  under the report's header bar (#263238: the inline stylesheet applied). Skips the calling
  test when Chromium is not installed (`.ci/run` installs Debian's `chromium`)."""
  import shutil  # pylint: disable=import-outside-toplevel
  import pytest  # pylint: disable=import-outside-toplevel
  from PIL import Image  # pylint: disable=import-outside-toplevel  # in the lock (tensorboard)
  browser = shutil.which('chromium') or shutil.which('chromium-browser')
  if browser is None:
    pytest.skip('chromium is not installed (apt-get install -y chromium)')
  subprocess.run([browser, '--headless', '--no-sandbox', '--disable-gpu',
                  f'--screenshot={shot}', '--window-size=1280,4000',
                  'file://' + os.path.abspath(report_path)],
                 capture_output=True, timeout=180, check=False)
  image = Image.open(shot).convert('RGB')
  assert image.size == (1280, 4000)
  colours = image.resize((128, 400)).getcolors(maxcolors=100_000)
  assert colours is not None and len(colours) > 50  # text, tables and charts, not a blank page
  assert image.getpixel((5, 5)) == (0x26, 0x32, 0x38)
