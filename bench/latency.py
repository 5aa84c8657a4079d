"""Part 3 — prediction latency and batch throughput of a saved finetuner model vs a transformers pipeline.

A model is fine-tuned on SST-2 rows (bundled MiniLM), saved under bench/.cache and loaded back with
``LLMFinetuner.load``. Then, on the same saved model:

* single sentence: ``predict_proba([sentence])`` for ``calls`` SST-2 test sentences (after ``warmup`` calls),
  median and p95, against ``pipeline("text-classification", top_k=None)`` on one sentence — in alternating blocks;
* batch: the 872 SST-2 test texts through ``predict_proba`` against the pipeline with its default batch size (1)
  and with ``batch_size`` = finetuner's (64) — alternating repeats; texts per second.
"""

from __future__ import annotations

import statistics
import time
from typing import Any, Dict, List

import numpy as np

from .common import CACHE_DIR, device_name, load_avg, load_split, log, sample_rows


def _model_dir(train_rows: int, seed: int):
    return CACHE_DIR / f"latency-model-sst2-{train_rows}-s{seed}"


def prepare_model(train_rows: int, seed: int, fresh: bool = False):
    from finetuner import LLMFinetuner, TrainConfig
    path = _model_dir(train_rows, seed)
    if fresh or not (path / "finetuner.json").is_file():
        texts, labels = sample_rows(*load_split("sst2", "train"), train_rows, seed)
        log(f"latency: training the model to measure ({train_rows} SST-2 rows, 1 epoch)")
        model = LLMFinetuner(config=TrainConfig(method="finetune", epochs=1, seed=seed))
        model.fine_tune(texts, labels)
        model.save(path)
    return path


def _timed(fn, n: int) -> List[float]:
    times = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def _summary(times: List[float]) -> Dict[str, float]:
    ms = np.asarray(times) * 1e3
    return {"median_ms": float(np.median(ms)), "p95_ms": float(np.percentile(ms, 95)),
            "mean_ms": float(ms.mean()), "calls": int(ms.size)}


def run(calls: int = 200, warmup: int = 20, repeats: int = 3, train_rows: int = 512, seed: int = 0,
        fresh: bool = False) -> Dict[str, Any]:
    import torch
    from transformers import pipeline
    from finetuner import LLMFinetuner

    path = prepare_model(train_rows, seed, fresh)
    model = LLMFinetuner.load(path)
    # On the GPU where there is one, as LLMFinetuner.load puts the model there.
    pipe = pipeline("text-classification", model=str(path), tokenizer=str(path),
                    device=0 if torch.cuda.is_available() else -1, top_k=None)
    test_texts, test_labels = load_split("sst2", "test")
    sentences = [test_texts[i % len(test_texts)] for i in range(calls)]
    out: Dict[str, Any] = {"model_dir": str(path), "train_rows": train_rows, "threads": torch.get_num_threads(),
                           "device": device_name(),
                           "load_avg_start": load_avg()}

    # ---- single sentence, alternating blocks of 20 calls so load changes hit both alike
    for s in sentences[:warmup]:
        model.predict_proba([s])
        pipe(s)
    ours: List[float] = []
    theirs: List[float] = []
    block = 20
    for start in range(0, calls, block):
        chunk = sentences[start:start + block]
        for s in chunk:
            t = time.perf_counter()
            model.predict_proba([s])
            ours.append(time.perf_counter() - t)
        for s in chunk:
            t = time.perf_counter()
            pipe(s)
            theirs.append(time.perf_counter() - t)
    out["single"] = {"finetuner": _summary(ours), "pipeline": _summary(theirs)}
    out["single"]["speedup_median"] = out["single"]["pipeline"]["median_ms"] / out["single"]["finetuner"]["median_ms"]
    log(f"latency: single sentence finetuner median {out['single']['finetuner']['median_ms']:.1f} ms, "
        f"pipeline {out['single']['pipeline']['median_ms']:.1f} ms")

    # ---- batch: the 872 SST-2 test texts
    n = len(test_texts)
    runs: Dict[str, List[float]] = {"finetuner": [], "pipeline_default": [], "pipeline_batch64": []}
    check: Dict[str, Any] = {}
    for rep in range(repeats):
        t = time.perf_counter()
        probs = model.predict_proba_array(test_texts)
        runs["finetuner"].append(time.perf_counter() - t)
        t = time.perf_counter()
        p1 = pipe(test_texts, truncation=True)
        runs["pipeline_default"].append(time.perf_counter() - t)
        t = time.perf_counter()
        pipe(test_texts, batch_size=model.config.eval_batch_size, truncation=True)
        runs["pipeline_batch64"].append(time.perf_counter() - t)
        if rep == 0:  # the same model must give the same answers both ways
            names = model.labels
            ours_pred = [names[i] for i in probs.argmax(1)]
            pipe_pred = [max(row, key=lambda d: d["score"])["label"] for row in p1]
            check = {"agreement_with_pipeline": float(np.mean([a == b for a, b in zip(ours_pred, pipe_pred)])),
                     "accuracy_finetuner": float(np.mean([a == b for a, b in zip(ours_pred, test_labels)]))}
        log(f"latency: batch repeat {rep + 1}: " + ", ".join(f"{k} {v[-1]:.1f}s" for k, v in runs.items()))
    batch = {k: {"seconds_median": statistics.median(v), "texts_per_s": n / statistics.median(v), "seconds": v}
             for k, v in runs.items()}
    batch["texts"] = n
    batch["speedup_vs_pipeline_default"] = batch["finetuner"]["texts_per_s"] / batch["pipeline_default"]["texts_per_s"]
    batch["speedup_vs_pipeline_batch64"] = batch["finetuner"]["texts_per_s"] / batch["pipeline_batch64"]["texts_per_s"]
    out["batch"] = batch
    out.update(check)
    out["load_avg_end"] = load_avg()
    return out
