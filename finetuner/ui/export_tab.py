"""Export tab: run history (use, download or delete a run), import of a model zip, and an optional push to
the Hugging Face Hub. Everything here is limited to the session owner's runs (see ``finetuner.ui``)."""

from __future__ import annotations

import html
import tempfile
from pathlib import Path
from typing import Any, Optional, Tuple

import gradio as gr
import pandas as pd

from ..errors import DataError, FinetunerError
from ..export import export_zip, push_to_hub
from ..runs import METHOD_NAMES, RunRecord
from .common import AppContext, kept_outputs, short_run_label, status_line, user_errors
from .uploads import UploadBox

_EXPORTS = Path(tempfile.gettempdir()) / "finetuner-exports"  # one zip per run, rebuilt on each download
_HISTORY_COLUMNS = ["run", "status", "model", "preset", "method", "rows", "accuracy", "F1 (macro)", "seconds",
                    "created (UTC)"]
# Fixed shares of the width, so that the last column is not pushed out of view (Gradio 6.31 sizes by content).
_HISTORY_WIDTHS = ["15%", "8%", "16%", "8%", "10%", "6%", "7%", "7%", "7%", "16%"]


def build(ctx: AppContext, tab: gr.Tab) -> None:
    gr.Markdown("Your training runs are kept on this server and listed only here, in this browser. Pick a completed "
                "run to make it the active model (for Evaluate and Predict) or download it; any finished run can "
                "be deleted.")
    history = gr.Dataframe(pd.DataFrame(columns=_HISTORY_COLUMNS), label="Run history", interactive=False,
                           elem_id="export-history", column_widths=_HISTORY_WIDTHS, wrap=True)
    with gr.Row():
        with gr.Column(scale=3):
            run = gr.Dropdown(label="Run", allow_custom_value=True, elem_id="export-run")
            with gr.Row():
                use = gr.Button("Use this run", variant="primary", elem_id="export-use")
                download = gr.Button("Download model (.zip)", elem_id="export-zip")
            with gr.Row():
                refresh = gr.Button("Refresh list", size="sm")
                delete = gr.Button("Delete run…", variant="stop", size="sm", elem_id="export-delete")
            with gr.Row(visible=False) as confirm_row:  # deleting takes a second, deliberate click
                confirm = gr.Button("Yes, delete it for good", variant="stop", size="sm", elem_id="export-confirm")
                cancel = gr.Button("Cancel", size="sm", elem_id="export-cancel")
            status = gr.Markdown(elem_id="export-status")
        with gr.Column(scale=2):
            archive = gr.File(label="Model zip: safetensors weights, tokenizer, labels and a model card (README.md)",
                              interactive=False)
            upload = UploadBox(label="Import model (.zip): a zip downloaded from finetuner becomes a new run of yours "
                                   "and the active model", file_types=[".zip"], height=110, elem_id="export-import")
    with gr.Accordion("Push to the Hugging Face Hub (optional)", open=False):
        gr.Markdown("The token is used for this upload only: it is not stored or logged, and the field is "
                    "cleared afterwards.")
        with gr.Row():
            repo = gr.Textbox(label="Repository", placeholder="your-name/my-classifier")
            token = gr.Textbox(label="Access token (write)", type="password", placeholder="hf_…")
            private = gr.Checkbox(True, label="Private repository")
        push = gr.Button("Push to the Hub")
        push_status = gr.Markdown()

    def refresh_history(active: Optional[str], request: gr.Request) -> Tuple[pd.DataFrame, Any]:
        """Your runs (newest first) and the finished ones to choose from (completed ones first)."""
        records = ctx.store.list(ctx.owner(request))
        table = pd.DataFrame([_row(r) for r in records], columns=_HISTORY_COLUMNS)
        finished = sorted((r for r in records if r.status != "running"), key=lambda r: r.status != "completed")
        choices = [(short_run_label(r.id, r.base_model, r.metrics.get("accuracy"))
                    + ("" if r.status == "completed" else f" · {r.status}"), r.id) for r in finished]
        value = active if any(active == value for _, value in choices) else (choices[0][1] if choices else None)
        return table, gr.Dropdown(choices=choices, value=value)

    def failed(count: int, at: int):
        return lambda message: kept_outputs(count, {at: status_line(message)})

    @user_errors(keep=failed(2, 1))
    def use_run(run_id: Optional[str], request: gr.Request) -> Tuple[str, str]:
        """Make a completed run of yours the session's active model (used by evaluate and predict)."""
        run_id = _chosen(run_id)
        ctx.store.load_model(run_id, ctx.owner(request))
        return run_id, f"Run **{run_id}** is now the active model."

    @user_errors
    def download_zip(run_id: Optional[str], request: gr.Request) -> str:
        """A zip of your run's model folder with a model card."""
        return str(export_zip(ctx.store, _chosen(run_id), _EXPORTS, owner=ctx.owner(request)))

    @user_errors(keep=failed(2, 1))
    def ask_to_delete(run_id: Optional[str], request: gr.Request) -> Tuple[Any, ...]:
        """The page's first click on Delete: say what would be deleted and show the confirm button."""
        record = ctx.store.get(_chosen(run_id), ctx.owner(request))
        return (gr.Row(visible=True), f"Delete run **{record.id}** ({record.status}, {html.escape(record.base_model)})"
                                      " with its model and records? This cannot be undone.")

    @user_errors(keep=failed(5, 3))
    def delete_run(run_id: Optional[str], active: Optional[str], request: gr.Request) -> Tuple[Any, ...]:
        """Delete a finished run of yours (completed, stopped or failed: its model and records)."""
        run_id = _chosen(run_id)
        ctx.store.delete(run_id, ctx.owner(request))
        active = None if active == run_id else active
        return (*refresh_history(active, request), active, f"Deleted run {run_id}.", gr.Row(visible=False))

    @user_errors(keep=failed(2, 1))
    def import_run(path: Optional[str], request: gr.Request) -> Tuple[str, str]:
        """Import a model zip exported by finetuner as a new completed run of yours, and make it the active model.
        Zips with paths outside their folder, links, pickle files or too much data are refused unopened."""
        if not path:
            raise DataError("Upload a model zip exported by finetuner.")
        record = ctx.store.import_zip(path, owner=ctx.owner(request))
        return record.id, f"Imported the model as run **{record.id}**; it is now the active model."

    def push_run(run_id: Optional[str], repo_id: str, secret: str, is_private: bool,
                 request: gr.Request) -> Tuple[str, str]:
        try:
            url = push_to_hub(ctx.store, _chosen(run_id), repo_id, secret, private=is_private,
                              owner=ctx.owner(request))
        except Exception as exc:  # FinetunerError messages are user-facing; nothing here may echo the token
            message = str(exc) if isinstance(exc, FinetunerError) else f"Push failed ({type(exc).__name__})."
            return status_line(message), ""
        return f"✓ Pushed to [{html.escape(url)}]({html.escape(url)}).", ""

    # After the page's owner id is restored (ctx.session_started), not at app.load: it would list for the wrong owner.
    ctx.session_started.then(refresh_history, ctx.active_run, [history, run], api_visibility="private")
    gr.on([tab.select, ctx.active_run.change], refresh_history, ctx.active_run, [history, run],
          api_visibility="private")
    refresh.click(refresh_history, ctx.active_run, [history, run], api_name="list_runs")
    use.click(use_run, run, [ctx.active_run, status], api_name="load_run")
    download.click(download_zip, run, archive, api_name="export_model")
    delete.click(ask_to_delete, run, [confirm_row, status], api_visibility="private")
    # The API's /delete_run deletes at once: a client names the run it deletes.
    confirm.click(delete_run, [run, ctx.active_run], [history, run, ctx.active_run, status, confirm_row],
                  api_name="delete_run")
    gr.on([cancel.click, run.input], lambda: (gr.Row(visible=False), ""), None, [confirm_row, status],
          api_visibility="private")
    upload.upload(import_run, upload, [ctx.active_run, status], api_name="import_model")
    # Private: hidden from gradio_client and the API page, so its token is never kept in a client's job history.
    # (Gradio still answers such events over plain HTTP, as it must for the page: push_run checks its inputs.)
    push.click(push_run, [run, repo, token, private], [push_status, token], api_visibility="private")


def _chosen(run_id: Optional[str]) -> str:
    if not run_id:
        raise DataError("Choose a run first (train one on the Train tab).")
    return run_id


def _row(record: RunRecord) -> list:
    metrics = record.metrics or {}
    return [record.id, record.status, record.base_model, record.preset, METHOD_NAMES.get(record.method, record.method),
            (record.data or {}).get("rows"),
            _round(metrics.get("accuracy")), _round(metrics.get("f1_macro")), record.duration_seconds,
            record.created_at.replace("T", " ")[:19]]


def _round(value: Optional[float]) -> Optional[float]:
    return None if value is None else round(float(value), 4)
