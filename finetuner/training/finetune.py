"""Full fine-tuning of a sequence classifier with the transformers Trainer, and batched inference."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import inspect
import math
import tempfile
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from datasets import Dataset
from transformers import (DataCollatorWithPadding, EarlyStoppingCallback, EvalPrediction, PreTrainedModel,
                          PreTrainedTokenizerBase, PrinterCallback, Trainer, TrainerCallback,
                          TrainingArguments)

from ..errors import ConfigError
from .embedding_rows import seen_rows_only, token_ids_in
from .windows import (WINDOW_COLUMN, LongTexts, WindowPool, clip_texts, encode_windows,  # noqa: F401
                      long_texts, may_be_longer, pool_predictions, token_lengths, window_batches)

if TYPE_CHECKING:
    from ..config import TrainConfig

_MAX_LENGTH_PERCENTILE = 98
# Never below this many tokens: the limit also truncates what the model predicts on, and a few training texts say
# little about later ones (16 SST-2 rows gave 40 tokens, which cut 8.7% of the SST-2 test sentences). Batches are
# padded to their longest text, so a higher limit costs time only on texts that are longer than the old one.
_MIN_MAX_LENGTH = 128
# A batch this small (tokens = texts x padded length; one sentence is 10-60) runs on one CPU thread: splitting
# so little work across cores costs more in hand-offs than it saves, and when other processes keep the cores
# busy a descheduled second thread stalls every operator. Measured on the 2-core bench machine under load
# (bench/README.md): one SST-2 sentence 15 ms on 1 thread vs 64-584 ms on 2; four sentences 35 vs 127 ms.
_SINGLE_THREAD_MAX_TOKENS = 128
_THREADS_LOCK = threading.Lock()


def model_length_limit(tokenizer: PreTrainedTokenizerBase, model: PreTrainedModel) -> int:
    """The longest input the model accepts: the tokenizer's limit, else the position embeddings."""
    limits = [getattr(model.config, "max_position_embeddings", None), tokenizer.model_max_length]
    usable = [int(v) for v in limits if isinstance(v, int) and 0 < v < 1_000_000]
    return min(usable) if usable else 512


def choose_max_length(tokenizer: PreTrainedTokenizerBase, texts: Sequence[str], limit: int,
                      lengths: Optional[Sequence[int]] = None) -> int:
    """Window (truncation) length from the texts: the 98th percentile of token counts, rounded up to a multiple of
    8, at least 128, at most ``limit``. ``lengths``: the texts' :func:`~.windows.token_lengths` up to ``limit``
    when already counted."""
    if lengths is None:
        lengths = token_lengths(tokenizer, texts, limit)
    wanted = math.ceil(np.percentile(lengths, _MAX_LENGTH_PERCENTILE)) if len(lengths) else limit
    rounded = int(math.ceil(max(wanted, _MIN_MAX_LENGTH) / 8.0) * 8)
    return min(rounded, limit)


def plan_windows(tokenizer: PreTrainedTokenizerBase, texts: Sequence[str], limit: int,
                 max_length: Optional[int] = None, windows: bool = True, cache: Optional[Dict] = None,
                 quick: bool = False) -> Tuple[int, LongTexts]:
    """The tokens the model reads at once for training on ``texts`` (``max_length`` within the model's ``limit``;
    None: :func:`choose_max_length`) and which texts are longer (:func:`~.windows.long_texts`: read in windows or
    cut). What training does, and what the app's Data tab says it will do; ``cache``: see
    :func:`~.windows.token_lengths`. ``quick`` (the Data tab, on every edit) counts the tokens of the texts that
    may be longer than 128 only, when the others' counts cannot change the length chosen (see
    :func:`_bounded_lengths`)."""
    lengths = None
    if max_length is not None:
        max_length = min(max_length, limit)
    else:
        lengths = (_bounded_lengths(tokenizer, texts, limit, cache) if quick
                   else token_lengths(tokenizer, texts, limit, cache))
        max_length = choose_max_length(tokenizer, texts, limit, lengths=lengths)
    return max_length, long_texts(tokenizer, texts, max_length, windows, lengths, cache)


def _bounded_lengths(tokenizer: PreTrainedTokenizerBase, texts: Sequence[str], limit: int,
                     cache: Optional[Dict]) -> List[int]:
    """Token counts for :func:`choose_max_length` without tokenizing the texts that cannot be longer than its
    floor of 128 (fewer UTF-8 bytes than that, see :func:`~.windows.may_be_longer`): they count 128 when the
    98th percentile comes out the same with them at 0, else every text is counted."""
    maybe = [i for i, text in enumerate(texts) if may_be_longer(tokenizer, text, _MIN_MAX_LENGTH)]
    counted = token_lengths(tokenizer, [texts[i] for i in maybe], limit, cache)
    low, high = np.zeros(len(texts), dtype=np.int64), np.full(len(texts), _MIN_MAX_LENGTH, dtype=np.int64)
    low[maybe], high[maybe] = counted, counted
    if choose_max_length(tokenizer, texts, limit, low) == choose_max_length(tokenizer, texts, limit, high):
        return high.tolist()  # the percentile only grows with each count: every count in between gives the same
    return token_lengths(tokenizer, texts, limit, cache)


def tokenize_dataset(tokenizer: PreTrainedTokenizerBase, texts: Sequence[str], label_ids: Sequence[int],
                     max_length: int, windows: bool = True) -> Dataset:
    """A tokenized ``datasets.Dataset`` (unpadded: the collator pads each batch). A text longer than ``max_length``
    tokens becomes one row per window (:func:`~.windows.encode_windows`), each labelled with the text's label,
    and the column ``window_of`` says which text each row is of; ``windows=False`` truncates it to one row."""
    encoded, owners = encode_windows(tokenizer, texts, max_length, windows=windows)
    columns = {name: encoded[name] for name in tokenizer.model_input_names if name in encoded}
    columns["labels"] = [label_ids[i] for i in owners]
    columns["length"] = [len(ids) for ids in encoded["input_ids"]]
    if len(owners) != len(texts):
        columns[WINDOW_COLUMN] = owners
    return Dataset.from_dict(columns)


def select_texts(dataset: Dataset, rows: Sequence[int]) -> Dataset:
    """The rows of a :func:`tokenize_dataset` dataset that belong to its texts ``rows`` (every window of each), in
    that order; ``window_of`` then counts the texts of the selection."""
    if WINDOW_COLUMN not in dataset.column_names:
        return dataset.select(rows)
    windows: Dict[int, List[int]] = {}
    for row, text in enumerate(dataset[WINDOW_COLUMN]):
        windows.setdefault(text, []).append(row)
    picked = [row for text in rows for row in windows[text]]
    owners = [index for index, text in enumerate(rows) for _ in windows[text]]
    return dataset.select(picked).remove_columns(WINDOW_COLUMN).add_column(WINDOW_COLUMN, owners)


# Rows sorted by length together: at most this many batches' worth, and at most a quarter of the rows. SST-2, 2,000
# rows, 1 epoch, batch 32, seeds 0/1/2 (python -m bench --parts throughput): groups of 50 batches gave 0.764 / 0.779 /
# 0.788 at 155 samples/s; groups of 8 gave 0.800 / 0.790 / 0.796 at ~148 samples/s; the plain Trainer with random
# batches 0.790 / 0.788 / 0.814 at ~73 samples/s. Smaller groups mix more while still cutting most of the padding.
_LENGTH_GROUP_BATCHES = 8


class LengthGroupedBatchOrder(torch.utils.data.Sampler):
    """Row order for length-grouped training: batches of similar length, visited in random order.

    Rows are shuffled, taken a group at a time (``_LENGTH_GROUP_BATCHES`` batches, at most a quarter of the rows),
    sorted by length within that group and
    cut into batches (little padding); then the full batches are shuffled among themselves (a partial one goes
    last, so batches never straddle). The Trainer's own ``group_by_length`` keeps each group's batches in
    descending length, so every epoch runs long-to-short texts in turn — on SST-2 (2,000 rows, 1 epoch) that
    cost ~6 accuracy points against random batches. Seeded by ``seed`` and the epoch (the Trainer calls
    ``set_epoch``), so a resumed run sees the same order.
    """

    def __init__(self, lengths: Sequence[int], batch_size: int, seed: int):
        self.lengths = [int(v) for v in lengths]
        self.batch_size = max(1, int(batch_size))
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self):
        # Its own stream: seeded with the bare seed, it would replay the numbers that initialised the model.
        key = hashlib.sha256(f"finetuner-length-order:{self.seed}:{self.epoch}".encode()).digest()
        generator = torch.Generator()
        generator.manual_seed(int.from_bytes(key[:8], "little") >> 1)
        rows = torch.randperm(len(self.lengths), generator=generator).tolist()
        # At least four groups, so that on small data batches still mix rows of different lengths (and classes,
        # where length goes with the class); sorting everything together made a tiny task unlearnable.
        group = self.batch_size * max(1, min(len(rows) // (4 * self.batch_size), _LENGTH_GROUP_BATCHES))
        batches: List[List[int]] = []
        for start in range(0, len(rows), group):
            chunk = sorted(rows[start:start + group], key=self.lengths.__getitem__)
            batches.extend(chunk[i:i + self.batch_size] for i in range(0, len(chunk), self.batch_size))
        full = [b for b in batches if len(b) == self.batch_size]
        partial = [b for b in batches if len(b) != self.batch_size]
        order = torch.randperm(len(full), generator=generator).tolist()
        return iter([i for b in [full[j] for j in order] + partial for i in b])


class _FixedOrder(torch.utils.data.Sampler):
    def __init__(self, order: List[int]):
        self.order = order

    def __iter__(self):
        return iter(self.order)

    def __len__(self) -> int:
        return len(self.order)


class _Trainer(Trainer):
    """The transformers Trainer with finetuner's length grouping (:class:`LengthGroupedBatchOrder`)."""

    def _lengths(self, dataset, original) -> Optional[List[int]]:
        """Token counts of ``dataset``'s rows (the Trainer hands samplers a copy without the length column)."""
        if not getattr(self, "_finetuner_group_by_length", False) or not isinstance(dataset, Dataset):
            return None
        column = self.args.length_column_name
        for source in (dataset, original):
            if isinstance(source, Dataset) and column in source.column_names and len(source) == len(dataset):
                return list(source[column])
        name = self.processing_class.model_input_names[0] if self.processing_class is not None else "input_ids"
        return [len(ids) for ids in dataset[name]] if name in dataset.column_names else None

    def _get_train_sampler(self, train_dataset: Optional[Dataset] = None):
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        lengths = self._lengths(dataset, self.train_dataset)
        if lengths is not None:
            return LengthGroupedBatchOrder(lengths, self.args.train_batch_size,
                                           self.args.data_seed if self.args.data_seed is not None else self.args.seed)
        return super()._get_train_sampler(train_dataset)

    def _get_eval_sampler(self, eval_dataset: Dataset):
        # Evaluation in length order (less padding); metrics do not depend on the order of the rows.
        lengths = self._lengths(eval_dataset, None) if self.args.world_size <= 1 else None
        if lengths is not None:
            order = sorted(range(len(lengths)), key=lengths.__getitem__, reverse=True)
            self._finetuner_eval_order = order
            return _FixedOrder(order)
        self._finetuner_eval_order = None
        return super()._get_eval_sampler(eval_dataset)

    def get_eval_dataloader(self, eval_dataset=None):
        # Which text each row (window) is of, for evaluation_loop; the dataloader drops the column.
        dataset = eval_dataset if eval_dataset is not None and not isinstance(eval_dataset, str) else (
            self.eval_dataset[eval_dataset] if isinstance(eval_dataset, str) else self.eval_dataset)
        self._finetuner_eval_owners = (list(dataset[WINDOW_COLUMN]) if isinstance(dataset, Dataset)
                                       and WINDOW_COLUMN in dataset.column_names else None)
        return super().get_eval_dataloader(eval_dataset)

    def evaluation_loop(self, dataloader, description, prediction_loss_only=None, ignore_keys=None,
                        metric_key_prefix="eval"):
        """The Trainer's, with the metrics of texts read in several windows computed per text (the windows' logits
        pooled as predictions pool them); the loss stays the mean over windows."""
        owners = getattr(self, "_finetuner_eval_owners", None)
        compute = self.compute_metrics
        if owners is None or compute is None or description != "Evaluation":
            return super().evaluation_loop(dataloader, description, prediction_loss_only, ignore_keys,
                                           metric_key_prefix)
        order = getattr(self, "_finetuner_eval_order", None)
        in_order = [owners[row] for row in order] if order is not None else owners

        def per_text(prediction):
            logits = prediction.predictions[0] if isinstance(prediction.predictions, tuple) else prediction.predictions
            pooled, labels = pool_predictions(np.asarray(logits), np.asarray(prediction.label_ids), in_order)
            return compute(EvalPrediction(predictions=pooled, label_ids=labels))

        self.compute_metrics = per_text
        try:
            return super().evaluation_loop(dataloader, description, prediction_loss_only, ignore_keys,
                                           metric_key_prefix)
        finally:
            self.compute_metrics = compute


@functools.lru_cache(maxsize=1)
def cpu_has_bf16() -> bool:
    """Whether this CPU computes in bfloat16 natively (the ``avx512_bf16`` or ``amx_bf16`` flags of Linux's
    /proc/cpuinfo; False where that file does not say)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            flags = next((line for line in info if line.startswith("flags")), "").split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def mixed_precision(precision: str) -> Dict[str, bool]:
    """TrainingArguments flags for a ``TrainConfig.precision`` on this machine: "auto" is bf16 autocast on a CPU
    that computes in bfloat16 natively, fp32 on a GPU and on other CPUs (measured:
    bench/results/auto.md#precision)."""
    if precision == "auto":
        return {"bf16": True} if not torch.cuda.is_available() and cpu_has_bf16() else {}
    if precision == "fp32":
        return {}
    if precision == "fp16" and not torch.cuda.is_available():
        raise ConfigError("precision='fp16' needs a CUDA GPU; on CPU use 'bf16' or 'fp32'.")
    return {precision: True}


def inference_autocast(precision: str, device: torch.device):
    """A context for passes that only inform training (embeddings a head is fitted on, scores on held-out rows):
    bf16 autocast where training itself runs in bf16 on a CPU (:func:`mixed_precision`), else nothing. Half the
    time of fp32 for the same head accuracy on SST-2 (embeddings' cosine to fp32 ≥ 0.9999:
    bench/results/auto.md#whole-process-session-14). A trained model's own predictions stay fp32."""
    if device.type == "cpu" and precision in ("auto", "bf16") and mixed_precision(precision).get("bf16"):
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()


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
        # A number per text: the smallest error; classes: the best macro F1.
        metric_for_best_model=("rmse" if config.task == "regression" else "f1_macro") if early_stopping else None,
        greater_is_better=(config.task != "regression") if early_stopping else None,
        save_only_model=not checkpoints,
        logging_strategy="steps",
        logging_steps=max(1, min(config.logging_steps, steps // 20)),
        # Length grouping is finetuner's own sampler (see LengthGroupedBatchOrder), switched on in train_classifier;
        # the Trainer's "group_by_length" would also reorder evaluation.
        train_sampling_strategy="random",
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


def weighted_loss(model: torch.nn.Module, class_weights: Sequence[float]):
    """A Trainer ``compute_loss_func``: cross-entropy with a weight per class (a weighted mean over the batch, as
    ``torch.nn.functional.cross_entropy`` takes it) while ``model`` trains; the plain mean in evaluation, so that
    evaluation losses compare across runs."""
    weights = torch.tensor(list(class_weights), dtype=torch.float32)

    def loss(outputs, labels, num_items_in_batch=None):
        logits = outputs["logits"] if isinstance(outputs, dict) else outputs[0]
        logits = logits.float().view(-1, logits.shape[-1])
        weight = weights.to(logits.device) if model.training else None
        return torch.nn.functional.cross_entropy(logits, labels.view(-1).to(logits.device), weight=weight)
    return loss


class _NoFinalCheckpoint(TrainerCallback):
    """Skips the checkpoint at the end of the last epoch when checkpoints only serve resuming: the finished model is
    saved right after it (a second or more of writing weights and optimizer state for nothing)."""

    def on_epoch_end(self, args, state, control, **kwargs):
        if state.global_step >= state.max_steps:
            control.should_save = False
        return control


def train_classifier(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, train_dataset: Dataset,
                     eval_dataset: Optional[Dataset], config: TrainConfig, output_dir: str,
                     compute_metrics: Callable[[object], Dict[str, float]],
                     callbacks: Optional[List[TrainerCallback]] = None, checkpoints: bool = False,
                     resume: bool = False, class_weights: Optional[Sequence[float]] = None) -> Trainer:
    """Train ``model`` in place with a Trainer and return the Trainer (for evaluation). ``config.learning_rate``
    must be set (the method's rule picks one when the user left it unset: :mod:`finetuner.methods`).

    ``checkpoints`` writes a resumable checkpoint (with optimizer state) to ``output_dir`` every epoch but the last
    (unless early stopping needs it); ``resume`` continues from the last checkpoint there. ``class_weights`` (one
    per class id) weigh the training loss by class (:func:`weighted_loss`).
    """
    callbacks = list(callbacks or [])
    if eval_dataset is not None and config.early_stopping_patience is not None:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=config.early_stopping_patience))
    elif checkpoints or resume:
        callbacks.append(_NoFinalCheckpoint())
    trainer = _Trainer(
        model=model,
        args=training_arguments(config, output_dir, has_eval=eval_dataset is not None,
                                n_train=len(train_dataset), checkpoints=checkpoints or resume,
                                learning_rate=config.learning_rate),
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        processing_class=tokenizer,
        data_collator=DataCollatorWithPadding(tokenizer),
        compute_metrics=compute_metrics,
        callbacks=callbacks,
        compute_loss_func=weighted_loss(model, class_weights) if class_weights is not None else None,
    )
    trainer._finetuner_group_by_length = config.group_by_length
    trainer.remove_callback(PrinterCallback)  # progress goes to our listeners, not stdout
    with seen_rows_only(model, token_ids_in(train_dataset, tokenizer.pad_token_id)):
        trainer.train(resume_from_checkpoint=True if resume else None)
    # Mixed precision wraps the model's forward in autocast; predictions after training run in full precision,
    # as they do once the model is saved and loaded.
    trainer.accelerator.unwrap_model(trainer.model, keep_fp32_wrapper=False)
    return trainer


@contextlib.contextmanager
def _cpu_threads_for(device: torch.device, tokens: int):
    """Run the block on one intra-op thread when the work is tiny (see ``_SINGLE_THREAD_MAX_TOKENS``)."""
    if device.type != "cpu" or tokens > _SINGLE_THREAD_MAX_TOKENS or torch.get_num_threads() == 1:
        yield
        return
    with _THREADS_LOCK:  # concurrent predictions must not restore each other's setting
        previous = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            yield
        finally:
            torch.set_num_threads(previous)


@torch.inference_mode()
def predict_logits(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, texts: Sequence[str],
                   max_length: int, batch_size: int = 64, windows: bool = True) -> np.ndarray:
    """Logits for ``texts`` in input order; batches are length-sorted so padding stays small. A text longer than
    ``max_length`` tokens is read in windows whose logits are pooled (:mod:`.windows`); ``windows=False`` truncates
    it."""
    model.eval()
    device = next(model.parameters()).device
    pool = WindowPool(len(texts), model.config.num_labels)
    base = model.get_base_model() if hasattr(model, "get_base_model") else model  # a peft model's own model
    accepts_position_ids = "position_ids" in inspect.signature(base.forward).parameters
    for rows, encoded in window_batches(tokenizer, texts, max_length, batch_size, windows=windows):
        encoded = encoded.to(device)
        if tokenizer.padding_side == "left" and accepts_position_ids:
            # Left padding shifts every position; count positions from each text's first real token instead.
            encoded["position_ids"] = (encoded["attention_mask"].cumsum(-1) - 1).clamp(min=0)
        with _cpu_threads_for(device, encoded["input_ids"].numel()):
            pool.add(rows, model(**encoded).logits.float().cpu().numpy())
    return pool.result()


def evaluation_trainer(model, tokenizer: PreTrainedTokenizerBase, eval_batch_size: int,
                       compute_metrics: Callable[[object], Dict[str, float]]) -> Trainer:
    """A Trainer that only evaluates ``model`` (a trained model's ``evaluate``; the embedding methods' eval)."""
    output_dir = str(Path(tempfile.gettempdir()) / "finetuner-eval")  # evaluation writes nothing there
    args = TrainingArguments(output_dir=output_dir, report_to="none", per_device_eval_batch_size=eval_batch_size,
                             disable_tqdm=True, use_cpu=not torch.cuda.is_available(),
                             average_tokens_across_devices=False)
    trainer = _Trainer(model=model, args=args, processing_class=tokenizer,
                      data_collator=DataCollatorWithPadding(tokenizer), compute_metrics=compute_metrics)
    trainer.remove_callback(PrinterCallback)  # it would print the metrics dict to stdout
    return trainer
