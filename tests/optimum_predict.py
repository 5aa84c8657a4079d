"""Predict with optimum's ``ORTModelForSequenceClassification`` and transformers' pipeline, in the optimum venv.

optimum-onnx (0.1.0, the newest release) requires transformers < 4.58, so it cannot be installed beside
finetuner's transformers 5; ``.ci/run`` makes a second venv for it from ``requirements-optimum.txt``, and
tests/test_optimum.py runs this file there:

    .venv-optimum/bin/python tests/optimum_predict.py EXPORT_DIR TEXTS.json OUT.json [EXPORT_DIR ... ...]

It imports nothing of finetuner: what it shows is that a user with optimum alone gets the model's predictions.
"""

import json
import sys


def main(directory: str, texts_file: str, output: str) -> None:
    from optimum.onnxruntime import ORTModelForSequenceClassification
    from transformers import AutoTokenizer, pipeline

    model = ORTModelForSequenceClassification.from_pretrained(directory)
    classify = pipeline("text-classification", model=model, tokenizer=AutoTokenizer.from_pretrained(directory),
                        top_k=None, truncation=True)  # the exported tokenizer cuts where training did
    with open(texts_file, encoding="utf-8") as source:
        texts = json.load(source)
    rows = classify(texts, batch_size=32)
    names = [model.config.id2label[i] for i in range(model.config.num_labels)]
    with open(output, "w", encoding="utf-8") as sink:
        json.dump({"model_class": type(model).__name__, "names": names,
                   "probabilities": [[{r["label"]: r["score"] for r in row}[name] for name in names]
                                     for row in rows]}, sink)


if __name__ == "__main__":
    arguments = sys.argv[1:]
    if not arguments or len(arguments) % 3:
        sys.exit(__doc__)
    for start in range(0, len(arguments), 3):  # one start of this venv for several exports
        main(*arguments[start:start + 3])
