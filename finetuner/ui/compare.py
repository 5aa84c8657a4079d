"""Compare runs: 2–4 finished runs side by side (settings, metrics, per-class F1) and their training losses.

Pure table building from :class:`~finetuner.runs.RunRecord` objects; the Export tab shows the results. Each table
has one column per run, named by its run id, in the order the runs were picked.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import pandas as pd

from ..errors import DataError
from ..evaluation import METRIC_NAMES, metric_name
from ..runs import METHOD_NAMES, RunRecord

MIN_COMPARED, MAX_COMPARED = 2, 4
DIFFERS = "differs"  # the settings table's last column: "✱" where the runs' values differ
DIFFERS_MARK = "✱"
# A line colour per compared run (the loss chart's series).
RUN_COLORS = ("#4f46e5", "#dc2626", "#16a34a", "#d97706")


def _method(record: RunRecord) -> Any:
    return METHOD_NAMES.get(record.method, record.method) or None


def _config(name: str) -> Callable[[RunRecord], Any]:
    return lambda record: (record.config or {}).get(name)


def _data(name: str) -> Callable[[RunRecord], Any]:
    return lambda record: (record.data or {}).get(name)


# The settings table's rows: (name shown, how a record gives the value).
SETTINGS: Tuple[Tuple[str, Callable[[RunRecord], Any]], ...] = (
    ("base model", lambda record: record.base_model),
    ("method", _method),
    ("preset", lambda record: record.preset),
    ("epochs", _config("epochs")),
    ("batch size", _config("batch_size")),
    ("learning rate", _config("learning_rate")),
    ("max length", _config("max_length")),
    ("warm-up ratio", _config("warmup_ratio")),
    ("weight decay", _config("weight_decay")),
    ("seed", _config("seed")),
    ("early-stopping patience", _config("early_stopping_patience")),
    ("data", _data("source")),
    ("rows", _data("rows")),
    ("training rows", _data("train_rows")),
    ("evaluation rows", _data("eval_rows")),
    ("classes", lambda record: len(record.labels) if record.labels else None),
    ("status", lambda record: record.status),
    ("seconds", lambda record: record.duration_seconds),
)


def chosen_runs(run_ids: Optional[Sequence[str]]) -> List[str]:
    """The run ids to compare (duplicates dropped, order kept), or a :class:`DataError` saying how many to pick."""
    ids = list(dict.fromkeys(run_id for run_id in run_ids or [] if run_id))
    if len(ids) < MIN_COMPARED:
        raise DataError(f"Pick at least {MIN_COMPARED} runs to compare (you picked {len(ids)}).")
    if len(ids) > MAX_COMPARED:
        raise DataError(f"Pick at most {MAX_COMPARED} runs to compare (you picked {len(ids)}); "
                        "remove some from the list.")
    return ids


def _cell(value: Any) -> Any:
    """A setting as shown in a table: numbers as short text (3e-05, 6), lists joined, nothing as an empty cell."""
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(map(str, value))
    return value


def settings_table(records: Sequence[RunRecord]) -> pd.DataFrame:
    """One row per setting, one column per run, and a last column marking (✱) the settings that differ."""
    rows = []
    for name, value_of in SETTINGS:
        values = [_cell(value_of(record)) for record in records]
        differs = len({repr(value) for value in values}) > 1
        rows.append([name, *values, DIFFERS_MARK if differs else ""])
    return pd.DataFrame(rows, columns=["setting", *_columns(records), DIFFERS], dtype=object)


def metrics_table(records: Sequence[RunRecord]) -> pd.DataFrame:
    """One row per metric any run has (the usual ones first), one column per run; a missing metric is empty."""
    keys: List[str] = []
    for record in records:
        keys += [key for key in record.metrics or {} if key not in keys]
    order = list(METRIC_NAMES)
    keys.sort(key=lambda key: order.index(key) if key in order else len(order))
    rows = [[metric_name(key), *[_rounded((record.metrics or {}).get(key)) for record in records]] for key in keys]
    return pd.DataFrame(rows, columns=["metric", *_columns(records)], dtype=object)  # None: an empty cell


def per_class_f1_table(records: Sequence[RunRecord]) -> pd.DataFrame:
    """F1 of each class (rows, in order of first appearance) for each run (columns); empty where a run has no such
    class or no evaluation."""
    scores = [((record.report or {}).get("per_class") or {}) for record in records]
    classes: List[str] = []
    for per_class in scores:
        classes += [name for name in per_class if name not in classes]
    rows = [[name, *[_rounded((per_class.get(name) or {}).get("f1-score")) for per_class in scores]]
            for name in classes]
    return pd.DataFrame(rows, columns=["class", *_columns(records)], dtype=object)


def loss_points(records: Sequence[RunRecord]) -> List[Dict[str, Any]]:
    """The runs' training losses as points for the loss chart: one series per run, named by its run id."""
    return [{"step": event["step"], "loss": float(event["loss"]), "series": record.id}
            for record in records for event in record.history or []
            if event.get("kind") == "log" and isinstance(event.get("loss"), (int, float))
            and isinstance(event.get("step"), (int, float))]


def series_colors(records: Sequence[RunRecord]) -> Dict[str, str]:
    """The loss chart's series: each run's id and its colour."""
    return {record.id: RUN_COLORS[i % len(RUN_COLORS)] for i, record in enumerate(records)}


def summary(records: Sequence[RunRecord]) -> str:
    """A line above the tables: what is compared, and which runs have no loss curve or no evaluation."""
    differing = sum(1 for _ in settings_table(records)[DIFFERS] if _)
    parts = [f"Comparing {len(records)} runs: {', '.join(f'`{record.id}`' for record in records)}. "
             f"{differing} setting(s) differ (marked {DIFFERS_MARK})."]
    with_loss = {point["series"] for point in loss_points(records)}
    no_loss = [record.id for record in records if record.id not in with_loss]
    if no_loss:
        parts.append(f"No training loss was recorded for {', '.join(no_loss)} (the embedding head fits at once; "
                     "imported runs keep no history).")
    no_scores = [record.id for record in records if not record.metrics]
    if no_scores:
        parts.append(f"No scores for {', '.join(no_scores)} (no held-out rows, or the run did not complete).")
    return " ".join(parts)


def _columns(records: Sequence[RunRecord]) -> List[str]:
    return [record.id for record in records]


def _rounded(value: Any) -> Optional[float]:
    return round(float(value), 4) if isinstance(value, (int, float)) else None
