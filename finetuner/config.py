"""Training settings: one dataclass with defaults, presets and validation."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional

from .errors import ConfigError
from .imbalance import CLASS_WEIGHTS
from .tasks import TASKS
from .methods import registry
from .methods.base import size_learning_rate

# "auto" (chosen from the data and the model: finetuner.method_choice), then every registered method in order
# (finetuner.methods: what each trains, its defaults). Snapshots for importers; validation reads the registry.
METHODS = registry.names()

# "auto" is bf16 autocast on a CPU with native bfloat16 (avx512_bf16, AMX), fp32 on a GPU and other CPUs (measured:
# bench/results/auto.md#precision, bench/results/method_choice.md#precision); "bf16" also runs on CPU,
# "fp16" needs a GPU.
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
# Experiment tracking of a run (finetuner.runs.tracking): off, TensorBoard event files in the run folder, or a
# local Trackio project. Both work offline.
REPORT_TO = ("none", "tensorboard", "trackio")
# Texts longer than max_length tokens: read in overlapping windows (every window trains and predicts; the windows'
# logits are averaged per text: finetuner.training.windows) or cut at max_length tokens.
LONG_TEXTS = ("windows", "truncate")

# Defaults that depend on the method (``epochs=None`` / ``batch_size=None`` take them): each method's ``defaults``.
METHOD_DEFAULTS: Dict[str, Dict[str, Any]] = registry.method_defaults()

# Presets are time budgets for ``auto`` (finetuner.autoselect: the embedding head, then the other candidates while
# the budget lasts); their other settings apply to whichever method trains (measured: bench/results/auto.md#presets).
PRESETS: Dict[str, Dict[str, Any]] = {
    # About a minute on 2 CPU cores for up to ~1,000 short texts: two passes, a one-minute budget.
    "fast": {"epochs": 2, "time_budget": 60.0},
    # About ten minutes: the methods' own epochs.
    "balanced": {"time_budget": 600.0},
    # No time limit: more epochs, smaller batches, early stopping on the rows held out from training.
    "best": {"epochs": 6, "batch_size": 16, "early_stopping_patience": 2},
}


@dataclass
class TrainConfig:
    """Hyperparameters of one training run.

    ``max_length=None`` picks the truncation length from the training texts' token lengths
    (the 98th percentile, rounded up to a multiple of 8, at least 128, capped by the model's limit).
    ``epochs`` and ``batch_size`` left unset take the method's defaults (``METHOD_DEFAULTS``); with
    ``method="auto"`` they stay unset until training picks the method.
    ``precision`` chooses mixed precision (see ``PRECISIONS``); ``gradient_checkpointing`` trades compute for
    memory on large models.
    ``learning_rate=None`` picks one from the model's size and the method (see :func:`default_learning_rate`).
    The ``lora_*`` settings apply to ``method="lora"``; ``lora_target_modules=None`` adapts the attention
    projections of the model's family (q/k/v/o on Llama/Qwen/Mistral-style decoders, query/key/value on BERT).
    A comma-separated string is accepted for ``lora_target_modules``.
    ``time_budget`` (seconds; None: no limit) bounds ``method="auto"``: it tries the embedding head, then the other
    candidates while the budget lasts, counted from the start of training (:mod:`finetuner.autoselect`).
    ``report_to`` tracks a run's losses and scores in TensorBoard or Trackio (see ``REPORT_TO``; runs made through
    :func:`finetuner.runs.pipeline.train_run`: the app, the command line, ``finetuner.train_run``).
    ``class_weights`` weighs the training loss by class (see ``CLASS_WEIGHTS``): "auto" when the classes are
    skewed (the largest has 5× the rows of the smallest or more), "balanced" always, "none" never; with the
    weights on, ``auto`` chooses among its candidates by macro-F1 (:mod:`finetuner.imbalance`).
    ``long_texts`` says what happens to a text longer than ``max_length`` tokens (see ``LONG_TEXTS``): "windows"
    reads all of it (up to 16 windows) in overlapping windows of ``max_length`` tokens, in training and prediction;
    "truncate" reads its first ``max_length`` tokens only.
    ``task`` says what the labels are (see :data:`finetuner.tasks.TASKS`): "auto" reads it from the label cells
    (:func:`finetuner.tasks.detect_task`), "single_label" one class per text, "multi_label" any number of classes
    per text (cells like ``joy;love``), "regression" a number per text.
    """

    method: str = "auto"
    epochs: Optional[float] = None
    learning_rate: Optional[float] = None
    batch_size: Optional[int] = None
    eval_batch_size: int = 64
    max_length: Optional[int] = None
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    seed: int = 42
    early_stopping_patience: Optional[int] = None
    eval_fraction: float = 0.2
    group_by_length: bool = True
    precision: str = "auto"
    gradient_checkpointing: bool = False
    logging_steps: int = 10
    lora_r: int = 8
    lora_alpha: float = 16.0
    lora_dropout: float = 0.05
    lora_target_modules: Optional[List[str]] = None
    report_to: str = "none"
    time_budget: Optional[float] = None
    class_weights: str = "auto"
    long_texts: str = "windows"
    task: str = "auto"

    def __post_init__(self) -> None:
        if self.method == registry.AUTO:  # epochs and batch size wait for the method that auto picks
            self._normalise_lora_targets()
            self.validate()
            return
        known = self.method in registry.names()  # an unknown method is named by validate below
        defaults = registry.get(self.method if known else "finetune").defaults
        if self.epochs is None:
            self.epochs = defaults["epochs"]
        if self.batch_size is None:
            self.batch_size = defaults["batch_size"]
        self._normalise_lora_targets()
        self.validate()

    def _normalise_lora_targets(self) -> None:
        if isinstance(self.lora_target_modules, str):
            self.lora_target_modules = [m.strip() for m in self.lora_target_modules.split(",") if m.strip()]
        elif isinstance(self.lora_target_modules, tuple):
            self.lora_target_modules = list(self.lora_target_modules)

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the first setting that is out of range."""
        if self.precision not in PRECISIONS:
            raise ConfigError(f"precision={self.precision!r} is not supported; choose one of {', '.join(PRECISIONS)}.")
        if self.long_texts not in LONG_TEXTS:
            raise ConfigError(f"long_texts={self.long_texts!r} is not supported; choose 'windows' (a long text is "
                              "read in overlapping windows) or 'truncate' (only its first max_length tokens).")
        if self.task not in TASKS:
            raise ConfigError(f"task={self.task!r} is not supported; use auto (read from the label column), "
                              "single_label, multi_label (several labels per text) or regression (a number).")
        if self.report_to not in REPORT_TO:
            raise ConfigError(f"report_to={self.report_to!r} is not supported; choose one of {', '.join(REPORT_TO)}.")
        if self.class_weights not in CLASS_WEIGHTS:
            raise ConfigError(f"class_weights={self.class_weights!r} is not supported; use auto (weigh the classes "
                              "when they are skewed), balanced (always) or none (never).")
        if not isinstance(self.gradient_checkpointing, bool):
            raise ConfigError(f"gradient_checkpointing must be true or false; got {self.gradient_checkpointing!r}.")
        if self.method not in registry.names():
            registry.get(self.method)  # raises ConfigError naming the methods
        unset_ok = self.method == registry.AUTO  # None: the chosen method's default
        if not (unset_ok and self.epochs is None):
            _check(self.epochs, "epochs", lambda v: 0 < v <= 1000, "a number of epochs between 0 and 1000, e.g. 3")
        if self.learning_rate is not None:
            _check(self.learning_rate, "learning_rate", lambda v: 0 < v < 1, "a value between 0 and 1, e.g. 5e-5")
        if not (unset_ok and self.batch_size is None):
            _check_int(self.batch_size, "batch_size", 1, 4096)
        _check_int(self.eval_batch_size, "eval_batch_size", 1, 4096)
        if self.max_length is not None:
            _check_int(self.max_length, "max_length", 8, 32768)
        _check(self.weight_decay, "weight_decay", lambda v: 0 <= v < 1, "a value in [0, 1), e.g. 0.01")
        _check(self.warmup_ratio, "warmup_ratio", lambda v: 0 <= v < 1, "a fraction in [0, 1), e.g. 0.1")
        _check_int(self.seed, "seed", 0, 2**32 - 1)
        if self.early_stopping_patience is not None:
            _check_int(self.early_stopping_patience, "early_stopping_patience", 1, 1000)
        _check(self.eval_fraction, "eval_fraction", lambda v: 0 < v < 1, "a fraction in (0, 1), e.g. 0.2")
        _check_int(self.logging_steps, "logging_steps", 1, 100000)
        if self.time_budget is not None:
            _check(self.time_budget, "time_budget", lambda v: 1 <= v <= 7 * 24 * 3600,
                   "a number of seconds between 1 and 604800, e.g. 60 (or none for no limit)")
        _check_int(self.lora_r, "lora_r", 1, 1024)
        _check(self.lora_alpha, "lora_alpha", lambda v: 0 < v <= 4096, "a positive number, e.g. 16 (twice lora_r)")
        _check(self.lora_dropout, "lora_dropout", lambda v: 0 <= v < 1, "a fraction in [0, 1), e.g. 0.05")
        if self.lora_target_modules is not None:
            modules = self.lora_target_modules
            if (not isinstance(modules, list) or not modules
                    or not all(isinstance(m, str) and m.strip() and m.replace("_", "").replace(".", "").isalnum()
                               for m in modules)):
                raise ConfigError(f"lora_target_modules must be a list of module names, e.g. ['q_proj', 'v_proj'] "
                                  f"(or none for the model's defaults); got {modules!r}.")

    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> "TrainConfig":
        """A config from a named preset (``fast``, ``balanced``, ``best``) with overrides applied."""
        if name not in PRESETS:
            raise ConfigError(f"Unknown preset {name!r}; choose one of {', '.join(PRESETS)}.")
        return cls.from_dict({**PRESETS[name], **overrides})

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "TrainConfig":
        """Build from a mapping (a config file, a form); unknown keys are an error."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(
                f"Unknown training setting(s): {', '.join(unknown)}. Known settings: {', '.join(sorted(known))}."
            )
        return cls(**dict(values))

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> "TrainConfig":
        return dataclasses.replace(self, **changes)


def default_learning_rate(num_parameters: int, method: str = "finetune") -> float:
    """The learning rate the Trainer uses for ``method`` on a model this size when none is set: the method's
    ``learning_rate`` rule (full fine-tuning's by model size unless the method has its own; see
    :mod:`finetuner.methods`)."""
    rule = registry.get(method).learning_rate if method in registry.names()[1:] else size_learning_rate
    return rule(num_parameters)


def _check(value: Any, name: str, ok, hint: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{name} must be a number ({hint}); got {value!r}.")
    if not ok(value):
        raise ConfigError(f"{name}={value!r} is out of range: use {hint}.")


def _check_int(value: Any, name: str, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{name} must be a whole number between {low} and {high}; got {value!r}.")
    if not low <= value <= high:
        raise ConfigError(f"{name}={value} is out of range: use a whole number between {low} and {high}.")
