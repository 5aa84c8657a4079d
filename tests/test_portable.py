"""Saved models outside finetuner: transformers' ``pipeline`` either predicts exactly what finetuner predicts or
refuses the folder with an error naming what it is, for every method; never a random head loaded in silence.
Folders written before format 2 still load; the model card says how each kind loads."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import List

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import TINY_CONFIG, make_sentiment_data
from transformers import AutoModel, AutoModelForSequenceClassification, AutoTokenizer, pipeline

from finetuner import LLMFinetuner
from finetuner.classifier import FORMAT_VERSION, METADATA_FILE, TextClassifier
from finetuner.errors import ModelLoadError
from finetuner.export import ADAPTER, CLASSIFIER, SENTENCE, model_card, saved_kind
from finetuner.models import ENCODER_DIR, LORA_ADAPTER_TYPE, SENTENCE_CLASSIFIER_TYPE, resolve_model
from finetuner.runs import RunRecord
from finetuner.training.sentence_classifier import HEAD_FILE, SentenceClassifier, is_sentence_classifier_dir

SST2_TEST = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "sst2" / "test.csv"
QUICK = {"finetune": TINY_CONFIG,
         "head": TINY_CONFIG.replace(method="head"),
         "fewshot": TINY_CONFIG.replace(method="fewshot", epochs=1, learning_rate=1e-3),
         "head_finetune": TINY_CONFIG.replace(method="head_finetune", epochs=4),
         "lora": TINY_CONFIG.replace(method="lora", lora_r=4, lora_alpha=8.0)}
REFUSED = "has model type `{}` but Transformers does not recognize this architecture"


@pytest.fixture(scope="module")
def texts() -> List[str]:
    """200 texts to predict: the first 100 SST-2 test sentences where the shared copy exists (real lengths, past
    the tiny models' 64 positions; most of their words are [UNK] to the tiny vocabulary), alternating with
    generated ones whose sentiment words the tiny models know, so that their predictions differ from text to text."""
    generated = make_sentiment_data(200, seed=11)[0]
    if not SST2_TEST.is_file():
        return generated
    real = pd.read_csv(SST2_TEST).text.astype(str).tolist()[:100]
    return [text for pair in zip(real, generated) for text in pair]


@pytest.fixture(scope="module")
def train_data():
    return make_sentiment_data(80, seed=1)


@pytest.fixture(scope="module")
def saved(tmp_path_factory, tiny_bert, tiny_llama, train_data):
    """``saved(method, base="bert", merge=False)``: (the trained model, its saved folder), trained once per module."""
    made = {}

    def make(method: str, base: str = "bert", merge: bool = False):
        key = (method, base)
        if key not in made:
            model = LLMFinetuner({"bert": tiny_bert, "llama": tiny_llama}[base], config=QUICK[method])
            model.fine_tune(*train_data)
            made[key] = model
        model = made[key]
        folder = tmp_path_factory.mktemp(f"{method}-{base}") / "model"
        return model, model.save(folder, merge=merge)

    return make


def pipeline_outcome(folder: Path, model: LLMFinetuner, texts: List[str]) -> str:
    """"identical" when transformers' pipeline predicts ``model``'s class name and probabilities for every text
    (with its truncation, as the model card says), else the error it refuses the folder with; any difference fails
    the test."""
    try:
        classifier = pipeline("text-classification", model=str(folder))
    except (ValueError, OSError) as exc:
        return str(exc)
    results = classifier(texts, top_k=None, truncation=True, max_length=model.classifier.length_limit())
    assert [ranked[0]["label"] for ranked in results] == model.predict_labels(texts), \
        "transformers' pipeline loaded the folder but predicts other labels"
    theirs = [{result["label"]: result["score"] for result in ranked} for ranked in results]
    for got, expected in zip(theirs, model.predict_proba(texts)):
        assert got == pytest.approx(expected, abs=1e-5)
    return "identical"


# ------------------------------------------------------------------ whole transformers classifiers


def test_full_fine_tuning_loads_in_the_pipeline_with_identical_labels(saved, texts):
    model, folder = saved("finetune")
    assert pipeline_outcome(folder, model, texts) == "identical"
    assert saved_kind(folder) == CLASSIFIER


@pytest.mark.parametrize("base", ["llama", "bert"])
def test_a_merged_lora_save_loads_in_the_pipeline_with_identical_labels(saved, texts, base):
    model, folder = saved("lora", base, merge=True)
    assert pipeline_outcome(folder, model, texts) == "identical"
    assert saved_kind(folder) == CLASSIFIER


# ------------------------------------------------------------------ sentence classifiers


@pytest.mark.parametrize("method", ["head", "fewshot", "head_finetune"])
def test_a_sentence_classifier_is_refused_by_the_pipeline_and_round_trips(saved, texts, method):
    model, folder = saved(method)
    assert REFUSED.format(SENTENCE_CLASSIFIER_TYPE) in pipeline_outcome(folder, model, texts)
    assert saved_kind(folder) == SENTENCE and is_sentence_classifier_dir(folder)
    assert (folder / ENCODER_DIR / "model.safetensors").is_file() and (folder / HEAD_FILE).is_file()
    assert not (folder / "model.safetensors").exists()
    config = json.loads((folder / "config.json").read_text())
    assert config["id2label"] == {"0": "negative", "1": "positive"} and config["label2id"] == {"negative": 0,
                                                                                              "positive": 1}
    loaded = LLMFinetuner.load(folder)
    assert isinstance(loaded.model, SentenceClassifier)
    np.testing.assert_array_equal(loaded.predict_proba_array(texts), model.predict_proba_array(texts))


def test_transformers_auto_classes_refuse_a_sentence_folder_but_load_its_tokenizer_and_encoder(saved, texts):
    model, folder = saved("head")
    for auto in (AutoModelForSequenceClassification, AutoModel):
        with pytest.raises(ValueError, match=REFUSED.format(SENTENCE_CLASSIFIER_TYPE)):
            auto.from_pretrained(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)  # the top level's config.json does not get in its way
    assert tokenizer(texts)["input_ids"] == model.tokenizer(texts)["input_ids"]
    encoder = AutoModel.from_pretrained(folder / ENCODER_DIR).eval()  # a standard model: the embeddings
    assert AutoTokenizer.from_pretrained(folder / ENCODER_DIR)(texts)["input_ids"] == tokenizer(texts)["input_ids"]
    batch = tokenizer(texts[:20], padding=True, truncation=True, return_tensors="pt")
    with torch.no_grad():
        states = encoder(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).float()
        embeddings = torch.nn.functional.normalize((states * mask).sum(1) / mask.sum(1), dim=-1)
        device = model.model.head.weight.device
        expected = model.model.embed(**{name: value.to(device) for name, value in batch.items()}).cpu()
    torch.testing.assert_close(embeddings, expected)


def test_a_sentence_folder_of_format_1_still_loads_and_predicts_identically(saved, texts):
    model, folder = saved("head")
    as_format_1(folder)
    assert is_sentence_classifier_dir(folder) and saved_kind(folder) == SENTENCE
    assert resolve_model(str(folder)).location == str(folder.resolve())  # its encoder is at the top
    loaded = TextClassifier.load(folder)
    assert isinstance(loaded.model, SentenceClassifier)
    np.testing.assert_array_equal(loaded.predict_proba_array(texts), model.predict_proba_array(texts))
    assert loaded.labels == model.labels


def as_format_1(folder: Path) -> None:
    """Rewrite a saved sentence classifier as finetuner wrote one before format 2: the encoder's config.json and
    weights at the top beside the head and tokenizer, no encoder/ folder."""
    encoder = folder / ENCODER_DIR
    (folder / "config.json").unlink()
    for name in ("config.json", "model.safetensors"):
        (encoder / name).rename(folder / name)
    shutil.rmtree(encoder)
    meta = json.loads((folder / METADATA_FILE).read_text())
    (folder / METADATA_FILE).write_text(json.dumps({**meta, "format_version": 1}))


def test_a_saved_sentence_classifier_is_a_base_model_through_its_encoder(saved, train_data):
    model, folder = saved("head_finetune")  # its encoder was trained
    assert json.loads((folder / METADATA_FILE).read_text())["format_version"] == FORMAT_VERSION == 2
    assert resolve_model(str(folder)).location == str((folder / ENCODER_DIR).resolve())
    further = LLMFinetuner(str(folder), config=QUICK["head"])
    trained = model.model.encoder.state_dict()
    loaded = {name: value for name, value in further.model.base_model.state_dict().items() if name in trained}
    assert loaded and all(torch.equal(value.cpu(), trained[name].cpu()) for name, value in loaded.items())
    further.fine_tune(*train_data)
    assert set(further.predict_labels(train_data[0])) <= {"negative", "positive"}


# ------------------------------------------------------------------ LoRA adapters


@pytest.mark.parametrize("base", ["llama", "bert"])
def test_a_lora_adapter_is_refused_by_the_pipeline_and_round_trips(saved, texts, base):
    model, folder = saved("lora", base)
    assert REFUSED.format(LORA_ADAPTER_TYPE) in pipeline_outcome(folder, model, texts)
    with pytest.raises(ValueError, match=REFUSED.format(LORA_ADAPTER_TYPE)):
        AutoModelForSequenceClassification.from_pretrained(folder)
    assert saved_kind(folder) == ADAPTER
    with pytest.raises(ModelLoadError, match="LoRA adapter saved by finetuner"):
        resolve_model(str(folder))
    np.testing.assert_array_equal(LLMFinetuner.load(folder).predict_proba_array(texts),
                                  model.predict_proba_array(texts))


def test_the_peft_recipe_of_the_model_card_predicts_identically(saved, texts, tiny_llama):
    from peft import PeftModel

    model, folder = saved("lora", "llama")
    config = json.loads((folder / "config.json").read_text())
    base = AutoModelForSequenceClassification.from_pretrained(
        tiny_llama, id2label={int(i): name for i, name in config["id2label"].items()}, label2id=config["label2id"])
    adapted = PeftModel.from_pretrained(base, str(folder)).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    with torch.no_grad():
        ids = [int(adapted(**tokenizer(text, return_tensors="pt")).logits.argmax()) for text in texts]
    assert [adapted.config.id2label[i] for i in ids] == model.predict_labels(texts)


# ------------------------------------------------------------------ model cards


@pytest.mark.parametrize("method, merge, kind", [("finetune", False, CLASSIFIER), ("head_finetune", False, SENTENCE),
                                                 ("lora", False, ADAPTER), ("lora", True, CLASSIFIER)])
def test_the_model_card_follows_what_the_folder_holds(saved, method, merge, kind):
    _, folder = saved(method, merge=merge)
    record = RunRecord(id="r1", status="completed", base_model="bert-base-uncased", created_at="",
                       config={**QUICK[method].to_dict(), "max_length": 64}, labels=["negative", "positive"])
    card = model_card(record, folder)
    library = {CLASSIFIER: "transformers", SENTENCE: "finetuner", ADAPTER: "peft"}[kind]
    assert card.startswith(f"---\nlibrary_name: {library}\n")
    assert ("inference: false" in card) == (kind != CLASSIFIER)
    snippet = 'classifier(["an example sentence"], truncation=True, max_length=64)'
    assert (snippet in card) == ('pipeline("text-classification"' in card) == (kind == CLASSIFIER)
    assert "LLMFinetuner.load" in card
    refused = {SENTENCE: SENTENCE_CLASSIFIER_TYPE, ADAPTER: LORA_ADAPTER_TYPE}.get(kind)
    assert refused is None or f"`{refused}`" in card  # the model type named in transformers' error
    if merge:
        assert "merged into the base model's weights" in card


def test_exporting_a_format_1_sentence_run_publishes_it_in_the_current_format(tiny_bert, tmp_path, texts):
    """A run saved before format 2 would load in the pipeline with a random head: the zip holds it re-saved."""
    import zipfile

    from finetuner.export import export_zip
    from finetuner.prepare import prepare
    from finetuner.runner import Runner, TrainSpec
    from finetuner.runs import RunStore

    train_texts, labels = make_sentiment_data(40, seed=7)
    store = RunStore(tmp_path / "runs")
    job = Runner(store).submit(TrainSpec(tiny_bert, QUICK["head"], prepare(
        pd.DataFrame({"text": train_texts, "label": labels}), source="s.csv"), preset="custom"))
    assert job.done.wait(120) and job.status == "completed", job.error
    as_format_1(store.model_dir(job.record.id))
    with zipfile.ZipFile(export_zip(store, job.record.id, tmp_path)) as archive:
        archive.extractall(tmp_path / "unzipped")
    folder = tmp_path / "unzipped" / f"finetuner-{job.record.id}"
    assert json.loads((folder / METADATA_FILE).read_text())["format_version"] == FORMAT_VERSION
    assert (folder / ENCODER_DIR / "model.safetensors").is_file()
    with pytest.raises(ValueError, match=REFUSED.format(SENTENCE_CLASSIFIER_TYPE)):
        pipeline("text-classification", model=str(folder))
    np.testing.assert_allclose(TextClassifier.load(folder).predict_proba_array(texts),
                               store.load_model(job.record.id).predict_proba_array(texts), atol=1e-6)
