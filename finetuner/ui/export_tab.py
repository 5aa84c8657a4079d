"""Export tab: run history (use, download or delete a run), import of a model zip, and an optional push to
the Hugging Face Hub. Everything here is limited to the session owner's runs (see ``finetuner.ui``)."""

from __future__ import annotations

import html
import shutil
import tempfile
from pathlib import Path
from dataclasses import dataclass
from typing import Any, Callable, List, Optional, Tuple

import gradio as gr
import pandas as pd

from ..classifier import ONNX_DIR
from ..errors import DataError, FinetunerError
from ..training.onnx_graph import ONNX_FILE
from ..export import export_zip, push_to_hub
from ..runs import METHOD_NAMES, RunRecord
from . import compare
from .common import AppContext, kept_outputs, short_run_label, status_line, user_errors
from .progress_view import loss_chart
from .uploads import UploadBox

_EXPORTS = Path(tempfile.gettempdir()) / "finetuner-exports"  # one zip per run, rebuilt on each download
_HISTORY_COLUMNS = ["run", "status", "model", "preset", "method", "rows", "accuracy", "F1 (macro)", "seconds",
                    "created (UTC)"]
# Fixed shares of the width, so that the last column is not pushed out of view (Gradio 6.31 sizes by content).
_HISTORY_WIDTHS = ["15%", "8%", "16%", "8%", "10%", "6%", "7%", "7%", "7%", "16%"]
_DIFFERS_STYLE = "background-color: #fef3c7"  # a compared setting whose values differ


@dataclass
class ExportView:
    """The Export tab's components."""

    history: gr.Dataframe
    run: gr.Dropdown
    use: gr.Button
    download: gr.Button
    onnx: gr.Button
    int8: gr.Checkbox
    refresh: gr.Button
    delete: gr.Button
    confirm_row: gr.Row
    confirm: gr.Button
    cancel: gr.Button
    status: gr.Markdown
    archive: gr.File
    upload: UploadBox
    compare: "CompareView"
    repo: gr.Textbox
    token: gr.Textbox
    private: gr.Checkbox
    push: gr.Button
    push_status: gr.Markdown


@dataclass
class CompareView:
    """The "Compare runs" section: the runs picked, the button, a summary line, three tables and the loss chart."""

    runs: gr.Dropdown
    button: gr.Button
    status: gr.Markdown
    settings: gr.Dataframe
    metrics: gr.Dataframe
    per_class: gr.Dataframe
    loss: gr.HTML

    @property
    def outputs(self) -> List[Any]:
        return [self.status, self.settings, self.metrics, self.per_class, self.loss]


def build(ctx: AppContext, tab: gr.Tab) -> None:
    wire(ExportHandlers(ctx), layout(), ctx, tab)


def layout() -> ExportView:
    gr.Markdown("Your training runs are kept on this server and listed only here, in this browser, beside the runs "
                "trained on the server with the command line (listed for everyone, deleted only there). Pick a "
                "completed run to make it the active model (for Evaluate and Predict) or download it; any finished "
                "run of yours can be deleted.")
    history = gr.Dataframe(pd.DataFrame(columns=_HISTORY_COLUMNS), label="Run history", interactive=False,
                           elem_id="export-history", column_widths=_HISTORY_WIDTHS, wrap=True)
    with gr.Row():
        with gr.Column(scale=3):
            run = gr.Dropdown(label="Run", allow_custom_value=True, elem_id="export-run")
            with gr.Row():
                use = gr.Button("Use this run", variant="primary", elem_id="export-use")
                download = gr.Button("Download model (.zip)", elem_id="export-zip")
            with gr.Row():
                onnx = gr.Button("Export ONNX (.zip)", elem_id="export-onnx")
                int8 = gr.Checkbox(False, label="with an int8 copy (smaller, faster; checked too)",
                                   elem_id="export-int8")
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
    compare = _compare_layout()
    with gr.Accordion("Push to the Hugging Face Hub (optional)", open=False):
        gr.Markdown("The token is used for this upload only: it is not stored or logged, and the field is "
                    "cleared afterwards.")
        with gr.Row():
            repo = gr.Textbox(label="Repository", placeholder="your-name/my-classifier")
            token = gr.Textbox(label="Access token (write)", type="password", placeholder="hf_…")
            private = gr.Checkbox(True, label="Private repository")
        push = gr.Button("Push to the Hub")
        push_status = gr.Markdown()
    return ExportView(history, run, use, download, onnx, int8, refresh, delete, confirm_row, confirm, cancel, status,
                      archive, upload, compare, repo, token, private, push, push_status)


def _compare_layout() -> CompareView:
    with gr.Accordion("Compare runs", open=False, elem_id="compare"):
        gr.Markdown(f"Pick {compare.MIN_COMPARED} to {compare.MAX_COMPARED} finished runs to see their settings, "
                    "scores, per-class F1 and training losses side by side. Settings that differ are marked "
                    f"{compare.DIFFERS_MARK} and highlighted.")
        with gr.Row():
            runs = gr.Dropdown(label=f"Runs to compare ({compare.MIN_COMPARED}–{compare.MAX_COMPARED})",
                               multiselect=True, max_choices=compare.MAX_COMPARED, allow_custom_value=True,
                               scale=4, elem_id="compare-runs")
            button = gr.Button("Compare", variant="primary", scale=1, elem_id="compare-button")
        status = gr.Markdown(elem_id="compare-status")
        settings = gr.Dataframe(pd.DataFrame(columns=["setting"]), label="Settings", interactive=False, wrap=True,
                                elem_id="compare-settings")
        with gr.Row():
            metrics = gr.Dataframe(pd.DataFrame(columns=["metric"]), label="Scores (held-out rows)",
                                   interactive=False, elem_id="compare-metrics")
            per_class = gr.Dataframe(pd.DataFrame(columns=["class"]), label="F1 per class", interactive=False,
                                     elem_id="compare-per-class")
        loss = gr.HTML(_compare_chart([]), elem_id="compare-loss")
    return CompareView(runs, button, status, settings, metrics, per_class, loss)


def _compare_chart(records: List[RunRecord]) -> str:
    return loss_chart(compare.loss_points(records), 760, 300, series=compare.series_colors(records), marked=(),
                      chart_id="compare-loss-chart", empty="The training losses of the compared runs appear here.")


def _failed(count: int, at: int) -> Callable[[str], List[Any]]:
    return lambda message: kept_outputs(count, {at: status_line(message)})


class ExportHandlers:
    """The Export tab's handlers, all limited to the session owner's runs."""

    def __init__(self, ctx: AppContext):
        self.ctx = ctx

    def refresh_history(self, active: Optional[str], request: gr.Request) -> Tuple[pd.DataFrame, Any]:
        """Your runs (newest first) and the finished ones to choose from (completed ones first)."""
        records = self.ctx.store.list(self.ctx.owner(request))
        table = pd.DataFrame([_row(r) for r in records], columns=_HISTORY_COLUMNS)
        choices = _finished_choices(records)
        value = active if any(active == value for _, value in choices) else (choices[0][1] if choices else None)
        return table, gr.Dropdown(choices=choices, value=value)

    def compare_choices(self, picked: Optional[List[str]], request: gr.Request) -> Any:
        """The finished runs offered for comparison (those picked and still there stay picked)."""
        choices = _finished_choices(self.ctx.store.list(self.ctx.owner(request)))
        offered = {value for _, value in choices}
        return gr.Dropdown(choices=choices, value=[run_id for run_id in picked or [] if run_id in offered])

    @user_errors(keep=_failed(5, 0))
    def compare_runs(self, run_ids: Optional[List[str]], request: gr.Request) -> Tuple[Any, ...]:
        """Compare 2 to 4 of your runs: a summary line, the settings (a last column marks those that differ), the
        scores, the F1 of each class (one column per run) and the training losses overlaid (an SVG chart)."""
        owner = self.ctx.owner(request)
        records = [self.ctx.store.get(run_id, owner) for run_id in compare.chosen_runs(run_ids)]
        settings = compare.settings_table(records)
        marked = settings.style.apply(lambda row: [_DIFFERS_STYLE if row[compare.DIFFERS] else ""] * len(row), axis=1)
        return (compare.summary(records), marked, compare.metrics_table(records),
                compare.per_class_f1_table(records), _compare_chart(records))

    @user_errors(keep=_failed(2, 1))
    def use_run(self, run_id: Optional[str], request: gr.Request) -> Tuple[str, str]:
        """Make a completed run of yours the session's active model (used by evaluate and predict)."""
        run_id = _chosen(run_id)
        self.ctx.store.load_model(run_id, self.ctx.owner(request))
        return run_id, f"Run **{run_id}** is now the active model."

    @user_errors
    def download_zip(self, run_id: Optional[str], request: gr.Request) -> str:
        """A zip of your run's model folder with a model card."""
        return str(export_zip(self.ctx.store, _chosen(run_id), _EXPORTS, owner=self.ctx.owner(request)))

    @user_errors(keep=_failed(2, 1))
    def export_onnx(self, run_id: Optional[str], int8: bool, request: gr.Request) -> Tuple[str, str]:
        """Your run's model as a checked ONNX folder (kept in the run: Predict then runs on ONNX Runtime), zipped."""
        run_id, owner = _chosen(run_id), self.ctx.owner(request)
        model = self.ctx.store.load_model(run_id, owner)
        folder = self.ctx.store.model_dir(run_id, owner) / ONNX_DIR
        result = model.export_onnx(folder, quantize="int8" if int8 else None)
        model.classifier.use_onnx(folder / ONNX_FILE)
        _EXPORTS.mkdir(parents=True, exist_ok=True)
        archive = shutil.make_archive(str(_EXPORTS / f"finetuner-{run_id}-onnx"), "zip", folder.parent, ONNX_DIR)
        checks = [f"fp32 {result.fp32.line()}"] + ([f"int8 {result.int8.line()}"] if result.int8 else [])
        return archive, (f"Exported run **{run_id}** to ONNX ({', '.join(result.files)}); checked on "
                         + "; ".join(checks) + ". Predictions of this run now use ONNX Runtime.")

    @user_errors(keep=_failed(2, 1))
    def ask_to_delete(self, run_id: Optional[str], request: gr.Request) -> Tuple[Any, ...]:
        """The page's first click on Delete: say what would be deleted and show the confirm button."""
        record = self.ctx.store.get(_chosen(run_id), self.ctx.owner(request))
        return (gr.Row(visible=True), f"Delete run **{record.id}** ({record.status}, {html.escape(record.base_model)})"
                                      " with its model and records? This cannot be undone.")

    @user_errors(keep=_failed(5, 3))
    def delete_run(self, run_id: Optional[str], active: Optional[str], request: gr.Request) -> Tuple[Any, ...]:
        """Delete a finished run of yours (completed, stopped or failed: its model and records)."""
        run_id = _chosen(run_id)
        self.ctx.store.delete(run_id, self.ctx.owner(request))
        active = None if active == run_id else active
        return (*self.refresh_history(active, request), active, f"Deleted run {run_id}.", gr.Row(visible=False))

    @user_errors(keep=_failed(2, 1))
    def import_run(self, path: Optional[str], request: gr.Request) -> Tuple[str, str]:
        """Import a model zip exported by finetuner as a new completed run of yours, and make it the active model.
        Zips with paths outside their folder, links, pickle files or too much data are refused unopened."""
        if not path:
            raise DataError("Upload a model zip exported by finetuner.")
        record = self.ctx.store.import_zip(path, owner=self.ctx.owner(request))
        return record.id, f"Imported the model as run **{record.id}**; it is now the active model."

    def push_run(self, run_id: Optional[str], repo_id: str, secret: str, is_private: bool,
                 request: gr.Request) -> Tuple[str, str]:
        try:
            url = push_to_hub(self.ctx.store, _chosen(run_id), repo_id, secret, private=is_private,
                              owner=self.ctx.owner(request))
        except Exception as exc:  # FinetunerError messages are user-facing; nothing here may echo the token
            message = str(exc) if isinstance(exc, FinetunerError) else f"Push failed ({type(exc).__name__})."
            return status_line(message), ""
        return f"✓ Pushed to [{html.escape(url)}]({html.escape(url)}).", ""


def wire(handlers: ExportHandlers, view: ExportView, ctx: AppContext, tab: gr.Tab) -> None:
    private = {"api_visibility": "private"}
    listing = [view.history, view.run]
    compared = view.compare

    def relisted(event: Any) -> None:
        """After an event that lists the runs again, the runs offered for comparison follow."""
        event.then(handlers.compare_choices, compared.runs, compared.runs, show_progress="hidden", **private)

    # After the page's owner id is restored (ctx.session_started), not at app.load: it would list for the wrong owner.
    relisted(ctx.session_started.then(handlers.refresh_history, ctx.active_run, listing, **private))
    relisted(gr.on([tab.select, ctx.active_run.change], handlers.refresh_history, ctx.active_run, listing,
                   **private))
    relisted(view.refresh.click(handlers.refresh_history, ctx.active_run, listing, api_name="list_runs"))
    view.use.click(handlers.use_run, view.run, [ctx.active_run, view.status], api_name="load_run")
    view.download.click(handlers.download_zip, view.run, view.archive, api_name="export_model")
    view.onnx.click(handlers.export_onnx, [view.run, view.int8], [view.archive, view.status], api_name="export_onnx")
    view.delete.click(handlers.ask_to_delete, view.run, [view.confirm_row, view.status], **private)
    # The API's /delete_run deletes at once: a client names the run it deletes.
    relisted(view.confirm.click(handlers.delete_run, [view.run, ctx.active_run],
                                [*listing, ctx.active_run, view.status, view.confirm_row], api_name="delete_run"))
    gr.on([view.cancel.click, view.run.input], lambda: (gr.Row(visible=False), ""), None,
          [view.confirm_row, view.status], **private)
    view.upload.upload(handlers.import_run, view.upload, [ctx.active_run, view.status], api_name="import_model")
    compared.button.click(handlers.compare_runs, compared.runs, compared.outputs, api_name="compare_runs")
    # Private: hidden from gradio_client and the API page, so its token is never kept in a client's job history.
    # (Gradio still answers such events over plain HTTP, as it must for the page: push_run checks its inputs.)
    view.push.click(handlers.push_run, [view.run, view.repo, view.token, view.private],
                    [view.push_status, view.token], **private)


def _finished_choices(records: List[RunRecord]) -> List[Tuple[str, str]]:
    """(label, run id) of the finished runs, completed ones first (then newest first, as listed)."""
    finished = sorted((r for r in records if r.status != "running"), key=lambda r: r.status != "completed")
    return [(short_run_label(r.id, r.base_model, r.metrics)
             + ("" if r.status == "completed" else f" · {r.status}"), r.id) for r in finished]


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
