"""Sentence embeddings from an encoder (the bundled all-MiniLM-L6-v2 by default) via sentence-transformers.

They feed everything that needs a fast model of the texts: the embedding-head and few-shot methods, label-issue
finding, near-duplicate detection and the instant baselines.
"""

from __future__ import annotations

import functools
import threading
from typing import Sequence

import numpy as np

from .data import validate_texts
from .models import DEFAULT_MODEL, ResolvedModel, quiet_loading, resolve_model

_LOCK = threading.Lock()


def load_encoder(resolved: ResolvedModel, device: str | None = None):
    """A fresh ``SentenceTransformer`` for the model (mean pooling when the directory does not say otherwise)."""
    from sentence_transformers import SentenceTransformer
    with quiet_loading():
        return SentenceTransformer(resolved.location, device=device, trust_remote_code=False,
                                   local_files_only=resolved.source != "hub")


@functools.lru_cache(maxsize=2)
def _shared_encoder(location: str, source: str):
    return load_encoder(ResolvedModel(location, location, source))


def embed(texts: Sequence[str], model_name: str = DEFAULT_MODEL, batch_size: int = 64) -> np.ndarray:
    """L2-normalised sentence embeddings, shape (texts, dimensions), rows in input order.

    The encoder is loaded once per process and kept (the bundled model: ~90 MB); it is only read, never trained.
    """
    texts = validate_texts(list(texts), what="texts to embed")
    resolved = resolve_model(model_name)
    encoder = _shared_encoder(resolved.location, resolved.source)
    with _LOCK:  # one batch loop at a time: threads would only compete for the same cores
        vectors = encoder.encode(texts, batch_size=batch_size, convert_to_numpy=True, normalize_embeddings=True,
                                 show_progress_bar=False)
    return np.asarray(vectors, dtype=np.float32)
