"""A sentence-embedding classifier: an encoder's mean-pooled, L2-normalised embedding feeds a linear head.

The embedding-head, few-shot and embedding-fine-tune methods all train this model: the head alone on frozen
embeddings (logistic regression), the encoder contrastively first (SetFit), or everything end to end with the
Trainer. Sentences that say the class names (:func:`label_sentences`) can join the examples, a prior for tiny
data.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import AutoModel, PreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput

from ..models import ENCODER_DIR, SENTENCE_CLASSIFIER_TYPE, saved_model_type, write_refusing_config

HEAD_FILE = "sentence_head.safetensors"
# What a saved folder's config.json says it is (transformers' error names its model type only).
ABOUT = ("A finetuner sentence classifier: logits = head(normalize(mean_pool(encoder(text)))), which no transformers "
         "class computes, so transformers refuses this folder on purpose. Load it with finetuner "
         "(LLMFinetuner.load or TextClassifier.load). encoder/ is a standard transformers model (the encoder, for "
         f"sentence embeddings); {HEAD_FILE} holds the head (weight, bias).")


class SentenceClassifier(nn.Module):
    """``logits = head(normalize(mean_pool(encoder(text))))``; called like a transformers sequence classifier."""

    def __init__(self, encoder: PreTrainedModel, num_labels: int):
        super().__init__()
        self.encoder = encoder
        self.head = nn.Linear(encoder.config.hidden_size, num_labels)
        self.config.num_labels = num_labels

    @property
    def config(self):
        return self.encoder.config

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                labels: Optional[torch.Tensor] = None, **inputs: Any) -> SequenceClassifierOutput:
        embeddings = self.embed(input_ids=input_ids, attention_mask=attention_mask, **inputs)
        logits = self.head(embeddings)
        loss = task_loss(logits, labels, self.config.problem_type) if labels is not None else None
        return SequenceClassifierOutput(loss=loss, logits=logits)

    def embed(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **inputs: Any) -> torch.Tensor:
        """Mean of the token states over real tokens, scaled to unit length."""
        wanted = {k: v for k, v in inputs.items() if k in ("token_type_ids", "position_ids")}
        states = self.encoder(input_ids=input_ids, attention_mask=attention_mask, **wanted).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(states.dtype)
        pooled = (states * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
        return nn.functional.normalize(pooled, dim=-1)

    def get_input_embeddings(self) -> nn.Module:
        return self.encoder.get_input_embeddings()

    def num_parameters(self, only_trainable: bool = False, exclude_embeddings: bool = False) -> int:
        head = sum(p.numel() for p in self.head.parameters() if p.requires_grad or not only_trainable)
        return self.encoder.num_parameters(only_trainable=only_trainable,
                                           exclude_embeddings=exclude_embeddings) + head

    def set_head(self, weight: np.ndarray, bias: np.ndarray) -> None:
        """Put fitted head weights (classes × hidden, classes) in place."""
        with torch.no_grad():
            self.head.weight.copy_(torch.as_tensor(weight, dtype=self.head.weight.dtype))
            self.head.bias.copy_(torch.as_tensor(bias, dtype=self.head.bias.dtype))

    def save(self, directory: Union[str, Path], tokenizer: Any = None) -> None:
        """The encoder as a standard transformers model folder in ``encoder/`` (with ``tokenizer`` when given), the
        head beside it, and a config.json that transformers refuses (:func:`finetuner.models.write_refusing_config`):
        loaded as a transformers classifier, the encoder would predict through a new, random head."""
        directory = Path(directory)
        self.encoder.save_pretrained(directory / ENCODER_DIR, safe_serialization=True)
        if tokenizer is not None:
            tokenizer.save_pretrained(directory / ENCODER_DIR)
        save_file({k: v.detach().contiguous().cpu() for k, v in self.head.state_dict().items()},
                  str(directory / HEAD_FILE))
        write_refusing_config(directory, SENTENCE_CLASSIFIER_TYPE, self.config, ABOUT, encoder=ENCODER_DIR,
                              head=HEAD_FILE, pooling="mean", normalized=True,
                              hidden_size=self.encoder.config.hidden_size)

    @classmethod
    def load(cls, directory: Union[str, Path], **load_kwargs: Any) -> "SentenceClassifier":
        """A model saved by :meth:`save`, or by finetuner before format 2 (the encoder's files at the top)."""
        directory = Path(directory)
        encoder = AutoModel.from_pretrained(_encoder_dir(directory), use_safetensors=True, **load_kwargs)
        head = load_file(str(directory / HEAD_FILE))
        model = cls(encoder, int(head["weight"].shape[0]))
        model.head.load_state_dict(head)
        return model


def task_loss(logits: torch.Tensor, labels: torch.Tensor, problem_type: Optional[str]) -> torch.Tensor:
    """The loss transformers' classifiers compute for ``config.problem_type``: binary cross-entropy per label
    (several labels per text), mean squared error (a number per text), else cross-entropy."""
    if problem_type == "multi_label_classification":
        return nn.functional.binary_cross_entropy_with_logits(logits.float(), labels.float())
    if problem_type == "regression":
        return nn.functional.mse_loss(logits.float().view(-1), labels.float().view(-1))
    return nn.functional.cross_entropy(logits, labels)


def _encoder_dir(directory: Path) -> Path:
    return directory / ENCODER_DIR if saved_model_type(directory) == SENTENCE_CLASSIFIER_TYPE else directory


def is_sentence_classifier_dir(directory: Union[str, Path]) -> bool:
    """Whether ``directory`` holds a saved :class:`SentenceClassifier` (either layout: the head is at the top)."""
    return (Path(directory) / HEAD_FILE).is_file()


# Sentences that say a class name; their embeddings stand for the class before any example does. Contrastive
# tuning uses them all; a head uses the first alone (measured: bench/results/method_choice.md#label-templates).
LABEL_TEMPLATES = ("It is {}.", "This is {}.", "{}", "This text is {}.", "Overall, it was {}.")


def label_sentences(label_names: Sequence[str],
                    templates: Sequence[str] = LABEL_TEMPLATES) -> Tuple[List[str], List[int]]:
    """Every class name in every template sentence (``book_flight`` → "It is book flight.", …), with the class
    index of each sentence."""
    spoken = [spoken_name(name) for name in label_names]
    texts = [template.format(name) for template in templates for name in spoken]
    return texts, list(range(len(spoken))) * len(templates)


def spoken_name(name: Any) -> str:
    """A class name as words: ``book_flight`` → "book flight", ``Sci/Tech`` → "Sci or Tech"."""
    return str(name).replace("_", " ").replace("/", " or ").strip()
