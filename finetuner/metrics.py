"""Classification metrics with scikit-learn: a flat summary, a per-class report, a confusion matrix."""

from __future__ import annotations

from typing import Any, Dict, List, Sequence

import numpy as np
from sklearn.metrics import accuracy_score, classification_report, confusion_matrix, precision_recall_fscore_support

SUMMARY_KEYS = ("accuracy", "precision_macro", "recall_macro", "f1_macro",
                "precision_weighted", "recall_weighted", "f1_weighted")


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


def full_report(y_true: Sequence[int], y_pred: Sequence[int], label_names: List[str]) -> Dict[str, Any]:
    """Summary, per-class precision/recall/F1/support and the confusion matrix (rows: true, cols: predicted)."""
    labels = list(range(len(label_names)))
    per_class = classification_report(
        y_true, y_pred, labels=labels, target_names=label_names, output_dict=True, zero_division=0
    )
    return {
        "summary": summary_metrics(y_true, y_pred, len(label_names)),
        "per_class": {name: {k: float(v) for k, v in per_class[name].items()} for name in label_names},
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=labels).tolist(),
        "labels": list(label_names),
    }


def logits_to_probabilities(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax, numerically stable."""
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)
