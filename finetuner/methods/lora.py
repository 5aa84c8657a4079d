"""``method="lora"``: a low-rank adapter (peft) and the classification head trained with the Trainer, the base
weights frozen: for decoder LLMs. The adapter itself: :mod:`finetuner.training.lora`."""

from __future__ import annotations

from . import finetune
from .base import Method
from .registry import register


def learning_rate(num_parameters: int) -> float:
    """The adapter and the head want a far higher rate than full fine-tuning, at any model size (measured:
    bench/results/method_choice.md#learning-rates)."""
    return 2e-3


# Defaults measured: bench/results/method_choice.md#method-defaults.
register(Method("lora", "LoRA adapter", "LoRA (adapter + head)", "an adapter: for decoder LLMs", epochs=2.0,
                batch_size=16, train=finetune.train, adapter=True, learning_rate=learning_rate))
