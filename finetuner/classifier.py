"""A trained text classifier: the model, its tokenizer and classes, predictions and explanations, and the one
on-disk format (a directory with ``finetuner.json``, safetensors weights and the tokenizer) it saves and loads.

Training builds one (:class:`finetuner.LLMFinetuner` keeps it as ``.classifier``); :meth:`TextClassifier.load`
gives it back from disk without anything of the training.
"""

from __future__ import annotations

import json
import uuid
import warnings
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from . import __version__
from .config import TrainConfig
from .data import LabelMap, validate_texts
from .errors import ModelLoadError
from .explain import Explanation, explain
from .files import atomic_dir, atomic_file
from .loading import quiet_loading
from .method_choice import MethodChoice
from .metrics import outputs_to_scores
from .models import (ResolvedModel, compute_device, ensure_pad_token, load_classifier, load_tokenizer,
                     resolve_model)
from .training import lora
from .training.finetune import model_length_limit, predict_logits
from .training.windows import window_spans
from .training.onnx_graph import ONNX_FILE, REPORT_FILE, OnnxExportError, OnnxLogits
from .training.sentence_classifier import SentenceClassifier, is_sentence_classifier_dir

METADATA_FILE = "finetuner.json"
# A model folder's ONNX export (python -m finetuner export --format onnx): when it is there, load() predicts with it.
ONNX_DIR = "onnx"
BACKENDS = ("auto", "torch", "onnx")
# The version of the saved-model format (METADATA_FILE's fields and the files beside it). 2: a sentence
# classifier's encoder in encoder/, and a config.json that transformers refuses beside it and beside a LoRA
# adapter. TextClassifier.load reads version 1 too.
FORMAT_VERSION = 2


class TextClassifier:
    """A text classifier: ``model`` (a transformers sequence classifier, a LoRA-adapted one or a
    :class:`SentenceClassifier`), its ``tokenizer`` and ``label_map``, and what is known about its training.

    Args:
        max_length: the truncation length it was trained with (None: the model's limit).
        config: the settings it was trained with (its ``eval_batch_size`` batches predictions).
        base_model: the name of the model it started from; ``source`` where its weights were loaded from (a new
            head for other classes is loaded from there).
        metrics, report, history, method_choice, stopped: its last evaluation, per-class report, progress events,
            the method that trained it and why, and whether a stop request ended that training early.
    """

    def __init__(self, model: Any, tokenizer: Any, label_map: LabelMap, *, config: Optional[TrainConfig] = None,
                 max_length: Optional[int] = None, base_model: str = "", source: Optional[ResolvedModel] = None,
                 metrics: Optional[Dict[str, float]] = None, report: Optional[Dict[str, Any]] = None,
                 history: Optional[List[Dict[str, Any]]] = None, method_choice: Optional[MethodChoice] = None,
                 stopped: bool = False, model_id: Optional[str] = None,
                 thresholds: Optional[Sequence[float]] = None):
        self.onnx: Optional[OnnxLogits] = None  # set by use_onnx(): predictions through ONNX Runtime
        self.model_id = model_id  # finetuner.json's id of the saved weights (an ONNX export names the one it is of)
        self.folder: Optional[Path] = None  # the folder it was loaded from or last saved to
        self.model = model
        self.tokenizer = tokenizer
        self.label_map = label_map
        self.config = config or TrainConfig()
        self.max_length = max_length
        self.base_model = base_model
        self.source = source
        self.metrics: Dict[str, float] = dict(metrics or {})
        self.report = report
        self.history: List[Dict[str, Any]] = list(history or [])
        self.method_choice = method_choice
        self.stopped = stopped
        # Several labels per text: each label's decision threshold, tuned on held-out rows (None: 0.5 each).
        self.thresholds: Optional[List[float]] = list(thresholds) if thresholds is not None else None

    @classmethod
    def from_base(cls, model_name: str, label_map: LabelMap, config: TrainConfig) -> "TextClassifier":
        """An untrained classifier for ``label_map`` on the pre-trained model ``model_name`` (a new head, initialised
        from ``config.seed``)."""
        source = resolve_model(model_name)
        tokenizer = load_tokenizer(source)
        return cls(_load_classifier(source, tokenizer, label_map, config.seed), tokenizer, label_map, config=config,
                   base_model=model_name, source=source)

    @property
    def model(self) -> Any:
        return self._model

    @model.setter
    def model(self, model: Any) -> None:
        self._model = model
        self.onnx = None  # an ONNX graph of the old weights would no longer predict what the model does

    # ------------------------------------------------------------------ predictions

    @property
    def labels(self) -> List[str]:
        return self.label_map.names

    @property
    def task(self) -> str:
        """"single_label", "multi_label" or "regression" (:data:`finetuner.tasks.TASKS`)."""
        return self.label_map.task

    def predict(self, texts: Sequence[str]) -> List[Any]:
        """Predicted class for each text: the label itself for integer labels, else the class index. Several labels
        per text: the list of labels above their thresholds; regression: the predicted number."""
        if self.task != "single_label":
            return self.predict_labels(texts)
        ids = self._predict_ids(texts)
        return [int(v) for v in self.label_map.decode(ids)] if self.label_map.is_int else ids

    def predict_labels(self, texts: Sequence[str]) -> List[Any]:
        """Predicted class name for each text; several labels per text: the list of label names above their
        thresholds (possibly empty); regression: the predicted number."""
        scores = self.predict_proba_array(texts)
        if self.task == "regression":
            return [float(v) for v in scores[:, 0]]
        if self.task == "multi_label":
            return self.decide(scores)
        return [self.label_map.names[i] for i in scores.argmax(axis=1)]

    def decide(self, probabilities: np.ndarray) -> List[List[str]]:
        """Several labels per text: the labels whose probability reaches their threshold, per row."""
        limits = np.asarray(self.label_thresholds())
        names = self.label_map.names
        return [[names[j] for j in np.flatnonzero(row >= limits)] for row in np.asarray(probabilities)]

    def label_thresholds(self) -> List[float]:
        """Each label's decision threshold (several labels per text; 0.5 where none was tuned)."""
        if self.thresholds is not None and len(self.thresholds) == len(self.label_map):
            return list(self.thresholds)
        return [0.5] * len(self.label_map)

    def predict_proba(self, texts: Sequence[str]) -> List[Dict[str, float]]:
        """Class probabilities for each text, as ``{class name: probability}`` (several labels per text: each
        label's own probability; regression: ``{target name: predicted number}``)."""
        probabilities = self.predict_proba_array(texts)
        return [dict(zip(self.label_map.names, map(float, row))) for row in probabilities]

    def predict_proba_array(self, texts: Sequence[str]) -> np.ndarray:
        """Probabilities as an array of shape (texts, classes), columns in ``self.label_map`` order (several labels
        per text: each label's sigmoid; regression: one column of predicted numbers).

        A single string counts as one text (every predict method accepts one)."""
        texts = validate_texts([texts] if isinstance(texts, str) else list(texts), what="input to predict")
        onnx = self.onnx  # read once: another thread may switch the backend meanwhile
        if onnx is not None:
            logits = onnx(self.tokenizer, texts, self.length_limit(), self.config.eval_batch_size, self.windows)
        else:
            logits = self.torch_logits(texts)
        return outputs_to_scores(logits, self.task)

    def torch_logits(self, texts: Sequence[str]) -> np.ndarray:
        """Logits from the PyTorch model, whatever the backend (what an ONNX export is checked against)."""
        return predict_logits(self.model, self.tokenizer, texts, self.length_limit(), self.config.eval_batch_size,
                              self.windows)

    def use_onnx(self, path: Union[str, Path, None], threads: Optional[int] = None) -> None:
        """Predict with the ONNX graph at ``path`` through ONNX Runtime (None: back to PyTorch), on ``threads``
        CPU threads (default: one per core). The graph must be an export of this model
        (:func:`finetuner.onnx_export.export_onnx` checks that when it writes one)."""
        onnx = OnnxLogits(path, threads) if path is not None else None
        if onnx is not None and onnx.num_labels != len(self.label_map):
            raise OnnxExportError(f"{path} predicts {onnx.num_labels} classes; this model has {len(self.label_map)}.")
        self.onnx = onnx

    @property
    def backend(self) -> str:
        """What predictions run on: "onnx" (ONNX Runtime) or "torch"."""
        return "onnx" if self.onnx is not None else "torch"

    def explain(self, text: str, target: Optional[str] = None) -> Explanation:
        """Which words of ``text`` support the predicted class (or ``target``; several labels per text: the most
        probable label; a number: how each word raises or lowers it): :func:`finetuner.explain.explain`."""
        return explain(self, text, target)

    def length_limit(self) -> int:
        """The truncation length: the trained one, else the longest input the model takes."""
        return self.max_length or model_length_limit(self.tokenizer, self.model)

    def window_spans(self, text: str) -> List[Tuple[int, int]]:
        """The (start, end) characters of ``text`` that each window the model reads of it covers (one span for a
        text that fits): what :func:`finetuner.explain.explain` leaves words out of."""
        return window_spans(self.tokenizer, text, self.length_limit(), self.windows)

    @property
    def windows(self) -> bool:
        """Whether a text longer than :meth:`length_limit` is read in overlapping windows (``config.long_texts``)
        rather than cut."""
        return self.config.long_texts == "windows"

    def _predict_ids(self, texts: Sequence[str]) -> List[int]:
        return [int(i) for i in self.predict_proba_array(texts).argmax(axis=1)]

    # ------------------------------------------------------------------ classes

    def set_labels(self, label_map: LabelMap, seed: int) -> None:
        """Make the head match ``label_map``: a new one (initialised from ``seed``) when the number of classes
        changes, else the same one with the new class names."""
        if label_map == self.label_map:
            return
        self.thresholds = None
        if len(label_map) != self.model.config.num_labels:
            if isinstance(self.model, SentenceClassifier):
                self.model = SentenceClassifier(self.model.encoder, len(label_map))
            else:
                self.model = _load_classifier(self.source, self.tokenizer, label_map, seed)
        self.model.config.id2label, self.model.config.label2id = label_map.id2label, label_map.label2id
        self.model.config.problem_type = label_map.problem_type
        self.label_map = label_map

    # ------------------------------------------------------------------ on disk

    def save(self, path: Union[str, Path], *, merge: bool = False) -> Path:
        """Write a self-contained model directory (safetensors, tokenizer, labels, config, metrics).

        A LoRA model is saved as its adapter and classification head only (a few MB; :meth:`load` puts them
        back on the base model); ``merge=True`` saves the full model with the adapter merged in instead.

        The directory is written beside its target and renamed into place, so an interrupted save never
        leaves a half-written model at ``path``.
        """
        target = Path(path).expanduser().resolve()
        with atomic_dir(target) as staging:
            adapter = lora.is_peft_model(self.model) and not merge
            model = lora.merged_copy(self.model) if lora.is_peft_model(self.model) and merge else self.model
            with quiet_loading():
                if isinstance(model, SentenceClassifier):
                    model.save(staging, self.tokenizer)
                else:
                    model.save_pretrained(staging, safe_serialization=True)
                    if adapter:
                        lora.write_adapter_config(model, staging)
                self.tokenizer.save_pretrained(staging)
            model_id = uuid.uuid4().hex  # new weights on disk: an ONNX export of other weights no longer matches
            metadata = {**self.metadata(), "adapter": adapter, "model_id": model_id}
            (staging / METADATA_FILE).write_text(json.dumps(metadata, indent=2), encoding="utf-8")
        self.model_id, self.folder = model_id, target
        return target

    def ensure_model_id(self, directory: Union[str, Path]) -> str:
        """This model's id, first written into ``directory``'s finetuner.json when it was saved without one (by
        finetuner before ONNX export existed), so that an export into the folder can name the weights it is of."""
        if self.model_id is None:
            meta_file = Path(directory) / METADATA_FILE
            meta = json.loads(meta_file.read_text(encoding="utf-8"))
            meta["model_id"] = meta.get("model_id") or uuid.uuid4().hex
            with atomic_file(meta_file) as staging:
                staging.write_text(json.dumps(meta, indent=2), encoding="utf-8")
            self.model_id = meta["model_id"]
        return self.model_id

    @classmethod
    def load(cls, path: Union[str, Path], backend: str = "auto") -> "TextClassifier":
        """Load a directory written by :meth:`save`; it predicts exactly as the saved model did.

        ``backend``: "auto" predicts with the folder's ONNX export (``onnx/model.onnx``, made from these very
        weights) through ONNX Runtime when there is one and it can be used, else with PyTorch (saying why when an
        export is there but unusable); "torch" always with PyTorch; "onnx" requires a usable export
        (:meth:`finetuner.LLMFinetuner.load` builds one on demand)."""
        if backend not in BACKENDS:
            raise ModelLoadError(f"Unknown backend {backend!r}: choose one of {', '.join(BACKENDS)}.")
        directory = Path(path).expanduser()
        meta_file = directory / METADATA_FILE
        if not meta_file.is_file():
            raise ModelLoadError(f"{directory} is not a saved finetuner model (no {METADATA_FILE}).")
        meta = json.loads(meta_file.read_text(encoding="utf-8"))
        if int(meta.get("format_version") or 1) > FORMAT_VERSION:
            raise ModelLoadError(f"{directory} was saved by a newer finetuner (format {meta['format_version']}; this "
                                 f"one reads up to {FORMAT_VERSION}): upgrade finetuner to load it.")
        # Saved before long texts were read in windows: it keeps predicting as it did, from their first tokens.
        config = TrainConfig.from_dict({"long_texts": "truncate", **meta["config"]})
        label_map = LabelMap(tuple(meta["labels"]), meta.get("task", "single_label"), meta.get("separator", ";"))
        source = ResolvedModel(str(directory), str(directory.resolve()), "local")
        tokenizer = load_tokenizer(source)
        if meta.get("adapter"):  # LoRA adapter + head: rebuild the base model, then put them on it
            source = _saved_base(meta)
            model = lora.load_adapter(_load_classifier(source, tokenizer, label_map, config.seed), directory)
        elif is_sentence_classifier_dir(directory):
            with quiet_loading():
                model = SentenceClassifier.load(directory, **source.load_kwargs)
            ensure_pad_token(tokenizer, model)
        else:
            model = _load_classifier(source, tokenizer, label_map, config.seed)
        model.config.problem_type = label_map.problem_type
        model.to(compute_device())
        choice = meta.get("method_choice")
        classifier = cls(model, tokenizer, label_map, config=config, max_length=meta.get("max_length"),
                         base_model=meta["base_model"], source=source, metrics=meta.get("metrics", {}),
                         report=meta.get("report"), history=meta.get("history", []),
                         method_choice=MethodChoice.from_dict(choice) if choice else None,
                         stopped=bool(meta.get("stopped_early_by_user")), model_id=meta.get("model_id"),
                         thresholds=meta.get("thresholds"))
        if backend != "torch":
            try:
                classifier.use_onnx(_matching_graph(directory, classifier.model_id))
            except OnnxExportError as exc:
                if backend == "onnx":
                    raise ModelLoadError(str(exc)) from None
                if (directory / ONNX_DIR).exists():  # an export that cannot be used: say why, predict with PyTorch
                    warnings.warn(f"{exc} Predicting with PyTorch.", stacklevel=2)
        classifier.folder = directory.resolve()
        return classifier

    def metadata(self) -> Dict[str, Any]:
        """What :meth:`save` writes to ``finetuner.json`` (besides whether the weights are an adapter)."""
        return {
            "format_version": FORMAT_VERSION,
            "finetuner_version": __version__,
            "base_model": self.base_model,
            "base_location": self.source.location if self.source else None,
            "method": self.config.method,
            "method_choice": self.method_choice.as_dict() if self.method_choice else None,
            "labels": list(self.label_map.values),
            **self.label_map.as_dict(),
            "thresholds": self.thresholds,
            "max_length": self.max_length,
            "config": self.config.to_dict(),
            "metrics": self.metrics,
            "report": self.report,
            "history": self.history,
            "stopped_early_by_user": self.stopped,
            "saved_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }


def _matching_graph(directory: Path, model_id: Optional[str]) -> Path:
    """The folder's ONNX graph, when it was exported from the weights saved there (its onnx_export.json names them)."""
    graph, report = directory / ONNX_DIR / ONNX_FILE, directory / ONNX_DIR / REPORT_FILE
    fix = f"export it again: python -m finetuner export --model {directory}"
    if not graph.is_file():
        raise OnnxExportError(f"{directory} has no ONNX export; {fix}")
    try:
        exported_from = json.loads(report.read_text(encoding="utf-8")).get("model_id")
    except (OSError, ValueError, AttributeError):
        exported_from = None
    if model_id is None or exported_from != model_id:
        raise OnnxExportError(f"The ONNX export in {directory / ONNX_DIR} was not made from the weights saved there; "
                              f"{fix}.")
    return graph


def _load_classifier(source: ResolvedModel, tokenizer: Any, label_map: LabelMap, seed: int):
    """The classifier for ``label_map`` from ``source``, with padding set up for batches."""
    model = load_classifier(source, label_map, seed)
    ensure_pad_token(tokenizer, model)
    return model


def _saved_base(meta: Dict[str, Any]) -> ResolvedModel:
    """The base model of a saved adapter: where it was loaded from when that still exists, else its name."""
    location = meta.get("base_location")
    if location and (Path(location) / "config.json").is_file():
        return ResolvedModel(meta["base_model"], location, "local")
    return resolve_model(meta["base_model"])
