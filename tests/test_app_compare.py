"""Comparing runs through the API (/compare_runs): two tiny runs side by side, only the caller's runs."""

from __future__ import annotations

import html
import re

import pandas as pd
import pytest
from gradio_client import Client, handle_file

from conftest import make_sentiment_data, serve_app

RUN_ID = re.compile(r"\d{8}-\d{6}-[0-9a-f]{6}")
QUICK = {"preset_name": "fast", "method": "finetune", "epochs": 2, "learning_rate": 3e-3, "batch_size": 16,
         "api_name": "/train"}


@pytest.fixture(scope="module")
def url(tmp_path_factory, tiny_bert):
    with serve_app(tmp_path_factory.mktemp("runs"), tiny_bert) as url:
        yield url


def _train(client: Client, **settings) -> str:
    progress, *_ = client.predict(**{**QUICK, **settings})
    assert "Completed" in progress, progress
    return RUN_ID.search(progress)[0]


def _rows(table: dict) -> dict:
    """A compared table as {first cell: the rest of its row}."""
    return {row[0]: row[1:] for row in table["data"]}


def test_two_runs_compared_side_by_side(url, tmp_path):
    client = Client(url, verbose=False)
    texts, labels = make_sentiment_data(60, seed=5)
    table = tmp_path / "reviews.csv"
    pd.DataFrame({"text": texts, "label": labels}).to_csv(table, index=False)
    client.predict(handle_file(str(table)), 0.2, api_name="/load_file")
    first = _train(client)
    second = _train(client, epochs=3, learning_rate=1e-3)

    status, settings, metrics, per_class, chart = client.predict([first, second], api_name="/compare_runs")
    assert "Comparing 2 runs" in status and first in status and second in status
    assert settings["headers"] == ["setting", first, second, "differs"]
    rows = _rows(settings)
    assert rows["epochs"] == [2, 3, "✱"] and rows["learning rate"][2] == "✱"
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
        Client(url, verbose=False).predict([first, second], api_name="/compare_runs")
    assert "not found" in html.unescape(str(refused.value))
