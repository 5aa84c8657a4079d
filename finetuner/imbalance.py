"""Skewed class counts: the rule that says when the classes are skewed, the class weights that then weigh the
training loss, and the warnings about rare classes. Pure decisions (class counts in, weights and a reason out),
used by training (:mod:`finetuner.finetuner`: every method), by ``auto``'s choice of a validation metric
(:mod:`finetuner.selection`) and by the data checks of the app and the command line.

The rule: the classes are skewed when the largest has at least :data:`SKEW_RATIO` times the rows of the smallest.
Then (``class_weights="auto"``, the default) each class's examples weigh ``(1 / rows of the class) **``
:data:`WEIGHT_POWER` in the loss, scaled so that a row weighs 1 on average, and ``auto`` picks and reports by
macro-F1 instead of accuracy. ``"balanced"`` weighs the classes whatever their counts, ``"none"`` never does.

Measured: bench/results/imbalance.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence

# TrainConfig.class_weights: weigh the classes when they are skewed, always, or never.
CLASS_WEIGHTS = ("auto", "balanced", "none")
# Skewed: the largest class has at least this many times the rows of the smallest (AG News with one class cut to
# 3% of the rows: 10.7).
SKEW_RATIO = 5.0
# A class's weight is (1 / its rows) ** WEIGHT_POWER, normalised to a mean of 1 over the rows: 1 is scikit-learn's
# "balanced" (every class weighs the same in all), 0.5 a tempered form. On AG News with Business cut to 3%, macro-F1
# on the test file rose with the power for both auto candidates (head: 0.727 / 0.762 / 0.787 at 0 / 0.5 / 1, and
# 0.750 / 0.786 / 0.814 on a second draw; head then fine-tuning 0.780 / 0.802 / 0.810): bench/results/imbalance.md.
WEIGHT_POWER = 1.0
# No class weighs more than this many times the largest one (a class of 2 rows among thousands must not swamp
# the loss).
MAX_WEIGHT_RATIO = 20.0
# A class with fewer training rows than this is flagged: too few to learn it reliably or to score it.
FEW_ROWS = 8
ACCURACY, MACRO_F1 = "accuracy", "macro_f1"
METRIC_NAMES = {ACCURACY: "accuracy", MACRO_F1: "macro-F1"}


@dataclass(frozen=True)
class ImbalanceHandling:
    """What training does about the class counts: ``weights`` per class name (None: the loss is not weighted),
    the metric that ``auto`` picks and reports by, and a sentence saying why."""

    weights: Optional[Dict[str, float]]
    reason: str
    ratio: float = 1.0
    setting: str = "auto"
    counts: Dict[str, int] = field(default_factory=dict)

    @property
    def weighted(self) -> bool:
        return self.weights is not None

    @property
    def metric(self) -> str:
        """``macro_f1`` when the loss is weighted (the rare classes count as much as the others), else
        ``accuracy``."""
        return MACRO_F1 if self.weighted else ACCURACY

    def weight_list(self, class_names: Sequence[str]) -> Optional[List[float]]:
        """The weights in class-id order (1.0 for a class with no training rows), or None when unweighted."""
        if self.weights is None:
            return None
        return [float(self.weights.get(str(name), 1.0)) for name in class_names]

    def as_dict(self) -> Dict[str, Any]:
        """What the run record and the saved model keep."""
        return {"setting": self.setting, "weighted": self.weighted, "metric": self.metric,
                "ratio": round(self.ratio, 2), "reason": self.reason,
                "weights": {k: round(v, 4) for k, v in self.weights.items()} if self.weights else None}


def skew_ratio(class_counts: Mapping[str, int]) -> float:
    """Rows of the largest class over rows of the smallest (classes with no rows left out; 1.0 for none)."""
    counts = [int(c) for c in class_counts.values() if c > 0]
    return max(counts) / min(counts) if counts else 1.0


def is_skewed(class_counts: Mapping[str, int]) -> bool:
    """Whether the largest class has at least :data:`SKEW_RATIO` times the rows of the smallest."""
    return len([c for c in class_counts.values() if c > 0]) >= 2 and skew_ratio(class_counts) >= SKEW_RATIO


def class_weights(class_counts: Mapping[str, int], power: Optional[float] = None,
                  max_ratio: float = MAX_WEIGHT_RATIO) -> Dict[str, float]:
    """Per class: ``(1 / rows) ** power`` (default :data:`WEIGHT_POWER`), at most ``max_ratio`` times the largest
    class's weight, scaled so that the rows' mean weight is 1. ``power=1``: scikit-learn's ``"balanced"``
    (rows / (classes × rows of the class)) where the cap does not bind."""
    power = WEIGHT_POWER if power is None else power
    counts = {str(k): int(v) for k, v in class_counts.items() if v > 0}
    if not counts:
        return {}
    largest = max(counts.values())
    raw = {k: min(max_ratio, (largest / v) ** power) for k, v in counts.items()}
    scale = sum(counts.values()) / sum(raw[k] * v for k, v in counts.items())
    return {k: raw[k] * scale for k in counts}


def imbalance_handling(class_counts: Mapping[str, int], setting: str = "auto") -> ImbalanceHandling:
    """Whether and how to weigh the classes of training data with these counts (``setting``:
    ``TrainConfig.class_weights``), and why."""
    counts = {str(k): int(v) for k, v in class_counts.items()}
    ratio = skew_ratio(counts)
    summary = _summary(counts, ratio)
    if setting == "none":
        why = f"{summary}; class weights off (class_weights none): unweighted loss, chosen by accuracy"
        return ImbalanceHandling(None, why, ratio, setting, counts)
    if setting == "balanced" or (setting == "auto" and is_skewed(counts)):
        weights = class_weights(counts)
        rarest, commonest = max(weights, key=weights.get), min(weights, key=weights.get)
        because = ("; class_weights balanced:" if setting == "balanced" else
                   f": skewed ({SKEW_RATIO:g}× or more), so")
        why = (f"{summary}{because} the loss weighs each class by its rarity ({rarest!r} ×{weights[rarest]:.2f} to "
               f"{commonest!r} ×{weights[commonest]:.2f}) and candidates are chosen and reported by macro-F1")
        return ImbalanceHandling(weights, why, ratio, setting, counts)
    why = f"{summary}: balanced enough (under {SKEW_RATIO:g}×), unweighted loss, chosen by accuracy"
    return ImbalanceHandling(None, why, ratio, setting, counts)


def class_balance_warnings(class_counts: Mapping[str, int], setting: str = "auto") -> List[str]:
    """Warnings about classes with very few rows and about skewed classes, saying what training will do about
    them (``setting``: ``TrainConfig.class_weights``). The app's Data tab and the command line's ``train`` show
    them."""
    counts = {str(k): int(v) for k, v in class_counts.items() if v > 0}
    if len(counts) < 2:
        return []
    warnings = []
    few = sorted((k for k, v in counts.items() if v < FEW_ROWS), key=counts.get)
    if few:
        shown = ", ".join(f"{k!r} ({counts[k]})" for k in few[:5]) + ("…" if len(few) > 5 else "")
        warnings.append(f"{len(few)} class(es) have fewer than {FEW_ROWS} rows: {shown}. That is too few to learn "
                        "them reliably or to score them (an evaluation split holds one or two of their rows at "
                        "most); add examples of them, or merge or drop these classes.")
    if is_skewed(counts):
        largest, smallest = max(counts, key=counts.get), min(counts, key=counts.get)
        said = (f"The classes are skewed: {largest!r} has {counts[largest]} rows, {smallest!r} "
                f"{counts[smallest]} ({skew_ratio(counts):.0f}×).")
        if setting == "none":
            warnings.append(f"{said} Class weights are off (class_weights none): the model may seldom predict the "
                            "rare classes. Leave class_weights on auto to weigh them up.")
        else:
            warnings.append(f"{said} Training weighs each class by its rarity, so the rare classes count as much "
                            "as the others, and picks and reports the model by macro-F1 (set class_weights to "
                            "none, --class-weights none, to train unweighted).")
    return warnings


def metric_name(metric: str) -> str:
    return METRIC_NAMES.get(metric, metric)


def _summary(counts: Mapping[str, int], ratio: float) -> str:
    if not counts:
        return "no classes"
    return (f"{len(counts)} classes of {min(counts.values())} to {max(counts.values())} rows "
            f"(largest/smallest {ratio:.1f})")
