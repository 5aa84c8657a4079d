"""Evaluate tab: metrics (beside the run's quick baselines), per-class report, confusion matrix and misclassified
rows of the active model."""

from __future__ import annotations

import html
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import gradio as gr
import pandas as pd

from ..baselines import BASELINE_NAMES
from ..data import detect_columns, read_table, table_to_labelled
from ..errors import DataError
from ..evaluation import (MISCLASSIFIED_COLUMNS, evaluate, metric_name, metrics_table, misclassified,
                          per_class_table)
from .common import TABLE_FILE_TYPES, AppContext, column_widths, kept_outputs, shown_table, status_line, user_errors
from .uploads import UploadBox

_SHOWN_ERRORS = 500
_COMPARED = ("accuracy", "f1_macro")
FINE_TUNED = "Fine-tuned model"


@dataclass
class EvaluateView:
    """The Evaluate tab's components."""

    test_file: UploadBox
    run_button: gr.Button
    status: gr.Markdown
    metrics: gr.Dataframe
    per_class: gr.Dataframe
    baselines_box: gr.Group
    comparison: gr.Dataframe
    reading: gr.Markdown
    confusion: gr.HTML
    errors: gr.Dataframe

    @property
    def outputs(self) -> List[Any]:
        """What an evaluation shows (see :func:`_views`)."""
        return [self.status, self.metrics, self.per_class, self.confusion, self.errors]

    @property
    def baselines_out(self) -> List[Any]:
        return [self.baselines_box, self.comparison, self.reading]


def build(ctx: AppContext) -> None:
    wire(EvaluateHandlers(ctx), layout(), ctx)


def layout() -> EvaluateView:
    gr.Markdown("Scores of the active model on the rows held out from training, or on a test file you upload.")
    test_file = UploadBox(label="Test file (optional, same columns as the training table)", elem_id="evaluate-file",
                        file_types=TABLE_FILE_TYPES, height=110)
    run_button = gr.Button("Evaluate", variant="primary", elem_id="evaluate-run")
    status = gr.Markdown("No model yet: train one on the Train tab, or pick a run on the Export tab.",
                         elem_id="evaluate-status")
    with gr.Row():
        metrics = gr.Dataframe(metrics_table({}), label="Metrics", interactive=False, elem_id="evaluate-metrics")
        per_class = gr.Dataframe(per_class_table({}), label="Per class", interactive=False)
    with gr.Group(visible=False) as baselines_box:
        comparison = gr.Dataframe(baseline_table({}, {}), interactive=False, elem_id="evaluate-baselines",
                                  label="The fine-tuned model beside quick baselines trained on the same rows "
                                        "(held-out rows)")
        reading = gr.Markdown(elem_id="evaluate-baselines-note")
    confusion = gr.HTML(label="Confusion matrix", elem_id="evaluate-confusion")
    errors = gr.Dataframe(misclassified(None), interactive=False, wrap=True, max_height=400, elem_id="evaluate-errors",
                          label=f"Misclassified rows, most confident first (up to {_SHOWN_ERRORS}); p_label is the "
                                "probability the model gave the true label",
                          column_widths=column_widths(list(MISCLASSIFIED_COLUMNS), "text"))
    return EvaluateView(test_file, run_button, status, metrics, per_class, baselines_box, comparison, reading,
                        confusion, errors)


def _failed(message: str) -> List[Any]:
    return kept_outputs(5, {0: status_line(message)})  # EvaluateView.outputs: the status line first


class EvaluateHandlers:
    """The Evaluate tab's handlers: the session's active run (only the owner's runs load)."""

    def __init__(self, ctx: AppContext):
        self.ctx = ctx

    def show_run(self, run_id: Optional[str], request: gr.Request) -> Tuple[Any, ...]:
        """The stored evaluation of the active run."""
        if not run_id:
            return ("No model yet: train one on the Train tab, or pick a run on the Export tab.",
                    metrics_table({}), per_class_table({}), "", misclassified(None))
        owner = self.ctx.owner(request)
        record = self.ctx.store.get(run_id, owner)
        rows = self.ctx.store.load_evaluation(run_id, owner)
        if record.preset == "imported":
            title = (f"Run **{run_id}** ({record.base_model}) was imported from a model zip: these are the scores "
                     "recorded in it. Upload a test file to evaluate it here.")
        else:
            where = f"{len(rows)} held-out rows" if rows is not None else "no held-out rows"
            source = record.data.get("source") or "the table"
            title = f"Run **{run_id}** ({record.base_model}) on {where} of `{source}`."
        return _views(title, record.metrics, record.report or {}, rows)

    @user_errors(keep=_failed)
    def run_evaluation(self, path: Optional[str], run_id: Optional[str], request: gr.Request) -> Tuple[Any, ...]:
        """Evaluate the active model on a test file (or show its held-out evaluation when no file is given)."""
        if not run_id:
            raise DataError("No model yet: train one on the Train tab, or pick a run on the Export tab.")
        if not path:
            return self.show_run(run_id, request)
        owner = self.ctx.owner(request)
        record = self.ctx.store.get(run_id, owner)
        frame = read_table(path)
        columns = set(frame.columns)
        text, label = detect_columns(frame, *(c if c in columns else None for c in
                                              (record.data.get("text_column"), record.data.get("label_column"))))
        table = table_to_labelled(frame, text, label)
        result = evaluate(self.ctx.store.load_model(run_id, owner), table.texts, table.labels)
        return _views(f"Run **{run_id}** on `{Path(path).name}` ({len(table)} rows).", result.metrics, result.report,
                      result.rows)

    def show_baselines(self, path: Optional[str], run_id: Optional[str], request: gr.Request) -> Tuple[Any, ...]:
        """The run's metrics beside its baselines: only for its held-out rows (where the baselines were scored)."""
        record = self.ctx.store.get(run_id, self.ctx.owner(request)) if run_id and not path else None
        if record is None or not record.baselines or not record.metrics:
            return gr.Group(visible=False), gr.skip(), ""
        return (gr.Group(visible=True), baseline_table(record.metrics, record.baselines),
                baseline_reading(record.metrics, record.baselines))


def wire(handlers: EvaluateHandlers, view: EvaluateView, ctx: AppContext) -> None:
    private = {"api_visibility": "private"}
    baselines_in = [view.test_file, ctx.active_run]
    view.run_button.click(handlers.run_evaluation, [view.test_file, ctx.active_run], view.outputs,
                          api_name="evaluate").then(
        user_errors(handlers.show_baselines), baselines_in, view.baselines_out, **private)
    ctx.active_run.change(user_errors(handlers.show_run, keep=_failed), ctx.active_run, view.outputs, **private).then(
        user_errors(handlers.show_baselines), baselines_in, view.baselines_out, **private)


def baseline_table(metrics: Dict[str, float], baselines: Dict[str, Dict[str, float]]) -> pd.DataFrame:
    """Accuracy and macro F1 of the fine-tuned model and of each baseline, side by side (one column each)."""
    columns = {FINE_TUNED: metrics, **{BASELINE_NAMES.get(name, name): values for name, values in baselines.items()}}
    table = pd.DataFrame({"metric": [metric_name(key) for key in _COMPARED]})
    for name, values in columns.items():
        table[name] = [round(float(values[key]), 4) if key in values else None for key in _COMPARED]
    return table


def baseline_reading(metrics: Dict[str, float], baselines: Dict[str, Dict[str, float]]) -> str:
    """One line: how many accuracy points fine-tuning gains (or loses) over the best baseline."""
    scored = {name: values["accuracy"] for name, values in baselines.items() if "accuracy" in values}
    if "accuracy" not in metrics or not scored:
        return ""
    best = max(scored, key=scored.get)
    points = 100 * (metrics["accuracy"] - scored[best])
    name = BASELINE_NAMES.get(best, best)
    if abs(points) < 0.05:
        return f"Fine-tuning: the same accuracy as the best baseline ({name})."
    verdict = "" if points > 0 else " — the quick baseline does better on these rows"
    return f"Fine-tuning: **{points:+.1f} points** accuracy over the best baseline ({name}){verdict}."


def _views(title: str, metrics: Dict[str, float], report: Dict[str, Any],
           rows: Optional[pd.DataFrame]) -> Tuple[Any, ...]:
    wrong = misclassified(rows) if rows is not None else None
    note = f" {len(wrong)} misclassified." if wrong is not None else ""
    if wrong is None:
        shown = misclassified(None)
    elif wrong.empty:  # say so, rather than show an empty table
        shown = pd.DataFrame([["No misclassified rows: every row was predicted correctly."]
                              + [""] * (len(MISCLASSIFIED_COLUMNS) - 1)], columns=list(MISCLASSIFIED_COLUMNS))
    else:
        shown = shown_table(wrong.head(_SHOWN_ERRORS))  # very long texts cut, as in the Data tab's grid
    return title + note, metrics_table(metrics), per_class_table(report), confusion_html(report), shown


def confusion_html(report: Dict[str, Any]) -> str:
    """The confusion matrix as a heatmap table (rows: true class, columns: predicted class)."""
    labels: List[str] = report.get("labels") or []
    matrix: List[List[int]] = report.get("confusion_matrix") or []
    if not labels or not matrix:
        return ""
    cell = "padding:10px 18px;text-align:center;border:1px solid #e5e7eb;font-size:15px;min-width:64px"
    head = "".join(f'<th style="{cell}">{html.escape(str(name))}</th>' for name in labels)
    body = []
    for i, (name, row) in enumerate(zip(labels, matrix)):
        total = sum(row) or 1
        cells = "".join(f'<td style="{cell};background:{_shade(v / total, i == j)}">{v}</td>'
                        for j, v in enumerate(row))
        body.append(f'<tr><th style="{cell};text-align:right">{html.escape(str(name))}</th>{cells}</tr>')
    return ('<div style="overflow-x:auto;text-align:center"><p style="margin:4px 0"><b>Confusion matrix</b> — rows: '
            'true class, columns: predicted class; colour shows the share of each true class.</p>'
            '<table style="border-collapse:collapse;margin:8px auto">'
            f'<tr><th style="{cell}">true \\ predicted</th>{head}</tr>'
            f'{"".join(body)}</table></div>')


def _shade(share: float, correct: bool) -> str:
    """Green for correct predictions, red for mistakes; stronger for a larger share of the true class."""
    return f"rgba({'22,163,74' if correct else '220,38,38'},{0.85 * share:.2f})" if share else "transparent"
