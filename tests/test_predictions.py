"""Prediction tables and spreadsheet-safe CSV output."""

from __future__ import annotations

import csv

import numpy as np
import pandas as pd
import pytest
from conftest import TINY_CONFIG, make_sentiment_data

from finetuner import LLMFinetuner
from finetuner.predictions import FORMULA_PREFIXES, neutralize_cell, neutralize_frame, predictions_table, write_csv

DANGEROUS = ["=SUM(A1:A9)", "+1+2", "-2+3", "@SUM(1)", "\t=1", "\r=1", "=HYPERLINK(\"http://x\")"]
HARMLESS = ["hello", "", "a=b", "1+1", "email@example.com", "it's -5 today", " =1"]



@pytest.mark.parametrize("value", DANGEROUS)
def test_formula_prefixes_are_quoted(value):
    assert neutralize_cell(value) == "'" + value


def test_every_prefix_is_covered():
    assert {v[0] for v in DANGEROUS} == set(FORMULA_PREFIXES)


@pytest.mark.parametrize("value", HARMLESS)
def test_normal_text_passes_through(value):
    assert neutralize_cell(value) == value


@pytest.mark.parametrize("value", [5, -5, -2.5, 0.0, None, True, np.float32(-1.0)])
def test_non_text_values_pass_through(value):
    assert neutralize_cell(value) is value


def test_neutralize_frame_quotes_cells_and_headers_only_where_needed():
    frame = pd.DataFrame({"text": ["=1+1", "fine", "-bad"], "score": [-1.5, 2.0, 0.5], "=col": ["@x", "y", "z"]})
    safe = neutralize_frame(frame)
    assert list(safe.columns) == ["text", "score", "'=col"]
    assert safe["text"].tolist() == ["'=1+1", "fine", "'-bad"]
    assert safe["'=col"].tolist() == ["'@x", "y", "z"]
    assert safe["score"].tolist() == [-1.5, 2.0, 0.5]  # numbers untouched
    assert frame["text"].tolist() == ["=1+1", "fine", "-bad"]  # the input is not modified


def test_write_csv_output_read_back_has_the_quote_prefix(tmp_path):
    frame = pd.DataFrame({"text": ["=cmd|' /C calc'!A0", "ordinary text, with comma", "+1", "café"],
                          "predicted_label": ["@evil", "positive", "negative", "positive"],
                          "confidence": [0.9, 0.8, -0.1, 0.5]})
    path = write_csv(frame, tmp_path / "predictions.csv")
    assert path == tmp_path / "predictions.csv"
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["text", "predicted_label", "confidence"]
    assert rows[1] == ["'=cmd|' /C calc'!A0", "'@evil", "0.9"]
    assert rows[2] == ["ordinary text, with comma", "positive", "0.8"]
    assert rows[3] == ["'+1", "negative", "-0.1"]  # numbers are not quoted
    assert rows[4][0] == "café"
    assert not any(cell.startswith(FORMULA_PREFIXES) for row in rows for cell in row if cell != "-0.1")


@pytest.fixture(scope="module")
def three_class_finetuner(tiny_bert):
    texts, labels = make_sentiment_data(9, seed=3, classes=("positive", "negative", "neutral"))
    finetuner = LLMFinetuner(tiny_bert, config=TINY_CONFIG.replace(epochs=1))
    finetuner.fine_tune(texts, labels)
    return finetuner


def test_predictions_table(three_class_finetuner):
    texts = ["great film", "=1+1 terrible", "okay I guess", "the worst day"]
    table = predictions_table(three_class_finetuner, texts)
    assert list(table.columns) == ["text", "predicted_label", "confidence",
                                   "p_negative", "p_neutral", "p_positive"]
    assert table["text"].tolist() == texts
    probabilities = table[["p_negative", "p_neutral", "p_positive"]].to_numpy()
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    assert ((probabilities >= 0) & (probabilities <= 1)).all()
    np.testing.assert_allclose(table["confidence"], probabilities.max(axis=1))
    names = np.array(["negative", "neutral", "positive"])
    assert table["predicted_label"].tolist() == names[probabilities.argmax(axis=1)].tolist()
    assert table["predicted_label"].tolist() == three_class_finetuner.predict_labels(texts)
    expected = np.array([[d[n] for n in names] for d in three_class_finetuner.predict_proba(texts)])
    np.testing.assert_allclose(probabilities, expected, atol=1e-6)


def test_predictions_table_written_safely(three_class_finetuner, tmp_path):
    table = predictions_table(three_class_finetuner, ["=1+1 terrible", "great"])
    back = pd.read_csv(write_csv(table, tmp_path / "out.csv"), dtype=str, keep_default_na=False)
    assert back["text"].tolist() == ["'=1+1 terrible", "great"]
    np.testing.assert_allclose(back[["p_negative", "p_neutral", "p_positive"]].astype(float).sum(axis=1), 1.0,
                               atol=1e-5)
