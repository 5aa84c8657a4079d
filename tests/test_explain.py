"""Word-level explanations by occlusion: every word gets a score, the text is kept whole, the words with the
highest scores are the ones the model's prediction depends on (checked against random words), and the app's
/explain endpoint gives them for the active model."""

from __future__ import annotations

import random
import re
from typing import List, Sequence

import numpy as np
import pytest
from conftest import NEGATIVE, POSITIVE, TINY_CONFIG, make_sentiment_data, serve_app
from gradio_client import Client

from finetuner import LLMFinetuner
from finetuner.errors import DataError
from finetuner.explain import HIGHLIGHT_FLOOR, Explanation, explain, log_odds, word_spans


class _CountingModel:
    """A stand-in classifier: the log-odds of "positive" rise by ``weight`` with each "good" and fall by it with
    each "bad"."""

    labels = ["negative", "positive"]

    def __init__(self, weight: float = 1.0):
        self.weight = weight

    def predict_proba_array(self, texts: Sequence[str]) -> np.ndarray:
        words = [re.findall(r"\w+", t.lower()) for t in texts]
        logits = [self.weight * (w.count("good") - w.count("bad")) for w in words]
        positive = 1 / (1 + np.exp(-np.asarray(logits, dtype=float)))
        return np.stack([1 - positive, positive], axis=1).astype(np.float32)  # as a model gives them


def _reassembled(explanation: Explanation) -> str:
    return "".join(piece for piece, _ in explanation.highlighted())


def test_every_word_and_mark_gets_a_score_and_the_text_stays_whole():
    text = "  a good,  good film — isn't it bad?\n"
    result = explain(_CountingModel(), text)
    assert result.tokens == ["a", "good", ",", "good", "film", "—", "isn't", "it", "bad", "?"]
    assert len(result.scores) == len(result.tokens) == len(result.starts)
    assert all(text[s:s + len(t)] == t for t, s in zip(result.tokens, result.starts))
    assert _reassembled(result) == text
    assert result.label == "positive" and result.probability == pytest.approx(1 / (1 + np.exp(-1)))
    scores = dict(zip(result.tokens, result.scores))
    assert scores["good"] == pytest.approx(1.0, abs=1e-5) and scores["bad"] == pytest.approx(-1.0, abs=1e-5)
    assert scores["film"] == 0  # each score: the change in the label's log-odds, here 1 per "good"
    assert result.top(1)[0][0] == "good"
    shown = [score for _, score in result.highlighted() if score is not None]
    assert max(abs(s) for s in shown) == pytest.approx(1.0)  # scaled for the colours
    assert HIGHLIGHT_FLOOR == 0.1
    faint = Explanation("a b", "x", 0.5, ["a", "b"], [0, 2], [0.02, -0.01])
    assert faint.highlighted() == [("a", 0.2), (" ", None), ("b", -0.1)]  # noise stays pale
    assert faint.top(min_score=0.02) == []


def test_words_of_a_saturated_prediction_still_get_their_scores():
    """A confident model's probabilities sit near 1, where leaving a decisive word out hardly moves the probability
    but clearly moves the log-odds."""
    model = _CountingModel(weight=4.0)
    text = "good good good film"
    result = explain(model, text)
    assert result.label == "positive" and result.probability > 0.99999
    drop = result.probability - float(model.predict_proba_array(["good good film"])[0, 1])
    assert drop < 0.001  # as a probability difference, "good" would look like noise
    assert result.scores == pytest.approx([4.0, 4.0, 4.0, 0.0], abs=0.01)
    assert [token for token, _ in result.top(3, 0.05)] == ["good", "good", "good"]
    # Probabilities of exactly 1 and 0 (beyond float32): clipped to 1 - 1e-6 and 1e-6, the scores stay finite.
    assert np.isfinite(log_odds(np.array([0.0, 1.0]))).all()
    assert log_odds(np.array([0.0, 0.5, 1.0])) == pytest.approx([-13.8155, 0.0, 13.8155], abs=1e-4)
    certain = explain(_CountingModel(weight=40.0), "good")  # p = 1.0 exactly; left out, p = 0.5
    assert certain.probability == 1.0 and certain.scores == pytest.approx([13.8155], abs=1e-4)


def test_a_target_label_is_explained_with_the_opposite_signs():
    result = explain(_CountingModel(), "good and bad and good", target="negative")
    assert result.label == "negative"
    assert dict(zip(result.tokens, result.scores))["bad"] > 0
    with pytest.raises(DataError, match="Unknown label 'neutral'"):
        explain(_CountingModel(), "good", target="neutral")


def test_a_single_word_and_empty_texts():
    assert explain(_CountingModel(), "good").scores[0] > 0  # left out, the stand-in "." is classified
    for empty in ("", "   "):
        with pytest.raises(DataError, match="Type a text"):
            explain(_CountingModel(), empty)


def test_long_texts_are_explained_in_spans_and_say_so():
    text = " ".join(f"word{i}" for i in range(150))
    spans, note = word_spans(text, max_units=64)
    assert len(spans) == 50 and "150 words" in note and "spans of up to 3" in note
    result = explain(_CountingModel(), text, max_units=64)
    assert len(result.tokens) == 50 and result.note == note and _reassembled(result) == text
    assert word_spans("short text")[1] == ""


class _EmotionModel:
    """Several labels per text: each label's log-odds are ``weight`` times the count of its word, minus 2."""

    labels = ["anger", "joy", "love"]
    task = "multi_label"

    def __init__(self, weight: float = 3.0, windows: int = 0):
        self.weight, self.windows = weight, windows

    def label_thresholds(self):
        return [0.5, 0.3, 0.5]

    def window_spans(self, text):
        """Windows of ``windows`` words (none: one window, whatever the length)."""
        words = [m.span() for m in re.finditer(r"\S+", text)]
        if not self.windows or len(words) <= self.windows:
            return [(0, len(text))]
        size = self.windows
        return [(words[i][0], words[min(i + size, len(words)) - 1][1]) for i in range(0, len(words), size)]

    def _logits(self, text):
        words = re.findall(r"\w+", text.lower())
        return [self.weight * words.count(word) - 2 for word in ("angry", "happy", "adore")]

    def predict_proba_array(self, texts):
        rows = []
        for text in texts:
            pieces = [text[a:b] for a, b in self.window_spans(text)] if self.windows else [text]
            rows.append(np.mean([self._logits(piece) for piece in pieces], axis=0))
        return 1 / (1 + np.exp(-np.asarray(rows, dtype=float)))


class _PriceModel:
    """A number per text: 100, plus 10 for each "great", minus 5 for each "bad"."""

    labels = ["price"]
    task = "regression"

    def predict_proba_array(self, texts):
        words = [re.findall(r"\w+", t.lower()) for t in texts]
        return np.asarray([[100.0 + 10 * w.count("great") - 5 * w.count("bad")] for w in words])


def test_several_labels_per_text_explain_each_label_by_its_own_log_odds():
    model = _EmotionModel()
    text = "so happy and i adore you , happy"
    result = explain(model, text)
    # The most probable label (joy: 3 × 2 - 2 = 4), each word's score the change in joy's own log-odds.
    assert result.label == "joy" and result.task == "multi_label"
    assert result.probability == pytest.approx(1 / (1 + np.exp(-4)))
    assert result.threshold == 0.3 and "predicted at threshold 0.30" in result.headline()
    scores = dict(zip(result.tokens, result.scores))
    assert scores["happy"] == pytest.approx(3.0, abs=1e-6) and scores["adore"] == pytest.approx(0.0, abs=1e-9)
    love = explain(model, text, target="love")  # another label: its words, not joy's
    assert love.label == "love" and love.threshold == 0.5
    assert dict(zip(love.tokens, love.scores))["adore"] == pytest.approx(3.0, abs=1e-6)
    assert dict(zip(love.tokens, love.scores))["happy"] == pytest.approx(0.0, abs=1e-9)
    absent = explain(model, text, target="anger")  # a label below its threshold: no word moves it
    assert absent.probability < 0.5 and "not predicted" in absent.headline()
    assert all(score == pytest.approx(0.0, abs=1e-9) for score in absent.scores)
    with pytest.raises(DataError, match="Unknown label 'fear'"):
        explain(model, text, target="fear")


def test_several_labels_per_text_in_windows_pool_each_labels_log_odds():
    model = _EmotionModel(windows=4)
    text = "happy a b c d e f adore"  # two windows: "happy a b c", "d e f adore"
    result = explain(model, text, target="joy")
    scores = dict(zip(result.tokens, result.scores))
    # joy's logit is the mean of the windows' (1 and -2): without "happy" it is -2; the drop is 1.5 in log-odds.
    assert scores["happy"] == pytest.approx(1.5, abs=1e-6)
    assert result.probability == pytest.approx(float(model.predict_proba_array([text])[0, 1]))
    assert "Read in 2 overlapping windows" in result.note


def test_a_number_per_text_is_explained_by_how_much_each_word_moves_it():
    result = explain(_PriceModel(), "a great great show , bad ending")
    assert result.task == "regression" and result.label == "price"
    assert result.value == result.probability == pytest.approx(115.0)
    scores = dict(zip(result.tokens, result.scores))
    # In the target's units: "great" raises the predicted value by 10, "bad" lowers it by 5.
    assert scores["great"] == pytest.approx(10.0) and scores["bad"] == pytest.approx(-5.0)
    assert scores["show"] == 0.0
    assert [token for token, _ in result.top(2)] == ["great", "great"]
    assert result.bottom(1) == [("bad", pytest.approx(-5.0))]
    line = result.headline()
    assert line.startswith("predicted price 115") and "raised most by “great”" in line
    assert "lowered most by “bad”" in line
    shown = dict((piece, score) for piece, score in result.highlighted() if score is not None)
    assert shown["great"] == pytest.approx(1.0) and shown["bad"] == pytest.approx(-0.5)
    assert explain(_PriceModel(), "a show", target="price").scores == [0.0, 0.0]
    flat = explain(_PriceModel(), "a show")
    assert "no single word moves it" in flat.headline() and flat.floor == pytest.approx(1.0)
    with pytest.raises(DataError, match="Unknown target 'value'"):
        explain(_PriceModel(), "a show", target="value")


def test_one_label_per_text_says_nothing_of_thresholds():
    result = explain(_CountingModel(), "good film")
    assert result.task == "single_label" and result.threshold is None
    assert result.headline() == "positive (73%): most supported by “good”"


@pytest.fixture(scope="module")
def sentiment_model(tiny_bert) -> LLMFinetuner:
    model = LLMFinetuner(tiny_bert, config=TINY_CONFIG.replace(epochs=15))  # confident: probabilities near 0 or 1
    model.fine_tune(*make_sentiment_data(80, seed=1))
    return model


def _drop_after_removing(model: LLMFinetuner, texts: List[str], labels: List[str],
                         removed: List[List[int]]) -> float:
    """The mean drop in each text's explained label's probability when its words at ``removed`` are left out."""
    shortened = [" ".join(w for i, w in enumerate(t.split()) if i not in set(r)) for t, r in zip(texts, removed)]
    column = [model.labels.index(label) for label in labels]
    before = model.predict_proba_array(texts)[np.arange(len(texts)), column]
    after = model.predict_proba_array(shortened)[np.arange(len(texts)), column]
    return float(np.mean(before - after))


def test_removing_the_top_attributed_words_lowers_the_probability_more_than_random_words(sentiment_model):
    texts, _ = make_sentiment_data(24, seed=5)
    explanations = [explain(sentiment_model, text) for text in texts]
    assert all(len(e.tokens) == len(t.split()) for e, t in zip(explanations, texts))  # one word per unit here
    labels = [e.label for e in explanations]
    top = [list(np.argsort(e.scores)[::-1][:1]) for e in explanations]
    rng = random.Random(0)
    randomly = [rng.sample(range(len(e.tokens)), 1) for e in explanations]
    top_drop = _drop_after_removing(sentiment_model, texts, labels, top)
    random_drop = _drop_after_removing(sentiment_model, texts, labels, randomly)
    print(f"faithfulness: mean drop removing the top word {top_drop:.3f}, a random word {random_drop:.3f}")
    assert top_drop > 0.05 and top_drop > random_drop + 0.05
    # The top word is the sentiment word the data's class comes from.
    sentiment = set(POSITIVE + NEGATIVE)
    assert np.mean([e.tokens[i[0]] in sentiment for e, i in zip(explanations, top)]) >= 0.7


def test_the_explain_endpoint_highlights_the_words_of_the_active_model(tmp_path, tiny_bert):
    with serve_app(tmp_path / "runs", tiny_bert) as url:
        client = Client(url, verbose=False)
        with pytest.raises(Exception, match="No model yet"):
            client.predict("a great film", api_name="/explain")
        client.predict("lab_sentences.csv", 0.2, api_name="/load_sample")
        progress, *_ = client.predict(preset_name="fast", epochs=2, learning_rate=3e-3, batch_size=16,
                                      api_name="/train")
        assert "Completed" in progress, progress
        pieces, line = client.predict("I love this product!", api_name="/explain")
        assert "".join(piece["token"] for piece in pieces) == "I love this product!"
        scored = [piece for piece in pieces if piece["class_or_confidence"] is not None]
        assert [piece["token"] for piece in scored] == ["I", "love", "this", "product", "!"]
        assert all(-1 <= piece["class_or_confidence"] <= 1 for piece in scored)
        assert line.startswith("**positive**") or line.startswith("**negative**")
