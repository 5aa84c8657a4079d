"""The one training pipeline: record → quick baselines → load the model → choose the method → train → evaluate →
save (and load back) → record. The app's runner, the command line's ``train`` and Python callers all run a
training through :func:`train_run`, so every run folder and ``run.json`` is the same whoever made it.

The pipeline reports to a ``listener``: :class:`~finetuner.training.progress.ProgressEvent` objects while the model
trains, and :class:`Notice` objects for the stages around training (``str(notice)`` is a status line).
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

from ..config import TrainConfig
from ..data import Split
from ..errors import FinetunerError, described
from ..files import write_json_atomic
from .record import METRICS_FILE, MODEL_DIR, RECORD_FILE, RunRecord
from ..methods import METHOD_NAMES
from ..methods.registry import AUTO
from .store import RunError, RunStore
from .tracking import check_available, open_tracker

logger = logging.getLogger(__name__)

Listener = Callable[[Any], None]


@dataclass
class RunSpec:
    """What one training run needs: the base model, the settings, the rows, and who it is for."""

    model_name: str
    config: TrainConfig
    data: Split
    preset: str = "custom"
    owner: str = ""  # the app's browser owner id; "" for runs made outside the app
    origin: str = "python"  # what asks: "app", "cli" or "python" (see RunRecord.shared)
    baselines: bool = False  # score the quick baselines on the split before training (the app does)
    command: Optional[str] = None  # the command line that asked for it


@dataclass
class Notice:
    """A stage of the pipeline: ``kind`` is one of baselines, loading, method, long_texts, candidate, training,
    evaluating, saving, completed, stopped, failed; ``values`` hold its facts (e.g. method and reason; a
    candidate's score)."""

    kind: str
    text: str
    values: Dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        return self.text


def method_line(method: str, reason: str) -> str:
    """The status line that says which method trains and why ("Method: embedding head — …")."""
    return f"Method: {METHOD_NAMES.get(method, method)} — {reason}"


def train_run(spec: RunSpec, store: RunStore, *, run_id: Optional[str] = None, resume: bool = False,
              listener: Optional[Listener] = None, stop_event: Optional[threading.Event] = None,
              checkpoint_dir: Optional[Path] = None, is_main: bool = True,
              on_record: Optional[Callable[[RunRecord], None]] = None) -> RunRecord:
    """Train, evaluate, save and record one run in ``store``; returns its finished record.

    ``run_id`` names the run's folder (default: a fresh id); ``resume=True`` continues the interrupted run there
    from its last checkpoint in ``checkpoint_dir``. ``stop_event`` stops training at the next step (the run ends
    ``stopped``, without a model). ``on_record`` receives the record as soon as it exists. In a distributed run
    every process calls this; only the main one (``is_main``) writes. A failure is recorded (``failed``, or
    ``interrupted`` for Ctrl-C) and raised again."""
    say: Listener = listener or (lambda item: None)
    stop_event = stop_event or threading.Event()
    check_available(spec.config.report_to)  # a missing tracker package fails before anything is written
    record = _start(spec, store, run_id, resume) if is_main else RunRecord(run_id or "", "running", spec.model_name, "")
    if resume and checkpoint_dir is not None:
        from ..training.checkpoints import last_complete_step

        record.training["resumed_from_step"] = last_complete_step(checkpoint_dir)
    if on_record is not None:
        on_record(record)
    writer = _Writer(store, record, is_main)
    started = time.monotonic()
    tracker = None
    try:
        if is_main:
            tracker = open_tracker(spec.config.report_to, store.path(record.id), record.id, spec.config.to_dict())
        if tracker is not None:
            say = _also(say, tracker)
        return _train(spec, writer, say, stop_event, checkpoint_dir, resume, started)
    except KeyboardInterrupt:
        from ..training.checkpoints import last_complete_step

        step = last_complete_step(checkpoint_dir) if checkpoint_dir is not None else None
        writer.finish("interrupted", training={**record.training, "last_checkpoint_step": step},
                      error="Interrupted (Ctrl-C).")
        raise
    except FinetunerError as exc:
        _failed(writer, say, str(exc))
        raise
    except Exception as exc:  # a bug or an environment problem: recorded, logged, raised for the caller to report
        logger.exception("training run %s failed", record.id)
        _failed(writer, say, f"Unexpected error ({described(exc, 500)})")
        raise
    finally:
        if tracker is not None:
            tracker.close()


def _also(listener: Listener, tracker: Listener) -> Listener:
    """``listener``, with the training's progress events also sent to ``tracker``."""
    def both(item: Any) -> None:
        if not isinstance(item, Notice):
            tracker(item)
        listener(item)
    return both


def _start(spec: RunSpec, store: RunStore, run_id: Optional[str], resume: bool) -> RunRecord:
    """A new record, or the interrupted run's own when resuming (a run with checkpoints but no record gets one)."""
    if not (resume and run_id and (store.path(run_id) / RECORD_FILE).is_file()):
        return store.create(spec.model_name, preset=spec.preset, config=spec.config.to_dict(),
                            requested=spec.config.to_dict(), data=spec.data.summary(), owner=spec.owner,
                            run_id=run_id, command=spec.command, origin=spec.origin)
    record = store.get(run_id)
    if record.status == "running":  # its process is still alive (a dead one's run reads as failed)
        raise RunError(f"Run {run_id} is still training in another process; wait for it or stop it before resuming.")
    record.status, record.error, record.finished_at = "running", None, None
    record.resumes.append({"at": _now(), "command": spec.command})
    store.save(record)
    return record


def _train(spec: RunSpec, writer: "_Writer", say: Listener, stop_event: threading.Event,
           checkpoint_dir: Optional[Path], resume: bool, started: float) -> RunRecord:
    from ..finetuner import LLMFinetuner

    record, data = writer.record, spec.data
    lap = _Stages(record)
    baseline_rows: Dict[str, List[str]] = {}  # each baseline's predicted class per evaluation row
    if spec.baselines and data.eval_texts and not stop_event.is_set() and writer.is_main:
        baseline_rows = _score_baselines(spec, writer, say)
        lap("baselines")
    say(Notice("loading", f"Run {record.id}: loading {spec.model_name}…"))
    finetuner = LLMFinetuner(spec.model_name, config=spec.config)
    lap("load")
    if not stop_event.is_set():
        _announce(spec, finetuner, writer, say)
        say(Notice("training", f"Training on {len(data.train_texts)} rows, evaluating on {len(data.eval_texts)}…",
                   {"train_rows": len(data.train_texts), "eval_rows": len(data.eval_texts)}))
        training_started = time.monotonic()
        deadline = started + spec.config.time_budget if spec.config.time_budget else None
        finetuner.fine_tune(data.train_texts, data.train_labels, data.eval_texts, data.eval_labels,
                            config=spec.config, listener=_candidates_as_notices(say), stop_event=stop_event,
                            checkpoint_dir=checkpoint_dir, resume=resume, deadline=deadline)
        record.training = _training_facts(finetuner, time.monotonic() - training_started, record.training)
        lap("train")
        if finetuner.method_choice is not None and spec.config.method == AUTO and not finetuner.stopped:
            choice = finetuner.method_choice
            record.method_choice = choice.as_dict()
            say(Notice("method", method_line(choice.method, choice.reason), choice.as_dict()))
    if stop_event.is_set() and (finetuner.stopped or not finetuner.trained):
        writer.finish("stopped", history=finetuner.history)
        say(Notice("stopped", f"Stopped at your request; run {record.id} kept no model."))
        return record
    say(Notice("evaluating", "Evaluating…"))
    result = finetuner.evaluation(data.eval_texts, data.eval_labels) if data.eval_texts else None
    lap("evaluate")
    if result is not None and baseline_rows:
        _compare_with_baselines(writer.record, result.rows, baseline_rows)
    say(Notice("saving", "Saving the model…"))
    folder = writer.store.path(record.id)
    finetuner.save(folder / MODEL_DIR)
    if writer.is_main:
        writer.store.cache_model(record.id, folder / MODEL_DIR)  # proves that the saved model loads
        if result is not None:
            writer.store.save_evaluation(record.id, result.rows)
            write_json_atomic(folder / METRICS_FILE, result.metrics)
    lap("save")
    if result is not None:
        record.training["eval_examples_scored"] = len(result.rows)
    record.training["wall_seconds"] = round(time.monotonic() - started, 2)
    writer.finish("completed", config=used_settings(finetuner, spec.config),
                  metrics=result.metrics if result else {}, report=result.report if result else None,
                  history=finetuner.history, labels=finetuner.labels)
    say(Notice("completed", f"Completed run {record.id}.", {"metrics": record.metrics}))
    return record


def _announce(spec: RunSpec, finetuner: Any, writer: "_Writer", say: Listener) -> None:
    """Record and say which method trains and why (for ``auto``: the candidates it is about to try)."""
    from ..selection import plan_line

    labels = spec.data.train_labels
    if spec.config.method == AUTO and finetuner.task_of(labels, spec.config).task == "single_label":
        model_type = getattr(finetuner.model.config, "model_type", "")
        values = {"method": AUTO, "reason": plan_line(labels, model_type, spec.config.time_budget,
                                                      spec.config.seed, spec.config.class_weights),
                  "imbalance": finetuner.imbalance_handling(labels, spec.config).as_dict()}
    else:
        values = finetuner.choose_method(labels, spec.config).as_dict()
    writer.record.method_choice = values
    writer.save()
    say(Notice("method", method_line(values["method"], values["reason"]), values))


def _candidates_as_notices(say: Listener) -> Listener:
    """``say``, with auto's candidate results turned into ``candidate`` notices (a leaderboard line each) and the
    count of texts longer than the model reads at once into a ``long_texts`` notice."""
    from ..selection import CandidateResult
    from ..training.windows import LongTexts

    def listen(item: Any) -> None:
        if isinstance(item, CandidateResult):
            say(Notice("candidate", f"Candidate {item.line()}", item.as_dict()))
        elif isinstance(item, LongTexts):
            say(Notice("long_texts", str(item), dataclasses.asdict(item)))
        else:
            say(item)
    return listen


def _score_baselines(spec: RunSpec, writer: "_Writer", say: Listener) -> Dict[str, List[str]]:
    """Score the instant baselines on the run's split into its record; a failure is logged, never fatal. Returns
    each single-label baseline's predicted class per evaluation row ({} when none)."""
    from ..baselines import format_baselines, score_baselines

    data = spec.data
    say(Notice("baselines", f"Scoring quick baselines on {len(data.train_texts)} training rows…"))
    predictions: Dict[str, List[str]] = {}
    try:
        writer.record.baselines = score_baselines(data.train_texts, data.train_labels, data.eval_texts,
                                                  data.eval_labels, seed=spec.config.seed, task=spec.config.task,
                                                  predictions=predictions)
        writer.save()  # shown while the model trains
    except Exception as exc:  # a baseline is a reference point: training goes on without it
        logger.warning("baselines of run %s failed", writer.record.id, exc_info=True)
        say(Notice("baselines", f"Baselines skipped ({described(exc)})."))
        return {}
    say(Notice("baselines", f"Baselines: {format_baselines(writer.record.baselines)}."))
    return predictions


def _compare_with_baselines(record: RunRecord, rows: Any, baseline_rows: Dict[str, List[str]]) -> None:
    """Add to each baseline's scores the paired comparison with the model on the same evaluation rows
    (:func:`finetuner.baselines.paired_counts`), which says whether the gap between them is beyond noise."""
    from ..baselines import paired_counts

    if "predicted_label" not in rows.columns:
        return
    try:
        for name, predicted in baseline_rows.items():
            if name in record.baselines and len(predicted) == len(rows):
                record.baselines[name].update(paired_counts(rows["label"], rows["predicted_label"], predicted))
    except Exception:  # a reference point, never a reason to lose the trained model
        logger.warning("comparing run %s with its baselines failed", record.id, exc_info=True)


def _failed(writer: "_Writer", say: Listener, message: str) -> None:
    if writer.is_main:  # e.g. saved, but would not load; the other processes of a distributed run never write
        shutil.rmtree(writer.store.path(writer.record.id) / MODEL_DIR, ignore_errors=True)
    writer.finish("failed", error=message)
    say(Notice("failed", f"Failed: {message}", {"error": message}))


def _training_facts(finetuner: Any, seconds: float, earlier: Dict[str, Any]) -> Dict[str, Any]:
    """Steps, epochs, processes and time of a training (the Trainer's state; the tuning steps for the embedding
    methods)."""
    trainer = finetuner.trainer
    facts = {**earlier, "train_seconds": round(seconds, 2)}
    if trainer is not None:
        steps, max_steps = int(trainer.state.global_step), int(trainer.state.max_steps)
        facts.update(steps=steps, max_steps=max_steps, epochs=float(trainer.state.epoch or 0.0),
                     early_stopped=steps < max_steps, world_size=int(trainer.args.world_size),
                     distributed_type=str(trainer.accelerator.distributed_type).split(".")[-1])
    return facts


def used_settings(finetuner: Any, asked: TrainConfig) -> Dict[str, Any]:
    """The settings a training actually used, for its record and model card: the method ``auto`` chose, and the
    learning rate and maximum text length chosen automatically (None in ``asked``), from the trained model."""
    config = getattr(finetuner, "config", None)
    settings = (config if isinstance(config, TrainConfig) else asked).to_dict()
    if getattr(finetuner, "max_length", None):
        settings["max_length"] = finetuner.max_length
    return settings


class _Stages:
    """Seconds per stage of a run (baselines, load, train, evaluate, save) into its record's
    ``training["stage_seconds"]``: each call ends the stage it names, which began where the previous one ended."""

    def __init__(self, record: RunRecord):
        self.record, self.last = record, time.monotonic()

    def __call__(self, stage: str) -> None:
        now = time.monotonic()
        stages = self.record.training.setdefault("stage_seconds", {})
        stages[stage] = round(stages.get(stage, 0.0) + now - self.last, 2)
        self.last = now


class _Writer:
    """Writes the record of a run, from the main process only."""

    def __init__(self, store: RunStore, record: RunRecord, is_main: bool):
        self.store, self.record, self.is_main = store, record, is_main

    def save(self) -> None:
        if self.is_main:
            self.store.save(self.record)

    def finish(self, status: str, **values: Any) -> None:
        if self.is_main:
            self.store.finish(self.record, status, **values)
        else:
            self.record.status = status


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
