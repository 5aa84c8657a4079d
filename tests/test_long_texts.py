"""Texts longer than the model reads at once (issue #23): read in overlapping windows for training and prediction,
pooled per text, identically through PyTorch and ONNX Runtime; short texts exactly as before; at most MAX_WINDOWS
windows a text; the notice that says how many texts are long."""

from __future__ import annotations

import json
import random
import re
import time

import numpy as np
import pytest
import torch

from conftest import FILLER, NEGATIVE, POSITIVE, TINY_CONFIG, make_sentiment_data
from finetuner import LLMFinetuner, TrainConfig
from finetuner.classifier import METADATA_FILE, TextClassifier
from finetuner.errors import ConfigError
from finetuner.metrics import logits_to_probabilities
from finetuner.training.finetune import predict_logits, select_texts, tokenize_dataset
from finetuner.training.windows import (MAX_WINDOWS, WINDOW_COLUMN, LongTexts, WindowPool, encode_windows,
                                        long_texts, window_batches, window_span, window_stride)

MAX_LENGTH = 16  # windows of 14 words (+ [CLS], [SEP]) on the tiny BERT (64 positions)
WINDOWED = TINY_CONFIG.replace(max_length=MAX_LENGTH, epochs=8)


def _late_word_data(n: int, seed: int):
    """Texts of 14 filler words, then 8 words of which 3 say the class: the first window (14 words) sees filler
    only, the second (words 11-22) the class words."""
    rng = random.Random(seed)
    texts, labels = [], []
    for i in range(n):
        label = ("positive", "negative")[i % 2]
        late = [rng.choice(FILLER) for _ in range(5)] + rng.sample(POSITIVE if label == "positive" else NEGATIVE, 3)
        rng.shuffle(late)
        texts.append(" ".join([rng.choice(FILLER) for _ in range(14)] + late))
        labels.append(label)
    return texts, labels


@pytest.fixture(scope="module")
def late():
    return _late_word_data(120, seed=1), _late_word_data(40, seed=2)


@pytest.fixture(scope="module")
def windowed(tiny_bert, late):
    (texts, labels), _ = late
    finetuner = LLMFinetuner(tiny_bert, config=WINDOWED)
    finetuner.fine_tune(texts, labels)
    return finetuner


def _accuracy(finetuner, texts, labels):
    return float(np.mean(np.asarray(finetuner.predict_labels(texts)) == np.asarray(labels)))


def test_windows_read_what_truncation_cannot(tiny_bert, late, windowed):
    (texts, labels), (test_texts, test_labels) = late
    truncated = LLMFinetuner(tiny_bert, config=WINDOWED.replace(long_texts="truncate"))
    truncated.fine_tune(texts, labels)
    assert _accuracy(windowed, test_texts, test_labels) >= 0.85
    assert _accuracy(truncated, test_texts, test_labels) <= 0.7  # it never sees the word: chance
    # The evaluation during training scores texts (windows pooled), as the final evaluation does.
    evaluated = windowed.trainer.evaluate(tokenize_dataset(windowed.tokenizer, test_texts, windowed.label_map.encode(
        test_labels), MAX_LENGTH))
    assert sum(map(sum, windowed.report["confusion_matrix"])) == len(test_texts)
    assert evaluated["eval_accuracy"] == windowed.evaluate_model(test_texts, test_labels)["accuracy"]


def test_the_embedding_head_reads_windows_too(tiny_bert, late):
    (texts, labels), (test_texts, test_labels) = late
    finetuner = LLMFinetuner(tiny_bert, config=WINDOWED.replace(method="head"))
    finetuner.fine_tune(texts, labels, test_texts, test_labels)
    evaluated = finetuner.trainer.evaluate(tokenize_dataset(finetuner.tokenizer, test_texts,
                                                            finetuner.label_map.encode(test_labels), MAX_LENGTH))
    assert sum(map(sum, finetuner.report["confusion_matrix"])) == len(test_texts)  # texts scored, not windows
    assert evaluated["eval_accuracy"] == finetuner.evaluate_model(test_texts, test_labels)["accuracy"]
    text = texts[0]
    encoded, owners = encode_windows(finetuner.tokenizer, [text], MAX_LENGTH, return_tensors="pt", padding=True)
    model = finetuner.model
    with torch.no_grad():
        embeddings = model.embed(**encoded)
        expected = model.head(embeddings.mean(dim=0, keepdim=True)).numpy()  # the head of the mean embedding
    np.testing.assert_allclose(predict_logits(model, finetuner.tokenizer, [text], MAX_LENGTH), expected, atol=1e-5)


def test_windows_cover_the_text_with_overlaps(tiny_bert, windowed):
    tokenizer = windowed.tokenizer
    text = " ".join(["the movie was really good"] * 8)  # 40 words
    encoded, owners = encode_windows(tokenizer, [text], MAX_LENGTH)
    words = tokenizer(text)["input_ids"][1:-1]
    stride = window_stride(tokenizer, MAX_LENGTH)
    assert stride == 3 and set(owners) == {0} and len(owners) == 4  # 14 + 3 x 11 >= 40
    windows = [ids[1:-1] for ids in encoded["input_ids"]]
    assert all(ids[0] == tokenizer.cls_token_id and ids[-1] == tokenizer.sep_token_id for ids in encoded["input_ids"])
    assert windows[0] == words[:14] and windows[-1] == words[-len(windows[-1]):]
    for before, after in zip(windows, windows[1:]):
        assert after[:stride] == before[-stride:]  # each window starts with the last tokens of the one before
    assert sum(len(w) for w in windows) - stride * (len(windows) - 1) == len(words)


def test_prediction_of_a_long_text_is_the_mean_of_its_windows_logits(windowed, late):
    (texts, _), _ = late
    tokenizer, model = windowed.tokenizer, windowed.model
    for text in texts[:3]:
        encoded, owners = encode_windows(tokenizer, [text], MAX_LENGTH)
        assert len(owners) > 1
        with torch.no_grad():
            each = [model(**{k: torch.tensor([v[i]]) for k, v in encoded.items()}).logits[0].numpy()
                    for i in range(len(owners))]
        expected = logits_to_probabilities(np.mean(each, axis=0, keepdims=True))
        np.testing.assert_allclose(windowed.predict_proba_array([text]), expected, atol=1e-5)


def test_order_is_kept_across_batches_and_windows(windowed, late):
    (texts, _), _ = late
    short, _ = make_sentiment_data(6, seed=5)
    mixed = [texts[0], short[0], texts[1], short[1], short[2], texts[2], texts[3], short[3]]
    one_by_one = np.vstack([windowed.predict_proba_array([text]) for text in mixed])
    np.testing.assert_allclose(windowed.predict_proba_array(mixed), one_by_one, atol=1e-5)
    small_batches = predict_logits(windowed.model, windowed.tokenizer, mixed, MAX_LENGTH, batch_size=3)
    np.testing.assert_allclose(logits_to_probabilities(small_batches), one_by_one, atol=1e-5)
    rows = [row for row, _ in window_batches(windowed.tokenizer, mixed, MAX_LENGTH, 3)]
    assert max(len(r) for r in rows) <= 3 and sorted(sum(rows, [])) == sorted(
        sum(([i] * len(encode_windows(windowed.tokenizer, [t], MAX_LENGTH)[1]) for i, t in enumerate(mixed)), []))


def test_short_texts_are_read_exactly_as_before(windowed):
    texts, labels = make_sentiment_data(50, seed=4)
    tokenizer, model = windowed.tokenizer, windowed.model
    with_windows = predict_logits(model, tokenizer, texts, MAX_LENGTH, batch_size=8)
    truncated = predict_logits(model, tokenizer, texts, MAX_LENGTH, batch_size=8, windows=False)
    assert np.array_equal(with_windows, truncated)  # bit-identical: the same rows, batches and model calls
    ids = windowed.label_map.encode(labels)
    rows = tokenize_dataset(tokenizer, texts, ids, MAX_LENGTH)
    assert WINDOW_COLUMN not in rows.column_names
    assert rows.to_dict() == tokenize_dataset(tokenizer, texts, ids, MAX_LENGTH, windows=False).to_dict()
    for (rows_a, a), (rows_b, b) in zip(window_batches(tokenizer, texts, MAX_LENGTH, 8),
                                        window_batches(tokenizer, texts, MAX_LENGTH, 8, windows=False)):
        assert rows_a == rows_b and a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_windows_per_text_are_capped(windowed):
    tokenizer = windowed.tokenizer
    span = window_span(tokenizer, MAX_LENGTH)
    assert span == 14 + (MAX_WINDOWS - 1) * 11 + 2
    words = [random.Random(0).choice(FILLER + POSITIVE) for _ in range(3 * span)]
    huge = " ".join(words)
    encoded, owners = encode_windows(tokenizer, [huge, "good"], MAX_LENGTH)
    assert owners == [0] * MAX_WINDOWS + [1]
    # What lies beyond the windows is cut: a longer text predicts as its start does.
    covered = " ".join(words[:span - 2])
    np.testing.assert_allclose(windowed.predict_proba_array([huge]), windowed.predict_proba_array([covered]),
                               atol=1e-6)
    cell = "good " * 2_000_000  # a 10 MB cell: clipped before tokenizing, MAX_WINDOWS windows, fast
    started = time.perf_counter()
    windowed.predict_proba_array([cell])
    assert time.perf_counter() - started < 10


def test_onnx_runtime_reads_long_texts_as_pytorch_does(windowed, late, tmp_path):
    from finetuner.onnx_export import export_onnx
    from finetuner.training.onnx_graph import ONNX_FILE

    (texts, _), (test_texts, _) = late
    short, _ = make_sentiment_data(5, seed=7)
    mixed = test_texts[:10] + short + [" ".join(test_texts[:6])]  # the last one beyond MAX_WINDOWS windows
    classifier = windowed.classifier
    result = export_onnx(classifier, tmp_path / "onnx", texts=mixed)
    assert result.fp32.labels_identical
    expected = classifier.predict_proba_array(mixed)
    classifier.use_onnx(tmp_path / "onnx" / ONNX_FILE)
    try:
        assert classifier.backend == "onnx"
        got = classifier.predict_proba_array(mixed)
    finally:
        classifier.use_onnx(None)
    np.testing.assert_allclose(got, expected, atol=1e-4)
    assert "stride=3" in (tmp_path / "onnx" / "README.md").read_text()


def test_pool_keeps_single_windows_exact_and_pools_the_rest():
    values = np.array([[1.0, 2.0], [0.5, -1.0], [3.0, 0.0], [7.25, 1e-8]], dtype=np.float32)
    rows = [1, 0, 1, 2]
    expected = {"mean": [[0.5, -1.0], [2.0, 1.0], [7.25, 1e-8]], "max": [[0.5, -1.0], [3.0, 2.0], [7.25, 1e-8]]}
    for how, want in expected.items():
        pool = WindowPool(3, 2, how)
        pool.add(rows[:2], values[:2])
        pool.add(rows[2:], values[2:])
        assert np.array_equal(pool.result(), np.asarray(want, dtype=np.float32))
    pool = WindowPool(3, 2, "mean_probs")
    pool.add(rows, values)
    probabilities = logits_to_probabilities(pool.result().astype(np.float64))
    mean = (logits_to_probabilities(values[[0]].astype(np.float64)) + logits_to_probabilities(
        values[[2]].astype(np.float64))) / 2
    np.testing.assert_allclose(probabilities[1], mean[0], atol=1e-6)


def test_select_texts_takes_every_window_of_the_chosen_texts(windowed, late):
    (texts, labels), _ = late
    mixed = [texts[0], "good", texts[1], "bad"]
    rows = tokenize_dataset(windowed.tokenizer, mixed, [0, 0, 1, 1], MAX_LENGTH)
    owners = rows[WINDOW_COLUMN]
    part = select_texts(rows, [2, 1])
    assert part[WINDOW_COLUMN] == [0] * owners.count(2) + [1]
    assert part["input_ids"] == [ids for ids, o in zip(rows["input_ids"], owners) if o == 2] + [rows["input_ids"][
        owners.index(1)]]


def test_auto_trains_and_scores_with_windows(tiny_bert, late):
    (texts, labels), (test_texts, test_labels) = late
    finetuner = LLMFinetuner(tiny_bert, config=WINDOWED.replace(method="auto", epochs=None, time_budget=120))
    finetuner.fine_tune(texts, labels)
    assert finetuner.method_choice is not None and finetuner.predict_proba_array(test_texts).shape == (40, 2)


def test_the_setting_is_checked_and_saved_and_old_models_keep_truncating(windowed, tmp_path):
    with pytest.raises(ConfigError, match="'windows'.*'truncate'"):
        TrainConfig(long_texts="window")
    folder = windowed.save(tmp_path / "model")
    assert TextClassifier.load(folder).config.long_texts == "windows"
    meta = json.loads((folder / METADATA_FILE).read_text())
    del meta["config"]["long_texts"]  # a model saved before windows existed
    (folder / METADATA_FILE).write_text(json.dumps(meta))
    assert TextClassifier.load(folder).windows is False


def test_notice_counts_long_texts_and_what_happens(windowed, late, tiny_bert):
    (texts, labels), _ = late
    tokenizer = windowed.tokenizer
    short, _ = make_sentiment_data(4, seed=3)
    huge = " ".join(["good"] * 1000)
    note = long_texts(tokenizer, texts[:5] + short + [huge], MAX_LENGTH)
    assert (note.count, note.total, note.beyond_windows) == (6, 10, 1)
    assert str(note).startswith("6 of 10 texts are longer than 16 tokens: each is read in overlapping windows")
    assert "1 of them goes beyond what 16 windows cover: only its first" in str(note)
    assert not long_texts(tokenizer, short, MAX_LENGTH)
    assert "only the first 16 tokens" in str(long_texts(tokenizer, texts[:2], MAX_LENGTH, windows=False))
    heard = []
    LLMFinetuner(tiny_bert, config=WINDOWED.replace(epochs=1)).fine_tune(texts, labels, listener=heard.append)
    notes = [item for item in heard if isinstance(item, LongTexts)]
    assert len(notes) == 1 and notes[0].count == len(texts)


def test_command_line_says_how_many_texts_are_long(tiny_bert, late, tmp_path, capsys):
    from finetuner.__main__ import main

    (texts, labels), _ = late
    import pandas as pd
    pd.DataFrame({"text": texts, "label": labels}).to_csv(tmp_path / "train.csv", index=False)
    code = main(["train", "--data", str(tmp_path / "train.csv"), "--model", tiny_bert, "--method", "head",
                 "--max-length", "16", "--output", str(tmp_path / "run")])
    assert code == 0
    out = capsys.readouterr()
    assert "96 of 96 texts are longer than 16 tokens: each is read in overlapping windows" in out.err + out.out


class _WindowedCounter:
    """A stand-in classifier that reads texts in windows of ``size`` words (stride 2) and pools them by the mean of
    their logits; a window's logit for "positive" is its count of "good" minus its count of "bad"."""

    labels = ["negative", "positive"]

    def __init__(self, size: int = 6):
        self.size = size

    def window_spans(self, text):
        words = [m.span() for m in re.finditer(r"\S+", text)]
        starts = range(0, max(1, len(words) - 2), self.size - 2) if len(words) > self.size else [0]
        return [(words[i][0], words[min(i + self.size, len(words)) - 1][1]) for i in starts]

    def predict_proba_array(self, texts):
        logits = []
        for text in texts:
            pieces = [text[a:b].split() for a, b in self.window_spans(text)]
            logits.append(np.mean([w.count("good") - w.count("bad") for w in pieces]))
        positive = 1 / (1 + np.exp(-np.asarray(logits, dtype=float)))
        return np.stack([1 - positive, positive], axis=1)


def test_a_long_text_is_explained_in_the_windows_that_read_each_word():
    from finetuner.explain import explain, log_odds

    model = _WindowedCounter()
    text = "a b c d e f g good h i j k"  # windows of 6 words sharing 2: a-f, e-i (with good), h-k
    spans = model.window_spans(text)
    assert len(spans) == 3
    result = explain(model, text)
    scores = dict(zip(result.tokens, result.scores))
    # "good" is read by one window of three: left out of it, the mean logit drops by 1/3.
    assert scores["good"] == pytest.approx(float(log_odds(np.array([1 / (1 + np.exp(-1 / 3))]))[0]), abs=1e-6)
    assert all(score == pytest.approx(0, abs=1e-9) for token, score in scores.items() if token != "good")
    assert result.probability == pytest.approx(model.predict_proba_array([text])[0, 1])
    assert "Read in 3 overlapping windows" in result.note


def test_explanations_of_long_texts_are_bounded_and_exact(windowed, late):
    _, (test_texts, _) = late
    text = test_texts[0]
    classifier = windowed.classifier
    started = time.perf_counter()
    explanation = classifier.explain(text)
    assert time.perf_counter() - started < 20
    assert explanation.probability == pytest.approx(windowed.predict_proba_array([text])[0].max(), abs=1e-6)
    assert "Read in 2 overlapping windows" in explanation.note
    # Each word is left out of the windows that read it: the windows, plus one or two per word, are classified.
    seen = []
    original = classifier.predict_proba_array
    classifier.predict_proba_array = lambda texts: seen.append(len(texts)) or original(texts)
    try:
        again = classifier.explain(text)
    finally:
        del classifier.predict_proba_array
    assert seen == [1 + 2 + len(explanation.tokens) + 3]  # 3 words are in both windows (the stride)
    assert again.scores == explanation.scores


def test_the_data_check_names_the_same_cap():
    from finetuner import data

    assert data._MAX_WINDOWS == MAX_WINDOWS


def test_data_tab_says_what_training_will_do(tiny_bert_256, late):
    import pandas as pd

    from finetuner.training.finetune import plan_windows
    from finetuner.ui import data_tab
    from finetuner.ui.common import TableData

    (texts, labels), _ = late
    long_ones = [" ".join([text] * 8) for text in texts[:3]]  # ~180 words: past the floor of 128 tokens
    short, short_labels = make_sentiment_data(197, seed=6)
    frame = pd.DataFrame({"text": long_ones + short, "label": labels[:3] + short_labels})
    note = data_tab._LongTextNote()
    note.model = tiny_bert_256
    tokenizer, limit = note._load(tiny_bert_256)
    assert limit == 256
    train = frame["text"].tolist()
    exact = plan_windows(tokenizer, train, limit)
    quick = plan_windows(tokenizer, train, limit, cache={}, quick=True)
    assert exact == quick and exact[0] == 128 and exact[1].count == 3  # 1.5%: the 98th percentile is short
    assert note(train) == f"ℹ Long texts: {exact[1]}" and note(short) == ""
    previous = data_tab._LONG_TEXTS.model
    data_tab._LONG_TEXTS.model = tiny_bert_256
    try:
        summary, _ = data_tab._checks(TableData(frame, "t.csv"), "text", "label", None, 0.2)
    finally:
        data_tab._LONG_TEXTS.model = previous
    assert "texts are longer than 128 tokens: each is read in overlapping windows" in summary


def test_a_decoder_with_lora_reads_windows(tiny_llama, late):
    (texts, labels), _ = late
    finetuner = LLMFinetuner(tiny_llama, config=WINDOWED.replace(method="lora", epochs=1, lora_r=4, lora_alpha=8.0))
    finetuner.fine_tune(texts[:40], labels[:40], texts[40:50], labels[40:50])
    tokenizer, model = finetuner.tokenizer, finetuner.model
    text = texts[0]
    encoded, owners = encode_windows(tokenizer, [text], MAX_LENGTH)
    assert len(owners) == 2 and all(ids[0] == tokenizer.bos_token_id for ids in encoded["input_ids"])
    with torch.no_grad():
        each = [model(input_ids=torch.tensor([ids])).logits[0].numpy() for ids in encoded["input_ids"]]
    mixed = [text, "good", texts[1]]  # padded in one batch: positions count from each window's start
    got = finetuner.predict_proba_array(mixed)
    np.testing.assert_allclose(got[0], logits_to_probabilities(np.mean(each, axis=0)), atol=1e-5)
    np.testing.assert_allclose(got, np.vstack([finetuner.predict_proba_array([t]) for t in mixed]), atol=1e-5)
