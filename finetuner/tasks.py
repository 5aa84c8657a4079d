"""What kind of target a table's label column holds, and how its cells are read: one class per text
(``single_label``), several classes per text (``multi_label``: cells like ``joy;love`` or a JSON list), or a number
(``regression``). :func:`detect_task` is the pure decision (it returns a reason); the parsers name the rows that do
not fit.
"""

from __future__ import annotations

import json
import math
import numbers
import re
from collections import Counter
from dataclasses import dataclass
from typing import Any, Iterable, List, Optional, Sequence, Tuple

from .errors import DataError

TASKS = ("auto", "single_label", "multi_label", "regression")
TASK_NAMES = {"single_label": "one label per text", "multi_label": "several labels per text",
              "regression": "a number per text (regression)"}
# Separators a multi-label cell may use, in the order they are tried.
SEPARATORS = (";", "|", ",")
# How finetuner itself writes several labels in one cell (predictions, the grid, tables it has read).
LABEL_SEPARATOR = ";"
# A numeric column is a regression target when it has at least this many distinct values, or any value that is
# not a whole number (whole numbers with few values are class codes: 0/1, 1-5 stars).
REGRESSION_MIN_DISTINCT = 20
# A label column this share of whose cells are numbers is a numeric target with mistakes in it (when it would be one).
NUMBERS_SHARE = 0.9
_MAX_ROWS_IN_MESSAGE = 5
_NUMBER = re.compile(r"\s*[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?\s*")


@dataclass(frozen=True)
class TaskChoice:
    """The task of a label column, why, and for ``multi_label`` the separator its cells use."""

    task: str
    reason: str
    separator: Optional[str] = None


def is_blank(value: Any) -> bool:
    """None, NaN, or a cell that is empty or only whitespace."""
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return isinstance(value, (str, numbers.Number)) and not str(value).strip()


def _is_list(value: Any) -> bool:
    return isinstance(value, (list, tuple, set, frozenset)) or (
        isinstance(value, str) and value.strip().startswith("[") and value.strip().endswith("]"))


def as_number(value: Any) -> Optional[float]:
    """``value`` as a float when it is a number (or a string that is one), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, numbers.Real):
        return None if math.isnan(value) else float(value)
    if hasattr(value, "item") and not isinstance(value, str):  # numpy scalars
        return as_number(value.item())
    if isinstance(value, str) and _NUMBER.fullmatch(value):
        return float(value)
    return None


def _separator(cells: Sequence[str]) -> Optional[str]:
    """The separator that splits label cells into labels that recur on their own, or None."""
    for sep in SEPARATORS:
        split = [cell for cell in cells if sep in cell]
        if not split:
            continue
        parts = [part.strip() for cell in split for part in cell.split(sep)]
        if any(not part for part in parts):
            continue
        alone = {cell for cell in cells if sep not in cell}
        seen = Counter(parts)
        # A comma also stands inside class names ("Business, Finance", always in the same cell): there a part
        # counts when it comes alone or in several different cells; ";" and "|" part labels, so recurring will do.
        combinations = Counter(part.strip() for cell in set(split) for part in cell.split(sep))
        recurs = combinations if sep == "," else seen
        # Label sets, not class names or free text: most parts are whole cells elsewhere or recur, and they are
        # short. Counted per occurrence, so that one bad cell among few labels (a mixed separator, a typo) does not
        # hide the rest.
        known = sum(count for part, count in seen.items() if part in alone or recurs[part] >= 2)
        if known >= 0.8 * len(parts) and max(len(part) for part in seen) <= 60:
            return sep
    return None


def detect_task(labels: Iterable[Any], asked: str = "auto") -> TaskChoice:
    """The task for these label cells: ``asked`` when it is not "auto", else ``multi_label`` when cells hold lists
    or separated labels, ``regression`` when every cell is a number and they are not class codes (a fraction, or at
    least :data:`REGRESSION_MIN_DISTINCT` distinct values), else ``single_label``."""
    if asked not in TASKS:
        raise DataError(f"task={asked!r} is not supported; choose one of {', '.join(TASKS)}.")
    cells = [value for value in labels if not is_blank(value)]
    listed = [value for value in cells if _is_list(value)]
    lists = bool(cells) and len(listed) >= len(cells) / 2  # one cell like "[deleted]" does not make a list column
    strings = [str(value).strip() for value in cells if not (lists and _is_list(value))]
    if asked == "multi_label" or (asked == "auto" and lists):
        sep = _separator(strings) or next((s for s in SEPARATORS if any(s in c for c in strings)), ";")
        return TaskChoice("multi_label", "the label cells hold lists of labels" if lists and asked == "auto"
                          else "set in the training settings", sep)
    if asked != "auto":
        return TaskChoice(asked, "set in the training settings")
    values = [as_number(value) for value in cells]
    numeric = [v for v in values if v is not None]
    if cells and len(numeric) >= NUMBERS_SHARE * len(cells) and len(numeric) < len(cells):
        if _is_target(set(numeric)):
            # A target of numbers with a few cells of text: parse_targets names those rows.
            return TaskChoice("regression", f"{len(numeric)} of {len(cells)} label cells are numbers")
    if cells and len(numeric) == len(cells):
        distinct = set(values)
        if _is_target(distinct):
            fractional = any(not float(v).is_integer() for v in distinct)
            why = "fractions" if fractional else f"{len(distinct)} distinct whole numbers with gaps"
            return TaskChoice("regression", f"the label column holds numbers ({why}): predicting a number "
                                            "(set task=single_label to treat them as classes)")
        return TaskChoice("single_label", "the label column holds whole numbers: class codes")
    sep = _separator(strings)
    if sep is not None:
        several = sum(1 for cell in strings if sep in cell)
        return TaskChoice("multi_label", f"{several} label cell(s) hold several labels separated by {sep!r}", sep)
    return TaskChoice("single_label", "one label per text")


def _is_target(distinct: set) -> bool:
    """Numbers that are a quantity, not class codes: any fraction, or at least :data:`REGRESSION_MIN_DISTINCT`
    whole numbers that are not the codes 0..n-1 or 1..n (20 Newsgroups' 0-19 are classes; years or prices are not)."""
    if any(not float(v).is_integer() for v in distinct):
        return True
    codes = {int(v) for v in distinct}
    runs = (set(range(len(codes))), set(range(1, len(codes) + 1)))
    return len(codes) >= REGRESSION_MIN_DISTINCT and codes not in runs


def listed(items: Sequence[str]) -> str:
    """The first few of ``items`` for a message, comma-separated, then how many more ("…, row 5 and 12 more")."""
    more = f" and {len(items) - _MAX_ROWS_IN_MESSAGE} more" if len(items) > _MAX_ROWS_IN_MESSAGE else ""
    return f"{', '.join(items[:_MAX_ROWS_IN_MESSAGE])}{more}"


def parse_label_sets(labels: Sequence[Any], separator: Optional[str] = ";",
                     what: str = "label column") -> List[Tuple[str, ...]]:
    """Each multi-label cell as a sorted tuple of label names: a list (Python, or a JSON list in a string) or a
    string split at ``separator``. An empty cell or list is a text with none of the labels (allowed); a cell that
    mixes separators is a :class:`DataError` naming the rows."""
    separator = separator or ";"
    others = [s for s in SEPARATORS if s != separator]
    out: List[Tuple[str, ...]] = []
    bad: List[str] = []
    for row, value in enumerate(labels, start=1):
        if is_blank(value):
            out.append(())
            continue
        if isinstance(value, str) and _is_list(value):
            try:
                value = json.loads(value)
            except ValueError:
                bad.append(f"row {row} ({value[:40]!r} is not a JSON list)")
                out.append(())
                continue
        if isinstance(value, (list, tuple, set, frozenset)):
            parts = [str(part).strip() for part in value]
        else:
            text = str(value).strip()
            parts = [part.strip() for part in text.split(separator)]
            mixed = [other for other in others if other in text]
            if mixed:
                bad.append(f"row {row} ({text[:40]!r} mixes {separator!r} with {mixed[0]!r})")
        if any(not part for part in parts):
            bad.append(f"row {row} (an empty label in {str(value)[:40]!r})")
        out.append(tuple(sorted(set(part for part in parts if part))))
    if bad:
        raise DataError(f"The {what} cannot be read as several labels per text: {listed(bad)}. Separate the "
                        f"labels of a cell with {separator!r} only (e.g. 'joy{separator}love') or write a JSON list.")
    return out


def parse_targets(values: Sequence[Any], what: str = "label column") -> List[float]:
    """Each regression target as a float; cells that are not numbers are a :class:`DataError` naming the rows."""
    out: List[float] = []
    bad: List[str] = []
    for row, value in enumerate(values, start=1):
        number = as_number(value)
        if number is None or not math.isfinite(number):
            bad.append(f"row {row} ({'empty' if is_blank(value) else repr(str(value)[:40])})")
        out.append(number if number is not None else float("nan"))
    if bad:
        raise DataError(f"The {what} must hold a number in every row to predict a number; these cells are not "
                        f"numbers: {listed(bad)}. Fix those cells or delete the rows (or set task=single_label "
                        "to treat the values as classes).")
    return out


def join_labels(labels: Iterable[str], separator: str = LABEL_SEPARATOR) -> str:
    """A label set as one cell (``joy;love``), how predictions and the grid write it."""
    return separator.join(labels)
