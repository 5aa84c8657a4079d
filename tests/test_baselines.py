"""Instant baselines: plausible scores on real news topics, odd labels, and their place in a training run."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from conftest import make_sentiment_data

import finetuner.baselines as baselines
from finetuner.baselines import BASELINE_NAMES, format_baselines, paired_counts, score_baselines
from finetuner.data import split_train_eval
from finetuner.errors import DataError
from finetuner.metrics import SUMMARY_KEYS
from finetuner.prepare import prepare
from finetuner.runner import Runner, TrainSpec
from finetuner.runs import RECORD_FILE, RunStore

NEWS = Path(__file__).resolve().parents[1] / "sample_data" / "news_topics_agnews.csv"


@pytest.fixture(scope="module")
def news_scores():
    table = pd.read_csv(NEWS).head(240)  # real AG News rows, 4 topics
    train_x, train_y, eval_x, eval_y, _ = split_train_eval(table["text"], table["label"], 0.25, seed=0)
    return score_baselines(train_x, train_y, eval_x, eval_y)


def test_both_baselines_score_well_above_chance_on_real_news(news_scores):
    assert set(news_scores) == {"tfidf_logreg", "embedding_logreg"} < set(BASELINE_NAMES)
    for name, scores in news_scores.items():
        assert set(scores) == set(SUMMARY_KEYS) | {"seconds"}
        assert all(0.0 <= scores[key] <= 1.0 for key in SUMMARY_KEYS)
        assert scores["accuracy"] > 0.45, (name, scores)  # chance is 0.25
        assert scores["f1_macro"] > 0.4 and scores["seconds"] > 0
    assert news_scores["embedding_logreg"]["accuracy"] > 0.7
    line = format_baselines(news_scores)
    assert "TF-IDF + logistic regression: accuracy 0." in line and "Sentence embeddings" in line


def test_integer_labels_and_an_evaluation_class_unseen_in_training():
    texts, labels = make_sentiment_data(40, seed=3)
    ids = [0 if label == "negative" else 1 for label in labels]
    scores = score_baselines(texts, ids, ["great good film", "awful bad film", "plain film"], [1, 0, 2])
    for values in scores.values():
        assert values["accuracy"] <= 2 / 3  # the class 2 row can never be right
        assert values["recall_macro"] <= 2 / 3


def test_a_single_training_class_is_a_data_error():
    with pytest.raises(DataError, match="single class"):
        score_baselines(["a", "b"], ["x", "x"], ["c"], ["x"])


# ------------------------------------------------------------------------------------------ in a training run

def _spec(model: str, config) -> TrainSpec:
    texts, labels = make_sentiment_data(60, seed=5)
    return TrainSpec(model, config, prepare(pd.DataFrame({"text": texts, "label": labels}), seed=config.seed))


def _events(job) -> list:
    items = []
    while not job.events.empty():
        items.append(job.events.get())
    return [item for item in items if isinstance(item, str)]


def test_a_run_scores_the_baselines_before_training_and_records_them(tmp_path, tiny_bert, tiny_config):
    runner = Runner(RunStore(tmp_path / "runs"))
    job = runner.submit(_spec(tiny_bert, tiny_config))
    assert job.done.wait(180) and job.status == "completed", job.error
    record = runner.store.get(job.record.id)
    assert set(record.baselines) == {"tfidf_logreg", "embedding_logreg"}
    assert record.baselines["embedding_logreg"]["accuracy"] > 0.8 and "seconds" in record.baselines["tfidf_logreg"]
    # after evaluation each baseline is compared with the model row by row on the same evaluation rows
    rows = runner.store.load_evaluation(job.record.id)
    model_right = (rows["label"].astype(str) == rows["predicted_label"].astype(str)).to_numpy()
    for scores in record.baselines.values():
        baseline_right = model_right.sum() - scores["only_model_right"] + scores["only_baseline_right"]
        assert baseline_right == round(scores["accuracy"] * len(rows)), scores
        assert 0.0 <= scores["paired_p_value"] <= 1.0
    lines = _events(job)
    first_baseline = next(i for i, line in enumerate(lines) if line.startswith("Baselines: "))
    assert first_baseline < next(i for i, line in enumerate(lines) if line.startswith("Training on"))


def test_a_failing_baseline_never_fails_the_run(tmp_path, tiny_bert, tiny_config, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("no embeddings today")

    monkeypatch.setattr(baselines, "score_baselines", broken)
    runner = Runner(RunStore(tmp_path / "runs"))
    job = runner.submit(_spec(tiny_bert, tiny_config))
    assert job.done.wait(180) and job.status == "completed", job.error
    assert runner.store.get(job.record.id).baselines == {}
    assert "Baselines skipped (RuntimeError: no embeddings today)." in _events(job)


def test_records_keep_baselines_and_old_records_without_them_still_load(tmp_path):
    store = RunStore(tmp_path / "runs")
    record = store.create("m")
    scores = {"tfidf_logreg": {"accuracy": 0.8, "seconds": 1.5}}
    store.finish(record, "completed", baselines=scores)
    assert store.get(record.id).baselines == scores
    path = store.path(record.id) / RECORD_FILE
    values = json.loads(path.read_text())
    del values["baselines"]  # a run.json written before baselines existed
    path.write_text(json.dumps(values))
    assert store.get(record.id).baselines == {}


def test_paired_counts_say_which_rows_each_gets_right_and_how_likely_the_gap_is_by_chance():
    truth = ["a"] * 10 + ["b"] * 10
    model = ["a"] * 10 + ["b"] * 10  # all right
    baseline = ["b"] * 10 + ["b"] * 10  # the first ten wrong
    counts = paired_counts(truth, model, baseline)
    assert counts["only_model_right"] == 10 and counts["only_baseline_right"] == 0
    assert counts["paired_p_value"] == pytest.approx(2 * 0.5 ** 10)  # McNemar's exact test, two-sided
    even = paired_counts(truth, ["a"] * 5 + ["b"] * 15, ["b"] * 5 + ["a"] * 5 + ["b"] * 10)
    assert (even["only_model_right"], even["only_baseline_right"], even["paired_p_value"]) == (5.0, 5.0, 1.0)
    same = paired_counts([1, 0], [1, 1], [1, 1])  # integer labels; no row where they disagree
    assert (same["only_model_right"], same["only_baseline_right"], same["paired_p_value"]) == (0.0, 0.0, 1.0)
