"""The run record (``run.json``) and the run folder's layout: one schema for runs made by the app, the command line
and the Python API.

A run folder holds::

    run.json            the RunRecord below
    model/              the trained model (finetuner.json, safetensors, tokenizer), once the run completed
    evaluation.jsonl    the held-out rows with their predictions and probabilities
    metrics.json        the final metrics (a copy of the record's, for scripts)
    train_config.yaml   the settings as asked (``train --config`` takes it again; ``--resume`` reads it)
    checkpoints/        resumable checkpoints while training (command line; removed when the run finishes)
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, fields
from typing import Any, Dict, List, Optional

RECORD_FILE = "run.json"
MODEL_DIR = "model"
EVALUATION_FILE = "evaluation.jsonl"
METRICS_FILE = "metrics.json"
CONFIG_FILE = "train_config.yaml"
CHECKPOINT_DIR = "checkpoints"

# running → completed | stopped (asked to stop; no model) | interrupted (the command line was interrupted; it can
# resume from its last checkpoint) | failed (an error; the record says which).
STATUSES = ("running", "completed", "stopped", "interrupted", "failed")
FINISHED = ("completed", "stopped", "interrupted", "failed")
SHARED_ORIGINS = ("cli", "python")

# A run id is its folder's name: the app's are "20250101-120000-abc123"; the command line's are the --output
# folder's name. One path component, never "." or "..": an id can never point outside the runs folder.
_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")


def is_run_id(value: Any) -> bool:
    return isinstance(value, str) and bool(_RUN_ID.match(value))


@dataclass
class RunRecord:
    """What ``run.json`` holds about one run.

    ``config`` holds the settings the model trained with (the method ``auto`` chose, the learning rate and text
    length picked automatically); ``requested`` the settings as asked. ``data`` describes the training and
    evaluation rows (source, counts, columns; the command line adds the files' paths). Training facts (steps,
    epochs, seconds, processes) are in ``training``; ``owner`` is the app's browser owner id ("" for runs made
    outside the app)."""

    id: str
    status: str
    base_model: str
    created_at: str
    preset: str = "custom"
    config: Dict[str, Any] = field(default_factory=dict)
    requested: Dict[str, Any] = field(default_factory=dict)
    data: Dict[str, Any] = field(default_factory=dict)
    metrics: Dict[str, float] = field(default_factory=dict)
    baselines: Dict[str, Dict[str, float]] = field(default_factory=dict)  # finetuner.baselines, by name
    method_choice: Dict[str, Any] = field(default_factory=dict)  # MethodChoice.as_dict(): auto's leaderboard too
    report: Optional[Dict[str, Any]] = None
    history: List[Dict[str, Any]] = field(default_factory=list)
    labels: List[str] = field(default_factory=list)
    training: Dict[str, Any] = field(default_factory=dict)
    error: Optional[str] = None
    finished_at: Optional[str] = None
    duration_seconds: Optional[float] = None
    command: Optional[str] = None  # the command line that made it
    resumes: List[Dict[str, Any]] = field(default_factory=list)  # each --resume: when, from which step, command
    finetuner_version: str = ""
    process: str = ""
    owner: str = ""
    origin: str = ""  # what made it: "app", "cli" or "python" ("" in records older than this field)

    @classmethod
    def from_dict(cls, values: Dict[str, Any]) -> "RunRecord":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})

    @property
    def method(self) -> str:
        """The method that trained, else the one asked for ("auto" until training has chosen)."""
        return self.method_choice.get("method") or str(self.config.get("method") or "")

    @property
    def finished(self) -> bool:
        return self.status in FINISHED

    @property
    def shared(self) -> bool:
        """Made on the server outside the app (command line, Python): every owner in the app may see and use it."""
        return not self.owner and self.origin in SHARED_ORIGINS
