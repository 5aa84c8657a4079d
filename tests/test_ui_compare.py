"""Comparing runs: the tables built from RunRecords (finetuner/ui/compare.py) and the overlaid loss chart."""

from __future__ import annotations

import pytest

from finetuner.errors import DataError
from finetuner.runs import RunRecord
from finetuner.ui import compare
from finetuner.ui.progress_view import loss_chart


def _record(run_id: str, *, epochs: float = 2.0, lr: float = 3e-5, classes=("neg", "pos"), method: str = "finetune",
            losses=(0.7, 0.5, 0.3), metrics=None) -> RunRecord:
    per_class = {name: {"precision": 0.8, "recall": 0.8, "f1-score": 0.5 + i / 10, "support": 10}
                 for i, name in enumerate(classes)}
    history = [{"kind": "start", "step": 0, "max_steps": len(losses)}]
    history += [{"kind": "log", "step": i + 1, "loss": loss, "epoch": i / 2} for i, loss in enumerate(losses)]
    history += [{"kind": "evaluate", "step": len(losses), "metrics": {"loss": 0.4}}]
    return RunRecord(id=run_id, status="completed", base_model="tiny-bert", created_at="2024-01-01T00:00:00+00:00",
                     preset="fast", config={"epochs": epochs, "learning_rate": lr, "batch_size": 16, "max_length": 64,
                                            "method": method, "seed": 42},
                     data={"source": "reviews.csv", "rows": 60, "train_rows": 48, "eval_rows": 12},
                     metrics={"f1_macro": 0.61, "accuracy": 0.75} if metrics is None else metrics,
                     report={"per_class": per_class}, history=history, labels=list(classes),
                     method_choice={"method": method, "reason": "asked for"}, duration_seconds=12.5)


def test_two_to_four_runs_are_compared_and_other_counts_are_refused_with_a_message():
    assert compare.chosen_runs(["a", "b", "a"]) == ["a", "b"]
    assert compare.chosen_runs(["a", "b", "c", "d"]) == ["a", "b", "c", "d"]
    for picked in (None, [], ["a"], ["a", "a"]):
        with pytest.raises(DataError, match="at least 2 runs"):
            compare.chosen_runs(picked)
    with pytest.raises(DataError, match="at most 4 runs .*you picked 5"):
        compare.chosen_runs(list("abcde"))


def test_the_settings_table_has_a_column_per_run_and_marks_the_settings_that_differ():
    table = compare.settings_table([_record("run-a"), _record("run-b", epochs=4.0, lr=1e-4, method="head")])
    assert list(table.columns) == ["setting", "run-a", "run-b", compare.DIFFERS]
    rows = table.set_index("setting")
    assert rows.loc["epochs", "run-a"] == "2" and rows.loc["epochs", "run-b"] == "4"  # floats as short text
    assert rows.loc["learning rate", "run-a"] == "3e-05"
    assert rows.loc["method", "run-a"] == "full fine-tuning" and rows.loc["method", "run-b"] == "embedding head"
    differing = set(rows.index[rows[compare.DIFFERS] == compare.DIFFERS_MARK])
    assert differing == {"epochs", "learning rate", "method"}
    assert {"base model", "batch size", "max length", "rows", "classes"} <= set(rows.index)


def test_the_metrics_table_lists_the_usual_metrics_first_and_leaves_missing_ones_empty():
    table = compare.metrics_table([_record("a"), _record("b", metrics={"accuracy": 0.9, "recall_macro": 0.5}),
                                   _record("c", metrics={})])
    assert list(table.columns) == ["metric", "a", "b", "c"]
    assert list(table["metric"]) == ["Accuracy", "Recall (macro)", "F1 (macro)"]
    assert table.iloc[0].tolist() == ["Accuracy", 0.75, 0.9, None]
    assert table.iloc[2].tolist() == ["F1 (macro)", 0.61, None, None]


def test_per_class_f1_has_every_class_of_any_run_and_is_empty_where_a_run_lacks_it():
    table = compare.per_class_f1_table([_record("a"), _record("b", classes=("neg", "neutral", "pos"))])
    assert list(table["class"]) == ["neg", "pos", "neutral"]
    rows = table.set_index("class")
    assert rows.loc["neg", "a"] == 0.5 and rows.loc["pos", "a"] == 0.6 and rows.loc["neutral", "b"] == 0.6
    assert rows.loc["neutral", "a"] is None


def test_one_overlaid_loss_chart_with_a_line_per_run():
    records = [_record("run-a"), _record("run-b", losses=(0.9, 0.8)), _record("run-c", losses=())]
    points = compare.loss_points(records)
    assert {p["series"] for p in points} == {"run-a", "run-b"}  # training losses only
    assert len(points) == 5
    chart = loss_chart(points, series=compare.series_colors(records), marked=(), chart_id="compare-chart")
    assert 'id="compare-chart"' in chart
    assert chart.count("<polyline") == 2 and 'data-series="run-a"' in chart and 'data-series="run-b"' in chart
    assert "run-c" in chart  # in the legend, with no line
    assert "No training loss was recorded for run-c" in compare.summary(records)


def test_the_default_loss_chart_still_draws_training_and_evaluation_losses():
    chart = loss_chart([{"step": 1, "loss": 0.7, "series": "training"},
                        {"step": 2, "loss": 0.6, "series": "evaluation"}])
    assert 'id="loss-chart"' in chart and ">training<" in chart and ">evaluation<" in chart
    assert chart.count('<circle data-series="evaluation"') == 1
