"""TrainConfig: defaults, presets, validation of every field, dict round trip."""

from __future__ import annotations

import dataclasses
import math

import pytest

from finetuner import PRESETS, ConfigError, TrainConfig
from finetuner.config import METHODS, default_learning_rate


def test_defaults_are_valid_and_documented_values():
    config = TrainConfig()
    assert config.method == "auto"  # chosen from the data when training starts
    assert config.max_length is None  # chosen from the data
    assert config.learning_rate is None  # chosen from the model's size
    assert config.early_stopping_patience is None
    assert 0 < config.eval_fraction < 1
    config.validate()  # no error


# (field, bad value, text the message must contain)
OUT_OF_RANGE = [
    ("epochs", 0, "epochs=0 is out of range"),
    ("epochs", -1, "epochs=-1 is out of range"),
    ("epochs", 1001, "epochs=1001 is out of range"),
    ("epochs", math.nan, "epochs=nan is out of range"),
    ("epochs", "3", "epochs must be a number"),
    ("learning_rate", 0, "learning_rate=0 is out of range"),
    ("learning_rate", 1, "learning_rate=1 is out of range"),
    ("learning_rate", -1e-5, "learning_rate=-1e-05 is out of range"),
    ("learning_rate", "1e-4", "learning_rate must be a number"),
    ("batch_size", 0, "batch_size=0 is out of range"),
    ("batch_size", 4097, "batch_size=4097 is out of range"),
    ("batch_size", 8.0, "batch_size must be a whole number"),
    ("batch_size", True, "batch_size must be a whole number"),
    ("eval_batch_size", 0, "eval_batch_size=0 is out of range"),
    ("eval_batch_size", "64", "eval_batch_size must be a whole number"),
    ("max_length", 7, "max_length=7 is out of range"),
    ("max_length", 32769, "max_length=32769 is out of range"),
    ("max_length", 128.5, "max_length must be a whole number"),
    ("weight_decay", -0.1, "weight_decay=-0.1 is out of range"),
    ("weight_decay", 1, "weight_decay=1 is out of range"),
    ("warmup_ratio", -0.01, "warmup_ratio=-0.01 is out of range"),
    ("warmup_ratio", 1.0, "warmup_ratio=1.0 is out of range"),
    ("seed", -1, "seed=-1 is out of range"),
    ("seed", 2**32, f"seed={2**32} is out of range"),
    ("seed", 1.5, "seed must be a whole number"),
    ("early_stopping_patience", 0, "early_stopping_patience=0 is out of range"),
    ("early_stopping_patience", 1001, "early_stopping_patience=1001 is out of range"),
    ("eval_fraction", 0, "eval_fraction=0 is out of range"),
    ("eval_fraction", 1, "eval_fraction=1 is out of range"),
    ("eval_fraction", 1.5, "eval_fraction=1.5 is out of range"),
    ("logging_steps", 0, "logging_steps=0 is out of range"),
    ("logging_steps", 100001, "logging_steps=100001 is out of range"),
    ("lora_r", 0, "lora_r=0 is out of range"),
    ("lora_r", 4.5, "lora_r must be a whole number"),
    ("lora_alpha", 0, "lora_alpha=0 is out of range"),
    ("lora_dropout", 1, "lora_dropout=1 is out of range"),
    ("lora_target_modules", [], "lora_target_modules must be a list of module names"),
    ("time_budget", 0, "time_budget=0 is out of range"),
    ("time_budget", "1m", "time_budget must be a number"),
    ("class_weights", "sqrt", "class_weights='sqrt' is not supported; use auto"),
    ("task", "numbers", "task='numbers' is not supported; use auto"),
]


@pytest.mark.parametrize("name, value, expected", OUT_OF_RANGE, ids=[f"{n}={v!r}" for n, v, _ in OUT_OF_RANGE])
def test_each_out_of_range_field_is_a_config_error(name, value, expected):
    with pytest.raises(ConfigError) as info:
        TrainConfig(**{name: value})
    message = str(info.value)
    assert expected in message
    # The message says how to fix it: a range or an example value.
    assert ("use" in message or "between" in message or "e.g." in message), message


def test_every_numeric_field_is_covered_by_the_range_tests():
    checked = {name for name, _, _ in OUT_OF_RANGE}
    fields = {f.name for f in dataclasses.fields(TrainConfig)} - {"method", "group_by_length", "precision",
                                                                   "gradient_checkpointing", "report_to",
                                                                   "long_texts"}
    assert fields == checked


def test_unsupported_method_lists_the_supported_ones():
    with pytest.raises(ConfigError, match=r"method='qlora' is not supported; choose one of auto, finetune, head, "
                                          r"fewshot, head_finetune, lora"):
        TrainConfig(method="qlora")
    assert "finetune" in METHODS


@pytest.mark.parametrize("name, value", [("epochs", 1000), ("epochs", 0.5), ("learning_rate", 0.999),
                                         ("batch_size", 1), ("batch_size", 4096), ("max_length", 8),
                                         ("max_length", 32768), ("weight_decay", 0), ("warmup_ratio", 0),
                                         ("seed", 0), ("seed", 2**32 - 1), ("early_stopping_patience", 1),
                                         ("eval_fraction", 0.5), ("logging_steps", 1)])
def test_boundary_values_are_accepted(name, value):
    assert getattr(TrainConfig(**{name: value}), name) == value


@pytest.mark.parametrize("parameters, expected", [
    (22_700_000, 3e-4),     # all-MiniLM-L6-v2
    (40_000_000, 3e-4),
    (40_000_001, 5e-5),
    (110_000_000, 5e-5),    # BERT base
    (200_000_000, 5e-5),
    (355_000_000, 2e-5),    # RoBERTa large
])
def test_default_learning_rate_by_model_size(parameters, expected):
    assert default_learning_rate(parameters) == expected


def test_default_learning_rate_never_grows_with_size():
    rates = [default_learning_rate(n) for n in (1_000, 10**7, 10**8, 10**9, 10**10)]
    assert rates == sorted(rates, reverse=True) and all(0 < r < 1 for r in rates)


def test_validate_catches_a_field_changed_after_construction():
    config = TrainConfig()
    config.batch_size = 0
    with pytest.raises(ConfigError, match="batch_size=0"):
        config.validate()


def test_replace_validates_and_leaves_the_original_alone():
    config = TrainConfig(epochs=2)
    changed = config.replace(epochs=5, seed=7)
    assert (changed.epochs, changed.seed) == (5, 7)
    assert config.epochs == 2
    with pytest.raises(ConfigError, match="epochs"):
        config.replace(epochs=0)


def test_to_dict_from_dict_round_trip():
    config = TrainConfig(epochs=2, learning_rate=3e-5, max_length=64, early_stopping_patience=2, seed=5)
    values = config.to_dict()
    assert values["learning_rate"] == 3e-5 and values["max_length"] == 64
    assert set(values) == {f.name for f in dataclasses.fields(TrainConfig)}
    assert TrainConfig.from_dict(values) == config


def test_from_dict_unknown_keys_are_named_with_the_known_ones():
    with pytest.raises(ConfigError) as info:
        TrainConfig.from_dict({"epochs": 2, "lr": 0.1, "batchsize": 8})
    message = str(info.value)
    assert "Unknown training setting(s): batchsize, lr." in message
    assert "Known settings:" in message and "learning_rate" in message and "batch_size" in message


def test_from_dict_validates_values():
    with pytest.raises(ConfigError, match="epochs=-2"):
        TrainConfig.from_dict({"epochs": -2})


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_apply_their_values(name):
    config = TrainConfig.from_preset(name)
    for key, value in PRESETS[name].items():
        assert getattr(config, key) == value
    if name == "balanced":  # the defaults within a ten-minute budget
        assert config == TrainConfig(time_budget=600.0)
    if name == "best":  # no time limit, like the defaults
        assert config.time_budget is None and TrainConfig().time_budget is None


def test_preset_overrides_win():
    config = TrainConfig.from_preset("fast", epochs=5, seed=3)
    assert config.epochs == 5 and config.seed == 3
    assert config.batch_size == PRESETS["fast"].get("batch_size", TrainConfig().batch_size)


def test_best_preset_uses_early_stopping():
    assert TrainConfig.from_preset("best").early_stopping_patience is not None


def test_unknown_preset_lists_the_presets():
    with pytest.raises(ConfigError) as info:
        TrainConfig.from_preset("turbo")
    message = str(info.value)
    assert "Unknown preset 'turbo'" in message
    assert all(name in message for name in PRESETS)


def test_preset_with_unknown_override_is_an_error():
    with pytest.raises(ConfigError, match="Unknown training setting"):
        TrainConfig.from_preset("fast", epoch=3)


def test_epochs_and_batch_size_default_by_method():
    assert (TrainConfig().epochs, TrainConfig().batch_size) == (None, None)  # auto: the chosen method's
    assert (TrainConfig(method="finetune").epochs, TrainConfig(method="finetune").batch_size) == (3.0, 32)
    assert (TrainConfig(method="lora").epochs, TrainConfig(method="lora").batch_size) == (2.0, 16)
    assert TrainConfig(method="lora", epochs=5, batch_size=8).epochs == 5


def test_precision_and_gradient_checkpointing_are_validated():
    assert TrainConfig(precision="bf16", gradient_checkpointing=True).precision == "bf16"
    with pytest.raises(ConfigError, match="precision='half' is not supported; choose one of auto, fp32, bf16, fp16"):
        TrainConfig(precision="half")
    with pytest.raises(ConfigError, match="gradient_checkpointing must be true or false"):
        TrainConfig(gradient_checkpointing="yes")
