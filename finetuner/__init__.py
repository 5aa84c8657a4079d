"""finetuner: fine-tune pre-trained transformers for text classification, from Python, the CLI or a web app."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any, List

__version__ = "0.1.0"

# Public names and the module each lives in. They are imported on first use, so that modules which do
# not need torch/transformers (the web app's first page, data checks) load fast.
_EXPORTS = {
    "PRESETS": "config", "TrainConfig": "config",
    "LabelMap": "data", "LabelledTexts": "data", "Split": "data", "load_table": "data", "read_table": "data",
    "split_train_eval": "data",
    "ConfigError": "errors", "DataError": "errors", "FinetunerError": "errors", "ModelLoadError": "errors",
    "LLMFinetuner": "finetuner", "TextClassifier": "classifier", "export_onnx": "onnx_export",
    "DEFAULT_MODEL": "models", "next_to_label": "labelling", "suggest_labels": "labelling",
    "ProgressEvent": "training.progress",
    "RunRecord": "runs", "RunStore": "runs", "RunSpec": "runs.pipeline", "train_run": "runs.pipeline",
}

__all__ = [*sorted(_EXPORTS), "__version__"]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'finetuner' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> List[str]:
    return sorted({*globals(), *_EXPORTS})


if TYPE_CHECKING:
    from .config import PRESETS, TrainConfig  # noqa: F401
    from .data import LabelMap, LabelledTexts, Split, load_table, read_table, split_train_eval  # noqa: F401
    from .errors import ConfigError, DataError, FinetunerError, ModelLoadError  # noqa: F401
    from .classifier import TextClassifier  # noqa: F401
    from .finetuner import LLMFinetuner  # noqa: F401
    from .labelling import next_to_label, suggest_labels  # noqa: F401
    from .models import DEFAULT_MODEL  # noqa: F401
    from .runs import RunRecord, RunStore  # noqa: F401
    from .runs.pipeline import RunSpec, train_run  # noqa: F401
    from .training.progress import ProgressEvent  # noqa: F401
