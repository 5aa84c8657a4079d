"""Shared helpers: paths, datasets, sampling, machine facts, results files, subprocess workers."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
CACHE_DIR = BENCH_DIR / ".cache"
DATASETS_DIR = Path(os.environ.get("FINETUNER_BENCH_DATA", "/work/shared/datasets"))


def load_split(dataset: str, split: str):
    """``(texts, labels)`` of ``DATASETS_DIR/<dataset>/<split>.csv`` (columns text,label; labels are names)."""
    import pandas as pd
    frame = pd.read_csv(DATASETS_DIR / dataset / f"{split}.csv", keep_default_na=False)
    return frame["text"].astype(str).tolist(), frame["label"].astype(str).tolist()


def sample_rows(texts: Sequence[str], labels: Sequence[str], rows: int, seed: int) -> Tuple[List[str], List[str]]:
    """``rows`` rows drawn uniformly at random (numpy RNG with ``seed``), in the drawn order."""
    import numpy as np
    index = np.random.default_rng(seed).permutation(len(texts))[:rows]
    return [texts[i] for i in index], [labels[i] for i in index]


def sample_per_class(texts: Sequence[str], labels: Sequence[str], k: int, seed: int) -> Tuple[List[str], List[str]]:
    """``k`` rows of every class (all of a class's rows when it has fewer), shuffled; seeded."""
    import numpy as np
    rng = np.random.default_rng(seed)
    by_class: Dict[str, List[int]] = {}
    for i, label in enumerate(labels):
        by_class.setdefault(label, []).append(i)
    chosen: List[int] = []
    for label in sorted(by_class):
        rows = by_class[label]
        chosen.extend(rng.choice(rows, size=min(k, len(rows)), replace=False).tolist())
    chosen = rng.permutation(chosen).tolist()
    return [texts[i] for i in chosen], [labels[i] for i in chosen]


def load_avg() -> List[float]:
    return [round(v, 2) for v in os.getloadavg()]


def device_name() -> str:
    """The GPU that torch (and so the Trainer and finetuner) trains on, or "cpu"."""
    import torch
    return torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"


def machine_info() -> Dict[str, Any]:
    """What the figures came from: CPU model, cores, memory, library versions, load average now."""
    import torch
    import transformers
    cpu = platform.processor() or platform.machine()
    flags = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
            if line.startswith("flags") and not flags:
                flags = line
    except OSError:
        pass
    try:
        mem_gib = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError):
        mem_gib = None
    return {
        "cpu": cpu, "cores": os.cpu_count(), "memory_gib": mem_gib,
        "avx512_bf16": "avx512_bf16" in flags, "amx": "amx_tile" in flags,
        "gpu": torch.cuda.is_available(), "torch": torch.__version__, "transformers": transformers.__version__,
        "torch_threads": torch.get_num_threads(), "python": platform.python_version(),
        "load_avg": load_avg(), "date_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
    }


def write_json(part: str, payload: Dict[str, Any]) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{part}.json"
    path.write_text(json.dumps(payload, indent=2, default=float) + "\n", encoding="utf-8")
    return path


def read_json(part: str) -> Optional[Dict[str, Any]]:
    path = RESULTS_DIR / f"{part}.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def run_worker(spec: Dict[str, Any], timeout: Optional[float] = None) -> Dict[str, Any]:
    """Run ``bench.worker`` in a fresh Python process with ``spec``; return the JSON it prints last.

    A fresh process per configuration gives clean peak-memory numbers and no shared caches between rivals."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
           "TOKENIZERS_PARALLELISM": "false", "TRANSFORMERS_VERBOSITY": "error", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-m", "bench.worker", json.dumps(spec)], cwd=str(ROOT), env=env,
                          capture_output=True, text=True, timeout=timeout)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"worker failed ({proc.returncode}) for {spec}:\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1])


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')} load {load_avg()[0]}] {message}", flush=True)


def append_jsonl(path: Path, values: Dict[str, Any]) -> None:
    """Print one measurement as a JSON line and append it to ``path``, with the machine's load average, cores,
    processor and the time."""
    values = {**values, "load_average": [round(v, 2) for v in os.getloadavg()], "cpus": os.cpu_count(),
              "machine": platform.processor() or platform.machine(), "at": time.strftime("%Y-%m-%d %H:%M:%S")}
    print(json.dumps(values), flush=True)
    with Path(path).open("a", encoding="utf-8") as out:
        out.write(json.dumps(values) + "\n")
