"""Words of the encoder's own vocabulary whose meaning is close to a class name and far from the other names
("positive" → "favorable", "pleasant", "cheerful", …; "Sports" → "athletes", "soccer", …). For tiny data they widen
what a class name tells contrastive tuning (see training.embedding_methods.contrastive_tune)."""

from __future__ import annotations

import re
from typing import Callable, List, Sequence

import numpy as np

# Words found for each class (measured at 8; see contrastive_tune).
WORDS_PER_CLASS = 8
_WORD = re.compile(r"[a-z]{3,}")


def vocabulary_words(tokenizer) -> List[str]:
    """The tokenizer's whole-word entries of three or more lower-case letters (no sub-word pieces, no codes)."""
    words = {tokenizer.convert_tokens_to_string([token]).strip() for token in tokenizer.get_vocab()}
    return sorted(word for word in words if _WORD.fullmatch(word))


def related_words(embed: Callable[[Sequence[str]], np.ndarray], tokenizer, spoken_names: Sequence[str],
                  per_class: int = WORDS_PER_CLASS) -> List[List[str]]:
    """For each class name, the ``per_class`` vocabulary words that ``embed`` (texts → unit-length vectors) puts
    nearest to it and furthest from the nearest other name: ranked by similarity to the name plus the margin over
    that other name, so a word as close to "negative" as to "positive" ranks low for both."""
    words = vocabulary_words(tokenizer)
    if not words or len(spoken_names) < 2:
        return [[] for _ in spoken_names]
    similarity = embed(words) @ embed(spoken_names).T  # words × classes
    related = []
    for index in range(len(spoken_names)):
        others = np.delete(similarity, index, axis=1).max(axis=1)
        score = 2 * similarity[:, index] - others
        related.append([words[i] for i in np.argsort(-score, kind="stable")[:per_class]])
    return related
