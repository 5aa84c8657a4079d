"""``method="head_finetune"``: the embedding head fitted first (:func:`finetuner.methods.head.fit_head`), then every
weight trained from there with the Trainer (:func:`finetuner.methods.finetune.train`)."""

from __future__ import annotations

from . import finetune
from .base import Method, TrainingJob, TrainingResult
from .head import fit_head
from .registry import register


def train(job: TrainingJob) -> TrainingResult:
    if not job.resume:  # a resumed run continues from its checkpoint, head included
        fit_head(job)
    return finetune.train(job)


def learning_rate(num_parameters: int) -> float:
    """Starting from a fitted head (measured: bench/results/method_choice.md#learning-rates)."""
    return 5e-5 if num_parameters <= 200_000_000 else 2e-5


register(Method("head_finetune", "embedding head, then full fine-tuning", "Head, then full fine-tuning",
                "that head, then every weight", epochs=3.0, batch_size=32, train=train, sentence_classifier=True,
                learning_rate=learning_rate))
