"""Full fine-tuning of a sequence classifier with the transformers Trainer, and batched inference."""

from __future__ import annotations

import inspect
import math
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np
import torch
from datasets import Dataset
from transformers import (DataCollatorWithPadding, EarlyStoppingCallback, PreTrainedModel,
                          PreTrainedTokenizerBase, PrinterCallback, Trainer, TrainerCallback,
                          TrainingArguments)

from ..config import TrainConfig, default_learning_rate
from ..errors import ConfigError

_MAX_LENGTH_PERCENTILE = 98
_MIN_MAX_LENGTH = 16
# No token spans more characters than this, so cutting a text at max_length * _CHARS_PER_TOKEN characters
# changes nothing the model sees, while sparing the tokenizer megabytes it would truncate anyway.
_CHARS_PER_TOKEN = 32


def clip_texts(texts: Sequence[str], max_tokens: int) -> List[str]:
    """Texts cut to what ``max_tokens`` tokens can cover (a 10 MB cell tokenizes in milliseconds)."""
    limit = max_tokens * _CHARS_PER_TOKEN
    return [text[:limit] for text in texts]


def model_length_limit(tokenizer: PreTrainedTokenizerBase, model: PreTrainedModel) -> int:
    """The longest input the model accepts: the tokenizer's limit, else the position embeddings."""
    limits = [getattr(model.config, "max_position_embeddings", None), tokenizer.model_max_length]
    usable = [int(v) for v in limits if isinstance(v, int) and 0 < v < 1_000_000]
    return min(usable) if usable else 512


def choose_max_length(tokenizer: PreTrainedTokenizerBase, texts: Sequence[str], limit: int) -> int:
    """Truncation length from the texts: the 98th percentile of token counts, rounded up to a multiple of 8."""
    lengths = [len(ids) for ids in tokenizer(clip_texts(texts, limit + 1), truncation=False)["input_ids"]]
    wanted = math.ceil(np.percentile(lengths, _MAX_LENGTH_PERCENTILE)) if lengths else limit
    rounded = int(math.ceil(max(wanted, _MIN_MAX_LENGTH) / 8.0) * 8)
    return min(rounded, limit)


def tokenize_dataset(tokenizer: PreTrainedTokenizerBase, texts: Sequence[str], label_ids: Sequence[int],
                     max_length: int) -> Dataset:
    """A tokenized ``datasets.Dataset`` (truncated, unpadded: the collator pads each batch)."""
    encoded = tokenizer(clip_texts(texts, max_length), truncation=True, max_length=max_length)
    columns = {name: encoded[name] for name in tokenizer.model_input_names if name in encoded}
    columns["labels"] = list(label_ids)
    columns["length"] = [len(ids) for ids in encoded["input_ids"]]
    return Dataset.from_dict(columns)


def mixed_precision(precision: str) -> Dict[str, bool]:
    """TrainingArguments flags for a ``TrainConfig.precision`` on this machine."""
    cuda = torch.cuda.is_available()
    if precision == "fp32" or (precision == "auto" and not cuda):
        return {}
    if precision == "auto":
        return {"bf16": True} if torch.cuda.is_bf16_supported() else {"fp16": True}
    if precision == "fp16" and not cuda:
        raise ConfigError("precision='fp16' needs a CUDA GPU; on CPU use 'bf16' or 'fp32'.")
    return {precision: True}


def training_arguments(config: TrainConfig, output_dir: str, has_eval: bool, n_train: int,
                       learning_rate: float, checkpoints: bool = False) -> TrainingArguments:
    """TrainingArguments for ``config``: per-epoch evaluation; checkpoints each epoch only when asked for
    (resumable runs) or when early stopping needs them. Short runs log often enough to draw a loss curve."""
    early_stopping = has_eval and config.early_stopping_patience is not None
    steps = max(1, math.ceil(n_train / config.batch_size) * math.ceil(config.epochs))
    return TrainingArguments(
        output_dir=output_dir,
        num_train_epochs=config.epochs,
        learning_rate=learning_rate,
        per_device_train_batch_size=config.batch_size,
        per_device_eval_batch_size=config.eval_batch_size,
        weight_decay=config.weight_decay,
        warmup_steps=config.warmup_ratio,
        seed=config.seed,
        data_seed=config.seed,
        eval_strategy="epoch" if has_eval else "no",
        save_strategy="epoch" if early_stopping or checkpoints else "no",
        save_total_limit=1 if early_stopping or checkpoints else None,
        load_best_model_at_end=early_stopping,
        metric_for_best_model="f1_macro" if early_stopping else None,
        greater_is_better=True if early_stopping else None,
        save_only_model=not checkpoints,
        logging_strategy="steps",
        logging_steps=max(1, min(config.logging_steps, steps // 20)),
        train_sampling_strategy="group_by_length" if config.group_by_length else "random",
        length_column_name="length",
        report_to="none",
        disable_tqdm=True,
        use_cpu=not torch.cuda.is_available(),
        activation_checkpointing=config.gradient_checkpointing,
        **mixed_precision(config.precision),
        # The classification loss is a per-example mean that ignores ``num_items_in_batch``; averaging
        # tokens across devices would multiply it (and its gradient) by the number of processes.
        average_tokens_across_devices=False,
    )


def train_classifier(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, train_dataset: Dataset,
                     eval_dataset: Optional[Dataset], config: TrainConfig, output_dir: str,
                     compute_metrics: Callable[[object], Dict[str, float]],
                     callbacks: Optional[List[TrainerCallback]] = None, checkpoints: bool = False,
                     resume: bool = False) -> Trainer:
    """Train ``model`` in place with a Trainer and return the Trainer (for evaluation).

    ``checkpoints`` writes a resumable checkpoint (with optimizer state) to ``output_dir`` every epoch;
    ``resume`` continues from the last checkpoint there.
    """
    callbacks = list(callbacks or [])
    if eval_dataset is not None and config.early_stopping_patience is not None:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=config.early_stopping_patience))
    trainer = Trainer(
        model=model,
        args=training_arguments(config, output_dir, has_eval=eval_dataset is not None,
                                n_train=len(train_dataset), checkpoints=checkpoints or resume,
                                learning_rate=config.learning_rate
                                or default_learning_rate(model.num_parameters(), config.method)),
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        processing_class=tokenizer,
        data_collator=DataCollatorWithPadding(tokenizer),
        compute_metrics=compute_metrics,
        callbacks=callbacks,
    )
    trainer.remove_callback(PrinterCallback)  # progress goes to our listeners, not stdout
    trainer.train(resume_from_checkpoint=True if resume else None)
    return trainer


@torch.inference_mode()
def predict_logits(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, texts: Sequence[str],
                   max_length: int, batch_size: int = 64) -> np.ndarray:
    """Logits for ``texts`` in input order; batches are length-sorted so padding stays small."""
    model.eval()
    device = next(model.parameters()).device
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    logits = np.zeros((len(texts), model.config.num_labels), dtype=np.float32)
    base = model.get_base_model() if hasattr(model, "get_base_model") else model  # a peft model's own model
    accepts_position_ids = "position_ids" in inspect.signature(base.forward).parameters
    for start in range(0, len(order), batch_size):
        batch_ids = order[start:start + batch_size]
        batch = clip_texts([texts[i] for i in batch_ids], max_length)
        encoded = tokenizer(batch, truncation=True, max_length=max_length, padding=True,
                            return_tensors="pt").to(device)
        if tokenizer.padding_side == "left" and accepts_position_ids:
            # Left padding shifts every position; count positions from each text's first real token instead.
            encoded["position_ids"] = (encoded["attention_mask"].cumsum(-1) - 1).clamp(min=0)
        logits[batch_ids] = model(**encoded).logits.float().cpu().numpy()
    return logits
