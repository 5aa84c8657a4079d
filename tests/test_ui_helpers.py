"""UI helpers without a server: user errors on the page vs. through the API, the live loss chart, batch
predictions that keep the user's columns and rows, and the settings an API /train call gets from a preset."""

from __future__ import annotations

import gradio as gr
import pandas as pd
import pytest
from gradio.context import LocalContext

from finetuner.config import TrainConfig
from finetuner.errors import DataError
from finetuner.ui.common import MAX_CELL_CHARS, kept_outputs, shown_table, user_errors
from finetuner.ui.predict_tab import with_predictions
from finetuner.ui.progress_view import loss_chart
from finetuner.ui.train_tab import preset_settings


class _Request:
    def __init__(self, user: str):
        self.headers = {"x-gradio-user": user}


@pytest.fixture
def caller():
    """Set who sends the running event: the app's page ("app") or an API client ("api")."""
    def set_caller(user: str) -> None:
        LocalContext.request.set(_Request(user))
    yield set_caller
    LocalContext.request.set(None)


@user_errors(keep=lambda message: kept_outputs(3, {1: f"status: {message}"}))
def _failing(flag: bool):
    raise DataError("bad <table>")


@user_errors
def _failing_stream():
    yield 1
    raise DataError("stream broke")


def test_on_the_page_a_user_error_keeps_the_outputs_and_shows_a_status(caller, monkeypatch):
    warnings = []
    monkeypatch.setattr(gr, "Warning", lambda message, *a, **k: warnings.append(message))
    caller("app")
    updates = _failing(True)
    assert updates[0] == gr.skip() and updates[2] == gr.skip() and updates[1] == "status: bad <table>"
    assert warnings == ["bad &lt;table&gt;"]  # the toast (escaped)
    assert list(_failing_stream()) == [1, gr.skip()]


def test_an_api_call_gets_the_error(caller):
    caller("api")
    with pytest.raises(gr.Error, match="bad <table>"):  # unescaped for API clients (see common.error)
        _failing(True)
    LocalContext.request.set(None)  # no request at all (e.g. a direct call): an error too
    with pytest.raises(gr.Error, match="stream broke"):
        list(_failing_stream())


def test_the_loss_chart_shows_a_single_evaluation_point_and_integer_steps():
    assert "appears here" in loss_chart([])
    chart = loss_chart([{"step": 1, "loss": 0.7, "series": "training"}, {"step": 2, "loss": 0.6, "series": "training"},
                        {"step": 3, "loss": 0.65, "series": "evaluation"}])
    assert chart.count('<circle data-series="evaluation"') == 1  # one evaluation: one visible marker
    assert 'polyline data-series="training"' in chart
    assert ">1.5<" not in chart and ">3<" in chart


def test_batch_predictions_keep_every_column_and_row():
    frame = pd.DataFrame({"id": [7, 8, 9], "text": ["a", "", "c"], "predicted_label": ["x", "y", "z"]})
    predictions = pd.DataFrame({"predicted_label": ["pos", "neg"], "confidence": [0.9, 0.8]})
    result = with_predictions(frame, [0, 2], predictions)
    assert list(result.columns) == ["id", "text", "predicted_label", "predicted_label_2", "confidence"]
    assert result["id"].tolist() == [7, 8, 9] and result["predicted_label_2"].tolist() == ["pos", None, "neg"]


def test_long_texts_are_cut_for_display_only():
    frame = pd.DataFrame({"text": ["x" * (MAX_CELL_CHARS + 10), None]})
    shown = shown_table(frame)
    assert shown.iloc[0, 0].endswith("[10 more characters not shown]") and shown.iloc[1, 0] == ""


def test_a_preset_gives_the_settings_not_given_through_the_api():
    fast = TrainConfig.from_preset("fast")  # the form's defaults: "auto", so no batch size yet (0)
    given = dict(epochs=fast.epochs, learning_rate=3e-3, batch_size=0, max_length=0,
                 warmup_ratio=fast.warmup_ratio, weight_decay=fast.weight_decay, seed=fast.seed,
                 early_stopping_patience=0)
    settings = preset_settings("best", given)
    best = TrainConfig.from_preset("best")
    assert settings["epochs"] == best.epochs and settings["early_stopping_patience"] == 2
    assert settings["batch_size"] == best.batch_size
    assert settings["learning_rate"] == 3e-3  # given: kept


def test_lora_through_the_api_gets_lora_epochs_and_batch_size_unless_given():
    fast = TrainConfig.from_preset("fast")
    given = dict(epochs=fast.epochs, learning_rate=0, batch_size=0, max_length=0,
                 warmup_ratio=fast.warmup_ratio, weight_decay=fast.weight_decay, seed=fast.seed,
                 early_stopping_patience=0)
    lora = TrainConfig.from_preset("fast", method="lora")
    settings = preset_settings("fast", given, "lora")
    assert (settings["epochs"], settings["batch_size"]) == (lora.epochs, lora.batch_size) == (2.0, 16)
    assert preset_settings("fast", {**given, "batch_size": 4}, "lora")["batch_size"] == 4
    # An app whose form starts with LoRA (a decoder as its default model): its defaults are LoRA's.
    lora_form = {**given, "batch_size": 16}
    assert preset_settings("balanced", lora_form, "auto", "lora")["batch_size"] == 0  # auto: the method's default
