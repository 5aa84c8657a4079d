"""The lab's evaluation flow, step by step, on a tiny model: six sentences, an 80/20 split, fine-tune,
evaluate, predict a new sentence."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from conftest import TINY_CONFIG
from sklearn.model_selection import train_test_split

from finetuner import LLMFinetuner

LAB_FILE = Path(__file__).resolve().parents[1] / "sample_data" / "lab_sentences.csv"
# The lab's six sentences (3 positive, 3 negative), used when sample_data/ does not have them.
LAB_SENTENCES = [
    ("I love this product, it is great!", "positive"),
    ("This is the worst experience ever.", "negative"),
    ("Absolutely fantastic service.", "positive"),
    ("I hate it, it is terrible.", "negative"),
    ("What a wonderful day.", "positive"),
    ("The food was awful and boring.", "negative"),
]



def lab_rows():
    if LAB_FILE.is_file():
        with open(LAB_FILE, newline="", encoding="utf-8") as handle:
            return [(row["text"], row["label"]) for row in csv.DictReader(handle)]
    return LAB_SENTENCES


def test_lab_sentences_are_three_positive_three_negative():
    rows = lab_rows()
    assert len(rows) == 6
    assert sorted(label for _, label in rows) == ["negative"] * 3 + ["positive"] * 3
    assert all(text.strip() for text, _ in rows)


@pytest.mark.parametrize("architecture", ["bert", "distilbert"])
def test_lab_flow(architecture, tiny_bert, tiny_distilbert):
    model_path = {"bert": tiny_bert, "distilbert": tiny_distilbert}[architecture]
    texts = [text for text, _ in lab_rows()]
    labels = [label for _, label in lab_rows()]
    train_texts, test_texts, train_labels, test_labels = train_test_split(
        texts, labels, test_size=0.2, random_state=42)
    assert (len(train_texts), len(test_texts)) == (4, 2)

    finetuner = LLMFinetuner(model_path, num_labels=2, config=TINY_CONFIG.replace(epochs=2))
    finetuner.fine_tune(train_texts, train_labels, test_texts, test_labels)
    metrics = finetuner.evaluate_model(test_texts, test_labels)
    assert isinstance(metrics, dict)
    assert {"accuracy", "f1_macro", "f1_weighted", "precision_macro", "recall_macro", "loss"} <= set(metrics)
    assert all(isinstance(v, float) for v in metrics.values())
    assert metrics["accuracy"] in (0.0, 0.5, 1.0)  # two test sentences

    prediction = finetuner.predict(["This movie was really good and I enjoyed it."])
    assert isinstance(prediction, list) and len(prediction) == 1
    assert type(prediction[0]) is int and prediction[0] in (0, 1)
    assert finetuner.labels[prediction[0]] in ("negative", "positive")
