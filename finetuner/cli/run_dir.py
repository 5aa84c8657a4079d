"""Run folders as the command line reads them: ``--model DIR`` takes a run folder (its ``model/``) or a model
folder. The layout itself is :mod:`finetuner.runs.record`'s."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Optional

from ..errors import ModelLoadError
from ..runs.record import CHECKPOINT_DIR, METRICS_FILE, MODEL_DIR, RECORD_FILE

if TYPE_CHECKING:  # torch and transformers are imported when a command needs them
    from ..finetuner import LLMFinetuner


def holds_run(directory: Path) -> bool:
    """Whether a training run has already written into ``directory``."""
    return any((directory / name).exists() for name in (RECORD_FILE, MODEL_DIR, CHECKPOINT_DIR, METRICS_FILE))


def find_model_dir(path: str) -> Path:
    """A saved model directory: ``path`` itself, the ``model`` folder of a run folder, or the run of that id in the
    runs folder (FINETUNER_RUNS_DIR, ./runs: where the app keeps its runs)."""
    from ..finetuner import METADATA_FILE
    from ..runs import default_runs_dir, is_run_id
    directory = Path(path).expanduser()
    if not directory.exists() and is_run_id(path) and (default_runs_dir() / path).is_dir():
        directory = default_runs_dir() / path
    for candidate in (directory, directory / MODEL_DIR):
        if (candidate / METADATA_FILE).is_file():
            return candidate
    if not directory.exists():
        raise ModelLoadError(f"{directory}: no such model directory.")
    raise ModelLoadError(f"{directory} is not a trained finetuner model (no {METADATA_FILE} in it or in "
                         f"{MODEL_DIR}/). Train one with: python -m finetuner train --data TRAIN --output DIR")


def load_model(path: str, batch_size: Optional[int] = None, backend: str = "auto") -> "LLMFinetuner":
    """The trained model in a run or model directory; ``batch_size`` replaces its evaluation batch size;
    ``backend`` as in :meth:`LLMFinetuner.load` (auto: ONNX Runtime when the model folder holds an export)."""
    from ..finetuner import LLMFinetuner
    finetuner = LLMFinetuner.load(find_model_dir(path), backend=backend)
    if batch_size:
        finetuner.config = finetuner.config.replace(eval_batch_size=batch_size)
    return finetuner
