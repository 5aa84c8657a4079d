"""The run store: one directory per training run under a runs root (``FINETUNER_RUNS_DIR``, default ./runs).

Each run directory holds ``run.json`` (status, config, data summary, metrics, report, history), the
saved model in ``model/`` and the evaluation rows in ``evaluation.jsonl``. A run is marked
``completed`` only after its model was saved and loaded back; ``stopped`` and ``failed`` runs keep no
model. Every write of ``run.json`` is atomic (a temporary file renamed into place).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import threading
import uuid
from collections import OrderedDict
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Union

import pandas as pd

from .errors import FinetunerError

if TYPE_CHECKING:
    from .finetuner import LLMFinetuner

STATUSES = ("running", "completed", "stopped", "failed")
RECORD_FILE = "run.json"
MODEL_DIR = "model"
EVALUATION_FILE = "evaluation.jsonl"
_RUN_ID = re.compile(r"^\d{8}-\d{6}-[0-9a-f]{6}$")
_CACHED_MODELS = 3
_PROCESS = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"  # this process, as written into the runs it creates


class RunError(FinetunerError):
    """A run does not exist, has no model, or cannot be changed now."""


@dataclass
class RunRecord:
    """What ``run.json`` holds about one run."""

    id: str
    status: str
    base_model: str
    created_at: str
    preset: str = "custom"
    config: Dict[str, Any] = field(default_factory=dict)
    data: Dict[str, Any] = field(default_factory=dict)
    metrics: Dict[str, float] = field(default_factory=dict)
    report: Optional[Dict[str, Any]] = None
    history: List[Dict[str, Any]] = field(default_factory=list)
    labels: List[str] = field(default_factory=list)
    error: Optional[str] = None
    finished_at: Optional[str] = None
    duration_seconds: Optional[float] = None
    process: str = ""

    @classmethod
    def from_dict(cls, values: Dict[str, Any]) -> "RunRecord":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})


def default_runs_dir() -> Path:
    return Path(os.environ.get("FINETUNER_RUNS_DIR", "runs"))


class RunStore:
    """Create, update, list, load and delete runs under ``root``."""

    def __init__(self, root: Optional[Union[str, Path]] = None):
        self.root = Path(root) if root is not None else default_runs_dir()
        self._models: "OrderedDict[str, LLMFinetuner]" = OrderedDict()
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ records

    def create(self, base_model: str, *, preset: str = "custom", config: Optional[Dict[str, Any]] = None,
               data: Optional[Dict[str, Any]] = None) -> RunRecord:
        """A new run with status ``running``."""
        now = datetime.now(timezone.utc)
        record = RunRecord(id=f"{now:%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:6]}", status="running",
                           base_model=base_model, created_at=now.isoformat(timespec="seconds"), preset=preset,
                           config=dict(config or {}), data=dict(data or {}), process=_PROCESS)
        (self.root / record.id).mkdir(parents=True)
        self.save(record)
        return record

    def save(self, record: RunRecord) -> None:
        """Write ``run.json`` atomically."""
        if record.status not in STATUSES:
            raise ValueError(f"unknown run status {record.status!r}")
        target = self.path(record.id) / RECORD_FILE
        staging = target.with_name(f".{RECORD_FILE}.{uuid.uuid4().hex[:8]}")
        staging.write_text(json.dumps(asdict(record), indent=2, default=str), encoding="utf-8")
        os.replace(staging, target)

    def finish(self, record: RunRecord, status: str, **values: Any) -> RunRecord:
        """Set the final status (and metrics, history, error...) with the finishing time and duration."""
        for name, value in values.items():
            setattr(record, name, value)
        record.status = status
        finished = datetime.now(timezone.utc)
        record.finished_at = finished.isoformat(timespec="seconds")
        record.duration_seconds = round((finished - datetime.fromisoformat(record.created_at)).total_seconds(), 1)
        self.save(record)
        return record

    def get(self, run_id: str) -> RunRecord:
        """The record of ``run_id``; a run left ``running`` by a process that is gone reads as ``failed``."""
        path = self.path(run_id) / RECORD_FILE
        if not path.is_file():
            raise RunError(f"Run {run_id!r} not found in {self.root}.")
        try:
            record = RunRecord.from_dict(json.loads(path.read_text(encoding="utf-8")))
        except (ValueError, TypeError) as exc:
            raise RunError(f"Run {run_id!r} has an unreadable {RECORD_FILE}: {exc}") from None
        if record.status == "running" and not _process_alive(record.process):
            record.status, record.error = "failed", "Interrupted: the app stopped while this run was training."
        return record

    def list(self) -> List[RunRecord]:
        """All readable runs, newest first."""
        if not self.root.is_dir():
            return []
        records = []
        for directory in sorted(self.root.iterdir(), reverse=True):
            if _RUN_ID.match(directory.name) and (directory / RECORD_FILE).is_file():
                try:
                    records.append(self.get(directory.name))
                except RunError:
                    continue
        return records

    def delete(self, run_id: str) -> None:
        """Remove a finished run and everything in its directory."""
        if self.get(run_id).status == "running":
            raise RunError(f"Run {run_id} is still training: stop it before deleting it.")
        with self._lock:
            self._models.pop(run_id, None)
        shutil.rmtree(self.path(run_id))

    def path(self, run_id: str) -> Path:
        """The directory of ``run_id`` (the id is checked, so it can never point outside the root)."""
        if not isinstance(run_id, str) or not _RUN_ID.match(run_id):
            raise RunError(f"{run_id!r} is not a run id (they look like 20250101-120000-abc123).")
        return self.root / run_id

    # ------------------------------------------------------------------ models and evaluation rows

    def model_dir(self, run_id: str) -> Path:
        """The saved model of a completed run."""
        record = self.get(run_id)
        if record.status != "completed":
            raise RunError(f"Run {run_id} is {record.status}: only completed runs have a model.")
        return self.path(run_id) / MODEL_DIR

    def load_model(self, run_id: str) -> "LLMFinetuner":
        """The model of a completed run, loaded once and kept in a small in-memory cache."""
        with self._lock:
            cached = self._models.get(run_id)
            if cached is not None:
                self._models.move_to_end(run_id)
                return cached
        return self.cache_model(run_id, self.model_dir(run_id))

    def cache_model(self, run_id: str, directory: Path) -> "LLMFinetuner":
        """Load the model saved in ``directory`` for ``run_id`` into the cache (checks that it loads)."""
        from .finetuner import LLMFinetuner

        model = LLMFinetuner.load(directory)
        with self._lock:
            self._models[run_id] = model
            while len(self._models) > _CACHED_MODELS:
                self._models.popitem(last=False)
        return model

    def save_evaluation(self, run_id: str, table: pd.DataFrame) -> None:
        path = self.path(run_id) / EVALUATION_FILE
        staging = path.with_name(f".{EVALUATION_FILE}.{uuid.uuid4().hex[:8]}")
        table.to_json(staging, orient="records", lines=True, force_ascii=False)
        os.replace(staging, path)

    def load_evaluation(self, run_id: str) -> Optional[pd.DataFrame]:
        """The evaluation rows of a run (text, label, prediction, probabilities), if it has them."""
        path = self.path(run_id) / EVALUATION_FILE
        if not path.is_file() or path.stat().st_size == 0:
            return None
        return pd.read_json(path, orient="records", lines=True, dtype=False, precise_float=True)


def _process_alive(process: str) -> bool:
    """Whether the process that wrote a record still runs (pids are reused across container restarts)."""
    if process == _PROCESS:
        return True
    pid = int(process.split("-")[0]) if process.split("-")[0].isdigit() else 0
    if pid <= 0 or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
