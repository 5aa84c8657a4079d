"""``LLMFinetuner``: the seed API (fine_tune / evaluate_model / predict) and what grows around it."""

from __future__ import annotations

import json
import os
import tempfile
import threading
import warnings
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

import numpy as np
import torch
from transformers import TrainerCallback

from . import __version__
from .config import TrainConfig
from .data import LabelMap, validate_texts, validate_texts_and_labels
from .errors import ConfigError, DataError, ModelLoadError
from .explain import Explanation, explain
from .files import atomic_dir
from .metrics import SUMMARY_KEYS, full_report, logits_to_probabilities
from .models import (DEFAULT_MODEL, ResolvedModel, compute_device, ensure_pad_token, load_classifier,
                     load_tokenizer, quiet_loading, resolve_model)
from .method_choice import MethodChoice, choose_method, names_are_meaningful
from .training import lora
from .training.embedding_methods import FEWSHOT_LEARNING_RATE, contrastive_steps, contrastive_tune, fit_head
from .training.finetune import (choose_max_length, model_length_limit, predict_logits, tokenize_dataset,
                                train_classifier)
from .training.checkpoints import drop_incomplete, last_complete_step
from .training.progress import Listener, ProgressCallback, ProgressEvent
from .training.sentence_classifier import SentenceClassifier, is_sentence_classifier_dir

METADATA_FILE = "finetuner.json"
# Methods that train a SentenceClassifier's head on embeddings (after contrastive tuning, for "fewshot").
EMBEDDING_METHODS = ("head", "fewshot")
# Methods that train a SentenceClassifier (the head fitted first, for "head_finetune").
SENTENCE_METHODS = (*EMBEDDING_METHODS, "head_finetune")
FORMAT_VERSION = 1


class _DefaultNumLabels(int):
    """The default ``num_labels`` (2): equal to 2, but recognisable as "not given" so data can decide."""


_NUM_LABELS_NOT_GIVEN = _DefaultNumLabels(2)


class LLMFinetuner:
    """Fine-tune a pre-trained transformer for text classification.

    ``LLMFinetuner(model_name, num_labels)`` loads the model and tokenizer. Labels may be ints or
    strings; when ``num_labels`` is left at its default the number of classes comes from the data.
    """

    def __init__(self, model_name: str = DEFAULT_MODEL, num_labels: int = _NUM_LABELS_NOT_GIVEN, *,
                 config: Optional[TrainConfig] = None):
        if isinstance(num_labels, bool) or not isinstance(num_labels, int) or num_labels < 2:
            raise ConfigError(f"num_labels must be a whole number of at least 2; got {num_labels!r}.")
        self.config = config or TrainConfig()
        self.model_name = model_name
        self._num_labels_given = num_labels is not _NUM_LABELS_NOT_GIVEN
        self._resolved = resolve_model(model_name)
        self.tokenizer = load_tokenizer(self._resolved)
        self.label_map = LabelMap(tuple(range(int(num_labels))))
        self.model = self._load_model(self.label_map, self.config.seed)
        self.max_length: Optional[int] = None
        self.trainer = None
        self.metrics: Dict[str, float] = {}
        self.report: Optional[Dict[str, Any]] = None
        self.history: List[Dict[str, Any]] = []
        self.stopped = False
        self.trained = False
        self.method_choice: Optional[MethodChoice] = None

    # ------------------------------------------------------------------ seed API

    def fine_tune(self, train_texts: List[str], train_labels: List[Any], eval_texts: Optional[List[str]] = None,
                  eval_labels: Optional[List[Any]] = None, *, config: Optional[TrainConfig] = None,
                  listener: Optional[Listener] = None, stop_event: Optional[threading.Event] = None,
                  checkpoint_dir: Optional[Union[str, Path]] = None, resume: bool = False) -> None:
        """Train on the texts and labels; evaluate on the eval set after every epoch when one is given.

        ``listener`` receives :class:`~finetuner.training.progress.ProgressEvent` objects; setting
        ``stop_event`` stops training at the next step (``self.stopped`` is then True).
        ``checkpoint_dir`` keeps a resumable checkpoint there every epoch; ``resume=True`` continues
        from the last one (the same data and config must be given).
        """
        config = config or self.config
        config.validate()
        if resume:
            if checkpoint_dir is not None:
                drop_incomplete(checkpoint_dir)
            if checkpoint_dir is None or last_complete_step(checkpoint_dir) is None:
                raise ConfigError(f"Nothing to resume: no complete checkpoint in {checkpoint_dir}. "
                                  "Start a new run instead.")
        texts, labels = validate_texts_and_labels(train_texts, train_labels, what="training data")
        has_eval = eval_texts is not None and len(eval_texts) > 0
        if has_eval:
            eval_texts_clean, eval_labels_clean = validate_texts_and_labels(
                eval_texts, eval_labels, min_classes=1, what="evaluation data")
        else:
            eval_texts_clean, eval_labels_clean = [], []
        self._fit_label_map(labels + eval_labels_clean, config.seed)
        missing = set(map(str, eval_labels_clean)) - set(map(str, labels))
        if missing:
            warnings.warn(f"Evaluation labels never seen in training: {sorted(missing)}.", stacklevel=2)
        self.method_choice = self.choose_method(labels, config)
        config = config.replace(method=self.method_choice.method)
        self._prepare_for_method(config)

        limit = model_length_limit(self.tokenizer, self.model)
        if config.max_length is not None:
            self.max_length = min(config.max_length, limit)
        else:
            self.max_length = choose_max_length(self.tokenizer, texts, limit)
        label_ids = self.label_map.encode(labels)
        train_ds = tokenize_dataset(self.tokenizer, texts, label_ids, self.max_length)
        eval_ds = tokenize_dataset(self.tokenizer, eval_texts_clean, self.label_map.encode(eval_labels_clean),
                                   self.max_length) if has_eval else None

        self.history = []

        def record(event: ProgressEvent) -> None:  # the run's history (plots, saved record), then the listener
            self.history.append({k: v for k, v in vars(event).items() if v is not None})
            if listener is not None:
                listener(event)

        progress = ProgressCallback(record, stop_event)
        if config.method == "head_finetune" and not resume:  # the head first, then the Trainer from there
            self._fit_head(config, texts, label_ids)
        if config.method in EMBEDDING_METHODS:
            if config.method == "fewshot" and config.learning_rate is None:
                config = config.replace(learning_rate=FEWSHOT_LEARNING_RATE)
            self._train_embedding_method(config, texts, label_ids, eval_ds, progress)
            self.config = config
            self.stopped = progress.stopped
            self.trained = True
            return
        if checkpoint_dir is not None:
            self.trainer = train_classifier(self.model, self.tokenizer, train_ds, eval_ds, config,
                                            str(checkpoint_dir), self._compute_metrics, [progress],
                                            checkpoints=True, resume=resume)
        else:
            with tempfile.TemporaryDirectory(prefix="finetuner-") as output_dir:
                self.trainer = train_classifier(self.model, self.tokenizer, train_ds, eval_ds, config, output_dir,
                                                self._compute_metrics, [progress])
        self.trainer.remove_callback(progress)  # later evaluate_model calls must not reach this run's listeners
        self.model = self.trainer.model
        # Record the settings as used: a learning rate left to choose becomes the one chosen.
        self.config = config.replace(learning_rate=self.trainer.args.learning_rate)
        self.stopped = progress.stopped
        self.trained = True

    def evaluate_model(self, test_texts: List[str], test_labels: List[Any]) -> Dict[str, float]:
        """Accuracy, macro/weighted precision, recall, F1 and loss on the test set (via ``Trainer.evaluate``).

        The per-class report and confusion matrix of the same evaluation are in ``self.report``.
        """
        texts, labels = validate_texts_and_labels(test_texts, test_labels, min_classes=1, what="test data")
        max_length = self.max_length or model_length_limit(self.tokenizer, self.model)
        dataset = tokenize_dataset(self.tokenizer, texts, self.label_map.encode(labels), max_length)
        trainer = self.trainer or self._evaluation_trainer()
        raw = trainer.evaluate(eval_dataset=dataset)
        self.metrics = {key: float(raw[f"eval_{key}"]) for key in (*SUMMARY_KEYS, "loss")}
        return dict(self.metrics)

    def predict(self, texts: List[str]) -> List[int]:
        """Predicted class for each text: the label itself for integer labels, else the class index."""
        ids = self._predict_ids(texts)
        return [int(v) for v in self.label_map.decode(ids)] if self.label_map.is_int else ids

    # ------------------------------------------------------------------ beyond the seed

    def predict_labels(self, texts: List[str]) -> List[str]:
        """Predicted class name for each text."""
        return [self.label_map.names[i] for i in self._predict_ids(texts)]

    def predict_proba(self, texts: List[str]) -> List[Dict[str, float]]:
        """Class probabilities for each text, as ``{class name: probability}``."""
        probabilities = self.predict_proba_array(texts)
        return [dict(zip(self.label_map.names, map(float, row))) for row in probabilities]

    def predict_proba_array(self, texts: Sequence[str]) -> np.ndarray:
        """Probabilities as an array of shape (texts, classes), columns in ``self.label_map`` order.

        A single string counts as one text (every predict method accepts one)."""
        texts = validate_texts([texts] if isinstance(texts, str) else list(texts), what="input to predict")
        max_length = self.max_length or model_length_limit(self.tokenizer, self.model)
        logits = predict_logits(self.model, self.tokenizer, texts, max_length, self.config.eval_batch_size)
        return logits_to_probabilities(logits)

    def explain(self, text: str, target: Optional[str] = None) -> "Explanation":
        """Which words of ``text`` support the predicted class (or ``target``): :func:`finetuner.explain.explain`."""
        return explain(self, text, target)

    @property
    def labels(self) -> List[str]:
        return self.label_map.names

    @property
    def is_main_process(self) -> bool:
        """False in the other processes of a distributed run (``accelerate launch``, ``torchrun``)."""
        if self.trainer is not None:
            return self.trainer.is_world_process_zero()
        return int(os.environ.get("RANK") or 0) == 0

    def save(self, path: Union[str, Path], *, merge: bool = False) -> Path:
        """Write a self-contained model directory (safetensors, tokenizer, labels, config, metrics).

        A LoRA model is saved as its adapter and classification head only (a few MB; :meth:`load` puts them
        back on the base model); ``merge=True`` saves the full model with the adapter merged in instead.

        The directory is written beside its target and renamed into place, so an interrupted save never
        leaves a half-written model at ``path``. In a distributed run every process may call this; only
        the main process writes.
        """
        target = Path(path).expanduser().resolve()
        if not self.is_main_process:
            return target
        with atomic_dir(target) as staging:
            adapter = lora.is_peft_model(self.model) and not merge
            model = lora.merged_copy(self.model) if lora.is_peft_model(self.model) and merge else self.model
            with quiet_loading():
                if isinstance(model, SentenceClassifier):
                    model.save(staging)
                else:
                    model.save_pretrained(staging, safe_serialization=True)
                self.tokenizer.save_pretrained(staging)
            metadata = {**self._metadata(), "adapter": adapter}
            (staging / METADATA_FILE).write_text(json.dumps(metadata, indent=2), encoding="utf-8")
        return target

    @classmethod
    def load(cls, path: Union[str, Path]) -> "LLMFinetuner":
        """Load a directory written by :meth:`save`; it predicts exactly as the saved model did."""
        directory = Path(path).expanduser()
        meta_file = directory / METADATA_FILE
        if not meta_file.is_file():
            raise ModelLoadError(f"{directory} is not a saved finetuner model (no {METADATA_FILE}).")
        meta = json.loads(meta_file.read_text(encoding="utf-8"))
        self = cls.__new__(cls)
        self.config = TrainConfig.from_dict(meta["config"])
        self.model_name = meta["base_model"]
        self._num_labels_given = True
        self._resolved = ResolvedModel(str(directory), str(directory.resolve()), "local")
        self.tokenizer = load_tokenizer(self._resolved)
        self.label_map = LabelMap(tuple(meta["labels"]))
        if meta.get("adapter"):  # LoRA adapter + head: rebuild the base model, then put them on it
            self._resolved = _saved_base(meta)
            self.model = lora.load_adapter(self._load_model(self.label_map, self.config.seed), directory)
        elif is_sentence_classifier_dir(directory):
            with quiet_loading():
                self.model = SentenceClassifier.load(directory, **self._resolved.load_kwargs)
            ensure_pad_token(self.tokenizer, self.model)
        else:
            self.model = self._load_model(self.label_map, self.config.seed)
        self.model.to(compute_device())
        self.max_length = meta.get("max_length")
        self.trainer = None
        self.metrics = meta.get("metrics", {})
        self.report = meta.get("report")
        self.history = meta.get("history", [])
        self.stopped = False
        self.trained = True
        choice = meta.get("method_choice")
        self.method_choice = MethodChoice(choice["method"], choice["reason"]) if choice else None
        return self

    def choose_method(self, train_labels: Sequence[Any], config: Optional[TrainConfig] = None) -> MethodChoice:
        """The method :meth:`fine_tune` will use for these training labels (``config.method`` unless "auto")."""
        config = config or self.config
        if config.method != "auto":
            return MethodChoice(config.method, "set in the training settings")
        return choose_method(Counter(map(str, train_labels)), getattr(self.model.config, "model_type", ""))

    # ------------------------------------------------------------------ internals

    def _predict_ids(self, texts: Sequence[str]) -> List[int]:
        return [int(i) for i in self.predict_proba_array(texts).argmax(axis=1)]

    def _load_model(self, label_map: LabelMap, seed: int):
        """The classifier for ``label_map`` from ``self._resolved``, with padding set up for batches."""
        model = load_classifier(self._resolved, label_map, seed)
        ensure_pad_token(self.tokenizer, model)
        return model

    def _prepare_for_method(self, config: TrainConfig) -> None:
        """Put the model in the form the method trains: LoRA wraps it in an adapter (once); full fine-tuning of
        a LoRA model merges the adapter first; the embedding methods put a head on the encoder's mean-pooled
        embeddings (a model they trained stays in that form when fine-tuned further)."""
        if config.method == "lora":
            if isinstance(self.model, SentenceClassifier):
                raise ConfigError(f"This model was trained with method={self.config.method!r}; LoRA needs a "
                                  "standard classifier. Start LoRA from the base model instead.")
            if not lora.is_peft_model(self.model):
                self.model = lora.wrap_with_lora(self.model, config)
            return
        if lora.is_peft_model(self.model):
            self.model = self.model.merge_and_unload()
        if config.method in SENTENCE_METHODS:
            if not isinstance(self.model, SentenceClassifier):
                self.model = SentenceClassifier(self.model.base_model, len(self.label_map))
            self.model.to(compute_device())  # the embedding steps run outside the Trainer, which does this itself

    def _train_embedding_method(self, config: TrainConfig, texts: List[str], label_ids: List[int],
                                eval_ds, progress: ProgressCallback) -> None:
        """Contrastive tuning (few-shot), then the head by logistic regression, then evaluation; progress events
        as the Trainer would send them (a stop request ends contrastive tuning at its next step)."""
        from transformers import TrainerControl, TrainerState
        tuning = config.method == "fewshot"
        steps = contrastive_steps(len(texts), len(self.label_map), config.batch_size) if tuning else 1
        state, control = TrainerState(max_steps=steps, global_step=0, epoch=0.0), TrainerControl()
        progress.on_train_begin(None, state, control)
        stage = _StageProgress(progress)
        if tuning:
            contrastive_tune(self.model, self.tokenizer, texts, label_ids, config, self._meaningful_label_names(),
                             callbacks=[stage])
        self._fit_head(config, texts, label_ids)
        state.global_step = stage.step if tuning and progress.stopped else steps
        state.epoch = state.global_step / steps
        self.trainer = self._evaluation_trainer()
        self.trainer.state = state  # the run's steps, for its record (this Trainer only evaluates)
        if eval_ds is not None and not progress.stopped:
            raw = self.trainer.evaluate(eval_dataset=eval_ds)
            progress.on_evaluate(None, state, control, metrics=raw)
        progress.on_train_end(None, state, control)

    def _meaningful_label_names(self) -> Optional[List[str]]:
        """The class names when they say what the classes are (words, not codes like 0/1 or "LABEL_3")."""
        names = self.label_map.names
        return None if self.label_map.is_int or not names_are_meaningful(names) else list(names)

    def _fit_head(self, config: TrainConfig, texts: List[str], label_ids: List[int]) -> None:
        fit_head(self.model, self.tokenizer, texts, label_ids, self.label_map.names, self.max_length,
                 use_label_names=self._meaningful_label_names() is not None, seed=config.seed,
                 batch_size=config.eval_batch_size)

    def _fit_label_map(self, labels: List[Any], seed: int) -> None:
        """Make the classifier head match the classes in the data (or check it against ``num_labels``)."""
        given = len(self.label_map) if self._num_labels_given else None
        label_map = LabelMap.from_labels(labels, num_labels=given)
        if given is not None and len(label_map) != given:
            raise DataError(
                f"num_labels={given}, but the data has {len(label_map)} classes "
                f"({', '.join(label_map.names[:10])}{'…' if len(label_map) > 10 else ''}). "
                f"Pass num_labels={len(label_map)} or leave it out to use the data's classes."
            )
        if label_map == self.label_map:
            return
        if isinstance(self.model, SentenceClassifier):
            if len(label_map) != self.model.config.num_labels:
                self.model = SentenceClassifier(self.model.encoder, len(label_map))
            self.model.config.id2label, self.model.config.label2id = label_map.id2label, label_map.label2id
        elif len(label_map) != self.model.config.num_labels:
            self.model = self._load_model(label_map, seed)
        else:
            self.model.config.id2label, self.model.config.label2id = label_map.id2label, label_map.label2id
        self.label_map = label_map

    def _compute_metrics(self, eval_prediction) -> Dict[str, float]:
        logits = eval_prediction.predictions
        logits = logits[0] if isinstance(logits, tuple) else logits
        predicted = np.asarray(logits).argmax(axis=-1)
        self.report = full_report(np.asarray(eval_prediction.label_ids), predicted, self.label_map.names)
        return self.report["summary"]

    def _evaluation_trainer(self):
        from transformers import DataCollatorWithPadding, PrinterCallback, Trainer, TrainingArguments
        output_dir = str(Path(tempfile.gettempdir()) / "finetuner-eval")  # evaluation writes nothing there
        args = TrainingArguments(output_dir=output_dir, report_to="none",
                                 per_device_eval_batch_size=self.config.eval_batch_size, disable_tqdm=True,
                                 use_cpu=not torch.cuda.is_available(), average_tokens_across_devices=False)
        trainer = Trainer(model=self.model, args=args, processing_class=self.tokenizer,
                          data_collator=DataCollatorWithPadding(self.tokenizer), compute_metrics=self._compute_metrics)
        trainer.remove_callback(PrinterCallback)  # it would print the metrics dict to stdout
        return trainer

    def _metadata(self) -> Dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION,
            "finetuner_version": __version__,
            "base_model": self.model_name,
            "base_location": self._resolved.location,
            "method": self.config.method,
            "method_choice": vars(self.method_choice) if self.method_choice else None,
            "labels": list(self.label_map.values),
            "max_length": self.max_length,
            "config": self.config.to_dict(),
            "metrics": self.metrics,
            "report": self.report,
            "history": self.history,
            "stopped_early_by_user": self.stopped,
            "saved_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }


class _StageProgress(TrainerCallback):
    """Passes a training stage's losses and stop checks (e.g. SetFit's contrastive tuning) to the run's
    :class:`ProgressCallback`, without a start or end of its own."""

    def __init__(self, progress: ProgressCallback):
        self.progress = progress
        self.step = 0  # the stage's last step

    def on_log(self, args, state, control, logs=None, **kwargs):
        losses = {k.rsplit("_", 1)[-1]: v for k, v in (logs or {}).items() if k.endswith("loss")}
        self.progress.on_log(args, state, control, logs=losses)

    def on_step_end(self, args, state, control, **kwargs):
        self.step = state.global_step
        return self.progress.on_step_end(args, state, control)


def _saved_base(meta: Dict[str, Any]) -> ResolvedModel:
    """The base model of a saved adapter: where it was loaded from when that still exists, else its name."""
    location = meta.get("base_location")
    if location and (Path(location) / "config.json").is_file():
        return ResolvedModel(meta["base_model"], location, "local")
    return resolve_model(meta["base_model"])
