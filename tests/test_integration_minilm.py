"""Real learning with the bundled all-MiniLM-L6-v2 on real data (offline)."""

from pathlib import Path

import pandas as pd
import pytest
from sklearn.model_selection import train_test_split

from finetuner import LLMFinetuner, TrainConfig

DATASETS = Path(__file__).resolve().parents[2] / "shared" / "datasets"
SAMPLE_DATA = Path(__file__).resolve().parents[1] / "sample_data"

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("all_threads")]


def test_seed_flow_on_the_bundled_default_with_the_lab_sentences():
    table = pd.read_csv(SAMPLE_DATA / "lab_sentences.csv")
    train_x, test_x, train_y, test_y = train_test_split(
        table.text.tolist(), table.label.tolist(), test_size=0.2, random_state=42)
    model = LLMFinetuner()
    model.fine_tune(train_x, train_y, test_x, test_y)
    metrics = model.evaluate_model(test_x, test_y)
    assert {"accuracy", "f1_macro", "f1_weighted", "precision_macro", "recall_macro", "loss"} <= set(metrics)
    prediction = model.predict(["The support team was wonderful."])
    assert len(prediction) == 1 and isinstance(prediction[0], int) and prediction[0] in (0, 1)


@pytest.mark.skipif(not (DATASETS / "agnews").is_dir(), reason="shared AG News copy not present")
def test_bundled_model_learns_news_topics(tmp_path):
    train = pd.read_csv(DATASETS / "agnews" / "train.csv").sample(1000, random_state=0)
    test = pd.read_csv(DATASETS / "agnews" / "test.csv")  # all 2,001 rows: a 400-row sample moves by ±2 points
    # head then fine-tuning named: at 250 per class auto tries few-shot tuning first (8,000 pairs: minutes)
    model = LLMFinetuner(config=TrainConfig(method="head_finetune", epochs=2, max_length=64))
    model.fine_tune(train.text.tolist(), train.label.tolist())
    metrics = model.evaluate_model(test.text.tolist(), test.label.tolist())
    assert metrics["accuracy"] >= 0.85, metrics
    assert sorted(model.labels) == sorted(test.label.unique())

    sample = test.text.tolist()[:20]
    before = model.predict_proba_array(sample)
    restored = LLMFinetuner.load(model.save(tmp_path / "agnews-model"))
    assert (restored.predict_proba_array(sample) == before).all()
    assert restored.predict_labels(sample) == model.predict_labels(sample)
