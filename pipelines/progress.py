"""How a run shows its progress: plain lines (a log, a pipe, CI) or a live table (a terminal).

`metadata.ProgressMonitor` follows the stages in ML Metadata and calls a `Display`:
`stage_running`, `stage_finished` and `notices` (what a finished ExampleGen left out). While a
display is open (a context manager) it also listens to the Trainer's training loop
(`model_fns.training_progress`, fed in this same process under LocalDagRunner).

- `PlainDisplay` writes one line per event, as the runner always has
  (`[ 8/10] Trainer running`, `[ 8/10] Trainer done in 41.0 s`), and inside the Trainer a line at
  most every quarter of the training (`PLAIN_TRAINER_LINES`), the last at 100%:
  `        Trainer: step 500/2000 (25%), loss 0.3412, 41.2 steps/s, ETA 36 s`.
- `LiveDisplay` redraws a rich table in place: every stage with its state (waiting, running, done,
  cached, failed, ...) and time, and under it the Trainer's step (or epoch) with a bar, loss,
  steps/s and ETA. Notices are printed above the table.

`display_for` picks one the way `runner.run`'s `progress` argument asks.
"""

from __future__ import annotations

import math
import os
import sys
import threading
import time
from typing import Dict, List, Optional, Sequence, TextIO

from model_fns import training_progress as tp

TRAINER = 'Trainer'  # the Trainer's node id in every pipeline of pipelines.factory
# Plain Trainer lines in a run at most (one per quarter): with a line per stage event, a census
# run's whole output off a terminal stays within 40 lines.
PLAIN_TRAINER_LINES = 4
INDENT = ' ' * 8  # plain lines that belong to the stage line above them


def format_duration(seconds: float, decimals: int = 0) -> str:
  """`34 s`, `41.0 s` (decimals=1), `4 min 05 s`, `1 h 02 min`."""
  seconds = max(seconds, 0.0)
  if seconds < 60:
    return f'{seconds:.{decimals}f} s'
  whole = int(round(seconds))
  if whole < 3600:
    return f'{whole // 60} min {whole % 60:02d} s'
  return f'{whole // 3600} h {whole % 3600 // 60:02d} min'


def format_rate(steps_per_second: float) -> str:
  """Three significant figures at most, without an exponent: `412`, `41.2`, `4.12`, `0.41`."""
  if steps_per_second >= 100:
    return f'{steps_per_second:.0f}'
  return f'{steps_per_second:.1f}' if steps_per_second >= 10 else f'{steps_per_second:.2f}'


def position_text(update: tp.TrainingUpdate) -> str:
  """`step 600/2000`, `epoch 3/20`, or `step 600` when the length is unknown."""
  if update.total_steps:
    return f'step {update.step}/{update.total_steps}'
  if update.total_epochs:
    return f'epoch {update.epoch}/{update.total_epochs}'
  return f'step {update.step}'


def training_line(update: tp.TrainingUpdate, eta: Optional[float] = None) -> str:
  """`step 600/2000 (30%), loss 0.3412, 41.2 steps/s, ETA 34 s`: what is known of it; `eta`
  overrides the update's (a live display counts it down)."""
  parts = [position_text(update)]
  if update.fraction is not None:
    parts[0] += f' ({math.floor(100 * update.fraction + 1e-9)}%)'
  if update.loss is not None and math.isfinite(update.loss):
    parts.append(f'loss {update.loss:.4f}')
  elif update.loss is not None:
    parts.append(f'loss {update.loss}')  # nan, inf: worth seeing as such
  if update.steps_per_second:
    parts.append(f'{format_rate(update.steps_per_second)} steps/s')
  eta = update.eta_seconds if eta is None else eta
  if eta is not None and (update.fraction is None or update.fraction < 1):
    parts.append(f'ETA {format_duration(eta)}')
  return ', '.join(parts)


class Display:
  """What `metadata.ProgressMonitor` reports to; base of the plain and live displays.

  Use as a context manager around the run: it listens to the training loop while open. Every
  method may be called from the monitor's thread or the training loop's.
  """

  def __init__(self, node_ids: Sequence[str]):
    self.node_ids = list(node_ids)
    self._lock = threading.RLock()

  def __enter__(self) -> 'Display':
    tp.subscribe(self.on_training)
    self.open()
    return self

  def __exit__(self, exc_type, exc, tb) -> None:
    tp.unsubscribe(self.on_training)
    self.close(failed=exc_type is not None)

  def open(self) -> None:
    """Called when the run starts."""

  def close(self, failed: bool) -> None:
    """Called when the run has ended (`failed`: by an exception, the stage states may lag)."""

  def stage_running(self, name: str) -> None:
    """Stage `name` (a node id) started."""

  def stage_finished(self, name: str, state: str, seconds: float, cached: bool) -> None:
    """Stage `name` ended: `state` `done`, `cached`, `FAILED` or `canceled`, after `seconds`."""

  def notices(self, name: str, lines: List[str]) -> None:
    """Lines about a finished stage (e.g. the rows its ExampleGen left out)."""

  def on_training(self, update: tp.TrainingUpdate) -> None:
    """An update from the Trainer's training loop."""

  def _prefix(self, name: str) -> str:
    position = (self.node_ids.index(name) + 1) if name in self.node_ids else 0
    return f'[{position:2d}/{len(self.node_ids)}] {name}'


class PlainDisplay(Display):
  """One line per event on `out` (None: `sys.stdout` when the line is written); the Trainer's
  progress at most `PLAIN_TRAINER_LINES` times over its training."""

  def __init__(self, node_ids: Sequence[str], out: Optional[TextIO] = None):
    super().__init__(node_ids)
    self._out = out
    self._part = 0  # the last part of the training written (of PLAIN_TRAINER_LINES)

  def _print(self, line: str) -> None:
    with self._lock:
      print(line, file=self._out or sys.stdout, flush=True)

  def stage_running(self, name):
    self._print(f'{self._prefix(name)} running')

  def stage_finished(self, name, state, seconds, cached):
    detail = 'cached' if cached else f'{state} in {seconds:.1f} s'
    self._print(f'{self._prefix(name)} {detail}')

  def notices(self, name, lines):
    for line in lines:
      self._print(f'{INDENT}{line}')

  def on_training(self, update):
    if update.kind == tp.NOTE:
      self._print(f'{INDENT}{TRAINER}: {update.text}')
      return
    if update.kind == tp.BEGIN:
      self._part = 0
      return
    if update.kind not in (tp.STEP, tp.EPOCH, tp.END) or update.fraction is None:
      return
    with self._lock:
      part = min(math.floor(PLAIN_TRAINER_LINES * update.fraction + 1e-9), PLAIN_TRAINER_LINES)
      if part <= self._part:
        return
      self._part = part
    self._print(f'{INDENT}{TRAINER}: {training_line(update)}')


# Live states: what a stage shows, and its style.
_STYLES = {'waiting': 'dim', 'running': 'bold yellow', 'done': 'green', 'cached': 'cyan',
           'failed': 'bold red', 'canceled': 'red', 'stopped': 'red', 'not run': 'dim'}


class LiveDisplay(Display):
  """A rich `Live` table of the stages, redrawn in place, with the Trainer's progress under it.

  `console`: the rich Console to draw on (default: one on `sys.stdout`). Notices and the
  Trainer's notes are printed above the table. `refresh_per_second`: redraws (the elapsed times
  tick between events).
  """

  def __init__(self, node_ids: Sequence[str], console=None, refresh_per_second: float = 2):
    super().__init__(node_ids)
    from rich.console import Console  # pylint: disable=import-outside-toplevel
    from rich.live import Live  # pylint: disable=import-outside-toplevel
    if console is None:
      width = None
      try:
        # 0 on a pseudo-terminal whose size was never set: rich then takes $COLUMNS, else 80.
        width = os.get_terminal_size(sys.stdout.fileno()).columns or None
      except (AttributeError, OSError, ValueError):
        pass
      console = Console(file=sys.stdout, width=width)
    self.console = console
    self._states: Dict[str, str] = {name: 'waiting' for name in self.node_ids}
    self._started: Dict[str, float] = {}
    self._seconds: Dict[str, float] = {}
    self._update: Optional[tp.TrainingUpdate] = None  # the last one with a position
    self._status: Optional[str] = None
    # Python-level prints during the run go above the table; descriptor 2 (library logs, the
    # run's log file under the CLI) is left alone.
    self._live = Live(get_renderable=self.render, console=console,
                      refresh_per_second=refresh_per_second, transient=False,
                      redirect_stdout=True, redirect_stderr=False, vertical_overflow='visible')

  def open(self):
    self._live.start(refresh=True)

  def close(self, failed):
    with self._lock:
      for name, state in self._states.items():
        if state == 'waiting':
          self._states[name] = 'not run'
        elif state == 'running' and failed:
          self._states[name] = 'stopped'
          self._seconds[name] = time.time() - self._started.get(name, time.time())
    self._live.stop()  # draws the final table, which stays on the screen

  def _above(self, text: str) -> None:
    from rich.text import Text  # pylint: disable=import-outside-toplevel
    self._live.console.print(Text(text))

  def stage_running(self, name):
    with self._lock:
      self._states[name] = 'running'
      self._started[name] = time.time()
      if name not in self.node_ids:
        self.node_ids.append(name)
    self._live.refresh()

  def stage_finished(self, name, state, seconds, cached):
    with self._lock:
      self._states[name] = 'cached' if cached else state.lower()
      self._seconds[name] = seconds
      if name not in self.node_ids:
        self.node_ids.append(name)
    self._live.refresh()

  def notices(self, name, lines):
    self._above(f'{name}:')
    for line in lines:
      self._above(f'  {line}')

  def on_training(self, update):
    if update.kind == tp.NOTE:
      self._above(f'{TRAINER}: {update.text}')
    with self._lock:
      if update.kind in (tp.STATUS, tp.NOTE):
        self._status = update.text
      elif update.kind == tp.BEGIN:
        self._update, self._status = update, 'first steps (tracing the training step)'
      elif update.kind in (tp.STEP, tp.EPOCH):
        self._update, self._status = update, None
      elif update.kind == tp.END:
        self._update, self._status = update, 'training done'

  def render(self):
    """The table and the Trainer's progress as they are now (a rich renderable)."""
    from rich import box  # pylint: disable=import-outside-toplevel
    from rich.console import Group  # pylint: disable=import-outside-toplevel
    from rich.table import Table  # pylint: disable=import-outside-toplevel
    from rich.text import Text  # pylint: disable=import-outside-toplevel
    now = time.time()
    with self._lock:
      table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False, header_style='bold')
      table.add_column('#', justify='right')
      table.add_column('Stage')
      table.add_column('State')
      table.add_column('Time', justify='right', min_width=10)  # `1 min 05 s`: no jitter
      for index, name in enumerate(self.node_ids):
        state = self._states.get(name, 'waiting')
        if state == 'running':
          elapsed = format_duration(now - self._started.get(name, now), decimals=0)
        elif name in self._seconds and state != 'cached':
          elapsed = format_duration(self._seconds[name], decimals=1)
        else:
          elapsed = ''
        table.add_row(f'{index + 1}/{len(self.node_ids)}', name,
                      Text(state, style=_STYLES.get(state, '')), elapsed)
      parts = [table]
      training = self._training(now)
      if training is not None:
        parts.append(training)
    return Group(*parts)

  def _training(self, now: float):
    """The Trainer's block: position, bar and percentage; loss, steps/s, ETA; what it does."""
    from rich.progress_bar import ProgressBar  # pylint: disable=import-outside-toplevel
    from rich.table import Table  # pylint: disable=import-outside-toplevel
    from rich.text import Text  # pylint: disable=import-outside-toplevel
    state = self._states.get(TRAINER)
    update, status = self._update, self._status
    if state != 'running' and update is None:
      return None
    grid = Table.grid(padding=(0, 1))
    grid.add_column(style='bold')
    grid.add_column()
    if update is None:
      grid.add_row(TRAINER, Text(status or 'reading its inputs, building the model', style='dim'))
      return grid
    head = Table.grid(padding=(0, 1))
    if update.fraction is not None:
      head.add_row(position_text(update),
                   ProgressBar(total=1.0, completed=update.fraction, width=30),
                   f'{math.floor(100 * update.fraction + 1e-9)}%')
    else:
      head.add_row(position_text(update))
    grid.add_row(TRAINER, head)
    details = []
    if update.total_epochs and update.epoch_steps:
      details.append(f'step {update.epoch_step}/{update.epoch_steps} of the epoch')
    if update.loss is not None:
      details.append(f'loss {update.loss:.4f}')
    if update.steps_per_second:
      details.append(f'{format_rate(update.steps_per_second)} steps/s')
    if update.eta_seconds is not None and state == 'running' and update.kind != tp.END:
      details.append(f'ETA {format_duration(update.eta_seconds - (now - update.time))}')
    if details:
      grid.add_row('', '  '.join(details))
    if status and state == 'running':  # evaluating, exporting: nothing once the stage ended
      grid.add_row('', Text(status, style='dim'))
    return grid


def library_output_on_terminal() -> bool:
  """Whether descriptor 2 (TensorFlow's, Beam's and absl's logs) writes to a terminal: then a
  live display would be torn by their lines (`--verbosity`, or the runner used as a library)."""
  try:
    return os.isatty(2)
  except OSError:
    return False


def display_for(progress, node_ids: Sequence[str]) -> Display:
  """The display for `runner.run`'s `progress`: a stream gets plain lines; None gets the live
  table when `sys.stdout` is a terminal (and the library logs go elsewhere), else plain lines on
  `sys.stdout`. (`progress=False` runs without a monitor at all.)"""
  if progress is None:
    try:
      live = sys.stdout.isatty() and not library_output_on_terminal()
    except (AttributeError, ValueError):
      live = False
    if live:
      try:
        return LiveDisplay(node_ids)
      except ImportError:  # rich is missing: plain lines still work
        pass
    return PlainDisplay(node_ids)
  return PlainDisplay(node_ids, out=progress)
