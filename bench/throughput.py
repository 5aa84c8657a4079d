"""Part 1 — training throughput: finetuner's defaults vs a careful plain Trainer vs the lab-style Trainer.

All on the same ``rows`` SST-2 training rows (seeded draw), epochs, batch size (finetuner's default 32),
learning rate (finetuner's choice for the model size, 3e-4 for MiniLM), weight decay, warmup and seed; each run
in a fresh process (``bench.worker``), configurations interleaved across repeats (rotated order) so a change in
machine load hits every configuration alike. Accuracy on the SST-2 test file (872 rows).
"""

from __future__ import annotations

import statistics
from typing import Any, Dict, List

from .common import load_avg, log, run_worker

SYSTEMS = {
    "finetuner": {"system": "finetuner", "precision": "fp32"},
    "finetuner_bf16": {"system": "finetuner", "precision": "bf16"},
    "plain_trainer": {"system": "plain"},
    "plain_trainer_bf16": {"system": "plain", "precision": "bf16"},
    "lab_style": {"system": "lab"},
}


def run(rows: int = 2000, epochs: float = 1, batch_size: int = 32, seed: int = 0, repeats: int = 1,
        threads: int = 0, configs: List[str] = ("finetuner", "plain_trainer", "lab_style", "finetuner_bf16")
        ) -> Dict[str, Any]:
    runs: Dict[str, List[Dict[str, Any]]] = {name: [] for name in configs}
    for rep in range(repeats):
        order = list(configs[rep % len(configs):]) + list(configs[:rep % len(configs)])
        for name in order:
            spec = {**SYSTEMS[name], "dataset": "sst2", "rows": rows, "seed": seed, "epochs": epochs,
                    "batch_size": batch_size, "evaluate": True, "threads": threads or None}
            before = load_avg()
            result = run_worker(spec)
            result["load_avg_before"], result["load_avg_after"] = before, load_avg()
            runs[name].append(result)
            log(f"throughput: {name} rep {rep + 1}: {result['samples_per_s_wall']:.1f} samples/s, "
                f"{result['wall_s']:.0f} s, accuracy {result.get('accuracy', float('nan')):.3f}")
    summary: Dict[str, Dict[str, Any]] = {}
    for name, results in runs.items():
        summary[name] = {
            "samples_per_s": statistics.median(r["samples_per_s_wall"] for r in results),
            "train_samples_per_s": statistics.median(r.get("train_samples_per_s", float("nan")) for r in results),
            "wall_s": statistics.median(r["wall_s"] for r in results),
            "accuracy": statistics.mean(r["accuracy"] for r in results),
            "max_length": results[0].get("max_length"),
            "learning_rate": results[0].get("learning_rate"),
            "peak_rss_mib": max(r["peak_rss_mib"] for r in results),
        }
    ratios = {}
    for base in ("plain_trainer", "plain_trainer_bf16", "lab_style"):
        if base in summary:
            for name in summary:
                if name.startswith("finetuner"):
                    ratios[f"{name}_vs_{base}"] = {
                        "speed": summary[name]["samples_per_s"] / summary[base]["samples_per_s"],
                        "accuracy_points": 100 * (summary[name]["accuracy"] - summary[base]["accuracy"])}
    return {"settings": {"dataset": "sst2", "rows": rows, "epochs": epochs, "batch_size": batch_size, "seed": seed,
                         "repeats": repeats, "threads": threads or "torch default", "test_rows": 872,
                         "device": next(iter(runs.values()))[0].get("device", "cpu")},
            "summary": summary, "ratios": ratios, "runs": runs}
