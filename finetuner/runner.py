"""Training in a background thread, one run at a time per process, with events to follow and a stop flag.

``Runner.submit`` queues a :class:`TrainSpec` and returns a :class:`Job` at once. A single worker
thread trains the jobs in order; while one trains, the others wait with status ``queued``. The job's
``events`` queue receives :class:`~finetuner.training.progress.ProgressEvent` objects and plain
status lines (str); ``Job.stop`` ends training at the next step (or cancels a queued job).
"""

from __future__ import annotations

import logging
import queue
import shutil
import threading
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Deque, Dict, List, Optional, Union

from .config import TrainConfig
from .errors import FinetunerError
from .evaluation import evaluate
from .prepare import PreparedData
from .runs import METHOD_NAMES, MODEL_DIR, RunRecord, RunStore

if TYPE_CHECKING:  # it imports transformers
    from .method_choice import MethodChoice

logger = logging.getLogger(__name__)

# Held while a job trains: one training at a time in this process, however many runners (apps) it has.
_TRAINING = threading.Lock()


@dataclass
class TrainSpec:
    """Everything one training run needs: the model, the settings and the checked data."""

    model_name: str
    config: TrainConfig
    data: PreparedData
    preset: str = "custom"
    run_owner: str = ""  # recorded in the run: in the app, the owner id of the browser that trains it


@dataclass
class Job:
    """One submitted training; ``status`` moves from queued to running to completed/stopped/failed.

    ``owner`` says who may stop it (in the app: the page's session); the run's owner is ``spec.run_owner``."""

    spec: TrainSpec
    owner: str = ""
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    status: str = "queued"
    record: Optional[RunRecord] = None
    error: Optional[str] = None
    method_choice: Optional["MethodChoice"] = None  # the method that trains and why, once the model has loaded
    events: "queue.Queue[Union[Any, str]]" = field(default_factory=queue.Queue, repr=False)
    stop_event: threading.Event = field(default_factory=threading.Event, repr=False)
    done: threading.Event = field(default_factory=threading.Event, repr=False)

    def stop(self) -> None:
        """Ask the training to end at its next step (a queued job never starts)."""
        self.stop_event.set()

    @property
    def finished(self) -> bool:
        return self.done.is_set()


class Runner:
    """Trains submitted jobs one at a time in a daemon thread, writing each to the run store."""

    def __init__(self, store: RunStore):
        self.store = store
        self._pending: Deque[Job] = deque()
        self._current: Optional[Job] = None
        self._wakeup = threading.Condition()
        self._thread: Optional[threading.Thread] = None

    def submit(self, spec: TrainSpec, owner: str = "") -> Job:
        """Queue a training and return its job immediately."""
        spec.data.raise_for_errors()
        spec.config.validate()
        job = Job(spec, owner)
        with self._wakeup:
            self._pending.append(job)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._work, name="finetuner-runner", daemon=True)
                self._thread.start()
            self._wakeup.notify()
        return job

    def position(self, job: Job) -> int:
        """0 while ``job`` trains (or has finished); n when n-1 jobs are ahead of it in the queue."""
        with self._wakeup:
            return self._pending.index(job) + 1 if job in self._pending else 0

    def stop(self, owner: str) -> List[Job]:
        """Stop the running and queued jobs of ``owner``; returns them."""
        with self._wakeup:
            jobs = [job for job in [self._current, *self._pending] if job is not None and job.owner == owner]
        for job in jobs:
            job.stop()
        return jobs

    @property
    def current(self) -> Optional[Job]:
        return self._current

    def _work(self) -> None:
        while True:
            with self._wakeup:
                while not self._pending:
                    self._wakeup.wait()
                job = self._pending.popleft()
                self._current = job
            try:
                with _TRAINING:
                    self._run(job)
            except Exception as exc:  # the run store could not be written: report it, keep the worker alive
                logger.exception("could not start a training run")
                job.status, job.error = "failed", f"Could not start the run: {exc}"
                job.events.put(f"Failed: {job.error}")
            finally:
                with self._wakeup:
                    self._current = None
                job.done.set()

    def _run(self, job: Job) -> None:
        if job.stop_event.is_set():
            job.status = "stopped"
            job.events.put("Cancelled before it started.")
            return
        job.status = "running"
        spec, store = job.spec, self.store
        record = job.record = store.create(spec.model_name, preset=spec.preset, config=spec.config.to_dict(),
                                           data=spec.data.summary(), owner=spec.run_owner)
        say = job.events.put
        try:
            from .finetuner import LLMFinetuner

            data = spec.data
            if data.eval_texts and not job.stop_event.is_set():
                self._score_baselines(job, record)
            say(f"Run {record.id}: loading {spec.model_name}…")
            finetuner = LLMFinetuner(spec.model_name, config=spec.config)
            if not job.stop_event.is_set():
                choice = job.method_choice = finetuner.choose_method(data.train_labels, spec.config)
                record.method_choice = {"method": choice.method, "reason": choice.reason}
                say(method_line(choice.method, choice.reason))
                say(f"Training on {len(data.train_texts)} rows, evaluating on {len(data.eval_texts)}…")
                finetuner.fine_tune(data.train_texts, data.train_labels, data.eval_texts, data.eval_labels,
                                    config=spec.config, listener=say, stop_event=job.stop_event)
            if job.stop_event.is_set() and (finetuner.stopped or not finetuner.trained):
                job.status = "stopped"
                store.finish(record, "stopped", history=finetuner.history)
                say(f"Stopped at your request; run {record.id} kept no model.")
                return
            say("Evaluating…")
            result = evaluate(finetuner, data.eval_texts, data.eval_labels) if data.eval_texts else None
            say("Saving the model…")
            finetuner.save(store.path(record.id) / MODEL_DIR)
            store.cache_model(record.id, store.path(record.id) / MODEL_DIR)  # proves that the saved model loads
            if result is not None:
                store.save_evaluation(record.id, result.rows)
            store.finish(record, "completed", config=used_settings(finetuner, spec.config),
                         metrics=result.metrics if result else {}, report=result.report if result else None,
                         history=finetuner.history, labels=finetuner.labels)
            job.status = "completed"
            say(f"Completed run {record.id}.")
        except FinetunerError as exc:
            self._fail(job, record, str(exc))
        except Exception as exc:  # a bug or an environment problem: keep the app up, log the traceback
            logger.exception("training run %s failed", record.id)
            self._fail(job, record, f"Unexpected error ({type(exc).__name__}): {exc}")

    def _score_baselines(self, job: Job, record: RunRecord) -> None:
        """Score the instant baselines on the run's split into its record; a failure is logged, never fatal."""
        from .baselines import format_baselines, score_baselines

        data = job.spec.data
        job.events.put(f"Scoring quick baselines on {len(data.train_texts)} training rows…")
        try:
            record.baselines = score_baselines(data.train_texts, data.train_labels, data.eval_texts,
                                               data.eval_labels, seed=job.spec.config.seed)
            self.store.save(record)  # shown while the model trains
        except Exception as exc:  # a baseline is a reference point: training goes on without it
            logger.warning("baselines of run %s failed", record.id, exc_info=True)
            job.events.put(f"Baselines skipped ({type(exc).__name__}: {exc}).")
            return
        job.events.put(f"Baselines: {format_baselines(record.baselines)}.")

    def _fail(self, job: Job, record: RunRecord, message: str) -> None:
        job.status, job.error = "failed", message
        shutil.rmtree(self.store.path(record.id) / MODEL_DIR, ignore_errors=True)  # e.g. saved but would not load
        self.store.finish(record, "failed", error=message)
        job.events.put(f"Failed: {message}")


def method_line(method: str, reason: str) -> str:
    """The status line that says which method trains and why ("Method: embedding head — …")."""
    return f"Method: {METHOD_NAMES.get(method, method)} — {reason}"


def used_settings(finetuner: Any, asked: TrainConfig) -> Dict[str, Any]:
    """The settings a training actually used, for its record and model card: the learning rate and maximum text
    length chosen automatically (None in ``asked``) are filled in from the trained model."""
    config = getattr(finetuner, "config", None)
    settings = (config if isinstance(config, TrainConfig) else asked).to_dict()
    if getattr(finetuner, "max_length", None):
        settings["max_length"] = finetuner.max_length
    return settings
