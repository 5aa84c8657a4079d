"""ONNX export of every method, checked on the whole SST-2 test file (issue #22).

    python -m bench.onnx_methods [--rows 512] [--methods finetune,head,fewshot,head_finetune,lora] [--seed 0]

For each method: train on SST-2 training rows with the bundled MiniLM (few-shot on 32 per class, the others on
``--rows`` rows, one epoch; LoRA three), export with ``--quantize int8``, then predict the 872 test texts with
PyTorch, the fp32 graph and the int8 graph (ONNX Runtime, through finetuner's own predict path). Reports label
agreement, the largest probability difference, each one's accuracy, the export's seconds and the file sizes. Writes
results/onnx_methods.json.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any, Dict

import numpy as np

from .common import RESULTS_DIR, load_avg, load_split, machine_info, sample_per_class, sample_rows

METHODS = ("finetune", "head", "fewshot", "head_finetune", "lora")


def measure(method: str, rows: int, seed: int, folder: Path) -> Dict[str, Any]:
    from finetuner import LLMFinetuner, TrainConfig
    from finetuner.training.onnx_graph import ONNX_FILE, QUANTIZED_FILE

    train = load_split("sst2", "train")
    texts, labels = (sample_per_class(*train, 32, seed) if method == "fewshot" else sample_rows(*train, rows, seed))
    test_texts, test_labels = load_split("sst2", "test")
    model = LLMFinetuner(config=TrainConfig(method=method, epochs=3 if method == "lora" else 1, seed=seed))
    start = time.perf_counter()
    model.fine_tune(texts, labels)
    trained = time.perf_counter() - start
    start = time.perf_counter()
    result = model.export_onnx(folder / "onnx", quantize="int8")
    exported = time.perf_counter() - start
    reference = model.predict_proba_array(test_texts)
    out: Dict[str, Any] = {"method": method, "train_rows": len(texts), "train_seconds": trained,
                           "export_seconds": exported, "export_check": result.as_dict(),
                           "accuracy": {"torch": _accuracy(model.labels, reference, test_labels)}}
    for name, file in (("onnx", ONNX_FILE), ("onnx_int8", QUANTIZED_FILE)):
        model.classifier.use_onnx(folder / "onnx" / file)
        probabilities = model.predict_proba_array(test_texts)
        out["accuracy"][name] = _accuracy(model.labels, probabilities, test_labels)
        out[name] = {"labels_identical_to_torch": bool((probabilities.argmax(1) == reference.argmax(1)).all()),
                     "agreement_with_torch": float((probabilities.argmax(1) == reference.argmax(1)).mean()),
                     "max_abs_probability_difference": float(np.abs(probabilities - reference).max()),
                     "file_mb": (folder / "onnx" / file).stat().st_size / 2**20}
    model.classifier.use_onnx(None)
    return out


def _accuracy(names, probabilities: np.ndarray, labels) -> float:
    return float(np.mean([names[i] == str(y) for i, y in zip(probabilities.argmax(1), labels)]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=512)
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    results = {"machine": machine_info(), "load_avg_start": load_avg(), "rows": args.rows, "seed": args.seed,
               "test_texts": 872, "methods": []}
    for method in args.methods.split(","):
        with tempfile.TemporaryDirectory(prefix=f"onnx-{method}-") as folder:
            row = measure(method, args.rows, args.seed, Path(folder))
        results["methods"].append(row)
        accuracy = row["accuracy"]
        print(f"{method}: fp32 identical {row['onnx']['labels_identical_to_torch']} "
              f"max|dp| {row['onnx']['max_abs_probability_difference']:.2e}; accuracy torch {accuracy['torch']:.4f} "
              f"onnx {accuracy['onnx']:.4f} int8 {accuracy['onnx_int8']:.4f} "
              f"(agreement {row['onnx_int8']['agreement_with_torch']:.4f}); export {row['export_seconds']:.1f} s",
              flush=True)
    results["load_avg_end"] = load_avg()
    path = RESULTS_DIR / "onnx_methods.json"
    path.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(f"-> {path}")


if __name__ == "__main__":
    main()
