"""Training a :class:`SentenceClassifier` without the full Trainer loop: a logistic-regression head on frozen
embeddings (``method="head"``) and SetFit's contrastive tuning of the encoder (``method="fewshot"``)."""

from __future__ import annotations

import math
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, List, Optional, Sequence, Tuple

import numpy as np
import torch
from safetensors.torch import save_model

from ..loading import quiet_loading
from .embedding_rows import seen_rows_only, token_ids_of
from .label_words import related_words
from .linear_head import embedding_classifier, full_head, multi_label_head, regression_head
from .sentence_classifier import LABEL_TEMPLATES, SentenceClassifier, label_sentences, spoken_name
from .windows import WindowPool, window_batches

if TYPE_CHECKING:
    from ..config import TrainConfig

# The label-name sentence of a class weighs this share of the class's examples (see fit_head).
_NAME_WEIGHT = 0.5
# How many times each class-name sentence joins the texts in contrastive tuning (see contrastive_tune).
NAME_COPIES = 3
# Up to this many examples per class (the median), the vocabulary words nearest each class name join the name
# sentences in contrastive tuning (measured: bench/results/method_choice.md#class-names-in-contrastive-tuning).
RELATED_WORDS_UP_TO_EXAMPLES_PER_CLASS = 16
# The encoder's learning rate in contrastive tuning when none is set (SetFit's own default is 2e-5; measured:
# bench/results/method_choice.md#class-names-in-contrastive-tuning).
FEWSHOT_LEARNING_RATE = 5e-5


@torch.inference_mode()
def encode(model: SentenceClassifier, tokenizer, texts: Sequence[str], max_length: int,
           batch_size: int = 64, windows: bool = True) -> np.ndarray:
    """Sentence embeddings in input order (length-sorted batches), unit length. A text longer than ``max_length``
    tokens gets the mean of its windows' unit-length embeddings (:mod:`.windows`; not scaled again), so that the
    head's logits of it are the mean of its windows' logits: how a trained model predicts it (``windows=False``:
    its first window's embedding)."""
    model.eval()
    device = model.head.weight.device
    pool = WindowPool(len(texts), model.head.in_features, "mean")
    for rows, batch in window_batches(tokenizer, texts, max_length, batch_size, windows=windows):
        pool.add(rows, model.embed(**batch.to(device)).float().cpu().numpy())
    return pool.result()


def fit_head(model: SentenceClassifier, tokenizer, texts: Sequence[str], label_ids: Sequence[int],
             label_names: Sequence[str], max_length: int, *, use_label_names: bool, seed: int,
             batch_size: int = 64, features: Optional[np.ndarray] = None,
             class_weights: Optional[Sequence[float]] = None, windows: bool = True) -> None:
    """Fit the head by logistic regression on the encoder's embeddings of ``texts``.

    With ``use_label_names`` a sentence that says each class name ("It is positive.") joins the training set with
    half the weight of one class's examples, so names like "positive"/"negative" steer the head when
    examples are few and matter less as they accumulate
    (measured: bench/results/method_choice.md#class-names-in-the-head). ``features``: the encoder's embeddings of
    ``texts`` when already computed. ``class_weights`` (one per class id) weigh each example by its class, as
    scikit-learn's ``class_weight`` would (the class-name sentences keep their weight). ``windows``: long texts
    read in windows (see :func:`encode`).
    """
    if features is None:
        features = encode(model, tokenizer, texts, max_length, batch_size, windows=windows)
    targets = np.asarray(label_ids)
    problem_type = getattr(model.config, "problem_type", None)
    if problem_type in ("multi_label_classification", "regression"):  # rows × labels of 0/1, or numbers
        fit = multi_label_head(features, targets, seed) if targets.ndim == 2 else regression_head(features, targets)
        model.set_head(*fit)
        return
    weights = np.ones(len(targets)) if class_weights is None else np.asarray(class_weights, dtype=float)[targets]
    num_labels = len(label_names)
    if use_label_names:
        name_texts, name_ids = label_sentences(label_names, LABEL_TEMPLATES[:1])
        per_sentence = _NAME_WEIGHT * len(targets) / len(name_texts)
        features = np.vstack([features, encode(model, tokenizer, name_texts, max_length, batch_size)])
        targets = np.concatenate([targets, name_ids])
        weights = np.concatenate([weights, np.full(len(name_texts), per_sentence)])
    classifier = embedding_classifier(seed)  # the embedding baseline's classifier, so "head" = baseline + names
    classifier.fit(features, targets, sample_weight=weights)
    model.set_head(*full_head(classifier, num_labels, features.shape[1]))


# Contrastive tuning draws at least / at most this many sentence pairs (see pair_budget).
MIN_PAIRS, MAX_PAIRS = 640, 8000


def pair_budget(num_rows: int) -> int:
    """Sentence pairs for contrastive tuning: 20 per text (SetFit's usual ``num_iterations``), at least
    :data:`MIN_PAIRS` and at most :data:`MAX_PAIRS` whatever the data size, so the time stays bounded (SetFit's
    default draws every negative pair: ~585k for 770 rows)."""
    return int(min(MAX_PAIRS, max(MIN_PAIRS, 20 * num_rows)))


def contrastive_steps(num_rows: int, batch_size: int, pairs: Optional[int] = None) -> int:
    """Optimizer steps of contrastive tuning: ``pairs`` (default: the :func:`pair_budget`) in batches."""
    return math.ceil((pair_budget(num_rows) if pairs is None else pairs) / batch_size)


def related_word_sentences(model: SentenceClassifier, tokenizer,
                           label_names: Sequence[str]) -> Tuple[List[str], List[int]]:
    """"It is <word>." for the vocabulary words nearest each class name (:func:`training.label_words.
    related_words`, on the encoder's own embeddings), with the class index of each sentence."""
    words = related_words(lambda texts: encode(model, tokenizer, texts, max_length=16, batch_size=256), tokenizer,
                          [spoken_name(name) for name in label_names])
    texts = [LABEL_TEMPLATES[0].format(word) for class_words in words for word in class_words]
    return texts, [index for index, class_words in enumerate(words) for _ in class_words]


def contrastive_tune(model: SentenceClassifier, tokenizer, texts: List[str], label_ids: List[int],
                     config: TrainConfig, label_names: Optional[Sequence[str]] = None,
                     callbacks: Optional[list] = None, pairs: Optional[int] = None) -> None:
    """Tune the encoder in place with SetFit's contrastive pairs (same class → close): ``pairs`` of them (default:
    the :func:`pair_budget`).

    With ``label_names`` the sentences that say each class name (:func:`label_sentences`) join the texts as
    members of their class, :data:`NAME_COPIES` times each, so tuning pulls each class's examples towards what its
    name means; up to :data:`RELATED_WORDS_UP_TO_EXAMPLES_PER_CLASS` examples per class the vocabulary words nearest
    each name (:func:`related_word_sentences`) join them (measured, with the variants tried and not kept:
    bench/results/method_choice.md#class-names-in-contrastive-tuning).

    SetFit trains a sentence-transformers model, so the current encoder is handed over through a temporary
    directory (safetensors) and its tuned weights are copied back."""
    from sentence_transformers import SentenceTransformer
    from setfit import SetFitModel, Trainer, TrainingArguments
    from setfit import logging as setfit_logging
    from transformers import PrinterCallback

    setfit_logging.set_verbosity_warning()  # importing setfit.trainer turns its "Running training" banners on

    steps = contrastive_steps(len(texts), config.batch_size, pairs)
    if label_names is not None:
        name_texts, name_ids = label_sentences(label_names)
        word_texts, word_ids = [], []
        if np.median(np.unique(label_ids, return_counts=True)[1]) <= RELATED_WORDS_UP_TO_EXAMPLES_PER_CLASS:
            word_texts, word_ids = related_word_sentences(model, tokenizer, label_names)
        texts = list(texts) + (name_texts + word_texts) * NAME_COPIES
        label_ids = list(label_ids) + (name_ids + word_ids) * NAME_COPIES
    device = str(model.head.weight.device)
    with tempfile.TemporaryDirectory(prefix="finetuner-setfit-") as directory, quiet_loading():
        args = TrainingArguments(output_dir=str(Path(directory) / "run"), save_strategy="no",
                                 batch_size=config.batch_size, num_epochs=int(max(1, round(config.epochs))),
                                 max_steps=steps, seed=config.seed, report_to="none", show_progress_bar=False,
                                 body_learning_rate=config.learning_rate or FEWSHOT_LEARNING_RATE)
        encoder_dir = Path(directory) / "encoder"
        # Written directly, not with save_pretrained: under torch.distributed that writes on rank 0 only, and
        # every process needs the encoder here.
        encoder_dir.mkdir()
        model.encoder.config.save_pretrained(encoder_dir)
        save_model(model.encoder, str(encoder_dir / "model.safetensors"))
        tokenizer.save_pretrained(encoder_dir)
        body = SentenceTransformer(str(encoder_dir), device=device, local_files_only=True, trust_remote_code=False)
        trainer = Trainer(model=SetFitModel(model_body=body), args=args, callbacks=callbacks or [])
        trainer.st_trainer.remove_callback(PrinterCallback)  # losses go to the callbacks, not stdout
        with seen_rows_only(body[0].auto_model, token_ids_of(tokenizer, texts)):
            trainer.train_embeddings(texts, label_ids, args=args)
        model.encoder.load_state_dict(body[0].auto_model.state_dict())
