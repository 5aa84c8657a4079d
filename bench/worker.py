"""One training configuration in its own process: ``python -m bench.worker '<json spec>'`` prints a JSON result.

Spec keys: ``system`` ("finetuner" | "plain" | "lab"), ``dataset``, ``rows``, ``seed``, ``epochs``,
``batch_size``, ``precision`` ("fp32" | "bf16"), ``threads`` (None = torch's default),
``evaluate`` (accuracy on the dataset's test.csv), ``optim`` (override for the Trainer's optimizer, or None).

* finetuner: ``LLMFinetuner(config=TrainConfig(method="finetune", ...))`` with its own defaults otherwise —
  dynamic padding, length-grouped batches, max_length from the data, learning rate chosen from the model size.
* plain: a careful transformers ``Trainer`` — the same model (bundled MiniLM via
  ``AutoModelForSequenceClassification``), data, epochs, batch size, learning rate, weight decay, warmup, seed;
  truncation at the model limit (512), dynamic padding with ``DataCollatorWithPadding``; random batches;
  ``bf16=True`` for precision "bf16".
* lab: the same, but every text padded to the longest text of the training rows
  (``padding="max_length"``, max_length = longest), no length grouping.
"""

from __future__ import annotations

import json
import resource
import sys
import tempfile
import time
from typing import Any, Dict


def _rss_mib() -> float:
    """Peak resident memory of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _current_rss_mib() -> float:
    try:
        import psutil
        return psutil.Process().memory_info().rss / 2**20
    except ImportError:  # pragma: no cover
        return float("nan")


def _train_metrics(trainer) -> Dict[str, float]:
    for entry in reversed(trainer.state.log_history):
        if "train_runtime" in entry:
            return {"train_runtime_s": float(entry["train_runtime"]),
                    "train_samples_per_s": float(entry["train_samples_per_second"])}
    return {}


def run(spec: Dict[str, Any]) -> Dict[str, Any]:
    import numpy as np
    import torch
    if spec.get("threads"):
        torch.set_num_threads(int(spec["threads"]))
    from bench.common import device_name, load_split, sample_rows
    from finetuner import LLMFinetuner, TrainConfig
    from finetuner.config import default_learning_rate
    from finetuner.models import bundled_model_path

    train_texts, train_labels = load_split(spec["dataset"], "train")
    texts, labels = sample_rows(train_texts, train_labels, spec["rows"], spec["seed"])
    test_texts, test_labels = load_split(spec["dataset"], "test") if spec.get("evaluate", True) else ([], [])
    epochs, batch_size, seed = spec["epochs"], spec["batch_size"], spec["seed"]
    out: Dict[str, Any] = {"spec": spec, "rows": len(texts), "threads": torch.get_num_threads(),
                           "device": device_name()}
    rss_before = _current_rss_mib()

    if spec["system"] == "finetuner":
        # Full fine-tuning (the Trainer path) explicitly: TrainConfig's default method may be "auto".
        config = TrainConfig(method="finetune", epochs=epochs, batch_size=batch_size, seed=seed,
                             precision=spec.get("precision", "fp32"))
        model = LLMFinetuner(config=config)
        out["rss_after_load_mib"] = _current_rss_mib()
        start = time.perf_counter()
        model.fine_tune(texts, labels)
        out["wall_s"] = time.perf_counter() - start
        out.update(_train_metrics(model.trainer))
        out["learning_rate"] = model.trainer.args.learning_rate
        out["max_length"] = model.max_length
        out["optim"] = str(model.trainer.args.optim)
        if test_texts:
            start = time.perf_counter()
            predicted = model.predict_labels(test_texts)
            out["predict_s"] = time.perf_counter() - start
            out["accuracy"] = float(np.mean([p == t for p, t in zip(predicted, test_labels)]))
    else:
        from datasets import Dataset
        from transformers import (AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding,
                                  Trainer, TrainingArguments, set_seed)
        set_seed(seed)
        path = str(bundled_model_path())
        names = sorted(set(labels) | set(test_labels))
        label2id = {name: i for i, name in enumerate(names)}
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModelForSequenceClassification.from_pretrained(
            path, num_labels=len(names), id2label=dict(enumerate(names)), label2id=label2id)
        out["rss_after_load_mib"] = _current_rss_mib()
        learning_rate = default_learning_rate(model.num_parameters(), "finetune")  # finetuner's choice, for equality
        limit = min(512, tokenizer.model_max_length)
        start = time.perf_counter()
        if spec["system"] == "lab":
            longest = max(len(ids) for ids in tokenizer(texts, truncation=True, max_length=limit)["input_ids"])
            encode = dict(truncation=True, max_length=longest, padding="max_length")
            out["max_length"] = longest
        else:
            encode = dict(truncation=True, max_length=limit)
            out["max_length"] = limit

        def dataset(xs, ys):
            enc = tokenizer(xs, **encode)
            return Dataset.from_dict({**{k: enc[k] for k in enc}, "labels": [label2id[y] for y in ys]})

        train_ds = dataset(texts, labels)
        with tempfile.TemporaryDirectory() as tmp:
            args = TrainingArguments(
                output_dir=tmp, num_train_epochs=epochs, learning_rate=learning_rate,
                per_device_train_batch_size=batch_size, per_device_eval_batch_size=64, weight_decay=0.01,
                warmup_steps=0.1, seed=seed, data_seed=seed, save_strategy="no", eval_strategy="no",
                logging_strategy="steps", logging_steps=10, report_to="none", disable_tqdm=True,
                use_cpu=not torch.cuda.is_available(),  # the GPU where there is one, as finetuner uses it
                bf16=spec.get("precision") == "bf16", **({"optim": spec["optim"]} if spec.get("optim") else {}))
            trainer = Trainer(model=model, args=args, train_dataset=train_ds, processing_class=tokenizer,
                              data_collator=DataCollatorWithPadding(tokenizer))
            trainer.train()
            out["wall_s"] = time.perf_counter() - start
            out.update(_train_metrics(trainer))
            out["learning_rate"] = learning_rate
            out["optim"] = str(trainer.args.optim)
            if test_texts:
                start = time.perf_counter()
                prediction = trainer.predict(dataset(test_texts, test_labels))
                out["predict_s"] = time.perf_counter() - start
                out["accuracy"] = float(np.mean(prediction.predictions.argmax(-1) == prediction.label_ids))
    out["samples_per_s_wall"] = len(texts) * epochs / out["wall_s"]
    out["peak_rss_mib"] = _rss_mib()
    out["rss_before_model_mib"] = rss_before
    return out


if __name__ == "__main__":
    import warnings
    warnings.filterwarnings("ignore")
    result = run(json.loads(sys.argv[1]))
    print(json.dumps(result, default=float), flush=True)
