"""Predict tab: a sentence to class probabilities, and a file of texts to a downloadable CSV."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Dict, Optional, Tuple

import gradio as gr
import pandas as pd

from ..errors import DataError
from ..predictions import predictions_table, write_csv
from ..prepare import guess_text_column, read_texts_table
from .common import TABLE_FILE_TYPES, AppContext, column_widths, user_errors, warn

_CHUNK = 256
_PREVIEW_ROWS = 50
_PREVIEW_COLUMNS = ("text", "predicted_label", "confidence")
_NO_MODEL = "No model yet: train one on the Train tab, or pick a run on the Export tab."


def build(ctx: AppContext) -> None:
    with gr.Row():
        with gr.Column(scale=3):
            text = gr.Textbox(label="Text", placeholder="Type a sentence and press Enter", lines=1, max_lines=6,
                              elem_id="predict-text")
            submit = gr.Button("Predict", variant="primary", elem_id="predict-run")
        label = gr.Label(label="Prediction (class probabilities)", num_top_classes=10, scale=2,
                         elem_id="predict-label")
    gr.Markdown("### Batch prediction\nUpload a table with a text column (CSV, TSV, JSONL, Excel, Parquet) or a "
                ".txt file with one text per line; download the predictions as CSV.")
    with gr.Row():
        with gr.Column(scale=3):
            batch_file = gr.File(label="Texts to classify", file_types=TABLE_FILE_TYPES, height=110)
            batch_button = gr.Button("Predict file", elem_id="predict-file")
        batch_csv = gr.File(label="Predictions (CSV)", interactive=False, height=110, scale=2)
    preview = gr.Dataframe(pd.DataFrame(columns=list(_PREVIEW_COLUMNS)), label=f"First {_PREVIEW_ROWS} predictions",
                           interactive=False, wrap=True, max_height=360,
                           column_widths=column_widths(list(_PREVIEW_COLUMNS), "text"))

    @user_errors
    def predict(sentence: str, run_id: Optional[str], request: gr.Request) -> Dict[str, float]:
        """Class probabilities of one text from the active model."""
        if not run_id:
            raise DataError(_NO_MODEL)
        if not (sentence or "").strip():
            raise DataError("Type a text to classify.")
        return ctx.store.load_model(run_id, ctx.owner(request)).predict_proba([sentence])[0]

    @user_errors
    def predict_file(path: Optional[str], run_id: Optional[str], request: gr.Request,
                     progress: gr.Progress = gr.Progress()) -> Tuple[str, pd.DataFrame]:
        """Predictions for every text in a file, as a CSV (formula-like cells neutralised) and a preview."""
        if not run_id:
            raise DataError(_NO_MODEL)
        if not path:
            raise DataError("Upload a file of texts first.")
        model = ctx.store.load_model(run_id, ctx.owner(request))
        frame = read_texts_table(path)
        column = guess_text_column(frame)
        texts = frame[column].map(lambda v: "" if pd.isna(v) else str(v)).tolist()
        empty = [row for row, value in enumerate(texts, start=1) if not value.strip()]
        if empty:
            warn(f"Skipped {len(empty)} row(s) with an empty {column!r} (row {', '.join(map(str, empty[:5]))}"
                       f"{'…' if len(empty) > 5 else ''}).")
            texts = [value for value in texts if value.strip()]
        if not texts:
            raise DataError(f"No texts to classify in column {column!r} of {Path(path).name}.")
        parts = []
        for start in progress.tqdm(range(0, len(texts), _CHUNK), desc="Predicting"):
            parts.append(predictions_table(model, texts[start:start + _CHUNK]))
        table = pd.concat(parts, ignore_index=True)
        # A fixed name in a fresh folder: an uploaded file name is never part of a path written here.
        target = Path(tempfile.mkdtemp(prefix="finetuner-predictions-")) / "predictions.csv"
        write_csv(table, target)
        return str(target), table.head(_PREVIEW_ROWS)[list(_PREVIEW_COLUMNS)]

    gr.on([submit.click, text.submit], predict, [text, ctx.active_run], label, api_name="predict",
          concurrency_limit=4)
    batch_button.click(predict_file, [batch_file, ctx.active_run], [batch_csv, preview], api_name="predict_file")
