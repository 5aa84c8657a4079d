"""``method="auto"`` as budgeted model selection: the pure decisions (finetuner.selection) and the selection run
end to end on a tiny encoder (finetuner.autoselect): held-out training rows only, the leaderboard, the budget,
calibration, and the choice kept with the saved model."""

from __future__ import annotations

import math
import time
from collections import Counter

import numpy as np
import pytest
from conftest import make_sentiment_data

from finetuner import LLMFinetuner, TrainConfig
from finetuner.method_choice import FEWSHOT_MAX_ROWS
from finetuner.selection import (MIN_CALIBRATION_ROWS, MIN_VALIDATION_ROWS, CandidateResult, affordable_pairs,
                                 candidate_methods, pick, plan_line, should_refit,
                                 significantly_better, trusted_temperature, validation_split)
from finetuner.training.embedding_methods import MIN_PAIRS, pair_budget

# ------------------------------------------------------------------------------------------ decisions


def test_candidates_follow_the_measured_rule():
    assert [c.method for c in candidate_methods({"a": 20, "b": 20}, "bert")] == ["fewshot", "head_finetune", "head"]
    many = {str(i): 10 for i in range(20)}  # more classes than few-shot tuning suits
    assert [c.method for c in candidate_methods(many, "bert")] == ["head_finetune", "head"]
    assert [c.method for c in candidate_methods({"a": 250, "b": 250}, "bert")] == ["fewshot", "head_finetune", "head"]
    assert [c.method for c in candidate_methods({"a": 600, "b": 600}, "bert")] == ["head_finetune", "head"]
    assert [c.method for c in candidate_methods({"a": 20, "b": 20}, "llama")] == ["lora"]


def test_validation_split_is_stratified_and_never_takes_a_lone_example():
    labels = [0] * 60 + [1] * 40 + [2]
    train, held = validation_split(labels, seed=0)
    assert sorted(train + held) == list(range(len(labels))) and not set(train) & set(held)
    assert Counter(labels[i] for i in held) == {0: 12, 1: 8}  # a fifth of each class; class 2 stays in training
    assert 100 in train
    assert validation_split(labels, seed=0) == (train, held)  # seeded
    assert validation_split(labels, seed=1) != (train, held)


def test_validation_split_takes_a_tenth_of_large_data_and_none_of_tiny_data():
    train, held = validation_split([0, 1] * 1000, seed=0)
    assert len(held) == 200
    assert validation_split([0, 1] * 40, seed=0) is None  # 16 rows would be held out: too few to choose on
    assert len(validation_split([0, 1] * 50, seed=0)[1]) == 20 == MIN_VALIDATION_ROWS


def _result(method, rank, correct):
    correct = np.asarray(correct, dtype=bool)
    return CandidateResult(method, rank, "trained", score=float(correct.mean()), correct=correct)


def test_pick_keeps_the_prior_favourite_unless_another_is_better_beyond_noise():
    favourite = _result("fewshot", 0, [0] * 10 + [1] * 40)  # wrong on rows 0-9
    close = _result("head", 2, [1] * 5 + [0] * 8 + [1] * 37)  # wrong on rows 5-12: 5 more right, 3 fewer
    assert close.score > favourite.score and not significantly_better(close.correct, favourite.correct)
    winner, why = pick([close, favourite])
    assert winner is favourite and "not better beyond noise" in why
    far = _result("head", 2, [1] * 50)  # right on all 10 rows the favourite gets wrong, wrong on none it gets
    assert significantly_better(far.correct, favourite.correct)
    winner, why = pick([far, favourite])
    assert winner is far and "best on the 50 held-out rows" in why


def test_pick_ignores_skipped_candidates():
    head = _result("head", 2, [1, 0] * 15)
    skipped = CandidateResult("fewshot", 0, "skipped", note="needs about 200 s")
    assert pick([head, skipped])[0] is head
    with pytest.raises(ValueError):
        pick([skipped])


def test_refit_needs_few_examples_per_class_and_the_time():
    assert should_refit({"a": 50, "b": 60}, 10.0, math.inf)[0]
    refit, why = should_refit({"a": 50, "b": 60}, 100.0, 20.0)
    assert not refit and "more than the 20 s left" in why
    refit, why = should_refit({"a": 500, "b": 600}, 1.0, math.inf)
    assert not refit and "add little" in why


def test_contrastive_pairs_fit_the_time_left():
    assert affordable_pairs(256, 0.005, math.inf) == pair_budget(256)
    assert affordable_pairs(256, 0.005, 1e6) == pair_budget(256)
    some = affordable_pairs(256, 0.005, 40.0)
    assert MIN_PAIRS <= some < pair_budget(256)
    assert affordable_pairs(256, 0.005, 5.0) is None


def test_the_plan_says_what_auto_will_try():
    line = plan_line(["a", "b"] * 60, "bert", 60.0, seed=0)
    assert line.startswith("trying, within 60 s: (1) embedding head, (2) few-shot (SetFit), (3) embedding head, "
                           "then full fine-tuning;"), line
    assert "too few rows (16)" in plan_line(["a", "b"] * 8, "bert", None, seed=0)
    assert "only candidate" in plan_line(["a", "b"] * 60, "llama", None, seed=0)


# ------------------------------------------------------------------------------------------ the selection run


@pytest.fixture(scope="module")
def data():
    texts, labels = make_sentiment_data(120, seed=3)
    eval_texts, eval_labels = make_sentiment_data(30, seed=4)
    return texts, labels, eval_texts, eval_labels


def _auto(tiny_bert, **settings) -> TrainConfig:
    return TrainConfig(seed=0, batch_size=16, learning_rate=3e-3, epochs=2, **settings)


@pytest.fixture(scope="module")
def auto_run(tiny_bert, data):
    """One auto run on the module's training rows with its evaluation rows, and what its listener heard: read by
    the leaderboard, evaluation-rows and too-few-held-out-rows tests (none of them changes the model)."""
    model = LLMFinetuner(tiny_bert, config=_auto(tiny_bert))
    seen = []
    model.fine_tune(*data, listener=seen.append)
    return model, seen


def test_auto_tries_candidates_on_held_out_training_rows_and_keeps_the_leaderboard(auto_run, data, tmp_path):
    model, seen = auto_run
    choice = model.method_choice
    board = {c["method"]: c for c in choice.candidates}
    assert set(board) == {"head", "fewshot", "head_finetune"}
    assert all(c["status"] == "trained" and 0 <= c["score"] <= 1 for c in board.values())
    assert choice.method in board and choice.held_out_rows == 24  # a fifth of 120 rows
    assert [r.method for r in seen if isinstance(r, CandidateResult)] == ["head", "fewshot", "head_finetune"]
    assert model.config.method == choice.method and "held-out rows" in choice.reason
    loaded = LLMFinetuner.load(model.save(tmp_path / "auto"))
    assert loaded.method_choice == choice
    np.testing.assert_allclose(loaded.predict_proba_array(data[2]), model.predict_proba_array(data[2]), atol=1e-5)


def test_auto_never_looks_at_the_evaluation_rows(tiny_bert, data, auto_run):
    texts, labels, eval_texts, eval_labels = data
    flipped = ["negative" if label == "positive" else "positive" for label in eval_labels]
    model = LLMFinetuner(tiny_bert, config=_auto(tiny_bert))
    model.fine_tune(texts, labels, eval_texts, flipped)  # the shared run was given the true evaluation labels
    runs = [auto_run[0], model]
    first, second = (run.method_choice for run in runs)
    assert (first.method, first.temperature) == (second.method, second.temperature)
    assert [(c["method"], c["score"]) for c in first.candidates] == [(c["method"], c["score"])
                                                                     for c in second.candidates]
    np.testing.assert_allclose(runs[0].predict_proba_array(eval_texts), runs[1].predict_proba_array(eval_texts),
                               atol=1e-5)


def test_a_tight_budget_keeps_the_head_and_skips_what_does_not_fit(tiny_bert, data):
    model = LLMFinetuner(tiny_bert, config=_auto(tiny_bert, time_budget=1.0))
    started = time.monotonic()
    model.fine_tune(*data[:2])
    board = {c["method"]: c for c in model.method_choice.candidates}
    assert board["head"]["status"] == "trained"
    skipped = [c for c in board.values() if c["status"] == "skipped"]
    assert skipped and all("of the time budget left" in c["note"] for c in skipped)
    assert time.monotonic() - started < 60  # the skipped candidates cost nothing


def test_the_evaluation_made_after_choosing_is_reused_for_the_same_rows(auto_run, data, monkeypatch):
    model, seen = auto_run
    from finetuner.evaluation import evaluate

    evaluations = [e for e in seen if getattr(e, "kind", None) == "evaluate"]
    fresh = evaluate(model, data[2], data[3])  # scored anew
    assert fresh.metrics == pytest.approx(evaluations[-1].metrics, abs=1e-6)  # the winner's last point
    other = model.evaluation(data[2][:-1], data[3][:-1])  # other rows: scored
    assert len(other.rows) == len(data[2]) - 1

    def no_scoring(texts):
        raise AssertionError("scored the same rows again")

    monkeypatch.setattr(model, "predict_proba_array", no_scoring)
    kept = model.evaluation(list(data[2]), list(data[3]))  # the rows fine_tune evaluated: its evaluation again
    assert kept.metrics == pytest.approx(fresh.metrics, abs=1e-9) and len(kept.rows) == len(data[2])
    assert model.evaluate_model(data[2], data[3]) == kept.metrics and model.report is kept.report


def test_the_budget_keeps_the_time_to_score_the_evaluation_rows():
    from finetuner.autoselect import _Budget

    budget = _Budget(time.monotonic() + 60)  # 3 s kept for evaluating and saving
    before = budget.left()
    budget.keep_for_evaluation(rows=872, seconds_per_text=0.005)  # the SST-2 test file at ~5 ms a text
    assert before - budget.left() == pytest.approx(4.36, abs=0.2)
    unlimited = _Budget(None)
    unlimited.keep_for_evaluation(rows=872, seconds_per_text=0.005)
    assert math.isinf(unlimited.left())


def test_several_labels_per_text_keep_the_same_time_back_for_evaluating_and_saving(tiny_bert, monkeypatch):
    import finetuner.autoselect as autoselect

    # Fine-tuning every weight would take 8 s beyond the embedding pass: within the 10 s budget, but not within what
    # is left once the 3 s for evaluating and saving (and scoring the evaluation rows) are kept back.
    monkeypatch.setattr(autoselect.selection, "estimate_seconds",
                        lambda method, rows, epochs, per_text: rows * per_text + 8.0)
    rng = np.random.default_rng(0)
    texts, labels = [], []
    for _ in range(260):  # over the 200 rows under which only the head is tried
        good, bad = rng.random() < 0.5, rng.random() < 0.5
        texts.append(" ".join(["the", "film", "was"] + ["great"] * good + ["awful"] * bad))
        labels.append(";".join(["praise"] * good + ["complaint"] * bad))
    model = LLMFinetuner(tiny_bert, config=_auto(tiny_bert, time_budget=10.0).replace(epochs=None))
    model.fine_tune(texts[:220], labels[:220], texts[220:], labels[220:])
    choice = model.method_choice
    assert choice.method == "head", choice.reason
    left = float(choice.reason.split("more than the ")[1].split(" s left")[0])
    assert left <= 7.0, choice.reason


def test_the_deadline_callback_stops_a_loop_once_the_time_is_up():
    from transformers import TrainerControl, TrainerState

    from finetuner.training.progress import DeadlineCallback

    state = TrainerState(global_step=3, max_steps=10)
    late, early = DeadlineCallback(time.monotonic() - 1), DeadlineCallback(time.monotonic() + 60)
    assert late.on_step_end(None, state, TrainerControl()).should_training_stop and late.stopped_at == 3
    assert not early.on_step_end(None, state, TrainerControl()).should_training_stop and early.stopped_at is None


def test_a_candidate_that_outruns_its_estimate_stops_at_the_budget_and_still_counts(tiny_bert, data, monkeypatch):
    import finetuner.autoselect as autoselect

    # Estimates that say everything fits: the machine turned out slower than measured, the case the deadline is for.
    monkeypatch.setattr(autoselect.selection, "estimate_seconds", lambda *args, **kwargs: 0.0)
    monkeypatch.setattr(autoselect.selection, "affordable_pairs", lambda rows, *args: pair_budget(rows))
    model = LLMFinetuner(tiny_bert, config=_auto(tiny_bert, time_budget=4.0))  # 3 s kept back: ~1 s to train
    started = time.monotonic()
    model.fine_tune(*data[:2])
    board = {c["method"]: c for c in model.method_choice.candidates}
    assert board["fewshot"]["status"] == "trained" and board["fewshot"]["score"] is not None
    assert "end of the time budget while training" in board["fewshot"]["note"]
    assert board["fewshot"]["seconds"] < 10  # thousands of pairs otherwise
    assert time.monotonic() - started < 30 and model.predict_labels(data[0][:2])


def test_auto_calibrates_the_winner_on_enough_held_out_rows(tiny_bert):
    # above few-shot tuning's rows (its thousands of pairs would take most of the test's time): a tenth held out
    texts, labels = make_sentiment_data(FEWSHOT_MAX_ROWS + 20, seed=5)
    model = LLMFinetuner(tiny_bert, config=_auto(tiny_bert))
    model.fine_tune(texts, labels)
    choice = model.method_choice
    assert choice.held_out_rows == (FEWSHOT_MAX_ROWS + 20) // 10 >= MIN_CALIBRATION_ROWS
    assert choice.temperature is not None and choice.temperature > 0
    assert "calibrated on the held-out rows" in choice.reason
    probabilities = model.predict_proba_array(texts[:20])
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)


def test_few_held_out_rows_only_soften_the_winners_probabilities(auto_run):
    choice = auto_run[0].method_choice  # 120 training rows: 24 held out
    assert choice.held_out_rows == 24
    if choice.temperature is None:
        assert "24 held-out rows ask for sharper probabilities" in choice.reason
    else:
        assert choice.temperature >= 1.0 and "calibrated on the held-out rows" in choice.reason
    few = MIN_CALIBRATION_ROWS - 1
    assert trusted_temperature(1.8, few) == (1.8, "")
    temperature, why = trusted_temperature(0.6, few)
    assert temperature == 1.0 and "ask for sharper probabilities (temperature 0.60)" in why
    assert trusted_temperature(0.6, MIN_CALIBRATION_ROWS) == (0.6, "")


def test_a_method_asked_for_by_name_trains_on_every_row_without_a_leaderboard(tiny_bert, data):
    model = LLMFinetuner(tiny_bert, config=_auto(tiny_bert, method="head"))
    model.fine_tune(*data[:2])
    assert model.method_choice.method == "head" and model.method_choice.candidates == ()
