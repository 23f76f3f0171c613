"""In-process progress of a Trainer's training: a small publish/subscribe hook.

Under LocalDagRunner the Trainer's `run_fn` runs in the process that runs the pipeline, so whoever
shows the run's progress (pipelines.progress) subscribes a listener here and the training loop
(model_fns.trainer's Keras callback, a task's own `train`) publishes `TrainingUpdate`s to it. With
no listener, as in a Trainer running in its own container, publishing does nothing. This module
imports nothing heavy and nothing from `pipelines`.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from typing import Callable, List, Optional

from absl import logging

# What a `TrainingUpdate` reports.
BEGIN = 'begin'  # training starts; the totals are known from here
STEP = 'step'  # a logged batch (Keras: once per steps_per_execution steps)
EPOCH = 'epoch'  # a Keras epoch ended
END = 'end'  # the training loop returned
STATUS = 'status'  # what the Trainer is doing now (a live display shows it, a log does not)
NOTE = 'note'  # a line worth keeping in a log too (e.g. a trees learner's start and end)


@dataclasses.dataclass(frozen=True)
class TrainingUpdate:
  """One report from the training loop.

  Attributes:
    kind: one of BEGIN, STEP, EPOCH, END, STATUS, NOTE.
    step: training steps done so far in the run (every `fit` call counted).
    total_steps: the run's training steps, for step-counted training; else None.
    epoch: for epoch-counted training, the epoch in progress (or just ended), from 1.
    total_epochs: for epoch-counted training, the run's epochs; else None.
    epoch_step, epoch_steps: steps done in the current epoch, and the epoch's steps.
    loss: the training loss Keras reports (the epoch's running mean), when there is one.
    steps_per_second: steps done since the first logged batch over the time since.
    eta_seconds: time left at that pace; None until it can be estimated.
    fraction: the share of the training done, 0 to 1; None when the length is unknown.
    text: what a STATUS or NOTE says.
    time: when it was published (time.time()).
  """
  kind: str
  step: int = 0
  total_steps: Optional[int] = None
  epoch: Optional[int] = None
  total_epochs: Optional[int] = None
  epoch_step: Optional[int] = None
  epoch_steps: Optional[int] = None
  loss: Optional[float] = None
  steps_per_second: Optional[float] = None
  eta_seconds: Optional[float] = None
  fraction: Optional[float] = None
  text: Optional[str] = None
  time: float = dataclasses.field(default_factory=time.time)


Listener = Callable[[TrainingUpdate], None]

_lock = threading.Lock()
_listeners: List[Listener] = []


def subscribe(listener: Listener) -> None:
  """Calls `listener(update)` for every update published from now on (in the publishing thread,
  the training loop's: a listener must be quick and must not block)."""
  with _lock:
    _listeners.append(listener)


def unsubscribe(listener: Listener) -> None:
  """Stops calling `listener`; a listener that is not subscribed is ignored."""
  with _lock:
    if listener in _listeners:
      _listeners.remove(listener)


def publish(update: TrainingUpdate) -> None:
  """Hands `update` to every listener. A listener's error is logged and never reaches training."""
  with _lock:
    listeners = list(_listeners)
  for listener in listeners:
    try:
      listener(update)
    except Exception:  # pylint: disable=broad-except
      logging.exception('A training progress listener failed on %s', update)


def status(text: str) -> None:
  """Publishes what the Trainer is doing now (a STATUS)."""
  publish(TrainingUpdate(STATUS, text=text))


def note(text: str) -> None:
  """Publishes a line worth keeping (a NOTE)."""
  publish(TrainingUpdate(NOTE, text=text))
