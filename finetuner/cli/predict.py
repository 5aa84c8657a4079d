"""``predict``: the label and every class's probability for each row of a table, read and written in chunks."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any, Optional, TextIO

import pandas as pd

from ..data import detect_text_column, in_file, iter_table_chunks, validate_texts
from ..errors import DataError
from ..files import staging_path
from ..predictions import neutralize_frame, predictions_table
from .console import EXIT_OK, Console, UsageError
from .processes import is_main_process
from .run_dir import load_model
from .settings import value_parser

PREDICTION_FORMATS = (".csv", ".tsv", ".jsonl")


def add_parser(subparsers: Any, common: argparse.ArgumentParser) -> None:
    p = subparsers.add_parser(
        "predict", parents=[common], help="label and class probabilities for every row of a table",
        description="Add the predicted label, its probability and every class's probability to each row. "
                    "Large files are read and written in chunks.")
    p.add_argument("--model", metavar="DIR", required=True, help="a run directory or a saved model directory")
    p.add_argument("--data", metavar="IN", required=True, help="table of texts (labels are not needed)")
    p.add_argument("--text-column", metavar="C", help="column of texts (default: detected)")
    p.add_argument("--output", metavar="OUT",
                   help=f"output file ({' '.join(PREDICTION_FORMATS)}); default: CSV on standard output")
    p.add_argument("--chunk-rows", type=value_parser(int), default=2048, metavar="N",
                   help="rows read, predicted and written at a time (default: 2048)")
    p.add_argument("--batch-size", type=value_parser(int), metavar="N",
                   help="texts per model batch (default: the model's eval_batch_size)")
    p.add_argument("--backend", choices=("auto", "torch", "onnx"), default="auto",
                   help="auto (default): ONNX Runtime when the model folder holds an export (finetuner export), "
                        "else PyTorch; onnx: build the graph now if there is none")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Predict chunk by chunk; the output file appears only once every row has been written."""
    if not is_main_process():  # prediction runs in one process; the others of a launch have nothing to do
        return EXIT_OK
    if args.chunk_rows < 1:
        raise UsageError("--chunk-rows must be at least 1", "finetuner predict")
    console = Console(args.quiet)
    finetuner = load_model(args.model, args.batch_size, args.backend)
    data = Path(args.data).expanduser()
    writer: Optional[PredictionWriter] = None
    bar = None
    text_column = None
    done = 0
    try:
        for chunk in iter_table_chunks(data, args.chunk_rows):
            if writer is None:  # the first chunk: the file is a readable table
                with in_file(data):
                    text_column = detect_text_column(chunk, args.text_column)
                for message in chunk.attrs.get("warnings", []):
                    console.warn(message)
                writer = PredictionWriter(args.output)
                if sys.stderr.isatty() and not args.quiet:
                    from tqdm.auto import tqdm
                    bar = tqdm(unit="rows", desc="Predicting", file=sys.stderr, dynamic_ncols=True)
            with in_file(data):
                texts = validate_texts(chunk[text_column].tolist(), what=f"column {text_column!r}",
                                       first_row=done + 1)
            table = predictions_table(finetuner, texts).drop(columns="text")
            kept = chunk.drop(columns=[c for c in table.columns if c in chunk.columns])
            writer.write(pd.concat([kept, table], axis=1))
            done += len(chunk)
            if bar is not None:
                bar.update(len(chunk))
        writer.commit()
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    finally:
        if bar is not None:
            bar.close()
    console.info(f"Predicted {done} rows of {data.name} -> {args.output or 'standard output'}")
    return EXIT_OK


class PredictionWriter:
    """Writes prediction chunks as CSV/TSV (formula-safe) or JSONL, to a file (atomically) or stdout."""

    def __init__(self, output: Optional[str]):
        self.path: Optional[Path] = None
        self._staging: Optional[Path] = None
        self.format = ".csv"
        if output is None:
            self.stream: TextIO = sys.stdout
        else:
            self.path = Path(output).expanduser()
            self.format = self.path.suffix.lower()
            if self.format not in PREDICTION_FORMATS:
                raise DataError(f"{self.path.name}: unsupported output type {self.format or '(no extension)'!r}. "
                                f"Use one of: {', '.join(PREDICTION_FORMATS)}.")
            if self.path.is_dir():
                raise DataError(f"{self.path} is a directory; give a file name such as predictions.csv.")
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._staging = staging_path(self.path)
            self.stream = open(self._staging, "w", encoding="utf-8", newline="")
        self._header = True

    def write(self, frame: pd.DataFrame) -> None:
        if self.format == ".jsonl":
            text = frame.to_json(orient="records", lines=True, force_ascii=False, double_precision=6)
            self.stream.write(text.rstrip("\n") + "\n")
        else:
            neutralize_frame(frame).to_csv(self.stream, sep="\t" if self.format == ".tsv" else ",", index=False,
                                           header=self._header)
        self._header = False
        self.stream.flush()

    def commit(self) -> None:
        """Move the finished file into place."""
        if self._staging is not None:
            self.stream.close()
            os.replace(self._staging, self.path)
            self._staging = None

    def abort(self) -> None:
        """Remove the unfinished file."""
        if self._staging is not None:
            self.stream.close()
            self._staging.unlink(missing_ok=True)
            self._staging = None
