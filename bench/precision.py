"""``python -m bench.precision``: training speed of ``TrainConfig(precision=...)`` fp32 vs bf16 by model size and
batch size, through ``LLMFinetuner`` (method "finetune", 1 epoch on SST-2 rows). Meant for a GPU, where it
decides what ``precision="auto"`` picks; it runs on a CPU too (slowly).

Models: the bundled MiniLM (22M parameters, accuracy on the SST-2 test file reported) and randomly initialised
BERT-base- and BERT-large-shaped encoders with MiniLM's tokenizer (speed only: random weights learn little).
Prints one JSON line per run and writes ``bench/results/precision.json``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List

import torch

from .common import device_name, load_split, log, sample_rows, write_json

SHAPES = {"bert-base": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072),
          "bert-large": dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096)}


def _random_encoder(shape: str, directory: Path) -> str:
    from transformers import AutoTokenizer, BertConfig, BertModel
    from finetuner.models import bundled_model_path
    tokenizer = AutoTokenizer.from_pretrained(str(bundled_model_path()))
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=len(tokenizer), **SHAPES[shape])).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return str(directory)


def run(models: List[str], batch_sizes: List[int], rows: int, seed: int = 0) -> Dict[str, Any]:
    from finetuner import LLMFinetuner, TrainConfig
    texts, labels = sample_rows(*load_split("sst2", "train"), rows, seed)
    test_texts, test_labels = load_split("sst2", "test")
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in models:
            path = "minilm" if name == "minilm" else _random_encoder(name, Path(tmp) / name)
            for batch_size in batch_sizes:
                for precision in ("fp32", "bf16"):
                    model = LLMFinetuner(path, config=TrainConfig(method="finetune", epochs=1, batch_size=batch_size,
                                                                  precision=precision, seed=seed))
                    start = time.perf_counter()
                    model.fine_tune(texts, labels)
                    wall = time.perf_counter() - start
                    result = {"model": name, "parameters": model.model.num_parameters(), "batch_size": batch_size,
                              "precision": precision, "rows": rows, "wall_s": wall, "samples_per_s": rows / wall}
                    if name == "minilm":
                        result["accuracy"] = model.evaluate_model(test_texts, test_labels)["accuracy"]
                    runs.append(result)
                    log(json.dumps(result))
    return {"settings": {"rows": rows, "seed": seed, "device": device_name(), "epochs": 1}, "runs": runs}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="minilm,bert-base,bert-large")
    parser.add_argument("--batch-sizes", default="32,128")
    parser.add_argument("--rows", type=int, default=4000)
    args = parser.parse_args(argv)
    results = run(args.models.split(","), [int(b) for b in args.batch_sizes.split(",")], args.rows)
    log(f"precision -> {write_json('precision', results)}")


if __name__ == "__main__":
    main()
