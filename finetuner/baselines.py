"""Instant baselines: what a linear model gets in seconds, to judge a fine-tuned model against.

``tfidf_logreg``: TF-IDF of word 1-2-grams + logistic regression. ``embedding_logreg``: sentence embeddings
(:func:`finetuner.embeddings.embed`, the bundled all-MiniLM-L6-v2 by default) + logistic regression.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline

from .data import LabelMap, validate_texts_and_labels
from .embeddings import embed
from .metrics import multi_label_report, regression_report, sigmoid, summary_metrics, tune_thresholds
from .tasks import TaskChoice, detect_task
from .training.targets import hold_out_for_thresholds
from .models import DEFAULT_MODEL
from .training.linear_head import embedding_classifier, multi_label_head, regression_head

BASELINE_NAMES = {"tfidf_logreg": "TF-IDF + logistic regression",
                  "embedding_logreg": "Sentence embeddings + logistic regression",
                  "tfidf_ovr": "TF-IDF + one-vs-rest logistic regression (tuned thresholds)",
                  "embedding_ovr": "Sentence embeddings + one-vs-rest logistic regression (tuned thresholds)",
                  "tfidf_ridge": "TF-IDF + ridge regression",
                  "embedding_ridge": "Sentence embeddings + ridge regression"}


def tfidf_classifier(seed: int = 0) -> Pipeline:
    """TF-IDF of word 1-2-grams (sublinear term counts) + logistic regression; fits raw texts."""
    return make_pipeline(TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True),
                         LogisticRegression(C=3.0, max_iter=1000, random_state=seed))


def score_baselines(train_texts: Sequence[str], train_labels: Sequence[Any], eval_texts: Sequence[str],
                    eval_labels: Sequence[Any], *, model_name: str = DEFAULT_MODEL,
                    seed: int = 0, task: str = "auto",
                    predictions: Optional[Dict[str, List[str]]] = None) -> Dict[str, Dict[str, float]]:
    """Train each baseline on the training rows and score it on the evaluation rows.

    Returns ``{name: summary_metrics + {"seconds": wall time of fit and scoring}}``; the embedding baseline's
    time includes embedding the texts. An evaluation label that never occurs in training counts as an error.
    ``task`` (:data:`finetuner.tasks.TASKS`; "auto": read from the labels): several labels per text are scored by
    one-vs-rest logistic regressions with thresholds tuned on a tenth of the training rows
    (:func:`task_baselines`), numbers by ridge regressions. ``predictions``, when given, receives each
    single-label baseline's predicted class per evaluation row (for :func:`paired_counts` once the model is scored).
    """
    choice = detect_task(train_labels, task)
    if choice.task != "single_label":
        return task_baselines(train_texts, train_labels, eval_texts, eval_labels, choice, model_name=model_name,
                              seed=seed)
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
        if predictions is not None:
            predictions[name] = [str(v) for v in label_map.decode(predicted.tolist())]
    return scores


# A gap between the model and a baseline on the same rows is called beyond noise below this two-sided p-value of the
# exact sign test on the rows where the two disagree (McNemar's exact test).
NOISE_P_VALUE = 0.05


def paired_counts(truth: Sequence[Any], model_predicted: Sequence[Any],
                  baseline_predicted: Sequence[Any]) -> Dict[str, float]:
    """The same evaluation rows scored by the model and by a baseline: how many rows only the model gets right,
    how many only the baseline, and the two-sided p-value of McNemar's exact test on those rows (how likely a gap
    this large is when the two are equally good) — what decides whether an accuracy gap is beyond noise."""
    from scipy.stats import binomtest

    truth = [str(v) for v in truth]
    model_right = np.asarray([str(p) == t for p, t in zip(model_predicted, truth)])
    baseline_right = np.asarray([str(p) == t for p, t in zip(baseline_predicted, truth)])
    only_model, only_baseline = int((model_right & ~baseline_right).sum()), int((~model_right & baseline_right).sum())
    disagree = only_model + only_baseline
    p_value = binomtest(only_model, disagree, 0.5).pvalue if disagree else 1.0
    return {"only_model_right": float(only_model), "only_baseline_right": float(only_baseline),
            "paired_p_value": float(p_value)}


def task_baselines(train_texts: Sequence[str], train_labels: Sequence[Any], eval_texts: Sequence[str],
                   eval_labels: Sequence[Any], choice: TaskChoice, *, model_name: str = DEFAULT_MODEL,
                   seed: int = 0) -> Dict[str, Dict[str, float]]:
    """The baselines of several labels per text (TF-IDF / embeddings + a logistic regression per label, each
    label's threshold tuned on held-out training rows as training tunes them) and of a number per text (TF-IDF /
    embeddings + ridge regression): ``{name: metrics + {"seconds": …}}``."""
    kinds = {"task": choice.task, "separator": choice.separator}
    train_x, train_y = validate_texts_and_labels(train_texts, train_labels, what="training data", **kinds)
    eval_x, eval_y = validate_texts_and_labels(eval_texts, eval_labels, min_classes=0, what="evaluation data",
                                               **kinds)
    label_map = LabelMap.from_labels(list(train_y) + list(eval_y), task=choice.task, separator=choice.separator)
    y_train, y_eval = np.asarray(label_map.encode(train_y)), np.asarray(label_map.encode(eval_y))

    def tfidf_features():
        vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True).fit(train_x)
        return vectorizer.transform(train_x), vectorizer.transform(eval_x)

    def embedding_features():
        return embed(train_x, model_name), embed(eval_x, model_name)

    def multi_label(features, c: float):
        train_f, eval_f = features()
        fit_rows, _, held = hold_out_for_thresholds(list(range(len(train_x))), list(y_train), seed, "multi_label")
        weight, bias = multi_label_head(train_f[fit_rows], y_train[fit_rows], classifier=lambda: LogisticRegression(
            C=c, max_iter=1000, random_state=seed))
        probabilities = lambda rows: sigmoid(rows @ weight.T.astype(np.float64) + bias)  # noqa: E731
        thresholds = tune_thresholds(np.asarray(held[1]), probabilities(train_f[held[0]])) if held else None
        return multi_label_report(y_eval, probabilities(eval_f), label_map.names, thresholds)["summary"]

    def regression(features):
        train_f, eval_f = features()
        weight, bias = regression_head(train_f, y_train)
        return regression_report(y_eval, (eval_f @ weight.T.astype(np.float64)).ravel() + bias[0])["summary"]

    baselines: Dict[str, Callable[[], Dict[str, float]]] = (
        {"tfidf_ovr": lambda: multi_label(tfidf_features, 3.0),
         "embedding_ovr": lambda: multi_label(embedding_features, 10.0)}
        if choice.task == "multi_label" else
        {"tfidf_ridge": lambda: regression(tfidf_features), "embedding_ridge": lambda: regression(embedding_features)})
    scores = {}
    for name, fit_and_score in baselines.items():
        started = time.perf_counter()
        scores[name] = {**fit_and_score(), "seconds": round(time.perf_counter() - started, 3)}
    return scores


def format_baselines(scores: Dict[str, Dict[str, float]]) -> str:
    """One line: each baseline's accuracy, macro F1 and time."""
    def scores_of(values: Dict[str, float]) -> str:
        if "pearson" in values:
            return f"Pearson r {values['pearson']:.3f}, MAE {values['mae']:.3f}"
        if "accuracy" not in values:
            return f"macro F1 {values['f1_macro']:.3f}, micro F1 {values['f1_micro']:.3f}"
        return f"accuracy {values['accuracy']:.3f}, macro F1 {values['f1_macro']:.3f}"
    return "; ".join(f"{BASELINE_NAMES.get(name, name)}: {scores_of(values)} ({values['seconds']:.1f} s)"
                     for name, values in scores.items())
