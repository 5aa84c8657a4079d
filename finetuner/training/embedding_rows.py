"""Train only the rows of the word-embedding matrix that the training texts use.

A word-embedding row gets a gradient only when its token is in the batch, so every other row's AdamW update is
zero: those rows only cost memory traffic (a dense gradient of the whole matrix, its clipping norm and the
optimizer's pass over every row and both moments), a fifth of a training step for a small encoder on short texts
(bench/results/auto.md#embedding-rows). :func:`seen_rows_only` freezes the matrix and trains a copy of
the rows that the training data's tokens (and the padding token) use; afterwards they are written back. The
updates are the same as training the whole matrix, but for the decoupled weight decay that AdamW would apply to the
rows no training text uses (a factor of ``1 - lr * weight_decay`` a step: 0.01 % over a run at the default
settings).
"""

from __future__ import annotations

import contextlib
from typing import Iterator, Optional, Sequence

import numpy as np
import torch
from torch import nn

ROWS_NAME = "trained_rows"  # the parameter's name on the embedding module (in checkpoints written while training)
# Texts that use more than this share of the rows leave little to save: the matrix trains whole.
MOST_ROWS = 0.9


def token_ids_in(dataset, pad_token_id: Optional[int]) -> np.ndarray:
    """The distinct token ids of a tokenized dataset's ``input_ids`` column (its selected rows only), with the
    padding token's."""
    column = dataset.with_format("arrow")["input_ids"].combine_chunks().flatten()
    return _distinct(column.to_numpy(zero_copy_only=False), pad_token_id)


def token_ids_of(tokenizer, texts: Sequence[str]) -> np.ndarray:
    """The distinct token ids of ``texts`` whole (every token a truncated text could keep), with the padding
    token's."""
    encoded = tokenizer(list(texts), add_special_tokens=True, verbose=False)["input_ids"]
    return _distinct(np.fromiter((i for row in encoded for i in row), dtype=np.int64), tokenizer.pad_token_id)


def _distinct(ids: np.ndarray, pad_token_id: Optional[int]) -> np.ndarray:
    ids = np.unique(ids) if pad_token_id is None else np.union1d(ids, [pad_token_id])
    return ids.astype(np.int64)


def _word_embeddings(model: nn.Module) -> Optional[nn.Embedding]:
    """The trainable word-embedding matrix that only feeds the input (none: a tied output layer, an adapter's
    frozen base, or a model without one)."""
    getter = getattr(model, "get_input_embeddings", None)
    embedding = getter() if getter is not None else None
    if (not isinstance(embedding, nn.Embedding) or not embedding.weight.requires_grad or embedding.sparse
            or embedding.max_norm is not None or embedding.scale_grad_by_freq):
        return None
    output = getattr(model, "get_output_embeddings", lambda: None)()
    if output is not None and getattr(output, "weight", None) is embedding.weight:
        return None
    return embedding


@contextlib.contextmanager
def seen_rows_only(model: nn.Module, token_ids: np.ndarray) -> Iterator[bool]:
    """Within the block, ``model``'s word embeddings train only the rows of ``token_ids`` (yields whether it
    applies: not to tied or frozen embeddings, nor when the texts use nearly every row, :data:`MOST_ROWS`); on
    leaving, the trained rows are written into the matrix and the model is as it was, also when training stopped
    early."""
    embedding = _word_embeddings(model)
    if (embedding is None or len(token_ids) > MOST_ROWS * embedding.num_embeddings
            or (len(token_ids) and int(token_ids.max()) >= embedding.num_embeddings)):
        yield False
        return
    weight = embedding.weight
    ids = torch.as_tensor(token_ids, dtype=torch.long, device=weight.device)
    slots = torch.full((embedding.num_embeddings,), -1, dtype=torch.long, device=weight.device)
    slots[ids] = torch.arange(len(ids), device=weight.device)
    # The padding token's row gets no gradient, as in the matrix.
    pad_slot = -1 if embedding.padding_idx is None else int(slots[embedding.padding_idx])
    padding = pad_slot if pad_slot >= 0 else None

    def use_trained_rows(module: nn.Embedding, inputs, output: torch.Tensor) -> torch.Tensor:
        """The trained copy's rows where a token has one, the frozen matrix's elsewhere (tokens without a row look
        up slot 0 only to be replaced)."""
        slot = slots[inputs[0]]
        trained = nn.functional.embedding(slot.clamp(min=0), getattr(module, ROWS_NAME), padding_idx=padding)
        return torch.where((slot >= 0).unsqueeze(-1), trained.to(output.dtype), output)

    embedding.register_parameter(ROWS_NAME, nn.Parameter(weight.detach()[ids].clone()))
    weight.requires_grad_(False)
    handle = embedding.register_forward_hook(use_trained_rows)
    try:
        yield True
    finally:
        handle.remove()
        with torch.no_grad():
            weight[ids] = getattr(embedding, ROWS_NAME).detach().to(weight.dtype)
        delattr(embedding, ROWS_NAME)
        weight.requires_grad_(True)
