"""The logistic regression that serves as a classifier head on unit-length sentence embeddings: the embedding
baseline's classifier and the head of the embedding methods (so ``method="head"`` = that baseline + class names)."""

from __future__ import annotations

from typing import Callable, Optional

import numpy as np
from sklearn.linear_model import LogisticRegression


def embedding_classifier(seed: int = 0) -> LogisticRegression:
    """Logistic regression for unit-length sentence embeddings (also the head of ``method="head"``).

    C=10: weaker regularisation than scikit-learn's default suits unit-length features
    (measured: bench/results/method_choice.md#regularisation-of-the-head)."""
    return LogisticRegression(C=10.0, max_iter=2000, random_state=seed)


def full_head(classifier: LogisticRegression, num_labels: int, dim: int):
    """Weights for every class in order: binary regression gives one row (class 1 vs 0); classes never seen
    in training get weights that never win."""
    weight = np.zeros((num_labels, dim), dtype=np.float32)
    bias = np.full(num_labels, -1e4, dtype=np.float32)
    seen = classifier.classes_.astype(int)
    if len(seen) == 2:
        weight[seen[0]], bias[seen[0]] = -classifier.coef_[0] / 2, -classifier.intercept_[0] / 2
        weight[seen[1]], bias[seen[1]] = classifier.coef_[0] / 2, classifier.intercept_[0] / 2
    else:
        weight[seen], bias[seen] = classifier.coef_, classifier.intercept_
    return weight, bias


# A label that is always absent (or always present) in the training rows gets this fixed logit instead of a fit.
_CONSTANT_LOGIT = 10.0


def multi_label_head(features: np.ndarray, targets: np.ndarray, seed: int = 0,
                     sample_weight: np.ndarray = None, classifier: Optional[Callable[[], LogisticRegression]] = None):
    """One-vs-rest heads for several labels per text: a logistic regression per label (``classifier()``; default
    the embedding classifier's settings) on ``targets`` (rows × labels, 0/1); returns (weight, bias), one row per
    label. ``features`` may be sparse (TF-IDF)."""
    targets = np.asarray(targets) > 0.5
    weight = np.zeros((targets.shape[1], features.shape[1]), dtype=np.float32)
    bias = np.zeros(targets.shape[1], dtype=np.float32)
    for label in range(targets.shape[1]):
        column = targets[:, label]
        if column.all() or not column.any():
            bias[label] = _CONSTANT_LOGIT if column.all() else -_CONSTANT_LOGIT
            continue
        fitted = (classifier or (lambda: embedding_classifier(seed)))().fit(features, column.astype(int),
                                                                              sample_weight=sample_weight)
        weight[label], bias[label] = fitted.coef_[0], fitted.intercept_[0]
    return weight, bias


def regression_head(features: np.ndarray, targets: np.ndarray, sample_weight: np.ndarray = None):
    """A ridge regression of ``targets`` on the embeddings (or other features, TF-IDF too), its penalty chosen by
    efficient leave-one-out cross-validation; returns (weight, bias) of one output."""
    from sklearn.linear_model import RidgeCV

    fitted = RidgeCV(alphas=np.logspace(-3, 3, 13)).fit(features, np.asarray(targets, dtype=float),
                                                        sample_weight=sample_weight)
    return fitted.coef_.reshape(1, -1).astype(np.float32), np.asarray([fitted.intercept_], dtype=np.float32)
