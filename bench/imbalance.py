"""Skewed classes (issue #23): AG News with one class cut to a small share of the training rows.

    python -m bench.imbalance make  [--rows 8000] [--rare Business] [--share 0.03] [--seed 0] [--out DIR]
    python -m bench.imbalance forms [--rows 2000] [--methods head,head_finetune] [--powers 0,0.5,1] [--seed 0]
    python -m bench.imbalance cli   --run DIR [DIR ...]        # figures of CLI runs (run folders) as JSON

``make`` writes DIR/train.csv (the skewed training rows) and DIR/test.csv (the untouched 2,001-row test file):
``--rows`` rows drawn from train.csv (all 8,000 by default), then the ``--rare`` class cut to ``--share`` of the
training rows (its rows drawn with ``--seed``). ``forms`` trains through the Python API with each class-weight
form (``(1 / rows) ** power``: 0 = unweighted, 0.5 tempered, 1 scikit-learn's "balanced") and scores the test
file: macro-F1, the rare class's recall, precision and F1, accuracy, ECE. ``cli`` reads the run folders that
``python -m finetuner train`` wrote. Results: bench/results/imbalance.json (appended), imbalance.md (by hand from it).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Sequence

from .common import DATASETS_DIR, RESULTS_DIR, load_avg, load_split

RESULTS = RESULTS_DIR / "imbalance.json"


def skewed_split(rows: int, rare: str, share: float, seed: int):
    """(train texts, train labels): ``rows`` AG News training rows, then ``rare`` cut to ``share`` of them."""
    import numpy as np

    texts, labels = load_split("agnews", "train")
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(texts))[:rows] if rows < len(texts) else np.arange(len(texts))
    others = [i for i in order if labels[i] != rare]
    rare_rows = [i for i in order if labels[i] == rare]
    keep = int(round(share * len(others) / (1 - share)))  # keep / (others + keep) = share
    chosen = sorted(others + rng.choice(rare_rows, size=min(keep, len(rare_rows)), replace=False).tolist())
    return [texts[i] for i in chosen], [labels[i] for i in chosen]


def make(args: argparse.Namespace) -> None:
    import pandas as pd

    texts, labels = skewed_split(args.rows, args.rare, args.share, args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"text": texts, "label": labels}).to_csv(out / "train.csv", index=False)
    test = pd.read_csv(DATASETS_DIR / "agnews" / "test.csv", keep_default_na=False)
    test.to_csv(out / "test.csv", index=False)
    counts = pd.Series(labels).value_counts().to_dict()
    print(json.dumps({"train": str(out / "train.csv"), "rows": len(texts), "counts": counts}))


def scores(truth: Sequence[str], predicted: Sequence[str], probabilities, classes: List[str],
           rare: str) -> Dict[str, float]:
    from sklearn.metrics import accuracy_score, f1_score, precision_recall_fscore_support

    from finetuner.metrics import expected_calibration_error

    p, r, f, _ = precision_recall_fscore_support(truth, predicted, labels=[rare], zero_division=0)
    truth_ids = [classes.index(t) for t in truth]
    return {"macro_f1": round(f1_score(truth, predicted, average="macro"), 4),
            "accuracy": round(accuracy_score(truth, predicted), 4),
            "rare_recall": round(float(r[0]), 4), "rare_precision": round(float(p[0]), 4),
            "rare_f1": round(float(f[0]), 4),
            "ece": round(float(expected_calibration_error(probabilities, truth_ids)), 4)}


def forms(args: argparse.Namespace) -> None:
    import numpy as np

    from finetuner import LLMFinetuner, TrainConfig
    from finetuner import imbalance

    texts, labels = skewed_split(args.rows, args.rare, args.share, args.seed)
    test_texts, test_labels = load_split("agnews", "test")
    runs = []
    for method in args.methods.split(","):
        for power in [float(p) for p in args.powers.split(",")]:
            imbalance.WEIGHT_POWER = power if power > 0 else 1.0
            config = TrainConfig(method=method, seed=args.seed,
                                 class_weights="none" if power == 0 else "balanced")
            started = time.monotonic()
            finetuner = LLMFinetuner(config=config)
            finetuner.fine_tune(texts, labels)
            seconds = time.monotonic() - started
            probabilities = finetuner.predict_proba_array(test_texts)
            classes = finetuner.labels
            predicted = [classes[i] for i in np.argmax(probabilities, axis=1)]
            row = {"part": "forms", "method": method, "power": power, "rows": len(texts), "seed": args.seed,
                   "rare": args.rare, "share": args.share, "train_seconds": round(seconds, 1),
                   "load_avg": load_avg(), **scores(test_labels, predicted, probabilities, classes, args.rare)}
            print(json.dumps(row), flush=True)
            runs.append(row)
    _append(runs, " ".join(sys.argv))


def cli(args: argparse.Namespace) -> None:
    rows = []
    for run in args.run:
        folder = Path(run)
        record = json.loads((folder / "run.json").read_text())
        report = record.get("report") or {}
        per_class = report.get("per_class") or {}
        metrics = record.get("metrics") or {}
        rare = per_class.get(args.rare, {})
        rows.append({"part": "cli", "run": folder.name, "command": record.get("command"),
                     "config_class_weights": (record.get("config") or {}).get("class_weights"),
                     "method": (record.get("method_choice") or {}).get("method"),
                     "imbalance": (record.get("method_choice") or {}).get("imbalance"),
                     "candidates": (record.get("method_choice") or {}).get("candidates"),
                     "macro_f1": metrics.get("f1_macro"), "accuracy": metrics.get("accuracy"),
                     "ece": metrics.get("ece"), "rare_recall": rare.get("recall"),
                     "rare_precision": rare.get("precision"), "rare_f1": rare.get("f1-score"),
                     "wall_seconds": (record.get("training") or {}).get("wall_seconds"),
                     "stage_seconds": (record.get("training") or {}).get("stage_seconds")})
        print(json.dumps(rows[-1]))
    _append(rows, " ".join(sys.argv))


def _append(rows: List[Dict[str, Any]], command: str) -> None:
    import platform

    existing = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {"runs": []}
    for row in rows:
        row.setdefault("recorded_by", command)
        row.setdefault("machine", platform.processor() or platform.machine())
    existing["runs"].extend(rows)
    RESULTS.write_text(json.dumps(existing, indent=1) + "\n")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.imbalance", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("make", "forms", "cli"):
        p = sub.add_parser(name)
        p.add_argument("--rare", default="Business")
        p.add_argument("--share", type=float, default=0.03)
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--rows", type=int, default=8000 if name == "make" else 2000)
    sub.choices["make"].add_argument("--out", default="bench/.cache/agnews_skewed")
    sub.choices["forms"].add_argument("--methods", default="head,head_finetune")
    sub.choices["forms"].add_argument("--powers", default="0,0.5,1")
    sub.choices["cli"].add_argument("--run", nargs="+", required=True)
    args = parser.parse_args(argv)
    {"make": make, "forms": forms, "cli": cli}[args.command](args)


if __name__ == "__main__":
    main()
