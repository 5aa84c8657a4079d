"""Training progress as small events for any listener, and stop requests honoured at the next step."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Optional, Tuple

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

EVENT_KINDS = ("start", "log", "evaluate", "end")


@dataclass
class ProgressEvent:
    """One moment of a training run.

    ``kind`` is ``start``, ``log`` (a training loss), ``evaluate`` (metrics on the evaluation split)
    or ``end``. ``eta_seconds`` extrapolates the time per step since the first step ended (unknown before a
    second one).
    """

    kind: str
    step: int
    max_steps: int
    epoch: float
    elapsed_seconds: float
    eta_seconds: Optional[float] = None
    loss: Optional[float] = None
    metrics: Dict[str, float] = field(default_factory=dict)
    stopped: bool = False

    @property
    def fraction(self) -> float:
        return min(1.0, self.step / self.max_steps) if self.max_steps else 0.0


Listener = Callable[[ProgressEvent], None]


class ProgressCallback(TrainerCallback):
    """Sends :class:`ProgressEvent` objects to ``listener`` and stops training when ``stop_event`` is set.

    Two ways in: the Trainer calls its callback hooks (``on_train_begin``, ``on_step_end``, …), and training that
    runs outside a Trainer (the embedding methods) calls the same steps directly: :meth:`begin`, :meth:`step`,
    :meth:`log`, :meth:`evaluate`, :meth:`end` (and :meth:`at` to say where the run stands).
    """

    def __init__(self, listener: Optional[Listener] = None, stop_event: Optional[threading.Event] = None):
        self.listener = listener
        self.stop_event = stop_event or threading.Event()
        self.stopped = False
        self.global_step = 0
        self.max_steps = 0
        self.epoch = 0.0
        self._started = 0.0
        self._first_step = 0
        self._rate_from: Optional[Tuple[float, int]] = None  # (time, step) at the end of the first step

    # ------------------------------------------------------------------ the direct API

    def begin(self, max_steps: int, step: int = 0, epoch: float = 0.0) -> None:
        """Training starts (``max_steps`` steps in all; a resumed run starts at ``step``)."""
        self._started = time.monotonic()
        self.max_steps = int(max_steps or 0)
        self.at(step, epoch)
        self._first_step = self.global_step
        self._rate_from = None
        self.stopped = False
        self._emit("start")

    def at(self, step: int, epoch: Optional[float] = None) -> None:
        """Where the run stands (the step and epoch that later events report), without a step ending."""
        self.global_step = int(step or 0)
        if epoch is not None:
            self.epoch = float(epoch)

    def step(self, step: int, epoch: Optional[float] = None) -> bool:
        """A step ended; True when a stop was requested (``self.stopped`` is then True: end training now)."""
        self.at(step, epoch)
        if self._rate_from is None and self.global_step > self._first_step:
            self._rate_from = (time.monotonic(), self.global_step)
        if self.stop_event.is_set():
            self.stopped = True
        return self.stopped

    def log(self, loss: float) -> None:
        """A training loss."""
        self._emit("log", loss=float(loss))

    def evaluate(self, metrics: Optional[Dict[str, Any]]) -> None:
        """Metrics on the evaluation split (``eval_`` prefixes, timings and non-numbers are dropped)."""
        cleaned = {k.removeprefix("eval_"): float(v) for k, v in (metrics or {}).items()
                   if isinstance(v, (int, float)) and not k.endswith(("runtime", "per_second"))}
        self._emit("evaluate", metrics=cleaned)

    def end(self) -> None:
        """Training ended (finished or stopped)."""
        self._emit("end")

    def _emit(self, kind: str, **values) -> None:
        if self.listener is None:
            return
        now = time.monotonic()
        elapsed = now - self._started
        eta = None
        left = max(0, self.max_steps - self.global_step)
        if kind == "end" or (self.max_steps and left == 0):
            eta = 0.0
        elif self._rate_from is not None and self.global_step > self._rate_from[1] and self.max_steps:
            # The time per step since the first one ended: start-up (loading, the first step's warm-up, finding
            # label words) is not a step's cost.
            since, step = self._rate_from
            eta = (now - since) / (self.global_step - step) * left
        self.listener(ProgressEvent(kind, self.global_step, self.max_steps, self.epoch, elapsed, eta,
                                    stopped=self.stopped, **values))

    # ------------------------------------------------------------------ the Trainer's hooks

    def _follow(self, state: TrainerState) -> None:
        self.max_steps = int(state.max_steps or 0)
        self.at(state.global_step, float(state.epoch or 0.0))

    def on_train_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs):
        self.begin(state.max_steps, state.global_step, float(state.epoch or 0.0))

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs):
        self.max_steps = int(state.max_steps or 0)
        if self.step(state.global_step, float(state.epoch or 0.0)):
            halt(control)
        return control

    def on_epoch_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs):
        if self.stopped:  # a stopped run ends now: no evaluation or checkpoint of the partial epoch
            control.should_evaluate = False
            control.should_save = False
        return control

    def on_log(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, logs=None, **kwargs):
        if logs and "loss" in logs:
            self._follow(state)
            self.log(logs["loss"])

    def on_evaluate(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, metrics=None,
                    **kwargs):
        self._follow(state)
        self.evaluate(metrics)

    def on_train_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs):
        self._follow(state)
        self.end()


class StageCallback(TrainerCallback):
    """Passes the losses and steps of a training stage run by another trainer (SetFit's contrastive tuning) to the
    run's :class:`ProgressCallback`, and its stop requests back; the stage has no start or end of its own."""

    def __init__(self, progress: ProgressCallback):
        self.progress = progress

    def on_log(self, args, state, control, logs=None, **kwargs):
        losses = {k.rsplit("_", 1)[-1]: v for k, v in (logs or {}).items() if k.endswith("loss")}
        if "loss" in losses:
            self.progress.at(state.global_step, float(state.epoch or 0.0))
            self.progress.log(losses["loss"])

    def on_step_end(self, args, state, control, **kwargs):
        if self.progress.step(state.global_step, float(state.epoch or 0.0)):
            halt(control)
        return control


class DeadlineCallback(TrainerCallback):
    """Ends a Trainer's loop after the step during which ``deadline`` (a ``time.monotonic()`` value) passed,
    keeping what it has learned: a time budget that holds however fast the machine turns out to be (``auto``'s
    estimates come from one measured embedding pass; a busy machine is slower). ``stopped_at``: the step it
    stopped after, None while it has not."""

    def __init__(self, deadline: float):
        self.deadline = deadline
        self.stopped_at: Optional[int] = None

    def on_step_end(self, args, state, control, **kwargs):
        if time.monotonic() >= self.deadline and state.global_step < state.max_steps:
            self.stopped_at = state.global_step
            halt(control)
        return control


def halt(control: TrainerControl) -> TrainerControl:
    """Make a Trainer stop after this step, without evaluating or saving the partial epoch."""
    control.should_training_stop = True
    control.should_evaluate = False
    control.should_save = False
    return control
