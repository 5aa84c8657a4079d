"""Words near each class name, found in the tokenizer's vocabulary (training.label_words)."""

import numpy as np
from conftest import NEGATIVE, NEUTRAL, POSITIVE, build_tokenizer

from finetuner.training.label_words import related_words, vocabulary_words

# Hand-made unit vectors: the sentiment words lean towards their class's name, the neutral words sit between.
_AXES = {"positive": np.array([1.0, 0.0, 0.2]), "negative": np.array([0.0, 1.0, 0.2])}


def _embed(texts):
    vectors = []
    for text in texts:
        if text in _AXES:
            vector = _AXES[text]
        elif text in POSITIVE:
            vector = _AXES["positive"] + [0, 0.3, 0.05 * POSITIVE.index(text)]
        elif text in NEGATIVE:
            vector = _AXES["negative"] + [0.3, 0, 0.05 * NEGATIVE.index(text)]
        else:  # as close to one name as to the other
            vector = np.array([1.0, 1.0, 0.1])
        vectors.append(vector / np.linalg.norm(vector))
    return np.array(vectors)


def test_vocabulary_words_are_whole_lower_case_words():
    tokenizer = build_tokenizer(["input_ids", "attention_mask"])
    words = vocabulary_words(tokenizer)
    assert "excellent" in words and "terrible" in words
    assert not [w for w in words if w.startswith("[") or len(w) < 3]  # no special tokens, no "a", "i", "is"


def test_related_words_are_near_their_name_and_not_the_other_one():
    tokenizer = build_tokenizer(["input_ids", "attention_mask"])
    positive, negative = related_words(_embed, tokenizer, ["positive", "negative"], per_class=5)
    assert len(positive) == len(negative) == 5
    assert set(positive) <= set(POSITIVE) and set(negative) <= set(NEGATIVE)
    assert positive[0] == "good" and negative[0] == "bad"  # the nearest first
    assert not set(positive + negative) & set(NEUTRAL)  # equally near both names: never chosen
