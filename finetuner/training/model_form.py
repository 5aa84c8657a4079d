"""The form a model takes for a method: a standard sequence classifier, one with a LoRA adapter, or a
:class:`SentenceClassifier` (a linear head on mean-pooled embeddings)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import ConfigError
from ..models import compute_device
from . import lora
from .sentence_classifier import SentenceClassifier

if TYPE_CHECKING:
    from ..config import TrainConfig


def model_for_method(model, config: TrainConfig, num_labels: int, *, adapter: bool, sentence_classifier: bool,
                     trained_with: str):
    """``model`` in the form the method trains: an adapter method wraps it in a LoRA adapter (once); any other
    method merges an adapter first; the sentence-classifier methods put a head on the encoder's mean-pooled
    embeddings (a model they trained stays in that form when trained further). ``trained_with`` names the
    method the model was trained with, for the error when a form cannot be reached."""
    if adapter:
        if isinstance(model, SentenceClassifier):
            raise ConfigError(f"This model was trained with method={trained_with!r}; LoRA needs a standard "
                              "classifier. Start LoRA from the base model instead.")
        return model if lora.is_peft_model(model) else lora.wrap_with_lora(model, config)
    if lora.is_peft_model(model):
        model = model.merge_and_unload()
    if sentence_classifier:
        if not isinstance(model, SentenceClassifier):
            model = SentenceClassifier(model.base_model, num_labels)
        model.to(compute_device())  # the embedding steps run outside the Trainer, which does this itself
    return model
