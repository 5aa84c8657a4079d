"""Several labels per text and numbers (issue #23): GoEmotions (28 emotions, multi-label) and EmoBank (valence,
regression) with the bundled MiniLM, through the Python API and the command line.

    python -m bench.tasks baselines goemotions|emobank           # finetuner.baselines for the task
    python -m bench.tasks method goemotions|emobank METHOD [--rows N] [--epochs E]
    python -m bench.tasks cli goemotions|emobank [--rows N]      # python -m finetuner train on its defaults

Each writes one JSON line per measurement to bench/results/tasks.jsonl (with the machine's load average);
bench/results/tasks.md is written from them by hand. Data: FINETUNER_BENCH_DATA or /work/shared/datasets.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict

import pandas as pd

from .common import append_jsonl

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("FINETUNER_BENCH_DATA", "/work/shared/datasets"))
OUT = ROOT / "bench" / "results" / "tasks.jsonl"
LABEL_COLUMN = {"goemotions": "labels", "emobank": "valence"}
MAIN_METRIC = {"goemotions": "f1_macro", "emobank": "pearson"}


def _load(dataset: str, split: str, rows: int = 0):
    frame = pd.read_csv(DATA / dataset / f"{split}.csv", keep_default_na=False)
    if rows:
        frame = frame.sample(n=min(rows, len(frame)), random_state=0)
    return frame["text"].astype(str).tolist(), frame[LABEL_COLUMN[dataset]].tolist()


def _record(values: Dict[str, Any]) -> None:
    append_jsonl(OUT, values)


def baselines(dataset: str, rows: int) -> None:
    from finetuner.baselines import score_baselines

    train, test = _load(dataset, "train", rows), _load(dataset, "test")
    for name, scores in score_baselines(*train, *test).items():
        _record({"dataset": dataset, "what": "baseline", "name": name, "train_rows": len(train[0]),
                 **{k: round(v, 4) for k, v in scores.items()}})


def method(dataset: str, name: str, rows: int, epochs: float) -> None:
    from finetuner import LLMFinetuner, TrainConfig

    train, test = _load(dataset, "train", rows), _load(dataset, "test")
    started = time.perf_counter()
    finetuner = LLMFinetuner()
    settings = {"method": name, **({"epochs": epochs} if epochs else {})}
    finetuner.fine_tune(*train, config=TrainConfig(**settings))
    trained = time.perf_counter() - started
    metrics = finetuner.evaluate_model(*test)
    _record({"dataset": dataset, "what": "method", "name": name, "epochs": finetuner.config.epochs,
             "train_rows": len(train[0]), "train_seconds": round(trained, 1),
             "reason": finetuner.method_choice.reason, **{k: round(v, 4) for k, v in metrics.items()}})


def cli(dataset: str, rows: int) -> None:
    """The command line on its defaults (only the label column named), the whole process timed."""
    with tempfile.TemporaryDirectory(prefix="finetuner-bench-") as directory:
        train = DATA / dataset / "train.csv"
        if rows:
            train = Path(directory) / "train.csv"
            pd.read_csv(DATA / dataset / "train.csv", keep_default_na=False).sample(
                n=rows, random_state=0).to_csv(train, index=False)
        command = [sys.executable, "-m", "finetuner", "train", "--data", str(train),
                   "--eval", str(DATA / dataset / "test.csv"), "--label-column", LABEL_COLUMN[dataset],
                   "--output", str(Path(directory) / "run")]
        started = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
        seconds = time.perf_counter() - started
        run_file = Path(directory) / "run" / "run.json"
        record = json.loads(run_file.read_text()) if run_file.is_file() else {}
        _record({"dataset": dataset, "what": "cli", "train_rows": rows or "all", "exit": done.returncode,
                 "seconds": round(seconds, 1), "command": " ".join(command[1:]),
                 "metrics": record.get("metrics"), "method": (record.get("method_choice") or {}).get("reason"),
                 "stage_seconds": (record.get("training") or {}).get("stage_seconds"),
                 "baselines": record.get("baselines"), "tail": done.stdout[-1500:] + done.stderr[-1500:]})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("part", choices=("baselines", "method", "cli"))
    parser.add_argument("dataset", choices=tuple(LABEL_COLUMN))
    parser.add_argument("method", nargs="?", default="auto")
    parser.add_argument("--rows", type=int, default=0, help="a seeded sample of the training rows (0: all)")
    parser.add_argument("--epochs", type=float, default=0)
    args = parser.parse_args()
    if args.part == "baselines":
        baselines(args.dataset, args.rows)
    elif args.part == "method":
        method(args.dataset, args.method, args.rows, args.epochs)
    else:
        cli(args.dataset, args.rows)


if __name__ == "__main__":
    main()
