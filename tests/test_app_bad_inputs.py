"""The whole bad-input corpus (tests/bad_inputs.py) uploaded through the app's /load_file endpoint, one app
and one gradio_client for the module: every broken file gives a clear message, every good one loads, large
ones stay light for the page, and the app keeps answering afterwards."""

from __future__ import annotations

import html
import json

import pandas as pd
import pytest
from conftest import serve_app
from gradio_client import Client, handle_file

from bad_inputs import CASES
from finetuner.prepare import ERROR_MARK
from finetuner.ui.data_tab import MAX_CELL_CHARS, PAGE_SIZE, _page, replace_page

# Rejected by the upload component itself (its file_types), before the app's reader sees the file.
REFUSED_BY_UPLOAD = {"unsupported extension"}
_GRID_LIMIT_BYTES = 100_000  # what one page of the grid may send to the browser


@pytest.fixture(scope="module")
def client(tmp_path_factory, tiny_bert):
    with serve_app(tmp_path_factory.mktemp("runs"), tiny_bert) as url:
        yield Client(url, verbose=False)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return tmp_path_factory.mktemp("corpus")


def _grid(loaded) -> dict:
    """The grid page from /load_file's outputs: grid, page, page info, text column, label column, checks, balance,
    the "Loaded:" line, the sample picker and the upload box."""
    grid = loaded[0]
    return grid.get("value", grid)


@pytest.mark.parametrize("name, write, expectation", CASES, ids=[case[0] for case in CASES])
def test_every_corpus_file_through_the_ui(client, corpus, name, write, expectation):
    path = write(corpus)
    kind, detail = expectation
    try:
        loaded = client.predict(handle_file(str(path)), 0.2, api_name="/load_file")
    except Exception as exc:  # the app answered with an error message
        message = html.unescape(str(exc))
        assert kind == "error", f"{name}: a good file was refused: {message}"
        assert "Traceback" not in message and len(message) < 600, message
        words = (".csv",) if name in REFUSED_BY_UPLOAD else detail
        if name in REFUSED_BY_UPLOAD:
            assert "Invalid file type" in message, message  # Gradio's own message lists the accepted types
        else:
            assert path.name in message, message  # says which file
        for word in words:
            assert word.lower() in message.lower(), message
        return
    checks, grid = loaded[5], _grid(loaded)
    assert "Traceback" not in checks
    assert len(json.dumps(loaded)) < _GRID_LIMIT_BYTES, f"{name}: the page would receive a huge update"
    assert len(grid["data"]) <= PAGE_SIZE
    if kind == "error":
        # The table loads so that it can be fixed in the grid; what stops training is shown as a problem check.
        problems = [line for line in checks.split("\n\n") if line.startswith(ERROR_MARK)]
        assert problems, f"{name}: loaded without a problem shown: {checks}"
        for word in detail:
            assert word.lower() in " ".join(problems).lower(), checks
        with pytest.raises(Exception) as caught:  # and training on it is refused with a message
            client.predict(preset_name="fast", epochs=1, api_name="/train")
        assert "Traceback" not in str(caught.value) and len(str(caught.value)) > 20, str(caught.value)
    else:
        assert "rows**" in checks and f"{ERROR_MARK} The table" not in checks, checks


def test_large_cases_are_paged_and_long_cells_cut_for_display(client, corpus):
    big = [case for case in CASES if case[0] == "200k rows"][0][1](corpus)
    loaded = client.predict(handle_file(str(big)), 0.2, api_name="/load_file")
    assert "Rows 1–50 of 200000 · page 1 of 4000" in loaded[2]
    assert len(_grid(loaded)["data"]) == PAGE_SIZE and "**200000 rows**" in loaded[5]
    huge = [case for case in CASES if case[0] == "a 10 MB cell"][0][1](corpus)
    loaded = client.predict(handle_file(str(huge)), 0.2, api_name="/load_file")
    first = _grid(loaded)["data"][0][0]
    assert len(first) < MAX_CELL_CHARS + 100 and "9,995,000 more characters not shown" in first
    assert "10,000,000 characters" in loaded[5]  # the checks still see the whole text


def test_editing_a_page_keeps_the_full_text_of_cut_cells():
    long_text = "word " * 3000
    frame = pd.DataFrame({"text": [long_text, "short"], "label": ["a", "b"]})
    shown = _page(frame, 1)
    assert shown.iloc[0, 0] != long_text and shown.iloc[0, 0].startswith(long_text[:MAX_CELL_CHARS])
    shown.iloc[1, 1] = "a"  # edit another cell of the page
    edited = replace_page(frame, 1, shown)
    assert edited.iloc[0, 0] == long_text and edited["label"].tolist() == ["a", "a"]
    shown.iloc[0, 0] = "rewritten"  # a cut cell that is edited takes the new text
    assert replace_page(frame, 1, shown).iloc[0, 0] == "rewritten"


def test_the_app_still_answers_after_the_corpus(client):
    loaded = client.predict("lab_sentences.csv", 0.2, api_name="/load_sample")
    assert "**6 rows**" in loaded[5]
    with pytest.raises(Exception, match="No model yet"):
        client.predict("hello", api_name="/predict")
    assert client.predict(api_name="/list_runs")[0]["data"] == []
