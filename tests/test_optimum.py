"""optimum's ORTModelForSequenceClassification (in its own venv: see tests/optimum_predict.py) loads a finetuner
ONNX export and predicts what finetuner does."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

from conftest import TINY_CONFIG, make_sentiment_data
from finetuner import LLMFinetuner

ROOT = Path(__file__).resolve().parent.parent
OPTIMUM_PYTHON = ROOT / ".venv-optimum" / "bin" / "python"
METHODS = ["finetune", "head_finetune"]

pytestmark = pytest.mark.skipif(
    not OPTIMUM_PYTHON.exists(),
    reason="no optimum venv: python3 -m venv .venv-optimum && .venv-optimum/bin/pip install -r "
           "requirements-optimum.txt (.ci/run makes it)")


@pytest.fixture(scope="module")
def predicted(tiny_bert, tmp_path_factory):
    """Each method's model exported to ONNX, and what optimum predicts from each export: {method: (finetuner,
    texts, optimum's output)}. One run of the optimum venv reads every export (its start is most of the time)."""
    train_texts, labels = make_sentiment_data(60, seed=1)
    texts = make_sentiment_data(100, seed=5)[0] + [" ".join(make_sentiment_data(40, seed=6)[0])]  # one over the limit
    folder = tmp_path_factory.mktemp("optimum")
    (folder / "texts.json").write_text(json.dumps(texts))
    models, arguments = {}, []
    for method in METHODS:
        # Truncated like optimum's pipeline: finetuner reads a long text in windows, which the pipeline does not do.
        finetuner = LLMFinetuner(tiny_bert, config=TINY_CONFIG.replace(method=method, epochs=2, long_texts="truncate"))
        finetuner.fine_tune(train_texts, labels)
        finetuner.export_onnx(folder / method / "onnx")
        models[method] = finetuner
        arguments += [str(folder / method / "onnx"), str(folder / "texts.json"), str(folder / method / "out.json")]
    subprocess.run([str(OPTIMUM_PYTHON), str(ROOT / "tests" / "optimum_predict.py"), *arguments], check=True,
                   timeout=300, capture_output=True)
    return {method: (models[method], texts, json.loads((folder / method / "out.json").read_text()))
            for method in METHODS}


@pytest.mark.parametrize("method", METHODS)
def test_optimum_loads_the_export_and_predicts_what_finetuner_does(predicted, method):
    finetuner, texts, out = predicted[method]
    assert out["model_class"] == "ORTModelForSequenceClassification" and out["names"] == finetuner.labels
    theirs = np.asarray(out["probabilities"])
    ours = finetuner.predict_proba_array(texts)
    np.testing.assert_array_equal(theirs.argmax(axis=1), ours.argmax(axis=1))
    np.testing.assert_allclose(theirs, ours, atol=1e-4)
