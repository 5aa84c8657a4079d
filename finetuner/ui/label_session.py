"""The Label tab's labelling session, without Gradio: a table's texts, its class names, who labelled which row, the
suggestions for the rest (:mod:`finetuner.labelling`), the "label next" queue and the learning curve.

Every text is embedded once, when the session starts (with the bundled sentence encoder, whatever model the app
trains: the suggestions are made on sentence embeddings); each refit then takes about a second. Only a person's
labels teach the quick model and count on the learning curve. Suggestions accepted in bulk are labels for
training, marked :data:`ACCEPTED` so that they stay told apart from a person's.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Set, Tuple

import numpy as np
import pandas as pd

from ..embeddings import embed
from ..errors import DataError
from ..labelling import (ACCEPTED, MIN_CURVE_ROWS, PERSON, SUGGESTION, SUGGESTION_COLUMNS, Suggestions,
                         accepted_rows, cross_validated_accuracy, is_unlabelled, label_queue, suggest_labels)
from ..models import DEFAULT_MODEL

LABELLED_BY = (PERSON, ACCEPTED, SUGGESTION)
REFIT_EVERY = 5  # labels between refits by default (a refit: ~0.5 s for 400 rows, ~1.5 s with the curve point)
QUEUE_LENGTH = 20  # rows ranked at each refit; labelling them all refits too
DEFAULT_LABEL_COLUMN = "label"
# One change undone at a time: a row's (row, label, labelled_by) before it, for each row it changed.
Change = List[Tuple[int, Optional[str], str]]


@dataclass
class LabelSession:
    """One browser's labelling of a table. Rows are numbered 0.. over ``texts`` (the table rows with a text, at
    ``positions`` in ``frame``); ``labels[i]`` is row i's label (None: none yet) and ``by[i]`` who gave it
    (:data:`PERSON`, :data:`ACCEPTED`, or "" for none)."""

    source: str
    frame: pd.DataFrame
    text_column: str
    label_column: str
    positions: List[int]
    texts: List[str]
    classes: List[str]
    labels: List[Optional[str]]
    by: List[str]
    embeddings: np.ndarray = field(repr=False)
    refit_every: int = REFIT_EVERY
    suggestions: Optional[Suggestions] = field(default=None, repr=False)
    queue: List[int] = field(default_factory=list)
    skipped: Set[int] = field(default_factory=set)
    # (labels by a person, cross-validated accuracy on them, expected accuracy on the rows without a label)
    curve: List[Tuple[int, float, Optional[float]]] = field(default_factory=list)
    undo_stack: List[Change] = field(default_factory=list)
    since_refit: int = 0
    news: str = ""  # what the last refit changed, in a sentence
    lock: Any = field(default_factory=threading.Lock, repr=False, compare=False)  # one change at a time

    # ------------------------------------------------------------------ what the session holds

    def person_labels(self) -> List[Optional[str]]:
        """The labels a person gave (None elsewhere): the only ones the quick model learns from."""
        return [label if who == PERSON else None for label, who in zip(self.labels, self.by)]

    def count(self, who: str) -> int:
        """Rows labelled by ``who`` (:data:`PERSON`, :data:`ACCEPTED`; :data:`SUGGESTION`: not labelled yet)."""
        return sum((b or SUGGESTION) == who for b in self.by)

    def current(self) -> Optional[int]:
        """The row to label now (None when every row is labelled)."""
        return self.queue[0] if self.queue else None

    def labelled_by(self, row: int) -> str:
        return self.by[row] or SUGGESTION

    def suggested(self, row: int) -> Tuple[str, float]:
        """Row ``row``'s suggested label and its confidence: for a row a person labelled, their label (1.0), also
        before the next refit learns it."""
        if self.by[row] == PERSON:
            return self.labels[row], 1.0
        return self.suggestions.labels[row], float(self.suggestions.confidence[row])

    # ------------------------------------------------------------------ changes

    def give(self, row: int, label: str) -> str:
        """A person labels ``row`` as ``label``; refits after :attr:`refit_every` labels. Returns a message."""
        if label not in self.classes:
            raise DataError(f"{label!r} is not one of the classes ({', '.join(self.classes)}).")
        self._check_row(row)
        self.undo_stack.append([(row, self.labels[row], self.by[row])])
        self.labels[row], self.by[row] = label, PERSON
        self.skipped.discard(row)
        self._dequeue(row)
        self.since_refit += 1
        if self.since_refit >= self.refit_every or not self.queue:
            self.refit()
        return f"Row {self.positions[row] + 1} labelled `{label}`."

    def accept(self, row: int) -> str:
        """A person accepts the suggestion shown for ``row``: it becomes their label."""
        self._check_row(row)
        return self.give(row, self.suggestions.labels[row])

    def skip(self, row: int) -> str:
        """Leave ``row`` for later: it comes back once every other row is labelled."""
        self._check_row(row)
        self.skipped.add(row)
        self._dequeue(row)
        if not self.queue:
            self.queue = self._next_rows()
        return f"Row {self.positions[row] + 1} skipped."

    def undo(self) -> str:
        """Take back the last label (or bulk acceptance); a row labelled by hand comes back to be labelled next."""
        if not self.undo_stack:
            raise DataError("Nothing to undo: no row has been labelled in this session yet.")
        change = self.undo_stack.pop()
        learned = False  # a label the suggestions were fitted on: they are refitted without it
        for row, label, who in reversed(change):
            if self.by[row] == PERSON:
                learned = learned or bool(self.suggestions.labelled[row])
                self.since_refit = max(0, self.since_refit - 1)
            self.labels[row], self.by[row] = label, who
        if learned:
            self.refit()
        if len(change) == 1 and not change[0][2]:
            row = change[0][0]
            self._dequeue(row)
            self.queue.insert(0, row)
            return f"Undone: row {self.positions[row] + 1} has no label again."
        if not learned:
            self.queue = self._next_rows()
        return f"Undone: {len(change)} accepted suggestion(s) are suggestions again."

    def accept_above(self, threshold: float) -> str:
        """Accept every suggestion at or above ``threshold`` confidence for the rows not labelled yet."""
        confidence = self.suggestions.confidence
        rows = [row for row, who in enumerate(self.by) if not who and confidence[row] >= threshold]
        if not rows:
            raise DataError(f"No unlabelled row has a suggestion with confidence {threshold:.2f} or more; lower "
                            "the threshold or label more rows first.")
        self.undo_stack.append([(row, self.labels[row], self.by[row]) for row in rows])
        for row in rows:
            self.labels[row], self.by[row] = self.suggestions.labels[row], ACCEPTED
        self.queue = self._next_rows()
        return (f"Accepted {len(rows)} suggestion(s) with confidence {threshold:.2f} or more; they are labelled "
                f"`{ACCEPTED}` (Undo takes them back).")

    def refit(self, new: Optional[Suggestions] = None) -> None:
        """New suggestions from the person's labels (or ``new``, made from them), a learning-curve point, the next
        rows, and what changed."""
        person = self.person_labels()
        old = self.suggestions
        if new is None:
            new = suggest_labels(self.texts, self.classes, person, embeddings=self.embeddings)
        count = sum(label is not None for label in person)
        accuracy = (cross_validated_accuracy(self.texts, self.classes, person, embeddings=self.embeddings)
                    if count >= MIN_CURVE_ROWS else None)
        expected = new.expected_accuracy([row for row, who in enumerate(self.by) if not who])
        self.news = self._describe(old, new, count, accuracy, expected)
        if accuracy is not None:
            self.curve = [point for point in self.curve if point[0] != count] + [(count, accuracy, expected)]
        self.suggestions, self.since_refit = new, 0
        self.queue = self._next_rows()

    def _describe(self, old: Optional[Suggestions], new: Suggestions, count: int, accuracy: Optional[float],
                  expected: Optional[float]) -> str:
        if old is None:
            parts = [new.reason.rstrip(".")]
        else:
            free = [row for row, who in enumerate(self.by) if not who]
            changed = sum(old.labels[row] != new.labels[row] for row in free)
            parts = [f"Refitted on {count} label(s): {changed} suggestion(s) changed"]
        if accuracy is None:
            more = MIN_CURVE_ROWS - count
            parts.append(f"the learning curve starts at {MIN_CURVE_ROWS} labels ({more} more)")
        elif self.curve and self.curve[-1][0] < count:
            before_count, before, _ = self.curve[-1]
            points = round(100 * (accuracy - before))
            parts.append(f"cross-validated accuracy {before:.2f} → {accuracy:.2f} ({points:+d} points) after "
                         f"{count - before_count} more label(s)")
        else:
            parts.append(f"cross-validated accuracy {accuracy:.2f} on {count} labels")
        if expected is not None:
            parts.append(f"expected on the rows without a label {expected:.2f}")
        return "; ".join(parts) + "."

    def _next_rows(self) -> List[int]:
        """The queue: unlabelled rows not skipped, most useful first (skipped rows again once nothing else is left)."""
        eligible = np.asarray([not who for who in self.by], dtype=bool)
        if not eligible.any():
            return []
        waiting = eligible.copy()
        waiting[list(self.skipped)] = False
        if waiting.any():
            eligible = waiting
        else:
            self.skipped.clear()
        return label_queue(self.suggestions.probabilities, self.embeddings, self.suggestions.labelled,
                           min(QUEUE_LENGTH, int(eligible.sum())), eligible=eligible)

    def _dequeue(self, row: int) -> None:
        if row in self.queue:
            self.queue.remove(row)

    def _check_row(self, row: int) -> None:
        if not 0 <= row < len(self.texts):
            raise DataError(f"There is no row {row} to label.")

    # ------------------------------------------------------------------ tables out

    def table(self) -> pd.DataFrame:
        """The whole table: its columns with the label column filled in, then ``suggested_label``, ``confidence``
        and ``labelled_by`` (person / accepted suggestion / suggestion). Rows without a text get empty cells."""
        out = _without_suggestion_columns(self.frame)
        labels = pd.Series([None] * len(out), dtype=object)
        if self.label_column in out.columns:
            labels[:] = out[self.label_column].astype(object).where(out[self.label_column].notna(), None)
        suggested = pd.Series([None] * len(out), dtype=object)
        confidence = pd.Series([np.nan] * len(out), dtype=float)
        who = pd.Series([None] * len(out), dtype=object)
        rows = np.asarray(self.positions, dtype=int)
        labels.iloc[rows] = np.asarray(self.labels, dtype=object)
        shown = [self.suggested(row) for row in range(len(self.texts))]
        suggested.iloc[rows] = np.asarray([label for label, _ in shown], dtype=object)
        confidence.iloc[rows] = np.round([value for _, value in shown], 6)
        who.iloc[rows] = np.asarray([self.labelled_by(row) for row in range(len(self.texts))], dtype=object)
        out[self.label_column] = labels
        for name, column in zip(SUGGESTION_COLUMNS, (suggested, confidence, who)):
            out[name] = column
        return out

    def training_frame(self) -> pd.DataFrame:
        """The labelled rows only (by a person or accepted): the table's own columns with the label column filled,
        and ``labelled_by`` (so that labelling this table again knows the accepted suggestions)."""
        labelled = [position for position, who in zip(self.positions, self.by) if who]
        if not labelled:
            raise DataError("No row is labelled yet: label some rows (or accept suggestions) first.")
        table = self.table()
        return table.iloc[labelled].drop(columns=list(SUGGESTION_COLUMNS[:-1])).reset_index(drop=True)


def parse_classes(text: Optional[str]) -> List[str]:
    """Class names from comma-separated text (spaces around them and empty pieces ignored)."""
    return [name.strip() for name in (text or "").split(",") if name.strip()]


def start_session(frame: pd.DataFrame, text_column: Optional[str], label_column: Optional[str], classes: Sequence[str],
                  source: str = "", *, refit_every: int = REFIT_EVERY, embeddings: Optional[np.ndarray] = None,
                  embed_texts: Callable[[List[str]], np.ndarray] = lambda texts: embed(texts, DEFAULT_MODEL)
                  ) -> LabelSession:
    """A session over ``frame``'s rows that have a text. Labels already in ``label_column`` count as a person's
    (unless a ``labelled_by`` column, as exported here, says ``accepted suggestion``); ``classes`` empty: the labels
    present. ``embeddings`` of the same texts spare embedding them again."""
    if frame is None or frame.empty:
        raise DataError("The Data tab's table is empty: load a table of texts there first (a text column, and a "
                        "label column that may be empty).")
    if text_column not in frame.columns:
        raise DataError(f"Choose the text column on the Data tab first (columns: "
                        f"{', '.join(repr(str(c)) for c in frame.columns)}).")
    label_column = label_column if label_column in frame.columns and label_column != text_column else None
    texts_cells = frame[text_column]
    positions = [i for i, value in enumerate(texts_cells) if not is_unlabelled(value)]
    if not positions:
        raise DataError(f"Column {text_column!r} has no texts to label.")
    texts = [str(texts_cells.iloc[i]) for i in positions]
    given = ([frame[label_column].iloc[i] for i in positions] if label_column else [None] * len(positions))
    classes = list(classes) or None
    if classes is None and len({str(v).strip() for v in given if not is_unlabelled(v)}) < 2:
        raise DataError("Type the class names, separated by commas (e.g. sports, cooking, weather): the label "
                        "column has fewer than two labels to take them from.")
    if embeddings is None or len(embeddings) != len(texts):
        embeddings = embed_texts(texts)
    found = suggest_labels(texts, classes, given, embeddings=embeddings)
    accepted = _accepted_rows(frame, label_column, positions)
    by = [(ACCEPTED if row in accepted else PERSON) if labelled else "" for row, labelled in enumerate(found.labelled)]
    labels = [label if labelled else None for label, labelled in zip(found.labels, found.labelled)]
    session = LabelSession(source, frame.reset_index(drop=True), str(text_column),
                           str(label_column or _free_name(frame, DEFAULT_LABEL_COLUMN)), positions, texts,
                           list(found.classes), labels, by, found.embeddings, refit_every=max(1, int(refit_every)))
    session.refit(None if accepted else found)  # the quick model learns from a person's labels only
    return session


def carry_labels(old: LabelSession, frame: pd.DataFrame, text_column: str,
                 label_column: Optional[str]) -> Tuple[pd.DataFrame, Optional[str], int, int]:
    """``frame`` (a copy) with the labels given in ``old`` (by a person, or accepted, said in a ``labelled_by``
    column) written into its rows that have the same text and no label yet — labelling a changed table keeps the
    work done on the old one. A text labelled differently in two rows of ``old`` is not carried; one labelled the
    same by a person and as an accepted suggestion is carried as the person's. Returns the table, its label
    column, how many rows got a label this way and how many of ``old``'s labelled rows were not carried (their
    text is not in this table, or was labelled two ways)."""
    given: Dict[str, Tuple[str, str]] = {}
    torn: Set[str] = set()
    for text, label, who in zip(old.texts, old.labels, old.by):
        if not who:
            continue
        if text in given and given[text][0] != label:
            torn.add(text)
        elif text not in given or who == PERSON:
            given[text] = (label, who)
    if not given:
        return frame, label_column, 0, 0
    out = frame.reset_index(drop=True).copy()
    if label_column not in out.columns or label_column == text_column:
        label_column = _free_name(out, DEFAULT_LABEL_COLUMN)
        out[label_column] = None
    labels = out[label_column].astype(object).copy()
    marks = (out["labelled_by"].astype(object).copy() if "labelled_by" in out.columns
             else pd.Series([None] * len(out), dtype=object))
    texts = [None if is_unlabelled(value) else str(value) for value in out[text_column]]
    carried = 0
    for row, text in enumerate(texts):
        if text in given and text not in torn and is_unlabelled(labels.iloc[row]):  # a label in the table wins
            labels.iloc[row], marks.iloc[row] = given[text]
            carried += 1
    out[label_column] = labels
    if carried:
        out["labelled_by"] = marks
    present = set(texts) - torn
    not_carried = sum(1 for text, who in zip(old.texts, old.by) if who and text not in present)
    return out, label_column, carried, not_carried


def _accepted_rows(frame: pd.DataFrame, label_column: Optional[str], positions: List[int]) -> Set[int]:
    """Rows (numbered over ``positions``) that a ``labelled_by`` column marks as an accepted suggestion."""
    marked = accepted_rows(frame, label_column)
    return {row for row, position in enumerate(positions) if marked[position]}


def _without_suggestion_columns(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` (a copy, numbered from 0) without the columns this tab adds, as in a table exported here."""
    return frame.drop(columns=[c for c in SUGGESTION_COLUMNS if c in frame.columns]).reset_index(drop=True)


def _free_name(frame: pd.DataFrame, name: str) -> str:
    taken, candidate, n = {str(c) for c in frame.columns}, name, 2
    while candidate in taken:
        candidate, n = f"{name}_{n}", n + 1
    return candidate
