"""Confidence calibration: temperature scaling (Guo et al., 2017), the expected calibration error and the data of a
reliability diagram.

A fine-tuned classifier is usually overconfident: its mistakes, too, come with probabilities near 1. Temperature
scaling divides the logits by one number T > 0 fitted on held-out rows (T > 1 softens, T < 1 sharpens); the
predicted class never changes, only how sure the model says it is. :func:`fold_temperature` puts T into the
model's output layer, so that the model itself gives the calibrated logits (saved, exported and served as any
other model).
"""

from __future__ import annotations

import math
from typing import Any, Dict, Iterator, List, Optional, Sequence

import numpy as np
import torch
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax
from torch import nn

# The range searched for T: wide enough for any real model (T = 20 turns a 0.99999 into a 0.6), narrow enough
# that a fit on a handful of rows cannot run off to 0 or infinity.
MIN_TEMPERATURE, MAX_TEMPERATURE = 0.05, 20.0
ECE_BINS = 15


def fit_temperature(logits: np.ndarray, label_ids: Sequence[int]) -> float:
    """The temperature T in [0.05, 20] that minimises the mean negative log-likelihood of ``softmax(logits / T)``
    on these rows (``logits``: rows × classes; ``label_ids``: each row's true class index).

    The likelihood is computed with a stable log-softmax, so columns of -1e4 (classes never seen in training)
    are fine. Returns 1.0 (leave the model as it is) where the rows cannot tell a temperature: fewer than 2 rows,
    fewer than 2 distinct true classes (nothing says how confidence should be spread between classes), or no
    misclassified row (the likelihood then keeps rising as T shrinks: the "optimum" would be the lower bound,
    an artefact that would make the model more overconfident, not less)."""
    logits, labels = _checked(logits, label_ids)
    if len(labels) < 2 or len(np.unique(labels)) < 2 or np.all(logits.argmax(axis=1) == labels):
        return 1.0
    rows = np.arange(len(labels))

    def nll(log_t: float) -> float:
        return float(-log_softmax(logits / math.exp(log_t), axis=1)[rows, labels].mean())

    found = minimize_scalar(nll, bounds=(math.log(MIN_TEMPERATURE), math.log(MAX_TEMPERATURE)), method="bounded",
                            options={"xatol": 1e-5})
    # The likelihood is unimodal in log T (convex in 1/T); the check guards against a solver that stops early.
    return float(math.exp(found.x)) if found.fun <= nll(0.0) else 1.0


def negative_log_likelihood(logits: np.ndarray, label_ids: Sequence[int], temperature: float = 1.0) -> float:
    """The mean negative log-likelihood of the true classes under ``softmax(logits / temperature)``."""
    logits, labels = _checked(logits, label_ids)
    return float(-log_softmax(logits / temperature, axis=1)[np.arange(len(labels)), labels].mean())


def expected_calibration_error(probabilities: np.ndarray, label_ids: Sequence[int], bins: int = ECE_BINS) -> float:
    """Top-label ECE: rows grouped by confidence (their largest probability) into ``bins`` equal-width bins;
    the sum over bins of (rows in the bin / all rows) × |accuracy − mean confidence| of the bin. 0 is perfect;
    lower is better. 0.0 for no rows."""
    n = len(_checked(probabilities, label_ids)[1])
    return float(sum(b["count"] / n * abs(b["accuracy"] - b["confidence"])
                     for b in reliability(probabilities, label_ids, bins))) if n else 0.0


def reliability(probabilities: np.ndarray, label_ids: Sequence[int], bins: int = ECE_BINS) -> List[Dict[str, Any]]:
    """The data of a reliability diagram: one dict per non-empty confidence bin (equal width, (low, high], the
    first bin including 0), lowest first, with ``low``, ``high``, ``confidence`` (mean confidence of its rows),
    ``accuracy`` (share of its rows predicted right) and ``count``. A calibrated model has accuracy ≈ confidence
    in every bin."""
    if bins < 1:
        raise ValueError(f"bins must be at least 1; got {bins}.")
    probabilities, labels = _checked(probabilities, label_ids)
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == labels
    edges = np.linspace(0.0, 1.0, bins + 1)
    index = np.digitize(confidence, edges[1:-1], right=True)  # bin i holds edges[i] < confidence <= edges[i+1]
    result = []
    for i in range(bins):
        member = index == i
        if member.any():
            result.append({"low": float(edges[i]), "high": float(edges[i + 1]),
                           "confidence": float(confidence[member].mean()), "accuracy": float(correct[member].mean()),
                           "count": int(member.sum())})
    return result


def fold_temperature(model: Any, temperature: float) -> bool:
    """Divide the weight and bias of ``model``'s output layer (:func:`output_layer`) by ``temperature`` in place,
    so that the model's logits become the old logits / T. True when done (T = 1: nothing to do, always True);
    False, with nothing changed, when the model has no output layer this can scale."""
    if not (isinstance(temperature, (int, float)) and math.isfinite(temperature) and temperature > 0):
        raise ValueError(f"The temperature must be a positive number; got {temperature!r}.")
    if temperature == 1:
        return True
    layer = output_layer(model)
    if layer is None:
        return False
    with torch.no_grad():
        layer.weight.div_(temperature)
        if layer.bias is not None:
            layer.bias.div_(temperature)
    return True


def fold_scale(model: Any, scale: float, shift: float) -> bool:
    """Make ``model``'s outputs ``scale × output + shift`` by changing its output layer (:func:`output_layer`) in
    place (a regression model trained on a standardised target, put back in the target's units). True when done;
    False, with nothing changed, when the model has no output layer this can change."""
    layer = output_layer(model)
    if layer is None or layer.bias is None:
        return False
    with torch.no_grad():
        layer.weight.mul_(scale)
        layer.bias.mul_(scale).add_(shift)
    return True


def output_layer(model: Any) -> Optional[nn.Linear]:
    """The linear layer that produces ``model``'s class logits: the last ``nn.Linear`` (in the order the modules
    were registered) whose ``out_features`` is ``model.config.num_labels``. That is ``head`` of a
    :class:`~finetuner.training.sentence_classifier.SentenceClassifier`, ``classifier`` of BERT-style classifiers,
    ``classifier.out_proj`` of RoBERTa-style ones and ``score`` of decoders. In a peft model a head kept whole in
    ``modules_to_save`` is the copy its forward uses (the active adapter's, or the original while adapters are
    disabled). None when there is no such layer, or when it is itself adapted (a LoRA layer on the head: its
    output is not the linear layer's alone)."""
    num_labels = getattr(getattr(model, "config", None), "num_labels", None)
    if not isinstance(model, nn.Module) or not isinstance(num_labels, int):
        return None
    found: Optional[nn.Module] = None
    for module in _modules_used(model):
        if _is_tuner_layer(module):
            base = module.get_base_layer()
            if isinstance(base, nn.Linear) and base.out_features == num_labels:
                found = module
        elif isinstance(module, nn.Linear) and module.out_features == num_labels:
            found = module
    return found if isinstance(found, nn.Linear) else None


def _modules_used(module: nn.Module) -> Iterator[nn.Module]:
    """``module`` and its submodules in registration order; of a peft ``ModulesToSaveWrapper`` only the copy its
    forward uses, and a peft tuner layer (LoRA) as one unit."""
    yield module
    if _is_tuner_layer(module):
        return
    if _is_modules_to_save(module):
        yield from _modules_used(_used_copy(module))
        return
    for child in module.children():
        yield from _modules_used(child)


def _is_modules_to_save(module: nn.Module) -> bool:
    return hasattr(module, "original_module") and isinstance(getattr(module, "modules_to_save", None), nn.ModuleDict)


def _used_copy(wrapper: nn.Module) -> nn.Module:
    """The module a peft ``ModulesToSaveWrapper`` runs: the first active adapter's copy, or the original module
    while adapters are disabled (or the active adapter has no copy here)."""
    active = list(getattr(wrapper, "active_adapters", []) or [])
    if getattr(wrapper, "disable_adapters", False) or not active or active[0] not in wrapper.modules_to_save:
        return wrapper.original_module
    return wrapper.modules_to_save[active[0]]


def _is_tuner_layer(module: nn.Module) -> bool:
    """A peft tuner layer (a LoRA-adapted linear layer, say): it wraps a ``base_layer`` and adds to its output."""
    return not isinstance(module, nn.Linear) and isinstance(getattr(module, "base_layer", None), nn.Module) \
        and callable(getattr(module, "get_base_layer", None))


def _checked(values: np.ndarray, label_ids: Sequence[int]):
    """``values`` as a float64 rows × classes array and the labels as ints, checked against each other."""
    values = np.asarray(values, dtype=np.float64)
    labels = np.asarray(label_ids, dtype=np.int64).reshape(-1)
    if values.ndim != 2 or values.shape[0] != len(labels):
        raise ValueError(f"Expected one row of scores per label: got shape {values.shape} for {len(labels)} labels.")
    if np.isnan(values).any():
        raise ValueError("The scores contain NaN.")
    if len(labels) and (labels.min() < 0 or labels.max() >= values.shape[1]):
        raise ValueError(f"Label ids must be in 0..{values.shape[1] - 1}.")
    return values, labels
