"""From an (edited) table to training inputs: a validation summary and the train/evaluation split.

The app shows :meth:`PreparedData.to_markdown` live while the user edits the table, and trains on the
same object, so what is checked is exactly what is trained on.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

import pandas as pd

from .data import (LabelledTexts, Split, detect_columns, label_counts, normalize_labels, read_table,
                   split_train_eval, table_to_labelled)
from .errors import DataError
from .imbalance import class_balance_warnings
from .tasks import TASK_NAMES, TaskChoice, detect_task, parse_label_sets

_MAX_ROWS_LISTED = 5
ERROR_MARK, WARNING_MARK, OK_MARK = "✗ Problem:", "⚠ Warning:", "✓"


@dataclass
class PreparedData(Split):
    """A checked table: its summary, problems, and (when usable) the train/evaluation split (the :class:`Split`
    it extends)."""

    source: str = ""
    rows: int = 0
    blank_rows: int = 0
    text_column: Optional[str] = None
    label_column: Optional[str] = None
    class_counts: Dict[str, int] = field(default_factory=dict)
    empty_texts: List[int] = field(default_factory=list)
    missing_labels: List[int] = field(default_factory=list)
    duplicate_rows: int = 0
    conflicting_texts: int = 0
    eval_source: str = "split"
    eval_fraction: Optional[float] = None
    overlap: int = 0
    # What the labels are (finetuner.tasks.detect_task, or the task asked for) and, per task, what the live summary
    # says of them: rows with two labels or more (several labels per text), the target's range (a number per text).
    task: Optional[TaskChoice] = None
    several_labels_rows: int = 0
    target_stats: Dict[str, float] = field(default_factory=dict)
    errors: List[str] = field(default_factory=list)
    warnings: List[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors and bool(self.train_texts)

    def raise_for_errors(self) -> None:
        """Raise :class:`DataError` with every problem that stops training."""
        if not self.ok:
            raise DataError(" ".join(self.errors) or "The table has no usable rows.")

    def summary(self) -> Dict[str, Any]:
        """The JSON-safe summary stored with a run (no texts)."""
        skip = {"train_texts", "train_labels", "eval_texts", "eval_labels", "description"}
        return {**{k: v for k, v in asdict(self).items() if k not in skip}, **super().summary()}

    @property
    def task_name(self) -> str:
        """"single_label", "multi_label" or "regression" (:data:`finetuner.tasks.TASKS`); one label per text until
        the labels have been read."""
        return self.task.task if self.task else "single_label"

    def to_markdown(self) -> str:
        """A short human-readable report: counts first, then errors and warnings."""
        lines = []
        if self.text_column and self.label_column:
            lines += self._labels_markdown()
        if self.train_texts:
            lines.append(f"Training on **{len(self.train_texts)}** rows, evaluating on **{len(self.eval_texts)}** "
                         f"({self._split_markdown()}).")
        facts = []
        if self.empty_texts:
            facts.append(f"{len(self.empty_texts)} empty text(s) ({_rows(self.empty_texts)})")
        if self.missing_labels and self.task_name == "multi_label":
            facts.append(f"{len(self.missing_labels)} text(s) with none of the labels ({_rows(self.missing_labels)})")
        elif self.missing_labels:
            facts.append(f"{len(self.missing_labels)} missing label(s) ({_rows(self.missing_labels)})")
        if self.blank_rows:
            facts.append(f"{self.blank_rows} blank row(s) ignored")
        if self.duplicate_rows:
            facts.append(f"{self.duplicate_rows} duplicate text(s)")
        if self.conflicting_texts:
            facts.append(f"{self.conflicting_texts} text(s) with conflicting labels")
        if self.overlap:
            facts.append(f"{self.overlap} evaluation text(s) also in training (overlap inflates scores)")
        if facts:
            lines.append("Checks: " + "; ".join(facts) + ".")
        # Text marks, not emoji: they show in common fonts (DejaVu, Liberation) without an emoji font.
        lines += [f"{ERROR_MARK} {message}" for message in self.errors]
        lines += [f"{WARNING_MARK} {message}" for message in self.warnings]
        if self.ok and not self.warnings and not facts:
            lines.append(f"{OK_MARK} No problems found.")
        return "\n\n".join(lines)

    def _labels_markdown(self) -> List[str]:
        """The lines about the labels: how many rows and classes, or what the task is, why, and the counts."""
        columns = f"text column `{self.text_column}`, label column `{self.label_column}`"
        task = self.task_name
        if task == "single_label":
            classes = len(self.class_counts)
            lines = [f"**{self.rows} rows**, **{classes} class{'' if classes == 1 else 'es'}** ({columns})"]
            balance = ", ".join(f"{name}: {count}" for name, count in self.class_counts.items())
            return lines + ([f"Class balance: {balance}"] if balance else [])
        why = f"Why: {self.task.reason}. Change it with **Task** on the Train tab." if self.task else ""
        if task == "regression":
            stats = self.target_stats
            values = (f": from {stats['min']:g} to {stats['max']:g}, mean {stats['mean']:.3g}" if stats else "")
            return [f"**{self.rows} rows**, **{TASK_NAMES[task]}**{values} ({columns}). {why}"]
        labels = len(self.class_counts)
        share = f"; {self.several_labels_rows / self.rows:.0%} of rows have 2+" if self.rows else ""
        separator = self.task.separator if self.task else ";"
        lines = [f"**{self.rows} rows**, **{TASK_NAMES[task]}** ({labels} label{'' if labels == 1 else 's'}{share}; "
                 f"{columns}, labels separated by `{separator}`). {why}"]
        counts = ", ".join(f"{name}: {count}" for name, count in self.class_counts.items())
        if counts:
            lines.append(f"Rows per label: {counts}")
        lines.append(f"Edit a row's labels in the grid as one cell, e.g. `a{separator}b`.")
        return lines

    def _split_markdown(self) -> str:
        if self.eval_source == "file":
            return "the evaluation file"
        if self.task_name == "single_label":
            return f"a stratified split of {self.eval_fraction:.0%}"
        what = "several labels per text" if self.task_name == "multi_label" else "a number per text"
        return f"a random split of {self.eval_fraction:.0%}; not stratified: the rows hold {what}"


def drop_blank_rows(frame: pd.DataFrame) -> Tuple[pd.DataFrame, int]:
    """Remove rows in which every cell is empty (e.g. rows added in the grid and never filled)."""
    blank = frame.apply(blank_cells).all(axis=1)
    return frame.loc[~blank].reset_index(drop=True), int(blank.sum())


def prepare(frame: Optional[pd.DataFrame], text_column: Optional[str] = None, label_column: Optional[str] = None,
            *, eval_frame: Optional[pd.DataFrame] = None, eval_fraction: float = 0.2, seed: int = 42,
            source: str = "", class_weights: str = "auto", task: str = "auto") -> PreparedData:
    """Check a table and split it (or use ``eval_frame``) for training; problems go to ``errors``, never raise.
    ``class_weights`` (``TrainConfig.class_weights``) is what the warnings about rare and skewed classes say
    training will do about them. ``task`` (``TrainConfig.task``; "auto": read from the label cells) says what the
    labels are; several labels per text and numbers are split at random (a stratified split needs one class per
    row)."""
    result = PreparedData(source=source, eval_source="split" if eval_frame is None else "file",
                          eval_fraction=eval_fraction if eval_frame is None else None)
    if frame is None or frame.shape[0] == 0 or frame.shape[1] == 0:
        result.errors.append("The table is empty: load a file or a sample, or add rows.")
        return result
    frame, result.blank_rows = drop_blank_rows(frame)
    result.rows = len(frame)
    try:
        text_col, label_col = detect_columns(frame, text_column or None, label_column or None)
    except DataError as exc:
        result.errors.append(str(exc))
        return result
    result.text_column, result.label_column = text_col, label_col
    texts, labels = frame[text_col], frame[label_col]
    no_text, no_label = blank_cells(texts), blank_cells(labels)
    result.empty_texts, result.missing_labels = _rows_where(no_text), _rows_where(no_label)
    keys = texts.astype(str).str.strip().where(~no_text, "")
    result.duplicate_rows = int(keys[~no_text].duplicated().sum())
    labelled = pd.DataFrame({"text": keys, "label": labels.astype(str)})[~no_text & ~no_label]
    result.conflicting_texts = int((labelled.groupby("text")["label"].nunique() > 1).sum())
    try:
        result.task = detect_task(labels.tolist(), task)
        labelled_texts = table_to_labelled(frame, text_col, label_col, task=task)
    except DataError as exc:
        result.class_counts = _class_counts(labels[~no_label].tolist(), result.task)
        result.errors.append(str(exc))
        return result
    _describe_labels(result, labelled_texts)
    result.warnings += labelled_texts.warnings
    if result.task_name == "single_label":  # class weights are for one class per text
        result.warnings += class_balance_warnings(result.class_counts, class_weights)
    try:
        _split(result, labelled_texts.texts, labelled_texts.labels, eval_frame, eval_fraction, seed)
    except DataError as exc:
        result.errors.append(str(exc))
    return result


def _describe_labels(result: PreparedData, labelled: LabelledTexts) -> None:
    """The task the labels were read as, and per task what the summary says of them."""
    result.task = labelled.task
    result.class_counts = labelled.class_counts
    if labelled.task.task == "multi_label":
        sets = parse_label_sets(labelled.labels, labelled.task.separator)
        result.several_labels_rows = sum(len(names) > 1 for names in sets)
    elif labelled.task.task == "regression" and labelled.labels:
        values = [float(v) for v in labelled.labels]
        result.target_stats = {"min": min(values), "max": max(values), "mean": sum(values) / len(values)}


def _split(result: PreparedData, texts: List[str], labels: List[Any], eval_frame: Optional[pd.DataFrame],
           eval_fraction: float, seed: int) -> None:
    choice = result.task or TaskChoice("single_label", "one label per text")
    if eval_frame is None:
        tr_x, tr_y, ev_x, ev_y, warnings = split_train_eval(texts, labels, eval_fraction, seed,
                                                            stratify=choice.task == "single_label")
        result.warnings += warnings
    else:
        eval_frame, _ = drop_blank_rows(eval_frame)
        columns = set(eval_frame.columns)
        try:
            evaluation = table_to_labelled(
                eval_frame, result.text_column if result.text_column in columns else None,
                result.label_column if result.label_column in columns else None, task=choice.task,
                separator=choice.separator)
        except DataError as exc:
            raise DataError(f"Evaluation file: {exc}") from None
        tr_x, tr_y, ev_x, ev_y = texts, labels, evaluation.texts, evaluation.labels
        unseen = _unseen_labels(tr_y, ev_y, choice)
        if unseen:
            raise DataError(f"Evaluation file: label(s) {', '.join(unseen[:_MAX_ROWS_LISTED])} never occur in the "
                            "training table. Use the same classes in both files.")
    seen = {t.strip() for t in tr_x}
    result.overlap = sum(t.strip() in seen for t in ev_x)
    result.train_texts, result.train_labels, result.eval_texts, result.eval_labels = tr_x, tr_y, ev_x, ev_y


def _unseen_labels(train: List[Any], evaluation: List[Any], choice: TaskChoice) -> List[str]:
    """The evaluation labels that no training row has (per label name for several labels per text; none for
    numbers)."""
    if choice.task == "regression":
        return []
    if choice.task == "multi_label":
        def names(labels: List[Any]) -> set:
            return {name for row in parse_label_sets(labels, choice.separator) for name in row}
        return sorted(names(evaluation) - names(train))
    return sorted(set(map(str, evaluation)) - set(map(str, train)))


def clean_table(frame: pd.DataFrame, text_column: str, label_column: str) -> Tuple[pd.DataFrame, int]:
    """Drop rows with an empty text or label and repeated texts (the first occurrence stays)."""
    if text_column not in frame.columns or label_column not in frame.columns:
        raise DataError("Choose the text and label columns first.")
    no_text = blank_cells(frame[text_column])
    keys = frame[text_column].astype(str).str.strip().where(~no_text, "")
    keep = ~no_text & ~blank_cells(frame[label_column]) & ~keys.duplicated()
    return frame.loc[keep].reset_index(drop=True), int((~keep).sum())


def read_texts_table(path: Union[str, Path]) -> pd.DataFrame:
    """A table of texts to predict: any supported table file, or a .txt file with one text per line."""
    path = Path(path)
    if path.suffix.lower() == ".txt":
        lines = [line.strip() for line in path.read_text(encoding="utf-8", errors="replace").splitlines()]
        texts = [line for line in lines if line]
        if not texts:
            raise DataError(f"{path.name}: no texts found (one text per line expected).")
        return pd.DataFrame({"text": texts})
    return read_table(path)


def _class_counts(labels: List[Any], task: Optional[TaskChoice] = None) -> Dict[str, int]:
    """Rows per class of labels that could not all be read (as far as they can be)."""
    if task is not None and task.task != "single_label":
        try:
            return label_counts(labels, task)
        except DataError:
            return {}
    try:
        normalized = normalize_labels(labels)
    except DataError:
        normalized = labels
    counts = pd.Series([str(v) for v in normalized], dtype=object).value_counts()
    return {str(k): int(v) for k, v in sorted(counts.items())}


def blank_cells(values: pd.Series) -> pd.Series:
    """Which cells are missing or only whitespace."""
    return values.isna() | values.astype(str).str.strip().eq("")


def _rows(rows: List[int]) -> str:
    more = f" and {len(rows) - _MAX_ROWS_LISTED} more" if len(rows) > _MAX_ROWS_LISTED else ""
    return "row " + ", ".join(map(str, rows[:_MAX_ROWS_LISTED])) + more


def _rows_where(mask: pd.Series) -> List[int]:
    return [int(i) + 1 for i in mask.to_numpy().nonzero()[0]]
