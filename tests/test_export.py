"""Export: the model zip (loadable, with a model card and labels) and the Hub push's offline/token handling."""

from __future__ import annotations

import zipfile

import pandas as pd
import pytest
from conftest import TINY_CONFIG, make_sentiment_data

from finetuner import LLMFinetuner
from finetuner.export import ExportError, export_zip, model_card, push_to_hub
from finetuner.prepare import prepare
from finetuner.runner import Runner, TrainSpec
from finetuner.runs import RunError, RunStore

TOKEN = "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123"


@pytest.fixture(scope="module")
def completed(tmp_path_factory, tiny_bert):
    """A run store holding one completed tiny run; returns (store, run id)."""
    texts, labels = make_sentiment_data(50, seed=7)
    store = RunStore(tmp_path_factory.mktemp("runs"))
    job = Runner(store).submit(TrainSpec(tiny_bert, TINY_CONFIG.replace(epochs=2),
                                         prepare(pd.DataFrame({"text": texts, "label": labels}), source="s.csv"),
                                         preset="custom"))
    assert job.done.wait(120) and job.status == "completed", job.error
    return store, job.record.id


def test_model_card_has_data_settings_and_scores(completed):
    store, run_id = completed
    card = model_card(store.get(run_id))
    assert card.startswith("---\nlibrary_name: transformers")
    assert "base_model:" not in card  # a local directory is not a Hub id
    for expected in ("## Training data", "s.csv", "negative: ", "## Training settings", "| epochs | 2",
                     "| Accuracy |", "| negative |", "LLMFinetuner.load"):
        assert expected in card
    assert "| learning_rate | None |" not in card and "| max_length | None |" not in card  # the values used


def test_the_zip_holds_a_loadable_model_with_card_and_labels(completed, tmp_path):
    store, run_id = completed
    archive = export_zip(store, run_id, tmp_path)
    assert archive.name == f"finetuner-{run_id}.zip"
    with zipfile.ZipFile(archive) as opened:
        names = set(opened.namelist())
        folder = f"finetuner-{run_id}"
        assert {f"{folder}/model.safetensors", f"{folder}/README.md", f"{folder}/labels.txt",
                f"{folder}/finetuner.json", f"{folder}/config.json"} <= names
        assert not any(name.endswith((".bin", ".pt", ".pkl")) for name in names)
        assert opened.read(f"{folder}/labels.txt").decode().split() == ["negative", "positive"]
        modes = {info.filename: (info.external_attr >> 16) & 0o777 for info in opened.infolist()}
        assert set(modes.values()) == {0o644}, modes  # readable once unzipped, whatever the saved files had
        opened.extractall(tmp_path / "unzipped")
    model = LLMFinetuner.load(tmp_path / "unzipped" / folder)
    expected = store.load_model(run_id).predict_proba(["great film"])[0]
    assert model.predict_proba(["great film"])[0] == pytest.approx(expected)


def test_only_completed_runs_export(completed):
    store, _ = completed
    record = store.create("m")
    store.finish(record, "stopped")
    with pytest.raises(RunError, match="only completed runs"):
        export_zip(store, record.id)


def test_push_checks_repo_and_token_then_fails_clearly_offline(completed, monkeypatch):
    store, run_id = completed
    with pytest.raises(ExportError, match="not a Hub repository id"):
        push_to_hub(store, run_id, "no-slash", TOKEN)
    with pytest.raises(ExportError, match="access token"):
        push_to_hub(store, run_id, "me/model", "  ")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ExportError, match="cannot be reached") as raised:
        push_to_hub(store, run_id, "me/model", TOKEN)
    assert TOKEN not in str(raised.value)


@pytest.mark.parametrize("method, words", [("head", "embedding head"), ("fewshot", "SetFit"),
                                           ("head_finetune", "embedding head, then full fine-tuning")])
def test_model_card_of_a_sentence_classifier_says_how_to_load_it(method, words):
    from finetuner.runs import RunRecord
    record = RunRecord(id="r1", status="completed", base_model="all-minilm-l6-v2", created_at="2026-11-25",
                       config={"method": method}, labels=["negative", "positive"])
    card = model_card(record)
    assert card.startswith("---\nlibrary_name: finetuner\npipeline_tag: text-classification\ninference: false\n")
    assert words in card and "sentence_head.safetensors" in card and "LLMFinetuner.load" in card
    assert "`finetuner-sentence-classifier`" in card and "refuse this folder on purpose" in card
    assert 'AutoModel.from_pretrained("path/to/this/folder/encoder")' in card
    assert "python -m finetuner export --model path/to/this/folder --format onnx --output DIR" in card
    assert "pipeline(" not in card and "Method: full fine-tuning" not in card


def test_model_card_of_a_full_fine_tune_shows_the_pipeline_with_the_trained_truncation(completed):
    store, run_id = completed
    record = store.get(run_id)
    card = model_card(record, store.model_dir(run_id))
    assert "inference: false" not in card and "Method: full fine-tuning" in card
    length = record.config["max_length"]
    assert isinstance(length, int)
    assert f'classifier(["an example sentence"], truncation=True, max_length={length})' in card


def test_model_card_of_a_lora_adapter_says_the_pipeline_refuses_it():
    from finetuner.runs import RunRecord
    record = RunRecord(id="r1", status="completed", base_model="HuggingFaceTB/SmolLM2-135M", created_at="",
                       config={"method": "lora"}, labels=["negative", "positive"])
    card = model_card(record)
    assert card.startswith("---\nlibrary_name: peft\npipeline_tag: text-classification\ninference: false\n")
    assert "`finetuner-lora-adapter`" in card and "merge=True" in card and "id2label" in card
    assert "pipeline(" not in card
