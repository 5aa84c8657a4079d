"""The whole process a user waits for, from the command to a saved model: ``finetuner train`` on its defaults
against a careful plain ``Trainer`` script, same rows, one fresh process each, alternating (issue #21).

    python -m bench.whole_process [--rows 2000] [--epochs 2] [--batch-size 16] [--repeats 1] [--seed 0]
    python -m bench.whole_process --train T.csv --test E.csv --cli-defaults --epochs 3 --output NAME.json

The second form takes any ``text,label`` files (every row of T.csv) and runs finetuner on nothing but
``--data``/``--eval`` (its own epochs, batch size and method), while the plain script keeps ``--epochs`` and
``--batch-size``: the check of the command line's defaults on tasks outside the shared datasets.

Both scripts: import, load the bundled MiniLM, tokenize, train, evaluate on the SST-2 test file (872 rows; or
``--test``), save.
The plain script: ``AutoModelForSequenceClassification``, dynamic padding (``DataCollatorWithPadding``), random
batches, truncation at 512, finetuner's learning rate for the model size (so the two train the same way), eval at
batch 64, ``save_pretrained``. finetuner: ``python -m finetuner train --data … --eval … --epochs E --batch-size B``
and nothing else (its run.json gives the per-stage seconds). Writes results/whole_process.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import pandas as pd

from .common import DATASETS_DIR as DATA_DIR, RESULTS_DIR, load_avg, machine_info

_PLAIN = r'''
import sys, time, json
t0 = time.perf_counter()
import numpy as np, pandas as pd, torch
from datasets import Dataset
from transformers import (AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding, Trainer,
                          TrainingArguments, set_seed)
from finetuner.models import bundled_model_path
from finetuner.config import default_learning_rate
stages = {"import": time.perf_counter() - t0}
train_file, test_file, out_dir, epochs, batch, seed = sys.argv[1:7]
epochs, batch, seed = float(epochs), int(batch), int(seed)
t = time.perf_counter()
train, test = (pd.read_csv(f, keep_default_na=False) for f in (train_file, test_file))
names = sorted(set(train.label.astype(str)) | set(test.label.astype(str)))
label2id = {n: i for i, n in enumerate(names)}
set_seed(seed)
path = str(bundled_model_path())
tokenizer = AutoTokenizer.from_pretrained(path)
model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=len(names),
    id2label=dict(enumerate(names)), label2id=label2id)
stages["load"] = time.perf_counter() - t
t = time.perf_counter()
def dataset(frame):
    enc = tokenizer(list(frame.text), truncation=True, max_length=512)
    return Dataset.from_dict({**{k: enc[k] for k in enc}, "labels": [label2id[str(v)] for v in frame.label]})
train_ds, test_ds = dataset(train), dataset(test)
stages["tokenize"] = time.perf_counter() - t
t = time.perf_counter()
args = TrainingArguments(output_dir=out_dir + "/tmp", num_train_epochs=epochs,
    learning_rate=default_learning_rate(model.num_parameters(), "finetune"), per_device_train_batch_size=batch,
    per_device_eval_batch_size=64, weight_decay=0.01, warmup_steps=0.1, seed=seed, data_seed=seed,
    save_strategy="no", eval_strategy="no", logging_steps=10, report_to="none", disable_tqdm=True,
    use_cpu=not torch.cuda.is_available())
trainer = Trainer(model=model, args=args, train_dataset=train_ds, processing_class=tokenizer,
                  data_collator=DataCollatorWithPadding(tokenizer))
trainer.train()
stages["train"] = time.perf_counter() - t
t = time.perf_counter()
prediction = trainer.predict(test_ds)
accuracy = float(np.mean(prediction.predictions.argmax(-1) == prediction.label_ids))
stages["evaluate"] = time.perf_counter() - t
t = time.perf_counter()
trainer.save_model(out_dir + "/model")
tokenizer.save_pretrained(out_dir + "/model")
stages["save"] = time.perf_counter() - t
print(json.dumps({"accuracy": accuracy, "stages": stages}))
'''


def _run_plain(train: Path, test: Path, work: Path, epochs: float, batch: int, seed: int) -> Dict[str, Any]:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", _PLAIN, str(train), str(test), str(work), str(epochs),
                           str(batch), str(seed)], capture_output=True, text=True, check=True)
    wall = time.perf_counter() - started
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return {"system": "plain_trainer", "wall_s": wall, "accuracy": result["accuracy"],
            "stages": {k: round(v, 2) for k, v in result["stages"].items()}}


def _run_finetuner(train: Path, test: Path, work: Path, epochs: float, batch: int, seed: int,
                   defaults: bool = False) -> Dict[str, Any]:
    shape = [] if defaults else ["--epochs", str(epochs), "--batch-size", str(batch)]
    command = [sys.executable, "-m", "finetuner", "train", "--data", str(train), "--eval", str(test), *shape,
               "--seed", str(seed), "--output", str(work / "run"), "--quiet"]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-2000:])
    record = json.loads((work / "run" / "run.json").read_text())
    stages = dict(record["training"].get("stage_seconds", {}))
    stages["import and start-up"] = round(wall - record["training"]["wall_seconds"], 2)
    return {"system": "finetuner_cli", "wall_s": wall, "accuracy": record["metrics"]["accuracy"],
            "ece": record["metrics"].get("ece"), "method": record["method_choice"].get("method"),
            "reason": record["method_choice"].get("reason"), "stages": stages,
            "command": " ".join(command[1:])}


def run(rows: int, epochs: float, batch: int, repeats: int, seed: int, train_file: Optional[Path] = None,
        test_file: Optional[Path] = None, cli_defaults: bool = False) -> Dict[str, Any]:
    if train_file is None:
        data = pd.read_csv(DATA_DIR / "sst2" / "train.csv").sample(n=rows, random_state=seed)
    else:
        data = pd.read_csv(train_file, keep_default_na=False)
    test = test_file or DATA_DIR / "sst2" / "test.csv"
    results: List[Dict[str, Any]] = []
    load_start = load_avg()
    with tempfile.TemporaryDirectory(prefix="whole-process-") as tmp:
        train = Path(tmp) / "train.csv"
        data.to_csv(train, index=False)
        for repeat in range(repeats):
            for name, runner in (("finetuner_cli", _run_finetuner), ("plain_trainer", _run_plain)):
                work = Path(tmp) / f"{name}-{repeat}"
                work.mkdir()
                if runner is _run_finetuner:
                    result = runner(train, test, work, epochs, batch, seed, defaults=cli_defaults)
                else:
                    result = runner(train, test, work, epochs, batch, seed)
                result["repeat"] = repeat
                results.append(result)
                print(f"{name}: {result['wall_s']:.1f} s, accuracy {result['accuracy']:.3f}, {result['stages']}",
                      flush=True)
    settings = {"rows": len(data), "epochs": epochs, "batch_size": batch, "repeats": repeats, "seed": seed,
                "train": str(train_file or "sst2/train.csv sample"), "test": str(test),
                "finetuner": "its defaults (--data/--eval only)" if cli_defaults else "same epochs and batch size"}
    return {"settings": settings,
            "machine": machine_info(), "load_avg_start": load_start, "load_avg_end": load_avg(), "runs": results}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--epochs", type=float, default=2)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train", type=Path, help="a text,label CSV to train on (every row) instead of SST-2")
    parser.add_argument("--test", type=Path, help="the text,label CSV to evaluate on (with --train)")
    parser.add_argument("--cli-defaults", action="store_true",
                        help="finetuner gets only --data/--eval (its own epochs, batch size, method)")
    parser.add_argument("--output", default="whole_process.json", help="file name under bench/results/")
    args = parser.parse_args()
    if (args.train is None) != (args.test is None):
        parser.error("--train and --test go together")
    result = run(args.rows, args.epochs, args.batch_size, args.repeats, args.seed, args.train, args.test,
                 args.cli_defaults)
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / args.output).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
