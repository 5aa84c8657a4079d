"""Batch predictions as a table, and CSV output that spreadsheet programs cannot execute."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Sequence, Union

import numpy as np
import pandas as pd

from .tasks import join_labels

if TYPE_CHECKING:
    from .finetuner import LLMFinetuner

# A cell starting with one of these is run as a formula by Excel/LibreOffice/Sheets (CSV injection).
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def neutralize_cell(value: Any) -> Any:
    """Prefix text that a spreadsheet would read as a formula with a quote; other values pass through."""
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value


def neutralize_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``frame`` with every text cell and column name neutralised."""
    safe = frame.copy()
    for column in safe.columns:
        if safe[column].dtype == object or pd.api.types.is_string_dtype(safe[column]):
            safe[column] = safe[column].map(neutralize_cell)
    safe.columns = [neutralize_cell(str(c)) for c in safe.columns]
    return safe


def write_csv(frame: pd.DataFrame, path: Union[str, Path]) -> Path:
    """Write ``frame`` as UTF-8 CSV with formula-looking cells neutralised."""
    path = Path(path)
    neutralize_frame(frame).to_csv(path, index=False)
    return path


def predictions_table(finetuner: "LLMFinetuner", texts: Sequence[str],
                      probabilities: Optional[np.ndarray] = None) -> pd.DataFrame:
    """One row per text: the text, the predicted label, its probability and every class's probability
    (``probabilities``: the model's for ``texts`` when already computed). Several labels per text:
    ``predicted_labels`` (joined by the label separator, ``;``) and each label's probability; a number per text:
    ``predicted_value``."""
    if probabilities is None:
        probabilities = finetuner.predict_proba_array(texts)
    label_map = finetuner.label_map
    if label_map.task == "regression":
        return pd.DataFrame({"text": list(texts), "predicted_value": probabilities[:, 0].round(6)})
    names = label_map.names
    if label_map.task == "multi_label":
        chosen = finetuner.decide(probabilities)
        table = pd.DataFrame({"text": list(texts),
                              "predicted_labels": [join_labels(row) for row in chosen]})
        for column, name in enumerate(names):
            table[f"p_{name}"] = probabilities[:, column].round(6)
        return table
    best = probabilities.argmax(axis=1)
    table = pd.DataFrame({
        "text": list(texts),
        "predicted_label": [names[i] for i in best],
        "confidence": probabilities.max(axis=1).round(6),
    })
    for column, name in enumerate(names):
        table[f"p_{name}"] = probabilities[:, column].round(6)
    return table
