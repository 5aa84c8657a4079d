"""The app with several labels per text and a number per text: the mistakes tables, the scatter plot, the predicted
labels line, scores beside the baselines, per-epoch columns, the label check that does not apply, and a tiny model
trained on each task through the runner, then evaluated and asked for predictions as the tabs do."""

from __future__ import annotations

from types import SimpleNamespace

import pandas as pd
import pytest
from conftest import make_multi_label_data

from finetuner.config import TrainConfig
from finetuner.prepare import prepare
from finetuner.runner import Runner, TrainSpec
from finetuner.runs import RunStore
from finetuner.ui.data_checks import app_label_check_note
from finetuner.ui.data_tab import _balance
from finetuner.ui.evaluate_tab import EvaluateHandlers, baseline_reading, baseline_table
from finetuner.ui.predict_tab import PredictHandlers, _preview
from finetuner.ui.progress_view import ProgressView
from finetuner.ui.task_results import (largest_errors, predicted_labels_line, scatter_html, wrong_label_sets)

OWNER = "a" * 32


def test_rows_with_another_label_set_list_what_was_missed_and_added():
    rows = pd.DataFrame({"text": ["one", "two", "three", "four"], "label": ["joy;love", "anger", "", "joy"],
                         "predicted_labels": ["love;joy", "joy;sadness", "joy", None], "p_joy": [0.9, 0.8, 0.7, 0.1]})
    wrong = wrong_label_sets(rows)
    assert wrong["text"].tolist() == ["two", "three", "four"]  # most differences first; "one" is the same set
    assert wrong.iloc[0].tolist() == ["two", "anger", "joy;sadness", "anger", "joy;sadness"]
    assert wrong.iloc[1][["missed", "extra"]].tolist() == ["", "joy"]
    assert wrong.iloc[2][["predicted_labels", "missed"]].tolist() == ["", "joy"]
    assert wrong_label_sets(None).empty and list(wrong_label_sets(None).columns)[-2:] == ["missed", "extra"]


def test_the_largest_errors_come_first():
    rows = pd.DataFrame({"text": ["a", "b", "c"], "label": ["3", "1.5", "2"], "predicted_value": [2.5, 3.5, 2.0]})
    errors = largest_errors(rows)
    assert errors["text"].tolist() == ["b", "a"] and errors["error"].tolist() == [2.0, -0.5]


def test_the_scatter_plot_draws_a_dot_per_point_on_one_scale():
    chart = scatter_html({"scatter": [[1.0, 1.5], [2.0, 2.2], [4.0, 3.1], [None, 1.0]], "task": "regression"},
                         {"pearson": 0.9876})
    assert chart.count('class="scatter-point"') == 3 and "Pearson r 0.988" in chart
    assert "true 4, predicted 3.1" in chart and "exact prediction" in chart
    assert "No scatter plot" in scatter_html({"task": "regression"}, {}) and scatter_html({}, {}) == ""


def test_the_predicted_labels_are_those_at_their_threshold():
    line = predicted_labels_line({"joy": 0.91, "love": 0.40, "anger": 0.2}, {"joy": 0.5, "love": 0.35, "anger": 0.3})
    assert line.startswith("Labels: **joy** (91%, threshold 0.50), **love** (40%, threshold 0.35).")
    assert "anger" not in line
    assert predicted_labels_line({"joy": 0.1}, {"joy": 0.5}).startswith("**No label**")


def test_scores_beside_the_baselines_use_the_tasks_main_metric():
    several = {"f1_macro": 0.52, "f1_micro": 0.6, "f1_samples": 0.55}
    baselines = {"tfidf_ovr": {"f1_macro": 0.40, "f1_micro": 0.5}, "embedding_ovr": {"f1_macro": 0.45}}
    assert baseline_table(several, baselines)["metric"].tolist() == ["F1 (macro)", "F1 (micro)", "F1 (per text)"]
    assert baseline_reading(several, baselines) == (
        "Fine-tuning: **+7.0 points** macro F1 over the best baseline (Sentence embeddings + one-vs-rest logistic "
        "regression (tuned thresholds)).")
    number = {"pearson": 0.70, "spearman": 0.68, "mae": 0.3, "rmse": 0.4}
    ridge = {"tfidf_ridge": {"pearson": 0.72, "mae": 0.31}}
    assert baseline_table(number, ridge)["metric"].tolist()[:2] == ["Pearson r", "Spearman ρ"]
    reading = baseline_reading(number, ridge)
    assert "**-2.0 points** Pearson r" in reading and "baseline does better" in reading


def test_progress_shows_each_tasks_scores_per_epoch():
    view = ProgressView(TrainConfig(task="regression"), "Task: a number per text (regression) (why).")
    event = SimpleNamespace(kind="evaluate", step=4, max_steps=8, epoch=1.0, metrics={"loss": 0.5, "pearson": 0.81,
                                                                                     "mae": 0.42})
    view.add(event)
    assert list(view.evaluations[1.0]) == ["epoch", "loss", "pearson", "mae"]
    assert "loss 0.5000, pearson 0.8100, mae 0.4200" in view.lines[-1] and "Task: a number per text" in view.lines[0]
    assert list(ProgressView.empty_epochs("multi_label").columns) == ["Epoch", "Loss", "F1 (macro)", "F1 (micro)"]


def test_the_label_check_says_when_it_does_not_apply_and_the_chart_bins_numbers():
    several = pd.DataFrame({"text": ["a", "b", "c"], "labels": ["joy;love", "joy", "love"]})
    note = app_label_check_note(several, "labels")
    assert "does not apply" in note and "python -m finetuner check" in note
    assert "numbers (a regression target)" in app_label_check_note(pd.DataFrame({"score": [0.5, 1.5, 2.25]}), "score")
    assert app_label_check_note(pd.DataFrame({"label": ["a", "b"]}), "label") == ""
    numbers = prepare(pd.DataFrame({"text": [f"text {i}" for i in range(40)], "score": [i / 4 for i in range(40)]}))
    bins = _balance(numbers)
    assert len(bins) == 10 and bins["rows"].sum() == 40 and bins["class"].iloc[0].startswith("-0.00975")


@pytest.fixture(scope="module")
def trained(tiny_bert, tmp_path_factory):
    """A tiny model trained on several labels per text and one on a number per text, through the app's runner."""
    store = RunStore(tmp_path_factory.mktemp("runs"))
    runner = Runner(store)
    texts, labels = make_multi_label_data(96, seed=1)
    numbers = [float(len(text)) / 10 for text in texts]  # the text's length: something a model can learn
    runs = {}
    for task, frame in (("multi_label", pd.DataFrame({"text": texts, "labels": labels})),
                        ("regression", pd.DataFrame({"text": texts, "length": numbers}))):
        checked = prepare(frame, seed=0)
        assert checked.ok and checked.task.task == task
        config = TrainConfig(method="finetune", epochs=8, learning_rate=3e-3, batch_size=8, warmup_ratio=0.0, seed=0,
                             task=checked.task.task)
        job = runner.submit(TrainSpec(tiny_bert, config, checked, run_owner=OWNER))
        assert job.done.wait(300) and job.status == "completed", job.error
        runs[task] = job.record.id
    return SimpleNamespace(store=store, owner=lambda request: OWNER), runs


def test_several_labels_per_text_are_evaluated_and_predicted(trained):
    ctx, runs = trained
    title, metrics, per_class, plot, errors, reliability = EvaluateHandlers(ctx).show_run(runs["multi_label"], None)
    assert "F1 (macro)" in metrics["metric"].tolist() and "Accuracy" not in metrics["metric"].tolist()
    assert set(per_class["class"]) == {"complaint", "praise", "recommend"} and "threshold" in per_class.columns
    assert plot == "" and reliability == ""
    assert list(errors.columns)[-2:] == ["missed", "extra"]  # (on the page, titled for the task)
    handlers = PredictHandlers(ctx)
    shown = handlers.predict("the film was really great", runs["multi_label"], None)
    assert set(shown) == {"complaint", "praise", "recommend"} and shown["praise"] > 0.5 > shown["complaint"]
    line = handlers.chosen_labels("the film was really great", runs["multi_label"], None)
    assert "**praise**" in line and "**recommend**" in line and "complaint" not in line
    table = pd.DataFrame({"text": ["x"], "predicted_labels": ["food;praise"], "p_food": [0.9]})
    assert list(_preview(table, "text", 1).columns) == ["text", "predicted_labels"]


def test_a_number_per_text_is_evaluated_with_a_scatter_plot_and_predicted(trained):
    ctx, runs = trained
    title, metrics, per_class, plot, errors, reliability = EvaluateHandlers(ctx).show_run(runs["regression"], None)
    assert "Pearson r" in metrics["metric"].tolist() and per_class.empty
    assert 'id="scatter-chart"' in plot and plot.count('class="scatter-point"') >= 10
    assert list(errors.columns) == ["text", "label", "predicted_value", "error"]
    handlers = PredictHandlers(ctx)
    shown = handlers.predict("the food was great", runs["regression"], None)
    assert isinstance(shown, float) and shown > 0
    assert handlers.chosen_labels("the food was great", runs["regression"], None).startswith("Predicted **")
    highlighted, line = handlers.explain_text("the food was great", runs["regression"], None)
    assert line.startswith("predicted value ") and any(
        words in line for words in ("raised most by", "lowered most by", "no single word moves it")), line
    assert [token for token, _ in highlighted if token.strip()] == ["the", "food", "was", "great"]
