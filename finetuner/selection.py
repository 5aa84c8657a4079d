"""``method="auto"`` as budgeted model selection: the pure decisions.

Which candidates to try and in which order (:func:`candidate_methods`, from the measured rule in
:mod:`finetuner.method_choice`; the embedding head first, seconds, then the others most promising first),
which training rows to hold out to score them (:func:`validation_split`), what each will cost
(:func:`estimate_seconds`, from the encoder's measured speed), which one wins (:func:`pick`: the best validation
score, where the prior's favourite keeps its place unless another beats it beyond noise) and whether the winner is
trained again on every row (:func:`should_refit`). :mod:`finetuner.autoselect` carries them out. The score is
accuracy, or macro-F1 when the classes are skewed and the loss is weighted by class
(:func:`imbalance_handling`, :mod:`finetuner.imbalance`).

Measured: bench/results/auto.md, bench/results/imbalance.md.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from .imbalance import ACCURACY, MACRO_F1, imbalance_handling, metric_name
from .method_choice import (FEWSHOT_BELOW_EXAMPLES_PER_CLASS, FEWSHOT_MAX_CLASSES, FEWSHOT_MAX_ROWS,
                            is_encoder)
from .methods import registry
from .training.embedding_methods import MIN_PAIRS, pair_budget

# The share of the training rows held out to score the candidates: a fifth of small data, a tenth from this many
# rows on, never more than MAX_VALIDATION_ROWS.
VALIDATION_FRACTION_SMALL, VALIDATION_FRACTION_LARGE, LARGE_FROM_ROWS = 0.2, 0.1, 1000
MAX_VALIDATION_ROWS = 1000
# Fewer held-out rows than this cannot tell candidates apart: the prior's favourite trains on every row instead.
MIN_VALIDATION_ROWS = 20
# A candidate displaces one the prior ranks higher only when it is right on more of the held-out rows where the
# two disagree by more than this many standard deviations (a paired, McNemar-style comparison).
SIGNIFICANCE_Z = 1.0
# The winner is trained again on every training row (held-out ones included) when the classes have fewer
# examples than this (median): below it, a fifth more rows is worth a point or more on the learning curves
# measured (bench/results/method_choice.md#larger-data).
REFIT_BELOW_EXAMPLES_PER_CLASS = 200
# A temperature fitted on fewer held-out rows than this is trusted only to soften the winner's probabilities (over
# 1): a sharpening one followed the rows' noise (bench/results/auto.md#few-held-out-rows).
MIN_CALIBRATION_ROWS = 100
# Training time per text and epoch, in multiples of the time to embed one text (a forward pass in inference
# mode): forward and backward with optimizer steps; contrastive tuning per text of a pair; fixed start-up seconds
# of contrastive tuning (measured: bench/results/auto.md#cost-model).
TRAIN_COST_PER_TEXT = 4.0
PAIR_COST_PER_TEXT = 5.0
CONTRASTIVE_START_SECONDS = 3.0


@dataclass(frozen=True)
class Candidate:
    """A method that ``auto`` may train, ranked by how accurate the measurements say it is here (0 = best)."""

    method: str
    rank: int


@dataclass
class CandidateResult:
    """How one candidate did on the held-out rows: ``status`` is ``trained``, ``skipped`` (over the budget; ``note``
    says why), ``stopped`` or ``failed``; ``score`` is its validation ``metric`` (``accuracy``, or ``macro_f1``
    with class weights); ``correct`` the held-out rows it got right (not saved)."""

    method: str
    rank: int
    status: str
    score: Optional[float] = None
    seconds: float = 0.0
    estimated_seconds: Optional[float] = None
    note: str = ""
    settings: Dict[str, Any] = field(default_factory=dict)
    correct: Optional[np.ndarray] = field(default=None, repr=False, compare=False)
    metric: str = ACCURACY

    def as_dict(self) -> Dict[str, Any]:
        """What the run record and the saved model keep (``correct`` left out)."""
        values = {"method": self.method, "status": self.status, "score": self.score,
                  "seconds": round(self.seconds, 2), "estimated_seconds": self.estimated_seconds,
                  "note": self.note, "metric": self.metric}
        if self.settings:
            values["settings"] = dict(self.settings)
        return values

    def line(self) -> str:
        """A leaderboard line: "head then fine-tuning: validation accuracy 0.812 (9.1 s)" (or macro-F1)."""
        name = registry.METHOD_NAMES.get(self.method, self.method)
        if self.status == "trained":
            return (f"{name}: validation {metric_name(self.metric)} {self.score:.3f} ({self.seconds:.1f} s)"
                    + (f" — {self.note}" if self.note else ""))
        return f"{name}: {self.status}{' — ' + self.note if self.note else ''}"


def candidate_methods(class_counts: Mapping[str, int], model_type: str) -> List[Candidate]:
    """The methods worth trying for this data and model, most accurate first by the measured rule
    (bench/results/method_choice.md#the-rule): a decoder trains a LoRA adapter; small data with few classes
    tries contrastive tuning, head-then-fine-tuning and the head; anything else head-then-fine-tuning and the head.
    Plain fine-tuning never led head-then-fine-tuning beyond noise in those measurements, so it is not a candidate
    (ask for it by name)."""
    if not is_encoder(model_type):
        return [Candidate("lora", 0)]
    counts = sorted(class_counts.values())
    rows, classes, typical = sum(counts), len(counts), counts[len(counts) // 2]
    if rows <= FEWSHOT_MAX_ROWS and classes <= FEWSHOT_MAX_CLASSES and typical < FEWSHOT_BELOW_EXAMPLES_PER_CLASS:
        names = ["fewshot", "head_finetune", "head"]
    else:
        names = ["head_finetune", "head"]
    return [Candidate(name, rank) for rank, name in enumerate(names)]


def trial_order(candidates: Sequence[Candidate]) -> List[Candidate]:
    """The order ``auto`` trains its candidates in: the embedding head first (seconds: a result to fall back on
    whatever the budget), then the others most promising first."""
    return sorted(candidates, key=lambda c: (c.method != "head", c.rank))


def plan_line(labels: Sequence[Any], model_type: str, time_budget: Optional[float], seed: int,
              class_weights: str = "auto") -> str:
    """What ``auto`` is about to do with these training labels, in a sentence (shown before it starts);
    ``class_weights`` is ``TrainConfig.class_weights``."""
    counts = Counter(map(str, labels))
    candidates = candidate_methods(counts, model_type)
    handling = imbalance_handling(counts, class_weights)
    weighted = f"; {handling.reason}" if handling.weighted else ""
    if len(candidates) == 1:
        return f"{registry.METHOD_NAMES[candidates[0].method]}, the only candidate for this model{weighted}"
    ids = {name: i for i, name in enumerate(counts)}
    if validation_split([ids[label] for label in map(str, labels)], seed) is None:
        return (f"{registry.METHOD_NAMES[candidates[0].method]}, the method that leads at this size in the "
                f"measurements: too few rows ({len(labels)}) to hold some out for choosing{weighted}")
    # Numbered: the methods' own names may say "then" ("embedding head, then full fine-tuning").
    tries = ", ".join(f"({number}) {registry.METHOD_NAMES[c.method]}"
                      for number, c in enumerate(trial_order(candidates), 1))
    limit = f"within {time_budget:.0f} s" if time_budget else "without a time limit"
    return (f"trying, {limit}: {tries}; each scored ({metric_name(handling.metric)}) on training rows held out "
            f"from it, never on the evaluation rows{weighted}")


def validation_fraction(rows: int) -> float:
    return VALIDATION_FRACTION_SMALL if rows < LARGE_FROM_ROWS else VALIDATION_FRACTION_LARGE


def validation_split(label_ids: Sequence[int], seed: int) -> Optional[Tuple[List[int], List[int]]]:
    """(training rows, held-out rows) by index: stratified, the :func:`validation_fraction` of each class (at least
    one row of a class with two or more, none of a class with one), at most :data:`MAX_VALIDATION_ROWS`; None when
    fewer than :data:`MIN_VALIDATION_ROWS` rows would be held out."""
    labels = np.asarray(label_ids)
    fraction = min(validation_fraction(len(labels)), MAX_VALIDATION_ROWS / max(1, len(labels)))
    rng = np.random.default_rng(seed)
    train, held = [], []
    for value in np.unique(labels):
        rows = rng.permutation(np.flatnonzero(labels == value)).tolist()
        n_held = 0 if len(rows) < 2 else min(len(rows) - 1, max(1, int(round(len(rows) * fraction))))
        held += rows[:n_held]
        train += rows[n_held:]
    if len(held) < MIN_VALIDATION_ROWS:
        return None
    return sorted(train), sorted(held)


def estimate_seconds(method: str, rows: int, epochs: float, seconds_per_text: float,
                     pairs: Optional[int] = None) -> float:
    """The seconds ``method`` needs to train on ``rows`` texts, from the time to embed one text: a head fit is one
    embedding pass, contrastive tuning ``pairs`` pairs of texts, the Trainer's methods ``epochs`` passes (after a
    head fit for head-then-fine-tuning)."""
    embed = rows * seconds_per_text
    if method == "head":
        return embed
    if method == "fewshot":
        pairs = pair_budget(rows) if pairs is None else pairs
        return CONTRASTIVE_START_SECONDS + 2 * pairs * PAIR_COST_PER_TEXT * seconds_per_text + embed
    train = math.ceil(epochs) * rows * TRAIN_COST_PER_TEXT * seconds_per_text
    return train + (embed if method == "head_finetune" else 0.0)


def affordable_pairs(rows: int, seconds_per_text: float, seconds_left: float) -> Optional[int]:
    """The contrastive pairs that fit in ``seconds_left`` (at most the default budget), or None when fewer than
    :data:`~finetuner.training.embedding_methods.MIN_PAIRS` would fit (at 160 SST-2 examples per class, 800 pairs
    instead of the default 5,120 still led head-then-fine-tuning: bench/results/auto.md#pairs)."""
    default = pair_budget(rows)
    if math.isinf(seconds_left):
        return default
    per_pair = 2 * PAIR_COST_PER_TEXT * seconds_per_text
    spare = seconds_left - CONTRASTIVE_START_SECONDS - rows * seconds_per_text
    fits = int(spare / per_pair) if per_pair > 0 else default
    if fits >= default:
        return default
    return fits if fits >= MIN_PAIRS else None


def validation_score(predicted: Sequence[int], truth: Sequence[int], metric: str = ACCURACY) -> float:
    """A candidate's score on the held-out rows: accuracy, or macro-F1 over the classes among them (a prediction
    of any other class is a miss)."""
    predicted, truth = np.asarray(predicted), np.asarray(truth)
    if metric != MACRO_F1:
        return float(np.mean(predicted == truth)) if len(truth) else 0.0
    scores = []
    for value in np.unique(truth):
        hit = np.sum((predicted == value) & (truth == value))
        scores.append(2 * hit / (np.sum(predicted == value) + np.sum(truth == value)))
    return float(np.mean(scores)) if scores else 0.0


def row_weights(truth: Sequence[int], metric: str = ACCURACY) -> Optional[np.ndarray]:
    """How much each held-out row counts in the noise test of :func:`pick`: equally for accuracy; for macro-F1
    one over its class's held-out rows (every class counts the same, as in macro-F1)."""
    if metric != MACRO_F1:
        return None
    truth = np.asarray(truth)
    values, counts = np.unique(truth, return_counts=True)
    per_class = dict(zip(values.tolist(), counts.tolist()))
    weights = np.asarray([1.0 / per_class[v] for v in truth.tolist()])
    return weights * len(truth) / weights.sum()


def significantly_better(a: np.ndarray, b: np.ndarray, z: float = SIGNIFICANCE_Z,
                         weights: Optional[np.ndarray] = None) -> bool:
    """Whether the held-out rows that ``a`` gets right and ``b`` wrong outnumber the reverse by more than ``z``
    standard deviations of that difference (a paired comparison on the same rows). With ``weights`` each row
    counts its weight (the difference over the square root of the summed squared weights)."""
    w = np.ones(len(a)) if weights is None else np.asarray(weights, dtype=float)
    only_a, only_b = a & ~b, ~a & b
    return float(w[only_a].sum() - w[only_b].sum()) > z * math.sqrt(float((w[only_a | only_b] ** 2).sum()))


def pick(results: Sequence[CandidateResult],
         weights: Optional[np.ndarray] = None) -> Tuple[CandidateResult, str]:
    """The winner among the trained candidates, and why: the best score on the held-out rows, unless a
    candidate ranked higher by the measurements is not significantly worse (then that one: the held-out rows
    alone cannot tell them apart). ``weights``: how much each held-out row counts in that test
    (:func:`row_weights`)."""
    trained = [r for r in results if r.status == "trained" and r.correct is not None]
    if not trained:
        raise ValueError("no candidate was trained")
    best = max(trained, key=lambda r: (r.score, -r.rank))
    metric = metric_name(best.metric)
    for result in sorted(trained, key=lambda r: r.rank):
        if result is best:
            return best, f"best on the {len(best.correct)} held-out rows ({metric} {best.score:.3f})"
        if not significantly_better(best.correct, result.correct, weights=weights):
            other = registry.METHOD_NAMES.get(best.method, best.method)
            return result, (f"{metric} {result.score:.3f} on the {len(result.correct)} held-out rows; {other} "
                            f"({best.score:.3f}) is not better beyond noise, and {result.method} leads at this "
                            "size in the measurements")
    return best, f"best on the {len(best.correct)} held-out rows"


def trusted_temperature(fitted: float, held_out_rows: int) -> Tuple[float, str]:
    """The temperature to fold into the winner given the one ``fitted`` on its held-out rows, and why when it is not
    that one. From :data:`MIN_CALIBRATION_ROWS` rows the fitted one; below, only one that softens (over 1): a
    fine-tuned model is mostly overconfident, and on a few dozen rows a sharpening temperature followed their noise
    (SST-2 at 64 per class, 26 rows: 0.57, test ECE 0.063 → 0.123, while the softening ones fitted on 26 to 52 rows
    lowered it from 0.093–0.163 to 0.028–0.077: bench/results/auto.md#few-held-out-rows)."""
    if held_out_rows >= MIN_CALIBRATION_ROWS or fitted >= 1.0:
        return fitted, ""
    return 1.0, (f"not calibrated: the {held_out_rows} held-out rows ask for sharper probabilities (temperature "
                 f"{fitted:.2f}), which fewer than {MIN_CALIBRATION_ROWS} rows cannot be trusted to tell")


def should_refit(class_counts: Mapping[str, int], estimated_seconds: float,
                 seconds_left: float) -> Tuple[bool, str]:
    """Whether to train the winner again on every training row (the held-out ones too), and why."""
    counts = sorted(class_counts.values())
    typical = counts[len(counts) // 2] if counts else 0
    if typical >= REFIT_BELOW_EXAMPLES_PER_CLASS:
        return False, (f"{typical} examples per class: the held-out rows add little, so the model trained without "
                       "them is kept")
    if estimated_seconds > seconds_left:
        return False, (f"training again on every row would take about {estimated_seconds:.0f} s, more than the "
                       f"{max(0.0, seconds_left):.0f} s left of the time budget")
    return True, f"trained again on every row, held-out ones included ({typical} examples per class)"
