"""``suggest``: a suggested label with a confidence for every row of a table that has few or no labels, and which
rows to label next (:mod:`finetuner.labelling`)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, List, Optional

import pandas as pd

from ..data import LABEL_COLUMN_NAMES, detect_text_column, in_file, read_table
from ..errors import DataError
from .console import EXIT_OK, Console, UsageError
from .predict import PREDICTION_FORMATS, PredictionWriter
from .processes import is_main_process
from .settings import value_parser

NEXT_COLUMN = "label_next"


def add_parser(subparsers: Any, common: argparse.ArgumentParser) -> None:
    p = subparsers.add_parser(
        "suggest", parents=[common], help="suggest labels for unlabelled rows and which rows to label next",
        description="Add suggested_label, confidence and labelled_by (person / suggestion) to every row: zero-shot "
                    "from the class names when no row is labelled, else from a quick model of the labelled rows "
                    "and the names. Rows that have a label keep it; a labelled_by column (as written here and by "
                    "the app's Label tab) that says 'accepted suggestion' keeps the label but the quick model does "
                    "not learn from it.")
    p.add_argument("--data", metavar="FILE", required=True, help="table of texts, with or without a label column")
    p.add_argument("--classes", metavar="A,B,C",
                   help="the class names, comma-separated (default: the labels present, at least two)")
    p.add_argument("--text-column", metavar="C", help="column of texts (default: detected)")
    p.add_argument("--label-column", metavar="C",
                   help="column of labels, empty where a row is not labelled yet (default: a column named like "
                        "'label', if any)")
    p.add_argument("--output", metavar="OUT",
                   help=f"output file ({' '.join(PREDICTION_FORMATS)}); default: CSV on standard output")
    p.add_argument("--next", type=value_parser(int), default=0, metavar="K",
                   help=f"also list the K rows to label next (most useful first) and number them in a "
                        f"{NEXT_COLUMN} column")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Suggest, write the table, and print a summary (with --next, the rows to label next)."""
    if not is_main_process():
        return EXIT_OK
    if args.next < 0:
        raise UsageError("--next must be 0 or more", "finetuner suggest")
    classes = _class_names(args.classes)
    from ..labelling import (ACCEPTED, SUGGESTION_COLUMNS, accepted_rows, next_to_label, resolve_classes,
                             suggest_labels)  # loads torch

    console = Console(args.quiet)
    data = Path(args.data).expanduser()
    frame = read_table(data)
    with in_file(data):
        label_column = _label_column(frame, args.label_column)
        text_column = detect_text_column(frame.drop(columns=[label_column]) if label_column else frame,
                                         args.text_column)
        texts = frame[text_column].tolist()
        accepted = accepted_rows(frame, label_column)
        if accepted.any():  # classes and labels checked over every label, accepted ones too
            classes = resolve_classes(frame[label_column].tolist(), classes)
        # an accepted suggestion is the model's own guess: it keeps its label but does not teach the model
        labels = ([None if taken else label for label, taken in zip(frame[label_column].tolist(), accepted)]
                  if label_column else None)
        console.info(f"Embedding {len(texts)} texts…")
        suggestions = suggest_labels(texts, classes, labels)
        queue = next_to_label(texts, suggestions=suggestions, k=args.next, eligible=~accepted) if args.next else []
    table = suggestions.to_frame()
    table.loc[accepted, "labelled_by"] = ACCEPTED
    if queue:
        table[NEXT_COLUMN] = pd.Series({row: rank for rank, row in enumerate(queue, start=1)}, dtype="Int64")
    kept = frame.drop(columns=[c for c in (*SUGGESTION_COLUMNS, NEXT_COLUMN) if c in frame.columns])
    writer = PredictionWriter(args.output)
    try:
        writer.write(pd.concat([kept.reset_index(drop=True), table], axis=1))
        writer.commit()
    except BaseException:
        writer.abort()
        raise
    person, taken = int(suggestions.labelled.sum()), int(accepted.sum())
    also = f"{taken} accepted suggestion(s) kept (not learned from), " if taken else ""
    lines = [f"{data.name}: {len(texts)} rows, {person} labelled by a person, {also}"
             f"{len(texts) - person - taken} suggested ({len(suggestions.classes)} classes: "
             f"{', '.join(suggestions.classes)}). {suggestions.reason}"]
    if queue:
        lines.append(f"Label next ({len(queue)} rows; row is the 0-based data row):")
        lines += [f"  row {row}: {suggestions.labels[row]!r} ({suggestions.confidence[row]:.2f}) "
                  f"{_clip(texts[row])}" for row in queue]
    if args.output:
        console.result("\n".join(lines))
        console.info(f"Wrote {len(texts)} rows to {args.output}")
    else:  # the table is on standard output
        console.info("\n".join(lines))
    return EXIT_OK


def _class_names(value: Optional[str]) -> Optional[List[str]]:
    if value is None:
        return None
    names = [name.strip() for name in value.split(",")]
    if any(not name for name in names):
        raise UsageError(f"--classes has an empty name ({value!r}); separate the names with single commas",
                         "finetuner suggest")
    return names


def _label_column(frame: pd.DataFrame, given: Optional[str]) -> Optional[str]:
    if given is not None:
        if given not in frame.columns:
            raise DataError(f"The label column {given!r} is not in the table. Columns found: "
                            f"{', '.join(repr(str(c)) for c in frame.columns)}.")
        return given
    if frame.shape[1] < 2:
        return None
    by_name = {str(c).lower(): c for c in frame.columns}
    return next((by_name[name] for name in LABEL_COLUMN_NAMES if name in by_name), None)


def _clip(text: Any, width: int = 60) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= width else text[:width - 1] + "…"
