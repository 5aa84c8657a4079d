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


# ---------------------------------------------------------------------------------------------
# Several labels per text, and numbers
# ---------------------------------------------------------------------------------------------

# What a multi-label evaluation reports: F1 over every (text, label) decision (micro), the mean of the labels' F1
# (macro), the mean of the texts' F1 (samples), and the share of texts whose label set is exactly right.
MULTI_LABEL_KEYS = ("f1_macro", "f1_micro", "f1_samples", "precision_macro", "recall_macro", "precision_micro",
                    "recall_micro", "exact_match")
REGRESSION_KEYS = ("pearson", "spearman", "r2", "mae", "rmse")
# Candidate decision thresholds per label (tune_thresholds).
_THRESHOLDS = np.round(np.arange(0.05, 0.951, 0.025), 3)
# A regression report keeps at most this many (true, predicted) points for its scatter plot.
_SCATTER_POINTS = 2000


def sigmoid(logits: np.ndarray) -> np.ndarray:
    """Element-wise logistic function, numerically stable."""
    logits = np.asarray(logits, dtype=np.float64)
    small = np.exp(-np.abs(logits))
    return np.where(logits >= 0, 1 / (1 + small), small / (1 + small))


def outputs_to_scores(logits: np.ndarray, task: str) -> np.ndarray:
    """What a model's logits mean for its task: class probabilities (softmax), each label's probability (sigmoid)
    or the predicted numbers (as they are)."""
    if task == "multi_label":
        return sigmoid(logits)
    if task == "regression":
        return np.asarray(logits, dtype=np.float64)
    return logits_to_probabilities(logits)


def tune_thresholds(y_true: np.ndarray, probabilities: np.ndarray) -> List[float]:
    """Per label, the decision threshold (on a grid from 0.05 to 0.95) with the best F1 on these rows; ties go to
    the threshold nearest 0.5, and a label without a positive row keeps 0.5."""
    y_true = np.asarray(y_true) > 0.5
    thresholds = []
    for label in range(y_true.shape[1]):
        truth, scores = y_true[:, label], probabilities[:, label]
        if not truth.any():
            thresholds.append(0.5)
            continue
        predicted = scores[:, None] >= _THRESHOLDS[None, :]
        tp = (predicted & truth[:, None]).sum(axis=0)
        f1 = 2 * tp / np.maximum(predicted.sum(axis=0) + truth.sum(), 1)
        best = np.flatnonzero(np.isclose(f1, f1.max()))
        thresholds.append(float(_THRESHOLDS[best[np.argmin(np.abs(_THRESHOLDS[best] - 0.5))]]))
    return thresholds


def multi_label_report(y_true: np.ndarray, probabilities: np.ndarray, label_names: List[str],
                       thresholds: Optional[Sequence[float]] = None) -> Dict[str, Any]:
    """Summary (:data:`MULTI_LABEL_KEYS`) and per-label precision/recall/F1/support/threshold of the decisions
    ``probabilities >= thresholds`` (default 0.5 for every label)."""
    y_true = (np.asarray(y_true) > 0.5).astype(int)
    limits = np.full(len(label_names), 0.5) if thresholds is None else np.asarray(thresholds, dtype=float)
    y_pred = (np.asarray(probabilities) >= limits[None, :]).astype(int)
    summary = {}
    for average in ("macro", "micro", "samples"):
        # A text with no true and no predicted label is right (F1 1) in the per-text average.
        precision, recall, f1, _ = precision_recall_fscore_support(y_true, y_pred, average=average,
                                                                   zero_division=1 if average == "samples" else 0)
        summary[f"f1_{average}"] = float(f1)
        if average != "samples":
            summary[f"precision_{average}"], summary[f"recall_{average}"] = float(precision), float(recall)
    summary["exact_match"] = float((y_true == y_pred).all(axis=1).mean())
    precision, recall, f1, support = precision_recall_fscore_support(y_true, y_pred, average=None, zero_division=0)
    per_class = {name: {"precision": float(precision[i]), "recall": float(recall[i]), "f1-score": float(f1[i]),
                        "support": int(support[i]), "threshold": float(limits[i])}
                 for i, name in enumerate(label_names)}
    return {"summary": {key: summary[key] for key in MULTI_LABEL_KEYS}, "per_class": per_class,
            "labels": list(label_names), "task": "multi_label"}


def regression_report(y_true: Sequence[float], y_pred: Sequence[float], seed: int = 0) -> Dict[str, Any]:
    """Summary (:data:`REGRESSION_KEYS`: Pearson and Spearman correlation, R², mean absolute and root mean squared
    error) and up to 2,000 (true, predicted) points for a scatter plot."""
    from scipy.stats import pearsonr, spearmanr
    from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

    y_true, y_pred = np.asarray(y_true, dtype=float).ravel(), np.asarray(y_pred, dtype=float).ravel()
    constant = len(y_true) < 2 or np.ptp(y_true) == 0 or np.ptp(y_pred) == 0
    summary = {"pearson": 0.0 if constant else float(pearsonr(y_true, y_pred)[0]),
               "spearman": 0.0 if constant else float(spearmanr(y_true, y_pred)[0]),
               "r2": float(r2_score(y_true, y_pred)) if len(y_true) > 1 else 0.0,
               "mae": float(mean_absolute_error(y_true, y_pred)),
               "rmse": float(np.sqrt(mean_squared_error(y_true, y_pred)))}
    rows = np.arange(len(y_true))
    if len(rows) > _SCATTER_POINTS:
        rows = np.sort(np.random.default_rng(seed).choice(rows, _SCATTER_POINTS, replace=False))
    return {"summary": summary, "scatter": [[float(y_true[i]), float(y_pred[i])] for i in rows],
            "task": "regression"}
