"""LoRA (method="lora") on a tiny local Llama decoder and the tiny BERT encoder: what trains, padding, save/load."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import TINY_CONFIG, make_sentiment_data
from finetuner import LLMFinetuner, TrainConfig
from finetuner.errors import ConfigError
from finetuner.training import lora

LORA_CONFIG = TINY_CONFIG.replace(method="lora", lora_r=4, lora_alpha=8.0)


@pytest.fixture(scope="module")
def data():
    train = make_sentiment_data(80, seed=1)
    evaluation = make_sentiment_data(40, seed=2)
    return train[0], train[1], evaluation[0], evaluation[1]


@pytest.fixture(scope="module")
def llama_lora(tiny_llama, data):
    finetuner = LLMFinetuner(tiny_llama, config=LORA_CONFIG)
    finetuner.fine_tune(*data)
    return finetuner


# ------------------------------------------------------------------ config


def test_lora_settings_validated():
    config = TrainConfig(method="lora", lora_target_modules="q_proj, v_proj")
    assert config.lora_target_modules == ["q_proj", "v_proj"]
    assert TrainConfig.from_dict(config.to_dict()) == config
    for bad in ({"lora_r": 0}, {"lora_r": 2.5}, {"lora_alpha": 0}, {"lora_dropout": 1.0},
                {"lora_target_modules": []}, {"lora_target_modules": ["q proj"]}, {"lora_target_modules": [3]}):
        with pytest.raises(ConfigError, match=next(iter(bad))):
            TrainConfig(method="lora", **bad)
    with pytest.raises(ConfigError, match="lora"):
        TrainConfig(method="qlora")


def test_unknown_target_module_is_a_clear_error(tiny_llama, data):
    finetuner = LLMFinetuner(tiny_llama, config=LORA_CONFIG.replace(lora_target_modules=["query"]))
    with pytest.raises(ConfigError, match="query.*q_proj"):
        finetuner.fine_tune(*data[:2])


# ------------------------------------------------------------------ decoder


def test_decoder_without_pad_token_pads_with_eos_on_the_right(tiny_llama):
    finetuner = LLMFinetuner(tiny_llama)
    assert finetuner.tokenizer.pad_token == finetuner.tokenizer.eos_token == "</s>"
    assert finetuner.tokenizer.padding_side == "right"
    assert finetuner.model.config.pad_token_id == finetuner.tokenizer.eos_token_id


def test_only_adapter_and_head_train(llama_lora):
    model = llama_lora.model
    assert lora.is_peft_model(model)
    trainable = {name: p.numel() for name, p in model.named_parameters() if p.requires_grad}
    assert all("lora_" in name or ".score." in name for name in trainable), trainable
    # r=4 on q/k/v/o of 2 layers (hidden 32; k/v project to 2 heads × 8 = 16) plus the 2×32 score head.
    r, hidden, kv = 4, 32, 16
    per_layer = 2 * (r * hidden + hidden * r) + 2 * (r * hidden + kv * r)
    assert sum(trainable.values()) == 2 * per_layer + 2 * hidden
    assert sum(trainable.values()) < 0.2 * sum(p.numel() for p in model.parameters())


def test_lora_loss_falls(llama_lora):
    losses = [event["loss"] for event in llama_lora.history if "loss" in event]
    assert len(losses) >= 4
    assert np.mean(losses[-3:]) < np.mean(losses[:3]) - 0.05


@pytest.mark.parametrize("side", ["right", "left"])
def test_batch_predictions_equal_one_by_one(llama_lora, data, side):
    texts = data[2] + ["good", "the movie was really very bad and so boring overall"]
    one_by_one = np.concatenate([llama_lora.predict_proba_array([text]) for text in texts])
    llama_lora.tokenizer.padding_side = side
    try:
        batched = llama_lora.predict_proba_array(texts)
    finally:
        llama_lora.tokenizer.padding_side = "right"
    np.testing.assert_allclose(batched, one_by_one, atol=1e-5)
    assert llama_lora.predict(texts) == llama_lora.predict(texts[::-1])[::-1]


def test_adapter_save_is_small_and_round_trips(llama_lora, data, tmp_path, tiny_llama):
    saved = llama_lora.save(tmp_path / "adapter")
    files = {p.name for p in saved.iterdir()}
    assert {"adapter_model.safetensors", "adapter_config.json", "finetuner.json"} <= files
    assert not any(name.endswith((".bin", ".pt")) or name == "model.safetensors" for name in files)
    meta = json.loads((saved / "finetuner.json").read_text())
    assert meta["method"] == "lora" and meta["adapter"] is True and meta["base_model"] == tiny_llama
    assert lora.adapter_size_bytes(saved) < 40_000  # adapter + head only
    loaded = LLMFinetuner.load(saved)
    assert lora.is_peft_model(loaded.model)
    np.testing.assert_array_equal(loaded.predict_proba_array(data[2]), llama_lora.predict_proba_array(data[2]))
    assert loaded.predict_labels(data[2]) == llama_lora.predict_labels(data[2])


def test_merged_save_round_trips(llama_lora, data, tmp_path):
    saved = llama_lora.save(tmp_path / "merged", merge=True)
    assert (saved / "model.safetensors").is_file() and not (saved / "adapter_config.json").exists()
    assert json.loads((saved / "finetuner.json").read_text())["adapter"] is False
    assert lora.is_peft_model(llama_lora.model)  # merging a copy leaves the trained model as it was
    loaded = LLMFinetuner.load(saved)
    assert not lora.is_peft_model(loaded.model)
    np.testing.assert_allclose(loaded.predict_proba_array(data[2]), llama_lora.predict_proba_array(data[2]),
                               atol=1e-5)
    assert loaded.predict_labels(data[2]) == llama_lora.predict_labels(data[2])


# ------------------------------------------------------------------ encoder


def test_lora_on_bert_encoder(tiny_bert, data, tmp_path):
    finetuner = LLMFinetuner(tiny_bert, config=LORA_CONFIG)
    finetuner.fine_tune(*data)
    trainable = [name for name, p in finetuner.model.named_parameters() if p.requires_grad]
    assert any(".query.lora_A" in name for name in trainable) and any(".value.lora_B" in name for name in trainable)
    assert all("lora_" in name or ".classifier." in name for name in trainable), trainable
    metrics = finetuner.evaluate_model(*data[2:])
    assert 0 <= metrics["accuracy"] <= 1
    loaded = LLMFinetuner.load(finetuner.save(tmp_path / "bert-adapter"))
    np.testing.assert_array_equal(loaded.predict_proba_array(data[2]), finetuner.predict_proba_array(data[2]))


def test_lora_checkpoint_resumes(tiny_llama, data, tmp_path):
    config = LORA_CONFIG.replace(epochs=2)
    first = LLMFinetuner(tiny_llama, config=config)
    first.fine_tune(*data, checkpoint_dir=tmp_path / "checkpoints")
    resumed = LLMFinetuner(tiny_llama, config=config)
    resumed.fine_tune(*data, checkpoint_dir=tmp_path / "checkpoints", resume=True)  # from the last checkpoint
    assert lora.is_peft_model(resumed.model)
    np.testing.assert_allclose(resumed.predict_proba_array(data[2]), first.predict_proba_array(data[2]), atol=1e-6)


def test_cli_lora_flags():
    from finetuner.cli import build_parser
    from finetuner.cli.settings import build_config, flag_settings

    args = build_parser().parse_args(["train", "--data", "x.csv", "--method", "lora", "--lora-r", "4",
                                      "--lora-alpha", "8", "--lora-dropout", "0", "--lora-target-modules",
                                      "q_proj, v_proj"])
    config = build_config(flags=flag_settings(args))
    assert (config.method, config.lora_r, config.lora_alpha, config.lora_dropout) == ("lora", 4, 8.0, 0.0)
    assert config.lora_target_modules == ["q_proj", "v_proj"]
    args = build_parser().parse_args(["train", "--data", "x.csv", "--method", "lora", "--lora-target-modules", "auto"])
    assert build_config(flags=flag_settings(args)).lora_target_modules is None
