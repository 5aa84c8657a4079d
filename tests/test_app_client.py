"""The app's named API endpoints, driven with gradio_client against the app served in-process (tiny model)."""

from __future__ import annotations

import re
import time
import zipfile
from pathlib import Path

import pandas as pd
import pytest
from conftest import make_sentiment_data, serve_app
from gradio_client import Client, handle_file


RUN_ID = re.compile(r"\d{8}-\d{6}-[0-9a-f]{6}")
# Fully fine-tuned, so that runs take steps and epochs ("auto" may pick the embedding head, done in a second).
QUICK = {"preset_name": "fast", "method": "finetune", "epochs": 3, "learning_rate": 3e-3, "batch_size": 16,
         "api_name": "/train"}


@pytest.fixture(scope="module")
def url(tmp_path_factory, tiny_bert):
    with serve_app(tmp_path_factory.mktemp("runs"), tiny_bert) as url:
        yield url


def _client(url: str) -> Client:
    return Client(url, verbose=False)


def _train(client: Client, **settings) -> str:
    """Train through /train and return the completed run's id."""
    progress, _, epochs, log = client.predict(**{**QUICK, **settings})
    assert "Completed" in progress, progress
    assert epochs["data"], "no per-epoch evaluation rows"
    return RUN_ID.search(progress)[0]


def test_the_named_endpoints_are_published(url):
    endpoints = set(_client(url).view_api(print_info=False, return_format="dict")["named_endpoints"])
    assert {"/train", "/stop", "/predict", "/evaluate", "/predict_file", "/load_sample", "/load_file",
            "/load_run", "/export_model", "/compare_runs"} <= endpoints
    assert not any("push" in name for name in endpoints)  # the token-taking endpoint is not in the API


def test_load_train_predict_evaluate_export(url, tmp_path):
    client = _client(url)
    loaded = client.predict("movie_reviews_sst2.csv", 0.2, api_name="/load_sample")
    assert "**400 rows**, **2 classes**" in loaded[5]
    run_id = _train(client)

    prediction = client.predict("a wonderful film", api_name="/predict")
    assert prediction["label"] in ("negative", "positive")
    assert sum(c["confidence"] for c in prediction["confidences"]) == pytest.approx(1.0, abs=1e-4)

    title, metrics, per_class, confusion, wrong, reliability = client.predict(None, api_name="/evaluate")
    assert run_id in title and "held-out rows" in title
    assert [row[0] for row in metrics["data"]][:1] == ["Accuracy"]
    assert "Calibration error (ECE)" in [row[0] for row in metrics["data"]]
    assert {row[0] for row in per_class["data"]} == {"negative", "positive"} and "<table" in confusion
    assert 'class="reliability-bin"' in reliability and "Reliability diagram" in reliability

    test_file = tmp_path / "test.csv"
    pd.DataFrame({"text": ["great fun", "dull and boring", "a masterpiece"],
                  "label": ["positive", "negative", "positive"]}).to_csv(test_file, index=False)
    title, metrics, *_ = client.predict(handle_file(str(test_file)), api_name="/evaluate")
    assert "test.csv" in title and "(3 rows)" in title

    texts = tmp_path / "texts.csv"
    pd.DataFrame({"id": [1, 2, 3], "text": ["=HYPERLINK(\"http://x\")", "", "just fine " * 2000]}).to_csv(
        texts, index=False)
    csv_path, preview, note = client.predict(handle_file(str(texts)), api_name="/predict_file")
    written = pd.read_csv(csv_path)
    # Every column and row of the file, in order, with the predictions added; the empty text gets none.
    assert list(written.columns) == ["id", "text", "predicted_label", "confidence", "p_negative", "p_positive"]
    assert written["id"].tolist() == [1, 2, 3] and written["text"].tolist()[0].startswith("'=")
    assert pd.isna(written["predicted_label"][1]) and not pd.isna(written["predicted_label"][2])
    assert "1 row(s) with an empty text" in note and "row 2" in note
    assert len(preview["data"]) == 3 and len(preview["data"][2][0]) < 6000  # long texts cut for the page
    assert all(len(str(row[2]).split(".")[-1]) <= 3 for row in preview["data"] if row[2] != "")

    archive = client.predict(run_id, api_name="/export_model")
    assert Path(archive).name == f"finetuner-{run_id}.zip"
    assert "is now the active model" in client.predict(run_id, api_name="/load_run")

    before = client.predict("a wonderful film", api_name="/predict")
    onnx_zip, status = client.predict(run_id, False, api_name="/export_onnx")
    assert "labels identical to pytorch" in status and "now use ONNX Runtime" in status, status
    with zipfile.ZipFile(onnx_zip) as archive:
        assert {"onnx/model.onnx", "onnx/config.json", "onnx/labels.txt"} <= set(archive.namelist())
    after = client.predict("a wonderful film", api_name="/predict")
    assert after["label"] == before["label"]
    assert all(abs(a["confidence"] - b["confidence"]) < 1e-3
               for a, b in zip(after["confidences"], before["confidences"]))


def test_lora_on_a_tiny_decoder_trains_predicts_and_exports_the_adapter(url, tiny_llama, tmp_path, monkeypatch):
    client = _client(url)
    monkeypatch.setenv("FINETUNER_CACHE_DIR", str(tmp_path))  # the app runs in this process: nothing pulled
    with pytest.raises(Exception, match="python -m finetuner models pull smollm2"):
        client.predict(**{**QUICK, "model_name": "smollm2", "method": "lora"})
    progress, _, epochs, log = client.predict(preset_name="fast", epochs=2, batch_size=16, model_name=tiny_llama,
                                              method="lora", lora_r=4, lora_target_modules="q_proj, v_proj",
                                              api_name="/train")
    assert "Completed" in progress, progress
    run_id = RUN_ID.search(progress)[0]
    assert client.predict("a wonderful film", api_name="/predict")["label"] in ("negative", "positive")
    with zipfile.ZipFile(client.predict(run_id, api_name="/export_model")) as archive:
        names = {Path(name).name for name in archive.namelist()}
        card = archive.read(f"finetuner-{run_id}/README.md").decode()
    assert "adapter_model.safetensors" in names and "model.safetensors" not in names  # the adapter only
    assert "| method | lora |" in card and "| lora_r | 4 |" in card and "| learning_rate | None |" not in card
    assert f"needs the base model `{tiny_llama}`" in card
    with pytest.raises(Exception, match="not in the list of choices"):
        client.predict(**{**QUICK, "method": "qlora"})


def test_bad_input_gives_a_clear_message_and_the_app_stays_up(url, tmp_path, monkeypatch):
    client = _client(url)
    with pytest.raises(Exception, match="No model yet"):
        client.predict("hello", api_name="/predict")
    odd = tmp_path / "notes.docx"
    odd.write_bytes(b"PK\x03\x04 not a table")
    with pytest.raises(Exception, match="Invalid file type"):  # refused by the upload component itself
        client.predict(handle_file(str(odd)), 0.2, api_name="/load_file")
    binary = tmp_path / "table.csv"
    binary.write_bytes(b"\x00\x01\x02 binary \x00")
    with pytest.raises(Exception, match="binary file"):
        client.predict(handle_file(str(binary)), 0.2, api_name="/load_file")
    with pytest.raises(Exception, match="epochs"):
        client.predict(**{**QUICK, "epochs": -1})  # 0 would mean automatic
    with pytest.raises(Exception, match="not found"):
        client.predict(**{**QUICK, "model_name": str(tmp_path / "missing-model")})
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # the app runs in this process
    with pytest.raises(Exception, match="cannot be reached"):
        client.predict(**{**QUICK, "model_name": "distilbert-base-uncased"})
    with pytest.raises(Exception, match="column"):
        client.predict(**{**QUICK, "label_column": "no such column"})
    loaded = client.predict("lab_sentences.csv", 0.2, api_name="/load_sample")  # still serving
    assert "**6 rows**" in loaded[5]


def test_a_second_user_waits_in_line_while_predictions_keep_working(url):
    alice, bob = _client(url), _client(url)
    _train(alice)
    long_run = alice.submit(**{**QUICK, "epochs": 300})
    _wait_for(lambda: any("Step " in out[0] for out in long_run.outputs()), "alice's training to start")
    queued = bob.submit(**QUICK)
    _wait_for(lambda: any("queued (position 1)" in out[0] for out in queued.outputs()), "bob to be queued")
    assert alice.predict("what a great day", api_name="/predict")["label"] in ("negative", "positive")
    alice.predict(api_name="/stop")
    assert "Stopped at step" in long_run.result(timeout=120)[0]
    assert "Completed" in queued.result(timeout=120)[0]


def test_auto_trains_with_the_method_it_chose_and_says_which_and_why(url, tmp_path):
    client = _client(url)
    texts, labels = make_sentiment_data(40, seed=4)  # 32 training rows: 16 examples per class
    small = tmp_path / "small.csv"
    pd.DataFrame({"text": texts, "label": labels}).to_csv(small, index=False)
    client.predict(handle_file(str(small)), 0.2, api_name="/load_file")
    progress, _, epochs, log = client.predict(preset_name="fast", method="auto", api_name="/train")
    assert "Completed" in progress, progress
    assert re.search(r"Method: few-shot \(SetFit\) — 16 examples per class \(median over 2 classes, 32 rows\)",
                     progress)
    assert "Method: few-shot (SetFit) — " in log and epochs["data"]  # one evaluation, after the head
    run_id = RUN_ID.search(progress)[0]
    history = client.predict(api_name="/list_runs")[0]
    assert [row[4] for row in history["data"] if row[0] == run_id] == ["few-shot (SetFit)"]
    assert history["headers"][4] == "method"


def test_a_preset_given_to_train_applies_its_settings_unless_given_otherwise(url):
    client = _client(url)
    # Fully fine-tuned: one training (auto would train each candidate first), whose settings the card records.
    progress, _, epochs, _ = client.predict(preset_name="best", method="finetune", epochs=1, api_name="/train")
    assert "Completed" in progress, progress
    assert len(epochs["data"]) == 1  # epochs given: 1, not the preset's 6
    run_id = RUN_ID.search(progress)[0]
    with zipfile.ZipFile(client.predict(run_id, api_name="/export_model")) as archive:
        card = archive.read(f"finetuner-{run_id}/README.md").decode()
    # The preset's batch size and early stopping (the form's defaults were not given), recorded with the preset.
    assert "Preset: best (edited)" in card and "| batch_size | 16 |" in card
    assert "| early_stopping_patience | 2 |" in card and "| epochs | 1" in card
    assert "| learning_rate | None |" not in card and "| max_length | None |" not in card  # the values used
    assert "best (edited)" in [row[3] for row in client.predict(api_name="/list_runs")[0]["data"]]
    with pytest.raises(Exception, match="not in the list of choices"):
        client.predict(preset_name="fastest", api_name="/train")


def test_a_stopped_run_can_be_deleted(url):
    client = _client(url)
    job = client.submit(**{**QUICK, "epochs": 300})
    _wait_for(lambda: any("Step " in out[0] for out in job.outputs()), "the training to start")
    client.predict(api_name="/stop")
    assert "Stopped at step" in job.result(timeout=120)[0]
    table, picker = client.predict(api_name="/list_runs")
    stopped = [row[0] for row in table["data"] if row[1] == "stopped"]
    assert len(stopped) == 1 and stopped[0] in [value for _, value in picker["choices"]]
    table, _, status = client.predict(stopped[0], api_name="/delete_run")
    assert f"Deleted run {stopped[0]}" in status and table["data"] == []


def _wait_for(condition, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def _rows(table: dict) -> dict:
    """A compared table as {first cell: the rest of its row}."""
    return {row[0]: row[1:] for row in table["data"]}


def test_compare_runs_shows_two_runs_side_by_side_for_their_owner_only(url, tmp_path):
    client = _client(url)
    texts, labels = make_sentiment_data(60, seed=5)
    table = tmp_path / "reviews.csv"
    pd.DataFrame({"text": texts, "label": labels}).to_csv(table, index=False)
    client.predict(handle_file(str(table)), 0.2, api_name="/load_file")
    first = _train(client, epochs=2)
    second = _train(client, epochs=3, learning_rate=1e-3)

    status, settings, metrics, per_class, chart = client.predict([first, second], api_name="/compare_runs")
    assert "Comparing 2 runs" in status and first in status and second in status
    assert settings["headers"] == ["setting", first, second, "differs"]
    rows = _rows(settings)
    assert rows["epochs"] == ["2", "3", "✱"] and rows["learning rate"][2] == "✱"
    assert rows["batch size"] == [16, 16, ""] and rows["base model"][2] == ""
    assert metrics["headers"] == ["metric", first, second]
    assert all(isinstance(value, float) for value in _rows(metrics)["Accuracy"])
    assert set(_rows(per_class)) == {"positive", "negative"}
    assert chart.count("<polyline") == 2 and f'data-series="{first}"' in chart and f'data-series="{second}"' in chart

    for picked, message in (([first], "at least 2 runs"), ([first] * 2, "at least 2 runs"),
                            ([first, second, "a", "b", "c"], "at most 4 runs")):
        with pytest.raises(Exception, match=message):
            client.predict(picked, api_name="/compare_runs")

    # Another client (another owner) cannot compare these runs: they are not found for it.
    with pytest.raises(Exception) as refused:
        _client(url).predict([first, second], api_name="/compare_runs")
    assert "not found" in str(refused.value)
