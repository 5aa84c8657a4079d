"""finetuner: fine-tune pre-trained transformers for text classification, from Python, the CLI or a web app."""

__version__ = "0.1.0"

from .config import PRESETS, TrainConfig  # noqa: E402
from .data import LabelMap, LabelledTexts, load_table, read_table, split_train_eval  # noqa: E402
from .errors import ConfigError, DataError, FinetunerError, ModelLoadError  # noqa: E402
from .finetuner import LLMFinetuner  # noqa: E402
from .models import DEFAULT_MODEL  # noqa: E402
from .training.progress import ProgressEvent  # noqa: E402

__all__ = [
    "DEFAULT_MODEL", "PRESETS", "ConfigError", "DataError", "FinetunerError", "LLMFinetuner", "LabelMap",
    "LabelledTexts", "ModelLoadError", "ProgressEvent", "TrainConfig", "load_table", "read_table",
    "split_train_eval", "__version__",
]
