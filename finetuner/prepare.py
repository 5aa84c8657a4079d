"""From an (edited) table to training inputs: a validation summary and the train/evaluation split.

The app shows :meth:`PreparedData.to_markdown` live while the user edits the table, and trains on the
same object, so what is checked is exactly what is trained on.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

import pandas as pd

from .data import Split, detect_columns, normalize_labels, read_table, split_train_eval, table_to_labelled
from .errors import DataError
from .imbalance import class_balance_warnings

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

    def to_markdown(self) -> str:
        """A short human-readable report: counts first, then errors and warnings."""
        lines = []
        if self.text_column and self.label_column:
            balance = ", ".join(f"{name}: {count}" for name, count in self.class_counts.items())
            classes = len(self.class_counts)
            lines.append(f"**{self.rows} rows**, **{classes} class{'' if classes == 1 else 'es'}** "
                         f"(text column `{self.text_column}`, label column `{self.label_column}`)")
            if balance:
                lines.append(f"Class balance: {balance}")
        if self.train_texts:
            where = "the evaluation file" if self.eval_source == "file" else \
                f"a stratified split of {self.eval_fraction:.0%}"
            lines.append(f"Training on **{len(self.train_texts)}** rows, evaluating on **{len(self.eval_texts)}** "
                         f"({where}).")
        facts = []
        if self.empty_texts:
            facts.append(f"{len(self.empty_texts)} empty text(s) ({_rows(self.empty_texts)})")
        if self.missing_labels:
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


def drop_blank_rows(frame: pd.DataFrame) -> Tuple[pd.DataFrame, int]:
    """Remove rows in which every cell is empty (e.g. rows added in the grid and never filled)."""
    blank = frame.apply(blank_cells).all(axis=1)
    return frame.loc[~blank].reset_index(drop=True), int(blank.sum())


def prepare(frame: Optional[pd.DataFrame], text_column: Optional[str] = None, label_column: Optional[str] = None,
            *, eval_frame: Optional[pd.DataFrame] = None, eval_fraction: float = 0.2, seed: int = 42,
            source: str = "", class_weights: str = "auto") -> PreparedData:
    """Check a table and split it (or use ``eval_frame``) for training; problems go to ``errors``, never raise.
    ``class_weights`` (``TrainConfig.class_weights``) is what the warnings about rare and skewed classes say
    training will do about them."""
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
        labelled_texts = table_to_labelled(frame, text_col, label_col)
    except DataError as exc:
        result.class_counts = _class_counts(labels[~no_label].tolist())
        result.errors.append(str(exc))
        return result
    result.class_counts = labelled_texts.class_counts
    result.warnings += labelled_texts.warnings + class_balance_warnings(result.class_counts, class_weights)
    try:
        _split(result, labelled_texts.texts, labelled_texts.labels, eval_frame, eval_fraction, seed)
    except DataError as exc:
        result.errors.append(str(exc))
    return result


def _split(result: PreparedData, texts: List[str], labels: List[Any], eval_frame: Optional[pd.DataFrame],
           eval_fraction: float, seed: int) -> None:
    if eval_frame is None:
        tr_x, tr_y, ev_x, ev_y, warnings = split_train_eval(texts, labels, eval_fraction, seed)
        result.warnings += warnings
    else:
        eval_frame, _ = drop_blank_rows(eval_frame)
        columns = set(eval_frame.columns)
        try:
            evaluation = table_to_labelled(
                eval_frame, result.text_column if result.text_column in columns else None,
                result.label_column if result.label_column in columns else None)
        except DataError as exc:
            raise DataError(f"Evaluation file: {exc}") from None
        tr_x, tr_y, ev_x, ev_y = texts, labels, evaluation.texts, evaluation.labels
        unseen = sorted(set(map(str, ev_y)) - set(map(str, tr_y)))
        if unseen:
            raise DataError(f"Evaluation file: label(s) {', '.join(unseen[:_MAX_ROWS_LISTED])} never occur in the "
                            "training table. Use the same classes in both files.")
    seen = {t.strip() for t in tr_x}
    result.overlap = sum(t.strip() in seen for t in ev_x)
    result.train_texts, result.train_labels, result.eval_texts, result.eval_labels = tr_x, tr_y, ev_x, ev_y


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


def _class_counts(labels: List[Any]) -> Dict[str, int]:
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
