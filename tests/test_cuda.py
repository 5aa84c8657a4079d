"""The CUDA path, run where a GPU is present (skipped elsewhere: CI has none). Every method trains on the GPU,
batched predictions equal one-by-one ones (input order kept), and a saved model loads back onto the GPU and
predicts the same."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import TINY_CONFIG
from finetuner import LLMFinetuner, TrainConfig

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

CONFIGS = {
    "finetune": TINY_CONFIG,
    "head": TrainConfig(method="head", seed=0),
    "fewshot": TrainConfig(method="fewshot", seed=0, batch_size=8, learning_rate=1e-3),
    "head_finetune": TINY_CONFIG.replace(method="head_finetune"),
    "lora": TINY_CONFIG.replace(method="lora", lora_r=4, lora_alpha=8.0),
}


@pytest.mark.parametrize("method", CONFIGS)
def test_each_method_trains_predicts_and_round_trips_on_the_gpu(method, tiny_bert, tiny_llama, sentiment_data,
                                                                 tmp_path):
    train_texts, train_labels, eval_texts, eval_labels = sentiment_data
    model = LLMFinetuner(tiny_llama if method == "lora" else tiny_bert, config=CONFIGS[method])
    model.fine_tune(train_texts, train_labels, eval_texts, eval_labels)
    assert next(model.model.parameters()).device.type == "cuda"
    if method == "lora":  # a random tiny decoder learns slowly: its loss falls (as in test_lora)
        losses = [event["loss"] for event in model.history if "loss" in event]
        assert np.mean(losses[-3:]) < np.mean(losses[:3]) - 0.05
    else:
        assert model.evaluate_model(eval_texts, eval_labels)["accuracy"] >= (0.7 if method == "head" else 0.8)
    batched = model.predict_proba_array(eval_texts)
    one_by_one = np.vstack([model.predict_proba_array([text]) for text in eval_texts])
    np.testing.assert_allclose(batched, one_by_one, atol=1e-3)
    loaded = LLMFinetuner.load(model.save(tmp_path / method))
    assert next(loaded.model.parameters()).device.type == "cuda"
    assert loaded.predict_labels(eval_texts) == model.predict_labels(eval_texts)
