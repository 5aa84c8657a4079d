"""UI helpers of "know your data and your model": flagged rows that follow the table through fixes and edits,
the fine-tuned model's metrics beside its baselines, and its reliability diagram."""

from __future__ import annotations

import pandas as pd
import pytest

from finetuner.errors import DataError
from finetuner.label_issues import ISSUE_COLUMNS
from finetuner.ui import data_checks
from finetuner.ui.data_checks import ACCEPT, DELETE, KEEP, LabelCheck, apply_fix, flag_rows, issues_view, reconcile
from finetuner.runs.store import _clean_report
from finetuner.ui.evaluate_tab import (FINE_TUNED, EvaluateHandlers, baseline_reading, baseline_table, layout,
                                       reliability_html)


@pytest.fixture
def frame() -> pd.DataFrame:
    return pd.DataFrame({"text": [f"text {i}" for i in range(8)],
                         "label": ["pos", "neg", "pos", "pos", "neg", "neg", "pos", "neg"]})


def _check(rows, frame: pd.DataFrame, suggested: str = "flipped") -> LabelCheck:
    issues = pd.DataFrame({"row": rows, "text": [frame.loc[r, "text"] for r in rows],
                           "given_label": [frame.loc[r, "label"] for r in rows],
                           "suggested_label": [suggested] * len(rows), "score": [0.9] * len(rows)},
                          columns=list(ISSUE_COLUMNS))
    return LabelCheck(issues, len(frame), len(rows))


def test_the_check_skips_rows_without_text_or_label_and_keeps_table_positions(frame, monkeypatch):
    frame.loc[1, "text"] = " "
    frame.loc[3, "label"] = None
    seen = {}

    def fake_issues(table, text_column, label_column):
        seen["texts"] = table[text_column].tolist()
        return _check([2, 3], table).issues  # positions in the table it was given

    monkeypatch.setattr(data_checks, "find_label_issues", fake_issues)
    check = flag_rows(frame, "text", "label")
    assert "text 1" not in seen["texts"] and "text 3" not in seen["texts"]
    assert check.issues["row"].tolist() == [4, 5] and check.issues["text"].tolist() == ["text 4", "text 5"]
    assert check.checked_rows == 6 and "**2** row(s) may be mislabelled (6 rows checked)" in check.status()
    with pytest.raises(DataError, match="Choose the text and label columns"):
        flag_rows(frame, "text", "missing")


def test_accept_keep_and_delete(frame):
    check = _check([2, 5, 7], frame)
    accepted, check, message = apply_fix(frame, check, 5, ACCEPT, "label")
    assert accepted.loc[5, "label"] == "flipped" and frame.loc[5, "label"] == "neg"  # the input is not changed
    assert "Row 6 relabelled `neg` → `flipped`" in message and check.issues["row"].tolist() == [2, 7]
    kept, check, _ = apply_fix(accepted, check, 2, KEEP, "label")
    assert kept.equals(accepted) and check.issues["row"].tolist() == [7]
    assert "(8 rows checked, 2 handled)" in check.status()


def test_deleting_a_flagged_row_moves_the_later_flagged_rows_up(frame):
    check = _check([1, 3, 6], frame)
    smaller, check, message = apply_fix(frame, check, 3, DELETE, "label")
    assert len(smaller) == 7 and "text 3" not in smaller["text"].tolist() and "Row 4 deleted" in message
    assert check.issues["row"].tolist() == [1, 5]
    assert [smaller.loc[r, "text"] for r in check.issues["row"]] == check.issues["text"].tolist()
    with pytest.raises(DataError, match="Row 4 is not in the list"):
        apply_fix(smaller, check, 3, KEEP, "label")
    assert issues_view(check)["row"].tolist() == [2, 6]  # 1-based, as the page information counts


def test_flagged_rows_follow_edits_made_elsewhere(frame):
    check = _check([2, 5, 6], frame)
    edited = frame.drop(index=[0, 1]).reset_index(drop=True)  # two rows above deleted in the grid
    edited.loc[3, "label"] = "pos"  # "text 5" relabelled by hand: handled
    edited = pd.concat([edited, pd.DataFrame({"text": ["text 2"], "label": ["pos"]})], ignore_index=True)
    followed = reconcile(check, edited, "text", "label")
    assert followed.issues["row"].tolist() == [0, 4]  # "text 2" stays with its nearest copy
    assert followed.flagged == 3 and "1 handled" in followed.status()
    assert reconcile(check, edited.rename(columns={"label": "y"}), "text", "label").issues.empty
    gone = reconcile(check, frame.drop(columns="label"), "text", "label")
    assert gone.status() == "✓ All 3 flagged row(s) handled."


def test_integer_labels_match_across_edits():
    frame = pd.DataFrame({"text": ["a", "b"], "label": [1, 0]})
    check = _check([0], frame)
    as_text = frame.astype({"label": str})  # the grid sends cells back as text
    assert reconcile(check, as_text, "text", "label").issues["row"].tolist() == [0]


def test_the_fine_tuned_model_beside_its_baselines():
    metrics = {"accuracy": 0.912, "f1_macro": 0.9, "loss": 0.3}
    baselines = {"tfidf_logreg": {"accuracy": 0.85, "f1_macro": 0.84, "seconds": 0.1},
                 "embedding_logreg": {"accuracy": 0.871, "f1_macro": 0.86, "seconds": 2.0}}
    table = baseline_table(metrics, baselines)
    assert list(table.columns) == ["metric", FINE_TUNED, "TF-IDF + logistic regression",
                                   "Sentence embeddings + logistic regression"]
    assert table["metric"].tolist() == ["Accuracy", "F1 (macro)"] and table[FINE_TUNED].tolist() == [0.912, 0.9]
    assert baseline_reading(metrics, baselines) == ("Fine-tuning: **+4.1 points** accuracy over the best baseline "
                                                    "(Sentence embeddings + logistic regression).")
    worse = baseline_reading({"accuracy": 0.8}, baselines)
    assert "**-7.1 points**" in worse and "baseline does better" in worse
    assert baseline_reading(metrics, {}) == ""
    # with the paired comparison on the same rows (runs since it exists), the line says whether the gap is noise
    paired = {**baselines["embedding_logreg"], "only_model_right": 4.0, "only_baseline_right": 5.0,
              "paired_p_value": 1.0}
    noisy = baseline_reading({"accuracy": 0.859}, {**baselines, "embedding_logreg": paired})
    assert noisy.startswith("Fine-tuning: **-1.2 points**") and "Within noise: 4 row(s) only the model gets " \
        "right, 5 only the baseline (p = 1.00)" in noisy
    clear = {**paired, "only_model_right": 12.0, "only_baseline_right": 1.0, "paired_p_value": 0.0034}
    assert "Beyond noise: 12 row(s) only the model gets right, 1 only the baseline (p = 0.003)." in baseline_reading(
        metrics, {**baselines, "embedding_logreg": clear})


BINS = [{"low": 0.6, "high": 2 / 3, "confidence": 0.65, "accuracy": 0.5, "count": 4},
        {"low": 14 / 15, "high": 1.0, "confidence": 0.99, "accuracy": 0.8, "count": 30}]


def test_the_reliability_diagram_draws_a_dot_per_bin_with_the_ece():
    chart = reliability_html({"reliability": BINS}, {"ece": 0.1876})
    assert chart.count('class="reliability-bin"') == 2 and "calibration error (ECE) 0.188, lower is better" in chart
    assert "0.93–1.00: 30 row(s), mean confidence 0.990, accuracy 0.800" in chart
    assert 'stroke-dasharray="5 4"><title>perfect calibration</title>' in chart
    assert reliability_html({}, {}) == ""  # no evaluation, no diagram
    older = reliability_html({"labels": ["a", "b"]}, {"accuracy": 0.9})
    assert "No reliability diagram" in older and "<svg" not in older
    junk = [{"low": "x"}, None, {**BINS[0], "count": float("nan")}, BINS[1]]
    assert reliability_html({"reliability": junk}, {}).count('class="reliability-bin"') == 1


def test_an_imported_report_keeps_well_formed_bins_and_drops_others():
    report = {"labels": ["a", "b"], "confusion_matrix": [[1, 0], [0, 1]], "reliability": BINS}
    assert _clean_report(report) == report
    cleaned = _clean_report({**report, "reliability": [{"low": "<script>"}]})
    assert cleaned == {"labels": ["a", "b"], "confusion_matrix": [[1, 0], [0, 1]]}


def test_every_evaluation_view_fills_each_output():
    import gradio as gr
    with gr.Blocks():
        view = layout()
    assert len(EvaluateHandlers(None).show_run(None, None)) == len(view.outputs) == 6
