"""``method="head"``: a logistic-regression head on the encoder's frozen sentence embeddings (seconds).

:func:`train_on_embeddings` is also the few-shot method's loop (contrastive tuning first) and :func:`fit_head` the
first stage of ``head_finetune``.
"""

from __future__ import annotations

from typing import Callable, Optional

from .base import Method, TrainingJob, TrainingResult
from .registry import register


def fit_head(job: TrainingJob) -> None:
    """Fit ``job.model``'s head by logistic regression on its embeddings of the training texts (with a sentence
    per class name when the names mean something; each example weighed by its class's weight when the job has
    class weights)."""
    from ..training import embedding_methods

    embedding_methods.fit_head(job.model, job.tokenizer, job.texts, job.label_ids, job.label_map.names,
                               job.max_length, use_label_names=job.label_names is not None, seed=job.config.seed,
                               batch_size=job.config.eval_batch_size, features=job.embeddings,
                               class_weights=job.class_weights, windows=job.config.long_texts == "windows")


def train_on_embeddings(job: TrainingJob, steps: int = 1,
                        tune: Optional[Callable[[TrainingJob], None]] = None) -> TrainingResult:
    """``tune`` the encoder (``steps`` steps, reported to ``job.progress``; a stop request ends it at its next
    step), fit the head, evaluate on the evaluation split. The returned Trainer only evaluates; its state holds
    the run's steps."""
    from transformers import TrainerState

    from ..training.finetune import evaluation_trainer

    progress = job.progress
    progress.begin(steps)
    if tune is not None:
        tune(job)
    fit_head(job)
    step = progress.global_step if tune is not None and progress.stopped else steps
    progress.at(step, step / steps)
    trainer = evaluation_trainer(job.model, job.tokenizer, job.config.eval_batch_size, job.compute_metrics)
    trainer.state = TrainerState(max_steps=steps, global_step=step, epoch=step / steps)  # for the run's record
    if job.eval_dataset is not None and not progress.stopped:
        progress.evaluate(trainer.evaluate(eval_dataset=job.eval_dataset))
    progress.end()
    return TrainingResult(job.model, trainer, job.config, progress.stopped)


register(Method("head", "embedding head", "Embedding head (fast)",
                "a classifier on frozen sentence embeddings: seconds", epochs=1.0, batch_size=64,
                train=train_on_embeddings, has_epochs=False, sentence_classifier=True))
