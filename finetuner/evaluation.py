"""Evaluate a model on labelled texts: metrics, the per-class report, and one row per text with its scores."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Protocol, Sequence

import numpy as np
import pandas as pd

from .data import LabelMap, normalize_labels, validate_texts_and_labels
from .metrics import full_report, multi_label_report, regression_report
from .tasks import join_labels
from .predictions import predictions_table


class Evaluable(Protocol):
    """What :func:`evaluate` needs of a model (``LLMFinetuner``): its classes, probabilities for the scored rows,
    and a place for the metrics and report of its last evaluation."""

    metrics: Dict[str, float]
    report: Optional[Dict[str, Any]]
    label_map: LabelMap

    def predict_proba_array(self, texts: Sequence[str]) -> np.ndarray: ...

    def label_thresholds(self) -> List[float]: ...

    def decide(self, probabilities: np.ndarray) -> List[List[str]]: ...

# An evaluation leaves its metrics and report on the model object; models are shared between sessions.
_LOCK = threading.Lock()


@dataclass
class Evaluation:
    """Metrics (with ``ece``, the expected calibration error), report (per class, confusion matrix, ``reliability``
    bins) and the scored rows of one evaluation."""

    metrics: Dict[str, float]
    report: Dict[str, Any]
    rows: pd.DataFrame


def evaluate(finetuner: Evaluable, texts: Sequence[str], labels: Sequence[Any]) -> Evaluation:
    """Evaluate ``finetuner`` on ``texts``/``labels`` in one pass over the texts: the metrics and report (also left
    on the model as its ``metrics`` and ``report``) and ``rows`` with text, label, predicted_label, confidence,
    p_*."""
    label_map = finetuner.label_map
    if label_map.task != "single_label":
        return _evaluate_task(finetuner, texts, labels)
    texts, labels = validate_texts_and_labels(texts, labels, min_classes=1, what="test data")
    probabilities = finetuner.predict_proba_array(texts)
    label_ids = finetuner.label_map.encode(labels)
    report = full_report(label_ids, probabilities.argmax(axis=1), finetuner.label_map.names, probabilities)
    chosen = np.clip(probabilities[np.arange(len(label_ids)), label_ids], 1e-12, 1.0)
    metrics = {**report["summary"], "loss": float(-np.log(chosen).mean())}
    with _LOCK:
        finetuner.metrics, finetuner.report = dict(metrics), report
    rows = predictions_table(finetuner, texts, probabilities)
    rows.insert(1, "label", [str(v) for v in normalize_labels(labels)])
    return Evaluation(metrics, report, rows)


def _evaluate_task(finetuner: Evaluable, texts: Sequence[str], labels: Sequence[Any]) -> Evaluation:
    """:func:`evaluate` for several labels per text (F1 micro/macro/samples at the model's thresholds, per label)
    and for a number per text (correlations and errors, the points of a scatter plot)."""
    label_map = finetuner.label_map
    texts, labels = validate_texts_and_labels(texts, labels, min_classes=0, what="test data", task=label_map.task,
                                              separator=label_map.separator)
    scores = finetuner.predict_proba_array(texts)
    if label_map.task == "regression":
        report = regression_report(labels, scores[:, 0])
    else:
        report = multi_label_report(np.asarray(label_map.encode(labels)), scores, label_map.names,
                                    finetuner.label_thresholds())
    metrics = dict(report["summary"])
    with _LOCK:
        finetuner.metrics, finetuner.report = dict(metrics), report
    rows = predictions_table(finetuner, texts, scores)
    shown = [f"{v:g}" for v in labels] if label_map.task == "regression" else [
        join_labels(names) for names in labels]
    rows.insert(1, "label", shown)
    return Evaluation(metrics, report, rows)


MISCLASSIFIED_COLUMNS = ("text", "label", "predicted_label", "confidence", "p_label")


def misclassified(rows: Optional[pd.DataFrame]) -> pd.DataFrame:
    """The wrongly predicted rows, most confident mistakes first; ``p_label`` is the true label's probability."""
    if rows is None or rows.empty or "confidence" not in rows.columns:
        return pd.DataFrame(columns=list(MISCLASSIFIED_COLUMNS))
    wrong = rows[rows["label"].astype(str) != rows["predicted_label"].astype(str)].copy()
    wrong["p_label"] = [row.get(f"p_{row['label']}") for _, row in wrong.iterrows()]
    wrong = wrong.sort_values("confidence", ascending=False).reset_index(drop=True)[list(MISCLASSIFIED_COLUMNS)]
    return wrong.round({"confidence": 4, "p_label": 4})


def per_class_table(report: Dict[str, Any]) -> pd.DataFrame:
    """Precision, recall, F1 and support for each class, as a table."""
    per_class = (report or {}).get("per_class") or {}
    table: List[Dict[str, Any]] = [
        {"class": name, "precision": round(values.get("precision", 0.0), 4),
         "recall": round(values.get("recall", 0.0), 4), "f1": round(values.get("f1-score", 0.0), 4),
         "support": int(values.get("support", 0)),
         **({"threshold": round(values["threshold"], 3)} if "threshold" in values else {})}
        for name, values in per_class.items()
    ]
    columns = ["class", "precision", "recall", "f1", "support"]
    return pd.DataFrame(table, columns=columns + (["threshold"] if table and "threshold" in table[0] else []))


METRIC_NAMES = {"accuracy": "Accuracy", "precision_macro": "Precision (macro)", "recall_macro": "Recall (macro)",
                "f1_macro": "F1 (macro)", "precision_weighted": "Precision (weighted)",
                "recall_weighted": "Recall (weighted)", "f1_weighted": "F1 (weighted)",
                "ece": "Calibration error (ECE)", "loss": "Loss", "epoch": "Epoch",
                "f1_micro": "F1 (micro)", "f1_samples": "F1 (per text)", "precision_micro": "Precision (micro)",
                "recall_micro": "Recall (micro)", "exact_match": "Exact label set", "pearson": "Pearson r",
                "spearman": "Spearman ρ", "r2": "R²", "mae": "Mean absolute error", "rmse": "Root mean squared error"}


def metric_name(key: str) -> str:
    """How a metric is named for people ("f1_macro" -> "F1 (macro)")."""
    return METRIC_NAMES.get(key, key.replace("_", " ").capitalize())


def metrics_table(metrics: Dict[str, float]) -> pd.DataFrame:
    """The summary metrics as a two-column table, with readable metric names."""
    return pd.DataFrame({"metric": [metric_name(k) for k in metrics],
                         "value": [round(float(v), 4) for v in metrics.values()]})
