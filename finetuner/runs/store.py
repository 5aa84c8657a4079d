"""The run store: one folder per training run under a runs root (``FINETUNER_RUNS_DIR``, default ./runs).

The folder's layout and ``run.json`` are described in :mod:`finetuner.runs.record`. A run is marked
``completed`` only after its model was saved and loaded back; ``stopped``, ``interrupted`` and ``failed`` runs
keep no model. Every write is atomic (a temporary file renamed into place). The app's runs and the command
line's (``train --output RUNS/NAME``) live side by side: any folder with a readable ``run.json`` is a run.

A run may have an ``owner`` (the app gives each browser a random owner id). Methods that take ``owner``
treat a run of another owner exactly like a run that does not exist. A run made on the server outside the app
(``origin`` cli or python, no owner: :attr:`RunRecord.shared`) is visible to every owner, who may use, evaluate,
compare and export it but not delete it; an ownerless run of the app's (from before owners existed) stays
nobody's. ``owner=None`` means no check (the Python API and the command line).
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import threading
import uuid
from collections import OrderedDict
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple, Union

import pandas as pd

from ..errors import FinetunerError, described
from ..files import atomic_file, staging_path, write_json_atomic
from ..methods import METHOD_NAMES
from .record import EVALUATION_FILE, MODEL_DIR, RECORD_FILE, STATUSES, RunRecord, is_run_id

if TYPE_CHECKING:
    from ..finetuner import LLMFinetuner

_CACHED_MODELS = 3
_PROCESS = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"  # this process, as written into the runs it creates
class RunError(FinetunerError):
    """A run does not exist, has no model, or cannot be changed now."""


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
               data: Optional[Dict[str, Any]] = None, owner: str = "", run_id: Optional[str] = None,
               **values: Any) -> RunRecord:
        """A new run with status ``running``: in a new folder with a fresh id, or in the folder ``run_id`` (the
        command line's ``--output``; it may exist already, e.g. holding the checkpoints of a run to resume).
        ``values`` fill in more of the record (command, requested settings...)."""
        from .. import __version__

        fresh_id, created = _new_id()
        record = RunRecord(id=run_id or fresh_id, status="running", base_model=base_model, created_at=created,
                           preset=preset, config=dict(config or {}), data=dict(data or {}), process=_PROCESS,
                           owner=owner, finetuner_version=__version__, **values)
        self.path(record.id).mkdir(parents=True, exist_ok=run_id is not None)
        self.save(record)
        return record

    def save(self, record: RunRecord) -> None:
        """Write ``run.json`` atomically."""
        if record.status not in STATUSES:
            raise ValueError(f"unknown run status {record.status!r}")
        write_json_atomic(self.path(record.id) / RECORD_FILE, asdict(record))

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

    def get(self, run_id: str, owner: Optional[str] = None) -> RunRecord:
        """The record of ``run_id``; a run left ``running`` by a process that is gone reads as ``failed``.

        With ``owner``, a run of anyone else raises the same "not found" error as a missing run."""
        path = self.path(run_id) / RECORD_FILE
        if not path.is_file():
            raise self._not_found(run_id)
        try:
            record = RunRecord.from_dict(json.loads(path.read_text(encoding="utf-8")))
        except (ValueError, TypeError) as exc:
            if owner is not None:  # whose it is cannot be told: to an owner it does not exist
                raise self._not_found(run_id) from None
            raise RunError(f"Run {run_id!r} has an unreadable {RECORD_FILE}: {exc}") from None
        if owner is not None and not (record.shared or (owner and record.owner == owner)):
            raise self._not_found(run_id)
        if record.status == "running" and not _process_alive(record.process):
            record.status, record.error = "failed", "Interrupted: the app stopped while this run was training."
        return record

    def _not_found(self, run_id: str) -> RunError:
        return RunError(f"Run {run_id!r} not found in {self.root}.")

    def list(self, owner: Optional[str] = None) -> List[RunRecord]:
        """All readable runs (of ``owner`` only, when given), newest first."""
        if not self.root.is_dir():
            return []
        records = []
        for directory in self.root.iterdir():
            if is_run_id(directory.name) and (directory / RECORD_FILE).is_file():
                try:
                    records.append(self.get(directory.name, owner))
                except RunError:
                    continue
        return sorted(records, key=lambda record: (record.created_at, record.id), reverse=True)

    def delete(self, run_id: str, owner: Optional[str] = None) -> None:
        """Remove a finished run and everything in its directory (with ``owner``: only a run of that owner)."""
        record = self.get(run_id, owner)
        if record.status == "running":
            raise RunError(f"Run {run_id} is still training: stop it before deleting it.")
        if owner is not None and record.shared:
            raise RunError(f"Run {run_id} was made outside the app (command line or Python): it can be used here "
                           "but not deleted; delete its folder on the server instead.")
        with self._lock:
            self._models.pop(run_id, None)
        shutil.rmtree(self.path(run_id))

    def path(self, run_id: str) -> Path:
        """The directory of ``run_id`` (the id is checked, so it can never point outside the root)."""
        if not is_run_id(run_id):
            raise RunError(f"{run_id!r} is not a run id (they look like 20250101-120000-abc123: one folder name "
                           "of letters, digits, '.', '_' or '-').")
        return self.root / run_id

    # ------------------------------------------------------------------ models and evaluation rows

    def model_dir(self, run_id: str, owner: Optional[str] = None) -> Path:
        """The saved model of a completed run."""
        record = self.get(run_id, owner)
        if record.status != "completed":
            raise RunError(f"Run {run_id} is {record.status}: only completed runs have a model.")
        return self.path(run_id) / MODEL_DIR

    def load_model(self, run_id: str, owner: Optional[str] = None) -> "LLMFinetuner":
        """The model of a completed run, loaded once and kept in a small in-memory cache."""
        if owner is not None:
            self.get(run_id, owner)
        with self._lock:
            cached = self._models.get(run_id)
            if cached is not None:
                self._models.move_to_end(run_id)
                return cached
        return self.cache_model(run_id, self.model_dir(run_id, owner))

    def cache_model(self, run_id: str, directory: Path) -> "LLMFinetuner":
        """Load the model saved in ``directory`` for ``run_id`` into the cache (checks that it loads)."""
        from ..finetuner import LLMFinetuner

        return self._cache(run_id, LLMFinetuner.load(directory))

    def _cache(self, run_id: str, model: "LLMFinetuner") -> "LLMFinetuner":
        with self._lock:
            self._models[run_id] = model
            while len(self._models) > _CACHED_MODELS:
                self._models.popitem(last=False)
        return model

    def save_evaluation(self, run_id: str, table: pd.DataFrame) -> None:
        with atomic_file(self.path(run_id) / EVALUATION_FILE) as staging:
            table.to_json(staging, orient="records", lines=True, force_ascii=False)

    def load_evaluation(self, run_id: str, owner: Optional[str] = None) -> Optional[pd.DataFrame]:
        """The evaluation rows of a run (text, label, prediction, probabilities), if it has them."""
        if owner is not None:
            self.get(run_id, owner)
        path = self.path(run_id) / EVALUATION_FILE
        if not path.is_file() or path.stat().st_size == 0:
            return None
        return pd.read_json(path, orient="records", lines=True, dtype=False, precise_float=True)


    # ------------------------------------------------------------------ imported models

    def import_zip(self, zip_path: Union[str, Path], owner: str = "", max_unpacked_mb: float = 4096) -> RunRecord:
        """A new completed run holding the model of a zip exported by finetuner (checked by
        :func:`finetuner.archive.import_model_zip` before anything is extracted). Metrics, report,
        settings and labels come from the model's ``finetuner.json``. A refused or unloadable zip
        leaves nothing in the store."""
        from ..archive import METADATA_FILE, import_model_zip
        from ..classifier import ONNX_DIR
        from ..errors import ModelLoadError
        from ..finetuner import LLMFinetuner

        run_id, created = _new_id()
        self.root.mkdir(parents=True, exist_ok=True)
        staging = staging_path(self.root / run_id, "import")  # hidden, never a run id: not listed
        target, moved = self.root / run_id, False
        try:
            model_dir = import_model_zip(zip_path, staging / MODEL_DIR, max_unpacked_mb=max_unpacked_mb)
            # An ONNX graph inside someone's zip is not trusted to be the weights' own: the user re-exports it.
            shutil.rmtree(model_dir / ONNX_DIR, ignore_errors=True)
            try:
                meta = json.loads((model_dir / METADATA_FILE).read_text(encoding="utf-8"))
                if not isinstance(meta, dict):
                    raise ValueError("not a JSON object")
            except (OSError, ValueError) as exc:
                raise ModelLoadError(f"The zip's {METADATA_FILE} is not readable ({exc}).") from None
            os.rename(staging, target)  # no run.json yet: the run does not exist until its model loads
            moved = True
            try:
                model = LLMFinetuner.load(target / MODEL_DIR)
            except FinetunerError:
                raise
            except Exception as exc:  # a crafted or damaged model: say so, keep the app up
                raise ModelLoadError(f"The zip holds a model that could not be loaded ({described(exc)}). "
                                     "Upload a zip exported by finetuner.") from None
            record = RunRecord(
                id=run_id, status="completed", base_model=_safe_name(meta.get("base_model")), created_at=created,
                preset="imported", config=_json_dict(meta.get("config")),
                data={"source": "imported model zip"}, metrics=_clean_metrics(meta.get("metrics")),
                baselines=_clean_baselines(meta.get("baselines")),
                method_choice=_clean_method_choice(meta.get("method_choice")),
                report=_clean_report(meta.get("report")), history=_clean_history(meta.get("history")),
                labels=list(model.labels), finished_at=created, duration_seconds=0.0,
                process=_PROCESS, owner=owner)
            self.save(record)
        except BaseException:
            if moved:
                shutil.rmtree(target, ignore_errors=True)
            raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        self._cache(run_id, model)
        return record


def _new_id() -> Tuple[str, str]:
    """A fresh run id and its creation time (ISO, UTC)."""
    now = datetime.now(timezone.utc)
    return f"{now:%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:6]}", now.isoformat(timespec="seconds")


_SAFE_NAME = re.compile(r"^[\w.\-/:~@+ ]{1,300}$")


def _safe_name(value: Any) -> str:
    """A base-model name read from an uploaded zip, if it looks like one (it is shown in the app)."""
    return value if isinstance(value, str) and _SAFE_NAME.match(value) else "imported model"


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _json_dict(value: Any) -> Dict[str, Any]:
    if not isinstance(value, dict):
        return {}
    return {str(k): v for k, v in value.items() if isinstance(v, (str, int, float, bool, type(None)))}


def _clean_metrics(value: Any) -> Dict[str, float]:
    if not isinstance(value, dict):
        return {}
    return {str(k): float(v) for k, v in value.items() if _number(v)}


def _clean_baselines(value: Any) -> Dict[str, Dict[str, float]]:
    if not isinstance(value, dict):
        return {}
    return {str(k): _clean_metrics(v) for k, v in value.items() if isinstance(v, dict)}


def _clean_method_choice(value: Any) -> Dict[str, Any]:
    """A method choice read from an uploaded zip: a known method and a reason of reasonable length."""
    if not (isinstance(value, dict) and value.get("method") in METHOD_NAMES and isinstance(value.get("reason"), str)):
        return {}
    return {"method": value["method"], "reason": value["reason"][:2000]}


def _clean_history(value: Any) -> List[Dict[str, Any]]:
    return [_json_dict(item) for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def _clean_report(value: Any) -> Optional[Dict[str, Any]]:
    """An evaluation report read from an uploaded zip, if it has the shape the app and model card expect."""
    if not isinstance(value, dict):
        return None
    labels, matrix, per_class = value.get("labels"), value.get("confusion_matrix"), value.get("per_class")
    if labels is not None and not (isinstance(labels, list) and all(isinstance(x, (str, int)) for x in labels)):
        return None
    if matrix is not None and not (isinstance(matrix, list) and isinstance(labels, list)
                                   and len(matrix) == len(labels)
                                   and all(isinstance(row, list) and len(row) == len(labels)
                                           and all(isinstance(v, int) and not isinstance(v, bool) for v in row)
                                           for row in matrix)):
        return None
    if per_class is not None and not (isinstance(per_class, dict) and all(
            isinstance(scores, dict) and all(_number(scores.get(key)) for key in
                                             ("precision", "recall", "f1-score", "support"))
            for scores in per_class.values())):
        return None
    bins, keys = value.get("reliability"), ("low", "high", "confidence", "accuracy", "count")
    if bins is not None and not (isinstance(bins, list) and all(
            isinstance(b, dict) and all(_number(b.get(key)) for key in keys) for b in bins)):
        return {k: v for k, v in value.items() if k != "reliability"}  # the rest of the report stays usable
    return value


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
