"""Texts longer than the model reads at once, read in overlapping windows: one tokenizer for training, prediction
(PyTorch and ONNX Runtime alike) and the length notice, and one way back from windows to texts.

A text longer than ``max_length`` tokens is cut by the fast tokenizer itself (``return_overflowing_tokens=True``
with ``stride``) into windows of ``max_length`` tokens, each with the model's special tokens, consecutive windows
sharing a quarter of their tokens (:func:`window_stride`). At most :data:`MAX_WINDOWS` windows are read per text,
so that one 1 MB cell cannot explode the work: what lies beyond them is cut, as truncation cuts today. A text that
fits is one row, tokenized exactly as without windows, so the short-text path does no extra work.

Training with the Trainer uses every window as a row labelled with its text's label; prediction and evaluation
average the windows' outputs per text (:class:`WindowPool`: the mean of the window logits, or of the window
embeddings for the embedding head, measured against the mean of probabilities and the maximum:
bench/results/long_texts.md).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
from transformers import BatchEncoding

# At most this many windows per text (and so at most this many times the work of a text that fits).
MAX_WINDOWS = 16
# Consecutive windows share this share of their tokens (the tokenizer's ``stride``).
OVERLAP = 0.25
# A dataset column with the text each row (window) comes from; present only where some text has several rows.
WINDOW_COLUMN = "window_of"
# How the windows' outputs become the text's (see WindowPool): "mean" of the logits (or embeddings), "mean_probs"
# (the mean of the windows' probabilities, as logits) or "max" (each class's largest logit).
AGGREGATIONS = ("mean", "mean_probs", "max")
AGGREGATION = "mean"
# No token spans more characters than this, so cutting a text at tokens * _CHARS_PER_TOKEN characters changes
# nothing the model sees, while sparing the tokenizer megabytes it would cut anyway.
_CHARS_PER_TOKEN = 32
# A UTF-8 byte becomes at most one token (byte-level BPE, byte fallback; WordPiece makes fewer), plus the special
# tokens and a sentencepiece word marker: a text of fewer bytes cannot be longer than the limit.
_EXTRA_TOKENS = 2


def clip_texts(texts: Sequence[str], max_tokens: int) -> List[str]:
    """Texts cut to what ``max_tokens`` tokens can cover (a 10 MB cell tokenizes in milliseconds)."""
    limit = max_tokens * _CHARS_PER_TOKEN
    return [text[:limit] for text in texts]


def can_window(tokenizer: Any) -> bool:
    """Whether ``tokenizer`` cuts texts into windows itself (the fast, Rust tokenizers do; slow ones truncate)."""
    return bool(getattr(tokenizer, "is_fast", False))


def window_stride(tokenizer: Any, max_length: int) -> int:
    """Tokens that consecutive windows share: a quarter of a window's text tokens (at least 0, fewer than all)."""
    content = max_length - tokenizer.num_special_tokens_to_add()
    return max(0, min(int(content * OVERLAP), content - 1))


def window_span(tokenizer: Any, max_length: int, max_windows: int = MAX_WINDOWS) -> int:
    """The tokens of text that ``max_windows`` windows cover (what lies beyond is cut)."""
    specials = tokenizer.num_special_tokens_to_add()
    content = max(1, max_length - specials)
    return content + (max_windows - 1) * (content - window_stride(tokenizer, max_length)) + specials


def encode_windows(tokenizer: Any, texts: Sequence[str], max_length: int, *, windows: bool = True,
                   max_windows: int = MAX_WINDOWS, **kwargs: Any) -> Tuple[BatchEncoding, List[int]]:
    """``texts`` tokenized for the model, one row per window, and the index in ``texts`` of each row's text.

    ``windows=False`` (or a tokenizer that cannot: :func:`can_window`) truncates each text to one row of
    ``max_length`` tokens instead. ``kwargs`` go to the tokenizer (``padding``, ``return_tensors``). Rows keep the
    order of ``texts``, a text's windows in reading order.
    """
    if not windows or not can_window(tokenizer):
        encoded = tokenizer(clip_texts(texts, max_length), truncation=True, max_length=max_length, **kwargs)
        return encoded, list(range(len(texts)))
    encoded = tokenizer(clip_texts(texts, window_span(tokenizer, max_length, max_windows)), truncation=True,
                        max_length=max_length, stride=window_stride(tokenizer, max_length),
                        return_overflowing_tokens=True, **kwargs)
    owners = [int(i) for i in encoded.pop("overflow_to_sample_mapping")]
    if len(owners) == len(texts):  # nothing too long: the rows are what truncation gives
        return encoded, owners
    keep, seen = [], Counter()
    for row, owner in enumerate(owners):
        seen[owner] += 1
        if seen[owner] <= max_windows:
            keep.append(row)
    if len(keep) < len(owners):
        encoded = select_rows(encoded, keep)
        owners = [owners[row] for row in keep]
    return encoded, owners


def window_spans(tokenizer: Any, text: str, max_length: int, windows: bool = True) -> List[Tuple[int, int]]:
    """The (start, end) characters of ``text`` that each of its windows reads (one span for a text that fits or
    without windows)."""
    if not windows or not can_window(tokenizer):
        return [(0, len(text))]
    encoded, _ = encode_windows(tokenizer, [text], max_length, return_offsets_mapping=True)
    spans = []
    for offsets in encoded["offset_mapping"]:
        real = [(start, end) for start, end in offsets if end > start]  # special tokens have (0, 0)
        spans.append((real[0][0], real[-1][1]) if real else (0, 0))
    return spans


def select_rows(encoded: BatchEncoding, rows: Sequence[int]) -> BatchEncoding:
    """The ``rows`` of a tokenizer's output (lists, numpy arrays or torch tensors)."""
    picked = {}
    for name, values in encoded.items():
        if isinstance(values, list):
            picked[name] = [values[row] for row in rows]
        else:
            picked[name] = values[list(rows)]
    return BatchEncoding(picked)


def window_batches(tokenizer: Any, texts: Sequence[str], max_length: int, batch_size: int, *, windows: bool = True,
                   tensors: str = "pt") -> Iterator[Tuple[List[int], BatchEncoding]]:
    """(text index of each row, padded rows as ``tensors``) for ``texts``: texts of similar length together, so
    padding stays small, and at most ``batch_size`` rows (windows) a batch. The caller puts each batch's outputs
    back with a :class:`WindowPool` (PyTorch and ONNX Runtime predict through this very function)."""
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    for start in range(0, len(order), batch_size):
        ids = order[start:start + batch_size]
        encoded, owners = encode_windows(tokenizer, [texts[i] for i in ids], max_length, windows=windows,
                                         padding=True, return_tensors=tensors)
        rows = [ids[owner] for owner in owners]
        if len(rows) <= batch_size:
            yield rows, encoded
            continue
        for first in range(0, len(rows), batch_size):
            part = range(first, min(first + batch_size, len(rows)))
            yield rows[first:first + batch_size], select_rows(encoded, part)


class WindowPool:
    """Outputs of windows (rows of logits or embeddings, in any order and batches) gathered into one row per text.

    A text read in one window keeps its row exactly; one read in several gets ``how`` of them (see
    :data:`AGGREGATIONS`; embeddings take "mean")."""

    def __init__(self, num_texts: int, width: int, how: str = AGGREGATION):
        if how not in AGGREGATIONS:
            raise ValueError(f"how must be one of {AGGREGATIONS}; got {how!r}")
        self.num_texts, self.width, self.how = num_texts, width, how
        self._rows: List[np.ndarray] = []
        self._values: List[np.ndarray] = []

    def add(self, rows: Sequence[int], values: np.ndarray) -> None:
        self._rows.append(np.asarray(rows, dtype=np.int64))
        self._values.append(np.asarray(values, dtype=np.float32))

    def result(self) -> np.ndarray:
        out = np.zeros((self.num_texts, self.width), dtype=np.float32)
        if not self._rows:
            return out
        rows, values = np.concatenate(self._rows), np.concatenate(self._values)
        counts = np.bincount(rows, minlength=self.num_texts)
        single = counts[rows] == 1
        out[rows[single]] = values[single]
        if single.all():
            return out
        rows, values = rows[~single], values[~single].astype(np.float64)
        texts = np.unique(rows)
        if self.how == "max":
            gathered = np.full((self.num_texts, self.width), -np.inf)
            np.maximum.at(gathered, rows, values)
        else:
            if self.how == "mean_probs":
                shifted = np.exp(values - values.max(axis=1, keepdims=True))
                values = shifted / shifted.sum(axis=1, keepdims=True)
            gathered = np.zeros((self.num_texts, self.width))
            np.add.at(gathered, rows, values)
            gathered /= np.maximum(counts, 1)[:, None]
            if self.how == "mean_probs":
                gathered = np.log(np.clip(gathered, 1e-30, None))
        out[texts] = gathered[texts]
        return out


def pool_predictions(predictions: np.ndarray, labels: np.ndarray, owners: Sequence[int],
                     how: str = AGGREGATION) -> Tuple[np.ndarray, np.ndarray]:
    """Per-window logits and labels (an evaluation's, rows in ``owners``' order) as per-text logits and labels."""
    owners = np.asarray(owners, dtype=np.int64)
    texts, first = np.unique(owners, return_index=True)
    index = np.searchsorted(texts, owners)  # texts numbered 0..n-1 in case some are missing
    pool = WindowPool(len(texts), predictions.shape[-1], how)
    pool.add(index, predictions)
    return pool.result(), np.asarray(labels)[first]


def token_lengths(tokenizer: Any, texts: Sequence[str], at_most: int,
                  cache: Optional[Dict[Tuple[int, str], int]] = None) -> List[int]:
    """The number of tokens of each text (special tokens included), exact up to ``at_most``; a longer text counts
    at least ``at_most + 1``. ``cache``: counts kept from earlier calls with this tokenizer (the app's Data tab
    counts again after every edit), filled in here."""
    if cache is None:
        if not texts:
            return []
        return [len(ids) for ids in tokenizer(clip_texts(texts, at_most + 1), truncation=False)["input_ids"]]
    missing = list(dict.fromkeys(text for text in texts if (at_most, text) not in cache))
    cache.update(((at_most, text), length) for text, length in zip(missing, token_lengths(tokenizer, missing,
                                                                                           at_most)))
    return [cache[(at_most, text)] for text in texts]


def may_be_longer(tokenizer: Any, text: str, tokens: int) -> bool:
    """Whether ``text`` may be longer than ``tokens`` tokens: False when it has too few UTF-8 bytes for that."""
    floor = tokens - _EXTRA_TOKENS - tokenizer.num_special_tokens_to_add()
    return len(text) > floor // 4 and len(text.encode("utf-8")) > floor


@dataclass(frozen=True)
class LongTexts:
    """How many texts are longer than ``max_length`` tokens and what happens to them (``str()``: the notice the
    app's Data tab and the start of a training show)."""

    count: int
    total: int
    max_length: int
    windows: bool
    beyond_windows: int = 0  # texts longer than MAX_WINDOWS windows cover: cut after them
    span: int = 0  # the tokens MAX_WINDOWS windows cover

    def __bool__(self) -> bool:
        return self.count > 0

    def __str__(self) -> str:
        if not self.count:
            return f"No text is longer than {self.max_length} tokens."
        head = (f"{self.count:,} of {self.total:,} texts are longer than {self.max_length} tokens: "
                if self.count != 1 else f"1 of {self.total:,} texts is longer than {self.max_length} tokens: ")
        if not self.windows:
            return head + f"only the first {self.max_length} tokens of each are read (long_texts='truncate')."
        text = head + (f"each is read in overlapping windows of {self.max_length} tokens (up to {MAX_WINDOWS} per "
                       "text), and its prediction averages them.")
        if self.beyond_windows:
            one = self.beyond_windows == 1
            text += (f" {self.beyond_windows:,} of them {'goes' if one else 'go'} beyond what {MAX_WINDOWS} windows "
                     f"cover: only {'its' if one else 'their'} first {self.span:,} tokens are read.")
        return text


def long_texts(tokenizer: Any, texts: Sequence[str], max_length: int, windows: bool = True,
               lengths: Optional[Sequence[int]] = None,
               cache: Optional[Dict[Tuple[int, str], int]] = None) -> LongTexts:
    """Count the ``texts`` longer than ``max_length`` tokens (and, read in windows, those longer than the windows
    cover). ``lengths``: their token counts when known (e.g. :func:`token_lengths` up to at least
    ``max_length``); else only the texts with more UTF-8 bytes than ``max_length`` are tokenized. ``cache``: see
    :func:`token_lengths`."""
    windows = windows and can_window(tokenizer)
    if lengths is not None:
        candidates = [text for text, length in zip(texts, lengths) if length > max_length]
    else:
        candidates = [text for text in texts if may_be_longer(tokenizer, text, max_length)]
    span = window_span(tokenizer, max_length) if windows else max_length
    counted = token_lengths(tokenizer, candidates, span, cache)
    return LongTexts(count=sum(n > max_length for n in counted), total=len(texts), max_length=max_length,
                     windows=windows, beyond_windows=sum(n > span for n in counted) if windows else 0, span=span)
