"""Training only the word-embedding rows the training texts use (finetuner.training.embedding_rows): the same model
as training the whole matrix, the rows no text uses untouched, resumable checkpoints, and the cases it leaves
alone."""

from __future__ import annotations

import contextlib
import random

import pytest
import torch
from conftest import NEGATIVE, POSITIVE, TINY_CONFIG
from datasets import Dataset
from safetensors import safe_open
from torch import nn
from transformers import AutoModel

import finetuner.training.embedding_methods as embedding_methods
import finetuner.training.finetune as finetune
from finetuner import LLMFinetuner
from finetuner.training.embedding_rows import ROWS_NAME, seen_rows_only, token_ids_in
from finetuner.training.progress import ProgressCallback


def narrow_data(n: int = 48, seed: int = 0):
    """Texts from 8 of the tiny vocabulary's ~60 words, so that most embedding rows are never used."""
    rng = random.Random(seed)
    texts, labels = [], []
    for i in range(n):
        positive = i % 2 == 0
        word = rng.choice(POSITIVE[:3] if positive else NEGATIVE[:3])
        texts.append(" ".join(rng.sample(["the", "film", word], 3)))
        labels.append("positive" if positive else "negative")
    return texts, labels


def _word_embeddings(finetuner: LLMFinetuner) -> torch.Tensor:
    return finetuner.model.get_input_embeddings().weight.detach().clone()


def _used_rows(finetuner: LLMFinetuner, texts) -> torch.Tensor:
    """The rows of the tokens of ``texts`` (the padding token's row never trains)."""
    ids = {i for text in texts for i in finetuner.tokenizer(text)["input_ids"]}
    return torch.tensor(sorted(ids))


@contextlib.contextmanager
def _whole_matrix(model, token_ids):
    yield False


@pytest.mark.parametrize("method, trainer", [("finetune", finetune), ("fewshot", embedding_methods)])
def test_training_only_the_used_rows_gives_the_model_that_training_the_whole_matrix_gives(tiny_bert, monkeypatch,
                                                                                          method, trainer):
    texts, labels = narrow_data()
    config = TINY_CONFIG.replace(method=method, weight_decay=0.01)
    rows = LLMFinetuner(tiny_bert, config=config)
    rows.fine_tune(texts, labels)
    monkeypatch.setattr(trainer, "seen_rows_only", _whole_matrix)  # the Trainer's or SetFit's contrastive tuning
    whole = LLMFinetuner(tiny_bert, config=config)
    whole.fine_tune(texts, labels)

    before = AutoModel.from_pretrained(tiny_bert).get_input_embeddings().weight.detach()
    used = _used_rows(rows, texts)
    after_rows, after_whole = _word_embeddings(rows), _word_embeddings(whole)
    # Only rows that the texts use (and few-shot tuning's class-name sentences) trained, as in the whole matrix ...
    untouched = (after_rows == before).all(dim=1)
    assert untouched.sum() >= len(before) // 2 and not untouched[used].any()
    assert torch.allclose(after_rows[~untouched], after_whole[~untouched], atol=1e-5)
    # ... where the others only shrank, all by the same factor: AdamW's weight decay, with no gradient.
    shrink = after_whole[untouched][before[untouched] != 0] / before[untouched][before[untouched] != 0]
    assert 0.9 < shrink.min() <= shrink.max() < 1.0 and shrink.max() - shrink.min() < 1e-4
    # Every other weight is the same too, and the model holds nothing extra once trained.
    state_rows, state_whole = rows.model.state_dict(), whole.model.state_dict()
    assert state_rows.keys() == state_whole.keys()
    for name, value in state_rows.items():
        if "word_embeddings" not in name:
            assert torch.allclose(value, state_whole[name], atol=1e-5), name
    assert rows.model.get_input_embeddings().weight.requires_grad
    assert rows.predict_labels(["the film good", "the film bad"]) == ["positive", "negative"]


def test_an_interrupted_run_keeps_its_trained_rows_and_resumes_from_them(tiny_bert, tmp_path, monkeypatch):
    texts, labels = narrow_data()
    config = TINY_CONFIG.replace(epochs=3)
    uninterrupted = LLMFinetuner(tiny_bert, config=config)
    uninterrupted.fine_tune(texts, labels, checkpoint_dir=tmp_path / "straight")

    def interrupt(self, *args, **kwargs):  # Ctrl-C right after the first checkpoint
        raise KeyboardInterrupt

    interrupted = LLMFinetuner(tiny_bert, config=config)
    with monkeypatch.context() as patch:
        patch.setattr(ProgressCallback, "on_save", interrupt)
        with pytest.raises(KeyboardInterrupt):
            interrupted.fine_tune(texts, labels, checkpoint_dir=tmp_path / "cut")
    embedding = interrupted.model.get_input_embeddings()
    assert not hasattr(embedding, ROWS_NAME) and embedding.weight.requires_grad  # written back on the way out
    saved = list((tmp_path / "cut").rglob("model.safetensors"))
    with safe_open(str(saved[0]), "pt") as checkpoint:  # the checkpoint holds the rows as trained so far
        assert any(key.endswith(ROWS_NAME) for key in checkpoint.keys())

    resumed = LLMFinetuner(tiny_bert, config=config)
    resumed.fine_tune(texts, labels, checkpoint_dir=tmp_path / "cut", resume=True)
    used = _used_rows(resumed, texts)
    assert torch.allclose(_word_embeddings(resumed)[used], _word_embeddings(uninterrupted)[used], atol=1e-5)


def test_tied_frozen_or_mostly_used_embeddings_train_as_they_are():
    class Tied(nn.Module):
        def __init__(self):
            super().__init__()
            self.embedding, self.output = nn.Embedding(100, 4), nn.Linear(4, 100, bias=False)
            self.output.weight = self.embedding.weight

        def get_input_embeddings(self):
            return self.embedding

        def get_output_embeddings(self):
            return self.output

    tied = Tied()
    with seen_rows_only(tied, torch.arange(10).numpy()) as applied:
        assert not applied and tied.embedding.weight.requires_grad
    untied = Tied()
    untied.output = nn.Linear(4, 100, bias=False)
    with seen_rows_only(untied, torch.arange(95).numpy()) as applied:  # nearly every row: little to save
        assert not applied
    with seen_rows_only(untied, torch.arange(10).numpy()) as applied:
        assert applied and not untied.embedding.weight.requires_grad
        assert [name for name, p in untied.named_parameters() if p.requires_grad] == [
            f"embedding.{ROWS_NAME}", "output.weight"]
    untied.embedding.weight.requires_grad_(False)  # an adapter's frozen base
    with seen_rows_only(untied, torch.arange(10).numpy()) as applied:
        assert not applied


def test_the_rows_are_those_of_the_selected_training_texts_and_the_padding_token():
    dataset = Dataset.from_dict({"input_ids": [[1, 2], [3, 4, 5], [6, 2]]}).select([0, 2])  # auto's training part
    assert token_ids_in(dataset, pad_token_id=0).tolist() == [0, 1, 2, 6]
    assert token_ids_in(dataset, pad_token_id=None).tolist() == [1, 2, 6]

