"""How well ``finetuner.label_issues.find_label_issues`` finds labels flipped on purpose.

A share of a dataset's training labels (``--flip``, default 5%) is changed at random (numpy RNG with ``--seed``)
to another class; the check then runs on the whole table. Reported: precision@k and recall@k for k = number of
flipped rows (the k most suspicious rows; with this k the two are equal), precision and recall of the full
flagged set, and wall time (embedding and the check separately). ``--components`` also scores each model of the
ensemble alone and each pair, on the same embeddings and folds.

    python bench/label_issues.py --dataset agnews --flip 0.05 --seed 0      # -> bench/results/label_issues.json
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any, Dict

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from finetuner.embeddings import embed  # noqa: E402
from finetuner.label_issues import find_label_issues, out_of_fold_probabilities  # noqa: E402

DATASETS_DIR = Path(os.environ.get("FINETUNER_BENCH_DATA", "/work/shared/datasets"))


def flip_labels(labels: pd.Series, share: float, seed: int) -> tuple:
    """``(new labels, flipped row positions)``: ``round(share * rows)`` rows moved to another class at random."""
    rng = np.random.default_rng(seed)
    classes = sorted(labels.unique())
    rows = np.sort(rng.choice(len(labels), int(round(share * len(labels))), replace=False))
    flipped = labels.copy()
    for row in rows:
        flipped.iloc[row] = rng.choice([c for c in classes if c != labels.iloc[row]])
    return flipped, rows


def scores(ranked_rows: np.ndarray, flagged_rows: np.ndarray, truth: np.ndarray) -> Dict[str, float]:
    """precision@k / recall@k (k = flipped rows) from the ranking, precision / recall of the flagged set."""
    k, truth_set = len(truth), set(truth.tolist())
    top_hits = len(truth_set & set(ranked_rows[:k].tolist()))
    flagged_hits = len(truth_set & set(flagged_rows.tolist()))
    return {"k": k, "precision_at_k": top_hits / k, "recall_at_k": top_hits / k,
            "flagged": len(flagged_rows), "precision_flagged": flagged_hits / max(len(flagged_rows), 1),
            "recall_flagged": flagged_hits / k}


def component_scores(texts, embeddings, labels, truth, folds: int, seed: int) -> Dict[str, Dict[str, float]]:
    """The same measures for each model alone and for pairs of them (rows ranked by p(given label))."""
    from cleanlab.filter import find_label_issues as cleanlab_issues

    classes = sorted(set(labels))
    y = np.asarray([classes.index(label) for label in labels])
    probs = out_of_fold_probabilities(texts, embeddings, y, folds=folds, seed=seed)
    for first, second in itertools.combinations(list(probs), 2):
        probs[f"{first} + {second}"] = (probs[first] + probs[second]) / 2
    result = {}
    for name, p in probs.items():
        ranked = np.asarray(cleanlab_issues(y, p, return_indices_ranked_by="self_confidence", n_jobs=1))
        result[name] = scores(ranked, ranked, truth)
    return result


def _suggested_is_original(issues: pd.DataFrame, original: pd.Series, truth: np.ndarray) -> float:
    """Among the flagged flipped rows, the share whose suggested label is the label before flipping."""
    found = issues[issues["row"].isin(truth)]
    return float((found["suggested_label"].to_numpy() == original.iloc[found["row"]].to_numpy()).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="agnews", help="folder under the datasets directory (default: agnews)")
    parser.add_argument("--flip", type=float, default=0.05, help="share of labels flipped (default: 0.05)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the flips and the folds (default: 0)")
    parser.add_argument("--rows", type=int, help="use only the first N rows (default: all)")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--components", action="store_true", help="also score each model of the ensemble alone")
    parser.add_argument("--output", type=Path, default=ROOT / "bench" / "results" / "label_issues.json")
    args = parser.parse_args()

    table = pd.read_csv(DATASETS_DIR / args.dataset / "train.csv", keep_default_na=False)
    if args.rows:
        table = table.iloc[:args.rows].reset_index(drop=True)
    original = table["label"].astype(str)
    table["label"], truth = flip_labels(original, args.flip, args.seed)
    texts = table["text"].astype(str).tolist()

    started = time.perf_counter()
    embeddings = embed(texts)
    embed_seconds = time.perf_counter() - started
    issues = find_label_issues(table, "text", "label", folds=args.folds, seed=args.seed, embeddings=embeddings)
    check_seconds = time.perf_counter() - started - embed_seconds
    ranked = issues["row"].to_numpy()
    result: Dict[str, Any] = {
        "command": "python bench/label_issues.py " + " ".join(sys.argv[1:]),
        "dataset": f"{args.dataset}/train.csv", "rows": len(table), "classes": int(table["label"].nunique()),
        "flip": args.flip, "seed": args.seed, "folds": args.folds, "flipped": len(truth),
        **scores(ranked, ranked, truth),
        "suggested_is_original": _suggested_is_original(issues, original, truth),
        "seconds_embedding": round(embed_seconds, 1), "seconds_check": round(check_seconds, 1),
        "seconds_total": round(embed_seconds + check_seconds, 1),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores (shared with other jobs)",
    }
    if args.components:
        result["components"] = component_scores(texts, embeddings, table["label"].tolist(), truth, args.folds,
                                                args.seed)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
