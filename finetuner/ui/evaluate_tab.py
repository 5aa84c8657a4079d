"""Evaluate tab: metrics (beside the run's quick baselines), per-class report, confusion matrix, reliability diagram
and misclassified rows of the active model; for several labels per text the per-label table with its thresholds and
the rows with another label set, for a number per text the predicted-vs-true scatter plot and the largest errors."""

from __future__ import annotations

import html
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import gradio as gr
import pandas as pd

from ..baselines import BASELINE_NAMES, NOISE_P_VALUE
from ..data import detect_columns, read_table, table_to_labelled
from ..errors import DataError
from ..evaluation import (MISCLASSIFIED_COLUMNS, evaluate, metric_name, metrics_table, misclassified,
                          per_class_table)
from .common import (MAIN_METRIC_WORDS, TABLE_FILE_TYPES, AppContext, column_widths, kept_outputs, main_metric,
                     page_update, shown_table, status_line, user_errors)
from .task_results import MISTAKES_TITLES, NONE_WRONG, figure_html, mistakes, scatter_html
from .uploads import UploadBox

_SHOWN_ERRORS = 500
# The scores set beside the baselines', by the run's main score (common.MAIN_METRICS): one label per text, several
# (macro F1: there is no accuracy), a number (Pearson r).
_COMPARED = {"accuracy": ("accuracy", "f1_macro"), "f1_macro": ("f1_macro", "f1_micro", "f1_samples"),
             "pearson": ("pearson", "spearman", "mae", "rmse")}
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
    reliability: gr.HTML

    @property
    def outputs(self) -> List[Any]:
        """What an evaluation shows (see :func:`_views`); the reliability diagram last (API callers that read the
        first five values keep working)."""
        return [self.status, self.metrics, self.per_class, self.confusion, self.errors, self.reliability]

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
    with gr.Row():
        with gr.Column():  # gr.HTML alone does not take its share of the row
            confusion = gr.HTML(label="Confusion matrix", elem_id="evaluate-confusion")
        with gr.Column():
            reliability = gr.HTML(label="Reliability diagram", elem_id="evaluate-reliability")
    errors = gr.Dataframe(misclassified(None), interactive=False, wrap=True, max_height=400, elem_id="evaluate-errors",
                          label=MISTAKES_TITLES["single_label"].format(shown=_SHOWN_ERRORS),
                          column_widths=column_widths(list(MISCLASSIFIED_COLUMNS), "text"))
    return EvaluateView(test_file, run_button, status, metrics, per_class, baselines_box, comparison, reading,
                        confusion, errors, reliability)


def _failed(message: str) -> List[Any]:
    return kept_outputs(6, {0: status_line(message)})  # EvaluateView.outputs: the status line first


class EvaluateHandlers:
    """The Evaluate tab's handlers: the session's active run (only the owner's runs load)."""

    def __init__(self, ctx: AppContext):
        self.ctx = ctx

    def show_run(self, run_id: Optional[str], request: gr.Request) -> Tuple[Any, ...]:
        """The stored evaluation of the active run."""
        if not run_id:
            return ("No model yet: train one on the Train tab, or pick a run on the Export tab.",
                    metrics_table({}), per_class_table({}), "", misclassified(None), "")
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
        task = record.data.get("task") if isinstance(record.data.get("task"), dict) else {}
        return _views(title, record.metrics, record.report or {}, rows, task.get("separator") or ";")

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
        model = self.ctx.store.load_model(run_id, owner)
        label_map = model.label_map  # the test file's labels are read as the model's task
        table = table_to_labelled(frame, text, label, task=label_map.task, separator=label_map.separator)
        result = evaluate(model, table.texts, table.labels)
        return _views(f"Run **{run_id}** on `{Path(path).name}` ({len(table)} rows).", result.metrics, result.report,
                      result.rows, label_map.separator)

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
    """The main scores of the fine-tuned model and of each baseline, side by side (one column each): accuracy and
    macro F1; for several labels per text macro, micro and per-text F1; for a number per text the correlations and
    errors."""
    compared = _COMPARED[main_metric(metrics) or "accuracy"]
    columns = {FINE_TUNED: metrics, **{BASELINE_NAMES.get(name, name): values for name, values in baselines.items()}}
    table = pd.DataFrame({"metric": [metric_name(key) for key in compared]})
    for name, values in columns.items():
        table[name] = [round(float(values[key]), 4) if key in values else None for key in compared]
    return table


def baseline_reading(metrics: Dict[str, float], baselines: Dict[str, Dict[str, float]]) -> str:
    """One line: how many points of the main score (accuracy; macro F1 for several labels per text, Pearson r × 100
    for a number) fine-tuning gains (or loses) over the best baseline."""
    key = main_metric(metrics)
    scored = {name: values[key] for name, values in baselines.items() if key in values}
    if key is None or not scored:
        return ""
    best = max(scored, key=scored.get)
    points = 100 * (metrics[key] - scored[best])
    name, words = BASELINE_NAMES.get(best, best), MAIN_METRIC_WORDS[key]
    if abs(points) < 0.05:  # no gap to judge
        return f"Fine-tuning: the same {words} as the best baseline ({name})."
    noise = _noise(baselines[best])
    verdict = "" if points > 0 else " — the quick baseline does better on these rows"
    return f"Fine-tuning: **{points:+.1f} points** {words} over the best baseline ({name}){verdict}.{noise}"


def _noise(scores: Dict[str, float]) -> str:
    """Whether the gap to a baseline is beyond noise, from the paired comparison on the same rows
    (:func:`finetuner.baselines.paired_counts`; runs recorded before it have none: nothing is said)."""
    if not {"paired_p_value", "only_model_right", "only_baseline_right"} <= set(scores):
        return ""
    model, baseline, p_value = (int(scores["only_model_right"]), int(scores["only_baseline_right"]),
                                scores["paired_p_value"])
    chance = "p < 0.001" if p_value < 0.001 else f"p = {p_value:.3f}" if p_value < 0.1 else f"p = {p_value:.2f}"
    rows = f"{model} row(s) only the model gets right, {baseline} only the baseline ({chance})"
    if p_value < NOISE_P_VALUE:
        return f" Beyond noise: {rows}."
    return (f" Within noise: {rows}; on these rows the two cannot be told apart — more held-out rows would "
            "tell.")


def _views(title: str, metrics: Dict[str, float], report: Dict[str, Any], rows: Optional[pd.DataFrame],
           separator: str = ";") -> Tuple[Any, ...]:
    """What an evaluation shows (:attr:`EvaluateView.outputs`), for the task its report is of."""
    task = report.get("task") or "single_label"
    if task != "single_label":
        return _task_views(title, metrics, report, rows, task, separator)
    wrong = misclassified(rows) if rows is not None else None
    note = f" {len(wrong)} misclassified." if wrong is not None else ""
    if wrong is None:
        shown = misclassified(None)
    elif wrong.empty:  # say so, rather than show an empty table
        shown = pd.DataFrame([["No misclassified rows: every row was predicted correctly."]
                              + [""] * (len(MISCLASSIFIED_COLUMNS) - 1)], columns=list(MISCLASSIFIED_COLUMNS))
    else:
        shown = shown_table(wrong.head(_SHOWN_ERRORS))  # very long texts cut, as in the Data tab's grid
    return (title + note, metrics_table(metrics), per_class_table(report), confusion_html(report),
            _errors(shown, "single_label"), reliability_html(report, metrics))


def _task_views(title: str, metrics: Dict[str, float], report: Dict[str, Any], rows: Optional[pd.DataFrame],
                task: str, separator: str) -> Tuple[Any, ...]:
    """:func:`_views` for several labels per text (the per-label table with thresholds; no confusion matrix or
    reliability diagram: each label is a yes/no decision of its own) and for a number per text (the scatter plot
    in the confusion matrix's place)."""
    wrong = mistakes(rows, task, separator) if rows is not None else None
    note = ""
    if wrong is not None:
        note = (f" {len(wrong)} row(s) with another label set." if task == "multi_label"
                else f" Mean absolute error {metrics['mae']:.3g}." if "mae" in metrics else "")
    if wrong is not None and wrong.empty:
        wrong = pd.DataFrame([[NONE_WRONG[task]] + [""] * (wrong.shape[1] - 1)], columns=list(wrong.columns))
    shown = shown_table(wrong.head(_SHOWN_ERRORS)) if wrong is not None else mistakes(None, task)
    plot = scatter_html(report, metrics) if task == "regression" else ""
    return title + note, metrics_table(metrics), per_class_table(report), plot, _errors(shown, task), ""


def _errors(table: pd.DataFrame, task: str) -> Any:
    """The mistakes table, titled for its task."""
    return page_update(gr.Dataframe, table, label=MISTAKES_TITLES[task].format(shown=_SHOWN_ERRORS),
                       column_widths=column_widths(list(table.columns), "text"))


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


def reliability_html(report: Dict[str, Any], metrics: Dict[str, float]) -> str:
    """The reliability diagram of an evaluation (its report's ``reliability`` bins) with the ECE and how to read it;
    a note for evaluations recorded without the bins, nothing when there is no evaluation."""
    bins = [b for b in report.get("reliability") or [] if isinstance(b, dict) and _finite(b, _BIN_KEYS)]
    if not bins:
        return ('<p style="text-align:center;color:#6b7280">No reliability diagram: this evaluation was recorded '
                'before confidence calibration was measured. Evaluate again to see it.</p>') if report else ""
    ece = metrics.get("ece")
    score = f" — calibration error (ECE) {ece:.3f}, lower is better" if isinstance(ece, (int, float)) else ""
    return figure_html("Reliability diagram", score, _reliability_svg(bins),
                       "Rows grouped by the model's confidence: each dot is a group, its mean confidence against the "
                       "share predicted right (larger dot: more rows). On the dashed diagonal the model is as sure as "
                       "it is right; below it, overconfident.")


_BIN_KEYS = ("low", "high", "confidence", "accuracy", "count")


def _finite(values: Dict[str, Any], keys: Tuple[str, ...]) -> bool:
    return all(isinstance(values.get(k), (int, float)) and math.isfinite(values[k]) for k in keys)


def _reliability_svg(bins: List[Dict[str, Any]], size: int = 260) -> str:
    """Mean confidence (x) against accuracy (y) per bin, both 0 to 1, with the diagonal of perfect calibration and
    a red line from the diagonal to each dot (the bin's gap); hover a dot for its numbers."""
    left, top, bottom = 44, 10, 36
    width, height = left + size + 14, top + size + bottom

    def x(value: float) -> float:
        return left + size * min(max(value, 0.0), 1.0)

    def y(value: float) -> float:
        return top + size * (1 - min(max(value, 0.0), 1.0))

    parts = [f'<svg id="reliability-chart" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
             'aria-label="Reliability diagram" style="display:block;margin:auto;max-width:100%;height:auto;'
             'font:11px sans-serif">']
    for tick in (0.0, 0.25, 0.5, 0.75, 1.0):
        parts.append(f'<line x1="{x(0)}" y1="{y(tick)}" x2="{x(1)}" y2="{y(tick)}" stroke="#e5e7eb"/>'
                     f'<text x="{left - 6}" y="{y(tick) + 4}" text-anchor="end">{tick:g}</text>'
                     f'<text x="{x(tick)}" y="{top + size + 14}" text-anchor="middle">{tick:g}</text>')
    parts.append(f'<line x1="{x(0)}" y1="{y(0)}" x2="{x(1)}" y2="{y(1)}" stroke="#9ca3af" stroke-dasharray="5 4">'
                 '<title>perfect calibration</title></line>'
                 f'<text x="{left + size / 2}" y="{height - 4}" text-anchor="middle">confidence</text>'
                 f'<text x="12" y="{top + size / 2}" text-anchor="middle" '
                 f'transform="rotate(-90 12 {top + size / 2})">accuracy</text>')
    most = max(b["count"] for b in bins) or 1
    path = " ".join(f'{x(b["confidence"]):.1f},{y(b["accuracy"]):.1f}' for b in bins)
    parts.append(f'<polyline points="{path}" fill="none" stroke="#4f46e5" stroke-width="1.5"/>')
    for b in bins:
        cx, cy = x(b["confidence"]), y(b["accuracy"])
        parts.append(f'<line x1="{cx:.1f}" y1="{y(b["confidence"]):.1f}" x2="{cx:.1f}" y2="{cy:.1f}" '
                     'stroke="#dc2626" stroke-width="2" opacity="0.6"/>'
                     f'<circle class="reliability-bin" cx="{cx:.1f}" cy="{cy:.1f}" '
                     f'r="{3 + 5 * math.sqrt(b["count"] / most):.1f}" fill="#4f46e5"><title>confidence '
                     f'{b["low"]:.2f}–{b["high"]:.2f}: {int(b["count"])} row(s), mean confidence '
                     f'{b["confidence"]:.3f}, accuracy {b["accuracy"]:.3f}</title></circle>')
    return "".join(parts) + "</svg>"
