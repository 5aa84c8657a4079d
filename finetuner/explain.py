"""Why a model gave a label: word-level attributions by occlusion (leave one word out).

Each word (or punctuation mark) is removed in turn and the text is classified again; a word's score is how much
the explained label's log-odds, log(p / (1 - p)), drop without it (positive: the word supports the label, negative:
it speaks against it). Log-odds, not the probability itself: a confident model's probabilities sit near 1, where
leaving out a decisive word moves 0.99999 to 0.999 — a change of 0.001 in probability, of 4.6 in log-odds. The
probabilities are clipped to [1e-6, 1 - 1e-6] first, so scores stay finite (at most about ±27.6); beyond that
clip a model is too sure for occlusion to tell its words apart.

Everything goes through the classifier's ``predict_proba_array`` in one batch of n + 1 texts, so it works the same
for every kind of model the project trains (full fine-tunes, LoRA decoders, embedding heads).

A text the model reads in several windows (longer than its ``max_length``: :mod:`finetuner.training.windows`) is
explained window by window: a unit is left out of the windows that read it and the windows' outputs are pooled as
predictions pool them, so the work grows with the windows plus about one window per unit, not the windows times
the units.

Long texts: at most ``max_units`` units are occluded. Beyond that, neighbouring words are grouped into spans of
equal size (a span is then the unit: removed together, scored together) and :attr:`Explanation.note` says so.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import List, Optional, Protocol, Sequence, Tuple, Union

import numpy as np
import torch

from .errors import DataError

MAX_UNITS = 64
# Log-odds changes below this are shown pale: the colour scale never stretches beyond it. 0.1 in log-odds is about
# 2.5 points of probability around p = 0.5, the smallest change a person would call an effect.
HIGHLIGHT_FLOOR = 0.1
# The probabilities' clip before log-odds: finite scores for saturated probabilities (log-odds within ±13.8).
_CLIP = 1e-6
# Words (with inner apostrophes, e.g. "isn't") and single punctuation marks.
_UNIT = re.compile(r"\w+(?:['’]\w+)*|[^\w\s]")
# What a text with its only unit removed is classified as (an empty text cannot be classified).
_EMPTY_STAND_IN = "."


class Classifier(Protocol):
    """What :func:`explain` needs of a model (:class:`~finetuner.classifier.TextClassifier`, ``LLMFinetuner``)."""

    @property
    def labels(self) -> List[str]: ...

    def predict_proba_array(self, texts: Sequence[str]) -> np.ndarray: ...


@dataclass
class Explanation:
    """Word-level attributions of one text for one label.

    ``tokens`` are the occluded units (words and punctuation marks, or spans of words for long texts), found in
    ``text`` at character offsets ``starts``; ``scores`` has one value per token: the drop in the label's
    log-odds, log(p / (1 - p)) with p clipped to [1e-6, 1 - 1e-6], when the token is removed (positive: supports
    the label). ``probability`` is the label's probability for the whole text."""

    text: str
    label: str
    probability: float
    tokens: List[str]
    starts: List[int]
    scores: List[float]
    note: str = ""

    def highlighted(self) -> List[Tuple[str, Optional[float]]]:
        """The whole text as ``(piece, score)`` pairs for ``gr.HighlightedText``: tokens with their score scaled
        to [-1, 1] (the colour's strength) by the largest absolute score, or by ``HIGHLIGHT_FLOOR`` when all are
        smaller (so that noise stays pale), and the text between tokens with None."""
        scale = max([abs(s) for s in self.scores] + [HIGHLIGHT_FLOOR])
        pieces: List[Tuple[str, Optional[float]]] = []
        end = 0
        for token, start, score in zip(self.tokens, self.starts, self.scores):
            if start > end:
                pieces.append((self.text[end:start], None))
            pieces.append((token, round(score / scale, 4)))
            end = start + len(token)
        if end < len(self.text):
            pieces.append((self.text[end:], None))
        return pieces

    def top(self, k: int = 5, min_score: float = 0.0) -> List[Tuple[str, float]]:
        """Up to ``k`` tokens that support the label most (by more than ``min_score``), strongest first."""
        ranked = sorted(zip(self.tokens, self.scores), key=lambda pair: -pair[1])
        return [(token, score) for token, score in ranked[:k] if score > min_score]


def explain(classifier: Classifier, text: str, target: Optional[Union[str, int]] = None, *,
            max_units: int = MAX_UNITS) -> Explanation:
    """Attributions of ``text``'s words for ``target`` (a class name; default: the predicted class)."""
    if not isinstance(text, str) or not text.strip():
        raise DataError("Type a text to explain.")
    if max_units < 1:
        raise DataError(f"max_units must be at least 1; got {max_units}.")
    names = [str(name) for name in classifier.labels]
    spans, note = word_spans(text, max_units)
    windows = getattr(classifier, "window_spans", None)
    windows = windows(text) if windows is not None else []
    if len(windows) > 1:
        whole, probabilities = _in_windows(classifier, text, spans, windows)
        note = " ".join(filter(None, [note, f"Read in {len(windows)} overlapping windows: each unit is left out of "
                                            "the windows that read it."]))
    else:
        with torch.no_grad():  # no gradients needed: a little faster for models that would record them
            probabilities = classifier.predict_proba_array([text] + [_without(text, start, end)
                                                                     for start, end in spans])
        whole = probabilities[0]
    if target is None:
        column = int(whole.argmax())
    elif str(target) in names:
        column = names.index(str(target))
    else:
        raise DataError(f"Unknown label {target!r}; the model's labels are: {', '.join(names)}.")
    odds = log_odds(probabilities[:, column])
    scores = [float(odds[0] - value) for value in odds[1:]]
    return Explanation(text=text, label=names[column], probability=float(whole[column]),
                       tokens=[text[start:end] for start, end in spans], starts=[start for start, _ in spans],
                       scores=scores, note=note)


def _in_windows(classifier: Classifier, text: str, spans: Sequence[Tuple[int, int]],
                windows: Sequence[Tuple[int, int]]) -> Tuple[np.ndarray, np.ndarray]:
    """The probabilities of ``text``, and those of its windows pooled (row 0) and pooled without each span (rows
    1…), for a text the classifier reads in ``windows`` (character spans) and pools by the mean of their logits
    (softmax of the mean of the windows' log-probabilities, the same thing): a span is left out of the windows that
    read it, the other windows keep their output, so the work is the windows plus about one window per span,
    not one whole text per span (the longest BBC article, 16 windows: 64 spans cost 97 windows, not 1,040).
    The pooled rows use the windows' own texts throughout, so that only the span's absence moves a score."""
    pieces = [text[start:end] for start, end in windows]
    variants, where = [], []  # where[u]: {window: row of the window without span u}
    for start, end in spans:
        rows = {}
        for w, (w_start, w_end) in enumerate(windows):
            if start < w_end and end > w_start:
                rows[w] = len(pieces) + len(variants)
                variants.append(_without(pieces[w], max(start, w_start) - w_start, min(end, w_end) - w_start))
        where.append(rows)
    with torch.no_grad():
        probabilities = classifier.predict_proba_array([text] + pieces + variants)
    logs = np.log(np.clip(probabilities[1:].astype(np.float64), 1e-300, None))  # softmax(mean log p) = pooled
    base = logs[:len(pieces)]
    pooled = [base.mean(axis=0)]
    for rows in where:
        each = base.copy()
        for w, row in rows.items():
            each[w] = logs[row]
        pooled.append(each.mean(axis=0))
    pooled = np.exp(np.asarray(pooled) - np.max(pooled, axis=1, keepdims=True))
    return probabilities[0], pooled / pooled.sum(axis=1, keepdims=True)


def log_odds(probabilities: np.ndarray) -> np.ndarray:
    """log(p / (1 - p)) of each probability, clipped to [1e-6, 1 - 1e-6] first (finite for 0 and 1)."""
    p = np.clip(np.asarray(probabilities, dtype=np.float64), _CLIP, 1 - _CLIP)
    return np.log(p) - np.log1p(-p)


def word_spans(text: str, max_units: int = MAX_UNITS) -> Tuple[List[Tuple[int, int]], str]:
    """The (start, end) character spans of the units to occlude, and a note when words had to be grouped."""
    words = [match.span() for match in _UNIT.finditer(text)]
    if len(words) <= max_units:
        return words, ""
    size = math.ceil(len(words) / max_units)
    groups = [(words[i][0], words[min(i + size, len(words)) - 1][1]) for i in range(0, len(words), size)]
    return groups, (f"Long text: its {len(words)} words and punctuation marks are explained in {len(groups)} spans "
                    f"of up to {size} (at most {max_units} units are left out one at a time).")


def _without(text: str, start: int, end: int) -> str:
    """``text`` with the span removed (and the whitespace around it joined); a stand-in if nothing is left."""
    left, right = text[:start].rstrip(), text[end:].lstrip()
    rest = f"{left} {right}".strip() if left and right else (left or right)
    return rest if rest.strip() else _EMPTY_STAND_IN
