"""Training settings on the command line: one flag per :class:`TrainConfig` field, config files, precedence.

Precedence: TrainConfig defaults < ``--preset`` < ``--config FILE`` < flags.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import typing
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Sequence, Tuple

from ..config import LONG_TEXTS, PRESETS, REPORT_TO, TrainConfig
from ..imbalance import CLASS_WEIGHTS
from ..tasks import TASKS
from ..errors import ConfigError
from ..files import write_text_atomic
from ..methods import registry

_SETTING_PREFIX = "setting__"
_NONE_WORDS = ("none", "null", "auto", "off")


def _per_method(setting: str, methods: Sequence[registry.Method]) -> str:
    """A setting's default for each method, e.g. "finetune 3, lora 2", for the help texts."""
    return ", ".join(f"{method.name} {method.defaults[setting]:g}" for method in methods)


def _method_help() -> Dict[str, str]:
    """The help of --method, --epochs and --batch-size, from the registered methods."""
    methods = registry.methods()
    without_epochs = [method.name for method in methods if not method.has_epochs]
    choices = [f"{registry.AUTO} ({registry.AUTO_SUMMARY})"] + [f"{m.name} ({m.summary})" for m in methods]
    return {
        "method": "how to train: " + ", ".join(choices[:-1]) + " or " + choices[-1],
        "epochs": "passes over the training data (fractions allowed); auto: the method's default ("
                  + _per_method("epochs", [m for m in methods if m.has_epochs])
                  + "".join(f"; {name} has no epochs" for name in without_epochs) + ")",
        "batch_size": "training texts per step and process; auto: the method's default ("
                      + _per_method("batch_size", methods) + ")",
    }


_SETTING_HELP = {
    "learning_rate": "peak learning rate; 'auto' picks one from the model size",
    "eval_batch_size": "texts per evaluation/prediction batch",
    "max_length": "tokens the model reads at once (a longer text: see --long-texts); 'auto' picks it from the "
                  "training texts",
    "long_texts": "a text longer than --max-length: 'windows' reads all of it in overlapping windows (up to 16) "
                  "for training and prediction, 'truncate' only its first --max-length tokens",
    "weight_decay": "AdamW weight decay",
    "warmup_ratio": "fraction of the steps with a linear learning-rate warm-up",
    "seed": "random seed (initialisation, shuffling, the evaluation split)",
    "early_stopping_patience": "stop after this many evaluations without a better F1; 'none' trains all epochs",
    "eval_fraction": "share of the training rows held out for evaluation when --eval is not given",
    "group_by_length": "batch texts of similar length together (less padding)",
    "precision": "auto (fp32: measured fastest for these models, GPU included), fp32, bf16 (CPU or GPU) or fp16 (GPU)",
    "report_to": "track losses and scores: none, tensorboard (event files in RUN/tracking/; tensorboard --logdir "
                 "RUNS) or trackio (local project 'finetuner'; trackio show --project finetuner); offline",
    "class_weights": "weigh the loss by class: auto (when the largest class has 5x the rows of the smallest or "
                     "more; auto then picks by macro-F1), balanced (always) or none",
    "task": "what the labels are: auto (read from the label column), single_label (one class per text), "
            "multi_label (several per text, cells like 'joy;love' or a JSON list) or regression (a number)",
    "gradient_checkpointing": "recompute activations in the backward pass: less memory, slower",
    "logging_steps": "report the training loss every N steps",
    "lora_r": "rank of the LoRA adapter matrices (--method lora)",
    "lora_alpha": "LoRA scaling: the adapter's update is multiplied by alpha/r (--method lora)",
    "lora_dropout": "dropout on the LoRA adapter's input (--method lora)",
    "lora_target_modules": "comma-separated layer names to adapt, e.g. q_proj,v_proj; 'auto' takes the "
                           "attention projections of the model's family (--method lora)",
}


def _setting_type(name: str) -> Tuple[Any, bool]:
    """``(type, optional)`` of a :class:`TrainConfig` field, from its annotation."""
    hint = typing.get_type_hints(TrainConfig)[name]
    if typing.get_origin(hint) is typing.Union:
        members = typing.get_args(hint)
        rest = [m for m in members if m is not type(None)]
        return (rest[0] if len(rest) == 1 else str), len(rest) < len(members)
    return hint, False


def _means_none(text: str, optional: bool) -> bool:
    return optional and text.strip().lower() in _NONE_WORDS


def value_parser(kind: Any, optional: bool = False) -> Callable[[str], Any]:
    """An argparse ``type`` for one setting, with a readable message for bad values."""
    def parse(text: str) -> Any:
        if _means_none(text, optional):
            return None
        try:
            if kind is int:
                return int(text)
            if kind is float:
                return float(text)
            if kind is str:
                return text
            if typing.get_origin(kind) is list:  # a comma-separated list: q_proj,v_proj
                return [item.strip() for item in text.split(",") if item.strip()]
            return json.loads(text)
        except ValueError:
            what = {int: "a whole number", float: "a number"}.get(kind, "a value")
            raise argparse.ArgumentTypeError(
                f"expected {what}{' or none' if optional else ''}; got {text!r}") from None
    return parse


def add_setting_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per :class:`TrainConfig` field (``--learning-rate``, ``--no-group-by-length``, ...)."""
    group = parser.add_argument_group(
        "training settings", "Override --preset and --config; defaults are TrainConfig's.")
    helps = {**_SETTING_HELP, **_method_help()}  # methods registered by now included
    for field in dataclasses.fields(TrainConfig):
        kind, optional = _setting_type(field.name)
        flag = "--" + field.name.replace("_", "-")
        default = None if field.default is dataclasses.MISSING else field.default
        shown = ("none" if field.name == "early_stopping_patience" else "auto") if default is None else default
        kwargs: Dict[str, Any] = {"dest": _SETTING_PREFIX + field.name, "default": argparse.SUPPRESS,
                                  "help": f"{helps.get(field.name, field.name)} (default: {shown})"}
        if kind is bool:
            group.add_argument(flag, action=argparse.BooleanOptionalAction, **kwargs)
            continue
        kwargs["type"] = value_parser(kind, optional)
        kwargs["metavar"] = {int: "N", float: "X"}.get(kind, "NAMES" if typing.get_origin(kind) is list else "VALUE")
        if field.name == "method":
            kwargs["choices"] = registry.names()
        elif field.name == "report_to":
            kwargs["choices"] = REPORT_TO
        elif field.name == "class_weights":
            kwargs["choices"] = CLASS_WEIGHTS
        elif field.name == "long_texts":
            kwargs["choices"] = LONG_TEXTS
        elif field.name == "task":
            kwargs["choices"] = TASKS
        group.add_argument(flag, **kwargs)


def flag_settings(args: argparse.Namespace) -> Dict[str, Any]:
    """The settings given as flags on the command line (the others are left out)."""
    return {key[len(_SETTING_PREFIX):]: value for key, value in vars(args).items() if key.startswith(_SETTING_PREFIX)}


def read_config_file(path: str) -> Dict[str, Any]:
    """Training settings from a YAML or JSON file: a mapping of TrainConfig field names to values."""
    import yaml

    file = Path(path).expanduser()
    if not file.is_file():
        raise ConfigError(f"{file}: config file not found.")
    try:
        text = file.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise ConfigError(f"{file.name}: not a text file; write the config as UTF-8 YAML or JSON.") from None
    is_json = file.suffix.lower() == ".json"
    try:
        values = json.loads(text) if is_json else yaml.safe_load(text)  # YAML also reads JSON
    except (ValueError, yaml.YAMLError) as exc:
        detail = " ".join(str(exc).split())[:160]
        raise ConfigError(f"{file.name}: not valid {'JSON' if is_json else 'YAML'} ({detail}).") from None
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise ConfigError(f"{file.name}: expected settings as 'name: value' pairs (like 'epochs: 3'), "
                          f"got a {type(values).__name__}.")
    settings = {}
    for key, value in values.items():
        name = str(key).strip().replace("-", "_")
        settings[name] = _coerce_setting(name, value)
    return settings


def _coerce_setting(name: str, value: Any) -> Any:
    """Numbers written as text (YAML reads ``5e-5`` as a string) become numbers; the rest is left to validation."""
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    if name not in known or not isinstance(value, str):
        return value
    kind, optional = _setting_type(name)
    if _means_none(value, optional):
        return None
    if kind in (int, float):
        with contextlib.suppress(ValueError):
            number = float(value)
            return int(number) if kind is int and number.is_integer() and "." not in value else number
    return value


def write_config(path: Path, config: TrainConfig) -> None:
    """Write the settings as a YAML file that ``--config`` reads back."""
    import yaml
    write_text_atomic(path, "# Training settings of this run (python -m finetuner train --config this-file)\n"
                      + yaml.safe_dump(config.to_dict(), sort_keys=False))


def build_config(*, preset: Optional[str] = None, config_file: Optional[str] = None,
                 flags: Optional[Dict[str, Any]] = None, base: Optional[Dict[str, Any]] = None) -> TrainConfig:
    """Settings in order of precedence: ``base`` (defaults) < ``preset`` < ``config_file`` < ``flags``."""
    values: Dict[str, Any] = dict(base or {})
    if preset:
        values.update(PRESETS[preset])
    if config_file:
        values.update(read_config_file(config_file))
        try:
            TrainConfig.from_dict(values)
        except ConfigError as exc:
            raise ConfigError(f"{Path(config_file).name}: {exc}") from None
    values.update(flags or {})
    return TrainConfig.from_dict(values)
