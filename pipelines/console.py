"""The terminal belongs to the user: the project's lines go there, library output to the run's log.

TensorFlow's C++ runtime, Beam, TFX, absl and Python's warnings write to file descriptors 1 and 2,
from C++ and Python alike, from the first import to interpreter exit. The CLI calls `capture()`
before it imports any of them: descriptors 1 and 2 and `sys.stderr` then go to an anonymous
scratch file, while `sys.stdout` and `err()` keep the terminal (the project's lines). Once the run's
log file is known, `to_log(path)` copies what was captured into it and sends descriptors 1 and 2,
Python's `sys.stderr` (warnings, `Exception ignored` at exit) and absl's log to it for the rest of
the process; the project's error lines use `err()`, which stays on the terminal. Child
processes (Beam workers, the serving check) inherit the log. `to_terminal()` undoes the capture
(`--verbosity=1` and more: the library output on the terminal, as before).
"""

from __future__ import annotations

import io
import os
import shutil
import sys
import tempfile
from typing import IO, Optional, TextIO

_captured: Optional[IO[bytes]] = None  # the scratch file while capturing
_terminal: Optional[int] = None  # duplicate of the original descriptor 2
_err: Optional[TextIO] = None


def _text(fd: int) -> TextIO:
  return io.TextIOWrapper(os.fdopen(fd, 'wb', buffering=0), write_through=True,
                          line_buffering=True)


def _point_absl_at_stderr() -> None:
  """absl's handler keeps the stream it was created with: give it the current sys.stderr."""
  from absl import logging  # pylint: disable=import-outside-toplevel
  logging.get_absl_handler().python_handler.stream = sys.stderr


def err() -> TextIO:
  """Where the project's error lines go: the terminal's stderr, also while library output goes
  to the scratch file or the log."""
  return _err or sys.stderr


def capture() -> None:
  """Sends descriptors 1 and 2 and `sys.stderr` to a scratch file; `sys.stdout` and `err()` stay
  on the terminal. Call before importing TensorFlow. No-op when already capturing."""
  global _captured, _terminal, _err
  if _captured is not None:
    return
  sys.stdout.flush()
  sys.stderr.flush()
  _terminal = os.dup(2)
  sys.stdout = _text(os.dup(1))
  _err = _text(os.dup(2))
  _captured = tempfile.TemporaryFile()  # pylint: disable=consider-using-with
  os.dup2(_captured.fileno(), 1)
  os.dup2(_captured.fileno(), 2)
  sys.stderr = _text(os.dup(2))
  _point_absl_at_stderr()


def to_log(log_path: str) -> None:
  """Appends what was captured to `log_path` and sends descriptors 1 and 2, `sys.stderr` and
  absl's log there until the process ends (`sys.stdout` and `err()` keep the terminal)."""
  global _captured, _err
  log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
  sys.stderr.flush()
  if _captured is not None:
    _captured.flush()
    _captured.seek(0)
    with os.fdopen(os.dup(log_fd), 'wb') as log:
      shutil.copyfileobj(_captured, log)
    _captured.close()
    _captured = None
  elif _err is None:  # not captured: keep the terminal for the project's lines now
    sys.stdout.flush()
    sys.stdout = _text(os.dup(1))
    _err = _text(os.dup(2))
  os.dup2(log_fd, 1)
  os.dup2(log_fd, 2)
  os.close(log_fd)
  sys.stderr = _text(os.dup(2))
  _point_absl_at_stderr()


def to_terminal() -> None:
  """Ends a `capture()`: what was captured is written to the terminal's stderr, and descriptors
  1 and 2, `sys.stderr` and absl's log write to the terminal again."""
  global _captured
  if _captured is None:
    return
  _captured.flush()
  _captured.seek(0)
  data = _captured.read()
  _captured.close()
  _captured = None
  os.dup2(sys.stdout.fileno(), 1)
  os.dup2(_terminal, 2)
  sys.stderr = err()
  _point_absl_at_stderr()
  err().write(data.decode('utf-8', 'replace'))
