"""``python -m bench`` (or ``python bench/run.py``): run the benchmark parts, write bench/results/<part>.json,
bench/results/RESULTS.md and SVG plots. ``--quick`` is a few-minute smoke version; ``--parts`` selects parts."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # python bench/run.py
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    __package__ = "bench"

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from bench import report  # noqa: E402
from bench.common import log, machine_info, read_json, write_json  # noqa: E402

PARTS = ("throughput", "accuracy", "latency", "memory")


def _ints(text: str):
    return [int(v) for v in text.split(",") if v.strip()]


def _names(text: str):
    return [v.strip() for v in text.split(",") if v.strip()]


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--parts", type=_names, default=list(PARTS), help=f"comma-separated, from {','.join(PARTS)}")
    p.add_argument("--quick", action="store_true", help="smoke version: small sizes, one seed (a few minutes)")
    p.add_argument("--threads", type=int, default=0,
                   help="torch threads for every measured process (0 = torch's default, one per core)")
    g = p.add_argument_group("throughput (part 1) and memory (part 4)")
    g.add_argument("--rows", type=int, default=2000, help="SST-2 training rows (seeded draw)")
    g.add_argument("--epochs", type=float, default=1.0)
    g.add_argument("--batch-size", type=int, default=32, help="finetuner's default")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--repeats", type=int, default=1, help="interleaved repeats of each configuration")
    g.add_argument("--configs", type=_names, default=["finetuner", "plain_trainer", "lab_style", "finetuner_bf16"])
    g.add_argument("--memory-rows", type=int, default=512)
    g = p.add_argument_group("accuracy vs examples per class (part 2)")
    g.add_argument("--datasets", type=_names, default=["sst2", "agnews", "clinc150"])
    g.add_argument("--k", type=_ints, default=[8, 16, 32, 64, 128], help="training examples per class")
    g.add_argument("--seeds", type=_ints, default=[0, 1, 2])
    g.add_argument("--methods", type=_names, default=["finetune", "head", "fewshot", "head_finetune", "auto"],
                   help="TrainConfig(method=...) values; one TrainConfig rejects is skipped with a note")
    g.add_argument("--baselines", type=_names, default=["tfidf_lr", "embed_lr"])
    g.add_argument("--max-train-rows", type=int, default=256,
                   help="skip trained methods on samples larger than this (0 = no limit); baselines always run")
    g.add_argument("--test-per-class", type=int, default=None,
                   help="evaluate on a seeded stratified subset with this many test rows per class, for every "
                        "dataset (default: whole test files, clinc150 10 per class = 1,500 rows)")
    g.add_argument("--add", action="store_true",
                   help="add these runs to the results already in bench/results/accuracy.json (runs of the same "
                        "dataset, k, seed and method are replaced) instead of starting a new table")
    g = p.add_argument_group("latency (part 3)")
    g.add_argument("--calls", type=int, default=200)
    g.add_argument("--latency-repeats", type=int, default=3)
    g.add_argument("--fresh-model", action="store_true", help="retrain the cached model the latency part measures")
    if "--quick" in (sys.argv[1:] if argv is None else argv):  # smaller defaults; explicit flags still win
        p.set_defaults(rows=256, memory_rows=256, repeats=1, datasets=["sst2"], k=[8, 32], seeds=[0],
                       max_train_rows=128, calls=50, latency_repeats=1)
    args = p.parse_args(argv)
    unknown = set(args.parts) - set(PARTS)
    if unknown:
        p.error(f"unknown part(s) {sorted(unknown)}; choose from {', '.join(PARTS)}")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.threads:
        import torch
        torch.set_num_threads(args.threads)
    machine = machine_info()
    log(f"bench: parts {args.parts} on {machine['cpu']} ({machine['cores']} cores), load {machine['load_avg']}")
    given = sys.argv[1:] if argv is None else list(argv)
    common = {"machine": machine, "quick": args.quick, "command": " ".join(["python -m bench", *given])}
    previous = None  # with --add, the accuracy results a run adds to
    for part in args.parts:
        start = time.perf_counter()
        if part == "throughput":
            from bench import throughput
            result = throughput.run(rows=args.rows, epochs=args.epochs, batch_size=args.batch_size, seed=args.seed,
                                    repeats=args.repeats, threads=args.threads, configs=args.configs)
        elif part == "accuracy":
            from bench import accuracy
            per_class = ({d: args.test_per_class for d in args.datasets} if args.test_per_class else None)
            previous = read_json("accuracy") if args.add else None
            result = accuracy.run(datasets=args.datasets, ks=args.k, seeds=args.seeds, methods=args.methods,
                                  baselines=args.baselines, max_train_rows=args.max_train_rows,
                                  test_per_class=per_class)
        elif part == "latency":
            from bench import latency
            result = latency.run(calls=args.calls, repeats=args.latency_repeats, fresh=args.fresh_model)
        else:
            from bench import memory
            result = memory.run(rows=args.memory_rows, batch_size=args.batch_size, seed=args.seed,
                                threads=args.threads)
        result = {**common, **result, "part_seconds": time.perf_counter() - start,
                  "load_avg_end": machine_info()["load_avg"]}
        if part == "accuracy" and previous is not None:
            result = accuracy.merge(previous, result)
        path = write_json(part, result)
        log(f"bench: {part} done in {result['part_seconds']:.0f} s -> {path}")
    written = report.write_report()
    log(f"bench: report -> {written}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
