"""LoRA (peft) adapters on sequence classifiers: default target modules per architecture, the trainable head,
small adapter saves and merged exports.

The base weights stay frozen; only the low-rank adapter matrices and the classification head (``score`` on
decoders, ``classifier`` on BERT-style encoders, kept whole through ``modules_to_save``) are trained and saved.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import TYPE_CHECKING, List, Optional, Union

import torch

from ..errors import ConfigError, ModelLoadError
from ..models import LORA_ADAPTER_TYPE, write_refusing_config

if TYPE_CHECKING:
    from ..config import TrainConfig

# Attention projections per model family (model_type → module names). Decoders: q/k/v/o; encoders: q/k/v.
DEFAULT_TARGET_MODULES = {
    **{t: ["q_proj", "k_proj", "v_proj", "o_proj"]
       for t in ("llama", "qwen2", "qwen3", "mistral", "mixtral", "gemma", "gemma2", "gemma3_text", "olmo",
                 "olmo2", "smollm3", "granite", "stablelm", "starcoder2")},
    "phi": ["q_proj", "k_proj", "v_proj", "dense"],
    "phi3": ["qkv_proj", "o_proj"],
    "gpt2": ["c_attn", "c_proj"],
    **{t: ["query", "key", "value"]
       for t in ("bert", "roberta", "xlm-roberta", "electra", "camembert")},
    "distilbert": ["q_lin", "k_lin", "v_lin"],
    "deberta-v2": ["query_proj", "key_proj", "value_proj"],
}
# Head module names that transformers' *ForSequenceClassification models use.
_HEAD_NAMES = ("score", "classifier", "pre_classifier")
# What a saved adapter folder's config.json says it is (transformers' error names its model type only).
ADAPTER_ABOUT = ("A finetuner LoRA adapter and classification head, without the base model. transformers refuses "
                 "this folder on purpose: loading the adapter onto the base model alone names the classes LABEL_0, "
                 "LABEL_1, ... (and starts a new, random head when the base model's number of classes differs). Load "
                 "it with finetuner (LLMFinetuner.load), or with peft: the base model by "
                 "AutoModelForSequenceClassification with this config's id2label and label2id, then "
                 "PeftModel.from_pretrained(base, folder).")


def is_peft_model(model) -> bool:
    try:
        from peft import PeftModel
    except ImportError:  # pragma: no cover - peft is a pinned requirement
        return False
    return isinstance(model, PeftModel)


def default_target_modules(model) -> List[str]:
    """The attention projections to adapt for this model's architecture."""
    model_type = getattr(model.config, "model_type", "")
    if model_type in DEFAULT_TARGET_MODULES:
        return list(DEFAULT_TARGET_MODULES[model_type])
    # An unknown family: fall back to whichever well-known projection names its linear layers use.
    linear = _linear_layer_names(model)
    for names in (["q_proj", "k_proj", "v_proj", "o_proj"], ["query", "key", "value"]):
        if set(names) <= linear:
            return names
    raise ConfigError(f"No default LoRA target modules for model type {model_type!r}: set lora_target_modules "
                      f"to some of its linear layers ({', '.join(sorted(linear)[:12])}).")


def _linear_layer_names(model) -> set:
    """Short names of the model's linear layers (``q_proj``, ``query``, ...), which LoRA can adapt."""
    return {name.rsplit(".", 1)[-1] for name, module in model.named_modules()
            if isinstance(module, torch.nn.Linear) or type(module).__name__ == "Conv1D"}


def head_modules(model) -> List[str]:
    """Names of the classification head's top-level modules (trained and saved whole)."""
    children = {name for name, _ in model.named_children()}
    return [name for name in _HEAD_NAMES if name in children]


def wrap_with_lora(model, config: TrainConfig):
    """``model`` with a LoRA adapter (task SEQ_CLS); base weights frozen, adapter and head trainable."""
    from peft import LoraConfig, TaskType, get_peft_model

    targets = list(config.lora_target_modules) if config.lora_target_modules else default_target_modules(model)
    linear = _linear_layer_names(model)
    missing = [name for name in targets if name not in linear]
    if missing:
        raise ConfigError(f"lora_target_modules: {', '.join(missing)} is not a linear layer of this "
                          f"{getattr(model.config, 'model_type', '')} model; its linear layers are "
                          f"{', '.join(sorted(linear))}.")
    lora_config = LoraConfig(task_type=TaskType.SEQ_CLS, r=config.lora_r, lora_alpha=config.lora_alpha,
                             lora_dropout=config.lora_dropout, target_modules=targets,
                             modules_to_save=head_modules(model))
    with torch.random.fork_rng(devices=[]):  # adapter initialisation from the seed, global state untouched
        torch.manual_seed(config.seed)
        return get_peft_model(model, lora_config)


def trainable_parameters(model) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def merged_copy(model):
    """A plain transformers model with the adapter merged in (``model`` itself is left as it is)."""
    return copy.deepcopy(model).merge_and_unload()


def load_adapter(base_model, directory: Union[str, Path]):
    """Put the adapter (and trained head) saved in ``directory`` onto ``base_model`` (trainable again)."""
    from peft import PeftModel

    try:
        return PeftModel.from_pretrained(base_model, str(directory), is_trainable=True)
    except (OSError, ValueError, KeyError) as exc:
        raise ModelLoadError(f"Could not load the LoRA adapter in {directory}: {exc}") from exc


def write_adapter_config(model, directory: Union[str, Path]) -> None:
    """Beside a saved adapter: a config.json that transformers refuses (:func:`finetuner.models.write_refusing_config`)
    with the class names and the base model."""
    write_refusing_config(directory, LORA_ADAPTER_TYPE, model.config, ADAPTER_ABOUT,
                          base_model=model.peft_config[model.active_adapter].base_model_name_or_path)


def adapter_size_bytes(directory: Union[str, Path]) -> Optional[int]:
    file = Path(directory) / "adapter_model.safetensors"
    return file.stat().st_size if file.is_file() else None
