"""Targets other than one class per text: the rows a multi-label run holds out to tune each label's threshold, and
the standardisation a regression target is trained in (then folded into the output layer, so a saved model
predicts in the target's own units)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, List, Optional, Sequence, Tuple

import numpy as np

# Several labels per text: a tenth of the training rows (at least MIN_THRESHOLD_ROWS, at most MAX_THRESHOLD_ROWS)
# is held out to tune the thresholds; below 2 × MIN_THRESHOLD_ROWS rows none is, and every threshold stays 0.5.
MIN_THRESHOLD_ROWS, MAX_THRESHOLD_ROWS = 50, 2000
THRESHOLD_SHARE = 0.1


def threshold_rows(num_rows: int) -> int:
    """How many of ``num_rows`` training rows a multi-label run holds out to tune its thresholds (0: none)."""
    if num_rows < 2 * MIN_THRESHOLD_ROWS:
        return 0
    return int(min(MAX_THRESHOLD_ROWS, max(MIN_THRESHOLD_ROWS, round(num_rows * THRESHOLD_SHARE))))


def hold_out_for_thresholds(texts: Sequence[str], targets: Sequence[Any], seed: int, task: str
                            ) -> Tuple[List[str], List[Any], Optional[Tuple[List[str], List[Any]]]]:
    """``(training texts, their targets, held-out (texts, targets) or None)``: for ``task == "multi_label"`` a
    random :func:`threshold_rows` share of the rows set aside (the same rows for the same seed); else everything
    trains."""
    held = threshold_rows(len(texts)) if task == "multi_label" else 0
    if not held:
        return list(texts), list(targets), None
    order = np.random.default_rng(seed).permutation(len(texts))
    out, keep = set(order[:held].tolist()), sorted(order[held:].tolist())
    held_rows = sorted(out)
    return ([texts[i] for i in keep], [targets[i] for i in keep],
            ([texts[i] for i in held_rows], [targets[i] for i in held_rows]))


@dataclass(frozen=True)
class TargetScale:
    """A regression target's mean and standard deviation: training fits ``(y - mean) / std``."""

    mean: float
    std: float

    @classmethod
    def of(cls, values: Sequence[float]) -> "TargetScale":
        values = np.asarray(values, dtype=float)
        std = float(values.std()) if len(values) > 1 else 1.0
        return cls(float(values.mean()) if len(values) else 0.0, std if std > 0 else 1.0)

    def standardize(self, values: Sequence[float]) -> List[float]:
        return [(float(v) - self.mean) / self.std for v in values]

    def restore(self, values: Any) -> np.ndarray:
        return np.asarray(values, dtype=float) * self.std + self.mean
