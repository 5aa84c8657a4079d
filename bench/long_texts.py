"""Long texts read in windows (issue #23): BBC News (800 / 200 articles, ~395 words) with the bundled MiniLM.

    python -m bench.long_texts head    [--lengths 128,32]      # embedding head: aggregations and head features
    python -m bench.long_texts cli     [--lengths 128,32] [--method head_finetune] [--epochs 2]
    python -m bench.long_texts pooled  RUN_DIR [RUN_DIR ...]    # a trained run's test logits pooled each way
    python -m bench.long_texts tfidf                            # TF-IDF + logistic regression (finetuner.baselines)

Each writes one JSON line per measurement to bench/results/long_texts.jsonl (with the machine's load average);
bench/results/long_texts.md is written from them by hand. Data: FINETUNER_BENCH_DATA or /work/shared/datasets.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Sequence

import numpy as np
import pandas as pd

from .common import append_jsonl

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("FINETUNER_BENCH_DATA", "/work/shared/datasets")) / "bbc"
OUT = ROOT / "bench" / "results" / "long_texts.jsonl"


def _load(split: str):
    frame = pd.read_csv(DATA / f"{split}.csv")
    return frame["text"].astype(str).tolist(), frame["label"].astype(str).tolist()


def _record(values: Dict[str, Any]) -> None:
    append_jsonl(OUT, values)


def _window_outputs(model, tokenizer, texts: Sequence[str], max_length: int, windows: bool, what: str):
    """(outputs of every window: embeddings or logits, the text of each window) in window order."""
    import torch

    from finetuner.training.windows import window_batches

    rows, values = [], []
    model.eval()
    with torch.inference_mode():
        for owners, batch in window_batches(tokenizer, texts, max_length, 64, windows=windows):
            out = model.embed(**batch) if what == "embed" else model(**batch).logits
            rows.extend(owners)
            values.append(out.float().numpy())
    return np.concatenate(values), np.asarray(rows)


def _pooled(values: np.ndarray, rows: np.ndarray, n: int, how: str) -> np.ndarray:
    from finetuner.training.windows import WindowPool

    if how == "first":  # the first window of each text: what truncation reads
        first = {}
        for index, row in enumerate(rows):
            first.setdefault(int(row), index)
        return values[[first[i] for i in range(n)]]
    pool = WindowPool(n, values.shape[1], how)
    pool.add(rows, values)
    return pool.result()


def head(lengths: List[int]) -> None:
    """The embedding head on MiniLM: which features to fit it on (first window, mean of the windows' embeddings,
    that mean scaled to unit length) and how to pool the windows' logits at prediction."""
    from finetuner.data import LabelMap
    from finetuner.models import DEFAULT_MODEL, load_tokenizer, resolve_model
    from finetuner.training.embedding_methods import fit_head
    from finetuner.training.sentence_classifier import SentenceClassifier
    from transformers import AutoModel

    train_x, train_y = _load("train")
    test_x, test_y = _load("test")
    labels = LabelMap.from_labels(train_y)
    y_train, y_test = labels.encode(train_y), np.asarray(labels.encode(test_y))
    source = resolve_model(DEFAULT_MODEL)
    tokenizer = load_tokenizer(source)
    encoder = AutoModel.from_pretrained(source.location, **source.load_kwargs)
    model = SentenceClassifier(encoder, len(labels))
    for max_length in lengths:
        started = time.perf_counter()
        train_values, train_rows = _window_outputs(model, tokenizer, train_x, max_length, True, "embed")
        test_values, test_rows = _window_outputs(model, tokenizer, test_x, max_length, True, "embed")
        embed_seconds = time.perf_counter() - started
        features = {"first": _pooled(train_values, train_rows, len(train_x), "first"),
                    "mean": _pooled(train_values, train_rows, len(train_x), "mean")}
        features["mean_unit"] = features["mean"] / np.linalg.norm(features["mean"], axis=1, keepdims=True)
        for name, train_features in features.items():
            fit_head(model, tokenizer, train_x, y_train, labels.names, max_length, use_label_names=True, seed=42,
                     features=train_features)
            weight, bias = model.head.weight.detach().numpy(), model.head.bias.detach().numpy()
            logits = test_values @ weight.T + bias
            scores = {how: float((_pooled(logits, test_rows, len(test_x), how).argmax(1) == y_test).mean())
                      for how in ("first", "mean", "mean_probs", "max")}
            mean_test = _pooled(test_values, test_rows, len(test_x), "mean")
            unit_test = mean_test / np.linalg.norm(mean_test, axis=1, keepdims=True)
            scores["head_of_unit_mean"] = float(((unit_test @ weight.T + bias).argmax(1) == y_test).mean())
            _record({"part": "head", "max_length": max_length, "head_fitted_on": name, "accuracy": scores,
                     "windows_per_text_train": round(len(train_rows) / len(train_x), 2),
                     "windows_per_text_test": round(len(test_rows) / len(test_x), 2),
                     "embed_seconds": round(embed_seconds, 1)})


def cli(lengths: List[int], method: str, epochs: float, runs: Path, modes: Sequence[str]) -> None:
    """``python -m finetuner train`` as a user runs it, windows against truncation, timed."""
    for max_length in lengths:
        for mode in modes:
            output = runs / f"bbc-{method}-{max_length}-{mode}"
            command = [sys.executable, "-m", "finetuner", "train", "--data", str(DATA / "train.csv"), "--eval",
                       str(DATA / "test.csv"), "--max-length", str(max_length), "--long-texts", mode,
                       "--method", method, "--output", str(output), "--overwrite"]
            if epochs:
                command += ["--epochs", f"{epochs:g}"]
            load = os.getloadavg()[0]
            started = time.perf_counter()
            done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
            seconds = time.perf_counter() - started
            metrics = json.loads((output / "metrics.json").read_text()) if done.returncode == 0 else {}
            notice = [line for line in done.stderr.splitlines() + done.stdout.splitlines() if "tokens:" in line]
            _record({"part": "cli", "command": " ".join(["python"] + command[1:]), "max_length": max_length,
                     "long_texts": mode, "method": method, "epochs": epochs, "exit": done.returncode,
                     "seconds": round(seconds, 1), "load_at_start": round(load, 2),
                     "accuracy": metrics.get("accuracy"), "f1_macro": metrics.get("f1_macro"),
                     "notice": notice[:1], "error": done.stderr[-2000:] if done.returncode else None})


def pooled(run_dirs: List[Path]) -> None:
    """A trained run's model: its windows' test logits pooled each way (the model as saved, windows on)."""
    from finetuner.classifier import TextClassifier

    test_x, test_y = _load("test")
    for run in run_dirs:
        classifier = TextClassifier.load(run / "model", backend="torch")
        y_test = np.asarray(classifier.label_map.encode(test_y))
        values, rows = _window_outputs(classifier.model, classifier.tokenizer, test_x, classifier.length_limit(),
                                       True, "logits")
        scores = {how: float((_pooled(values, rows, len(test_x), how).argmax(1) == y_test).mean())
                  for how in ("first", "mean", "mean_probs", "max")}
        _record({"part": "pooled", "run": run.name, "max_length": classifier.length_limit(), "accuracy": scores})


def tfidf() -> None:
    from finetuner.baselines import tfidf_classifier

    train_x, train_y = _load("train")
    test_x, test_y = _load("test")
    started = time.perf_counter()
    predicted = tfidf_classifier(0).fit(train_x, train_y).predict(test_x)
    _record({"part": "tfidf", "accuracy": float((predicted == np.asarray(test_y)).mean()),
             "seconds": round(time.perf_counter() - started, 2)})


def main(argv: Sequence[str] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("part", choices=("head", "cli", "pooled", "tfidf"))
    parser.add_argument("runs", nargs="*", type=Path)
    parser.add_argument("--lengths", default="128,32")
    parser.add_argument("--method", default="head_finetune")
    parser.add_argument("--epochs", type=float, default=0)
    parser.add_argument("--modes", default="windows,truncate")
    parser.add_argument("--runs-dir", type=Path, default=Path("/tmp/finetuner-long-texts-runs"))
    args = parser.parse_args(argv)
    lengths = [int(v) for v in args.lengths.split(",")]
    if args.part == "head":
        head(lengths)
    elif args.part == "cli":
        cli(lengths, args.method, args.epochs, args.runs_dir, args.modes.split(","))
    elif args.part == "pooled":
        pooled(args.runs)
    else:
        tfidf()


if __name__ == "__main__":
    main()
