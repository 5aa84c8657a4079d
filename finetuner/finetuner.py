"""``LLMFinetuner``: the seed API (fine_tune / evaluate_model / predict) as a thin facade.

The trained model is a :class:`~finetuner.classifier.TextClassifier` (``.classifier``; predictions, explanations,
the saved format); each training method is a module of :mod:`finetuner.methods`. ``LLMFinetuner`` checks the data,
fits the classes, lets ``auto`` choose a method, hands the method a :class:`~finetuner.methods.base.TrainingJob`
and keeps what it returns.
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time
import warnings
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from .autoselect import fit_task_budget, train_auto
from .classifier import FORMAT_VERSION, METADATA_FILE, TextClassifier  # noqa: F401 - importable from here too
from .config import TrainConfig
from .data import LabelMap, normalize_labels, validate_texts_and_labels
from .errors import ConfigError, DataError
from .explain import Explanation
from .imbalance import ImbalanceHandling, imbalance_handling
from .method_choice import (SINGLE_LABEL_ONLY, MethodChoice, choose_method, choose_task_method,
                            names_are_meaningful)
from .onnx_export import OnnxExport, attach_onnx, export_onnx
from .methods import TrainingJob, registry
from .calibration import fold_scale, output_layer
from .metrics import (full_report, logits_to_probabilities, multi_label_report, regression_report, sigmoid,
                      tune_thresholds)
from .tasks import TASK_NAMES, TaskChoice, detect_task
from .training.targets import MIN_THRESHOLD_ROWS, TargetScale, hold_out_for_thresholds, threshold_rows
from .models import DEFAULT_MODEL
from .training.checkpoints import drop_incomplete, last_complete_step
from .training.finetune import model_length_limit, plan_windows, tokenize_dataset
from .training.memory import keep_freed_memory
from .training.windows import LongTexts
from .training.model_form import model_for_method
from .training.progress import Listener, ProgressCallback, ProgressEvent

if TYPE_CHECKING:
    from .evaluation import Evaluation


class _DefaultNumLabels(int):
    """The default ``num_labels`` (2): equal to 2, but recognisable as "not given" so data can decide."""


_NUM_LABELS_NOT_GIVEN = _DefaultNumLabels(2)


class _OfClassifier:
    """An attribute of ``LLMFinetuner`` that is its classifier's attribute of the same name (or ``name``)."""

    def __init__(self, name: Optional[str] = None):
        self.name = name

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = self.name or name

    def __get__(self, obj: Any, owner: Optional[type] = None) -> Any:
        return self if obj is None else getattr(obj.classifier, self.name)

    def __set__(self, obj: Any, value: Any) -> None:
        setattr(obj.classifier, self.name, value)


class LLMFinetuner:
    """Fine-tune a pre-trained transformer for text classification.

    ``LLMFinetuner(model_name, num_labels)`` loads the model and tokenizer. Labels may be ints or
    strings; when ``num_labels`` is left at its default the number of classes comes from the data.
    ``LLMFinetuner(classifier=TextClassifier.load(path))`` wraps a trained classifier (what :meth:`load` does).
    """

    model = _OfClassifier()
    tokenizer = _OfClassifier()
    label_map = _OfClassifier()
    config = _OfClassifier()
    max_length = _OfClassifier()
    metrics = _OfClassifier()
    report = _OfClassifier()
    history = _OfClassifier()
    method_choice = _OfClassifier()
    stopped = _OfClassifier()
    model_name = _OfClassifier("base_model")
    # Several labels per text: the labels each row of probabilities gives, and each label's threshold.
    decide = _OfClassifier()
    label_thresholds = _OfClassifier()

    def __init__(self, model_name: str = DEFAULT_MODEL, num_labels: int = _NUM_LABELS_NOT_GIVEN, *,
                 config: Optional[TrainConfig] = None, classifier: Optional[TextClassifier] = None):
        if classifier is None:
            if isinstance(num_labels, bool) or not isinstance(num_labels, int) or num_labels < 2:
                raise ConfigError(f"num_labels must be a whole number of at least 2; got {num_labels!r}.")
            classifier = TextClassifier.from_base(model_name, LabelMap(tuple(range(int(num_labels)))),
                                                  config or TrainConfig())
            self.trained = False
        else:
            classifier.config = config or classifier.config
            self.trained = True
        self.classifier = classifier
        self._num_labels_given = self.trained or num_labels is not _NUM_LABELS_NOT_GIVEN
        self.trainer = None
        # (the rows fine_tune evaluated after auto, as _rows_key gives them; that evaluation): see evaluation()
        self._last_evaluation: Optional[Tuple[Tuple[Any, Any], "Evaluation"]] = None

    # ------------------------------------------------------------------ seed API

    def fine_tune(self, train_texts: List[str], train_labels: List[Any], eval_texts: Optional[List[str]] = None,
                  eval_labels: Optional[List[Any]] = None, *, config: Optional[TrainConfig] = None,
                  listener: Optional[Listener] = None, stop_event: Optional[threading.Event] = None,
                  checkpoint_dir: Optional[Union[str, Path]] = None, resume: bool = False,
                  deadline: Optional[float] = None) -> None:
        """Train on the texts and labels; evaluate on the eval set after every epoch when one is given.

        With ``method="auto"`` (the default) the candidate methods are tried on most of the training rows and
        scored on the rest (:mod:`finetuner.autoselect`), within ``config.time_budget`` seconds from now or by
        ``deadline`` (a ``time.monotonic()`` value); the evaluation rows are never used to choose.
        ``listener`` receives :class:`~finetuner.training.progress.ProgressEvent` objects (and auto's
        :class:`~finetuner.selection.CandidateResult` objects, and first a
        :class:`~finetuner.training.windows.LongTexts` when some texts are longer than ``max_length``); setting
        ``stop_event`` stops training at the next step (``self.stopped`` is then True).
        ``checkpoint_dir`` keeps a resumable checkpoint there every epoch; ``resume=True`` continues
        from the last one (the same data and config must be given).
        When the classes are skewed (or ``config.class_weights`` says so) every method weighs its loss by class
        (:mod:`finetuner.imbalance`); ``method_choice.imbalance`` says what was done and why.
        """
        config = config or self.config
        config.validate()
        keep_freed_memory()  # training allocates and frees the same large blocks at every step
        self._last_evaluation = None
        given_eval = _rows_key(eval_texts or [], eval_labels or [])  # as the caller will pass them to evaluate
        task = self.task_of(train_labels, config)
        config = config.replace(task=task.task)
        self.classifier.onnx = None  # training changes the weights (in place, for some methods): back to PyTorch
        if deadline is None and config.time_budget is not None:
            deadline = time.monotonic() + config.time_budget
        if resume:
            _check_resumable(checkpoint_dir)
        texts, labels, eval_texts, eval_labels = _validated(train_texts, train_labels, eval_texts, eval_labels,
                                                            task)
        self._fit_label_map(labels + eval_labels, config.seed, task)
        missing = set(map(str, eval_labels)) - set(map(str, labels)) if task.task == "single_label" else ()
        if missing:
            warnings.warn(f"Evaluation labels never seen in training: {sorted(missing)}.", stacklevel=2)
        self.history = []
        record = self._recorder(listener)
        self.max_length, long_texts = self._window_length(texts, config)
        if long_texts:
            record(long_texts)
        windows = config.long_texts == "windows"
        label_ids, eval_ids = self.label_map.encode(labels), self.label_map.encode(eval_labels)
        # Several labels per text: rows held out to tune each label's threshold. A number: trained standardised.
        texts, label_ids, held = hold_out_for_thresholds(texts, label_ids, config.seed, task.task)
        # Several labels per text or a number: the method is chosen by rule (auto's selection is for one label).
        choice = self.choose_method(labels, config) if task.task != "single_label" else None
        self._scale = TargetScale.of(label_ids) if choice and self._can_fold_scale(choice.method, config) else None
        if self._scale is not None:
            label_ids, eval_ids = self._scale.standardize(label_ids), self._scale.standardize(eval_ids)
        imbalance = self.imbalance_handling(labels, config)
        job = TrainingJob(
            model=self.model, tokenizer=self.tokenizer, label_map=self.label_map, texts=texts, label_ids=label_ids,
            train_dataset=tokenize_dataset(self.tokenizer, texts, label_ids, self.max_length, windows),
            eval_dataset=tokenize_dataset(self.tokenizer, eval_texts, eval_ids,
                                          self.max_length, windows) if eval_texts else None,
            max_length=self.max_length, config=config, progress=ProgressCallback(record, stop_event),
            compute_metrics=self._compute_metrics, checkpoint_dir=checkpoint_dir, resume=resume,
            label_names=self._meaningful_label_names(), class_weights=imbalance.weight_list(self.label_map.names))
        if config.method == registry.AUTO and task.task == "single_label":
            outcome = train_auto(job, model_type=getattr(self.model.config, "model_type", ""),
                                 class_counts=Counter(map(str, labels)), trained_with=self.config.method,
                                 deadline=deadline, notify=record, imbalance=imbalance)
            result, self.method_choice = outcome.result, outcome.choice
        else:
            self.method_choice = choice or self.choose_method(labels, config)
            if config.method == registry.AUTO:  # several labels per text or numbers: within the time budget
                job, self.method_choice = fit_task_budget(job, self.method_choice, deadline, self.config.method)
            config = config.replace(method=self.method_choice.method)
            method = registry.get(config.method)
            model = model_for_method(self.model, config, len(self.label_map), adapter=method.adapter,
                                     sentence_classifier=method.sentence_classifier, trained_with=self.config.method)
            result = method.train(dataclasses.replace(job, model=model, config=config))
        self.model, self.trainer, self.stopped = result.model, result.trainer, result.stopped
        self._finish_task(held)
        self.config = result.config  # the settings as used: a learning rate left to choose becomes the one chosen
        self.trained = self.trained or result.trainer is not None or not result.stopped
        if config.method == registry.AUTO and task.task == "single_label" and eval_texts and not result.stopped:
            # The winner's one point on the evaluation curve (its candidates trained without the evaluation rows);
            # kept, so that evaluating the same rows next (the run pipeline, evaluate_model) does not score them again.
            from .evaluation import evaluate

            self._last_evaluation = (given_eval, evaluate(self, eval_texts, eval_labels))
            job.progress.evaluate(self._last_evaluation[1].metrics)

    def evaluate_model(self, test_texts: List[str], test_labels: List[Any]) -> Dict[str, float]:
        """Accuracy, macro/weighted precision, recall, F1, the expected calibration error (``ece``, 15 bins; lower
        is better) and loss on the test set: :func:`finetuner.evaluation.evaluate`, the app's and the command
        line's evaluation too.

        The per-class report, confusion matrix and reliability bins of the same evaluation are in ``self.report``.
        """
        return dict(self.evaluation(test_texts, test_labels).metrics)

    def evaluation(self, texts: Sequence[str], labels: Sequence[Any]) -> "Evaluation":
        """:func:`finetuner.evaluation.evaluate` on ``texts``/``labels`` (metrics, report, scored rows). Right after
        :meth:`fine_tune` with ``method="auto"``, the evaluation it made of its evaluation rows is handed back for the
        same rows instead of scoring them a second time."""
        from .evaluation import evaluate

        kept = self._last_evaluation
        if kept is not None and kept[0] == _rows_key(texts, labels):
            self.metrics, self.report = dict(kept[1].metrics), kept[1].report
            return kept[1]
        return evaluate(self, texts, labels)

    def predict(self, texts: List[str]) -> List[int]:
        """Predicted class for each text: the label itself for integer labels, else the class index."""
        return self.classifier.predict(texts)

    # ------------------------------------------------------------------ beyond the seed

    def predict_labels(self, texts: List[str]) -> List[str]:
        """Predicted class name for each text."""
        return self.classifier.predict_labels(texts)

    def predict_proba(self, texts: List[str]) -> List[Dict[str, float]]:
        """Class probabilities for each text, as ``{class name: probability}``."""
        return self.classifier.predict_proba(texts)

    def predict_proba_array(self, texts: Sequence[str]) -> np.ndarray:
        """Probabilities as an array of shape (texts, classes), columns in ``self.label_map`` order."""
        return self.classifier.predict_proba_array(texts)

    def explain(self, text: str, target: Optional[str] = None) -> Explanation:
        """Which words of ``text`` support the predicted class (or ``target``; several labels per text: the most
        probable label; a number: how each word raises or lowers it): :func:`finetuner.explain.explain`."""
        return self.classifier.explain(text, target)

    @property
    def labels(self) -> List[str]:
        return self.classifier.labels

    @property
    def is_main_process(self) -> bool:
        """False in the other processes of a distributed run (``accelerate launch``, ``torchrun``)."""
        if self.trainer is not None:
            return self.trainer.is_world_process_zero()
        return int(os.environ.get("RANK") or 0) == 0

    def save(self, path: Union[str, Path], *, merge: bool = False) -> Path:
        """Write a self-contained model directory: :meth:`TextClassifier.save`. In a distributed run every process
        may call this; only the main process writes."""
        if not self.is_main_process:
            return Path(path).expanduser().resolve()
        return self.classifier.save(path, merge=merge)

    @classmethod
    def load(cls, path: Union[str, Path], backend: str = "auto") -> "LLMFinetuner":
        """Load a directory written by :meth:`save`; it predicts exactly as the saved model did.

        ``backend``: "auto" predicts through ONNX Runtime when the folder holds an export (``onnx/model.onnx``,
        :meth:`export_onnx`), else with PyTorch; "torch" always with PyTorch; "onnx" builds the graph now when the
        folder has none."""
        if backend != "onnx":
            classifier = TextClassifier.load(path, backend=backend)
        else:  # the folder's export when it is usable, else one built now
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                classifier = TextClassifier.load(path, backend="auto")
            if classifier.backend != "onnx":
                attach_onnx(classifier)
        return cls(classifier.base_model, classifier=classifier)

    def export_onnx(self, directory: Union[str, Path], *, quantize: Optional[str] = None,
                    texts: Optional[Sequence[str]] = None) -> OnnxExport:
        """Write the model as a standard ONNX folder (graph, tokenizer, config with the class names), checked
        against this model on ``texts`` (default: built-in sample sentences); ``quantize="int8"`` adds a dynamic
        int8 copy. See :func:`finetuner.onnx_export.export_onnx`."""
        return export_onnx(self.classifier, directory, quantize=quantize, texts=texts)

    def choose_method(self, train_labels: Sequence[Any], config: Optional[TrainConfig] = None) -> MethodChoice:
        """``config.method``, or for "auto" the method the measurements rank first for these training labels
        (:func:`finetuner.method_choice.choose_method`): :meth:`fine_tune` tries it among other candidates on held-out
        rows and may keep another (its ``method_choice`` says which and why)."""
        config = config or self.config
        imbalance = self.imbalance_handling(train_labels, config)
        task = self.task_of(train_labels, config).task
        if task != "single_label":
            return self._choose_task_method(task, len(train_labels), config)
        if config.method != registry.AUTO:
            weighted = f"; {imbalance.reason}" if imbalance.weighted else ""
            return MethodChoice(config.method, f"set in the training settings{weighted}",
                                imbalance=imbalance.as_dict())
        choice = choose_method(Counter(map(str, train_labels)), getattr(self.model.config, "model_type", ""))
        return dataclasses.replace(choice, imbalance=imbalance.as_dict())

    def imbalance_handling(self, train_labels: Sequence[Any],
                           config: Optional[TrainConfig] = None) -> ImbalanceHandling:
        """Whether training weighs the classes of these labels, with which weights, and why
        (:func:`finetuner.imbalance.imbalance_handling` of the class counts and ``config.class_weights``)."""
        config = config or self.config
        task = self.task_of(train_labels, config).task
        if task != "single_label":
            return ImbalanceHandling(None, f"{TASK_NAMES[task]}: no class weights", setting=config.class_weights)
        return imbalance_handling(Counter(str(label) for label in normalize_labels(train_labels)),
                                  config.class_weights)

    def task_of(self, train_labels: Sequence[Any], config: Optional[TrainConfig] = None) -> TaskChoice:
        """What these labels are (``config.task``; "auto": read from the label cells,
        :func:`finetuner.tasks.detect_task`): one class per text, several, or a number."""
        config = config or self.config
        return detect_task(train_labels, config.task)

    # ------------------------------------------------------------------ internals

    def _choose_task_method(self, task: str, num_rows: int, config: TrainConfig) -> MethodChoice:
        if config.method == registry.AUTO:
            choice = choose_task_method(task, num_rows, getattr(self.model.config, "model_type", ""))
        elif config.method in SINGLE_LABEL_ONLY:
            raise ConfigError(f"method={config.method!r} needs one class per text; for {TASK_NAMES[task]} choose "
                              "auto, head, head_finetune, finetune or lora.")
        else:
            choice = MethodChoice(config.method, "set in the training settings")
        if task == "multi_label":
            held = threshold_rows(num_rows)
            tuned = (f"each label's threshold tuned on {held} held-out training rows" if held else
                     f"thresholds 0.5 (under {2 * MIN_THRESHOLD_ROWS} rows: none held out to tune them)")
            choice = dataclasses.replace(choice, reason=f"{choice.reason}; {tuned}")
        return choice

    def _can_fold_scale(self, method_name: str, config: TrainConfig) -> bool:
        """A number per text trains standardised when the trained model's output layer can take the scale back
        afterwards: a sentence classifier's head, or a transformers head with a bias that a LoRA adapter keeps
        whole (not one named in ``lora_target_modules``). Others (a decoder's score layer has no bias) learn the
        raw numbers."""
        if self.label_map.task != "regression":
            return False
        method = registry.get(method_name)
        if method.sentence_classifier:
            return True
        layer = output_layer(self.model)
        if layer is None or layer.bias is None:
            return False
        head = next(name for name, module in self.model.named_modules() if module is layer).rsplit(".", 1)[-1]
        return not (method.adapter and head in (config.lora_target_modules or ()))

    def _finish_task(self, held: Optional[Tuple[List[str], List[Any]]]) -> None:
        """After training: a regression model's output layer put back into the target's units (training saw it
        standardised); a multi-label model's thresholds tuned on the held-out rows."""
        if self._scale is not None:
            if not fold_scale(self.model, self._scale.std, self._scale.mean):
                raise ConfigError("This model has no single output layer to put the predicted numbers back into "
                                  "their units; train it with method finetune or head_finetune.")
            self._scale = None
        if self.label_map.task == "multi_label":
            self.classifier.thresholds = (tune_thresholds(np.asarray(held[1]), self.predict_proba_array(held[0]))
                                          if held else None)


    def _window_length(self, texts: Sequence[str], config: TrainConfig) -> Tuple[int, LongTexts]:
        """The tokens the model reads at once (``config.max_length`` within the model's limit, else chosen from the
        ``texts``) and how many texts are longer (read in windows or cut: ``config.long_texts``)."""
        return plan_windows(self.tokenizer, texts, model_length_limit(self.tokenizer, self.model), config.max_length,
                            config.long_texts == "windows")

    def _recorder(self, listener: Optional[Listener]) -> Listener:
        """The run's history (plots, saved record), then the listener."""
        history = self.history

        def record(event: Any) -> None:
            if isinstance(event, ProgressEvent):
                history.append({k: v for k, v in vars(event).items() if v is not None})
            if listener is not None:
                listener(event)
        return record

    def _meaningful_label_names(self) -> Optional[List[str]]:
        """The class names when they say what the classes are (words, not codes like 0/1 or "LABEL_3")."""
        names = self.label_map.names
        return None if self.label_map.is_int or not names_are_meaningful(names) else list(names)

    def _fit_label_map(self, labels: List[Any], seed: int, task: Optional[TaskChoice] = None) -> None:
        """Make the classifier head match the classes in the data (or check it against ``num_labels``)."""
        task = task or TaskChoice("single_label", "")
        given = len(self.label_map) if self._num_labels_given and task.task != "regression" else None
        label_map = LabelMap.from_labels(labels, num_labels=given, task=task.task, separator=task.separator)
        if given is not None and len(label_map) != given:
            raise DataError(
                f"num_labels={given}, but the data has {len(label_map)} classes "
                f"({', '.join(label_map.names[:10])}{'…' if len(label_map) > 10 else ''}). "
                f"Pass num_labels={len(label_map)} or leave it out to use the data's classes."
            )
        self.classifier.set_labels(label_map, seed)

    def _compute_metrics(self, eval_prediction) -> Dict[str, float]:
        logits = eval_prediction.predictions
        logits = np.asarray(logits[0] if isinstance(logits, tuple) else logits, dtype=np.float64)
        truth = np.asarray(eval_prediction.label_ids)
        if self.label_map.task == "regression":  # in training the targets are standardised
            scale = getattr(self, "_scale", None) or TargetScale(0.0, 1.0)
            self.report = regression_report(scale.restore(truth), scale.restore(logits[:, 0]))
            return self.report["summary"]
        if self.label_map.task == "multi_label":
            self.report = multi_label_report(truth, sigmoid(logits), self.label_map.names)
            return self.report["summary"]
        self.report = full_report(np.asarray(eval_prediction.label_ids), logits.argmax(axis=-1), self.label_map.names,
                                  probabilities=logits_to_probabilities(logits))
        return self.report["summary"]


def _rows_key(texts: Sequence[Any], labels: Sequence[Any]) -> Tuple[Tuple[str, ...], Tuple[str, ...]]:
    """Rows to evaluate, as values to compare: the same texts with the same labels give the same key."""
    return tuple(map(str, texts)), tuple(map(str, labels))


def _check_resumable(checkpoint_dir: Optional[Union[str, Path]]) -> None:
    if checkpoint_dir is not None:
        drop_incomplete(checkpoint_dir)
    if checkpoint_dir is None or last_complete_step(checkpoint_dir) is None:
        raise ConfigError(f"Nothing to resume: no complete checkpoint in {checkpoint_dir}. Start a new run instead.")


def _validated(train_texts: List[str], train_labels: List[Any], eval_texts: Optional[List[str]],
               eval_labels: Optional[List[Any]],
               task: TaskChoice) -> Tuple[List[str], List[Any], List[str], List[Any]]:
    """The training and evaluation rows, checked (no evaluation set: two empty lists)."""
    kinds = {"task": task.task, "separator": task.separator}
    texts, labels = validate_texts_and_labels(train_texts, train_labels, what="training data", **kinds)
    if eval_texts is None or len(eval_texts) == 0:
        return texts, labels, [], []
    return (texts, labels, *validate_texts_and_labels(eval_texts, eval_labels, what="evaluation data",
                                                      min_classes=0 if task.task != "single_label" else 1, **kinds))
