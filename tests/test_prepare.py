"""Checking an edited table for training: summary, problems, split, cleaning, unlabelled text files."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from conftest import make_sentiment_data

from finetuner.data import detect_text_column
from finetuner.errors import DataError
from finetuner.prepare import clean_table, drop_blank_rows, prepare, read_texts_table


def _table(n: int = 40) -> pd.DataFrame:
    texts, labels = make_sentiment_data(n, seed=3)
    return pd.DataFrame({"text": texts, "label": labels})


def test_a_good_table_is_summarised_and_split_stratified():
    checked = prepare(_table(40), eval_fraction=0.25, seed=0, source="demo.csv")
    assert checked.ok and not checked.errors
    assert (checked.text_column, checked.label_column) == ("text", "label")
    assert checked.class_counts == {"negative": 20, "positive": 20}
    assert len(checked.train_texts) == 30 and len(checked.eval_texts) == 10
    assert sorted(checked.eval_labels).count("positive") == 5
    summary = checked.summary()
    assert summary["train_rows"] == 30 and summary["eval_rows"] == 10 and summary["source"] == "demo.csv"
    assert "train_texts" not in summary
    assert "**40 rows**" in checked.to_markdown() and "stratified split of 25%" in checked.to_markdown()


@pytest.mark.parametrize("frame, message", [
    (None, "empty"),
    (pd.DataFrame({"text": [], "label": []}), "empty"),
    (pd.DataFrame({"only": ["a", "b"]}), "one column"),
    (pd.DataFrame({"text": ["a", "b", "c"], "label": ["x", "x", "x"]}), "single class"),
])
def test_unusable_tables_give_errors_not_exceptions(frame, message):
    checked = prepare(frame)
    assert not checked.ok and message in " ".join(checked.errors)
    with pytest.raises(DataError, match=message):
        checked.raise_for_errors()


def test_problems_are_counted_with_row_numbers():
    frame = pd.DataFrame({"text": ["good one", "", "bad one", "good one", "bad one", "meh"],
                          "label": ["pos", "neg", "neg", "pos", "pos", None]})
    checked = prepare(frame)
    assert checked.empty_texts == [2] and checked.missing_labels == [6]
    assert checked.duplicate_rows == 2 and checked.conflicting_texts == 1
    assert not checked.ok  # empty texts stop training; the message names the row
    text = checked.to_markdown()
    assert "1 empty text(s) (row 2)" in text and "conflicting labels" in text


def test_blank_rows_from_the_grid_are_ignored():
    frame = _table(20)
    frame.loc[len(frame)] = ["", None]
    cleaned, dropped = drop_blank_rows(frame)
    assert dropped == 1 and len(cleaned) == 20
    checked = prepare(frame)
    assert checked.ok and checked.blank_rows == 1 and checked.rows == 20


def test_a_separate_evaluation_file_is_used_and_overlap_reported():
    train = _table(30)
    evaluation = pd.DataFrame({"sentence": [train.text[0], "great film", "awful film"],
                               "label": [train.label[0], "positive", "negative"]})
    checked = prepare(train, eval_frame=evaluation)
    assert checked.ok and checked.eval_source == "file" and checked.eval_fraction is None
    assert len(checked.train_texts) == 30 and len(checked.eval_texts) == 3
    assert checked.overlap == 1 and "also in training" in checked.to_markdown()


def test_evaluation_labels_unknown_to_training_are_an_error():
    evaluation = pd.DataFrame({"text": ["so so"], "label": ["neutral"]})
    checked = prepare(_table(20), eval_frame=evaluation)
    assert not checked.ok and "neutral" in checked.errors[0]


def test_clean_table_drops_empty_and_repeated_texts():
    frame = pd.DataFrame({"text": ["a", " a ", "", "b", "c"], "label": ["x", "y", "x", None, "y"]})
    cleaned, removed = clean_table(frame, "text", "label")
    assert removed == 3 and cleaned["text"].tolist() == ["a", "c"]
    with pytest.raises(DataError):
        clean_table(frame, "nope", "label")


def test_texts_to_predict_from_txt_and_tables(tmp_path):
    lines = tmp_path / "texts.txt"
    lines.write_text("first text\n\n=SUM(A1)\n", encoding="utf-8")
    frame = read_texts_table(lines)
    assert frame["text"].tolist() == ["first text", "=SUM(A1)"]
    assert detect_text_column(frame) == "text"
    assert detect_text_column(pd.DataFrame({"id": [1, 2], "review": ["long text here", "another one"]})) == "review"
    (tmp_path / "empty.txt").write_text("\n \n", encoding="utf-8")
    with pytest.raises(DataError, match="no texts"):
        read_texts_table(tmp_path / "empty.txt")


def _emotions(n: int = 40) -> pd.DataFrame:
    """Texts with one or two of three labels, a third of them with two."""
    cells = ["joy", "anger", "joy;love", "love", "anger;joy", "love"]
    return pd.DataFrame({"text": [f"comment number {i}" for i in range(n)],
                         "labels": [cells[i % len(cells)] for i in range(n)]})


def test_several_labels_per_text_are_counted_per_label_and_split_at_random():
    checked = prepare(_emotions(42), eval_fraction=0.25, seed=0)
    assert checked.ok and checked.task.task == "multi_label" and checked.task.separator == ";"
    assert checked.class_counts == {"anger": 14, "joy": 21, "love": 21}
    assert checked.several_labels_rows == 14
    assert len(checked.eval_texts) == 10 and all(";" in v or v in {"joy", "anger", "love"} for v in checked.eval_labels)
    summary = checked.summary()
    assert summary["task"] == {"task": "multi_label", "reason": checked.task.reason, "separator": ";"}
    json.dumps(summary)  # stored with the run
    text = checked.to_markdown()
    assert "**several labels per text** (3 labels; 33% of rows have 2+" in text and "Why:" in text
    assert "Rows per label: anger: 14, joy: 21, love: 21" in text and "`a;b`" in text
    assert "a random split of 25%; not stratified" in text and "Class balance" not in text


def test_several_labels_per_text_warn_about_no_class_balance_and_allow_empty_cells():
    frame = _emotions(60)
    frame.loc[:19, "labels"] = "joy"  # skewed: would warn for one label per text
    frame.loc[25, "labels"] = ""
    checked = prepare(frame)
    assert checked.ok and not any("balanc" in w or "weight" in w for w in checked.warnings)
    assert "1 text(s) with none of the labels (row 26)" in checked.to_markdown()


def test_evaluation_labels_are_checked_per_label_name():
    evaluation = pd.DataFrame({"text": ["one", "two"], "labels": ["joy;love", "joy;surprise"]})
    checked = prepare(_emotions(30), eval_frame=evaluation)
    assert not checked.ok and "surprise" in checked.errors[0] and "joy" not in checked.errors[0]
    known = prepare(_emotions(30), eval_frame=evaluation.iloc[:1])
    assert known.ok and known.eval_labels == ["joy;love"]


def test_a_number_per_text_gets_its_range_and_no_classes():
    frame = pd.DataFrame({"text": [f"sentence {i}" for i in range(50)], "score": [1 + i * 0.08 for i in range(50)]})
    checked = prepare(frame, eval_fraction=0.2, seed=1)
    assert checked.ok and checked.task.task == "regression" and checked.class_counts == {}
    assert checked.target_stats == pytest.approx({"min": 1.0, "max": 4.92, "mean": 2.96})
    assert all(isinstance(v, float) for v in checked.train_labels) and len(checked.eval_texts) == 10
    text = checked.to_markdown()
    assert "**a number per text (regression)**: from 1 to 4.92, mean 2.96" in text
    assert "a random split of 20%" in text and "Class balance" not in text and "classes**" not in text
    evaluation = pd.DataFrame({"text": ["new one", "old one"], "score": [9.5, 2.0]})  # values unseen in training
    assert prepare(frame, eval_frame=evaluation).ok


def test_the_task_asked_for_overrides_detection_and_says_what_does_not_fit():
    stars = pd.DataFrame({"text": [f"review {i}" for i in range(30)], "label": [1 + i % 5 for i in range(30)]})
    assert prepare(stars).task.task == "single_label"  # a few whole numbers: class codes
    as_numbers = prepare(stars, task="regression")
    assert as_numbers.ok and as_numbers.task.task == "regression" and "set in the training settings" in \
        as_numbers.to_markdown()
    words = prepare(_emotions(20), task="regression")
    assert not words.ok and "not numbers" in words.errors[0] and "row 1 ('joy')" in words.errors[0]
    assert not prepare(_emotions(20), task="sometimes").ok
