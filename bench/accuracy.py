"""Part 2 — accuracy vs examples per class.

For each dataset and k, ``k`` training rows per class are drawn from train.csv with each seed; every method is
trained on them and scored on the dataset's test file (clinc150: a seeded stratified subset, see
``TEST_PER_CLASS``). Methods:

* finetuner methods — ``LLMFinetuner(config=TrainConfig(method=m, seed=seed))`` with everything else at its defaults
  (``--methods``; a method that ``TrainConfig`` rejects is skipped with a note);
* ``tfidf_lr`` — TF-IDF of word 1-2-grams (sublinear tf) + logistic regression (C=10);
* ``embed_lr`` — frozen ``finetuner.embeddings.embed`` vectors (L2-normalised MiniLM) + logistic regression (C=10).

Embeddings are cached on disk under bench/.cache/emb (test sets whole, training rows by text).
"""

from __future__ import annotations

import hashlib
import statistics
import time
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from .common import CACHE_DIR, load_avg, load_split, log, sample_per_class, write_json

BASELINES = ("tfidf_lr", "embed_lr")
# Test rows per class kept for evaluation (None = the whole test file). clinc150's test has 30 per class.
TEST_PER_CLASS: Dict[str, Optional[int]] = {"sst2": None, "agnews": None, "clinc150": 10}


class EmbeddingCache:
    """``finetuner.embeddings.embed`` with an on-disk cache keyed by the text's SHA-1 (one file per dataset)."""

    def __init__(self, name: str):
        self.path = CACHE_DIR / "emb" / f"{name}.npz"
        self.vectors: Dict[str, np.ndarray] = {}
        if self.path.is_file():
            data = np.load(self.path)
            self.vectors = dict(zip(data["keys"].tolist(), data["vectors"]))
        self.dirty = False

    @staticmethod
    def _key(text: str) -> str:
        return hashlib.sha1(text.encode("utf-8")).hexdigest()

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        from finetuner.embeddings import embed
        keys = [self._key(t) for t in texts]
        missing = sorted({k: t for k, t in zip(keys, texts) if k not in self.vectors}.items())
        if missing:
            vectors = embed([t for _, t in missing])
            self.vectors.update({k: v for (k, _), v in zip(missing, vectors)})
            self.dirty = True
        return np.stack([self.vectors[k] for k in keys])

    def save(self) -> None:
        if self.dirty:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            keys = list(self.vectors)
            np.savez(self.path, keys=np.asarray(keys), vectors=np.stack([self.vectors[k] for k in keys]))
            self.dirty = False


def _test_set(dataset: str, per_class: Optional[int]):
    texts, labels = load_split(dataset, "test")
    if per_class is not None:
        texts, labels = sample_per_class(texts, labels, per_class, seed=0)
    return texts, labels


def _logistic(train_x, train_y, test_x) -> List[str]:
    from sklearn.linear_model import LogisticRegression
    clf = LogisticRegression(C=10.0, max_iter=3000)
    clf.fit(train_x, train_y)
    return clf.predict(test_x).tolist()


def _tfidf_lr(train_texts, train_labels, test_texts) -> List[str]:
    from sklearn.feature_extraction.text import TfidfVectorizer
    vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True)
    return _logistic(vectorizer.fit_transform(train_texts), train_labels, vectorizer.transform(test_texts))


def _method_config(method: str, seed: int):
    """A TrainConfig for ``method`` or the reason it cannot be made (not available in this finetuner)."""
    from finetuner import TrainConfig
    from finetuner.errors import ConfigError
    try:
        if method.startswith("auto:"):  # auto under a preset's time budget, e.g. "auto:fast" (the app's default)
            return TrainConfig.from_preset(method.split(":", 1)[1], seed=seed), None
        return TrainConfig(method=method, seed=seed), None
    except (ConfigError, TypeError, ValueError) as exc:
        return None, f"skipped: TrainConfig(method={method!r}) rejected it ({exc})"


def _ece(probabilities: np.ndarray, truth: List[int]) -> Optional[float]:
    """Expected calibration error (15 bins) on the test rows whose class the model knows."""
    from finetuner.calibration import expected_calibration_error
    known = [i for i, t in enumerate(truth) if t >= 0]
    return float(expected_calibration_error(probabilities[known], [truth[i] for i in known])) if known else None


def run(datasets: Sequence[str] = ("sst2", "agnews", "clinc150"), ks: Sequence[int] = (8, 16, 32, 64, 128),
        seeds: Sequence[int] = (0, 1, 2), methods: Sequence[str] = ("finetune", "head", "fewshot", "auto"),
        baselines: Sequence[str] = BASELINES, max_train_rows: int = 0,
        test_per_class: Optional[Dict[str, Optional[int]]] = None) -> Dict[str, Any]:
    """Baselines and finetuner methods on k sampled examples per class, for every dataset, k and seed.

    ``auto`` tries its candidates on held-out training rows (``auto:fast`` etc.: under that preset's time budget);
    its rows record the method it picked and the test set's calibration error (``ece``)."""
    from finetuner import LLMFinetuner
    test_per_class = {**TEST_PER_CLASS, **(test_per_class or {})}
    rows: List[Dict[str, Any]] = []
    notes: Dict[str, str] = {}
    configs_ok = {}
    for method in methods:
        config, note = _method_config(method, 0)
        configs_ok[method] = config is not None
        if note:
            notes[method] = note
            log(f"accuracy: {note}")
    test_sizes = {}
    for dataset in datasets:
        train_texts, train_labels = load_split(dataset, "train")
        test_texts, test_labels = _test_set(dataset, test_per_class.get(dataset))
        test_sizes[dataset] = len(test_texts)
        cache = EmbeddingCache(dataset)
        test_emb = cache.embed(test_texts) if "embed_lr" in baselines else None
        cache.save()
        for k in ks:
            for seed in seeds:
                texts, labels = sample_per_class(train_texts, train_labels, k, seed)
                base = {"dataset": dataset, "k": k, "seed": seed, "train_rows": len(texts)}
                for name in baselines:
                    start = time.perf_counter()
                    if name == "tfidf_lr":
                        predicted = _tfidf_lr(texts, labels, test_texts)
                    else:
                        train_emb = cache.embed(texts)
                        predicted = _logistic(train_emb, labels, test_emb)
                    rows.append({**base, "method": name, "seconds": time.perf_counter() - start,
                                 "accuracy": float(np.mean([p == t for p, t in zip(predicted, test_labels)]))})
                cache.save()
                for method in methods:
                    if not configs_ok[method]:
                        continue
                    if max_train_rows and len(texts) > max_train_rows:
                        notes[f"{method}@{dataset}/k={k}"] = (f"skipped: {len(texts)} training rows > "
                                                               f"--max-train-rows {max_train_rows}")
                        continue
                    config, _ = _method_config(method, seed)
                    start = time.perf_counter()
                    model = LLMFinetuner(config=config)
                    model.fine_tune(texts, labels)
                    train_s = time.perf_counter() - start
                    probabilities = model.predict_proba_array(test_texts)
                    predicted = [model.labels[i] for i in probabilities.argmax(axis=1)]
                    truth = [model.labels.index(str(t)) if str(t) in model.labels else -1 for t in test_labels]
                    rows.append({**base, "method": method, "seconds": time.perf_counter() - start,
                                 "train_seconds": train_s, "load_avg": load_avg()[0],
                                 "accuracy": float(np.mean([p == t for p, t in zip(predicted, test_labels)])),
                                 "ece": _ece(probabilities, truth)})
                    if method.startswith("auto"):
                        rows[-1]["picked"] = model.method_choice.method
                        rows[-1]["candidates"] = list(model.method_choice.candidates)
                    log(f"accuracy: {dataset} k={k} seed={seed} {method}: {rows[-1]['accuracy']:.3f} "
                        f"({train_s:.0f} s training)")
                write_json("accuracy.partial", {"rows": rows, "notes": notes})  # survives an interrupted run
                log(f"accuracy: {dataset} k={k} seed={seed} baselines: " + ", ".join(
                    f"{r['method']} {r['accuracy']:.3f}" for r in rows
                    if r["dataset"] == dataset and r["k"] == k and r["seed"] == seed and r["method"] in baselines))
    return {"settings": {"datasets": list(datasets), "k": list(ks), "seeds": list(seeds), "methods": list(methods),
                         "baselines": list(baselines), "max_train_rows": max_train_rows,
                         "test_rows": test_sizes, "test_per_class": {d: test_per_class.get(d) for d in datasets}},
            "notes": notes, "summary": summarise(rows), "rows": rows}


def summarise(rows: List[Dict[str, Any]]) -> Dict[str, Any]:
    """Mean ± std per dataset, method and k (and, for ``auto``, the methods it picked)."""
    summary: Dict[str, Dict[str, Dict[str, Any]]] = {}
    for r in rows:
        summary.setdefault(r["dataset"], {}).setdefault(r["method"], {}).setdefault(str(r["k"]), []).append(r)
    for dataset, by_method in summary.items():
        for method, by_k in by_method.items():
            for k, rs in by_k.items():
                accs = [r["accuracy"] for r in rs]
                by_k[k] = {"mean": statistics.mean(accs), "std": statistics.stdev(accs) if len(accs) > 1 else 0.0,
                           "n": len(accs), "seconds_mean": statistics.mean(r["seconds"] for r in rs)}
                picks = sorted({r["picked"] for r in rs if "picked" in r})
                if picks:
                    by_k[k]["picked"] = picks
    return summary


def merge(previous: Dict[str, Any], new: Dict[str, Any]) -> Dict[str, Any]:
    """``new`` added to an earlier accuracy result: its rows replace those of the same dataset, k, seed and
    method; settings, notes and commands are combined."""
    def key(r):
        return r["dataset"], r["k"], r["seed"], r["method"]
    replaced = {key(r) for r in new["rows"]}
    rows = [r for r in previous["rows"] if key(r) not in replaced] + new["rows"]
    settings = dict(new["settings"])
    for name in ("datasets", "k", "seeds", "methods", "baselines"):
        settings[name] = list(dict.fromkeys(previous["settings"][name] + new["settings"][name]))
    for name in ("test_rows", "test_per_class"):
        settings[name] = {**previous["settings"][name], **new["settings"][name]}
    limits = (previous["settings"]["max_train_rows"], new["settings"]["max_train_rows"])
    settings["max_train_rows"] = 0 if 0 in limits else max(limits)  # 0: no limit
    return {**new, "settings": settings, "notes": {**previous.get("notes", {}), **new["notes"]},
            "command": f"{previous['command']}, then {new['command']}", "summary": summarise(rows), "rows": rows,
            "part_seconds": previous.get("part_seconds", 0) + new.get("part_seconds", 0)}
