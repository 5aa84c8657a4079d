"""Predict tab: a sentence to class probabilities and why (word attributions), and a file of texts to a CSV."""

from __future__ import annotations

import html
import tempfile
from pathlib import Path
from dataclasses import dataclass
from typing import Any, List, Optional, Tuple

import gradio as gr
import pandas as pd

from ..data import detect_text_column
from ..errors import DataError, FinetunerError, first_line
from ..explain import explain
from ..predictions import predictions_table, write_csv
from ..prepare import read_texts_table
from .common import (TABLE_FILE_TYPES, AppContext, column_widths, kept_outputs, page_update, shown_table,
                     status_line, user_errors)
from .task_results import predicted_labels_line, predicted_number_line, preview_columns
from .uploads import UploadBox

_CHUNK = 256
_PREVIEW_ROWS = 50
_PREVIEW_COLUMNS = ("text", "predicted_label", "confidence")
_PREVIEW_DECIMALS = 3
# A word named as support changes the label's log-odds by more than this (about 1 point of probability at p = 0.5).
_NOTABLE = 0.05
_NO_MODEL = "No model yet: train one on the Train tab, or pick a run on the Export tab."
# The prediction's title, per task.
_LABEL_TITLES = {"single_label": "Prediction (class probabilities)",
                 "multi_label": "Each label's probability (several labels per text)",
                 "regression": "Predicted number"}


@dataclass
class PredictView:
    """The Predict tab's components."""

    text: gr.Textbox
    submit: gr.Button
    label: gr.Label
    chosen: gr.Markdown
    why: gr.Button
    reason: gr.Markdown
    highlighted: gr.HighlightedText
    batch_file: UploadBox
    batch_button: gr.Button
    batch_csv: gr.File
    batch_status: gr.Markdown
    preview: gr.Dataframe

    @property
    def batch_outputs(self) -> List[Any]:
        return [self.batch_csv, self.preview, self.batch_status]


def build(ctx: AppContext) -> None:
    wire(PredictHandlers(ctx), layout(), ctx)


def layout() -> PredictView:
    with gr.Row():
        with gr.Column(scale=3):
            text = gr.Textbox(label="Text", placeholder="Type a sentence and press Enter", lines=1, max_lines=6,
                              elem_id="predict-text")
            submit = gr.Button("Predict", variant="primary", elem_id="predict-run")
        with gr.Column(scale=2):
            label = gr.Label(label=_LABEL_TITLES["single_label"], num_top_classes=10, elem_id="predict-label")
            chosen = gr.Markdown(elem_id="predict-chosen")  # several labels per text: those predicted
    # On a button, not with every prediction: it classifies the text once more per word. Measured with the bundled
    # model on a busy 2-core CPU: a prediction takes ~0.05 s, an explanation 0.05 s (9 words) to ~2 s (50 words).
    why = gr.Button("Why this label?", size="sm", elem_id="predict-explain")
    reason = gr.Markdown(elem_id="predict-explain-note")
    highlighted = gr.HighlightedText(label="Words that support the label (red) or speak against it (purple); "
                                           "stronger colour: a larger change in the label's log-odds when the "
                                           "word is left out",
                                     show_legend=False, elem_id="predict-explanation")
    gr.Markdown("### Batch prediction\nUpload a table with a text column (CSV, TSV, JSONL, Excel, Parquet) or a "
                ".txt file with one text per line; download the predictions as CSV.")
    with gr.Row():
        with gr.Column(scale=3):
            batch_file = UploadBox(label="Texts to classify", file_types=TABLE_FILE_TYPES, height=110,
                                 elem_id="predict-batch")
            batch_button = gr.Button("Predict file", elem_id="predict-file")
        batch_csv = gr.File(label="Predictions (CSV): your columns and rows, with the predictions added",
                            interactive=False, height=110, scale=2)
    batch_status = gr.Markdown(elem_id="predict-file-status")
    preview = gr.Dataframe(pd.DataFrame(columns=list(_PREVIEW_COLUMNS)), label=f"First {_PREVIEW_ROWS} predictions",
                           interactive=False, wrap=True, max_height=360,
                           column_widths=column_widths(list(_PREVIEW_COLUMNS), "text"))
    return PredictView(text, submit, label, chosen, why, reason, highlighted, batch_file, batch_button, batch_csv,
                       batch_status, preview)


class PredictHandlers:
    """The Predict tab's handlers: the session's active run predicts (only the owner's runs load)."""

    def __init__(self, ctx: AppContext):
        self.ctx = ctx

    @user_errors
    def predict(self, sentence: str, run_id: Optional[str], request: gr.Request) -> Any:
        """Class probabilities of one text from the active model (several labels per text: each label's
        probability; a number per text: the number)."""
        if not run_id:
            raise DataError(_NO_MODEL)
        if not (sentence or "").strip():
            raise DataError("Type a text to classify.")
        model = self.ctx.store.load_model(run_id, self.ctx.owner(request))
        scores = model.predict_proba([sentence])[0]
        task = model.label_map.task
        value: Any = round(next(iter(scores.values())), 4) if task == "regression" else scores
        # One label per text: the most probable is the prediction, as the heading says; several: the line under it.
        return page_update(gr.Label, value, label=_LABEL_TITLES[task], show_heading=task != "multi_label")

    def chosen_labels(self, sentence: str, run_id: Optional[str], request: gr.Request) -> str:
        """The line under the prediction: the labels predicted for the text (several labels per text: each whose
        probability reaches its threshold, also beyond the ten listed) or the number; empty for one label per text
        (the heading names it)."""
        if not run_id or not (sentence or "").strip():
            return ""
        model = self.ctx.store.load_model(run_id, self.ctx.owner(request))
        task = model.label_map.task
        if task == "single_label":
            return ""
        scores = model.predict_proba([sentence])[0]
        if task == "regression":
            return predicted_number_line(next(iter(scores.values())), model.label_map.names[0])
        thresholds = dict(zip(model.label_map.names, model.label_thresholds()))
        return predicted_labels_line(scores, thresholds)

    @user_errors
    def explain_text(self, sentence: str, run_id: Optional[str], request: gr.Request
                     ) -> Tuple[List[Tuple[str, Optional[float]]], str]:
        """Why the active model gives a text its label: each word's score is how much the label's log-odds,
        log(p / (1 - p)), drop when the word is left out (scaled so the strongest is ±1); and a line naming the
        label."""
        if not run_id:
            raise DataError(_NO_MODEL)
        if not (sentence or "").strip():
            raise DataError("Type a text to explain.")
        model = self.ctx.store.load_model(run_id, self.ctx.owner(request))
        try:
            result = explain(model, sentence)
        except FinetunerError:
            raise
        except Exception as exc:  # an explanation is an aid: its failure for a task is said, not a crash
            raise DataError(f"No explanation for this model ({model.label_map.task.replace('_', ' ')}): "
                            f"{first_line(exc)}") from None
        if model.label_map.task != "single_label":  # the label at its threshold, or what raises / lowers the number
            return result.highlighted(), f"{html.escape(result.headline())}. {html.escape(result.note)}".strip()
        support = ", ".join(f"“{html.escape(token)}”" for token, _ in result.top(3, _NOTABLE)) or "no single word"
        line = (f"**{html.escape(result.label)}** ({result.probability:.0%}): most supported by {support}. "
                f"{html.escape(result.note)}")
        return result.highlighted(), line.strip()

    @user_errors(keep=lambda message: kept_outputs(3, {2: status_line(message)}))
    def predict_file(self, path: Optional[str], run_id: Optional[str], request: gr.Request,
                     progress: gr.Progress = gr.Progress()) -> Tuple[str, pd.DataFrame, str]:  # noqa: B008
        """Predictions for every row of a file, as a CSV and a preview: every column and row of the file, in order,
        with predicted_label, confidence and one p_<class> column per class added (empty texts get no
        prediction). Formula-like cells are neutralised in the CSV."""
        if not run_id:
            raise DataError(_NO_MODEL)
        if not path:
            raise DataError("Upload a file of texts first.")
        model = self.ctx.store.load_model(run_id, self.ctx.owner(request))
        frame = read_texts_table(path)
        column = detect_text_column(frame)
        texts = frame[column].map(lambda v: "" if pd.isna(v) else str(v)).tolist()
        filled = [i for i, value in enumerate(texts) if value.strip()]
        if not filled:
            raise DataError(f"No texts to classify in column {column!r} of {Path(path).name}.")
        parts = []
        for start in progress.tqdm(range(0, len(filled), _CHUNK), desc="Predicting"):
            parts.append(predictions_table(model, [texts[i] for i in filled[start:start + _CHUNK]]))
        table = with_predictions(frame, filled, pd.concat(parts, ignore_index=True).drop(columns="text"))
        # A fixed name in a fresh folder: an uploaded file name is never part of a path written here.
        target = Path(tempfile.mkdtemp(prefix="finetuner-predictions-")) / "predictions.csv"
        write_csv(table, target)
        empty = len(texts) - len(filled)
        note = f"Predicted {len(filled):,} row(s) of `{html.escape(Path(path).name)}` (texts from column " \
               f"`{html.escape(str(column))}`)."
        if empty:
            rows = [str(i + 1) for i, value in enumerate(texts) if not value.strip()]
            note += (f" {empty:,} row(s) with an empty text have no prediction (row {', '.join(rows[:5])}"
                     f"{'…' if empty > 5 else ''}).")
        return str(target), _preview(table, column, frame.shape[1]), note


def wire(handlers: PredictHandlers, view: PredictView, ctx: AppContext) -> None:
    gr.on([view.submit.click, view.text.submit], handlers.predict, [view.text, ctx.active_run], view.label,
          api_name="predict", concurrency_limit=4).then(
        user_errors(handlers.chosen_labels), [view.text, ctx.active_run], view.chosen, api_visibility="private")
    view.why.click(handlers.explain_text, [view.text, ctx.active_run], [view.highlighted, view.reason],
                   api_name="explain", concurrency_limit=4)
    # An explanation (or the labels) of an earlier text is not left beside a new one. Cleared in the browser, so
    # that a clearing sent to a busy server cannot land after the next prediction's labels.
    view.text.input(None, None, [view.highlighted, view.reason, view.chosen], js="() => [null, '', '']",
                    show_progress="hidden", api_visibility="private")
    view.batch_button.click(handlers.predict_file, [view.batch_file, ctx.active_run], view.batch_outputs,
                            api_name="predict_file")


def with_predictions(frame: pd.DataFrame, rows: List[int], predictions: pd.DataFrame) -> pd.DataFrame:
    """``frame`` (every column and row, in order) with the prediction columns added; ``predictions`` holds the
    predictions of the rows at positions ``rows``, the other rows get empty cells. A prediction column whose name
    the file already uses is called e.g. ``predicted_label_2``."""
    result = frame.reset_index(drop=True).copy()
    for name in predictions.columns:
        target, n = name, 2
        while target in result.columns:
            target, n = f"{name}_{n}", n + 1
        column = pd.Series([None] * len(result), dtype=object)
        column.iloc[rows] = predictions[name].to_numpy(dtype=object)
        result[target] = column
    return result


def _preview(table: pd.DataFrame, text_column: str, first_added: int) -> Any:
    """The first rows for the page: the text, predicted label and confidence (several labels per text: the
    predicted labels; a number per text: the number) with numbers to 3 decimals, long texts cut."""
    added = preview_columns(table, first_added)
    shown = table.head(_PREVIEW_ROWS)[[text_column, *added]].copy()
    for column in added:
        if not str(column).startswith("predicted_label"):  # the confidence or the predicted number
            shown[column] = pd.to_numeric(shown[column], errors="coerce").round(_PREVIEW_DECIMALS)
    columns = list(shown.columns)
    return page_update(gr.Dataframe, shown_table(shown), column_widths=column_widths(columns, columns[0]))
