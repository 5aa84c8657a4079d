"""The bad-input corpus through the command line, in this process: every file is predicted on or rejected in one line.

``predict`` reads each file with the CLI's chunked reader; ``train`` must reject every broken file (labels
included) before any training starts.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from bad_inputs import CASES
from finetuner import LLMFinetuner, load_table
from finetuner.cli import main

ERRORS = [case for case in CASES if case[2][0] == "error"]
OKS = [case for case in CASES if case[2][0] == "ok"]
# Broken only as training data: predict reads texts and ignores labels.
LABEL_ERRORS = {"one column only", "NaN labels", "single class", "numbers with text in them",
                "mixed label separators"}
LARGE_FILE_BYTES = 1_000_000


def ids(cases):
    return [case[0] for case in cases]


@pytest.fixture(scope="module")
def saved_model(tiny_bert, tmp_path_factory) -> str:
    """An untrained two-class model saved from the tiny BERT: enough to run ``predict``."""
    return str(LLMFinetuner(tiny_bert, num_labels=2).save(tmp_path_factory.mktemp("saved") / "model"))


@pytest.fixture
def model_inputs(monkeypatch):
    """The texts ``predict`` gives the model, in order. For files over 1 MB the model is not run (tokenising
    200k rows or a 10 MB text takes seconds; reading them is what is tested): every class gets 0.5."""
    seen = {"texts": [], "large": False}
    predict = LLMFinetuner.predict_proba_array

    def spy(self, texts):
        seen["texts"].extend(texts)
        return np.full((len(texts), len(self.labels)), 0.5) if seen["large"] else predict(self, texts)

    monkeypatch.setattr(LLMFinetuner, "predict_proba_array", spy)
    return seen


def run_cli(capsys, *argv):
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_line_error(code, out, err, path, words):
    assert code == 2, err
    assert out == "" and "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert path.name in lines[0], err  # says which file
    for word in words:
        assert word.lower() in lines[0].lower(), err


@pytest.mark.parametrize("name, write, expectation", ERRORS, ids=ids(ERRORS))
def test_train_rejects_the_file_before_training(name, write, expectation, tmp_path, tiny_bert, monkeypatch, capsys):
    def no_training(*args, **kwargs):
        raise AssertionError("training started")

    monkeypatch.setattr(LLMFinetuner, "fine_tune", no_training)
    path = write(tmp_path)
    code, out, err = run_cli(capsys, "train", "--data", path, "--model", tiny_bert, "--output", tmp_path / "run")
    assert_one_line_error(code, out, err, path, expectation[1])
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("name, write, expectation", ERRORS, ids=ids(ERRORS))
def test_predict_rejects_unreadable_files(name, write, expectation, tmp_path, saved_model, model_inputs, capsys):
    path = write(tmp_path)
    output = tmp_path / "predictions.jsonl"
    code, out, err = run_cli(capsys, "predict", "--model", saved_model, "--data", path, "--output", output)
    if name in LABEL_ERRORS:
        assert code == 0 and "Traceback" not in err, err
        return
    assert_one_line_error(code, out, err, path, expectation[1])
    assert not output.exists() and not list(tmp_path.glob(".predictions.jsonl.partial-*"))


@pytest.mark.parametrize("name, write, expectation", OKS, ids=ids(OKS))
def test_predict_reads_what_the_api_reads(name, write, expectation, tmp_path, saved_model, model_inputs, capsys):
    path = write(tmp_path)
    model_inputs["large"] = path.stat().st_size > LARGE_FILE_BYTES
    output = tmp_path / "predictions.jsonl"
    code, out, err = run_cli(capsys, "predict", "--model", saved_model, "--data", path, "--output", output)
    assert code == 0, err
    table = load_table(path)
    assert model_inputs["texts"] == table.texts  # the same texts, in the same order, as the Python API reads
    rows = [json.loads(line) for line in output.read_text(encoding="utf-8").splitlines()]
    assert len(rows) == len(table) and {"predicted_label", "confidence"} <= set(rows[0])
    lines = err.strip().splitlines()
    assert lines[-1].startswith(f"Predicted {len(table)} rows of {path.name}"), err
    warnings = [line[len("warning: "):] for line in lines[:-1]]
    assert all(line.startswith("warning: ") for line in lines[:-1]) and set(warnings) <= set(table.warnings), err
