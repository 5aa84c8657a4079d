"""Training progress as small events for any listener, and stop requests honoured at the next step."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, Optional, Tuple

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
    """Sends :class:`ProgressEvent` objects to ``listener`` and stops training when ``stop_event`` is set."""

    def __init__(self, listener: Optional[Listener] = None, stop_event: Optional[threading.Event] = None):
        self.listener = listener
        self.stop_event = stop_event or threading.Event()
        self.stopped = False
        self._started = 0.0
        self._first_step = 0
        self._rate_from: Optional[Tuple[float, int]] = None  # (time, step) at the end of the first step

    def _emit(self, kind: str, state: TrainerState, **values) -> None:
        if self.listener is None:
            return
        now = time.monotonic()
        elapsed = now - self._started
        eta = None
        left = max(0, state.max_steps - state.global_step)
        if kind == "end" or (state.max_steps and left == 0):
            eta = 0.0
        elif self._rate_from is not None and state.global_step > self._rate_from[1] and state.max_steps:
            # The time per step since the first one ended: start-up (loading, the first step's warm-up, finding
            # label words) is not a step's cost.
            since, step = self._rate_from
            eta = (now - since) / (state.global_step - step) * left
        self.listener(ProgressEvent(kind, state.global_step, state.max_steps, float(state.epoch or 0.0),
                                    elapsed, eta, stopped=self.stopped, **values))

    def on_train_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs):
        self._started = time.monotonic()
        self._first_step = state.global_step
        self._rate_from = None
        self.stopped = False
        self._emit("start", state)

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs):
        if self._rate_from is None and state.global_step > self._first_step:
            self._rate_from = (time.monotonic(), state.global_step)
        if self.stop_event.is_set():
            self.stopped = True
            control.should_training_stop = True
            control.should_evaluate = False
            control.should_save = False
        return control

    def on_epoch_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs):
        if self.stopped:  # a stopped run ends now: no evaluation or checkpoint of the partial epoch
            control.should_evaluate = False
            control.should_save = False
        return control

    def on_log(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, logs=None, **kwargs):
        if logs and "loss" in logs:
            self._emit("log", state, loss=float(logs["loss"]))

    def on_evaluate(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, metrics=None,
                    **kwargs):
        cleaned = {k.removeprefix("eval_"): float(v) for k, v in (metrics or {}).items()
                   if isinstance(v, (int, float)) and not k.endswith(("runtime", "per_second"))}
        self._emit("evaluate", state, metrics=cleaned)

    def on_train_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs):
        self._emit("end", state)
