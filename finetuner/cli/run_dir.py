"""The run directory that ``train --output DIR`` writes and ``--model DIR`` reads::

    DIR/model/             the trained model (``LLMFinetuner.load``; ``--model DIR`` also finds it)
    DIR/metrics.json       metrics of the final model on the evaluation data (accuracy, f1_macro, ...)
    DIR/train_config.yaml  the training settings (usable again with --config)
    DIR/run.json           the run record: data, base model, method chosen and why, processes, steps,
                           timings, per-class report
    DIR/checkpoints/       resumable checkpoints while training (removed once the run has finished)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, Optional

from ..errors import DataError, ModelLoadError

if TYPE_CHECKING:  # torch and transformers are imported when a command needs them
    from ..finetuner import LLMFinetuner

MODEL_SUBDIR = "model"
CHECKPOINT_SUBDIR = "checkpoints"
METRICS_FILE = "metrics.json"
RUN_FILE = "run.json"
CONFIG_FILE = "train_config.yaml"
DEFAULT_OUTPUT_ROOT = "finetuner-runs"


def holds_run(directory: Path) -> bool:
    """Whether a training run has already written into ``directory``."""
    return any((directory / name).exists() for name in (RUN_FILE, MODEL_SUBDIR, CHECKPOINT_SUBDIR, METRICS_FILE))


def find_model_dir(path: str) -> Path:
    """A saved model directory: ``path`` itself or the ``model`` folder of a run directory."""
    from ..finetuner import METADATA_FILE
    directory = Path(path).expanduser()
    for candidate in (directory, directory / MODEL_SUBDIR):
        if (candidate / METADATA_FILE).is_file():
            return candidate
    if not directory.exists():
        raise ModelLoadError(f"{directory}: no such model directory.")
    raise ModelLoadError(f"{directory} is not a trained finetuner model (no {METADATA_FILE} in it or in "
                         f"{MODEL_SUBDIR}/). Train one with: python -m finetuner train --data TRAIN --output DIR")


def load_model(path: str, batch_size: Optional[int] = None) -> "LLMFinetuner":
    """The trained model in a run or model directory; ``batch_size`` replaces its evaluation batch size."""
    from ..finetuner import LLMFinetuner
    finetuner = LLMFinetuner.load(find_model_dir(path))
    if batch_size:
        finetuner.config = finetuner.config.replace(eval_batch_size=batch_size)
    return finetuner


def read_json(path: Path) -> Dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: cannot be read ({exc}).") from None
