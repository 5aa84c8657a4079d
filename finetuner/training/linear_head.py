"""The logistic regression that serves as a classifier head on unit-length sentence embeddings: the embedding
baseline's classifier and the head of the embedding methods (so ``method="head"`` = that baseline + class names)."""

from __future__ import annotations

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
