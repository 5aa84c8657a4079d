"""Classification metrics with scikit-learn: a flat summary, a per-class report, a confusion matrix; with the
model's probabilities also its calibration (the expected calibration error and the bins of a reliability diagram)."""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence

import numpy as np
from sklearn.metrics import accuracy_score, classification_report, confusion_matrix, precision_recall_fscore_support

from .calibration import expected_calibration_error, reliability

# What predicted labels alone give (the baselines' scores too).
SUMMARY_KEYS = ("accuracy", "precision_macro", "recall_macro", "f1_macro",
                "precision_weighted", "recall_weighted", "f1_weighted")
# What the probabilities add (a model's evaluation): the expected calibration error, lower is better.
CALIBRATION_KEYS = ("ece",)


def summary_metrics(y_true: Sequence[int], y_pred: Sequence[int], num_labels: int) -> Dict[str, float]:
    """Accuracy and macro/weighted precision, recall and F1 as plain floats."""
    labels = list(range(num_labels))
    result = {"accuracy": float(accuracy_score(y_true, y_pred))}
    for average in ("macro", "weighted"):
        precision, recall, f1, _ = precision_recall_fscore_support(
            y_true, y_pred, labels=labels, average=average, zero_division=0
        )
        result[f"precision_{average}"] = float(precision)
        result[f"recall_{average}"] = float(recall)
        result[f"f1_{average}"] = float(f1)
    return result


def full_report(y_true: Sequence[int], y_pred: Sequence[int], label_names: List[str],
                probabilities: Optional[np.ndarray] = None) -> Dict[str, Any]:
    """Summary, per-class precision/recall/F1/support and the confusion matrix (rows: true, cols: predicted).

    With ``probabilities`` (rows × classes) the summary also has ``ece`` (:data:`CALIBRATION_KEYS`) and the report
    ``reliability``, the bins of a reliability diagram (:func:`finetuner.calibration.reliability`)."""
    labels = list(range(len(label_names)))
    per_class = classification_report(
        y_true, y_pred, labels=labels, target_names=label_names, output_dict=True, zero_division=0
    )
    report = {
        "summary": summary_metrics(y_true, y_pred, len(label_names)),
        "per_class": {name: {k: float(v) for k, v in per_class[name].items()} for name in label_names},
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=labels).tolist(),
        "labels": list(label_names),
    }
    if probabilities is not None:
        report["summary"]["ece"] = expected_calibration_error(probabilities, y_true)
        report["reliability"] = reliability(probabilities, y_true)
    return report


def logits_to_probabilities(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax, numerically stable."""
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)
