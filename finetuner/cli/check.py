"""``check``: know your data before training: likely label errors, duplicates, and leakage into an evaluation file."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, List

import numpy as np

from ..data import (LabelMap, detect_columns, detect_text_column, in_file, normalize_labels, read_table,
                    validate_texts)
from ..predictions import write_csv
from ..tasks import TASK_NAMES, TASKS, detect_task
from .console import EXIT_OK, Console, UsageError
from .processes import is_main_process
from .settings import value_parser

_SHOWN_ISSUES = 5


def add_parser(subparsers: Any, common: argparse.ArgumentParser) -> None:
    p = subparsers.add_parser(
        "check", parents=[common], help="find likely label errors, duplicates and train/eval leakage",
        description="Flag rows whose label looks wrong (cross-validated sentence-embedding model, ranked with "
                    "cleanlab), exact and near duplicate texts, and, with --eval, evaluation texts that are also "
                    "in the training file.")
    p.add_argument("--data", metavar="FILE", required=True, help="labelled table to check")
    p.add_argument("--text-column", metavar="C", help="column of texts (default: detected)")
    p.add_argument("--label-column", metavar="C", help="column of labels (default: detected)")
    p.add_argument("--task", choices=TASKS, default="auto",
                   help="what the labels are: auto (read from the label column), single_label, multi_label "
                        "(several labels per text, e.g. 'joy;love') or regression (numbers: the label check does "
                        "not apply, duplicates are still found)")
    p.add_argument("--output", metavar="ISSUES.csv",
                   help="write the flagged rows there, most suspicious first (row is the 0-based data row)")
    p.add_argument("--eval", metavar="FILE", help="evaluation table: report its texts that are also in --data")
    p.add_argument("--folds", type=value_parser(int), default=5, metavar="N",
                   help="cross-validation folds for the label check (default: 5)")
    p.add_argument("--threshold", type=value_parser(float), default=0.95, metavar="S",
                   help="cosine similarity from which texts are near duplicates (default: 0.95)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Print a short summary; with --output write the flagged rows as a formula-safe CSV."""
    if not is_main_process():  # the check runs in one process
        return EXIT_OK
    if args.folds < 2:
        raise UsageError("--folds must be at least 2", "finetuner check")
    if not 0 < args.threshold <= 1:
        raise UsageError("--threshold must be above 0 and at most 1", "finetuner check")
    output = Path(args.output).expanduser() if args.output else None
    if output is not None and output.suffix.lower() != ".csv":
        raise UsageError(f"--output must be a .csv file (got {output.name!r})", "finetuner check")
    # Imported here: they load torch, which --help and bad command lines do not need.
    from ..duplicates import EXACT_EVAL, EXACT_TRAIN, NEAR_EVAL, NEAR_TRAIN, find_duplicates
    from ..embeddings import embed
    from ..label_issues import (check_classes, check_label_sets, find_label_issues,
                                label_check_not_applicable)

    console = Console(args.quiet)
    data = Path(args.data).expanduser()
    frame = read_table(data)
    with in_file(data):
        text_column, label_column = detect_columns(frame, args.text_column, args.label_column)
        texts = validate_texts(frame[text_column].tolist(), what=f"column {text_column!r}")
        cells = frame[label_column].tolist()
        task = detect_task(cells, args.task)
        not_checked = label_check_not_applicable(task, label_column)
        if task.task == "multi_label":  # before the slow part
            label_map = LabelMap.from_labels(cells, task="multi_label", separator=task.separator)
            check_label_sets(np.asarray(label_map.encode(cells)), label_map.names, label_column)
            kinds = f"{len(label_map)} labels, several per text (separator {task.separator!r})"
        elif task.task == "single_label":
            labels = normalize_labels(cells)
            check_classes(labels, label_column)
            kinds = f"{len(set(labels))} classes"
        else:
            kinds = TASK_NAMES[task.task]
    eval_texts = _eval_texts(Path(args.eval).expanduser(), text_column) if args.eval else None
    console.info(f"Embedding {len(texts)} texts…")
    vectors = embed(texts)
    with in_file(data):
        issues = None if not_checked else find_label_issues(frame, text_column, label_column, folds=args.folds,
                                                            embeddings=vectors, task=task.task)
        duplicates = find_duplicates(texts, eval_texts, threshold=args.threshold, train_embeddings=vectors)
    counts = duplicates.counts()
    lines = [f"{data.name}: {len(frame)} rows, {kinds} (text column {text_column!r}, "
             f"label column {label_column!r})",
             f"Label issues: not checked. {not_checked}" if issues is None else
             f"Label issues: {len(issues)} row(s) ({len(issues) / len(frame):.1%}) may be mislabelled",
             f"Duplicates within {data.name}: {counts[EXACT_TRAIN]} exact, {counts[NEAR_TRAIN]} near "
             f"(similarity >= {args.threshold:g})"]
    if eval_texts is not None:
        lines.append(f"Leakage into {Path(args.eval).name}: {counts[EXACT_EVAL]} of {len(eval_texts)} evaluation "
                     f"texts also in {data.name}, {counts[NEAR_EVAL]} more nearly identical")
    for item in ([] if issues is None else issues.head(_SHOWN_ISSUES if output is None else 0).itertuples()):
        lines.append(f"  row {item.row}: {item.given_label!r} -> {item.suggested_label!r} (score {item.score:.2f}) "
                     f"{_clip(item.text)}")
    console.result("\n".join(lines))
    if output is not None and issues is None:
        console.info(f"Nothing written to {output}: the label check does not apply to {TASK_NAMES[task.task]}.")
    elif output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        write_csv(issues, output)
        console.info(f"Wrote {len(issues)} flagged rows to {output}")
    return EXIT_OK


def _eval_texts(path: Path, text_column: str) -> List[str]:
    """The texts of the evaluation table (its column named like the training one, or detected)."""
    frame = read_table(path)
    with in_file(path):
        column = detect_text_column(frame, text_column if text_column in frame.columns else None)
        return validate_texts(frame[column].tolist(), what=f"column {column!r}")


def _clip(text: str, width: int = 60) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= width else text[:width - 1] + "…"

