"""Runs: the record and folder of one training (:mod:`.record`), the store that keeps them (:mod:`.store`) and the
one pipeline that trains, evaluates, saves and records a run for the app, the command line and Python
(:mod:`.pipeline`)."""

from .record import (CHECKPOINT_DIR, CONFIG_FILE, EVALUATION_FILE, FINISHED, METRICS_FILE, MODEL_DIR, RECORD_FILE,
                     STATUSES, RunRecord, is_run_id)
from ..methods import METHOD_NAMES
from .store import RunError, RunStore, default_runs_dir

__all__ = ["CHECKPOINT_DIR", "CONFIG_FILE", "EVALUATION_FILE", "FINISHED", "METHOD_NAMES", "METRICS_FILE",
           "MODEL_DIR", "RECORD_FILE", "STATUSES", "RunError", "RunRecord", "RunStore", "default_runs_dir",
           "is_run_id"]
