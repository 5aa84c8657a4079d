"""LLMFinetuner on tiny BERT and DistilBERT: the seed API, labels, settings, reproducibility, save/load."""

from __future__ import annotations

import json
import platform
import random
import sys
import warnings

import numpy as np
import pytest
import torch
from conftest import TINY_CONFIG, make_sentiment_data
from sklearn.metrics import accuracy_score, f1_score

from finetuner import (DEFAULT_MODEL, ConfigError, DataError, LLMFinetuner, ModelLoadError, TrainConfig)

# One epoch at batch 8: one or two optimiser steps, well under a second on a tiny model.
FAST = TINY_CONFIG.replace(epochs=1)
# Enough steps (80 rows x 8 epochs at batch 8) for a tiny model to learn the one-sentiment-word task,
# whatever the random tiny base model and the training seed: checked over 6
# base models and 5 training seeds for both architectures, held-out accuracy was always >= 0.9.
LEARN = TINY_CONFIG
SEED_KEYS = {"accuracy", "f1_macro", "f1_weighted", "precision_macro", "recall_macro", "loss"}
# Texts of different lengths (the batched predictor sorts by length) with known and unknown words.
VARIED_TEXTS = ["good", "the movie was awful and boring", "i really enjoyed this film , superb",
                "bad", "what a wonderful day and a great show overall", "okay", "it is the worst food",
                "xyzzy unknown words here", "great great great great great great great great"]



@pytest.fixture(params=["bert", "distilbert"])
def model_path(request, tiny_bert, tiny_distilbert):
    return {"bert": tiny_bert, "distilbert": tiny_distilbert}[request.param]


@pytest.fixture(scope="module", params=["bert", "distilbert"])
def trained(request, tiny_bert, tiny_distilbert):
    """A tiny model fine-tuned on string labels until it has learned the task, evaluated once.

    Shared by the tests of this module (about a second per architecture): tests must not retrain it.
    """
    path = {"bert": tiny_bert, "distilbert": tiny_distilbert}[request.param]
    train = make_sentiment_data(80, seed=1)
    evaluation = make_sentiment_data(40, seed=2)
    finetuner = LLMFinetuner(path, config=LEARN)
    finetuner.fine_tune(*train, *evaluation)
    metrics = finetuner.evaluate_model(*evaluation)
    return finetuner, evaluation, metrics


def int_data(n, seed, values=(0, 1)):
    texts, labels = make_sentiment_data(n, seed=seed)
    mapping = {"negative": values[0], "positive": values[1]}
    return texts, [mapping[label] for label in labels]


# ---------------------------------------------------------------------------------------------
# The seed API
# ---------------------------------------------------------------------------------------------

def test_seed_flow_with_int_labels(model_path):
    train_texts, train_labels = int_data(16, seed=1)
    test_texts, test_labels = int_data(10, seed=2)
    finetuner = LLMFinetuner(model_path, num_labels=2, config=FAST)
    assert finetuner.fine_tune(train_texts, train_labels, test_texts, test_labels) is None
    metrics = finetuner.evaluate_model(test_texts, test_labels)
    assert SEED_KEYS <= set(metrics)
    assert all(type(v) is float for v in metrics.values())
    assert all(0 <= metrics[k] <= 1 for k in SEED_KEYS - {"loss"})
    assert np.isfinite(metrics["loss"]) and metrics["loss"] > 0
    predictions = finetuner.predict(test_texts)
    assert isinstance(predictions, list) and len(predictions) == len(test_texts)
    assert all(type(p) is int and p in (0, 1) for p in predictions)
    # evaluate_model (Trainer) and predict (batched inference) see the same model.
    assert metrics["accuracy"] == pytest.approx(accuracy_score(test_labels, predictions))
    assert metrics["f1_macro"] == pytest.approx(f1_score(test_labels, predictions, average="macro",
                                                         labels=[0, 1], zero_division=0))
    assert finetuner.metrics == metrics


def test_fine_tune_without_eval_set(tiny_bert):
    texts, labels = int_data(8, seed=1)
    finetuner = LLMFinetuner(tiny_bert, config=FAST)
    finetuner.fine_tune(texts, labels)
    assert finetuner.trained and not [h for h in finetuner.history if h["kind"] == "evaluate"]
    assert SEED_KEYS <= set(finetuner.evaluate_model(texts, labels))


def test_training_changes_the_model(tiny_bert):
    texts, labels = int_data(16, seed=1)
    finetuner = LLMFinetuner(tiny_bert, config=FAST)
    before = finetuner.predict_proba_array(VARIED_TEXTS)
    finetuner.fine_tune(texts, labels)
    after = finetuner.predict_proba_array(VARIED_TEXTS)
    assert not np.allclose(before, after, atol=1e-4)


# ---------------------------------------------------------------------------------------------
# Labels
# ---------------------------------------------------------------------------------------------

def test_string_labels_end_to_end(trained):
    finetuner, (texts, labels), _ = trained
    assert finetuner.labels == ["negative", "positive"]
    assert finetuner.model.config.id2label == {0: "negative", 1: "positive"}
    assert finetuner.model.config.label2id == {"negative": 0, "positive": 1}
    names = finetuner.predict_labels(VARIED_TEXTS)
    assert set(names) <= {"negative", "positive"} and all(type(n) is str for n in names)
    ids = finetuner.predict(VARIED_TEXTS)
    assert all(type(i) is int for i in ids)
    assert [finetuner.labels[i] for i in ids] == names
    probabilities = finetuner.predict_proba(VARIED_TEXTS)
    assert len(probabilities) == len(VARIED_TEXTS)
    for row, name in zip(probabilities, names):
        assert set(row) == {"negative", "positive"}
        assert sum(row.values()) == pytest.approx(1.0, abs=1e-6)
        assert all(0 <= p <= 1 and type(p) is float for p in row.values())
        assert max(row, key=row.get) == name


def test_the_model_learns_the_task(trained):
    finetuner, (texts, labels), metrics = trained
    assert metrics["accuracy"] >= 0.8  # chance is 0.5
    assert finetuner.predict_labels(["a great film", "a terrible film"]) == ["positive", "negative"]
    # Training was evaluated once per epoch on the evaluation set.
    kinds = [h["kind"] for h in finetuner.history]
    during_training = kinds[:kinds.index("end") + 1]
    assert during_training.count("evaluate") == LEARN.epochs


def test_non_contiguous_int_labels_are_predicted_as_given(tiny_bert):
    texts, labels = int_data(16, seed=1, values=(3, 7))
    finetuner = LLMFinetuner(tiny_bert, config=FAST)
    finetuner.fine_tune(texts, labels)
    assert finetuner.label_map.values == (3, 7)
    assert finetuner.model.config.num_labels == 2
    predictions = finetuner.predict(VARIED_TEXTS)
    assert set(predictions) <= {3, 7} and all(type(p) is int for p in predictions)
    best = finetuner.predict_proba_array(VARIED_TEXTS).argmax(axis=1)
    assert predictions == [(3, 7)[i] for i in best]
    assert finetuner.predict_labels(VARIED_TEXTS) == [str(p) for p in predictions]
    assert SEED_KEYS <= set(finetuner.evaluate_model(*int_data(6, seed=2, values=(3, 7))))


def test_num_labels_inferred_from_the_data(tiny_distilbert):
    texts, labels = make_sentiment_data(12, seed=1, classes=("positive", "negative", "neutral"))
    finetuner = LLMFinetuner(tiny_distilbert, config=FAST)  # num_labels left at its default
    assert finetuner.model.config.num_labels == 2
    finetuner.fine_tune(texts, labels)
    assert finetuner.labels == ["negative", "neutral", "positive"]
    assert finetuner.model.config.num_labels == 3
    probabilities = finetuner.predict_proba(["good", "bad"])
    assert all(set(row) == {"negative", "neutral", "positive"} for row in probabilities)
    assert set(finetuner.predict(VARIED_TEXTS)) <= {0, 1, 2}


def test_num_labels_contradicting_the_data(tiny_bert):
    texts, labels = make_sentiment_data(9, seed=1, classes=("positive", "negative", "neutral"))
    finetuner = LLMFinetuner(tiny_bert, num_labels=2, config=FAST)  # given explicitly, even if it is the default
    with pytest.raises(DataError) as info:
        finetuner.fine_tune(texts, labels)
    message = str(info.value)
    assert "num_labels=2" in message and "the data has 3 classes" in message  # both counts
    assert "negative, neutral, positive" in message and "Pass num_labels=3" in message
    assert not finetuner.trained


def test_num_labels_contradicting_int_data(tiny_bert):
    texts = ["good", "bad", "okay", "great", "awful", "fine"]
    finetuner = LLMFinetuner(tiny_bert, num_labels=4, config=FAST)
    with pytest.raises(DataError, match=r"num_labels=4, but the data has 2 classes \(5, 9\)"):
        finetuner.fine_tune(texts, [5, 9, 5, 9, 5, 9])


def test_explicit_num_labels_larger_than_the_int_labels_seen(tiny_bert):
    texts, labels = int_data(8, seed=1)
    finetuner = LLMFinetuner(tiny_bert, num_labels=3, config=FAST)
    finetuner.fine_tune(texts, labels)
    assert finetuner.label_map.values == (0, 1, 2)
    assert finetuner.model.config.num_labels == 3
    assert all(set(row) == {"0", "1", "2"} for row in finetuner.predict_proba(["good"]))
    assert set(finetuner.predict(VARIED_TEXTS)) <= {0, 1, 2}


@pytest.mark.parametrize("num_labels", [1, 0, -2, True, 2.0, "2"])
def test_bad_num_labels(tiny_bert, num_labels):
    with pytest.raises(ConfigError, match="num_labels must be a whole number of at least 2"):
        LLMFinetuner(tiny_bert, num_labels=num_labels)


def test_eval_labels_unseen_in_training_warn(tiny_bert):
    train_texts, train_labels = make_sentiment_data(8, seed=1)
    eval_texts, eval_labels = make_sentiment_data(6, seed=2, classes=("positive", "negative", "neutral"))
    finetuner = LLMFinetuner(tiny_bert, config=FAST)
    with pytest.warns(UserWarning, match=r"Evaluation labels never seen in training: \['neutral'\]"):
        finetuner.fine_tune(train_texts, train_labels, eval_texts, eval_labels)
    assert finetuner.labels == ["negative", "neutral", "positive"]


def test_no_warning_when_eval_labels_are_known(trained):
    finetuner, (texts, labels), _ = trained
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        finetuner.evaluate_model(texts, labels)


def test_evaluate_with_an_unknown_label_names_the_row(trained):
    finetuner, _, _ = trained
    with pytest.raises(DataError, match=r"Row 2: label 'neutral' is not one of the model's classes"):
        finetuner.evaluate_model(["good", "okay"], ["positive", "neutral"])


@pytest.mark.parametrize("texts, labels, expected", [
    (["good", " ", "bad"], ["positive", "negative", "negative"], r"1 empty text\(s\): row 2"),
    (["good", "bad"], ["positive"], "2 texts but 1 labels"),
    (["good", "bad"], ["positive", "positive"], "single class"),
    (["good", "bad"], ["positive", None], r"row 2 \(missing label\)"),
    (["good", "bad"], [0.5, "x"], "not a class label"),
    ([], [], "is empty"),
])
def test_fine_tune_rejects_bad_data_before_training(tiny_bert, texts, labels, expected):
    finetuner = LLMFinetuner(tiny_bert, config=FAST)
    with pytest.raises(DataError, match=expected):
        finetuner.fine_tune(texts, labels)
    assert finetuner.trainer is None and not finetuner.trained


def test_predict_rejects_empty_texts(trained):
    finetuner, _, _ = trained
    assert finetuner.predict([]) == [] and finetuner.predict_proba([]) == []
    with pytest.raises(DataError, match="row 2"):
        finetuner.predict(["good", ""])


def test_resume_without_checkpoint(tiny_bert, tmp_path):
    finetuner = LLMFinetuner(tiny_bert, config=FAST)
    with pytest.raises(ConfigError, match="Nothing to resume"):
        finetuner.fine_tune(*int_data(8, seed=1), checkpoint_dir=tmp_path, resume=True)


def test_invalid_config_is_rejected_by_fine_tune(tiny_bert):
    finetuner = LLMFinetuner(tiny_bert, config=FAST)
    config = FAST.replace()
    config.learning_rate = 5.0
    with pytest.raises(ConfigError, match="learning_rate=5.0"):
        finetuner.fine_tune(*int_data(8, seed=1), config=config)


# ---------------------------------------------------------------------------------------------
# Reproducibility, lengths, order
# ---------------------------------------------------------------------------------------------

def _train(path, seed, texts, labels):
    finetuner = LLMFinetuner(path, config=TINY_CONFIG.replace(epochs=1, seed=seed))
    finetuner.fine_tune(texts, labels)
    return finetuner


def test_same_seed_same_model(tiny_bert):
    texts, labels = make_sentiment_data(16, seed=5)
    first, second = (_train(tiny_bert, 11, texts, labels) for _ in range(2))
    assert first.predict(VARIED_TEXTS) == second.predict(VARIED_TEXTS)
    np.testing.assert_allclose(first.predict_proba_array(VARIED_TEXTS), second.predict_proba_array(VARIED_TEXTS),
                               rtol=0, atol=1e-7)
    other = _train(tiny_bert, 12, texts, labels)
    assert not np.allclose(first.predict_proba_array(VARIED_TEXTS), other.predict_proba_array(VARIED_TEXTS),
                           rtol=0, atol=1e-5)


def test_max_length_chosen_from_the_data(tiny_bert_256):
    rng = random.Random(0)
    words = ["good", "bad", "the", "movie", "was", "really", "very", "and"]
    texts = [" ".join(rng.choice(words) for _ in range(rng.randint(150, 200))) for _ in range(8)]
    labels = ["positive", "negative"] * 4
    finetuner = LLMFinetuner(tiny_bert_256, config=FAST)
    finetuner.fine_tune(texts, labels)
    lengths = [len(ids) for ids in finetuner.tokenizer(texts)["input_ids"]]
    assert finetuner.max_length % 8 == 0
    assert np.percentile(lengths, 98) <= finetuner.max_length < np.percentile(lengths, 98) + 8
    assert finetuner.max_length < 256  # not the model's limit: shorter data, shorter inputs


def test_max_length_capped_by_the_model_limit(tiny_bert):
    texts = [" ".join(["good"] * 100), " ".join(["bad"] * 100)] * 4
    finetuner = LLMFinetuner(tiny_bert, config=FAST)
    finetuner.fine_tune(texts, ["positive", "negative"] * 4)
    assert finetuner.max_length == 64  # max_position_embeddings of the tiny model
    assert len(finetuner.predict([" ".join(["good"] * 500)])) == 1  # long inputs are truncated


def test_short_texts_get_the_minimum_length(tiny_bert, tiny_bert_256):
    texts, labels = make_sentiment_data(8, seed=1)  # ~7 tokens each
    for model, expected in ((tiny_bert_256, 128), (tiny_bert, 64)):  # the floor of 128, or the model's limit
        finetuner = LLMFinetuner(model, config=FAST)
        finetuner.fine_tune(texts, labels)
        assert finetuner.max_length == expected


def test_explicit_max_length_is_respected(tiny_bert):
    texts, labels = make_sentiment_data(8, seed=1)
    finetuner = LLMFinetuner(tiny_bert, config=FAST.replace(max_length=8, long_texts="truncate"))
    finetuner.fine_tune(texts, labels)
    assert finetuner.max_length == 8
    # Only the first 6 words fit ([CLS] + 6 + [SEP]): cut there, what follows cannot change the prediction (read in
    # windows, it does: tests/test_long_texts.py).
    head = "the movie was really very good"
    probabilities = finetuner.predict_proba_array([head, head + " bad awful terrible", head + " hate hate"])
    np.testing.assert_allclose(probabilities[1], probabilities[0], atol=1e-6)
    np.testing.assert_allclose(probabilities[2], probabilities[0], atol=1e-6)
    # An explicit value above the model's limit is capped.
    finetuner.fine_tune(texts, labels, config=FAST.replace(max_length=4096))
    assert finetuner.max_length == 64


def test_predictions_keep_the_input_order(trained):
    finetuner, _, _ = trained
    texts = list(VARIED_TEXTS) * 3
    random.Random(1).shuffle(texts)
    batched = finetuner.predict_proba_array(texts)
    single = np.array([finetuner.predict_proba_array([text])[0] for text in texts])
    # The texts get clearly different scores (positive / negative), and the length-sorted batches mix
    # them: rows put back in the wrong place would not match.
    assert len(np.unique(single[:, 0].round(2))) >= 2
    np.testing.assert_allclose(batched, single, rtol=0, atol=1e-5)
    assert finetuner.predict(texts) == [int(i) for i in single.argmax(axis=1)]


def test_small_eval_batches_give_the_same_probabilities(trained):
    finetuner, _, _ = trained
    full = finetuner.predict_proba_array(VARIED_TEXTS)
    previous = finetuner.config
    finetuner.config = previous.replace(eval_batch_size=2)
    try:
        np.testing.assert_allclose(finetuner.predict_proba_array(VARIED_TEXTS), full, rtol=0, atol=1e-5)
    finally:
        finetuner.config = previous


# ---------------------------------------------------------------------------------------------
# Evaluation report
# ---------------------------------------------------------------------------------------------

def test_report_after_evaluate(trained):
    finetuner, (texts, labels), metrics = trained
    finetuner.evaluate_model(texts, labels)
    report = finetuner.report
    assert report["labels"] == ["negative", "positive"]
    assert set(report["per_class"]) == {"negative", "positive"}
    for name, row in report["per_class"].items():
        assert {"precision", "recall", "f1-score", "support"} <= set(row)
        assert row["support"] == labels.count(name)
    matrix = np.array(report["confusion_matrix"])
    assert matrix.shape == (2, 2) and matrix.sum() == len(texts)
    assert matrix.sum(axis=1).tolist() == [labels.count("negative"), labels.count("positive")]  # rows: true
    predicted = finetuner.predict_labels(texts)
    assert matrix.sum(axis=0).tolist() == [predicted.count("negative"), predicted.count("positive")]
    assert np.trace(matrix) / len(texts) == pytest.approx(metrics["accuracy"])
    assert report["summary"]["f1_macro"] == pytest.approx(metrics["f1_macro"])


# ---------------------------------------------------------------------------------------------
# Save and load
# ---------------------------------------------------------------------------------------------

def test_save_load_predicts_identically(trained, tmp_path):
    finetuner, (texts, labels), metrics = trained
    target = finetuner.save(tmp_path / "model")
    assert target == (tmp_path / "model").resolve()
    files = {p.name for p in target.iterdir()}
    assert {"model.safetensors", "finetuner.json", "config.json"} <= files
    assert any(name.startswith("tokenizer") for name in files)
    assert not [p for p in target.rglob("*") if p.suffix in (".bin", ".pkl", ".pickle", ".pt", ".pth")]
    meta = json.loads((target / "finetuner.json").read_text())
    assert meta["labels"] == ["negative", "positive"]
    assert meta["max_length"] == finetuner.max_length
    assert TrainConfig.from_dict(meta["config"]) == finetuner.config
    assert meta["metrics"]["accuracy"] == pytest.approx(metrics["accuracy"])
    assert meta["report"]["confusion_matrix"] == finetuner.report["confusion_matrix"]

    loaded = LLMFinetuner.load(target)
    assert loaded.labels == finetuner.labels and loaded.max_length == finetuner.max_length
    np.testing.assert_allclose(loaded.predict_proba_array(VARIED_TEXTS), finetuner.predict_proba_array(VARIED_TEXTS),
                               rtol=0, atol=1e-6)
    assert loaded.predict_labels(VARIED_TEXTS) == finetuner.predict_labels(VARIED_TEXTS)
    assert loaded.predict(VARIED_TEXTS) == finetuner.predict(VARIED_TEXTS)
    assert loaded.metrics == pytest.approx(metrics)


def test_save_load_keeps_int_labels(tiny_bert, tmp_path):
    finetuner = LLMFinetuner(tiny_bert, config=FAST)
    finetuner.fine_tune(*int_data(8, seed=1, values=(3, 7)))
    loaded = LLMFinetuner.load(finetuner.save(tmp_path / "m"))
    assert loaded.label_map.values == (3, 7)
    assert loaded.predict(VARIED_TEXTS) == finetuner.predict(VARIED_TEXTS)
    assert set(loaded.predict(VARIED_TEXTS)) <= {3, 7}


def test_saving_over_an_existing_directory_replaces_it(trained, tmp_path):
    finetuner, _, _ = trained
    target = tmp_path / "model"
    finetuner.save(target)
    (target / "stale.txt").write_text("from an older save")
    finetuner.save(target)
    assert not (target / "stale.txt").exists()
    assert (target / "model.safetensors").is_file()
    leftovers = [p.name for p in tmp_path.iterdir() if p.name != "model"]
    assert leftovers == []  # no .partial-/.old- directories
    loaded = LLMFinetuner.load(target)
    np.testing.assert_allclose(loaded.predict_proba_array(["good"]), finetuner.predict_proba_array(["good"]),
                               rtol=0, atol=1e-6)


def test_save_creates_parent_directories(trained, tmp_path):
    finetuner, _, _ = trained
    target = finetuner.save(tmp_path / "a" / "b" / "model")
    assert (target / "finetuner.json").is_file()


@pytest.mark.parametrize("make", ["empty", "missing", "plain model"])
def test_load_of_a_non_model_directory(tmp_path, tiny_bert, make):
    path = {"empty": tmp_path, "missing": tmp_path / "nope", "plain model": tiny_bert}[make]
    with pytest.raises(ModelLoadError) as info:
        LLMFinetuner.load(path)
    assert "not a saved finetuner model (no finetuner.json)" in str(info.value)


def test_evaluate_model_on_a_loaded_model(trained, tmp_path):
    finetuner, (texts, labels), metrics = trained
    loaded = LLMFinetuner.load(finetuner.save(tmp_path / "model"))
    result = loaded.evaluate_model(texts, labels)
    assert SEED_KEYS <= set(result)
    assert result["accuracy"] == pytest.approx(metrics["accuracy"])
    assert result["loss"] == pytest.approx(metrics["loss"], abs=1e-4)
    assert loaded.report["labels"] == ["negative", "positive"]
    assert np.array(loaded.report["confusion_matrix"]).sum() == len(texts)


def test_loaded_model_can_be_fine_tuned_further(trained, tmp_path):
    finetuner, (texts, labels), _ = trained
    loaded = LLMFinetuner.load(finetuner.save(tmp_path / "model"))
    loaded.fine_tune(*make_sentiment_data(8, seed=3))
    assert loaded.labels == ["negative", "positive"]
    assert not np.allclose(loaded.predict_proba_array(VARIED_TEXTS), finetuner.predict_proba_array(VARIED_TEXTS),
                           atol=1e-5)


# ---------------------------------------------------------------------------------------------
# The bundled default
# ---------------------------------------------------------------------------------------------

def test_default_constructor_loads_the_bundled_model_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    finetuner = LLMFinetuner()
    assert finetuner.model_name == DEFAULT_MODEL
    assert finetuner.model.config.num_labels == 2
    assert finetuner.model.config.hidden_size == 384  # all-MiniLM-L6-v2
    predictions = finetuner.predict(["I love it", "I hate it"])
    assert len(predictions) == 2 and all(type(p) is int and p in (0, 1) for p in predictions)


def test_a_single_string_is_one_text(trained):
    finetuner, _, _ = trained
    assert finetuner.predict("a great film") == finetuner.predict(["a great film"])
    assert len(finetuner.predict_labels("a great film")) == 1
    assert list(finetuner.predict_proba("a great film")[0]) == finetuner.labels


def test_evaluating_after_training_does_not_reach_the_training_listeners(tiny_bert):
    events = []
    finetuner = LLMFinetuner(tiny_bert, config=FAST)
    texts, labels = make_sentiment_data(16)
    finetuner.fine_tune(texts, labels, texts, labels, listener=events.append)
    kinds = [event.kind for event in events]
    finetuner.evaluate_model(texts, labels)
    assert [event.kind for event in events] == kinds and kinds[-1] == "end"
    assert finetuner.history[-1]["kind"] == "end"


def test_resume_skips_a_checkpoint_cut_off_mid_write(tiny_bert, tmp_path):
    texts, labels = make_sentiment_data(16)
    config = FAST.replace(epochs=2)
    first = LLMFinetuner(tiny_bert, config=config)
    first.fine_tune(texts, labels, checkpoint_dir=tmp_path)
    from finetuner.training.checkpoints import checkpoints
    # epoch 1's checkpoint only: after the last epoch the finished model is saved, not a checkpoint
    assert list(checkpoints(tmp_path)) == [first.trainer.state.global_step // 2]
    broken = tmp_path / "checkpoint-999"
    broken.mkdir()  # a later checkpoint whose save was interrupted: no trainer_state.json
    resumed = LLMFinetuner(tiny_bert, config=config)
    resumed.fine_tune(texts, labels, checkpoint_dir=tmp_path, resume=True)
    assert not broken.exists()
    assert resumed.trainer.state.global_step == first.trainer.state.global_step


def test_huge_texts_are_clipped_before_tokenizing_without_changing_the_tokens(trained):
    from finetuner.training.finetune import clip_texts
    finetuner, _, _ = trained
    long_text = "the movie was really very good and " * 2000
    full = finetuner.tokenizer(long_text, truncation=True, max_length=finetuner.max_length)["input_ids"]
    clipped = finetuner.tokenizer(clip_texts([long_text], finetuner.max_length)[0], truncation=True,
                                  max_length=finetuner.max_length)["input_ids"]
    assert clipped == full and len(clip_texts([long_text], finetuner.max_length)[0]) < len(long_text)
    huge = "good " * 2_000_000  # a 10 MB cell
    assert np.allclose(finetuner.predict_proba_array([huge]), finetuner.predict_proba_array([huge[:20000]]))


def test_the_learning_rate_chosen_is_recorded_in_the_config(tiny_bert, tmp_path):
    finetuner = LLMFinetuner(tiny_bert, config=FAST.replace(learning_rate=None))
    finetuner.fine_tune(*make_sentiment_data(16))
    assert finetuner.config.learning_rate == 3e-4  # a tiny model counts as small
    saved = json.loads((finetuner.save(tmp_path / "m") / "finetuner.json").read_text())
    assert saved["config"]["learning_rate"] == 3e-4 and saved["max_length"] == finetuner.max_length


def test_mixed_precision_choices_on_this_machine(monkeypatch):
    from finetuner.training import finetune
    from finetuner.training.finetune import mixed_precision
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(finetune, "cpu_has_bf16", lambda: True)
    assert mixed_precision("auto") == {"bf16": True}  # a CPU with native bfloat16: measured faster, same accuracy
    monkeypatch.setattr(finetune, "cpu_has_bf16", lambda: False)
    assert mixed_precision("auto") == {} and mixed_precision("fp32") == {}
    assert mixed_precision("bf16") == {"bf16": True}
    with pytest.raises(ConfigError, match="fp16.*needs a CUDA GPU"):
        mixed_precision("fp16")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(finetune, "cpu_has_bf16", lambda: True)
    assert mixed_precision("auto") == {}  # fp32 on a GPU: bf16 autocast measured slower (config.py)
    assert mixed_precision("fp16") == {"fp16": True} and mixed_precision("bf16") == {"bf16": True}


def test_passes_that_only_inform_training_follow_the_training_precision(monkeypatch):
    from finetuner.training import finetune
    from finetuner.training.finetune import inference_autocast
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(finetune, "cpu_has_bf16", lambda: True)
    cpu = torch.device("cpu")
    with inference_autocast("auto", cpu):
        assert torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16
        assert torch.nn.Linear(4, 2)(torch.ones(1, 4)).dtype == torch.bfloat16
    for precision in ("fp32", "fp16"):
        with inference_autocast(precision, cpu):
            assert not torch.is_autocast_enabled("cpu")
    monkeypatch.setattr(finetune, "cpu_has_bf16", lambda: False)
    with inference_autocast("auto", cpu):  # a CPU without native bfloat16 trains in fp32
        assert not torch.is_autocast_enabled("cpu")


@pytest.mark.skipif(sys.platform != "linux" or platform.libc_ver()[0] != "glibc", reason="glibc's malloc only")
def test_freed_blocks_stay_in_the_heap_after_training_starts(monkeypatch):
    import ctypes

    from finetuner.training import memory

    class MallInfo2(ctypes.Structure):
        _fields_ = [(name, ctypes.c_size_t) for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                          "fsmblks", "uordblks", "fordblks", "keepcost")]

    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = MallInfo2
    libc.malloc.restype = ctypes.c_void_p
    libc.free.argtypes = [ctypes.c_void_p]
    monkeypatch.setattr(memory, "_done", False)
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.trim_threshold=0")
    assert not memory.keep_freed_memory()  # the person's own malloc settings are left alone
    monkeypatch.delenv("GLIBC_TUNABLES")
    assert memory.keep_freed_memory() and memory.keep_freed_memory()  # once per process
    mapped = libc.mallinfo2().hblkhd
    block = libc.malloc(16 * 1024 * 1024)  # an activation-sized block: from the heap now, not its own mmap
    try:
        assert block and libc.mallinfo2().hblkhd == mapped
    finally:
        libc.free(block)


def test_bf16_and_gradient_checkpointing_train_on_cpu(tiny_bert):
    finetuner = LLMFinetuner(tiny_bert, config=TINY_CONFIG.replace(precision="bf16", gradient_checkpointing=True))
    texts, labels = make_sentiment_data(40)
    finetuner.fine_tune(texts, labels)
    assert finetuner.trainer.args.bf16 and finetuner.trainer.args.activation_checkpointing
    assert finetuner.model.is_activation_checkpointing
    assert len(finetuner.predict(texts[:3])) == 3
