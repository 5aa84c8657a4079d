"""Metrics: a hand-computed example, the per-class report, the confusion matrix's orientation, calibration with
probabilities, softmax."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from finetuner.metrics import CALIBRATION_KEYS, SUMMARY_KEYS, full_report, logits_to_probabilities, summary_metrics

# 3 classes. Per class (TP, predicted, true): 0 -> (2, 2, 3), 1 -> (1, 2, 2), 2 -> (1, 2, 1).
Y_TRUE = [0, 0, 0, 1, 1, 2]
Y_PRED = [0, 0, 1, 1, 2, 2]
PRECISION = [1.0, 1 / 2, 1 / 2]
RECALL = [2 / 3, 1 / 2, 1.0]
F1 = [2 * p * r / (p + r) for p, r in zip(PRECISION, RECALL)]  # 0.8, 0.5, 2/3
SUPPORT = [3, 2, 1]


def weighted(values):
    return sum(v * s for v, s in zip(values, SUPPORT)) / sum(SUPPORT)


def test_summary_on_a_hand_computed_example():
    summary = summary_metrics(Y_TRUE, Y_PRED, num_labels=3)
    assert set(summary) == set(SUMMARY_KEYS)
    assert all(type(v) is float for v in summary.values())
    assert summary["accuracy"] == pytest.approx(4 / 6)
    assert summary["precision_macro"] == pytest.approx(2 / 3)
    assert summary["recall_macro"] == pytest.approx(13 / 18)
    assert summary["f1_macro"] == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)
    assert summary["precision_weighted"] == pytest.approx(0.75)
    assert summary["recall_weighted"] == pytest.approx(4 / 6)  # weighted recall is the accuracy
    assert summary["f1_weighted"] == pytest.approx(weighted(F1))


def test_summary_perfect_and_all_wrong():
    perfect = summary_metrics([0, 1, 1], [0, 1, 1], num_labels=2)
    assert all(v == 1.0 for v in perfect.values())
    wrong = summary_metrics([0, 1, 1], [1, 0, 0], num_labels=2)
    assert all(v == 0.0 for v in wrong.values())


def test_summary_counts_classes_absent_from_the_data_in_macro_averages():
    # num_labels=4: class 3 has neither support nor predictions and scores 0 (no warning, no NaN).
    summary = summary_metrics(Y_TRUE, Y_PRED, num_labels=4)
    assert summary["precision_macro"] == pytest.approx(sum(PRECISION) / 4)
    assert summary["accuracy"] == pytest.approx(4 / 6)
    assert not any(np.isnan(v) for v in summary.values())


def test_full_report_per_class():
    names = ["neg", "neu", "pos"]
    report = full_report(Y_TRUE, Y_PRED, names)
    assert report["labels"] == names
    assert list(report["per_class"]) == names
    for i, name in enumerate(names):
        row = report["per_class"][name]
        assert row["precision"] == pytest.approx(PRECISION[i])
        assert row["recall"] == pytest.approx(RECALL[i])
        assert row["f1-score"] == pytest.approx(F1[i])
        assert row["support"] == SUPPORT[i]
        assert all(type(v) is float for v in row.values())
    assert report["summary"] == summary_metrics(Y_TRUE, Y_PRED, 3)


def test_confusion_matrix_rows_are_true_columns_are_predicted():
    matrix = full_report(Y_TRUE, Y_PRED, ["a", "b", "c"])["confusion_matrix"]
    assert matrix == [[2, 1, 0],   # true a: 2 predicted a, 1 predicted b
                      [0, 1, 1],   # true b
                      [0, 0, 1]]   # true c
    assert [sum(row) for row in matrix] == SUPPORT  # row sums = true counts
    assert [sum(col) for col in zip(*matrix)] == [2, 2, 2]  # column sums = predicted counts
    assert all(type(v) is int for row in matrix for v in row)  # JSON-serialisable


def test_report_of_a_class_with_no_examples():
    report = full_report([0, 0, 1], [0, 1, 1], ["a", "b", "c"])
    assert report["per_class"]["c"]["support"] == 0.0
    assert report["confusion_matrix"][2] == [0, 0, 0]
    assert len(report["confusion_matrix"]) == 3


def test_probabilities_add_the_calibration_error_and_the_reliability_bins():
    without = full_report(Y_TRUE, Y_PRED, ["a", "b", "c"])
    assert set(without["summary"]) == set(SUMMARY_KEYS) and "reliability" not in without  # as the baselines get
    confident = np.full((6, 3), 0.125)
    confident[np.arange(6), Y_PRED] = 0.75  # 0.75 on the predicted class, which is right for 4 of 6 rows
    report = full_report(Y_TRUE, Y_PRED, ["a", "b", "c"], probabilities=confident)
    assert set(report["summary"]) == set(SUMMARY_KEYS) | set(CALIBRATION_KEYS)
    assert report["summary"]["ece"] == pytest.approx(0.75 - 4 / 6)
    assert report["reliability"] == [{"low": pytest.approx(11 / 15), "high": pytest.approx(12 / 15),
                                      "confidence": pytest.approx(0.75), "accuracy": pytest.approx(4 / 6),
                                      "count": 6}]


def test_softmax_rows_sum_to_one_and_keep_the_order():
    logits = np.array([[2.0, 1.0, 0.1], [-1.0, 5.0, 0.0], [0.0, 0.0, 0.0]], dtype=np.float32)
    probabilities = logits_to_probabilities(logits)
    assert probabilities.shape == logits.shape
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-6)
    assert (probabilities.argmax(axis=1) == logits.argmax(axis=1)).all()
    np.testing.assert_allclose(probabilities[2], [1 / 3] * 3, atol=1e-6)
    np.testing.assert_allclose(probabilities, torch.softmax(torch.tensor(logits), dim=-1).numpy(), atol=1e-6)


def test_softmax_is_stable_for_large_logits():
    probabilities = logits_to_probabilities(np.array([[1000.0, 0.0], [-1000.0, -1001.0]]))
    assert np.isfinite(probabilities).all()
    np.testing.assert_allclose(probabilities[0], [1.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(probabilities[1], [1 / (1 + np.exp(-1)), 1 / (1 + np.exp(1))], atol=1e-12)
