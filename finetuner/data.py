"""Tables of labelled texts: read files, find the text and label columns, validate, map labels, split.

Supported files: CSV, TSV, JSONL/JSON, Excel (.xlsx) and Parquet. Every problem is reported as a
:class:`~finetuner.errors.DataError` that says what is wrong, where, and how to fix it.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import io
import math
import numbers
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

import pandas as pd
from sklearn.model_selection import train_test_split

from .errors import DataError, first_line
from .tasks import (LABEL_SEPARATOR, TaskChoice, detect_task, is_blank, join_labels, listed, parse_label_sets,
                    parse_targets)

PathLike = Union[str, Path]

SUPPORTED_EXTENSIONS = (".csv", ".tsv", ".txt", ".jsonl", ".json", ".xlsx", ".parquet")
TEXT_COLUMN_NAMES = ("text", "sentence", "texts", "review", "content", "message", "body", "document",
                     "utterance", "query", "comment", "tweet", "question", "title", "input")
LABEL_COLUMN_NAMES = ("label", "labels", "class", "category", "target", "intent", "sentiment", "topic",
                      "y", "tag", "output")
_ENCODINGS = ("utf-8-sig", "utf-16", "cp1252", "latin-1")
_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")
_SNIFF_BYTES = 65536  # the start of a streamed file that decides its encoding and delimiter
_CSV_OPTIONS = {"dtype": str, "keep_default_na": False, "na_values": [""], "skipinitialspace": False}
_MAX_ROWS_IN_MESSAGE = 5
_ID_COLUMN = re.compile(r"(.*[_ ])?(id|idx|index|key|uuid|row)|unnamed: ?\d+")
# Texts longer than this are kept but flagged: the model reads only their beginning (finetuner.training.windows).
LONG_TEXT_CHARS = 20_000
# Several labels per text: a label on fewer rows than this is flagged (too few to learn it or to tune its threshold).
FEW_LABEL_ROWS = 8
_NUMBER = r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?"
_MAX_WINDOWS = 16  # finetuner.training.windows.MAX_WINDOWS (a layer above: tests/test_long_texts.py checks they agree)
_DECIMAL = re.compile(r"[+-]?(\d+\.\d*|\.\d+|\d+(\.\d*)?[eE][+-]?\d+)")


# ---------------------------------------------------------------------------------------------
# Reading files
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Limits:
    """Largest table accepted. Defaults can be changed with the environment variables
    ``FINETUNER_MAX_FILE_MB`` and ``FINETUNER_MAX_ROWS`` (e.g. on a shared Space)."""

    max_file_mb: float = 200.0
    max_rows: int = 1_000_000

    @classmethod
    def from_env(cls) -> "Limits":
        try:
            return cls(float(os.environ.get("FINETUNER_MAX_FILE_MB", cls.max_file_mb)),
                       int(os.environ.get("FINETUNER_MAX_ROWS", cls.max_rows)))
        except ValueError as exc:
            raise DataError(f"FINETUNER_MAX_FILE_MB / FINETUNER_MAX_ROWS must be numbers ({exc}).") from None


def read_table(path: PathLike, sheet: Optional[Union[str, int]] = None,
               limits: Optional[Limits] = None) -> pd.DataFrame:
    """Read a table file into a DataFrame of strings/numbers, choosing the reader by extension."""
    limits = limits or Limits.from_env()
    path = Path(path)
    suffix = _check_file(path)
    size_mb = path.stat().st_size / 2**20
    if size_mb > limits.max_file_mb:
        raise DataError(f"{path.name}: the file is {size_mb:,.1f} MB; the limit is {limits.max_file_mb:,.0f} MB "
                        "(FINETUNER_MAX_FILE_MB). Use a sample of the rows or raise the limit.")
    try:
        if suffix in (".csv", ".tsv", ".txt"):
            frame = _read_delimited(path, "\t" if suffix == ".tsv" else None)
        elif suffix in (".jsonl", ".json"):
            frame = _read_json(path)
        elif suffix == ".xlsx":
            frame = _read_excel(path, sheet)
        else:
            frame = pd.read_parquet(path)
    except DataError:
        raise
    except Exception as exc:  # the readers raise many types; all mean "this file is not a table"
        raise DataError(f"{path.name}: could not be read as a {suffix[1:].upper()} table ({first_line(exc)}).") from exc
    if frame.shape[1] == 0 or frame.shape[0] == 0:
        raise _no_rows(path)
    if frame.shape[0] > limits.max_rows:
        raise DataError(f"{path.name}: {frame.shape[0]:,} rows; the limit is {limits.max_rows:,} "
                        "(FINETUNER_MAX_ROWS). Use a sample of the rows or raise the limit.")
    frame.columns = [str(c).strip() for c in frame.columns]
    return frame


def iter_table_chunks(path: PathLike, chunk_rows: int) -> Iterator[pd.DataFrame]:
    """Read a table ``chunk_rows`` rows at a time, with the checks and messages of :func:`read_table`.

    Delimited text, JSON Lines and Parquet files are streamed (no size or row limit); JSON arrays and
    Excel files are read whole by :func:`read_table` and then cut up. Every chunk is indexed from 0.
    """
    path = Path(path)
    suffix = _check_file(path)
    rows = 0
    try:
        for chunk in _read_chunks(path, suffix, chunk_rows):
            chunk.columns = [str(c).strip() for c in chunk.columns]
            rows += len(chunk)
            yield chunk.reset_index(drop=True)
    except DataError:
        raise
    except Exception as exc:  # the readers raise many types; all mean "this file is not a readable table"
        after = f" after {rows:,} rows" if rows else ""
        raise DataError(f"{path.name}: could not be read as a {suffix[1:].upper()} table{after} "
                        f"({first_line(exc)}).") from None
    if rows == 0:
        raise _no_rows(path)


def _read_chunks(path: Path, suffix: str, chunk_rows: int) -> Iterator[pd.DataFrame]:
    """The chunks of a table file as its reader gives them."""
    is_text = suffix not in (".xlsx", ".parquet")
    if is_text:
        with open(path, "rb") as handle:
            head, encoding = _decode(handle.read(_SNIFF_BYTES), path.name, complete=False)
        if not head.strip():
            raise _empty_file(path)
    if suffix in (".csv", ".tsv", ".txt"):
        sep = "\t" if suffix == ".tsv" else _sniff_delimiter(head)
        with pd.read_csv(path, sep=sep, encoding=encoding, chunksize=chunk_rows, **_CSV_OPTIONS) as reader:
            yield from (_aligned(chunk, path, sep) for chunk in reader)
    elif is_text and (suffix == ".jsonl" or not head.lstrip().startswith("[")):
        with pd.read_json(path, lines=True, dtype=False, chunksize=chunk_rows, encoding=encoding) as reader:
            yield from (_json_table(chunk, path) for chunk in reader)
    elif suffix == ".parquet":
        import pyarrow.parquet as pq
        with pq.ParquetFile(path) as parquet:
            yield from (batch.to_pandas() for batch in parquet.iter_batches(batch_size=chunk_rows))
    else:  # Excel workbooks and JSON arrays
        whole = read_table(path)
        yield from (whole.iloc[start:start + chunk_rows] for start in range(0, len(whole), chunk_rows))


def _check_file(path: Path) -> str:
    """The file's (supported) extension; a DataError if it is missing or empty."""
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_EXTENSIONS:
        raise DataError(
            f"{path.name}: unsupported file type {suffix or '(no extension)'!r}. "
            f"Use one of: {', '.join(SUPPORTED_EXTENSIONS)}."
        )
    if not path.is_file():
        raise DataError(f"{path}: file not found.")
    if path.stat().st_size == 0:
        raise _empty_file(path)
    return suffix


def _empty_file(path: Path) -> DataError:
    return DataError(f"{path.name}: the file is empty. Upload a table with a header row and labelled texts.")


def _no_rows(path: Path) -> DataError:
    return DataError(f"{path.name}: no data rows found (only a header, or nothing). Add labelled rows.")


def _read_excel(path: Path, sheet: Optional[Union[str, int]]) -> pd.DataFrame:
    """One sheet (the first unless named); the other sheets' names go to ``frame.attrs['warnings']``."""
    with pd.ExcelFile(path, engine="openpyxl") as workbook:
        names = list(workbook.sheet_names)
        if isinstance(sheet, str) and sheet not in names:
            raise DataError(f"{path.name}: no sheet named {sheet!r}; sheets: {_names(names)}.")
        chosen = names[0] if sheet is None else sheet
        frame = workbook.parse(chosen)
    if sheet is None and len(names) > 1:
        frame.attrs["warnings"] = [f"{path.name} has {len(names)} sheets; read the first, {names[0]!r} "
                                   f"(others: {_names(names[1:])}). Choose another sheet if needed."]
    return frame


def _decode(raw: bytes, name: str, complete: bool = True) -> Tuple[str, str]:
    """``(text, encoding)`` of a text file's bytes; ``complete=False``: only its start, maybe cut mid-character."""
    has_bom = raw.startswith(_UTF16_BOMS)
    if b"\x00" in raw[:4096] and not has_bom:
        raise DataError(f"{name}: looks like a binary file, not a text table. Export it as CSV (UTF-8).")
    for encoding in _ENCODINGS:
        if encoding == "utf-16" and not has_bom:
            continue
        try:
            return codecs.getincrementaldecoder(encoding)().decode(raw, final=complete), encoding
        except UnicodeDecodeError:
            continue
    raise DataError(f"{name}: unknown text encoding. Save the file as UTF-8.")


def _sniff_delimiter(text: str) -> str:
    try:
        return csv.Sniffer().sniff(text[:20000], delimiters=",;\t|").delimiter
    except csv.Error:
        return ","


def _read_delimited(path: Path, sep: Optional[str]) -> pd.DataFrame:
    text, _ = _decode(path.read_bytes(), path.name)
    if not text.strip():
        raise _empty_file(path)
    sep = sep or _sniff_delimiter(text)
    return _aligned(pd.read_csv(io.StringIO(text), sep=sep, **_CSV_OPTIONS), path, sep)


def _aligned(frame: pd.DataFrame, path: Path, sep: str) -> pd.DataFrame:
    """``frame``, unless pandas took its first column as an index: row 1 has more fields than the header."""
    if not isinstance(frame.index, pd.RangeIndex):
        # The rows would be silently shifted one column to the right.
        raise DataError(
            f"{path.name}: row 1 has more fields than the header ({frame.shape[1]} columns); a text probably "
            f"contains an unquoted {sep!r}. Put texts that contain {sep!r} in double quotes."
        )
    return frame


def _read_json(path: Path) -> pd.DataFrame:
    text, _ = _decode(path.read_bytes(), path.name)
    is_array = text.lstrip().startswith("[")
    return _json_table(pd.read_json(io.StringIO(text), lines=not is_array, dtype=False), path)


def _json_table(frame: pd.DataFrame, path: Path) -> pd.DataFrame:
    """``frame``, unless the JSON held values instead of objects (pandas names the one column 0)."""
    if list(frame.columns) == [0]:
        raise DataError(f"{path.name}: could not be read as a table: expected one JSON object per line "
                        '(like {"text": "...", "label": "..."}) or a list of such objects.')
    return frame




# ---------------------------------------------------------------------------------------------
# Columns
# ---------------------------------------------------------------------------------------------

def detect_columns(frame: pd.DataFrame, text_column: Optional[str] = None,
                   label_column: Optional[str] = None) -> Tuple[str, str]:
    """Return ``(text_column, label_column)``: the given names (checked) or the best guesses."""
    columns = list(frame.columns)
    for given, role in ((text_column, "text"), (label_column, "label")):
        if given is not None and given not in columns:
            raise DataError(f"The {role} column {given!r} is not in the table. Columns found: {_names(columns)}.")
    if len(columns) < 2:
        raise DataError(
            f"The table has one column ({_names(columns)}); it needs a text column and a label column."
        )
    # Names first (for both roles), then content: a label column found by name is never taken as the text. A
    # column of numbers only is never guessed as the texts (it is a target, a score or an id) while another column
    # holds words; with nothing but numbers, only a column headed like a text column ("text") is taken.
    numeric = _numbers_only_columns(frame)
    text = text_column or _by_name([c for c in columns if c not in numeric], TEXT_COLUMN_NAMES, exclude=label_column)
    label = label_column or _by_name(columns, LABEL_COLUMN_NAMES, exclude=text)
    if text is None and all(c in numeric for c in columns if c != label):
        # Only numbers besides the labels: texts only under a header that says so ("text"), else refused.
        text = _by_name(columns, TEXT_COLUMN_NAMES, exclude=label)
        if text is None:
            raise _no_text_column(columns, numeric)
    text = text or _longest_text_column(frame, exclude=label, skip=numeric)
    label = label or _fewest_values_column(frame, exclude=text)
    if text == label:
        raise DataError(f"The text and label columns must differ; both are {text!r}.")
    return text, label


def detect_text_column(frame: pd.DataFrame, text_column: Optional[str] = None) -> str:
    """The column of texts in a table that needs no labels: the given name (checked), the only column, or
    the text column :func:`detect_columns` would choose."""
    if frame.shape[1] == 1 and text_column in (None, frame.columns[0]):
        named = str(frame.columns[0]).lower() in TEXT_COLUMN_NAMES
        if text_column is None and not named and _numbers_only_columns(frame):
            raise _no_text_column(list(frame.columns), _numbers_only_columns(frame))
        return str(frame.columns[0])
    return detect_columns(frame, text_column)[0]


def is_numbers_only(values: pd.Series) -> bool:
    """Whether every filled cell of a column is a number (``3``, ``-0.5``, ``"1e3"``; blank cells aside), and at
    least one is filled: such a column is never taken as the texts unless named."""
    filled = values[~(values.isna() | values.astype(str).str.strip().eq(""))]
    if filled.empty:
        return False
    if pd.api.types.is_numeric_dtype(filled) and not pd.api.types.is_bool_dtype(filled):
        return True
    return bool(filled.astype(str).str.strip().str.fullmatch(_NUMBER).all())


def _numbers_only_columns(frame: pd.DataFrame) -> List[str]:
    return [c for c in frame.columns if is_numbers_only(frame[c])]


def _no_text_column(columns: Sequence[Any], numeric: Sequence[Any]) -> DataError:
    held = "holds" if len(numeric) == 1 else "hold"
    return DataError(f"No column holds text: {_names(numeric)} {held} only numbers"
                     f"{'' if len(numeric) == len(columns) else ' and the other is the label column'}. "
                     "If the numbers are the texts to classify, name the text column (--text-column on the command "
                     "line, text_column= in Python, the Text column in the app).")


def _names(columns: Sequence[Any]) -> str:
    return ", ".join(repr(str(c)) for c in columns)


def _by_name(columns: List[str], names: Sequence[str], exclude: Optional[str]) -> Optional[str]:
    lowered = {c.lower(): c for c in columns if c != exclude}
    return next((lowered[n] for n in names if n in lowered), None)


def _longest_text_column(frame: pd.DataFrame, exclude: Optional[str], skip: Sequence[str] = ()) -> str:
    lengths = {c: frame[c].astype(str).str.len().mean() for c in frame.columns if c != exclude and c not in skip}
    return max(lengths, key=lengths.get)


def _fewest_values_column(frame: pd.DataFrame, exclude: Optional[str]) -> str:
    """The column with the fewest distinct values; columns named like row ids come last."""
    counts = {c: (_ID_COLUMN.fullmatch(c.lower()) is not None, frame[c].nunique(dropna=True))
              for c in frame.columns if c != exclude}
    return min(counts, key=counts.get)


# ---------------------------------------------------------------------------------------------
# Labels
# ---------------------------------------------------------------------------------------------

def normalize_label(value: Any) -> Union[int, str]:
    """One label as an int (for whole numbers, also written as "3" or 3.0) or a stripped string."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        if math.isnan(value):
            raise ValueError("missing label")
        if float(value).is_integer():
            return int(value)
        raise ValueError(f"{value!r} is not a class label (decimal numbers look like a regression target)")
    if value is None:
        raise ValueError("missing label")
    text = str(value).strip()
    if not text:
        raise ValueError("empty label")
    try:
        return int(text)
    except ValueError:
        pass
    if _DECIMAL.fullmatch(text):  # "3.0" is the class 3; "0.5" is not a class label
        return normalize_label(float(text))
    return text


@dataclass(frozen=True)
class LabelMap:
    """The classes of a task, in id order. ``values`` are the labels as the user gave them.

    ``task`` (:data:`finetuner.tasks.TASKS`): "single_label" (one class per text), "multi_label" (any number of the
    classes per text; ``separator`` joins them in one cell) or "regression" (one number per text; ``values`` holds
    the target's name)."""

    values: Tuple[Union[int, str], ...]
    task: str = "single_label"
    separator: str = ";"

    @classmethod
    def from_labels(cls, labels: Iterable[Any], num_labels: Optional[int] = None, task: str = "single_label",
                    separator: Optional[str] = None, target: str = "value") -> "LabelMap":
        """Collect classes from labels: ints keep their order (0..n-1 when ``num_labels`` is given), names sort.
        Multi-label: the names in any of the label sets, sorted; regression: one output named ``target``."""
        if task == "regression":
            return cls((str(target),), task)
        if task == "multi_label":
            sets = normalize_task_labels(labels, task, separator)
            return cls(tuple(sorted({name for names in sets for name in names})), task, separator or ";")
        normalized = normalize_labels(labels)
        distinct = set(normalized)
        if all(isinstance(v, int) for v in distinct):
            if num_labels is not None and distinct <= set(range(num_labels)):
                return cls(tuple(range(num_labels)))
            values: Tuple[Union[int, str], ...] = tuple(sorted(distinct))
        else:
            values = tuple(sorted(str(v) for v in distinct))
        return cls(values)

    @property
    def names(self) -> List[str]:
        return [str(v) for v in self.values]

    @property
    def is_int(self) -> bool:
        return all(isinstance(v, int) for v in self.values)

    def __len__(self) -> int:
        return len(self.values)

    @property
    def id2label(self) -> Dict[int, str]:
        return dict(enumerate(self.names))

    @property
    def label2id(self) -> Dict[str, int]:
        return {name: i for i, name in enumerate(self.names)}

    @property
    def problem_type(self) -> str:
        """transformers' ``config.problem_type`` for this task (which loss its classifiers compute)."""
        return {"multi_label": "multi_label_classification", "regression": "regression"}.get(
            self.task, "single_label_classification")

    def encode(self, labels: Iterable[Any]) -> List[Any]:
        """What training takes for ``labels``: class ids; for multi-label a 0/1 float per class (a label outside
        the classes is a :class:`DataError` naming its row); for regression the numbers."""
        if self.task == "regression":
            return normalize_task_labels(labels, self.task)
        if self.task == "multi_label":
            index = self.label2id
            rows = []
            for row, names in enumerate(normalize_task_labels(labels, self.task, self.separator), start=1):
                unknown = [name for name in names if name not in index]
                if unknown:
                    raise DataError(f"Row {row}: label {unknown[0]!r} is not one of the model's classes "
                                    f"({_names(self.names)}). Fix the label or train a model that has this class.")
                hot = [0.0] * len(self.values)
                for name in names:
                    hot[index[name]] = 1.0
                rows.append(hot)
            return rows
        index = {str(v): i for i, v in enumerate(self.values)}
        ids = []
        for row, label in enumerate(normalize_labels(labels), start=1):
            try:
                ids.append(index[str(label)])
            except KeyError:
                raise DataError(
                    f"Row {row}: label {label!r} is not one of the model's classes ({_names(self.names)}). "
                    "Fix the label or train a model that has this class."
                ) from None
        return ids

    def decode(self, ids: Iterable[int]) -> List[Union[int, str]]:
        return [self.values[int(i)] for i in ids]

    def as_dict(self) -> Dict[str, Any]:
        """What a saved model's finetuner.json keeps besides the labels."""
        return {"task": self.task, "separator": self.separator}


def normalize_task_labels(labels: Iterable[Any], task: str = "single_label",
                          separator: Optional[str] = None) -> List[Any]:
    """The labels as the task reads them: :func:`normalize_labels` (one class each), sorted tuples of names
    (multi-label: :func:`finetuner.tasks.parse_label_sets`) or floats (regression)."""
    labels = list(labels)
    if task == "multi_label":
        return parse_label_sets(labels, separator)
    if task == "regression":
        return parse_targets(labels)
    return normalize_labels(labels)


def normalize_labels(labels: Iterable[Any]) -> List[Union[int, str]]:
    """Normalise every label; the first bad ones are reported with their 1-based row numbers."""
    out: List[Union[int, str]] = []
    bad: List[Tuple[int, str]] = []
    for row, value in enumerate(labels, start=1):
        try:
            out.append(normalize_label(value))
        except ValueError as exc:
            bad.append((row, str(exc)))
    if bad:
        where = listed([f"row {r} ({why})" for r, why in bad])
        raise DataError(f"{len(bad)} label(s) cannot be used: {where}. Give every row a class label.")
    if any(isinstance(v, str) for v in out):
        out = [str(v) for v in out]
    return out


# ---------------------------------------------------------------------------------------------
# Validated tables
# ---------------------------------------------------------------------------------------------

@dataclass
class Split:
    """The training and evaluation rows of one run: what the run pipeline trains and scores on. The app's checked
    table (:class:`finetuner.prepare.PreparedData`) is one; the command line builds one from its files."""

    train_texts: List[str] = field(default_factory=list, repr=False)
    train_labels: List[Any] = field(default_factory=list, repr=False)
    eval_texts: List[str] = field(default_factory=list, repr=False)
    eval_labels: List[Any] = field(default_factory=list, repr=False)
    description: Dict[str, Any] = field(default_factory=dict)  # where the rows came from (files, columns...)

    def summary(self) -> Dict[str, Any]:
        """What the run record says about the rows (JSON-safe, no texts)."""
        return {**self.description, "train_rows": len(self.train_texts), "eval_rows": len(self.eval_texts)}


@dataclass
class LabelledTexts:
    """Validated texts and labels, with where they came from and any warnings about them."""

    texts: List[str]
    labels: List[Any]
    text_column: str = "text"
    label_column: str = "label"
    warnings: List[str] = field(default_factory=list)
    # What the labels are (finetuner.tasks.detect_task): several per text are kept as one cell each, joined by the
    # separator ("joy;love"); numbers as floats.
    task: TaskChoice = field(default_factory=lambda: TaskChoice("single_label", "one label per text"))

    def __len__(self) -> int:
        return len(self.texts)

    @property
    def class_counts(self) -> Dict[str, int]:
        """Rows per class (several labels per text: rows per label; numbers: none)."""
        return label_counts(self.labels, self.task)

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame({self.text_column: self.texts, self.label_column: self.labels})


def validate_texts_and_labels(texts: Sequence[Any], labels: Sequence[Any], *, min_classes: int = 2,
                              what: str = "training data", task: str = "single_label",
                              separator: Optional[str] = None) -> Tuple[List[str], List[Any]]:
    """Check lengths, empty texts, labels and class count; return clean lists (labels as the ``task`` reads them:
    :func:`normalize_task_labels`)."""
    if texts is None or labels is None:
        raise DataError(f"The {what} is missing: give both texts and labels.")
    texts, labels = list(texts), list(labels)
    if not texts:
        raise DataError(f"The {what} is empty: add labelled texts.")
    if len(texts) != len(labels):
        raise DataError(f"The {what} has {len(texts)} texts but {len(labels)} labels; give one label per text.")
    clean_texts = validate_texts(texts, what=what)
    if task != "single_label":
        clean = normalize_task_labels(labels, task, separator)
        distinct = set(clean) if task == "regression" else {name for names in clean for name in names}
        if len(distinct) < min_classes:
            kind = "target value" if task == "regression" else "label"
            raise DataError(f"The {what} has {len(distinct)} distinct {kind}(s); at least {min_classes} are needed "
                            "to learn anything. Add rows with other values.")
        return clean_texts, clean
    clean_labels = normalize_labels(labels)
    classes = set(clean_labels)
    if len(classes) < min_classes:
        only = next(iter(classes))
        raise DataError(
            f"The {what} has a single class ({only!r}); a classifier needs at least {min_classes}. "
            "Add examples of the other classes."
        )
    return clean_texts, clean_labels


def validate_texts(texts: Sequence[Any], what: str = "input", first_row: int = 1) -> List[str]:
    """Texts as strings; missing or blank texts are a :class:`DataError` naming the rows (from ``first_row``)."""
    empty = [row for row, t in enumerate(texts, start=first_row) if is_blank(t)]
    if empty:
        raise DataError(f"The {what} has {len(empty)} empty text(s): row {listed([str(r) for r in empty])}. "
                        "Fill them in or delete those rows.")
    return [str(t) for t in texts]



def table_to_labelled(frame: pd.DataFrame, text_column: Optional[str] = None,
                      label_column: Optional[str] = None, task: str = "auto",
                      separator: Optional[str] = None) -> LabelledTexts:
    """Validate a DataFrame (e.g. an edited grid) into :class:`LabelledTexts`; ``task`` ("auto": read from the
    label cells, :func:`finetuner.tasks.detect_task`) says what the labels are (``separator``: how a cell joins
    several labels, when already known)."""
    if frame is None or frame.shape[0] == 0:
        raise DataError("The table has no rows. Add labelled texts.")
    several = label_columns(frame, label_column)
    if several:  # one 0/1 column per label: the labels whose column holds 1
        text_col = detect_text_column(frame.drop(columns=several), text_column)
        label_col, cells, task = ",".join(several), _label_sets_of_columns(frame, several), "multi_label"
    else:
        text_col, label_col = detect_columns(frame, text_column, label_column)
        cells = frame[label_col].tolist()
    choice = detect_task(cells, task)
    if several:
        choice = TaskChoice("multi_label", f"one 0/1 column per label ({', '.join(several)})", ";")
    if separator and choice.task == "multi_label":
        choice = TaskChoice(choice.task, choice.reason, separator)
    texts, labels = validate_texts_and_labels(
        frame[text_col].tolist(), cells, what=f"table (column {text_col!r} / {label_col!r})", task=choice.task,
        separator=choice.separator)
    if choice.task == "multi_label":
        # Kept as one cell each, joined by ";" whatever the file used: how every later step reads them.
        labels = [join_labels(names, LABEL_SEPARATOR) for names in labels]
        choice = TaskChoice(choice.task, choice.reason, LABEL_SEPARATOR)
    result = LabelledTexts(texts, labels, text_col, label_col, warnings=list(frame.attrs.get("warnings", [])),
                           task=choice)
    result.warnings.extend(_label_warnings(labels, label_col, choice.task) + _length_warnings(texts))
    return result


def label_columns(frame: pd.DataFrame, label_column: Optional[str]) -> List[str]:
    """The label columns when ``label_column`` names several, comma-separated (``anger,joy,fear``: one 0/1 column
    per label, several labels per text), each checked to be in the table; else an empty list."""
    if not isinstance(label_column, str) or "," not in label_column or label_column in frame.columns:
        return []
    names = [name.strip() for name in label_column.split(",") if name.strip()]
    missing = [name for name in names if name not in frame.columns]
    if missing:
        raise DataError(f"The label column(s) {_names(missing)} are not in the table. Columns found: "
                        f"{_names(list(frame.columns))}.")
    if len(names) < 2:
        raise DataError(f"Name two or more label columns separated by commas (one 0/1 column per label); got "
                        f"{label_column!r}.")
    return names


_TRUE, _FALSE = {"1", "1.0", "true", "yes", "y"}, {"0", "0.0", "false", "no", "n", ""}


def _label_sets_of_columns(frame: pd.DataFrame, columns: List[str]) -> List[List[str]]:
    """Per row, the names of the columns that hold 1 (true/yes); a cell that is neither 0 nor 1 is a
    :class:`DataError` naming its row and column."""
    sets: List[List[str]] = [[] for _ in range(len(frame))]
    bad: List[str] = []
    for column in columns:
        for row, value in enumerate(frame[column].tolist()):
            text = "" if value is None or (isinstance(value, float) and math.isnan(value)) else str(value)
            text = text.strip().lower()
            if text in _TRUE:
                sets[row].append(str(column))
            elif text not in _FALSE:
                bad.append(f"row {row + 1} column {column!r} ({str(value)[:20]!r})")
    if bad:
        raise DataError(f"One 0/1 column per label must hold 0 or 1 (true/false, yes/no) in every row: "
                        f"{listed(bad)}. Fix those cells.")
    return sets


def label_counts(labels: Sequence[Any], task: TaskChoice) -> Dict[str, int]:
    """Rows per class: per label for several labels per text (cells joined by ``task.separator``), none for
    numbers."""
    if task.task == "regression":
        return {}
    if task.task == "multi_label":
        sets = parse_label_sets(list(labels), task.separator)
        return dict(sorted(Counter(name for names in sets for name in names).items()))
    return dict(sorted(Counter(str(label) for label in labels).items()))


def _label_warnings(labels: List[Any], label_col: str, task: str = "single_label") -> List[str]:
    if task == "multi_label":
        counts = label_counts(labels, TaskChoice("multi_label", "", LABEL_SEPARATOR))
        rare = sorted((name for name, count in counts.items() if count < FEW_LABEL_ROWS), key=counts.get)
        if not rare:
            return []
        shown = ", ".join(f"{name!r} ({counts[name]})" for name in rare[:_MAX_ROWS_IN_MESSAGE])
        return [f"{len(rare)} label(s) are on fewer than {FEW_LABEL_ROWS} rows: {shown}"
                f"{'…' if len(rare) > _MAX_ROWS_IN_MESSAGE else ''}. That is too few to learn them or to tune their "
                "thresholds; add examples of them, or drop these labels."]
    if task != "single_label":
        return []
    warnings = []
    classes = set(labels)
    if len(classes) > max(50, len(labels) // 2) or (len(labels) >= 5 and len(classes) == len(labels)):
        warnings.append(f"Column {label_col!r} has {len(classes)} distinct labels for {len(labels)} rows; "
                        "is it really the label column (not an ID)?")
    by_case: Dict[str, List[str]] = {}
    for label in classes:
        by_case.setdefault(str(label).casefold(), []).append(str(label))
    clashes = [sorted(group) for group in by_case.values() if len(group) > 1]
    if clashes:
        shown = "; ".join(" / ".join(repr(v) for v in group) for group in clashes[:_MAX_ROWS_IN_MESSAGE])
        warnings.append(f"Labels that differ only by upper/lower case are different classes: {shown}. "
                        "Make them identical if they mean the same class.")
    return warnings


def _length_warnings(texts: List[str]) -> List[str]:
    long_rows = [row for row, text in enumerate(texts, start=1) if len(text) > LONG_TEXT_CHARS]
    if not long_rows:
        return []
    longest = max(long_rows, key=lambda row: len(texts[row - 1]))
    return [f"{len(long_rows)} text(s) are longer than {LONG_TEXT_CHARS:,} characters (longest: row {longest}, "
            f"{len(texts[longest - 1]):,} characters); a model reads at most {_MAX_WINDOWS} windows of max_length "
            "tokens of a text, so the end of these may not be read."]


def load_table(path: PathLike, text_column: Optional[str] = None, label_column: Optional[str] = None,
               sheet: Optional[Union[str, int]] = None, limits: Optional[Limits] = None,
               task: str = "auto") -> LabelledTexts:
    """Read and validate a labelled table file (``task``: see :func:`table_to_labelled`)."""
    frame = read_table(path, sheet=sheet, limits=limits)
    with in_file(path):
        return table_to_labelled(frame, text_column, label_column, task=task)


@contextlib.contextmanager
def in_file(path: PathLike) -> Iterator[None]:
    """Start the message of a :class:`DataError` raised inside with the name of the file it is about."""
    try:
        yield
    except DataError as exc:
        raise DataError(f"{Path(path).name}: {exc}") from None


# ---------------------------------------------------------------------------------------------
# Splitting
# ---------------------------------------------------------------------------------------------

def split_train_eval(texts: Sequence[str], labels: Sequence[Any], eval_fraction: float = 0.2,
                     seed: int = 42, stratify: bool = True
                     ) -> Tuple[List[str], List[Any], List[str], List[Any], List[str]]:
    """Stratified train/eval split.

    Classes with a single example stay in training; when the evaluation share is too small to hold
    every class, the split falls back to a random one. ``stratify=False`` (several labels per text, numbers):
    a random split. Returns ``(train_texts, train_labels, eval_texts, eval_labels, warnings)``.
    """
    texts, labels = list(texts), list(labels)
    if not stratify:
        if len(texts) < 2:
            raise DataError("Too few rows to hold some out for evaluation: add at least two rows.")
        n_eval = max(1, int(round(len(texts) * eval_fraction)))
        train_idx, eval_idx = train_test_split(list(range(len(texts))), test_size=n_eval, random_state=seed)
        train_idx, eval_idx = sorted(train_idx), sorted(eval_idx)
        return ([texts[i] for i in train_idx], [labels[i] for i in train_idx],
                [texts[i] for i in eval_idx], [labels[i] for i in eval_idx], [])
    keys = [str(label) for label in labels]
    counts = Counter(keys)
    warnings: List[str] = []
    singles = [i for i, k in enumerate(keys) if counts[k] < 2]
    rest = [i for i, k in enumerate(keys) if counts[k] >= 2]
    if singles:
        names = sorted({keys[i] for i in singles})
        warnings.append(
            f"{len(names)} class(es) have a single example ({_names(names[:_MAX_ROWS_IN_MESSAGE])}"
            f"{'…' if len(names) > _MAX_ROWS_IN_MESSAGE else ''}); they are used for training only."
        )
    if len(rest) < 2:
        raise DataError("Too few rows to hold some out for evaluation: add at least two examples of a class.")
    n_eval = max(1, int(round(len(rest) * eval_fraction)))
    n_classes = len({keys[i] for i in rest})
    stratify = [keys[i] for i in rest] if n_classes <= n_eval <= len(rest) - n_classes else None
    if stratify is None:
        warnings.append(
            f"The evaluation share ({n_eval} rows) cannot hold all {n_classes} classes; used a random split "
            "instead of a stratified one. Add more rows or raise the evaluation fraction."
        )
    train_idx, eval_idx = train_test_split(rest, test_size=n_eval, random_state=seed, stratify=stratify)
    train_idx = sorted(train_idx + singles)
    eval_idx = sorted(eval_idx)
    return ([texts[i] for i in train_idx], [labels[i] for i in train_idx],
            [texts[i] for i in eval_idx], [labels[i] for i in eval_idx], warnings)
