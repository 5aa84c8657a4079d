"""``method="finetune"``: every weight of a sequence classifier trained with the transformers Trainer.

:func:`train` is also the Trainer loop of the methods that end in one (``head_finetune``, ``lora``).
"""

from __future__ import annotations

import tempfile

from .base import Method, TrainingJob, TrainingResult
from .registry import get, register


def train(job: TrainingJob) -> TrainingResult:
    """Train ``job.model`` with the Trainer (checkpoints in ``job.checkpoint_dir`` when given, resumable); the
    settings come back with the learning rate used (the method's ``learning_rate`` rule when none was set)."""
    from ..training.finetune import train_classifier
    from ..training.progress import DeadlineCallback

    config = job.config
    if config.learning_rate is None:  # the method's rule for this model's size
        config = config.replace(learning_rate=get(config.method).learning_rate(job.model.num_parameters()))

    callbacks = [job.progress] + ([DeadlineCallback(job.deadline)] if job.deadline is not None else [])

    def run(output_dir: str, **checkpointing):
        return train_classifier(job.model, job.tokenizer, job.train_dataset, job.eval_dataset, config, output_dir,
                                job.compute_metrics, callbacks, class_weights=job.class_weights,
                                **checkpointing)

    if job.checkpoint_dir is not None:
        trainer = run(str(job.checkpoint_dir), checkpoints=True, resume=job.resume)
    else:
        with tempfile.TemporaryDirectory(prefix="finetuner-") as output_dir:
            trainer = run(output_dir)
    trainer.remove_callback(job.progress)  # later evaluations must not reach this run's listeners
    return TrainingResult(trainer.model, trainer, config, job.progress.stopped)


register(Method("finetune", "full fine-tuning", "Full fine-tuning", "every weight", epochs=3.0, batch_size=32,
                train=train))
