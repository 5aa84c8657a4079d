"""Training in a background thread, one run at a time per process, with events to follow and a stop flag.

``Runner.submit`` queues a :class:`TrainSpec` and returns a :class:`Job` at once. A single worker
thread trains the jobs in order; while one trains, the others wait with status ``queued``. The job's
``events`` queue receives :class:`~finetuner.training.progress.ProgressEvent` objects and plain
status lines (str); ``Job.stop`` ends training at the next step (or cancels a queued job).
"""

from __future__ import annotations

import logging
import queue
import threading
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Deque, List, Optional, Union

from .config import TrainConfig
from .prepare import PreparedData
from .runs import RunRecord, RunStore
from .runs.pipeline import Notice, RunSpec, train_run

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
        spec = job.spec
        run = RunSpec(spec.model_name, spec.config, spec.data, preset=spec.preset, owner=spec.run_owner,
                      origin="app", baselines=True)

        def listen(item: Any) -> None:
            if isinstance(item, Notice) and item.kind == "method":
                from .method_choice import MethodChoice

                job.method_choice = MethodChoice.from_dict(item.values)
            job.events.put(str(item) if isinstance(item, Notice) else item)

        def started(record: RunRecord) -> None:
            job.record = record

        try:
            record = train_run(run, self.store, listener=listen, stop_event=job.stop_event, on_record=started)
        except Exception as exc:  # recorded as failed by the pipeline; the worker stays up
            job.status = "failed"
            job.error = job.record.error if job.record is not None and job.record.error else str(exc)
            return
        job.status = record.status
