"""The Gradio web app: one module per tab, wired to the backend (runs, runner, prepare, evaluation, export).

``build_app()`` returns a queued ``gr.Blocks``; ``app.py`` launches it. No model is loaded at startup:
models load on the first training, and a run's model on its first prediction.

Users never see each other's runs: each browser keeps a random owner id in a ``gr.BrowserState``
(localStorage), every run records its owner, and only the owner's runs are listed, loaded, evaluated,
exported or deleted. An API client (gradio_client) has no browser storage: its session gets a fresh
owner id, so it sees the runs it made in that session only.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Optional, Union

import gradio as gr

from ..models import DEFAULT_MODEL
from ..runner import Runner
from ..runs import METHOD_NAMES, RunError, RunStore
from . import data_tab, evaluate_tab, export_tab, label_tab, predict_tab, train_tab
from .common import AppContext, SessionOwners, main_score

DEFAULT_SAMPLE = "movie_reviews_sst2.csv"
_REPO_SAMPLES = Path(__file__).resolve().parents[2] / "sample_data"


def build_app(*, runs_dir: Optional[Union[str, Path]] = None, model: Optional[str] = None,
              sample: Optional[str] = None, samples_dir: Optional[Union[str, Path]] = None) -> gr.Blocks:
    """The app. Defaults come from the environment: FINETUNER_RUNS_DIR (./runs), FINETUNER_MODEL (the bundled
    all-MiniLM-L6-v2), FINETUNER_SAMPLE (the preloaded sample, movie_reviews_sst2.csv)."""
    samples = Path(samples_dir) if samples_dir else _REPO_SAMPLES if _REPO_SAMPLES.is_dir() else Path("sample_data")
    store = RunStore(runs_dir)
    # delete_cache: uploads and downloads Gradio keeps are removed an hour after they were made.
    with gr.Blocks(title="finetuner", analytics_enabled=False, delete_cache=(3600, 3600)) as app:
        ctx = AppContext(store=store, runner=Runner(store),
                         default_model=model or os.environ.get("FINETUNER_MODEL") or DEFAULT_MODEL,
                         samples_dir=samples, active_run=gr.State(None), owners=SessionOwners())
        # The page's owner id, kept in the browser. Its "secret" only obfuscates localStorage (Gradio sends it
        # to the page); it is derived from the runs folder so that saved ids still decrypt after a restart.
        saved_owner = gr.BrowserState(None, storage_key="finetuner-owner",
                                      secret=hashlib.sha256(f"finetuner:{store.root.resolve()}".encode()).hexdigest())

        def start_session(saved: Optional[str], request: gr.Request) -> str:
            """A page opens: take up the owner id its browser kept, or keep (and save) the session's new one."""
            return ctx.owners.restore(request, saved)

        ctx.session_started = app.load(start_session, saved_owner, saved_owner, api_visibility="private")
        gr.Markdown("# finetuner\nFine-tune a pre-trained transformer to classify texts: **1** load data, "
                    "**2** label the rows that have no label yet, **3** train, **4** evaluate, **5** predict, "
                    "**6** export.")
        active = gr.Markdown(_describe(ctx, None, ""), elem_id="active-model")
        with gr.Tabs():
            with gr.Tab("1 · Data", id="data"):
                data = data_tab.build(ctx, data_tab.load_initial(ctx, sample or os.environ.get("FINETUNER_SAMPLE")
                                                                   or DEFAULT_SAMPLE))
            with gr.Tab(data_tab.LABEL_TAB, id="label"):
                label_tab.build(ctx, data)
            with gr.Tab("3 · Train", id="train"):
                train_tab.build(ctx, data)
            with gr.Tab("4 · Evaluate", id="evaluate"):
                evaluate_tab.build(ctx)
            with gr.Tab("5 · Predict", id="predict"):
                predict_tab.build(ctx)
            with gr.Tab("6 · Export", id="export") as export:
                export_tab.build(ctx, export)

        def describe(run_id: Optional[str], request: gr.Request) -> str:
            return _describe(ctx, run_id, ctx.owner(request))

        ctx.active_run.change(describe, ctx.active_run, active, api_visibility="private")

        def restore_active(run_id: Optional[str], request: gr.Request) -> Optional[str]:
            """After a reload, the owner's most recent completed run is the active model again."""
            if run_id:
                return gr.skip()
            latest = next((r.id for r in ctx.store.list(ctx.owner(request)) if r.status == "completed"), None)
            return latest or gr.skip()

        ctx.session_started.then(restore_active, ctx.active_run, ctx.active_run, api_visibility="private")

        def stop_session_training(request: gr.Request) -> None:
            """Closing the page stops that session's training, so the trainer is free for others."""
            ctx.runner.stop(request.session_hash or "")
            ctx.owners.forget(request)

        app.unload(stop_session_training)
    return app.queue(default_concurrency_limit=4)


def _describe(ctx: AppContext, run_id: Optional[str], owner: str) -> str:
    if not run_id:
        return "**Active model:** none yet — train one (Train tab) or pick an earlier run (Export tab)."
    try:
        record = ctx.store.get(run_id, owner)
    except RunError:  # deleted meanwhile
        return f"**Active model:** run {run_id} (no longer available)."
    score = main_score(record.metrics)
    score = f", {score} on held-out rows" if score else ""
    method = f" ({METHOD_NAMES[record.method]})" if record.method in METHOD_NAMES else ""
    return f"**Active model:** run `{run_id}` — {record.base_model}{method}{score}."
