"""Train tab: pick a model and settings, start and stop training, follow progress, loss and metrics live."""

from __future__ import annotations

import html
import queue
import time
from typing import TYPE_CHECKING, Any, Dict, Iterator, List, Optional, Tuple

import gradio as gr
import pandas as pd

from ..config import PRESETS, TrainConfig
from ..errors import ConfigError
from ..models import DEFAULT_MODEL, KNOWN_HUB_MODELS, resolve_model
from ..prepare import prepare
from ..runner import Job, TrainSpec
from .common import AppContext, TableData, check_model_name, local_models_allowed, user_errors
from .data_tab import DataTab

if TYPE_CHECKING:  # importing it would load the transformers Trainer before the first page is served
    from ..training.progress import ProgressEvent

UPDATE_INTERVAL_S = 0.3  # at most about three UI updates a second
_LOG_LINES = 200
_COLORS = {"queued": "#9ca3af", "running": "#4f46e5", "completed": "#16a34a", "stopped": "#d97706",
           "failed": "#dc2626", "idle": "#9ca3af"}
_EPOCH_COLUMNS = ("epoch", "loss", "accuracy", "f1_macro")


def build(ctx: AppContext, data: DataTab) -> None:
    choices = _model_choices(ctx.default_model)
    with gr.Row():
        model = gr.Dropdown(choices, value=ctx.default_model, allow_custom_value=True,
                            label="Model", scale=3, elem_id="train-model",
                            info="The bundled model works offline. Hub models need a network connection. "
                                 + ("Or type any Hub id or a local model folder." if local_models_allowed()
                                    else "Or type any Hub id."))
        preset = gr.Radio(list(PRESETS), value="fast", label="Preset", scale=2, elem_id="train-preset",
                          info="fast: 1 epoch, about a minute on CPU · balanced: 3 epochs · best: up to 6 epochs "
                               "with early stopping")
    fast = TrainConfig.from_preset("fast")
    # No minimum/maximum on these fields: TrainConfig's checks give messages that name the setting.
    with gr.Accordion("Hyperparameters", open=False):
        with gr.Row():
            epochs = gr.Number(fast.epochs, label="Epochs", elem_id="hp-epochs")
            learning_rate = gr.Number(fast.learning_rate or 0, label="Learning rate (0 = from the model size)")
            batch_size = gr.Number(fast.batch_size, label="Batch size", precision=0, elem_id="hp-batch")
            max_length = gr.Number(0, label="Max tokens per text (0 = from the data)", precision=0)
        with gr.Row():
            warmup_ratio = gr.Number(fast.warmup_ratio, label="Warm-up ratio")
            weight_decay = gr.Number(fast.weight_decay, label="Weight decay")
            seed = gr.Number(fast.seed, label="Seed", precision=0)
            patience = gr.Number(0, label="Early-stopping patience (0 = off)", precision=0)
    hyper = [epochs, learning_rate, batch_size, max_length, warmup_ratio, weight_decay, seed, patience]
    with gr.Row():
        start = gr.Button("Start training", variant="primary", elem_id="train-start")
        stop = gr.Button("Stop", variant="stop", interactive=False, elem_id="train-stop")
    gr.Markdown("One training runs at a time on this server; others wait in line. Closing or reloading this page "
                "stops your training. Completed runs stay listed on the Export tab.")
    progress = gr.HTML(_bar(0.0, "Ready. Press Start training to fine-tune on the table from the Data tab.", "idle"),
                       elem_id="train-progress")
    with gr.Row():
        # Starts as None: a LinePlot created with an empty table draws no lines later (Gradio 6.31).
        loss_plot = gr.LinePlot(None, x="step", y="loss", color="series", title="Loss", height=280, scale=3)
        epoch_table = gr.Dataframe(_Progress.empty_epochs(), label="Evaluation after each epoch", interactive=False,
                                   scale=2, elem_id="train-epochs")
    log = gr.Textbox(label="Log (newest first)", lines=6, max_lines=6, interactive=False, elem_id="train-log")

    def apply_preset(name: str) -> List[Any]:
        config = TrainConfig.from_preset(name)
        return [config.epochs, config.learning_rate or 0, config.batch_size, config.max_length or 0,
                config.warmup_ratio, config.weight_decay, config.seed, config.early_stopping_patience or 0]

    @user_errors
    def train(table: TableData, eval_table: Optional[TableData], text_column: str, label_column: str,
              eval_fraction: float, model_name: str, preset_name: str, epochs: float, learning_rate: float,
              batch_size: int, max_length: int, warmup_ratio: float, weight_decay: float, seed: int,
              early_stopping_patience: int, request: gr.Request) -> Iterator[Tuple[Any, ...]]:
        """Train on the Data tab's table; streams progress, the loss curve, per-epoch metrics and a log."""
        config = _config(dict(epochs=epochs, learning_rate=learning_rate, batch_size=batch_size,
                              max_length=max_length, warmup_ratio=warmup_ratio, weight_decay=weight_decay, seed=seed,
                              early_stopping_patience=early_stopping_patience), eval_fraction)
        model_name = (model_name or "").strip() or ctx.default_model
        check_model_name(model_name, [value for _, value in choices])  # FINETUNER_ALLOW_LOCAL_MODELS=0: no paths
        resolve_model(model_name)  # an unknown or unreachable model fails now, not after waiting in the queue
        checked = prepare(table.frame, text_column, label_column, eval_frame=eval_table.frame if eval_table else None,
                          eval_fraction=eval_fraction, seed=config.seed, source=table.name)
        as_preset = preset_name in PRESETS and config == TrainConfig.from_preset(preset_name,
                                                                                  eval_fraction=eval_fraction)
        job = ctx.runner.submit(TrainSpec(model_name, config, checked, preset_name if as_preset else "custom",
                                          run_owner=ctx.owner(request)),
                                owner=getattr(request, "session_hash", None) or "")  # who may stop it: this page
        view = _Progress(config)
        try:
            yield view.outputs(job, ctx.runner.position(job))
            last = time.monotonic()
            while True:
                finished = job.finished
                view.drain(job.events)
                if finished:
                    break
                if time.monotonic() - last >= UPDATE_INTERVAL_S:
                    last = time.monotonic()
                    yield view.outputs(job, ctx.runner.position(job))
            yield view.outputs(job, 0)
        finally:
            if not job.finished:  # the page went away or the event was cancelled: free the trainer for others
                job.stop()
        if job.status == "failed":
            raise gr.Error(html.escape(job.error or "Training failed."), print_exception=False)

    def stop_training(request: gr.Request) -> None:
        """Stop this session's training at its next step (or cancel it while it is queued)."""
        if ctx.runner.stop(getattr(request, "session_hash", None) or ""):
            gr.Info("Stopping at the next training step…")
        else:
            gr.Info("No training of yours is running.")

    preset.input(apply_preset, preset, hyper, api_visibility="private")
    start.click(train, [data.table, data.eval_table, data.text_column, data.label_column, data.eval_fraction,
                        model, preset, *hyper],
                [progress, loss_plot, epoch_table, log, start, stop, ctx.active_run], api_name="train",
                show_progress="hidden", concurrency_limit=16)
    stop.click(stop_training, None, None, api_name="stop", concurrency_limit=None)


def _model_choices(default: str) -> List[Tuple[str, str]]:
    choices = [(f"{DEFAULT_MODEL} · bundled, works offline", DEFAULT_MODEL)]
    if default != DEFAULT_MODEL:
        choices.insert(0, (f"{default} · this app's default", default))
    return choices + [(f"{name} · {about} · needs the Hub", name) for name, about in KNOWN_HUB_MODELS.items()]


def _config(named: Dict[str, Any], eval_fraction: float) -> TrainConfig:
    """A TrainConfig from the hyperparameter fields (0 means "automatic" or "off" where the labels say so)."""
    empty = [name for name, value in named.items() if value is None or value == ""]
    if empty:
        raise ConfigError(f"Fill in the hyperparameter(s): {', '.join(empty)}.")
    return TrainConfig(
        epochs=float(named["epochs"]), learning_rate=float(named["learning_rate"]) or None,
        batch_size=int(named["batch_size"]), max_length=int(named["max_length"]) or None,
        warmup_ratio=float(named["warmup_ratio"]), weight_decay=float(named["weight_decay"]),
        seed=int(named["seed"]), early_stopping_patience=int(named["early_stopping_patience"]) or None,
        eval_fraction=float(eval_fraction))


class _Progress:
    """Accumulates a job's events into what the tab shows."""

    def __init__(self, config: TrainConfig):
        self.epochs = config.epochs
        self.event: Optional["ProgressEvent"] = None
        self.status = "Preparing…"
        self.losses: List[Dict[str, Any]] = []
        self.evaluations: Dict[float, Dict[str, Any]] = {}
        self.lines: List[str] = []
        self.ended = False
        self.started = time.monotonic()

    @staticmethod
    def empty_epochs() -> pd.DataFrame:
        return pd.DataFrame(columns=list(_EPOCH_COLUMNS))

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
        if event.kind == "evaluate" and self.ended:
            return  # the final evaluation of the saved model, reported with the result
        self.event = event
        if event.kind == "start":
            self._log(f"Training started: {event.max_steps} steps.")
        elif event.kind == "log" and event.loss is not None:
            self.losses.append({"step": event.step, "loss": event.loss, "series": "training"})
            self._log(f"step {event.step}/{event.max_steps} · epoch {event.epoch:.2f} · loss {event.loss:.4f}")
        elif event.kind == "evaluate":
            metrics = event.metrics
            if "loss" in metrics:
                self.losses.append({"step": event.step, "loss": metrics["loss"], "series": "evaluation"})
            self.evaluations[round(event.epoch, 2)] = {
                "epoch": round(event.epoch, 2), **{k: round(metrics[k], 4) for k in _EPOCH_COLUMNS[1:] if k in metrics}}
            self._log(f"evaluation at epoch {event.epoch:.2f}: "
                      + ", ".join(f"{k} {metrics[k]:.4f}" for k in _EPOCH_COLUMNS[1:] if k in metrics))
        elif event.kind == "end":
            self.ended = True

    def outputs(self, job: Job, position: int) -> Tuple[Any, ...]:
        running = not job.finished
        run_id = job.record.id if job.status == "completed" and job.record else gr.skip()
        losses = pd.DataFrame(self.losses) if self.losses else None
        epochs = pd.DataFrame(list(self.evaluations.values())) if self.evaluations else self.empty_epochs()
        return (self._html(job, position), losses, epochs, "\n".join(reversed(self.lines[-_LOG_LINES:])),
                gr.Button(interactive=not running), gr.Button(interactive=running), run_id)

    def _html(self, job: Job, position: int) -> str:
        event, status = self.event, job.status
        if status == "queued":
            return _bar(0.0, f"Busy — another training is running. Yours is queued (position {max(position, 1)}) "
                             "and starts automatically; press Stop to cancel it.", "queued")
        if status == "running":
            if event is None:
                return _bar(0.0, self.status, "running")
            eta = f" · about {_clock(event.eta_seconds)} left" if event.eta_seconds is not None else ""
            return _bar(event.fraction, f"Step {event.step}/{event.max_steps} · epoch {event.epoch:.2f} of "
                                        f"{self.epochs:g} · {_clock(event.elapsed_seconds)} elapsed{eta}", "running")
        seconds = _clock(time.monotonic() - self.started)
        if status == "completed":
            metrics = job.record.metrics if job.record else {}
            scores = ", ".join(f"{name} {metrics[key]:.3f}" for key, name in
                               (("accuracy", "accuracy"), ("f1_macro", "F1 (macro)")) if key in metrics)
            run_id = job.record.id if job.record else ""
            return _bar(1.0, f"Completed in {seconds}{' — ' + scores if scores else ''}. Run {run_id} is now the "
                             "active model: see Evaluate and Predict.", "completed")
        if status == "stopped":
            where = f" at step {event.step} of {event.max_steps}" if event else ""
            return _bar(event.fraction if event else 0.0, f"Stopped{where}. No model was kept from this run; "
                                                         "the previous model stays active.", "stopped")
        return _bar(event.fraction if event else 0.0, f"Failed: {job.error}", "failed")

    def _log(self, line: str) -> None:
        self.lines.append(f"[{_clock(time.monotonic() - self.started)}] {line}")


def _bar(fraction: float, text: str, state: str) -> str:
    """A progress bar with a line of text under it (``data-state`` lets tests read the state)."""
    percent = round(100 * max(0.0, min(1.0, fraction)), 1)
    return (f'<div id="progress-box" data-state="{state}" style="padding:6px 2px">'
            f'<div style="background:#e5e7eb;border-radius:6px;height:14px;overflow:hidden">'
            f'<div style="width:{percent}%;height:100%;background:{_COLORS[state]};transition:width .3s"></div></div>'
            f'<div id="progress-text" style="margin-top:6px">{html.escape(text)}</div></div>')


def _clock(seconds: Optional[float]) -> str:
    seconds = int(round(seconds or 0))
    return f"{seconds // 60}:{seconds % 60:02d}"
