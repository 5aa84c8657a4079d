"""Evaluate a model on labelled texts: metrics, the per-class report, and one row per text with its scores."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Protocol, Sequence

import numpy as np
import pandas as pd

from .data import LabelMap, normalize_labels, validate_texts_and_labels
from .metrics import full_report
from .predictions import predictions_table


class Evaluable(Protocol):
    """What :func:`evaluate` needs of a model (``LLMFinetuner``): its classes, probabilities for the scored rows,
    and a place for the metrics and report of its last evaluation."""

    metrics: Dict[str, float]
    report: Optional[Dict[str, Any]]
    label_map: LabelMap

    def predict_proba_array(self, texts: Sequence[str]) -> np.ndarray: ...

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


MISCLASSIFIED_COLUMNS = ("text", "label", "predicted_label", "confidence", "p_label")


def misclassified(rows: Optional[pd.DataFrame]) -> pd.DataFrame:
    """The wrongly predicted rows, most confident mistakes first; ``p_label`` is the true label's probability."""
    if rows is None or rows.empty:
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
         "support": int(values.get("support", 0))}
        for name, values in per_class.items()
    ]
    return pd.DataFrame(table, columns=["class", "precision", "recall", "f1", "support"])


METRIC_NAMES = {"accuracy": "Accuracy", "precision_macro": "Precision (macro)", "recall_macro": "Recall (macro)",
                "f1_macro": "F1 (macro)", "precision_weighted": "Precision (weighted)",
                "recall_weighted": "Recall (weighted)", "f1_weighted": "F1 (weighted)",
                "ece": "Calibration error (ECE)", "loss": "Loss", "epoch": "Epoch"}


def metric_name(key: str) -> str:
    """How a metric is named for people ("f1_macro" -> "F1 (macro)")."""
    return METRIC_NAMES.get(key, key.replace("_", " ").capitalize())


def metrics_table(metrics: Dict[str, float]) -> pd.DataFrame:
    """The summary metrics as a two-column table, with readable metric names."""
    return pd.DataFrame({"metric": [metric_name(k) for k in metrics],
                         "value": [round(float(v), 4) for v in metrics.values()]})
