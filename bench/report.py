"""bench/results/RESULTS.md (one table per part, from the JSON files present) and SVG plots beside it."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List

from . import svg
from .common import RESULTS_DIR, read_json


def _machine_line(data: Dict[str, Any]) -> str:
    m = data.get("machine", {})
    return (f"*{m.get('date_utc', '?')} UTC · {m.get('cpu', '?')}, {m.get('cores', '?')} cores, "
            f"{m.get('memory_gib', '?')} GiB, torch {m.get('torch', '?')} ({m.get('torch_threads', '?')} threads), "
            f"transformers {m.get('transformers', '?')} · load average at start {m.get('load_avg')}, "
            f"at end {data.get('load_avg_end')}{' · QUICK run' if data.get('quick') else ''} · "
            f"`{data.get('command', '')}`*")


def _throughput(data: Dict[str, Any], out: List[str]) -> None:
    s = data["settings"]
    out += ["## 1. Training throughput", "",
            f"SST-2, {s['rows']} training rows (seed {s['seed']}), {s['epochs']:g} epoch(s), batch {s['batch_size']}, "
            f"threads: {s['threads']}, {s['repeats']} interleaved repeat(s) (median shown); accuracy on the "
            f"{s['test_rows']}-row SST-2 test file. samples/s = rows × epochs / wall time of the training call "
            "(tokenizing included); Trainer's own figure (training loop only) beside it.", "",
            "| configuration | samples/s | Trainer samples/s | wall s | accuracy | max_length | lr | peak RSS MiB |",
            "|---|---|---|---|---|---|---|---|"]
    for name, r in data["summary"].items():
        out.append(f"| {name} | {r['samples_per_s']:.1f} | {r['train_samples_per_s']:.1f} | {r['wall_s']:.1f} | "
                   f"{r['accuracy']:.3f} | {r['max_length']} | {r['learning_rate']:g} | {r['peak_rss_mib']:.0f} |")
    out += ["", "| ratio | speed | accuracy difference (points) |", "|---|---|---|"]
    for name, r in data["ratios"].items():
        out.append(f"| {name} | {r['speed']:.2f}× | {r['accuracy_points']:+.1f} |")
    out.append("")
    names = list(data["summary"])
    (RESULTS_DIR / "throughput.svg").write_text(svg.bars(
        "Training samples/s (SST-2, higher is better)", names, [data["summary"][n]["samples_per_s"] for n in names]))
    out += ["![throughput](throughput.svg)", ""]


def _accuracy(data: Dict[str, Any], out: List[str]) -> None:
    s = data["settings"]
    out += ["## 2. Accuracy vs training examples per class", "",
            f"Seeds {s['seeds']} (mean ± std); test rows: "
            + ", ".join(f"{d} {n}" for d, n in s["test_rows"].items())
            + (f"; trained methods skipped above {s['max_train_rows']} training rows." if s["max_train_rows"]
               else "; trained methods run at every size."), ""]
    for key, note in data.get("notes", {}).items():
        out.append(f"- {key}: {note}")
    out.append("")
    for dataset, by_method in data["summary"].items():
        ks = sorted({int(k) for m in by_method.values() for k in m})
        out += [f"**{dataset}**", "", "| method | " + " | ".join(f"k={k}" for k in ks) + " |",
                "|---|" + "---|" * len(ks)]
        series = {}
        for method, by_k in by_method.items():
            cells = []
            for k in ks:
                r = by_k.get(str(k))
                cells.append("—" if not r else f"{r['mean']:.3f} ± {r['std']:.3f}" if r["n"] > 1
                             else f"{r['mean']:.3f} (1 seed)")
            out.append(f"| {method} | " + " | ".join(cells) + " |")
            series[method] = [(int(k), r["mean"], r["std"]) for k, r in by_k.items()]
        auto = by_method.get("auto", {})
        picks = [f"k={k} {'/'.join(auto[str(k)]['picked'])}" for k in ks if "picked" in auto.get(str(k), {})]
        if picks:
            out += ["", "auto picked: " + ", ".join(picks) + " (a pick run in the same table shares its row)"]
        out.append("")
        if ks:
            (RESULTS_DIR / f"accuracy_{dataset}.svg").write_text(svg.lines(
                f"{dataset}: accuracy vs examples per class", ks, series, x_label="examples per class (log scale)",
                y_label="test accuracy"))
            out += [f"![{dataset}](accuracy_{dataset}.svg)", ""]


def _latency(data: Dict[str, Any], out: List[str]) -> None:
    single, batch = data["single"], data["batch"]
    out += ["## 3. Prediction latency", "",
            f"Saved model ({data['train_rows']} SST-2 rows, 1 epoch) loaded with `LLMFinetuner.load`; torch threads "
            f"{data['threads']}. Pipeline: `pipeline('text-classification', top_k=None)` on the same directory.", "",
            "| one sentence | median ms | p95 ms | mean ms |", "|---|---|---|---|"]
    for name in ("finetuner", "pipeline"):
        r = single[name]
        out.append(f"| {name} `{'predict_proba([s])' if name == 'finetuner' else 'pipe(s)'}` | {r['median_ms']:.1f} | "
                   f"{r['p95_ms']:.1f} | {r['mean_ms']:.1f} |")
    out += ["", f"Batch: the {batch['texts']} SST-2 test texts (median of {len(batch['finetuner']['seconds'])}).", "",
            "| batch | seconds | texts/s |", "|---|---|---|"]
    for name in ("finetuner", "pipeline_default", "pipeline_batch64"):
        r = batch[name]
        out.append(f"| {name} | {r['seconds_median']:.2f} | {r['texts_per_s']:.0f} |")
    out += ["", f"Speed-up vs the pipeline's default: {batch['speedup_vs_pipeline_default']:.2f}×; vs the pipeline "
            f"with batch_size=64: {batch['speedup_vs_pipeline_batch64']:.2f}×. Predictions agree with the pipeline's "
            f"on {100 * data.get('agreement_with_pipeline', float('nan')):.1f}% of texts.", ""]


def _memory(data: Dict[str, Any], out: List[str]) -> None:
    s = data["settings"]
    out += ["## 4. Peak memory of training", "",
            f"SST-2, {s['rows']} rows, {s['epochs']:g} epoch, batch {s['batch_size']}; one process per configuration; "
            "peak RSS from `getrusage` (whole process) and RSS before the model was loaded.", "",
            "| configuration | peak RSS MiB | RSS before model MiB | added by model + training MiB | max_length |",
            "|---|---|---|---|---|"]
    for name, r in data["results"].items():
        out.append(f"| {name} | {r['peak_rss_mib']:.0f} | {r['rss_before_model_mib']:.0f} | "
                   f"{r['training_added_mib']:.0f} | {r['max_length']} |")
    out.append("")


def write_report() -> Path:
    out = ["# Benchmark results", "", "Written by `python -m bench` (see bench/README.md). Each section names the "
           "machine, load and command it came from; figures from different sections or runs are not comparable "
           "on a shared machine.", ""]
    for part, render in (("throughput", _throughput), ("accuracy", _accuracy), ("latency", _latency),
                         ("memory", _memory)):
        data = read_json(part)
        if data is None:
            continue
        n = len(out)
        try:
            render(data, out)
        except (KeyError, TypeError, ValueError) as exc:  # an old or partial file: say so, keep the rest
            del out[n:]
            out += [f"## {part}", "", f"(results file could not be read: {exc!r})", ""]
        else:
            out.insert(n + 2, _machine_line(data) + "\n")
    path = RESULTS_DIR / "RESULTS.md"
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(out) + "\n", encoding="utf-8")
    return path
