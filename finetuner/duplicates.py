"""Exact and near duplicates within the training texts, and training texts that leak into the evaluation texts.

Exact: equal after :func:`normalize_text` (Unicode NFKC, case folded, runs of whitespace made one space,
punctuation at both ends removed); found by hashing, no model needed. Near: cosine similarity of the sentence
embeddings (:func:`finetuner.embeddings.embed`) at least ``threshold``, and not exact. Similarities are computed
``chunk_rows`` rows at a time, so memory stays at ``chunk_rows`` × rows, never rows × rows.

Each duplicate is listed once, against one other row: a training row against the earliest earlier row with the
same text (exact) or the most similar earlier row (near); an evaluation row against the first training row with
the same text, or the most similar training row.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import pandas as pd

from .data import validate_texts
from .embeddings import embed
from .errors import DataError
from .models import DEFAULT_MODEL

EXACT_TRAIN, NEAR_TRAIN = "exact within train", "near within train"
EXACT_EVAL, NEAR_EVAL = "exact train/eval", "near train/eval"
KINDS = (EXACT_TRAIN, NEAR_TRAIN, EXACT_EVAL, NEAR_EVAL)
DUPLICATE_COLUMNS = ("kind", "row", "other_row", "similarity", "text", "other_text")
_SPACES = re.compile(r"\s+")

Pair = Tuple[str, int, int, float]  # kind, row, other row, similarity


def normalize_text(text: str) -> str:
    """The form two texts must share to count as exact duplicates (a text of only punctuation keeps it)."""
    text = _SPACES.sub(" ", unicodedata.normalize("NFKC", str(text)).casefold()).strip()
    start, end = 0, len(text)
    while start < end and _is_edge(text[start]):
        start += 1
    while end > start and _is_edge(text[end - 1]):
        end -= 1
    return text[start:end] or text


def _is_edge(char: str) -> bool:
    return char.isspace() or unicodedata.category(char).startswith("P")


@dataclass
class DuplicateReport:
    """Duplicates found by :func:`find_duplicates`.

    In :meth:`to_frame`, ``row``/``text`` are the duplicate and ``other_row``/``other_text`` the row it repeats;
    for the train/eval kinds ``row`` is the training row and ``other_row`` the evaluation row. Rows are 0-based
    in their own list.
    """

    train_texts: List[str] = field(repr=False)
    eval_texts: Optional[List[str]] = field(repr=False)
    pairs: List[Pair]
    threshold: float

    def to_frame(self) -> pd.DataFrame:
        """One row per duplicate, by kind (in :data:`KINDS` order), then most similar first."""
        rows = []
        for kind, row, other, similarity in self.pairs:
            across = kind in (EXACT_EVAL, NEAR_EVAL)
            other_text = self.eval_texts[other] if across and self.eval_texts is not None else self.train_texts[other]
            rows.append((kind, row, other, similarity, self.train_texts[row], other_text))
        frame = pd.DataFrame(rows, columns=list(DUPLICATE_COLUMNS))
        order = frame["kind"].map(KINDS.index)
        frame = frame.assign(_order=order).sort_values(["_order", "similarity", "row", "other_row"],
                                                      ascending=[True, False, True, True], kind="stable")
        return frame.drop(columns="_order").astype({"row": int, "other_row": int, "similarity": float}) \
            .reset_index(drop=True)

    def counts(self) -> Dict[str, int]:
        """How many duplicates of each kind (every kind is a key)."""
        counts = dict.fromkeys(KINDS, 0)
        for kind, *_ in self.pairs:
            counts[kind] += 1
        return counts

    def summary(self) -> str:
        """One markdown line for a validation summary."""
        counts = self.counts()
        parts = []
        if counts[EXACT_TRAIN]:
            parts.append(f"{counts[EXACT_TRAIN]} exact duplicate(s) within training")
        if counts[NEAR_TRAIN]:
            parts.append(f"{counts[NEAR_TRAIN]} near-duplicate(s) within training")
        if counts[EXACT_EVAL]:
            parts.append(f"{counts[EXACT_EVAL]} evaluation text(s) also in training (leakage: inflates scores)")
        if counts[NEAR_EVAL]:
            parts.append(f"{counts[NEAR_EVAL]} evaluation text(s) nearly identical to a training text")
        if not parts:
            across = " and no evaluation text in training" if self.eval_texts is not None else ""
            return f"**Duplicates:** none found{across}."
        near = f" (near: similarity ≥ {self.threshold:g})" if counts[NEAR_TRAIN] or counts[NEAR_EVAL] else ""
        return f"**Duplicates:** {'; '.join(parts)}{near}."


def find_duplicates(train_texts: Sequence[str], eval_texts: Optional[Sequence[str]] = None, *,
                    threshold: float = 0.95, model_name: str = DEFAULT_MODEL,
                    near: bool = True, chunk_rows: int = 1024,
                    train_embeddings: Optional[np.ndarray] = None) -> DuplicateReport:
    """Exact and near duplicates within ``train_texts`` and between them and ``eval_texts``.

    ``near=False`` finds exact duplicates only, at once (nothing is embedded); otherwise each distinct text is
    embedded once. ``threshold`` is the cosine similarity from which two texts count as near duplicates.
    ``train_embeddings`` (one row per training text, from :func:`~finetuner.embeddings.embed`) saves embedding the
    training texts again.
    """
    if not 0.0 < threshold <= 1.0:
        raise DataError(f"The similarity threshold must be in (0, 1]; got {threshold}.")
    if chunk_rows < 1:
        raise DataError(f"chunk_rows must be at least 1; got {chunk_rows}.")
    train = validate_texts(list(train_texts), what="training texts")
    evaluation = None if eval_texts is None else validate_texts(list(eval_texts), what="evaluation texts")
    keys = [normalize_text(text) for text in train]
    first: Dict[str, int] = {}
    pairs: List[Pair] = []
    for row, key in enumerate(keys):
        if key in first:
            pairs.append((EXACT_TRAIN, row, first[key], 1.0))
        else:
            first[key] = row
    for row, text in enumerate(evaluation or []):
        match = first.get(normalize_text(text))
        if match is not None:
            pairs.append((EXACT_EVAL, match, row, 1.0))
    if near:
        pairs += _near_pairs(train, evaluation, first, threshold, model_name, chunk_rows, train_embeddings)
    return DuplicateReport(train, evaluation, pairs, threshold)


def _near_pairs(train: List[str], evaluation: Optional[List[str]], first: Dict[str, int], threshold: float,
                model_name: str, chunk_rows: int, train_embeddings: Optional[np.ndarray]) -> List[Pair]:
    """Near duplicates among the distinct training texts (``first``: text key -> first row), and evaluation
    texts without an exact match that are near a training text."""
    distinct = list(first.values())  # the first row of each distinct text, in order
    if train_embeddings is not None:
        if len(train_embeddings) != len(train):
            raise ValueError(f"{len(train_embeddings)} embeddings for {len(train)} training texts")
        vectors = np.asarray(train_embeddings, dtype=np.float32)[distinct]
    else:
        vectors = embed([train[i] for i in distinct], model_name) if distinct else np.zeros((0, 0), np.float32)
    pairs: List[Pair] = [(NEAR_TRAIN, distinct[i], distinct[j], similarity)
                         for i, j, similarity in _most_similar_earlier(vectors, threshold, chunk_rows)]
    unmatched = [row for row, text in enumerate(evaluation or []) if normalize_text(text) not in first]
    if unmatched and distinct:
        queries = embed([evaluation[i] for i in unmatched], model_name)
        pairs += [(NEAR_EVAL, distinct[j], unmatched[i], similarity)
                  for i, j, similarity in _most_similar(queries, vectors, threshold, chunk_rows)]
    return pairs


def _most_similar_earlier(vectors: np.ndarray, threshold: float, chunk_rows: int) -> List[Tuple[int, int, float]]:
    """``(i, j, similarity)`` for each row i whose most similar earlier row j reaches ``threshold``."""
    found = []
    for start in range(0, len(vectors), chunk_rows):
        stop = min(start + chunk_rows, len(vectors))
        sims = vectors[start:stop] @ vectors[:stop].T  # float32, chunk × rows so far
        earlier = np.arange(stop)[None, :] < np.arange(start, stop)[:, None]
        sims = np.where(earlier, sims, -np.inf)
        found += _best(sims, threshold, offset=start)
    return found


def _most_similar(queries: np.ndarray, vectors: np.ndarray, threshold: float,
                  chunk_rows: int) -> List[Tuple[int, int, float]]:
    """``(i, j, similarity)`` for each query i whose most similar row j of ``vectors`` reaches ``threshold``."""
    found = []
    for start in range(0, len(queries), chunk_rows):
        found += _best(queries[start:start + chunk_rows] @ vectors.T, threshold, offset=start)
    return found


def _best(sims: np.ndarray, threshold: float, offset: int) -> List[Tuple[int, int, float]]:
    best = sims.argmax(axis=1)
    top = sims[np.arange(len(sims)), best]
    return [(offset + int(i), int(best[i]), round(float(min(top[i], 1.0)), 6))
            for i in np.flatnonzero(top >= threshold)]
