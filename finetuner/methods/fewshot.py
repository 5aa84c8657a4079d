"""``method="fewshot"``: SetFit's contrastive tuning of the encoder on pairs of examples and the class names, then
the embedding head (:mod:`finetuner.methods.head`)."""

from __future__ import annotations

import dataclasses

from .base import Method, TrainingJob, TrainingResult
from .head import train_on_embeddings
from .registry import register


def train(job: TrainingJob) -> TrainingResult:
    """Contrastive tuning within the pair budget, then the head; the settings come back with the learning rate
    used."""
    from ..training.embedding_methods import FEWSHOT_LEARNING_RATE, contrastive_steps, contrastive_tune
    from ..training.progress import DeadlineCallback, StageCallback

    if job.config.learning_rate is None:
        job = dataclasses.replace(job, config=job.config.replace(learning_rate=FEWSHOT_LEARNING_RATE))
    job = dataclasses.replace(job, embeddings=None)  # the head is fitted on the tuned encoder's embeddings

    def tune(job: TrainingJob) -> None:
        callbacks = [StageCallback(job.progress)]
        if job.deadline is not None:  # the head fitted after tuning has its own time (see autoselect)
            callbacks.append(DeadlineCallback(job.deadline))
        contrastive_tune(job.model, job.tokenizer, job.texts, job.label_ids, job.config, job.label_names,
                         callbacks=callbacks, pairs=job.pairs)

    steps = contrastive_steps(len(job.texts), job.config.batch_size, job.pairs)
    return train_on_embeddings(job, steps, tune)


# One pass over a bounded set of sentence pairs (see training.embedding_methods.pair_budget).
register(Method("fewshot", "few-shot (SetFit)", "Few-shot (SetFit)",
                "SetFit: the encoder tuned on pairs of examples and the class names, then that head",
                epochs=1.0, batch_size=16, train=train, sentence_classifier=True))
