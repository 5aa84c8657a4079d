"""``export``: a trained model as a verified ONNX folder (optionally with a dynamic int8 copy)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..data import detect_text_column, in_file, read_table, validate_texts
from .console import EXIT_OK, Console
from .processes import is_main_process
from .run_dir import find_model_dir

FORMATS = ("onnx",)


def add_parser(subparsers: Any, common: argparse.ArgumentParser) -> None:
    p = subparsers.add_parser(
        "export", parents=[common], help="a trained model as an ONNX folder, checked against the model",
        description="Write the model as one ONNX graph (tokens in, logits out) with its tokenizer, config and "
                    "labels: usable with onnxruntime, optimum and transformers.js. The graph is checked against "
                    "the model on sample texts and refused when a label differs. Without --output it goes into "
                    "the model folder's onnx/, and predict, serve and the app then use it (ONNX Runtime).")
    p.add_argument("--model", metavar="DIR", required=True, help="a run directory or a saved model directory")
    p.add_argument("--format", choices=FORMATS, default="onnx", help="export format (default: onnx)")
    p.add_argument("--quantize", choices=("int8",), help="also write model_quantized.onnx (dynamic int8)")
    p.add_argument("--output", metavar="DIR", help="folder to write (default: the model folder's onnx/)")
    p.add_argument("--check-data", metavar="TABLE",
                   help="check the graph on the texts of this table instead of built-in sample sentences")
    p.add_argument("--text-column", metavar="C", help="column of texts in --check-data (default: detected)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Export, check, and print what was written and how it compared."""
    if not is_main_process():
        return EXIT_OK
    from ..classifier import ONNX_DIR, TextClassifier
    from ..onnx_export import export_onnx

    console = Console(args.quiet)
    model_dir = find_model_dir(args.model)
    classifier = TextClassifier.load(model_dir, backend="torch")
    texts = None
    if args.check_data:
        frame = read_table(args.check_data)
        with in_file(args.check_data):
            column = detect_text_column(frame, args.text_column)
            texts = validate_texts(frame[column].tolist(), what=f"column {column!r}")
    output = Path(args.output).expanduser() if args.output else model_dir / ONNX_DIR
    result = export_onnx(classifier, output, quantize=args.quantize, texts=texts)
    console.result(f"Wrote {', '.join(result.files)} to {result.directory}")
    console.info(f"fp32 graph: {result.fp32.line()}")
    if result.int8 is not None:
        console.info(f"int8 graph: {result.int8.line()}")
    console.info(f"Inputs: {', '.join(result.inputs)}; texts are cut at {result.max_length} tokens.")
    return EXIT_OK
