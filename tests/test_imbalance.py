"""Skewed class counts: the rule (finetuner.imbalance), the class weights in every method's loss, forcing them on
or off, ``auto``'s choice by macro-F1, and the warnings of the app's Data tab and the command line."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import TINY_CONFIG, make_sentiment_data
from sklearn.utils.class_weight import compute_class_weight

from finetuner import LLMFinetuner, TrainConfig
from finetuner.errors import ConfigError
from finetuner.method_choice import FEWSHOT_MAX_ROWS
from finetuner.imbalance import (FEW_ROWS, MAX_WEIGHT_RATIO, SKEW_RATIO, class_balance_warnings, class_weights,
                                 imbalance_handling, is_skewed, skew_ratio)
from finetuner.prepare import prepare
from finetuner.selection import (CandidateResult, pick, plan_line, row_weights, significantly_better,
                                 validation_score)
from finetuner.training.finetune import weighted_loss


def skewed_sentiment(positive: int = 120, negative: int = 12, seed: int = 1):
    """Sentiment texts with ``positive`` rows of one class and ``negative`` of the other."""
    texts, labels = make_sentiment_data(2 * max(positive, negative), seed=seed)
    rows = [i for i, label in enumerate(labels) if label == "positive"][:positive] + \
        [i for i, label in enumerate(labels) if label == "negative"][:negative]
    return [texts[i] for i in rows], [labels[i] for i in rows]


# ------------------------------------------------------------------------------------------ the rule


def test_skewed_from_five_times_the_rows_of_the_smallest_class():
    assert skew_ratio({"a": 100, "b": 20}) == 5.0 and SKEW_RATIO == 5.0
    assert is_skewed({"a": 100, "b": 20}) and is_skewed({"a": 100, "b": 90, "c": 3})
    assert not is_skewed({"a": 99, "b": 20}) and not is_skewed({"a": 50, "b": 50})
    assert not is_skewed({"a": 100}) and not is_skewed({"a": 100, "b": 0})  # one class with rows: nothing to weigh


def test_auto_weighs_skewed_classes_and_says_why():
    handling = imbalance_handling({"big": 600, "rare": 60}, "auto")
    assert handling.weighted and handling.metric == "macro_f1"
    assert handling.weights["rare"] > 1 > handling.weights["big"]
    assert "largest/smallest 10.0" in handling.reason and "macro-F1" in handling.reason
    assert "'rare' ×" in handling.reason
    balanced = imbalance_handling({"a": 60, "b": 50}, "auto")
    assert not balanced.weighted and balanced.metric == "accuracy" and "balanced enough" in balanced.reason
    assert balanced.weight_list(["a", "b"]) is None
    assert handling.as_dict()["weights"]["rare"] == pytest.approx(handling.weights["rare"], abs=1e-4)


def test_the_setting_forces_weights_on_or_off():
    forced = imbalance_handling({"a": 60, "b": 50}, "balanced")
    assert forced.weighted and forced.metric == "macro_f1" and "class_weights balanced" in forced.reason
    off = imbalance_handling({"big": 600, "rare": 6}, "none")
    assert not off.weighted and off.metric == "accuracy" and "class_weights none" in off.reason


def test_weights_are_balanced_and_average_one_over_the_rows():
    counts = {"a": 500, "b": 120, "c": 40}
    weights = class_weights(counts, power=1.0)
    labels = [k for k, v in counts.items() for _ in range(v)]
    expected = compute_class_weight("balanced", classes=np.array(list(counts)), y=np.array(labels))
    assert [weights[k] for k in counts] == pytest.approx(list(expected))
    tempered = class_weights(counts, power=0.5)
    assert sum(tempered[k] * v for k, v in counts.items()) == pytest.approx(sum(counts.values()))
    assert tempered["c"] / tempered["a"] == pytest.approx((500 / 40) ** 0.5)
    capped = class_weights({"a": 10_000, "b": 2})  # 5,000× rarer: capped
    assert capped["b"] / capped["a"] == pytest.approx(MAX_WEIGHT_RATIO)
    handling = imbalance_handling({"a": 500, "b": 40})
    assert handling.weight_list(["b", "a", "never_in_training"]) == [handling.weights["b"], handling.weights["a"], 1.0]


# ------------------------------------------------------------------------------------------ the loss


def test_weighted_loss_is_the_weighted_cross_entropy_while_training_only():
    model = torch.nn.Linear(2, 3)
    logits = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 0.3], [1.0, -1.0, 0.0], [0.0, 0.0, 3.0]])
    labels = torch.tensor([0, 2, 1, 2])
    weights = [0.5, 4.0, 1.0]
    loss = weighted_loss(model, weights)
    log_p = torch.log_softmax(logits, dim=-1)[torch.arange(4), labels]
    w = torch.tensor(weights)[labels]
    assert loss({"logits": logits}, labels).item() == pytest.approx(float(-(w * log_p).sum() / w.sum()), rel=1e-6)
    model.eval()  # evaluation losses stay comparable across runs: the plain mean
    assert loss({"logits": logits}, labels).item() == pytest.approx(float(-log_p.mean()), rel=1e-6)


@pytest.mark.parametrize("method, model", [("finetune", "tiny_bert"), ("head_finetune", "tiny_bert"),
                                           ("lora", "tiny_llama")])
def test_the_trainer_trains_on_the_weighted_loss(request, method, model):
    texts, labels = skewed_sentiment(60, 10)
    finetuner = LLMFinetuner(request.getfixturevalue(model), config=TINY_CONFIG.replace(method=method, epochs=1))
    finetuner.fine_tune(texts, labels)
    weights = finetuner.imbalance_handling(labels).weight_list(finetuner.label_map.names)
    assert finetuner.method_choice.imbalance["weighted"] and weights[finetuner.label_map.label2id["negative"]] > 1
    trainer, model = finetuner.trainer, finetuner.model
    batch = trainer.data_collator([{k: v for k, v in row.items() if k != "length"}
                                   for row in trainer.train_dataset.select(range(8))])
    model.train()
    torch.manual_seed(0)  # the same dropout in both passes
    loss = trainer.compute_loss(model, dict(batch))
    torch.manual_seed(0)
    logits = model(**{k: v for k, v in batch.items() if k != "labels"}).logits
    expected = torch.nn.functional.cross_entropy(logits, batch["labels"], weight=torch.tensor(weights))
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    model.eval()


def test_unweighted_runs_keep_the_models_own_loss(tiny_bert):
    texts, labels = skewed_sentiment(60, 10)
    finetuner = LLMFinetuner(tiny_bert, config=TINY_CONFIG.replace(epochs=1, class_weights="none"))
    finetuner.fine_tune(texts, labels)
    assert finetuner.trainer.compute_loss_func is None
    assert finetuner.method_choice.imbalance["weighted"] is False


def test_class_weights_lift_the_rare_class_of_the_embedding_head(tiny_bert):
    texts, labels = skewed_sentiment(120, 12)
    eval_texts, eval_labels = make_sentiment_data(200, seed=2)
    recall = {}
    for setting in ("none", "auto"):
        finetuner = LLMFinetuner(tiny_bert, config=TINY_CONFIG.replace(method="head", class_weights=setting))
        finetuner.fine_tune(texts, labels)
        predicted = finetuner.predict_labels(eval_texts)
        recall[setting] = np.mean([p == "negative" for p, t in zip(predicted, eval_labels) if t == "negative"])
    assert recall["none"] < 0.2 and recall["auto"] > recall["none"] + 0.3, recall


def test_config_validates_class_weights_with_a_fix():
    assert TrainConfig().class_weights == "auto"
    with pytest.raises(ConfigError, match=r"class_weights='sqrt' is not supported; use auto \(weigh the classes "
                                          r"when they are skewed\), balanced \(always\) or none"):
        TrainConfig(class_weights="sqrt")
    assert TrainConfig.from_dict({"class_weights": "none"}).class_weights == "none"


def test_class_weights_is_a_cli_flag():
    from finetuner.cli import build_parser
    from finetuner.cli.console import UsageError
    from finetuner.cli.settings import flag_settings

    parser = build_parser()
    args = parser.parse_args(["train", "--data", "x.csv", "--class-weights", "none"])
    assert flag_settings(args)["class_weights"] == "none"
    with pytest.raises(UsageError, match="invalid choice: 'sqrt'"):
        parser.parse_args(["train", "--data", "x.csv", "--class-weights", "sqrt"])


# ------------------------------------------------------------------------------------------ choosing by macro-F1


def test_validation_score_is_macro_f1_over_the_held_out_classes():
    truth = np.array([0] * 18 + [1] * 2)
    always_big = np.zeros(20, dtype=int)
    assert validation_score(always_big, truth) == 0.9
    assert validation_score(always_big, truth, "macro_f1") == pytest.approx((2 * 18 / 38 + 0) / 2)
    finds_rare = np.array([0] * 15 + [1] * 3 + [1] * 2)
    assert validation_score(finds_rare, truth) < validation_score(always_big, truth)
    assert validation_score(finds_rare, truth, "macro_f1") > validation_score(always_big, truth, "macro_f1")


def test_rows_of_a_rare_class_count_more_in_the_noise_test():
    truth = np.array([0] * 90 + [1] * 10)
    weights = row_weights(truth, "macro_f1")
    assert weights.sum() == pytest.approx(100) and weights[-1] / weights[0] == pytest.approx(9)
    assert row_weights(truth) is None
    # b gets 6 more rare rows right and 4 more common rows wrong: better by macro-F1, worse by accuracy.
    a = np.array([True] * 90 + [False] * 10)
    b = np.array([True] * 86 + [False] * 4 + [True] * 6 + [False] * 4)
    assert significantly_better(b, a, weights=weights) and not significantly_better(b, a)


def test_pick_by_macro_f1_names_the_metric():
    truth = np.array([0] * 90 + [1] * 10)
    head = CandidateResult("head", 1, "trained", score=0.47, metric="macro_f1",
                           correct=np.array([True] * 90 + [False] * 10))
    tuned = CandidateResult("head_finetune", 0, "trained", score=0.85, metric="macro_f1",
                            correct=np.array([True] * 88 + [False] * 2 + [True] * 8 + [False] * 2))
    winner, why = pick([head, tuned], row_weights(truth, "macro_f1"))
    assert winner is tuned and "macro-F1 0.850" in why
    assert "validation macro-F1 0.850" in tuned.line() and tuned.as_dict()["metric"] == "macro_f1"


def test_plan_line_says_macro_f1_when_skewed():
    skewed = ["a"] * 200 + ["b"] * 20
    line = plan_line(skewed, "bert", None, 0)
    assert "scored (macro-F1)" in line and "weighs each class" in line
    assert "scored (accuracy)" in plan_line(skewed, "bert", None, 0, class_weights="none")
    assert "scored (accuracy)" in plan_line(["a", "b"] * 110, "bert", None, 0)


def test_auto_chooses_by_macro_f1_on_skewed_data_and_records_it(tiny_bert):
    texts, labels = skewed_sentiment(400, 40)  # over 400 rows: head-then-fine-tuning and the head, no few-shot
    config = TrainConfig(epochs=1, learning_rate=3e-3, batch_size=16, seed=0)
    finetuner = LLMFinetuner(tiny_bert, config=config)
    finetuner.fine_tune(texts, labels)
    choice = finetuner.method_choice
    assert choice.candidates and all(c["metric"] == "macro_f1" for c in choice.candidates)
    assert "macro-F1" in choice.reason and choice.imbalance["weighted"] and choice.imbalance["metric"] == "macro_f1"
    assert set(choice.imbalance["weights"]) == {"positive", "negative"}
    assert finetuner.classifier.method_choice.as_dict()["imbalance"] == choice.imbalance  # kept with the model


def test_auto_on_balanced_data_chooses_by_accuracy(tiny_bert):
    texts, labels = make_sentiment_data(FEWSHOT_MAX_ROWS + 20, seed=1)  # candidates that train with the Trainer
    finetuner = LLMFinetuner(tiny_bert, config=TrainConfig(epochs=1, learning_rate=3e-3, batch_size=16, seed=0))
    finetuner.fine_tune(texts, labels)
    choice = finetuner.method_choice
    assert all(c["metric"] == "accuracy" for c in choice.candidates) and not choice.imbalance["weighted"]
    assert finetuner.trainer is not None and getattr(finetuner.trainer, "compute_loss_func", None) is None


# ------------------------------------------------------------------------------------------ warnings


def test_warnings_name_rare_classes_and_say_what_training_does():
    counts = {"World": 2000, "Sports": 1950, "Business": 186, "Tiny": 3}
    warnings = class_balance_warnings(counts)
    assert len(warnings) == 2
    assert f"fewer than {FEW_ROWS} rows: 'Tiny' (3)" in warnings[0]
    assert "skewed: 'World' has 2000 rows, 'Tiny' 3 (667×)" in warnings[1]
    assert "weighs each class by its rarity" in warnings[1] and "macro-F1" in warnings[1]
    assert "--class-weights none" in warnings[1]
    off = class_balance_warnings(counts, "none")
    assert "Class weights are off" in off[1] and "seldom predict" in off[1]
    assert class_balance_warnings({"a": 50, "b": 40}) == []


def test_the_data_tab_summary_warns_about_rare_classes():
    texts, labels = skewed_sentiment(60, 4)
    checked = prepare(pd.DataFrame({"text": texts, "label": labels}))
    shown = checked.to_markdown()
    assert "fewer than 8 rows: 'negative' (4)" in shown and "The classes are skewed" in shown
    assert checked.ok  # a warning, not an error


def test_cli_train_warns_about_skewed_training_rows(tiny_bert, tmp_path):
    from test_cli import FAST, run_cli

    texts, labels = skewed_sentiment(60, 10)
    data = tmp_path / "skewed.csv"
    pd.DataFrame({"text": texts, "label": labels}).to_csv(data, index=False)
    code, _, err = run_cli("train", "--data", data, "--model", tiny_bert, "--output", tmp_path / "run", *FAST,
                           "--epochs", "1", "--class-weights", "none")
    assert code == 0, err
    assert "warning: The classes are skewed: 'positive' has 48 rows, 'negative' 8 (6×)" in err
    assert "Class weights are off (class_weights none)" in err
    assert Counter(labels)["negative"] == 10
