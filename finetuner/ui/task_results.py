"""How the app shows the tasks beside one label per text. Evaluate: the rows a model got wrong (a different label
set; the largest errors of a number) and the predicted-vs-true scatter plot of a number per text. Predict: the
labels a text gets (each at or above its threshold) and the predicted number."""

from __future__ import annotations

import html
import math
from typing import Any, Dict, List, Optional, Sequence

import pandas as pd

from ..tasks import parse_label_sets

LABEL_SET_COLUMNS = ("text", "label", "predicted_labels", "missed", "extra")
ERROR_COLUMNS = ("text", "label", "predicted_value", "error")
# The Evaluate tab's mistakes table, per task: its title (up to ``shown`` rows) and what it says when empty.
MISTAKES_TITLES = {
    "single_label": "Misclassified rows, most confident first (up to {shown}); p_label is the probability the model "
                    "gave the true label",
    "multi_label": "Rows whose predicted label set differs from the true one, most differences first (up to "
                   "{shown}); missed: true labels not predicted, extra: labels predicted but not true",
    "regression": "The largest errors first (up to {shown}); error = predicted − true",
}
NONE_WRONG = {"multi_label": "No mistakes: every row got exactly its label set.",
              "regression": "No errors: every row's number was predicted exactly."}


def wrong_label_sets(rows: Optional[pd.DataFrame], separator: str = ";") -> pd.DataFrame:
    """Several labels per text: the rows whose predicted labels differ from the true ones, with the labels missed
    and the extra ones, most differences first."""
    if rows is None or rows.empty or "predicted_labels" not in rows.columns:
        return pd.DataFrame(columns=list(LABEL_SET_COLUMNS))
    true = parse_label_sets(rows["label"].tolist(), separator)  # cells finetuner wrote: joined by the separator
    predicted = parse_label_sets(rows["predicted_labels"].tolist(), separator)
    table = pd.DataFrame({
        "text": rows["text"].tolist(),
        "label": [separator.join(names) for names in true],
        "predicted_labels": [separator.join(names) for names in predicted],
        "missed": [separator.join(n for n in t if n not in p) for t, p in zip(true, predicted)],
        "extra": [separator.join(n for n in p if n not in t) for t, p in zip(true, predicted)],
        "differences": [len(set(t) ^ set(p)) for t, p in zip(true, predicted)],
    })
    table = table[table["differences"] > 0].sort_values("differences", ascending=False, kind="stable")
    return table.reset_index(drop=True)[list(LABEL_SET_COLUMNS)]


def largest_errors(rows: Optional[pd.DataFrame]) -> pd.DataFrame:
    """A number per text: every row with its error (predicted − true), the largest errors first."""
    if rows is None or rows.empty or "predicted_value" not in rows.columns:
        return pd.DataFrame(columns=list(ERROR_COLUMNS))
    true = pd.to_numeric(rows["label"], errors="coerce")
    predicted = pd.to_numeric(rows["predicted_value"], errors="coerce")
    table = pd.DataFrame({"text": rows["text"], "label": true, "predicted_value": predicted.round(4),
                          "error": (predicted - true).round(4)})
    table = table[table["error"].notna() & (table["error"] != 0)]
    order = table["error"].abs().sort_values(ascending=False, kind="stable").index
    return table.loc[order].reset_index(drop=True)


def mistakes(rows: Optional[pd.DataFrame], task: str, separator: str = ";") -> pd.DataFrame:
    """The mistakes table of a task other than one label per text (see :data:`MISTAKES_TITLES`)."""
    return largest_errors(rows) if task == "regression" else wrong_label_sets(rows, separator)


def scatter_html(report: Dict[str, Any], metrics: Dict[str, float]) -> str:
    """The predicted-vs-true scatter plot of a number per text (its report's ``scatter`` points) with the
    correlation and how to read it; a note when the report has no points."""
    points = [p for p in report.get("scatter") or [] if _point(p)]
    if not points:
        return ('<p style="text-align:center;color:#6b7280">No scatter plot: this evaluation was recorded without '
                'its points. Evaluate again to see it.</p>') if report else ""
    pearson = metrics.get("pearson")
    score = f" — Pearson r {pearson:.3f}" if isinstance(pearson, (int, float)) else ""
    return figure_html("Predicted vs true", score, _scatter_svg(points),
                       "Each dot is a held-out row: its true number across, the model's prediction up. On the dashed "
                       "diagonal the prediction is exact; above it, too high; below it, too low.")


def figure_html(title: str, score: str, svg: str, caption: str) -> str:
    """A chart of the Evaluate tab: its title and score above, what it shows below."""
    return (f'<div style="text-align:center"><p style="margin:4px 0"><b>{html.escape(title)}</b>'
            f'{html.escape(score)}</p>{svg}<p style="margin:4px 0;font-size:13px;color:#4b5563">'
            f"{html.escape(caption)}</p></div>")


def _point(value: Any) -> bool:
    return (isinstance(value, (list, tuple)) and len(value) == 2
            and all(isinstance(v, (int, float)) and math.isfinite(v) for v in value))


def _scatter_svg(points: Sequence[Sequence[float]], size: int = 260) -> str:
    """True (x) against predicted (y) on the same scale, with the diagonal of exact predictions; hover a dot for its
    numbers."""
    left, top, bottom = 52, 10, 36
    width, height = left + size + 14, top + size + bottom
    low = min(min(p) for p in points)
    high = max(max(p) for p in points)
    span = (high - low) or 1.0
    low, high = low - 0.05 * span, high + 0.05 * span

    def x(value: float) -> float:
        return left + size * (value - low) / (high - low)

    def y(value: float) -> float:
        return top + size * (1 - (value - low) / (high - low))

    parts = [f'<svg id="scatter-chart" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
             'aria-label="Predicted against true values" style="display:block;margin:auto;max-width:100%;'
             'height:auto;font:11px sans-serif">']
    for tick in _ticks(low, high):
        parts.append(f'<line x1="{x(low):.1f}" y1="{y(tick):.1f}" x2="{x(high):.1f}" y2="{y(tick):.1f}" '
                     f'stroke="#e5e7eb"/><text x="{left - 6}" y="{y(tick) + 4:.1f}" text-anchor="end">{tick:g}</text>'
                     f'<text x="{x(tick):.1f}" y="{top + size + 14}" text-anchor="middle">{tick:g}</text>')
    parts.append(f'<line x1="{x(low):.1f}" y1="{y(low):.1f}" x2="{x(high):.1f}" y2="{y(high):.1f}" stroke="#9ca3af" '
                 'stroke-dasharray="5 4"><title>exact prediction</title></line>'
                 f'<text x="{left + size / 2}" y="{height - 4}" text-anchor="middle">true</text>'
                 f'<text x="12" y="{top + size / 2}" text-anchor="middle" '
                 f'transform="rotate(-90 12 {top + size / 2})">predicted</text>')
    parts += [f'<circle class="scatter-point" cx="{x(t):.1f}" cy="{y(p):.1f}" r="3" fill="#4f46e5" '
              f'fill-opacity="0.55"><title>true {t:g}, predicted {p:.3g}</title></circle>' for t, p in points]
    return "".join(parts) + "</svg>"


def _ticks(low: float, high: float, most: int = 5) -> List[float]:
    """Round ticks between ``low`` and ``high`` (1, 2 or 5 times a power of ten apart), at most about ``most``."""
    raw = (high - low) / most
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    first = math.ceil(low / step) * step
    return [round(first + i * step, 10) for i in range(int((high - first) / step) + 1)]


def predicted_labels_line(probabilities: Dict[str, float], thresholds: Dict[str, float]) -> str:
    """Several labels per text: the labels whose probability reaches their threshold, most probable first, with their
    probabilities (markdown); the others' probabilities are in the label view beside it."""
    chosen = sorted((name for name, p in probabilities.items() if p >= thresholds.get(name, 0.5)),
                    key=lambda name: -probabilities[name])
    if not chosen:
        return ("**No label** reaches its threshold for this text: it gets none of the labels. The probabilities of "
                "every label are listed.")
    shown = ", ".join(f"**{html.escape(name)}** ({probabilities[name]:.0%}, threshold {thresholds.get(name, 0.5):.2f})"
                      for name in chosen)
    return f"Labels: {shown}. Each label is predicted when its probability reaches its threshold, tuned on held-out " \
           "rows; every label's probability is listed."


def predicted_number_line(value: float, target: str) -> str:
    """A number per text: the prediction, named after the target column."""
    return f"Predicted **{html.escape(target)}**: **{value:.4g}**"


def preview_columns(table: pd.DataFrame, first_added: int) -> List[str]:
    """The prediction columns a batch preview shows: the predicted label and its confidence, the predicted labels
    (several per text) or the predicted number."""
    added = list(table.columns[first_added:])
    if added and str(added[0]).startswith(("predicted_labels", "predicted_value")):
        return added[:1]
    return added[:2]
