"""Part 3 — prediction latency and batch throughput of a saved finetuner model vs a transformers pipeline.

A model is fine-tuned on SST-2 rows (bundled MiniLM), saved under bench/.cache and loaded back with
``LLMFinetuner.load``. Then, on the same saved model:

* single sentence: ``predict_proba([sentence])`` for ``calls`` SST-2 test sentences (after ``warmup`` calls),
  median and p95, against ``pipeline("text-classification", top_k=None)`` on one sentence — in alternating blocks;
* batch: the 872 SST-2 test texts through ``predict_proba`` against the pipeline with its default batch size (1)
  and with ``batch_size`` = finetuner's (64) — alternating repeats; texts per second.

finetuner is measured three ways on the same model: PyTorch, its ONNX export through ONNX Runtime (fp32) and the
export's dynamic int8 copy (``python -m finetuner export --quantize int8``), each with its accuracy on the 872 texts.
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


def _backends(path, LLMFinetuner) -> Dict[str, Any]:
    """The same saved model three ways: PyTorch, its ONNX export (fp32) and the export's int8 copy, all through
    ``LLMFinetuner``'s own predict methods. The export goes into a copy of the model folder (kept under cache)."""
    import shutil
    from finetuner.training.onnx_graph import QUANTIZED_FILE

    exported = path.parent / f"{path.name}-onnx"
    if not (exported / "onnx" / QUANTIZED_FILE).is_file():
        shutil.rmtree(exported, ignore_errors=True)
        shutil.copytree(path, exported)
        LLMFinetuner.load(exported, backend="torch").export_onnx(exported / "onnx", quantize="int8")
    onnx, int8 = LLMFinetuner.load(exported), LLMFinetuner.load(exported)
    int8.classifier.use_onnx(exported / "onnx" / QUANTIZED_FILE)
    assert onnx.classifier.backend == "onnx"
    return {"torch": LLMFinetuner.load(path, backend="torch"), "onnx": onnx, "onnx_int8": int8}


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
    backends = _backends(path, LLMFinetuner)
    model = backends["torch"]
    # On the GPU where there is one, as LLMFinetuner.load puts the model there.
    pipe = pipeline("text-classification", model=str(path), tokenizer=str(path),
                    device=0 if torch.cuda.is_available() else -1, top_k=None)
    test_texts, test_labels = load_split("sst2", "test")
    sentences = [test_texts[i % len(test_texts)] for i in range(calls)]
    out: Dict[str, Any] = {"model_dir": str(path), "train_rows": train_rows, "threads": torch.get_num_threads(),
                           "device": device_name(),
                           "load_avg_start": load_avg()}

    # ---- single sentence, alternating blocks of 20 calls so load changes hit every system alike
    systems = {f"finetuner_{name}" if name != "torch" else "finetuner": (lambda s, m=m: m.predict_proba([s]))
               for name, m in backends.items()}
    systems["pipeline"] = pipe
    for s in sentences[:warmup]:
        for call in systems.values():
            call(s)
    times: Dict[str, List[float]] = {name: [] for name in systems}
    block = 20
    for start in range(0, calls, block):
        chunk = sentences[start:start + block]
        for name, call in systems.items():
            for s in chunk:
                t = time.perf_counter()
                call(s)
                times[name].append(time.perf_counter() - t)
    out["single"] = {name: _summary(v) for name, v in times.items()}
    out["single"]["speedup_median"] = out["single"]["pipeline"]["median_ms"] / out["single"]["finetuner"]["median_ms"]
    for name in systems:
        out["single"][name]["ratio_to_pipeline"] = (out["single"][name]["median_ms"]
                                                    / out["single"]["pipeline"]["median_ms"])
    log("latency: single sentence median " + ", ".join(f"{k} {v['median_ms']:.1f} ms" for k, v in
                                                       out["single"].items() if isinstance(v, dict)))

    # ---- batch: the 872 SST-2 test texts
    n = len(test_texts)
    runs: Dict[str, List[float]] = {"finetuner": [], "pipeline_default": [], "pipeline_batch64": [],
                                    **{f"finetuner_{name}": [] for name in backends if name != "torch"}}
    check: Dict[str, Any] = {"accuracy": {}}
    for rep in range(repeats):
        for name, m in backends.items():
            t = time.perf_counter()
            probs = m.predict_proba_array(test_texts)
            runs["finetuner" if name == "torch" else f"finetuner_{name}"].append(time.perf_counter() - t)
            if rep == 0:
                check["accuracy"][name] = float(np.mean([m.labels[i] == y for i, y in zip(probs.argmax(1),
                                                                                          test_labels)]))
        probs = model.predict_proba_array(test_texts)
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
            check = {**check, "agreement_with_pipeline": float(np.mean([a == b for a, b in zip(ours_pred, pipe_pred)])),
                     "accuracy_finetuner": float(np.mean([a == b for a, b in zip(ours_pred, test_labels)]))}
        log(f"latency: batch repeat {rep + 1}: " + ", ".join(f"{k} {v[-1]:.1f}s" for k, v in runs.items()))
    batch = {k: {"seconds_median": statistics.median(v), "texts_per_s": n / statistics.median(v), "seconds": v}
             for k, v in runs.items()}
    batch["texts"] = n
    batch["speedup_vs_pipeline_default"] = batch["finetuner"]["texts_per_s"] / batch["pipeline_default"]["texts_per_s"]
    batch["speedup_vs_pipeline_batch64"] = batch["finetuner"]["texts_per_s"] / batch["pipeline_batch64"]["texts_per_s"]
    for name in backends:
        key = "finetuner" if name == "torch" else f"finetuner_{name}"
        batch[key]["throughput_vs_pipeline_default"] = (batch[key]["texts_per_s"]
                                                        / batch["pipeline_default"]["texts_per_s"])
    out["batch"] = batch
    out.update(check)
    out["load_avg_end"] = load_avg()
    return out
