"""Rows whose label looks wrong: out-of-fold predictions of quick models, ranked with cleanlab.

Three models of the texts are cross-validated with the same stratified k folds, so each row is predicted by
models that never saw it: logistic regression on sentence embeddings (:func:`finetuner.embeddings.embed`),
logistic regression on TF-IDF word 1-2-grams (as in :mod:`finetuner.baselines`) and the 25 nearest
neighbours in embedding space (cosine, distance-weighted). Their class probabilities are averaged. cleanlab's
confident learning then picks the rows whose given label disagrees with those predictions, ranked by
self-confidence (the probability of the given label), most suspicious first. The ``score`` of a row is
``1 - p(given label)``: 0 when the models fully agree with the label, 1 when they give it no chance.

Measured on AG News (8,000 rows, 5% of labels flipped, seeds 0 and 1), precision@k (k = flipped rows): embeddings
alone 0.69 / 0.69, TF-IDF alone 0.63 / 0.64, neighbours alone 0.68 / 0.75, embeddings + TF-IDF 0.70 / 0.71, all
three 0.73 / 0.76 (``bench/label_issues.py --components``).

Several labels per text (cells like ``joy;love``): the same three models, one-vs-rest (a logistic regression per
label; the neighbours' distance-weighted share of each label), on shuffled k folds; cleanlab's multi-label
confident learning (:mod:`cleanlab.multilabel_classification`) flags the rows where any label looks wrongly set or
missing. The ``score`` is ``1 -`` cleanlab's label quality of the row's whole label set, and the suggested label set
is the labels whose out-of-fold probability reaches their threshold (tuned for F1 on those probabilities).

A number per text (regression) has no label to be wrong in this sense: :func:`label_check_not_applicable` says
so, and :func:`find_label_issues` refuses such a column with that message.
"""

from __future__ import annotations

import math
import warnings
from collections import Counter
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import pandas as pd
from cleanlab.filter import find_label_issues as cleanlab_issues
from cleanlab.multilabel_classification.filter import find_label_issues as cleanlab_multilabel_issues
from cleanlab.multilabel_classification.rank import get_label_quality_scores as multilabel_quality
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import KFold, StratifiedKFold, cross_val_predict
from sklearn.multiclass import OneVsRestClassifier
from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor

from .baselines import tfidf_classifier
from .data import LabelMap, detect_columns, normalize_labels, validate_texts
from .embeddings import embed
from .errors import DataError
from .metrics import tune_thresholds
from .models import DEFAULT_MODEL
from .tasks import TaskChoice, detect_task, join_labels

ISSUE_COLUMNS = ("row", "text", "given_label", "suggested_label", "score")
NEIGHBOURS = 25
_MAX_CLASSES_LISTED = 5


def find_label_issues(table: pd.DataFrame, text_column: Optional[str] = None, label_column: Optional[str] = None,
                      *, folds: int = 5, seed: int = 0, model_name: str = DEFAULT_MODEL,
                      embeddings: Optional[np.ndarray] = None, task: str = "auto") -> pd.DataFrame:
    """The rows of ``table`` that are probably mislabelled, most suspicious first.

    Columns: ``row`` (0-based position in ``table``), ``text``, ``given_label``, ``suggested_label`` (the class
    the cross-validated models prefer) and ``score`` in [0, 1] (``1 - p(given label)``; higher is more
    suspicious). The columns are detected when not given. ``folds`` is lowered to the size of the smallest
    class; a class with a single example cannot be checked and is a :class:`DataError`. ``embeddings`` (one row
    per table row, from :func:`~finetuner.embeddings.embed`) saves embedding the texts again.

    ``task`` (:data:`finetuner.tasks.TASKS`; "auto": read from the label cells): several labels per text are
    checked as a whole label set per row (``given_label`` and ``suggested_label`` are label sets joined by the
    column's separator, e.g. ``joy;love``); a number per text is a :class:`DataError`
    (:func:`label_check_not_applicable`).
    """
    if folds < 2:
        raise DataError(f"folds must be at least 2 (got {folds}): each row is checked by a model trained on the "
                        "other folds.")
    text_col, label_col = detect_columns(table, text_column, label_column)
    texts = validate_texts(table[text_col].tolist(), what=f"column {text_col!r}")
    cells = table[label_col].tolist()
    choice = detect_task(cells, task)
    refused = label_check_not_applicable(choice, label_col)
    if refused:
        raise DataError(refused)
    if embeddings is not None and len(embeddings) != len(texts):
        raise ValueError(f"{len(embeddings)} embeddings for {len(texts)} rows")
    if choice.task == "multi_label":
        return _multi_label_issues(texts, cells, choice, label_col, folds=folds, seed=seed, model_name=model_name,
                                   embeddings=embeddings)
    given = normalize_labels(cells)
    label_map = LabelMap.from_labels(given)
    check_classes(given, label_col)
    y = np.asarray(label_map.encode(given))
    smallest = min(Counter(y.tolist()).values())
    if embeddings is None:
        embeddings = embed(texts, model_name)
    by_model = out_of_fold_probabilities(texts, embeddings, y, folds=min(folds, smallest), seed=seed)
    pred_probs = np.mean(list(by_model.values()), axis=0)
    ranked = cleanlab_issues(y, pred_probs, return_indices_ranked_by="self_confidence", n_jobs=1)
    ranked = np.asarray(ranked, dtype=int)
    return pd.DataFrame({
        "row": ranked,
        "text": [texts[i] for i in ranked],
        "given_label": pd.Series([given[i] for i in ranked], dtype=object),
        "suggested_label": pd.Series(label_map.decode(pred_probs[ranked].argmax(axis=1)), dtype=object),
        "score": (1.0 - pred_probs[ranked, y[ranked]]).clip(0.0, 1.0).round(6),
    }, columns=list(ISSUE_COLUMNS))


def out_of_fold_probabilities(texts: Sequence[str], embeddings: np.ndarray, y: np.ndarray, *, folds: int = 5,
                              seed: int = 0) -> Dict[str, np.ndarray]:
    """Each model's class probabilities of every row, from the model trained on the other stratified folds (the
    same folds for all), by name: ``embedding_logreg``, ``tfidf_logreg``, ``neighbours``."""
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    fewest_rows = len(y) - math.ceil(len(y) / folds)  # what a model trains on when the held-out fold is largest
    neighbours = KNeighborsClassifier(min(NEIGHBOURS, fewest_rows), weights="distance", metric="cosine")
    # scikit-learn's default C=1, not the baseline's C=10: its softer probabilities rank flipped labels better
    # (precision@k 0.69 against 0.66 alone on the AG News benchmark).
    models = {"embedding_logreg": (LogisticRegression(max_iter=1000, random_state=seed), embeddings),
              "tfidf_logreg": (tfidf_classifier(seed), list(texts)),
              "neighbours": (neighbours, embeddings)}
    return {name: cross_val_predict(model, features, y, cv=splitter, method="predict_proba")
            for name, (model, features) in models.items()}


def label_check_not_applicable(task: TaskChoice, label_col: str) -> Optional[str]:
    """Why the labels of column ``label_col`` cannot be checked for this task (a message saying so), or None when
    they can: one label or several labels per text can be, a number per text cannot."""
    if task.task == "regression":
        return (f"Checking labels applies to class labels (one or several per text); column {label_col!r} holds "
                "numbers (a regression target), which this check does not judge. Train a model and look at the "
                "rows whose predicted value is furthest from the given one (the Evaluate tab's scatter plot) "
                "instead.")
    return None


def _multi_label_issues(texts: List[str], cells: Sequence[Any], choice: TaskChoice, label_col: str, *, folds: int,
                        seed: int, model_name: str, embeddings: Optional[np.ndarray]) -> pd.DataFrame:
    """:func:`find_label_issues` for several labels per text: out-of-fold one-vs-rest probabilities, cleanlab's
    multi-label filter."""
    separator = choice.separator or ";"
    label_map = LabelMap.from_labels(cells, task="multi_label", separator=separator)
    y = np.asarray(label_map.encode(cells), dtype=int)
    check_label_sets(y, label_map.names, label_col)
    if embeddings is None:
        embeddings = embed(texts, model_name)
    by_model = out_of_fold_label_probabilities(texts, embeddings, y, folds=min(folds, len(texts)), seed=seed)
    pred_probs = np.clip(np.mean(list(by_model.values()), axis=0), 0.0, 1.0)
    labels = [np.flatnonzero(row).tolist() for row in y]
    ranked = np.asarray(cleanlab_multilabel_issues(labels, pred_probs, return_indices_ranked_by="self_confidence",
                                                   n_jobs=1), dtype=int)
    quality = multilabel_quality(labels, pred_probs)
    limits = np.asarray(tune_thresholds(y, pred_probs))
    names = label_map.names

    def joined(row: np.ndarray) -> str:
        return join_labels([names[j] for j in np.flatnonzero(row)], separator)

    return pd.DataFrame({
        "row": ranked,
        "text": [texts[i] for i in ranked],
        "given_label": pd.Series([joined(y[i]) for i in ranked], dtype=object),
        "suggested_label": pd.Series([joined(pred_probs[i] >= limits) for i in ranked], dtype=object),
        "score": (1.0 - np.asarray(quality, dtype=float)[ranked]).clip(0.0, 1.0).round(6),
    }, columns=list(ISSUE_COLUMNS))


def out_of_fold_label_probabilities(texts: Sequence[str], embeddings: np.ndarray, y: np.ndarray, *,
                                    folds: int = 5, seed: int = 0) -> Dict[str, np.ndarray]:
    """Several labels per text (``y``: rows × labels of 0/1): each model's probability of every label of every
    row, from the model trained on the other shuffled folds (the same folds for all), by name:
    ``embedding_logreg`` and ``tfidf_logreg`` (a logistic regression per label) and ``neighbours`` (the
    distance-weighted share of the nearest neighbours that have the label)."""
    splitter = KFold(n_splits=folds, shuffle=True, random_state=seed)
    fewest_rows = len(y) - math.ceil(len(y) / folds)
    tfidf = tfidf_classifier(seed)
    tfidf.steps[-1] = (tfidf.steps[-1][0], OneVsRestClassifier(tfidf.steps[-1][1]))
    models = {"embedding_logreg": (OneVsRestClassifier(LogisticRegression(max_iter=1000, random_state=seed)),
                                   embeddings),
              "tfidf_logreg": (tfidf, np.asarray(list(texts), dtype=object)),
              "neighbours": (KNeighborsRegressor(min(NEIGHBOURS, fewest_rows), weights="distance", metric="cosine"),
                             embeddings)}
    out = {name: np.zeros(y.shape, dtype=float) for name in models}
    for train, held in splitter.split(y):
        for name, (model, features) in models.items():
            with warnings.catch_warnings():  # a label on every (or no) row of a fold: a constant prediction
                warnings.simplefilter("ignore", UserWarning)
                fitted = model.fit(features[train], y[train])
            out[name][held] = (fitted.predict(features[held]) if name == "neighbours"
                               else fitted.predict_proba(features[held]))
    return out


def check_label_sets(y: np.ndarray, names: Sequence[str], label_col: str) -> None:
    """Several labels per text: at least two labels, each on at least two rows and missing from at least two (a
    label on every row, or on one, cannot be checked against the other rows)."""
    if len(names) < 2:
        raise DataError(f"Column {label_col!r} has a single label ({', '.join(map(repr, names)) or 'none'}); "
                        "checking labels needs at least two. Add rows with other labels.")
    on = y.sum(axis=0)
    rare = [name for name, count in zip(names, on) if count < 2]
    everywhere = [name for name, count in zip(names, on) if count > len(y) - 2]
    for group, how, fix in ((rare, "on a single row", "Add a second example of each, or remove the label"),
                            (everywhere, "on (nearly) every row", "Remove it from the cells, or add rows without "
                                                                 "it")):
        if group:
            shown = ", ".join(repr(name) for name in group[:_MAX_CLASSES_LISTED])
            more = f" and {len(group) - _MAX_CLASSES_LISTED} more" if len(group) > _MAX_CLASSES_LISTED else ""
            raise DataError(f"{len(group)} label(s) of column {label_col!r} are {how} ({shown}{more}): they cannot "
                            f"be checked against the other rows. {fix}.")


def summarize_label_issues(issues: pd.DataFrame, n_rows: int) -> str:
    """One markdown line: how many of ``n_rows`` rows look mislabelled, and the most suspicious one."""
    if issues.empty:
        return f"No likely label errors among {n_rows} rows."
    top = issues.iloc[0]
    return (f"**{len(issues)}** of {n_rows} rows ({len(issues) / max(n_rows, 1):.1%}) may be mislabelled; "
            f"the most suspicious is row {int(top['row'])}, labelled `{top['given_label']}` but more like "
            f"`{top['suggested_label']}`.")


def check_classes(labels: Sequence[Any], label_col: str) -> None:
    """At least two classes, each with two examples: otherwise no row can be predicted from the others."""
    counts = Counter(str(label) for label in labels)
    if len(counts) < 2:
        raise DataError(f"Column {label_col!r} has a single class ({next(iter(counts))!r}); checking labels "
                        "needs at least two. Add examples of the other classes.")
    singles = sorted(name for name, count in counts.items() if count < 2)
    if singles:
        shown = ", ".join(repr(name) for name in singles[:_MAX_CLASSES_LISTED])
        more = f" and {len(singles) - _MAX_CLASSES_LISTED} more" if len(singles) > _MAX_CLASSES_LISTED else ""
        raise DataError(f"{len(singles)} class(es) of column {label_col!r} have a single example ({shown}{more}): "
                        "its label cannot be checked against other rows. Add a second example of each, or "
                        "remove those rows.")
