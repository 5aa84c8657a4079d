"""Short texts about three clearly different topics, for the data checks (label issues, duplicates, CLI check)."""

from __future__ import annotations

import itertools
import random
from typing import List, Tuple

# subjects x verbs x objects: 80 distinct sentences per topic.
TOPICS = {
    "sports": (["The striker", "Our goalkeeper", "The coach", "The home team", "The tennis champion"],
               ["scored twice in", "was injured during", "celebrated after", "trained hard for"],
               ["the cup final", "the league match", "the championship game", "the olympic qualifier"]),
    "cooking": (["The chef", "My grandmother", "The baker", "Our neighbour", "The restaurant cook"],
                ["baked", "seasoned", "slowly simmered", "served"],
                ["a garlic soup", "a chocolate cake", "fresh sourdough bread", "the tomato pasta sauce"]),
    "weather": (["A heavy storm", "The cold front", "Thick fog", "Freezing rain", "A tropical cyclone"],
                ["hit", "moved across", "is forecast for", "brought floods to"],
                ["the coast tonight", "the northern valleys", "the city this morning", "the mountain passes"]),
}


def topic_data(per_class: int = 20, seed: int = 0) -> Tuple[List[str], List[str]]:
    """``per_class`` distinct texts of each topic, classes interleaved (sports, cooking, weather, sports, ...)."""
    rng = random.Random(seed)
    sentences = {label: rng.sample([f"{s} {v} {o}." for s, v, o in itertools.product(*parts)], per_class)
                 for label, parts in TOPICS.items()}
    texts, labels = [], []
    for i in range(per_class):
        for label in TOPICS:
            texts.append(sentences[label][i])
            labels.append(label)
    return texts, labels
