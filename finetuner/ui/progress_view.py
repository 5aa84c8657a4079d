"""The Train tab's live view of a job: the progress bar, status and log lines, the epoch table and the loss chart
(which also draws the runs compared on the Export tab)."""

from __future__ import annotations

import html
import math
import queue
import time
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple

import gradio as gr
import pandas as pd

from .. import methods
from ..config import TrainConfig
from ..evaluation import metric_name
from ..runner import Job
from ..runs.pipeline import method_line

if TYPE_CHECKING:  # importing it would load the transformers Trainer before the first page is served
    from ..training.progress import ProgressEvent

UPDATE_INTERVAL_S = 0.3  # at most about three UI updates a second
_LOG_LINES = 200
_COLORS = {"queued": "#9ca3af", "running": "#4f46e5", "completed": "#16a34a", "stopped": "#d97706",
           "failed": "#dc2626", "idle": "#9ca3af"}
# The columns of the per-epoch table, per task: the scores training reports after each epoch (finetuner.metrics).
_EPOCH_COLUMNS = {"single_label": ("epoch", "loss", "accuracy", "f1_macro"),
                  "multi_label": ("epoch", "loss", "f1_macro", "f1_micro"),
                  "regression": ("epoch", "loss", "pearson", "mae")}
# What the completed line says, per task: (metric, as named in the line).
_FINAL_SCORES = {"single_label": (("accuracy", "accuracy"), ("f1_macro", "F1 (macro)")),
                 "multi_label": (("f1_macro", "F1 (macro)"), ("f1_micro", "F1 (micro)")),
                 "regression": (("pearson", "Pearson r"), ("mae", "mean absolute error"))}


def trains_in_epochs(method: Optional[str]) -> bool:
    """Whether a method trains in epochs (the embedding head fits at once); "auto" does until it has chosen."""
    found = methods.find(method)
    return found is None or found.has_epochs


class ProgressView:
    """Accumulates a job's events into what the tab shows."""

    def __init__(self, config: TrainConfig, task_line: str = ""):
        self.config = config  # its task: the one the labels were read as (not "auto")
        self.task = config.task if config.task in _EPOCH_COLUMNS else "single_label"
        self.columns = _EPOCH_COLUMNS[self.task]
        self.event: Optional["ProgressEvent"] = None
        self.status = "Preparing…"
        self.losses: List[Dict[str, Any]] = []
        self.evaluations: Dict[float, Dict[str, Any]] = {}
        self.lines: List[str] = []
        self.ended = False
        self.offset = 0  # steps of the trainings before this one (auto trains a model per candidate)
        self._last_steps = 0
        self.started = time.monotonic()
        if task_line:
            self._log(task_line)

    @staticmethod
    def empty_epochs(task: str = "single_label") -> pd.DataFrame:
        return pd.DataFrame(columns=[metric_name(c) for c in _EPOCH_COLUMNS.get(task, _EPOCH_COLUMNS["single_label"])])

    def drain(self, events: "queue.Queue[Any]") -> None:
        """Take every waiting event (waiting a moment for the first)."""
        try:
            self.add(events.get(timeout=UPDATE_INTERVAL_S / 2))
            while True:
                self.add(events.get_nowait())
        except queue.Empty:
            return

    def add(self, item: Any) -> None:
        if isinstance(item, str):
            self.status = item
            self._log(item)
            return
        event: "ProgressEvent" = item
        self.event = event
        if event.kind == "start":
            if self.ended:  # the next candidate's training: its steps follow the last one's on the chart
                self.offset += self._last_steps
            self.ended = False
            self._log(f"Training started: {event.max_steps} steps.")
        elif event.kind == "log" and event.loss is not None:
            self.losses.append({"step": self.offset + event.step, "loss": event.loss, "series": "training"})
            self._log(f"step {event.step}/{event.max_steps} · epoch {event.epoch:.2f} · loss {event.loss:.4f}")
        elif event.kind == "evaluate":
            metrics = event.metrics
            if "loss" in metrics:
                self.losses.append({"step": self.offset + event.step, "loss": metrics["loss"],
                                    "series": "evaluation"})
            self.evaluations[round(event.epoch, 2)] = {
                "epoch": round(event.epoch, 2), **{k: round(metrics[k], 4) for k in self.columns[1:] if k in metrics}}
            self._log(f"evaluation at epoch {event.epoch:.2f}: "
                      + ", ".join(f"{k} {metrics[k]:.4f}" for k in self.columns[1:] if k in metrics))
        elif event.kind == "end":
            self.ended, self._last_steps = True, max(event.step, event.max_steps)

    def outputs(self, job: Job, position: int) -> Tuple[Any, ...]:
        running = not job.finished
        run_id = job.record.id if not running and job.status == "completed" and job.record else gr.skip()
        epochs = (pd.DataFrame(list(self.evaluations.values())).rename(columns=metric_name) if self.evaluations
                  else self.empty_epochs(self.task))
        log = "\n".join(reversed(self.lines[-_LOG_LINES:]))
        return (self._html(job, position, running), loss_chart(self.losses), epochs, log,
                gr.Button(interactive=not running), gr.Button(interactive=running), run_id)

    def _epochs(self, job: Job) -> Optional[float]:
        """The epochs the chosen method trains (None before "auto" has chosen, and for the embedding head, which
        has none)."""
        method = job.method_choice.method if job.method_choice else self.config.method
        return self.config.replace(method=method).epochs if trains_in_epochs(method) else None

    def _html(self, job: Job, position: int, running: bool) -> str:
        event, status = self.event, job.status
        if running and status != "queued":  # a final status is shown once the runner has let the job go, together
            status = "running"               # with the buttons, never before them
        choice = job.method_choice
        method = method_line(choice.method, choice.reason) if choice else ""
        if status == "queued":
            return _bar(0.0, f"Busy — another training is running. Yours is queued (position {max(position, 1)}) "
                             "and starts automatically; press Stop to cancel it.", "queued")
        if status == "running":
            if event is None:
                return _bar(0.0, self.status, "running", method)
            eta = f" · about {_clock(event.eta_seconds)} left" if event.eta_seconds is not None else ""
            epochs = self._epochs(job)
            of = f" of {epochs:g}" if epochs else ""
            return _bar(event.fraction, f"Step {event.step}/{event.max_steps} · epoch {event.epoch:.2f}{of} · "
                                        f"{_clock(event.elapsed_seconds)} elapsed{eta}", "running", method)
        seconds = _clock(time.monotonic() - self.started)
        if status == "completed":
            metrics = job.record.metrics if job.record else {}
            scores = ", ".join(f"{name} {metrics[key]:.3f}" for key, name in _FINAL_SCORES[self.task]
                               if key in metrics)
            run_id = job.record.id if job.record else ""
            return _bar(1.0, f"Completed in {seconds}{' — ' + scores if scores else ''}. Run {run_id} is now the "
                             "active model: see Evaluate and Predict.", "completed", method)
        if status == "stopped":
            where = f" at step {event.step} of {event.max_steps}" if event else ""
            return _bar(event.fraction if event else 0.0, f"Stopped{where}. No model was kept from this run; "
                                                         "the previous model stays active.", "stopped", method)
        return _bar(event.fraction if event else 0.0, f"Failed: {job.error}", "failed")

    def _log(self, line: str) -> None:
        self.lines.append(f"[{_clock(time.monotonic() - self.started)}] {line}")


def idle_bar(text: str) -> str:
    """The progress area before any training (or with ``text`` as its message)."""
    return _bar(0.0, text, "idle")


def failed_bar(message: str) -> str:
    """The progress area of a training that could not start."""
    return _bar(0.0, f"Failed: {message}", "failed")


def _bar(fraction: float, text: str, state: str, method: str = "") -> str:
    """A progress bar with a line of text under it, then the method line when there is one (``data-state`` lets
    tests read the state)."""
    percent = round(100 * max(0.0, min(1.0, fraction)), 1)
    method_html = (f'<div id="progress-method" style="margin-top:4px;color:#4b5563">{html.escape(method)}</div>'
                   if method else "")
    return (f'<div id="progress-box" data-state="{state}" style="padding:6px 2px">'
            f'<div style="background:#e5e7eb;border-radius:6px;height:14px;overflow:hidden">'
            f'<div style="width:{percent}%;height:100%;background:{_COLORS[state]};transition:width .3s"></div></div>'
            f'<div id="progress-text" style="margin-top:6px">{html.escape(text)}</div>{method_html}</div>')


def _clock(seconds: Optional[float]) -> str:
    seconds = int(round(seconds or 0))
    return f"{seconds // 60}:{seconds % 60:02d}"


_SERIES = {"training": "#4f46e5", "evaluation": "#dc2626"}


def loss_chart(points: List[Dict[str, Any]], width: int = 560, height: int = 260, *,
               series: Optional[Dict[str, str]] = None, marked: Tuple[str, ...] = ("evaluation",),
               chart_id: str = "loss-chart", empty: str = "The loss appears here while training runs.",
               title: str = "Loss", x_label: str = "step", y_top: Optional[float] = None) -> str:
    """The loss curves as inline SVG, steps on an integer x axis. ``points`` have a step, a loss and the name of
    their series; ``series`` names the series drawn, in order, with their colours (default: training loss, and
    evaluation loss); each series is a line, with a marker on each point for the ``marked`` series and for a
    series of one point (so that a single evaluation shows). Several runs' losses overlaid: one series per run.
    Other curves on whole numbers (the Label tab's accuracy per number of labels) give their ``title``, ``x_label``
    and, for a fixed scale, ``y_top`` (default: 10% above the highest point)."""
    series = _SERIES if series is None else series
    pad_left, pad_right, pad_top, pad_bottom = 52, 16, 34, 36
    frame = (f'<svg id="{html.escape(chart_id)}" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
             f'role="img" aria-label="{html.escape(title)} per {html.escape(x_label)}" '
             'style="display:block;max-width:100%;height:auto;font:11px sans-serif">')
    heading = f'<text x="{pad_left}" y="16" font-weight="bold" font-size="13">{html.escape(title)}</text>'
    legend = _legend(series, width - pad_right)
    if not points:
        return (frame + heading + legend + f'<text x="{width / 2}" y="{height / 2}" text-anchor="middle" '
                f'fill="#6b7280">{html.escape(empty)}</text></svg>')
    steps = [p["step"] for p in points]
    losses = [p["loss"] for p in points]
    x_max = max(max(steps), 1)
    y_max = y_top or max(losses) * 1.1 or 1.0
    plot_w, plot_h = width - pad_left - pad_right, height - pad_top - pad_bottom

    def x(step: float) -> float:
        return pad_left + plot_w * step / x_max

    def y(loss: float) -> float:
        return pad_top + plot_h * (1 - loss / y_max)

    axes = [f'<line x1="{pad_left}" y1="{pad_top + plot_h}" x2="{pad_left + plot_w}" y2="{pad_top + plot_h}" '
            'stroke="#9ca3af"/>',
            f'<line x1="{pad_left}" y1="{pad_top}" x2="{pad_left}" y2="{pad_top + plot_h}" stroke="#9ca3af"/>']
    for tick in _integer_ticks(x_max):
        axes.append(f'<text x="{x(tick):.1f}" y="{pad_top + plot_h + 14}" text-anchor="middle">{tick}</text>')
    for i in range(5):
        value = y_max * i / 4
        axes.append(f'<text x="{pad_left - 6}" y="{y(value) + 4:.1f}" text-anchor="end">{value:.2f}</text>'
                    f'<line x1="{pad_left}" y1="{y(value):.1f}" x2="{pad_left + plot_w}" y2="{y(value):.1f}" '
                    'stroke="#e5e7eb"/>')
    axes.append(f'<text x="{pad_left + plot_w / 2}" y="{height - 4}" text-anchor="middle">'
                f'{html.escape(x_label)}</text>')
    lines = []
    for name, color in series.items():
        chosen = sorted((p["step"], p["loss"]) for p in points if p["series"] == name)
        if not chosen:
            continue
        path = " ".join(f"{x(s):.1f},{y(v):.1f}" for s, v in chosen)
        label = html.escape(name)
        lines.append(f'<polyline data-series="{label}" points="{path}" fill="none" stroke="{color}" '
                     'stroke-width="2"/>')
        if name in marked or len(chosen) == 1:
            lines += [f'<circle data-series="{label}" cx="{x(s):.1f}" cy="{y(v):.1f}" r="4" fill="{color}">'
                      f'<title>{label} {html.escape(title.lower())} {v:.4f} at {html.escape(x_label)} {s}</title>'
                      '</circle>' for s, v in chosen]
    return frame + heading + legend + "".join(axes) + "".join(lines) + "</svg>"


def _legend(series: Dict[str, str], right: float) -> str:
    """The series' names with their colours, in one line ending at ``right``."""
    widths = [22 + 6.5 * len(name) for name in series]
    x = right - sum(widths) + 12
    items = []
    for (name, color), item_width in zip(series.items(), widths):
        items.append(f'<circle cx="{x - 8:.1f}" cy="12" r="4" fill="{color}"/>'
                     f'<text x="{x:.1f}" y="16">{html.escape(name)}</text>')
        x += item_width
    return "".join(items)


def _integer_ticks(top: int, most: int = 8) -> List[int]:
    """Whole-number ticks from 0 to ``top`` (steps are integers), at most about ``most`` of them."""
    step = max(1, math.ceil(top / most))
    return list(range(0, int(top) + 1, step))
