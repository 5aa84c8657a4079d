"""Part 4 — peak memory of training: one fresh process per configuration, peak RSS from
``resource.getrusage(RUSAGE_SELF).ru_maxrss`` at the end (training + the model + Python + libraries), plus the RSS
measured just before the model was loaded, so the difference is what training added."""

from __future__ import annotations

from typing import Any, Dict, List

from .common import load_avg, log, run_worker
from .throughput import SYSTEMS


def run(rows: int = 512, epochs: float = 1, batch_size: int = 32, seed: int = 0, threads: int = 0,
        configs: List[str] = ("finetuner", "finetuner_bf16", "plain_trainer", "lab_style")) -> Dict[str, Any]:
    results = {}
    for name in configs:
        spec = {**SYSTEMS[name], "dataset": "sst2", "rows": rows, "seed": seed, "epochs": epochs,
                "batch_size": batch_size, "evaluate": False, "threads": threads or None}
        r = run_worker(spec)
        results[name] = {"peak_rss_mib": r["peak_rss_mib"], "rss_before_model_mib": r["rss_before_model_mib"],
                         "rss_after_load_mib": r.get("rss_after_load_mib"),
                         "training_added_mib": r["peak_rss_mib"] - r["rss_before_model_mib"],
                         "max_length": r.get("max_length"), "wall_s": r["wall_s"], "load_avg": load_avg()}
        log(f"memory: {name}: peak RSS {r['peak_rss_mib']:.0f} MiB")
    return {"settings": {"dataset": "sst2", "rows": rows, "epochs": epochs, "batch_size": batch_size, "seed": seed},
            "results": results}
