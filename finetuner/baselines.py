"""Instant baselines: what a linear model gets in seconds, to judge a fine-tuned model against.

``tfidf_logreg``: TF-IDF of word 1-2-grams + logistic regression. ``embedding_logreg``: sentence embeddings
(:func:`finetuner.embeddings.embed`, the bundled all-MiniLM-L6-v2 by default) + logistic regression.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Dict, Sequence

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline

from .data import LabelMap, validate_texts_and_labels
from .embeddings import embed
from .metrics import summary_metrics
from .models import DEFAULT_MODEL
from .training.linear_head import embedding_classifier

BASELINE_NAMES = {"tfidf_logreg": "TF-IDF + logistic regression",
                  "embedding_logreg": "Sentence embeddings + logistic regression"}


def tfidf_classifier(seed: int = 0) -> Pipeline:
    """TF-IDF of word 1-2-grams (sublinear term counts) + logistic regression; fits raw texts."""
    return make_pipeline(TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True),
                         LogisticRegression(C=3.0, max_iter=1000, random_state=seed))


def score_baselines(train_texts: Sequence[str], train_labels: Sequence[Any], eval_texts: Sequence[str],
                    eval_labels: Sequence[Any], *, model_name: str = DEFAULT_MODEL,
                    seed: int = 0) -> Dict[str, Dict[str, float]]:
    """Train each baseline on the training rows and score it on the evaluation rows.

    Returns ``{name: summary_metrics + {"seconds": wall time of fit and scoring}}``; the embedding baseline's
    time includes embedding the texts. An evaluation label that never occurs in training counts as an error.
    """
    train_x, train_y = validate_texts_and_labels(train_texts, train_labels, what="training data")
    eval_x, eval_y = validate_texts_and_labels(eval_texts, eval_labels, min_classes=1, what="evaluation data")
    label_map = LabelMap.from_labels(list(train_y) + list(eval_y))
    y_train, y_eval = np.asarray(label_map.encode(train_y)), label_map.encode(eval_y)

    def tfidf() -> np.ndarray:
        return tfidf_classifier(seed).fit(train_x, y_train).predict(eval_x)

    def embeddings() -> np.ndarray:
        model = embedding_classifier(seed).fit(embed(train_x, model_name), y_train)
        return model.predict(embed(eval_x, model_name))

    baselines: Dict[str, Callable[[], np.ndarray]] = {"tfidf_logreg": tfidf, "embedding_logreg": embeddings}
    scores = {}
    for name, fit_and_predict in baselines.items():
        started = time.perf_counter()
        predicted = fit_and_predict()
        scores[name] = {**summary_metrics(y_eval, predicted, len(label_map)),
                        "seconds": round(time.perf_counter() - started, 3)}
    return scores


def format_baselines(scores: Dict[str, Dict[str, float]]) -> str:
    """One line: each baseline's accuracy, macro F1 and time."""
    return "; ".join(f"{BASELINE_NAMES.get(name, name)}: accuracy {values['accuracy']:.3f}, macro F1 "
                     f"{values['f1_macro']:.3f} ({values['seconds']:.1f} s)" for name, values in scores.items())
