"""Suggested labels (issue #24, :mod:`finetuner.labelling`) on the shared test files, with the bundled MiniLM.

    python -m bench.labelling zero-shot [--datasets agnews,sst2,clinc150]
    python -m bench.labelling refit [--datasets ...] [--budgets 16,64] [--seeds 0,1,2]
    python -m bench.labelling simulate [--datasets ...] [--budgets 16,32,64,128] [--batch 16] [--seeds 0,1,2]
                                       [--pool train|test] [--pool-rows 2000]
    python -m bench.labelling summary [--datasets ...] [--budgets ...] [--seeds ...] [--pool train|test]
                                      [--pool-rows 2000]

``zero-shot``: accuracy from the class names alone (the file's label values, spoken: ``Sci/Tech`` → "Sci or Tech",
``book_flight`` → "book flight") of: cosine similarity to the embedded bare names (the plain baseline), to one
template sentence, to the mean of finetuner.training's LABEL_TEMPLATES and of labelling.NAME_TEMPLATES; the class
vectors refined on the texts; and :func:`suggest_labels` itself, with the expected calibration error (10 bins) and
the negative log-likelihood of its confidences.

``refit``: ``--budgets`` rows labelled by the oracle (the file's labels), in one batch, chosen at random or by
:func:`next_to_label` on the zero-shot suggestions, then :func:`suggest_labels` again. The rows are split in two
halves at random (the seed): rows are picked from the first half only and accuracy is measured on the second
half, which nobody labels, so the two ways of choosing are scored on the same rows.

``simulate``: the labelling loop from zero labels. The table the suggestions are made for is ``--pool-rows`` rows
drawn from the training file (the seed draws them; texts also in the test file left out), where rows are picked,
and the whole test file, never labelled, which scores the suggestions (``--pool train``, the default: the protocol
of active-learning studies, a pool from the training data scored on the test data). ``--pool test``: each seed
shuffles the test file and cuts it in two halves instead, picks from the first and scores on the second. Each round
``--batch`` rows get their true label (the oracle), picked by
:func:`label_queue` or at random, and the suggestions are refitted; accuracy is recorded after every round, up to
the largest budget.

Each measurement is one JSON line in bench/results/labelling.jsonl (with the machine's load average);
bench/results/labelling.md is written from them by hand. Embeddings are cached in bench/.cache/emb.
"""

from __future__ import annotations

import argparse
import time
from typing import Dict, List, Sequence

import numpy as np

from .accuracy import EmbeddingCache
from .common import RESULTS_DIR, append_jsonl, load_split

OUT = RESULTS_DIR / "labelling.jsonl"
SINGLE_TEMPLATE = "This text is about {}."


def _data(dataset: str):
    texts, labels = load_split(dataset, "test")
    cache = EmbeddingCache(dataset)
    vectors = cache.embed(texts)
    cache.save()
    classes = sorted(set(labels))
    return texts, np.asarray([classes.index(label) for label in labels]), classes, vectors


def _ece(probabilities: np.ndarray, truth: np.ndarray, bins: int = 10) -> float:
    confidence, right = probabilities.max(axis=1), probabilities.argmax(axis=1) == truth
    edges = np.linspace(0, 1, bins + 1)
    error = 0.0
    for low, high in zip(edges[:-1], edges[1:]):
        inside = (confidence > low) & (confidence <= high)
        if inside.any():
            error += inside.mean() * abs(confidence[inside].mean() - right[inside].mean())
    return float(error)


def zero_shot(dataset: str) -> None:
    from finetuner.labelling import NAME_TEMPLATES, class_vectors, refine_class_vectors, suggest_labels
    from finetuner.training.sentence_classifier import LABEL_TEMPLATES

    texts, truth, classes, vectors = _data(dataset)
    variants = {"bare names": ("{}",), f"one template: {SINGLE_TEMPLATE}": (SINGLE_TEMPLATE,),
                "mean of training LABEL_TEMPLATES": LABEL_TEMPLATES, "mean of NAME_TEMPLATES": NAME_TEMPLATES}
    for name, templates in variants.items():
        names = class_vectors(classes, templates=templates)
        accuracy = float(((vectors @ names.T).argmax(axis=1) == truth).mean())
        _record({"dataset": dataset, "what": "zero-shot", "variant": name, "rows": len(texts),
                 "accuracy": round(accuracy, 4)})
    refined = refine_class_vectors(vectors, class_vectors(classes), np.full(len(texts), -1))
    _record({"dataset": dataset, "what": "zero-shot", "variant": "NAME_TEMPLATES refined on the texts",
             "rows": len(texts), "accuracy": round(float(((vectors @ refined.T).argmax(axis=1) == truth).mean()), 4)})
    started = time.perf_counter()
    found = suggest_labels(texts, classes, embeddings=vectors)
    seconds = time.perf_counter() - started
    chosen = found.probabilities[np.arange(len(truth)), truth]
    _record({"dataset": dataset, "what": "zero-shot", "variant": "suggest_labels", "rows": len(texts),
             "accuracy": round(float((found.probabilities.argmax(axis=1) == truth).mean()), 4),
             "ece": round(_ece(found.probabilities, truth), 4),
             "nll": round(float(-np.log(chosen.clip(1e-12)).mean()), 4),
             "seconds_without_embedding": round(seconds, 2)})


def refit(dataset: str, budgets: Sequence[int], seeds: Sequence[int]) -> None:
    from finetuner.labelling import next_to_label, suggest_labels

    texts, truth, classes, vectors = _data(dataset)
    for seed in seeds:
        order = np.random.default_rng(seed).permutation(len(texts))
        pool, held_out = np.sort(order[:len(order) // 2]), np.sort(order[len(order) // 2:])
        start = suggest_labels(texts, classes, embeddings=vectors, seed=seed)
        base = _accuracy(start.probabilities, truth, held_out)
        for budget in budgets:
            picks = {"random": order[:budget].tolist(),
                     "queue": pool[next_to_label([texts[i] for i in pool], classes, k=budget,
                                                 embeddings=vectors[pool], seed=seed)].tolist()}
            for how, rows in picks.items():
                labels: List = [None] * len(texts)
                for row in rows:
                    labels[row] = classes[truth[row]]
                started = time.perf_counter()
                found = suggest_labels(texts, classes, labels, embeddings=vectors, seed=seed)
                _record({"dataset": dataset, "what": "refit", "chosen": how, "labels": budget, "seed": seed,
                         "classes_labelled": len({truth[row] for row in rows}), "rows": len(texts),
                         "held_out_rows": len(held_out), "zero_shot_accuracy": round(base, 4),
                         "accuracy": round(_accuracy(found.probabilities, truth, held_out), 4),
                         "seconds_without_embedding": round(time.perf_counter() - started, 2)})


def _train_pool(dataset: str, rows: int, seed: int):
    """The table of ``--pool train``: ``rows`` training rows drawn with ``seed`` (none whose text is also a test
    text), then the whole test file; the mask of the drawn rows (where rows are picked)."""
    train_texts, train_labels = load_split(dataset, "train")
    test_texts, test_labels = load_split(dataset, "test")
    in_test = set(test_texts)
    order = [i for i in np.random.default_rng(seed).permutation(len(train_texts)) if train_texts[i] not in in_test]
    drawn = order[:rows]
    texts = [train_texts[i] for i in drawn] + test_texts
    labels = [train_labels[i] for i in drawn] + test_labels
    classes = sorted(set(train_labels) | set(test_labels))
    cache = EmbeddingCache(dataset)
    vectors = cache.embed(texts)
    cache.save()
    pool = np.zeros(len(texts), dtype=bool)
    pool[:len(drawn)] = True
    return texts, np.asarray([classes.index(label) for label in labels]), classes, vectors, pool


def simulate(dataset: str, budgets: Sequence[int], batch: int, seeds: Sequence[int], curve: bool = False,
             pool_from: str = "train", pool_rows: int = 2000) -> None:
    from finetuner.labelling import cross_validated_accuracy, label_queue, suggest_labels

    if pool_from == "test":
        texts, truth, classes, vectors = _data(dataset)
    for seed in seeds:
        if pool_from == "test":
            order = np.random.default_rng(seed).permutation(len(texts))
            pool = np.zeros(len(texts), dtype=bool)
            pool[order[:len(texts) // 2]] = True
        else:
            texts, truth, classes, vectors, pool = _train_pool(dataset, pool_rows, seed)
        held_out = np.flatnonzero(~pool)
        where = "test halves" if pool_from == "test" else f"train:{pool_rows}"  # asked for; pool_size: drawn
        for how in ("queue", "random"):
            rng = np.random.default_rng(seed)
            labels: List = [None] * len(texts)
            found = suggest_labels(texts, classes, embeddings=vectors, seed=seed)
            zero_shot = _accuracy(found.probabilities, truth, held_out)
            while sum(label is not None for label in labels) < max(budgets):
                started = time.perf_counter()
                if how == "queue":
                    rows = label_queue(found.probabilities, vectors, found.labelled, batch, seed=seed, eligible=pool)
                else:
                    free = np.flatnonzero(pool & ~found.labelled)
                    rows = rng.choice(free, min(batch, len(free)), replace=False).tolist()
                if len(rows) == 0:
                    break  # the pool has no unlabelled row left
                for row in rows:
                    labels[row] = classes[truth[row]]
                found = suggest_labels(texts, classes, labels, embeddings=vectors, seed=seed)
                given = [row for row, label in enumerate(labels) if label is not None]
                estimates = {}
                if curve:  # the Label tab's two learning-curve estimates, beside the accuracy they estimate
                    estimates = {"cross_validated": round(cross_validated_accuracy(
                        texts, classes, labels, embeddings=vectors) or float("nan"), 4),
                        "expected": round(found.expected_accuracy(), 4)}
                _record({**estimates, "dataset": dataset, "what": "simulate", "chosen": how, "labels": len(given),
                         "seed": seed, "pool": where, "pool_size": int(pool.sum()),
                         "batch": batch, "classes_labelled": len({truth[row] for row in given}),
                         "rows": len(texts), "held_out_rows": len(held_out), "zero_shot_accuracy": round(zero_shot, 4),
                         "accuracy": round(_accuracy(found.probabilities, truth, held_out), 4),
                         "seconds_without_embedding": round(time.perf_counter() - started, 2)})


def summarise(datasets: Sequence[str], budgets: Sequence[int], batch: int, seeds: Sequence[int],
              pool_from: str = "train", pool_rows: int = 2000) -> str:
    """The simulation's markdown table from the newest matching JSON lines (of the pool ``pool_from``: "test" or
    "train" with ``pool_rows`` rows): mean accuracy over ``seeds`` per budget, and how many labels the queue needed
    to reach random's accuracy at the largest budget."""
    import json

    lines = [json.loads(line) for line in OUT.read_text().splitlines() if line.strip()]
    runs: Dict = {}
    for line in lines:
        pool = line.get("pool", "test halves")  # lines written before --pool are all of the test halves
        wanted = "test halves" if pool_from == "test" else f"train:{pool_rows}"
        if line.get("what") == "simulate" and line["batch"] == batch and line["seed"] in seeds and pool == wanted:
            runs[(line["dataset"], line["chosen"], line["seed"], line["labels"])] = line
    notes: List[str] = []
    out = ["| dataset | chosen | zero-shot | " + " | ".join(f"{b} labels" for b in budgets) + " |",
           "|---" * (3 + len(budgets)) + "|"]
    for dataset in datasets:
        mean = {}
        for how in ("queue", "random"):
            points = sorted({key[3] for key in runs if key[:2] == (dataset, how)})
            if not points:
                continue
            mean[how] = {n: float(np.mean([runs[(dataset, how, s, n)]["accuracy"] for s in seeds])) for n in points
                         if all((dataset, how, s, n) in runs for s in seeds)}
            if not mean[how]:
                continue
            zero = np.mean([runs[(dataset, how, s, min(mean[how]))]["zero_shot_accuracy"] for s in seeds])
            out.append(f"| {dataset} | {how} | {zero:.3f} | " + " | ".join(
                f"{mean[how][b]:.3f}" if b in mean[how] else "–" for b in budgets) + " |")
        target = mean.get("random", {}).get(max(budgets))
        if target is None or "queue" not in mean:
            continue
        reached = next((n for n in sorted(mean["queue"]) if mean["queue"][n] >= target), None)
        notes.append(f"- {dataset}: random's {max(budgets)}-label accuracy ({target:.3f}) " + (
            f"reached by the queue with {reached} labels ({max(budgets) - reached} saved)" if reached is not None
            else "not reached by the queue"))
    return "\n".join(out + [""] + notes)


def _accuracy(probabilities: np.ndarray, truth: np.ndarray, rows: np.ndarray) -> float:
    return float((probabilities[rows].argmax(axis=1) == truth[rows]).mean())


def _record(values: Dict) -> None:
    append_jsonl(OUT, {"model": "bundled MiniLM (all-MiniLM-L6-v2)", **values})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("part", choices=("zero-shot", "refit", "simulate", "summary"))
    parser.add_argument("--datasets", default="agnews,sst2,clinc150")
    parser.add_argument("--budgets", default="16,64")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--batch", type=int, default=16, help="simulate: rows labelled per round")
    parser.add_argument("--curve", action="store_true",
                        help="simulate: also the learning-curve estimates (cross-validated, expected) each round")
    parser.add_argument("--pool", choices=("train", "test"), default="train",
                        help="simulate, summary: pick rows from --pool-rows rows of the training file (scored on "
                             "the whole test file; the usual protocol of active-learning studies), or from half "
                             "the test file (scored on the other half; a pool of 436 rows on SST-2)")
    parser.add_argument("--pool-rows", type=int, default=2000, help="--pool train: rows drawn per seed")
    args = parser.parse_args()
    budgets, seeds = [int(b) for b in args.budgets.split(",")], [int(s) for s in args.seeds.split(",")]
    if args.part == "summary":
        print(summarise(args.datasets.split(","), budgets, args.batch, seeds, args.pool, args.pool_rows))
        return
    for dataset in args.datasets.split(","):
        if args.part == "zero-shot":
            zero_shot(dataset)
        elif args.part == "simulate":
            simulate(dataset, budgets, args.batch, seeds, args.curve, args.pool, args.pool_rows)
        else:
            refit(dataset, budgets, seeds)


if __name__ == "__main__":
    main()
