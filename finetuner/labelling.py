"""Label less: a suggested label with a confidence for every unlabelled row, and which rows to label next.

Suggestions need only the texts and the class names. Three steps, all on sentence embeddings
(:func:`finetuner.embeddings.embed`, each text embedded once):

1. **Class vectors from the names**: each class name (:func:`~finetuner.training.sentence_classifier.spoken_name`)
   in the :data:`NAME_TEMPLATES` sentences, their embeddings averaged.
2. **Refined on the table's own texts** (a k-means started from the names): each class vector
   becomes the name vector plus the mean of the rows labelled by a person as that class (weighing
   :data:`PERSON_WEIGHT` each) and of the more confident half of the unlabelled rows nearest it;
   :data:`REFINE_ROUNDS` times.
3. **A quick model**: logistic regression (the embedding head's, :func:`~finetuner.training.linear_head.
   embedding_classifier`) on the person-labelled rows (weight :data:`PERSON_WEIGHT`), the refined step's confident
   unlabelled rows as provisional labels (weight 1) and the class-name vectors (weight 1, so every class is known
   before any of its rows is labelled). Its probabilities are the confidences.

With no labels at all this is zero-shot from the names; each label given refits the model (a second or two). Rows
labelled by a person keep their label (confidence 1). :func:`next_to_label` picks the unlabelled rows to label next:
rows the model is unsure of, spread over the table by k-means, or at the very start of a task with two or three
classes, rows that cover the table (:func:`label_queue`).

Measured with the bundled MiniLM on the shared test files (bench/results/labelling.md): zero-shot accuracy on AG
News 0.64 with cosine similarity to the bare names, 0.68 with :data:`NAME_TEMPLATES`, 0.81 refined and 0.83 with
the quick model; SST-2 0.64 / 0.69 / 0.74 / 0.74; CLINC150 0.68 / 0.68 / 0.76 / 0.77.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import Any, List, Optional, Sequence, Tuple

import numpy as np
import pandas as pd

from .data import normalize_label, validate_texts
from .embeddings import embed
from .errors import ConfigError, DataError
from .models import DEFAULT_MODEL
from .training.linear_head import embedding_classifier
from .training.sentence_classifier import spoken_name

# Sentences that say a class name, averaged into its vector: on AG News / SST-2 / CLINC150 test their mean beats
# each alone and the finetuner.training LABEL_TEMPLATES (bench/results/labelling.md#class-name-sentences).
NAME_TEMPLATES = ("This text is about {}.", "It is about {}.", "The topic is {}.", "{}")
# Rounds of moving each class vector towards the rows nearest it, and the share of those rows (the most
# confident) that move it and that the quick model takes as provisional labels.
REFINE_ROUNDS = 3
CONFIDENT_SHARE = 0.5
# A row labelled by a person weighs as much as this many provisionally labelled rows in the quick model.
PERSON_WEIGHT = 5.0
# label_queue leaves for last a row at least this similar (cosine) to a row already labelled.
NEAR_DUPLICATE = 0.9
# label_queue spreads k picks over this many times k of the most uncertain rows (Zhdanov, 2019: "Diverse
# mini-batch active learning", beta = 10).
POOL_FACTOR = 10
# With no label yet and at most this many classes, label_queue covers the table instead (see there).
COVER_FIRST_MAX_CLASSES = 3
# cross_validated_accuracy needs this many person-labelled rows to say anything.
MIN_CURVE_ROWS = 10

# labelled_by: a person's label, a suggestion someone accepted (in bulk: the quick model never learns from these, or
# it would learn its own guesses), or a suggestion only (no label yet).
PERSON, ACCEPTED, SUGGESTION = "person", "accepted suggestion", "suggestion"
SUGGESTION_COLUMNS = ("suggested_label", "confidence", "labelled_by")
_MAX_LISTED = 5


@dataclass
class Suggestions:
    """A label for every row: the person's where one was given, else the model's suggestion.

    ``labels``: one per row; ``confidence``: the suggestion's probability (1.0 for a person's label);
    ``probabilities``: the model's, rows × ``classes`` (for labelled rows too); ``labelled``: which rows a person
    labelled; ``reason``: how the suggestions were made, in a sentence."""

    classes: List[str]
    labels: List[str]
    confidence: np.ndarray
    probabilities: np.ndarray
    labelled: np.ndarray
    reason: str
    embeddings: np.ndarray = field(repr=False)

    def to_frame(self) -> pd.DataFrame:
        """Columns ``suggested_label``, ``confidence`` and ``labelled_by`` (``person`` / ``suggestion``)."""
        return pd.DataFrame({
            "suggested_label": pd.Series(self.labels, dtype=object),
            "confidence": np.round(self.confidence, 6),
            "labelled_by": np.where(self.labelled, PERSON, SUGGESTION),
        }, columns=list(SUGGESTION_COLUMNS))

    def expected_accuracy(self, rows: Optional[Sequence[int]] = None) -> Optional[float]:
        """How often the suggestions on ``rows`` (default: those nobody labelled) should be right by the model's own
        confidence: their mean. It runs high, by 3–13 points from 16 to 128 labels
        (bench/results/labelling.md#learning-curve); ``None`` for no rows."""
        rows = np.flatnonzero(~self.labelled) if rows is None else np.asarray(rows, dtype=int)
        return float(self.confidence[rows].mean()) if len(rows) else None

    def margins(self) -> np.ndarray:
        """Per row, the probability of the top class minus that of the runner-up (small: the model is unsure)."""
        return _margins(self.probabilities)


def resolve_classes(labels: Sequence[Any], classes: Optional[Sequence[Any]] = None) -> List[str]:
    """The class names as :func:`suggest_labels` takes them — ``classes``, or the labels present (blank cells left
    out; at least two) — with every label checked to be one of them (:class:`DataError` naming the rows if not)."""
    given = _row_labels(labels, len(labels))
    names = _classes(classes, given)
    _label_ids(given, names)
    return names


def accepted_rows(table: pd.DataFrame, label_column: Optional[str]) -> np.ndarray:
    """Per row of ``table``, whether it holds an accepted suggestion: a label in ``label_column`` that the
    ``labelled_by`` column (as the Label tab and ``finetuner suggest`` write it) marks ``accepted suggestion``. All
    False without either column; a mark on a blank label means nothing."""
    if label_column is None or label_column not in table.columns or "labelled_by" not in table.columns:
        return np.zeros(len(table), dtype=bool)
    return np.asarray([str(mark).strip() == ACCEPTED and not is_unlabelled(label)
                       for mark, label in zip(table["labelled_by"], table[label_column])], dtype=bool)


def suggest_labels(texts: Sequence[Any], classes: Optional[Sequence[Any]] = None,
                   labels: Optional[Sequence[Any]] = None, *, model_name: str = DEFAULT_MODEL,
                   embeddings: Optional[np.ndarray] = None, seed: int = 0) -> Suggestions:
    """Suggest a class for every row of ``texts`` without a label.

    Args:
        texts: the texts, one per row.
        classes: the class names; default: the labels present (at least two). Every given label must be one.
        labels: one per row, ``None``/blank for a row nobody has labelled yet; default: none labelled.
        model_name: the sentence encoder (default: the bundled MiniLM).
        embeddings: the encoder's embeddings of ``texts`` (:func:`~finetuner.embeddings.embed`) when already
            computed, e.g. to call :func:`next_to_label` on the same rows.
        seed: the quick model's random state.

    Example::

        >>> found = suggest_labels(["Goal in the last minute", "Stocks fell"], ["sports", "business"])
        >>> found.labels, found.confidence.round(2)
    """
    texts = validate_texts(list(texts), what="texts to label")
    if not texts:
        raise DataError("There are no texts to label. Give at least one text.")
    given = _row_labels(labels, len(texts))
    classes = _classes(classes, given)
    ids = _label_ids(given, classes)
    vectors = _embeddings(texts, embeddings, model_name)
    names = class_vectors(classes, model_name)
    labelled = ids >= 0
    probabilities = _quick_model(vectors, names, ids, seed)
    best = probabilities.argmax(axis=1)
    suggested = [classes[j] if i < 0 else classes[i] for i, j in zip(ids, best)]
    confidence = np.where(labelled, 1.0, probabilities.max(axis=1))
    count = int(labelled.sum())
    reason = ("Zero-shot from the class names (no row is labelled yet)." if count == 0 else
              f"From {count} labelled row(s) and the class names.")
    return Suggestions(classes, suggested, confidence, probabilities, labelled, reason, vectors)


def next_to_label(texts: Sequence[Any], classes: Optional[Sequence[Any]] = None,
                  labels: Optional[Sequence[Any]] = None, k: int = 20, *, model_name: str = DEFAULT_MODEL,
                  embeddings: Optional[np.ndarray] = None, suggestions: Optional[Suggestions] = None,
                  near_duplicate: float = NEAR_DUPLICATE, seed: int = 0,
                  eligible: Optional[np.ndarray] = None) -> List[int]:
    """The (0-based) unlabelled rows to label next, the most useful first: at most ``k`` (:func:`label_queue`).

    ``suggestions`` (from :func:`suggest_labels` on the same rows and labels) saves refitting; otherwise the other
    arguments are those of :func:`suggest_labels`. ``eligible``: a mask of the rows that may be picked (default:
    every unlabelled row), e.g. to leave out rows that already hold an accepted suggestion."""
    if suggestions is None:
        suggestions = suggest_labels(texts, classes, labels, model_name=model_name, embeddings=embeddings,
                                     seed=seed)
    elif len(suggestions.labels) != len(texts):
        raise DataError(f"The suggestions are for {len(suggestions.labels)} rows but there are {len(texts)} texts; "
                        "make them with suggest_labels on the same texts.")
    return label_queue(suggestions.probabilities, suggestions.embeddings, suggestions.labelled, k,
                       near_duplicate=near_duplicate, seed=seed, eligible=eligible)


def cross_validated_accuracy(texts: Sequence[Any], classes: Optional[Sequence[Any]] = None,
                             labels: Optional[Sequence[Any]] = None, *, folds: int = 5,
                             model_name: str = DEFAULT_MODEL, embeddings: Optional[np.ndarray] = None,
                             seed: int = 0) -> Optional[float]:
    """How often the suggestions are right on rows a person labelled, each scored by a model that did not see it.

    The person-labelled rows are split into ``folds`` (at most one per row, in a shuffled order set by ``seed``);
    each fold's labels are hidden in turn, the suggestions refitted on the rest (and the class names and the
    unlabelled rows, as in :func:`suggest_labels`) and compared with them. ``None`` below :data:`MIN_CURVE_ROWS`
    labelled rows: too few to say. One point of a learning curve (accuracy against the number of labels)."""
    texts = validate_texts(list(texts), what="texts to label")
    given = _row_labels(labels, len(texts))
    classes = _classes(classes, given)
    ids = _label_ids(given, classes)
    person = np.flatnonzero(ids >= 0)
    if len(person) < MIN_CURVE_ROWS:
        return None
    if folds < 2:
        raise ConfigError(f"folds must be at least 2 (got {folds}): each part is scored by a model fitted on "
                          "the others.")
    vectors = _embeddings(texts, embeddings, model_name)
    names = class_vectors(classes, model_name)
    shuffled = np.random.default_rng(seed).permutation(person)
    right = 0
    for part in np.array_split(shuffled, min(folds, len(person))):
        hidden = ids.copy()
        hidden[part] = -1
        right += int((_quick_model(vectors, names, hidden, seed)[part].argmax(axis=1) == ids[part]).sum())
    return right / len(person)


def label_queue(probabilities: np.ndarray, embeddings: np.ndarray, labelled: np.ndarray, k: int, *,
                near_duplicate: float = NEAR_DUPLICATE, pool_factor: int = POOL_FACTOR, seed: int = 0,
                eligible: Optional[np.ndarray] = None) -> List[int]:
    """Up to ``k`` unlabelled rows to label next, spread over the table, the most useful first.

    A second copy of a text waits until the distinct texts are taken, and rows at least ``near_duplicate`` similar
    (cosine of unit ``embeddings``) to a labelled row come last. Of the rest (``eligible`` limits them further):

    - **Uncertain and diverse** (the rule): the ``pool_factor × k`` rows with the smallest margin between the two
      most probable classes (``probabilities``, rows × classes) are grouped into ``k`` clusters (k-means weighted by
      how unsure the model is), and the row nearest each cluster's centre is taken, least sure first.
    - **Covering the table** while nobody has labelled a row and there are at most
      :data:`COVER_FIRST_MAX_CLASSES` classes: the rows of each suggested class grouped into an even share of
      ``k`` clusters, the row nearest each centre; the first suggested class's largest cluster's first, then each
      time the one least like those before it (a person who labels only the first few still covers the table).
      With two or three broad classes the zero-shot model's least sure rows are the ambiguous ones along one
      boundary: labelling those first cost SST-2 up to 9 points (bench/results/labelling.md#queue).

    ``seed`` fixes the clustering; ties go to the earlier row."""
    if k < 1:
        raise ConfigError(f"k must be at least 1 (got {k}): it is how many rows to label next.")
    if not 0 < near_duplicate <= 1:
        raise ConfigError(f"near_duplicate must be above 0 and at most 1 (got {near_duplicate}): the cosine "
                          "similarity from which two texts count as the same.")
    labelled = np.asarray(labelled, dtype=bool)
    free = ~labelled if eligible is None else ~labelled & np.asarray(eligible, dtype=bool)
    if labelled.any():
        known = (embeddings[free] @ embeddings[labelled].T).max(axis=1) >= near_duplicate
    else:
        known = np.zeros(int(free.sum()), dtype=bool)
    rows, repeats = np.flatnonzero(free)[~known], np.flatnonzero(free)[known]
    copies = np.zeros(0, dtype=int)
    if len(rows):  # a second copy of a text waits, before the near duplicates of labelled rows
        _, first = np.unique(embeddings[rows].round(6), axis=0, return_index=True)
        copies = np.setdiff1d(rows, rows[first])
        rows = rows[np.sort(first)]
    margins = _margins(probabilities)
    # The clustering's random state differs with the number of labels: one fixed state made every round's k-means
    # start alike and its picks alike (AG News: -1 point at 32 and 64 labels; bench/results/labelling.md#queue).
    state = int(np.random.default_rng([seed, int(labelled.sum())]).integers(2 ** 31))
    if not labelled.any() and probabilities.shape[1] <= COVER_FIRST_MAX_CLASSES:
        picked = _cover(embeddings, rows, probabilities.argmax(axis=1)[rows], k, state)
    else:
        pool = rows[np.argsort(margins[rows], kind="stable")][:pool_factor * k]
        picked = _cluster_centres(embeddings, pool, 1 - margins[pool] + 1e-3, k, state, by_size=False)
        picked.sort(key=lambda row: (margins[row], row))
    # Fewer distinct texts than k: the other rows follow, the near duplicates of labelled rows last.
    chosen = set(picked)
    rest = [int(row) for row in rows[np.argsort(margins[rows], kind="stable")] if row not in chosen]
    for waiting in (copies, repeats):
        rest += [int(row) for row in waiting[np.argsort(margins[waiting], kind="stable")]]
    return picked + rest[:k - len(picked)]


def _cover(embeddings: np.ndarray, rows: np.ndarray, suggested: np.ndarray, k: int, state: int) -> List[int]:
    """``k`` rows that cover ``rows``: for each suggested class in turn an even share of ``k``, the row nearest each
    centre of a k-means of the rows suggested as it (so the batch is not all one class when the texts cluster by
    something else, e.g. by topic in a sentiment task); far-apart rows first (:func:`_spread_order`)."""
    present = np.unique(suggested)
    picked: List[int] = []
    for index, value in enumerate(present):
        share = k // len(present) + (index < k % len(present))
        if share:
            picked += _cluster_centres(embeddings, rows[suggested == value], np.ones(int((suggested == value).sum())),
                                       share, state, by_size=True)
    return _spread_order(embeddings, picked)


def _cluster_centres(embeddings: np.ndarray, rows: np.ndarray, weights: np.ndarray, k: int, seed: int, *,
                     by_size: bool) -> List[int]:
    """The row of ``rows`` (distinct texts: :func:`label_queue` sets copies aside) nearest each centre of a weighted
    k-means into ``min(k, len(rows))`` clusters; with ``by_size``, the largest cluster's row first."""
    from sklearn.cluster import KMeans

    clusters = min(k, len(rows))
    if clusters == 0:
        return []
    if clusters == len(rows):
        return [int(row) for row in rows]
    model = KMeans(clusters, n_init=1, random_state=seed).fit(embeddings[rows], sample_weight=weights)
    distances = model.transform(embeddings[rows])
    picked, sizes = [], []
    for cluster in range(clusters):
        members = np.flatnonzero(model.labels_ == cluster)
        if len(members):
            picked.append(int(rows[members[np.argmin(distances[members, cluster])]]))
            sizes.append(len(members))
    if by_size:
        picked = [row for _, row in sorted(zip(sizes, picked), key=lambda pair: (-pair[0], pair[1]))]
    return picked


def _spread_order(embeddings: np.ndarray, rows: List[int]) -> List[int]:
    """``rows`` reordered so that the first few are far apart: the first row, then each time the row least similar
    to those already placed (ties: the earlier in ``rows``)."""
    if len(rows) < 3:
        return rows
    vectors = embeddings[rows]
    placed = [0]
    nearest = vectors @ vectors[0]
    nearest[0] = np.inf
    while len(placed) < len(rows):
        index = int(np.argmin(nearest))
        placed.append(index)
        nearest = np.maximum(nearest, vectors @ vectors[index])
        nearest[placed] = np.inf
    return [rows[index] for index in placed]


def _margins(probabilities: np.ndarray) -> np.ndarray:
    """Per row, the top score minus the runner-up's (of probabilities, or of similarities to the classes)."""
    top_two = np.sort(probabilities, axis=1)[:, -2:]
    return top_two[:, 1] - top_two[:, 0]


def class_vectors(classes: Sequence[str], model_name: str = DEFAULT_MODEL,
                  templates: Sequence[str] = NAME_TEMPLATES) -> np.ndarray:
    """Unit vectors, one per class: the mean embedding of its name in each of ``templates`` (read-only; kept for
    the process, as a refit and its learning-curve point ask for the same names)."""
    return _class_vectors(tuple(classes), model_name, tuple(templates))


@functools.lru_cache(maxsize=8)
def _class_vectors(classes: Tuple[str, ...], model_name: str, templates: Tuple[str, ...]) -> np.ndarray:
    spoken = [spoken_name(name) for name in classes]
    sentences = embed([template.format(name) for template in templates for name in spoken], model_name)
    vectors = _unit(sentences.reshape(len(templates), len(spoken), -1).mean(axis=0))
    vectors.flags.writeable = False
    return vectors


def refine_class_vectors(embeddings: np.ndarray, names: np.ndarray, label_ids: np.ndarray,
                         rounds: int = REFINE_ROUNDS, share: float = CONFIDENT_SHARE) -> np.ndarray:
    """The class vectors moved towards the table's rows (a k-means started from the names).

    A class's vector starts as its name vector; each round it becomes the name vector plus the weighted mean of the
    rows labelled as it (``label_ids``, -1 for unlabelled; each weighing :data:`PERSON_WEIGHT`) and of the ``share``
    of the unlabelled rows nearest it whose top-two similarity gap is largest; scaled to unit length. (Starting
    from the names plus the labelled rows' mean instead let a first few labels pull the vectors off: SST-2 fell from
    0.74 zero-shot to 0.72 after 16 labels; bench/results/labelling.md#queue.)"""
    free = label_ids < 0
    vectors = names
    for _ in range(rounds):
        nearest, confident = _confident_rows(embeddings @ vectors.T, free, share)
        vectors = _moved(embeddings, names, label_ids, confident, nearest)
    return vectors


def _moved(embeddings: np.ndarray, names: np.ndarray, label_ids: np.ndarray, confident: np.ndarray,
           nearest: np.ndarray) -> np.ndarray:
    moved = []
    for index, name in enumerate(names):
        person = label_ids == index
        members = person | (confident & (nearest == index)) if confident.any() else person
        if members.any():
            weights = np.where(person[members], PERSON_WEIGHT, 1.0)
            name = name + _unit(np.average(embeddings[members], axis=0, weights=weights))
        moved.append(name)
    return _unit(np.asarray(moved))


def _quick_model(embeddings: np.ndarray, names: np.ndarray, label_ids: np.ndarray, seed: int) -> np.ndarray:
    """Class probabilities of every row from the logistic regression described in the module's docstring."""
    free = label_ids < 0
    refined = refine_class_vectors(embeddings, names, label_ids)
    nearest, confident = _confident_rows(embeddings @ refined.T, free, CONFIDENT_SHARE)
    person = np.flatnonzero(~free)
    provisional = np.flatnonzero(confident)
    features = np.vstack([embeddings[person], embeddings[provisional], names])
    targets = np.concatenate([label_ids[person], nearest[provisional], np.arange(len(names))])
    weights = np.concatenate([np.full(len(person), PERSON_WEIGHT), np.ones(len(provisional) + len(names))])
    model = embedding_classifier(seed).fit(features, targets, sample_weight=weights)
    probabilities = np.zeros((len(embeddings), len(names)))
    probabilities[:, model.classes_] = model.predict_proba(embeddings)
    return probabilities


def _confident_rows(similarities: np.ndarray, free: np.ndarray, share: float):
    """``(nearest class per row, mask of the free rows among the ``share`` of each class's nearest free rows
    with the largest top-two gap)``."""
    nearest = similarities.argmax(axis=1)
    gap = _margins(similarities)
    confident = np.zeros(len(similarities), dtype=bool)
    for index in np.unique(nearest[free]):
        rows = np.flatnonzero(free & (nearest == index))
        confident[rows[np.argsort(-gap[rows], kind="stable")[:math.ceil(share * len(rows))]]] = True
    return nearest, confident


def _unit(vectors: np.ndarray) -> np.ndarray:
    return vectors / np.linalg.norm(vectors, axis=-1, keepdims=True).clip(min=1e-12)


def _embeddings(texts: List[str], embeddings: Optional[np.ndarray], model_name: str) -> np.ndarray:
    if embeddings is None:
        return embed(texts, model_name)
    embeddings = np.asarray(embeddings, dtype=np.float32)
    if embeddings.ndim != 2 or len(embeddings) != len(texts):
        raise DataError(f"The embeddings have shape {embeddings.shape} for {len(texts)} texts; give one row per "
                        "text (finetuner.embeddings.embed(texts)).")
    return embeddings


def is_unlabelled(value: Any) -> bool:
    """Whether a label cell means "not labelled yet": missing, NaN or blank."""
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return not str(value).strip() if isinstance(value, str) else bool(pd.isna(value))


def _row_labels(labels: Optional[Sequence[Any]], rows: int) -> List[Optional[str]]:
    """Each row's label as text (``None`` when unlabelled); labels like ``1.0`` read as ``1``."""
    if labels is None:
        return [None] * rows
    labels = list(labels)
    if len(labels) != rows:
        raise DataError(f"There are {rows} texts but {len(labels)} labels; give one label per text (None or an "
                        "empty string for a row not labelled yet).")
    out: List[Optional[str]] = []
    for row, value in enumerate(labels, start=1):
        if is_unlabelled(value):
            out.append(None)
            continue
        try:
            out.append(str(normalize_label(value)))
        except ValueError as exc:
            raise DataError(f"Row {row}: {exc} ({value!r}); use a class name, or leave the cell empty for a row "
                            "not labelled yet.") from None
    return out


def _classes(classes: Optional[Sequence[Any]], given: List[Optional[str]]) -> List[str]:
    if classes is None:
        present = sorted({label for label in given if label is not None})
        if len(present) < 2:
            found = f"only {present[0]!r}" if present else "none"
            raise ConfigError(f"Give the class names (at least two): the labels present name {found}. "
                              "Pass classes=[...] (--classes a,b,c on the command line).")
        return present
    names = []
    for value in classes:
        if is_unlabelled(value):
            raise ConfigError("A class name is empty; give every class a name.")
        names.append(str(normalize_label(value)))
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ConfigError(f"The class names repeat {', '.join(map(repr, repeated))}; give each class once.")
    if len(names) < 2:
        raise ConfigError(f"There must be at least two classes to choose between (got {names}). "
                          "Add the other class names.")
    return names


def _label_ids(given: List[Optional[str]], classes: List[str]) -> np.ndarray:
    index = {name: i for i, name in enumerate(classes)}
    unknown = [(row, label) for row, label in enumerate(given, start=1) if label is not None and label not in index]
    if unknown:
        listed = ", ".join(f"row {row} {label!r}" for row, label in unknown[:_MAX_LISTED])
        more = f" and {len(unknown) - _MAX_LISTED} more" if len(unknown) > _MAX_LISTED else ""
        raise DataError(f"{len(unknown)} label(s) are not among the classes ({', '.join(classes)}): {listed}{more}. "
                        "Add them to the classes or correct those rows.")
    return np.asarray([-1 if label is None else index[label] for label in given], dtype=int)
