"""``evaluate``: the metrics of a trained model on a labelled table, as JSON (and a per-class report)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Dict

from ..data import in_file, load_table
from .console import EXIT_OK, Console
from .processes import Processes
from ..files import write_json_atomic as write_json
from .run_dir import load_model
from .settings import value_parser


def add_parser(subparsers: Any, common: argparse.ArgumentParser) -> None:
    p = subparsers.add_parser(
        "evaluate", parents=[common], help="metrics of a trained model on a labelled table",
        description="Print the metrics of a trained model on a labelled table as JSON.")
    p.add_argument("--model", metavar="DIR", required=True, help="a run directory or a saved model directory")
    p.add_argument("--data", metavar="TEST", required=True, help="labelled table")
    p.add_argument("--text-column", metavar="C", help="column of texts (default: detected)")
    p.add_argument("--label-column", metavar="C",
                   help="column of labels (default: detected); for several labels per text also comma-separated 0/1 "
                        "columns, one per label (a,b,c)")
    p.add_argument("--report", action="store_true", help="also print a per-class table and the confusion matrix")
    p.add_argument("--output", metavar="FILE.json", help="also write the metrics and per-class report there")
    p.add_argument("--batch-size", type=value_parser(int), metavar="N",
                   help="texts per batch (default: the model's eval_batch_size)")
    p.add_argument("--backend", choices=("auto", "torch", "onnx"), default="auto",
                   help="auto (default): ONNX Runtime when the model folder holds an export (finetuner export), "
                        "else PyTorch; onnx: build the graph now if there is none")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Print the metrics JSON (and with --report a per-class table); with --output also write them."""
    processes = Processes()
    console = Console(args.quiet, processes.is_main)
    finetuner = load_model(args.model, args.batch_size, args.backend)
    table = load_table(args.data, args.text_column, args.label_column, task=finetuner.label_map.task)
    for message in table.warnings:
        console.warn(message)
    with in_file(args.data):
        metrics = finetuner.evaluate_model(table.texts, table.labels)
    result = {**metrics, "examples": len(table)}
    report = finetuner.report or {}
    if processes.is_main:
        console.result(json.dumps(result, indent=2))
        if args.report:
            console.result(format_report(report))
        if args.output:
            target = Path(args.output).expanduser()
            target.parent.mkdir(parents=True, exist_ok=True)
            kept = ("labels", "per_class", "confusion_matrix", "reliability", "scatter", "task")
            write_json(target, {"metrics": result, **{k: report[k] for k in kept if k in report}})
    processes.finish()
    return EXIT_OK


def format_report(report: Dict[str, Any]) -> str:
    """A per-class precision/recall/F1/support table (several labels per text: with each label's threshold) and
    the confusion matrix, as text; a number per text has neither (its metrics say it all)."""
    if report.get("task") == "regression":
        return "\nA number per text: no per-class table (the metrics above are the report; --output keeps the points)."
    labels = report.get("labels") or list(report.get("per_class", {}))
    width = max([len("class")] + [len(name) for name in labels])
    thresholds = report.get("task") == "multi_label"
    lines = ["", f"{'class':<{width}}  precision  recall  f1-score  support" + ("  threshold" if thresholds else "")]
    for name in labels:
        row = report["per_class"][name]
        lines.append(f"{name:<{width}}  {row['precision']:>9.4f}  {row['recall']:>6.4f}  {row['f1-score']:>8.4f}  "
                     f"{int(row['support']):>7d}" + (f"  {row['threshold']:>9.3f}" if thresholds else ""))
    matrix = report.get("confusion_matrix") or []
    if matrix:
        cell = max([len(name) for name in labels] + [len(str(v)) for row in matrix for v in row])
        lines += ["", "Confusion matrix (rows: true class, columns: predicted class)",
                  " " * width + "  " + "  ".join(f"{name:>{cell}}" for name in labels)]
        lines += [f"{name:<{width}}  " + "  ".join(f"{v:>{cell}}" for v in row) for name, row in zip(labels, matrix)]
    return "\n".join(lines)
