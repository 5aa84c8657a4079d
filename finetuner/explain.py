"""Why a model gave a label: word-level attributions by occlusion (leave one word out).

Each word (or punctuation mark) is removed in turn and the text is classified again; a word's score is how much
the explained label's log-odds, log(p / (1 - p)), drop without it (positive: the word supports the label, negative:
it speaks against it). Log-odds, not the probability itself: a confident model's probabilities sit near 1, where
leaving out a decisive word moves 0.99999 to 0.999 — a change of 0.001 in probability, of 4.6 in log-odds. The
probabilities are clipped to [1e-6, 1 - 1e-6] first, so scores stay finite (at most about ±27.6); beyond that
clip a model is too sure for occlusion to tell its words apart.

Everything goes through the classifier's ``predict_proba_array`` in one batch of n + 1 texts, so it works the same
for every kind of model the project trains (full fine-tunes, LoRA decoders, embedding heads).

Each task (the classifier's ``task``, :data:`finetuner.tasks.TASKS`) is explained in its own terms: one label per
text, the change in the label's log-odds (softmax probabilities); several labels per text, the change in the
explained label's own log-odds (its sigmoid probability, independent of the other labels; by default the most
probable label is explained); a number per text (regression), the change in the predicted number itself, in the
target's units (positive: the word raises the predicted value, negative: it lowers it).

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
from .metrics import outputs_to_scores

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
# Regression: changes below this share of the predicted value's size are shown pale (the log-odds floor's role).
REGRESSION_FLOOR_SHARE = 0.01
# Probabilities clipped this far from 0 and 1 before they are turned back into logits to pool windows.
_POOL_CLIP = 1e-15


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
    the label). ``probability`` is the label's probability for the whole text.

    ``task`` says what was explained: "single_label" and "multi_label" as above (for several labels per text,
    ``probability`` is the label's own sigmoid probability and ``threshold`` the model's decision threshold for
    it: the label is predicted when ``probability >= threshold``); "regression": ``label`` is the target's name,
    ``probability`` the predicted number and each score how much the token raises (positive) or lowers
    (negative) it, in the target's units."""

    text: str
    label: str
    probability: float
    tokens: List[str]
    starts: List[int]
    scores: List[float]
    note: str = ""
    task: str = "single_label"
    threshold: Optional[float] = None

    @property
    def value(self) -> float:
        """The predicted number (regression; for the other tasks the label's probability)."""
        return self.probability

    @property
    def floor(self) -> float:
        """Scores smaller than this are noise for the colours: :data:`HIGHLIGHT_FLOOR` in log-odds, or
        :data:`REGRESSION_FLOOR_SHARE` of the predicted value's size for a number."""
        if self.task == "regression":
            return max(REGRESSION_FLOOR_SHARE * abs(self.probability), 1e-12)
        return HIGHLIGHT_FLOOR

    def highlighted(self) -> List[Tuple[str, Optional[float]]]:
        """The whole text as ``(piece, score)`` pairs for ``gr.HighlightedText``: tokens with their score scaled
        to [-1, 1] (the colour's strength) by the largest absolute score, or by :attr:`floor` when all are
        smaller (so that noise stays pale), and the text between tokens with None."""
        scale = max([abs(s) for s in self.scores] + [self.floor])
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

    def bottom(self, k: int = 5, min_score: float = 0.0) -> List[Tuple[str, float]]:
        """Up to ``k`` tokens that oppose the label (regression: lower the value) most, by more than
        ``min_score``, strongest first (their scores are negative)."""
        ranked = sorted(zip(self.tokens, self.scores), key=lambda pair: pair[1])
        return [(token, score) for token, score in ranked[:k] if score < -min_score]

    def headline(self, k: int = 3) -> str:
        """One plain-text line for people: the label (and its probability, or the predicted value) and the
        words that matter most. Noise (changes under :attr:`floor`) is not named."""
        def quoted(pairs: List[Tuple[str, float]]) -> str:
            return ", ".join(f"“{token}”" for token, _ in pairs)

        up, down = self.top(k, self.floor), self.bottom(k, self.floor)
        if self.task == "regression":
            parts = [f"predicted {self.label} {self.probability:.4g}"]
            parts += [f"raised most by {quoted(up)}"] if up else []
            parts += [f"lowered most by {quoted(down)}"] if down else []
            if len(parts) == 1:
                parts.append("no single word moves it")
            return ": ".join([parts[0], "; ".join(parts[1:])])
        decided = ""
        if self.threshold is not None:
            chosen = "predicted" if self.probability >= self.threshold else "not predicted"
            decided = f", {chosen} at threshold {self.threshold:.2f}"
        return (f"{self.label} ({self.probability:.0%}{decided}): most supported by "
                f"{quoted(up) or 'no single word'}")


def explain(classifier: Classifier, text: str, target: Optional[Union[str, int]] = None, *,
            max_units: int = MAX_UNITS) -> Explanation:
    """Attributions of ``text``'s words for ``target`` (a class name; default: the predicted class, for several
    labels per text the most probable label; a regression model has one target, its name or None)."""
    if not isinstance(text, str) or not text.strip():
        raise DataError("Type a text to explain.")
    if max_units < 1:
        raise DataError(f"max_units must be at least 1; got {max_units}.")
    names = [str(name) for name in classifier.labels]
    task = task_of(classifier)
    spans, note = word_spans(text, max_units)
    windows = getattr(classifier, "window_spans", None)
    windows = windows(text) if windows is not None else []
    if len(windows) > 1:
        whole, probabilities = _in_windows(classifier, text, spans, windows, task)
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
        what = "target" if task == "regression" else "label"
        raise DataError(f"Unknown {what} {target!r}; the model's {what}s are: {', '.join(names)}.")
    if task == "regression":  # the change in the predicted number itself
        values = np.asarray(probabilities[:, column], dtype=np.float64)
        scores = [float(values[0] - value) for value in values[1:]]
    else:
        odds = log_odds(probabilities[:, column])
        scores = [float(odds[0] - value) for value in odds[1:]]
    threshold = None
    if task == "multi_label":
        limits = getattr(classifier, "label_thresholds", None)
        threshold = float(limits()[column]) if limits is not None else 0.5
    return Explanation(text=text, label=names[column], probability=float(whole[column]),
                       tokens=[text[start:end] for start, end in spans], starts=[start for start, _ in spans],
                       scores=scores, note=note, task=task, threshold=threshold)


def task_of(classifier: Classifier) -> str:
    """The classifier's task ("single_label" when it does not say): its ``task``, else its label map's."""
    task = getattr(classifier, "task", None)
    if not isinstance(task, str):
        task = getattr(getattr(classifier, "label_map", None), "task", None)
    return task if task in ("multi_label", "regression") else "single_label"


def _in_windows(classifier: Classifier, text: str, spans: Sequence[Tuple[int, int]],
                windows: Sequence[Tuple[int, int]], task: str = "single_label") -> Tuple[np.ndarray, np.ndarray]:
    """The probabilities of ``text``, and those of its windows pooled (row 0) and pooled without each span (rows
    1…), for a text the classifier reads in ``windows`` (character spans) and pools by the mean of their logits
    (softmax of the mean of the windows' log-probabilities, the same thing; several labels per text: the sigmoid
    of the mean of each label's log-odds; numbers: the mean of the values): a span is left out of the windows that
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
    logs = _as_logits(probabilities[1:], task)  # the model's outputs again, up to a per-row shift (softmax)
    base = logs[:len(pieces)]
    pooled = [base.mean(axis=0)]
    for rows in where:
        each = base.copy()
        for w, row in rows.items():
            each[w] = logs[row]
        pooled.append(each.mean(axis=0))
    return probabilities[0], outputs_to_scores(np.asarray(pooled), task)


def _as_logits(scores: np.ndarray, task: str) -> np.ndarray:
    """Outputs that pool by their mean as the model's logits do, from what ``predict_proba_array`` gives: the
    log-probabilities (softmax), each label's log-odds (sigmoid) or the values themselves (regression)."""
    scores = np.asarray(scores, dtype=np.float64)
    if task == "regression":
        return scores
    if task == "multi_label":
        p = np.clip(scores, _POOL_CLIP, 1 - _POOL_CLIP)
        return np.log(p) - np.log1p(-p)
    return np.log(np.clip(scores, 1e-300, None))  # softmax(mean log p) = softmax(mean logits)


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
