"""Confidence calibration: temperature scaling finds the temperature that produced the labels and makes an
overconfident model honest without changing a prediction; the expected calibration error tells calibrated from
overconfident; folding a temperature into a model divides its logits exactly, for every head this project trains
(LoRA heads included); and evaluations report the ECE and the reliability bins."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import TINY_CONFIG, make_sentiment_data
from scipy.special import softmax
from transformers import (BertConfig, BertForSequenceClassification, BertModel, DistilBertConfig,
                          DistilBertForSequenceClassification, LlamaConfig, LlamaForSequenceClassification,
                          Qwen2Config, Qwen2ForSequenceClassification, RobertaConfig, RobertaForSequenceClassification)

from finetuner import LLMFinetuner, TrainConfig
from finetuner.calibration import (expected_calibration_error, fit_temperature, fold_temperature,
                                   negative_log_likelihood, output_layer, reliability)
from finetuner.evaluation import evaluate, metrics_table
from finetuner.training.finetune import predict_logits
from finetuner.training.lora import is_peft_model, wrap_with_lora
from finetuner.training.sentence_classifier import SentenceClassifier

N_LABELS = 3


def _synthetic(n: int, temperature: float, classes: int = 4, seed: int = 0):
    """Logits z and labels drawn from softmax(z / temperature): the model that says z is calibrated at exactly
    that temperature (overconfident for a temperature above 1)."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0.0, 3.0, size=(n, classes))
    true = softmax(logits / temperature, axis=1)
    labels = np.array([rng.choice(classes, p=row) for row in true])
    return logits, labels


@pytest.mark.parametrize("true_temperature", [0.5, 2.5])
def test_the_fit_recovers_the_temperature_that_drew_the_labels(true_temperature):
    logits, labels = _synthetic(20000, true_temperature)
    assert fit_temperature(logits, labels) == pytest.approx(true_temperature, rel=0.06)


def test_the_fit_lowers_nll_and_ece_of_an_overconfident_model_and_keeps_every_prediction():
    logits, labels = _synthetic(5000, 3.0, seed=1)
    temperature = fit_temperature(logits, labels)
    assert temperature > 2
    before, after = softmax(logits, axis=1), softmax(logits / temperature, axis=1)
    assert negative_log_likelihood(logits, labels, temperature) < negative_log_likelihood(logits, labels) - 0.1
    assert expected_calibration_error(after, labels) < 0.03 < 0.15 < expected_calibration_error(before, labels)
    assert (after.argmax(axis=1) == before.argmax(axis=1)).all()


def test_classes_never_seen_in_training_are_no_trouble():
    """The embedding head gives such classes a bias of -1e4: the likelihood stays finite and the fit the same."""
    logits, labels = _synthetic(3000, 2.0, classes=3, seed=2)
    with_unseen = np.concatenate([logits, np.full((len(logits), 1), -1e4)], axis=1).astype(np.float32)
    temperature = fit_temperature(with_unseen, labels)
    assert math.isfinite(temperature) and temperature == pytest.approx(fit_temperature(logits, labels), rel=1e-3)
    assert math.isfinite(negative_log_likelihood(with_unseen, labels, 0.05))


def test_inputs_that_cannot_tell_a_temperature_leave_it_at_one():
    logits = np.array([[2.0, 0.0], [0.0, 3.0], [1.0, 0.5]])
    assert fit_temperature(logits[:1], [0]) == 1.0  # one row
    assert fit_temperature(logits, [0, 0, 0]) == 1.0  # one class
    assert fit_temperature(logits, [0, 1, 0]) == 1.0  # no mistake: the likelihood rises without limit as T -> 0
    assert fit_temperature(np.array([[2.0, 0.0], [0.0, 3.0], [4.0, 0.0]]), [0, 1, 1]) > 1.0  # a sure mistake: softer
    with pytest.raises(ValueError, match="one row of scores per label"):
        fit_temperature(logits, [0, 1])
    with pytest.raises(ValueError, match="Label ids"):
        fit_temperature(logits, [0, 1, 2])


def test_ece_of_a_calibrated_model_is_small_and_of_an_overconfident_one_large():
    logits, labels = _synthetic(20000, 1.0, seed=3)
    assert expected_calibration_error(softmax(logits, axis=1), labels) < 0.02
    logits, labels = _synthetic(20000, 4.0, seed=3)
    assert expected_calibration_error(softmax(logits, axis=1), labels) > 0.2


def test_reliability_bins_on_a_hand_computed_example():
    probabilities = np.array([[0.95, 0.05], [0.15, 0.85], [0.65, 0.35], [0.25, 0.75], [0.9, 0.1]])
    labels = [0, 0, 0, 1, 1]
    bins = reliability(probabilities, labels, bins=10)
    assert [(round(b["low"], 2), round(b["high"], 2), b["count"]) for b in bins] == [
        (0.6, 0.7, 1), (0.7, 0.8, 1), (0.8, 0.9, 2), (0.9, 1.0, 1)]  # 0.85 and 0.9 share (0.8, 0.9]
    assert bins[2]["confidence"] == pytest.approx(0.875) and bins[2]["accuracy"] == 0.0
    assert sum(b["count"] for b in bins) == len(labels)
    expected = (0.35 + 0.25 + 2 * 0.875 + 0.05) / 5
    assert expected_calibration_error(probabilities, labels, bins=10) == pytest.approx(expected)
    logits, labels = _synthetic(5000, 2.0, seed=4)
    bins = reliability(softmax(logits, axis=1), labels)
    assert sum(b["count"] for b in bins) == 5000 and len(bins) <= 15
    assert all(b["low"] <= b["confidence"] <= b["high"] for b in bins)
    assert expected_calibration_error(np.zeros((0, 2)), []) == 0.0


# ------------------------------------------------------------------------------------------- folding


def _tiny(kind: str):
    torch.manual_seed(0)
    sizes = dict(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                 max_position_embeddings=64, num_labels=N_LABELS)
    if kind == "bert":
        return BertForSequenceClassification(BertConfig(**sizes))
    if kind == "roberta":
        return RobertaForSequenceClassification(RobertaConfig(**sizes, pad_token_id=1))
    if kind == "distilbert":
        return DistilBertForSequenceClassification(DistilBertConfig(vocab_size=100, dim=32, n_layers=2, n_heads=2,
                                                                    hidden_dim=64, num_labels=N_LABELS))
    if kind == "llama":
        return LlamaForSequenceClassification(LlamaConfig(**sizes, num_key_value_heads=2, pad_token_id=0))
    if kind == "qwen2":
        return Qwen2ForSequenceClassification(Qwen2Config(**sizes, num_key_value_heads=2, pad_token_id=0))
    if kind == "sentence":
        return SentenceClassifier(BertModel(BertConfig(**sizes)), N_LABELS)
    raise ValueError(kind)


def _logits(model) -> torch.Tensor:
    model.eval()
    ids = torch.tensor([[5, 17, 42, 8, 9], [12, 3, 77, 64, 31]])
    with torch.no_grad():
        return model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits.detach().clone()


HEADS = {"bert": "classifier", "roberta": "classifier.out_proj", "distilbert": "classifier", "llama": "score",
         "qwen2": "score", "sentence": "head"}


@pytest.mark.parametrize("kind", list(HEADS))
def test_folding_a_temperature_divides_the_logits(kind):
    model = _tiny(kind)
    assert output_layer(model) is model.get_submodule(HEADS[kind])
    before = _logits(model)
    assert fold_temperature(model, 2.5)
    after = _logits(model)
    torch.testing.assert_close(after, before / 2.5, rtol=1e-5, atol=1e-6)
    assert (after.argmax(dim=1) == before.argmax(dim=1)).all()


@pytest.mark.parametrize("kind", ["bert", "roberta", "llama"])
def test_folding_scales_the_lora_head_copy_the_forward_uses(kind):
    model = wrap_with_lora(_tiny(kind), TrainConfig(method="lora", seed=0))
    wrapper = model.base_model.model.get_submodule(HEADS[kind].split(".")[0])
    original = {k: v.clone() for k, v in wrapper.original_module.state_dict().items()}
    with model.disable_adapter():
        untouched = _logits(model)
    before = _logits(model)
    assert fold_temperature(model, 0.4)
    torch.testing.assert_close(_logits(model), before / 0.4, rtol=1e-5, atol=1e-5)
    assert all(torch.equal(v, wrapper.original_module.state_dict()[k]) for k, v in original.items())
    with model.disable_adapter():  # the base model's own head is left alone
        torch.testing.assert_close(_logits(model), untouched)
    merged = model.merge_and_unload()  # what a merged export or a later method gets
    torch.testing.assert_close(_logits(merged), before / 0.4, rtol=1e-5, atol=1e-5)


def test_nothing_is_folded_where_no_layer_gives_the_logits():
    encoder = BertModel(BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                   intermediate_size=64))
    weights = {k: v.clone() for k, v in encoder.state_dict().items()}
    assert output_layer(encoder) is None and not fold_temperature(encoder, 2.0)
    assert all(torch.equal(v, encoder.state_dict()[k]) for k, v in weights.items())
    assert not fold_temperature(torch.nn.Sequential(torch.nn.Linear(4, 2)), 2.0)  # no config: no class count
    assert not fold_temperature(object(), 2.0)
    from peft import LoraConfig, get_peft_model
    adapted_head = get_peft_model(_tiny("bert"), LoraConfig(r=2, target_modules=["classifier"]))
    assert not fold_temperature(adapted_head, 2.0)  # the LoRA delta would stay unscaled


def test_a_temperature_of_one_changes_nothing_and_a_bad_one_is_refused():
    model = _tiny("bert")
    before = _logits(model)
    assert fold_temperature(model, 1.0)
    assert torch.equal(_logits(model), before)
    for bad in (0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="positive number"):
            fold_temperature(model, bad)


# ------------------------------------------------------------------------------------------ evaluation


@pytest.fixture(scope="module")
def trained(tiny_bert) -> LLMFinetuner:
    model = LLMFinetuner(tiny_bert, config=TINY_CONFIG)
    model.fine_tune(*make_sentiment_data(80, seed=1))
    return model


def test_the_evaluation_reports_ece_and_reliability_bins(trained):
    texts, labels = make_sentiment_data(40, seed=2)
    result = evaluate(trained, texts, labels)
    assert 0.0 <= result.metrics["ece"] <= 1.0 and list(result.metrics)[-2:] == ["ece", "loss"]
    assert trained.metrics["ece"] == result.metrics["ece"]
    assert "Calibration error (ECE)" in metrics_table(result.metrics)["metric"].tolist()
    bins = result.report["reliability"]
    assert sum(b["count"] for b in bins) == len(texts)
    probabilities = result.rows[[f"p_{name}" for name in trained.labels]].to_numpy()
    ids = [trained.labels.index(label) for label in labels]
    assert result.metrics["ece"] == pytest.approx(expected_calibration_error(probabilities, ids), abs=1e-4)


def test_a_sharpened_model_is_overconfident_and_a_fitted_temperature_mends_it(trained):
    texts, labels = make_sentiment_data(40, seed=3)
    flip = {"positive": "negative", "negative": "positive"}
    labels = [flip[label] if i % 5 == 0 else label for i, label in enumerate(labels)]  # mistakes to be sure about
    ids = [trained.labels.index(label) for label in labels]
    accuracy = trained.evaluate_model(texts, labels)["accuracy"]
    assert accuracy < 1
    assert fold_temperature(trained.model, 0.01)  # logits × 100: probabilities 0 or 1, mistakes too
    sharp = trained.evaluate_model(texts, labels)
    assert sharp["accuracy"] == accuracy and sharp["ece"] == pytest.approx(1 - accuracy, abs=0.01)
    logits = predict_logits(trained.model, trained.tokenizer, texts, trained.classifier.length_limit(), 16)
    temperature = fit_temperature(logits, ids)
    assert temperature > 10
    assert fold_temperature(trained.model, temperature)
    mended = trained.evaluate_model(texts, labels)
    assert mended["accuracy"] == accuracy and mended["loss"] < sharp["loss"] / 2 and mended["ece"] < sharp["ece"]


@pytest.mark.parametrize("method", ["lora", "head"])
def test_a_folded_temperature_is_saved_with_the_model(method, tiny_llama, tiny_bert, tmp_path):
    """A trained LoRA decoder (the head a modules_to_save copy, saved with the adapter) and an embedding head (a
    SentenceClassifier, its head saved beside the encoder) keep the temperature through save and load."""
    base = tiny_llama if method == "lora" else tiny_bert
    model = LLMFinetuner(base, config=TINY_CONFIG.replace(method=method, epochs=2, lora_r=4, lora_alpha=8.0))
    model.fine_tune(*make_sentiment_data(40, seed=1))
    assert is_peft_model(model.model) if method == "lora" else isinstance(model.model, SentenceClassifier)
    texts = make_sentiment_data(8, seed=2)[0]
    limit = model.classifier.length_limit()
    before = predict_logits(model.model, model.tokenizer, texts, limit)
    assert fold_temperature(model.model, 4.0)
    np.testing.assert_allclose(predict_logits(model.model, model.tokenizer, texts, limit), before / 4.0, rtol=1e-4,
                               atol=1e-5)
    loaded = LLMFinetuner.load(model.save(tmp_path / "model"))
    np.testing.assert_allclose(loaded.predict_proba_array(texts), model.predict_proba_array(texts), atol=1e-6)
    np.testing.assert_allclose(loaded.predict_proba_array(texts), softmax(before / 4.0, axis=1), atol=1e-5)
