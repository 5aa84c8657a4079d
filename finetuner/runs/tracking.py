"""Optional experiment tracking of a run (``TrainConfig.report_to``; off by default, both work offline):

- ``tensorboard``: event files in the run folder's ``tracking/`` (``tensorboard --logdir RUNS_FOLDER`` shows every
  run side by side); needs the ``tensorboard`` package.
- ``trackio``: a local Trackio project ``finetuner``, one run per training named by its run id
  (``trackio show --project finetuner``; ``TRACKIO_DIR`` moves its database); needs the ``trackio`` package.

A tracker follows the run's :class:`~finetuner.training.progress.ProgressEvent` stream, so every method (the
Trainer-based ones and the embedding methods alike) is tracked the same way, from the app, the command line or
Python.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any, Dict, Optional

from ..config import REPORT_TO
from ..errors import ConfigError

TRACKING_DIR = "tracking"
TRACKIO_PROJECT = "finetuner"
_PACKAGES = {"tensorboard": ("tensorboard", "tensorboard==2.21.0"), "trackio": ("trackio", "trackio==0.43.0")}


def check_available(report_to: str) -> None:
    """A clear error, before training starts, when the tracker's package is missing."""
    if report_to in _PACKAGES:
        module, requirement = _PACKAGES[report_to]
        if importlib.util.find_spec(module) is None:
            raise ConfigError(f"report_to={report_to!r} needs the {module} package, which is not installed: "
                              f"pip install {requirement} (or leave report_to at 'none').")


class Tracker:
    """Writes the losses and evaluation metrics of one run to TensorBoard or Trackio."""

    def __init__(self, report_to: str, folder: Path, run_id: str, settings: Dict[str, Any]):
        check_available(report_to)
        self.report_to = report_to
        if report_to == "tensorboard":
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(log_dir=str(folder / TRACKING_DIR))
            self._writer.add_text("settings", "\n".join(f"    {k}: {v}" for k, v in settings.items()))
        else:
            import trackio

            self._run = trackio.init(project=TRACKIO_PROJECT, name=run_id, config=settings, auto_log_cpu=False,
                                     auto_log_gpu=False)

    def __call__(self, event: Any) -> None:
        values: Dict[str, float] = {}
        if getattr(event, "kind", None) == "log" and event.loss is not None:
            values["train/loss"] = float(event.loss)
        elif getattr(event, "kind", None) == "evaluate":
            values = {f"eval/{name.removeprefix('eval_')}": float(value) for name, value in event.metrics.items()
                      if isinstance(value, (int, float)) and not isinstance(value, bool)}
        if not values:
            return
        if self.report_to == "tensorboard":
            for name, value in values.items():
                self._writer.add_scalar(name, value, event.step)
        else:
            self._run.log(values, step=event.step)

    def close(self) -> None:
        if self.report_to == "tensorboard":
            self._writer.close()
        else:
            self._run.finish()


def open_tracker(report_to: str, folder: Path, run_id: str, settings: Dict[str, Any]) -> Optional[Tracker]:
    """A tracker for ``report_to`` (None for "none")."""
    if report_to not in REPORT_TO:
        raise ConfigError(f"report_to={report_to!r} is not supported; choose one of {', '.join(REPORT_TO)}.")
    return None if report_to == "none" else Tracker(report_to, folder, run_id, settings)
