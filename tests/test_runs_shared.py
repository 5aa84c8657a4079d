"""One run folder and one run record for the app, the command line and Python: a run trained with
``python -m finetuner train --output RUNS/NAME`` is listed by the app, made active, compared and exported there;
a run trained in the app is a ``--model`` of the command line (by folder or by id)."""

from __future__ import annotations

import json
import re

import pandas as pd
import pytest
from gradio_client import Client, handle_file

from conftest import make_sentiment_data, serve_app
from finetuner.runs import RunStore
from test_cli import FAST, run_cli

RUN_ID = re.compile(r"\d{8}-\d{6}-[0-9a-f]{6}")
QUICK = {"preset_name": "fast", "method": "finetune", "epochs": 8, "learning_rate": 3e-3, "batch_size": 8,
         "api_name": "/train"}


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    path = tmp_path_factory.mktemp("tables") / "reviews.csv"
    texts, labels = make_sentiment_data(80, seed=7)
    pd.DataFrame({"text": texts, "label": labels}).to_csv(path, index=False)
    return path


def test_a_cli_run_is_used_in_the_app_and_an_app_run_on_the_cli(table, tiny_bert, tmp_path, monkeypatch):
    runs = tmp_path / "runs"
    code, out, err = run_cli("train", "--data", table, "--model", tiny_bert, "--output", runs / "cli-sentiment",
                             "--epochs", "10", *FAST)
    assert code == 0, err
    with serve_app(runs, tiny_bert) as url:
        client = Client(url, verbose=False)
        # Listed by the app (its history and its run picker), made active, answering predictions.
        table_rows, picker = client.predict(api_name="/list_runs")
        assert [row[0] for row in table_rows["data"]] == ["cli-sentiment"]
        assert [value for _, value in picker["choices"]] == ["cli-sentiment"]
        assert "is now the active model" in client.predict("cli-sentiment", api_name="/load_run")
        prediction = client.predict("a wonderful excellent film", api_name="/predict")
        assert prediction["label"] == "positive"
        assert {item["label"] for item in prediction["confidences"]} == {"positive", "negative"}
        title, metrics, *_ = client.predict(None, api_name="/evaluate")  # its held-out rows, as for an app run
        assert "cli-sentiment" in title and metrics["data"][0][0] == "Accuracy"
        assert client.predict("cli-sentiment", api_name="/export_model").endswith("finetuner-cli-sentiment.zip")
        with pytest.raises(Exception, match="made outside the app"):  # shared, so nobody deletes it in the app
            client.predict("cli-sentiment", api_name="/delete_run")

        # A run trained in the app ...
        client.predict(handle_file(str(table)), 0.2, api_name="/load_file")
        app_run = RUN_ID.search(client.predict(**QUICK)[0])[0]
        assert [row[0] for row in client.predict(api_name="/list_runs")[0]["data"]] == [app_run, "cli-sentiment"]
        sentences = ["a wonderful excellent film", "an awful boring film"]
        in_app = [client.predict(text, api_name="/predict") for text in sentences]

    # ... predicts on the command line, from its folder and by its id in the runs folder.
    texts = tmp_path / "texts.csv"
    pd.DataFrame({"text": sentences}).to_csv(texts, index=False)
    monkeypatch.setenv("FINETUNER_RUNS_DIR", str(runs))
    for model in (runs / app_run, app_run):
        code, out, err = run_cli("predict", "--model", model, "--data", texts, "--output", tmp_path / "out.jsonl")
        assert code == 0, err
        rows = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
        assert [row["predicted_label"] for row in rows] == [answer["label"] for answer in in_app]
        for row, answer in zip(rows, in_app):
            for item in answer["confidences"]:
                assert row[f"p_{item['label']}"] == pytest.approx(item["confidence"], abs=1e-4)

    # Both folders hold the same layout and one record schema.
    store = RunStore(runs)
    for run_id in (app_run, "cli-sentiment"):
        record = store.get(run_id)
        assert record.status == "completed" and record.labels == ["negative", "positive"]
        assert record.metrics["accuracy"] >= 0.8, (run_id, record.metrics, record.config)
        assert record.config["method"] == "finetune"
        assert record.data["train_rows"] + record.data["eval_rows"] == 80
        assert {"model", "run.json", "evaluation.jsonl", "metrics.json"} <= {p.name for p in (runs / run_id).iterdir()}
    assert (store.get(app_run).origin, store.get("cli-sentiment").origin) == ("app", "cli")
    assert store.get("cli-sentiment").command.startswith("python -m finetuner train")
