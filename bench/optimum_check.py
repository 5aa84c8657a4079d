"""Does optimum's ``ORTModelForSequenceClassification`` run a finetuner ONNX export as finetuner does? (issue #22)

optimum-onnx (0.1.0, the newest release) pins transformers < 4.58, so it cannot live in finetuner's environment
(transformers 5.24). Run this file with a separate venv that has it, then compare with finetuner's predictions:

    python3 -m venv /tmp/optvenv && /tmp/optvenv/bin/pip install torch==2.13.0 transformers==4.57.1 \
        optimum-onnx==0.1.0 onnxruntime==1.32.0 pandas
    /tmp/optvenv/bin/python bench/optimum_check.py EXPORT_DIR MAX_LENGTH optimum.json
    python -m bench.optimum_check --compare MODEL_DIR optimum.json

The first call predicts the SST-2 test file with ``pipeline(model=ORTModelForSequenceClassification...)``; the
second loads the finetuner model the export came from (PyTorch) and reports label agreement and max |Δp|.
"""

import json
import sys

import numpy as np
import pandas as pd

TEST = "/work/shared/datasets/sst2/test.csv"


def predict_with_optimum(directory: str, max_length: int, output: str) -> None:
    from optimum.onnxruntime import ORTModelForSequenceClassification
    from transformers import AutoTokenizer, pipeline

    model = ORTModelForSequenceClassification.from_pretrained(directory)
    classify = pipeline("text-classification", model=model, tokenizer=AutoTokenizer.from_pretrained(directory),
                        top_k=None, truncation=True, max_length=max_length)
    rows = classify(list(pd.read_csv(TEST).text), batch_size=32)
    names = list(model.config.id2label.values())
    probabilities = [[{r["label"]: r["score"] for r in row}[name] for name in names] for row in rows]
    with open(output, "w") as sink:
        json.dump({"names": names, "probabilities": probabilities}, sink)
    print(f"{type(model).__name__}: {len(rows)} texts -> {output}")


def compare(model_dir: str, optimum_json: str) -> None:
    from finetuner import LLMFinetuner

    model = LLMFinetuner.load(model_dir, backend="torch")
    ours = model.predict_proba_array(list(pd.read_csv(TEST).text))
    theirs = json.load(open(optimum_json))
    order = [theirs["names"].index(name) for name in model.labels]
    theirs = np.asarray(theirs["probabilities"])[:, order]
    print(json.dumps({"texts": len(ours), "labels_identical": bool((ours.argmax(1) == theirs.argmax(1)).all()),
                      "max_abs_probability_difference": float(np.abs(ours - theirs).max())}))


if __name__ == "__main__":
    if sys.argv[1] == "--compare":
        compare(sys.argv[2], sys.argv[3])
    else:
        predict_with_optimum(sys.argv[1], int(sys.argv[2]), sys.argv[3])
