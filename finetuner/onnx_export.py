"""ONNX export of a trained classifier, verified against the model it came from, and the ONNX Runtime path.

:func:`export_onnx` writes a standard ONNX model folder — ``model.onnx`` (tokens in, ``logits`` out: encoder,
pooling and head in one graph), optionally ``model_quantized.onnx`` (dynamic int8), ``config.json`` with the class
names, the tokenizer, ``labels.txt`` and ``onnx_export.json`` (what was checked) — that optimum's
``ORTModelForSequenceClassification`` or a bare ``onnxruntime.InferenceSession`` with ``tokenizers`` can use.
Before anything is written the graph predicts a sample of texts and is compared with the PyTorch model: a graph
whose labels differ is refused, never written. Each task is compared in its own terms
(:func:`~finetuner.metrics.outputs_to_scores`): one label per text, the softmax probabilities and the top class;
several labels per text, each label's sigmoid probability and the labels decided at the model's thresholds; a number
per text, the predicted values (their largest difference, relative to their size).

Inside a saved model folder (``<model>/onnx/``) the graph is what :meth:`TextClassifier.load` picks up to predict
with ONNX Runtime (:data:`ONNX_DIR`).
"""

from __future__ import annotations

import copy
import json
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

import numpy as np

from . import __version__
from .classifier import ONNX_DIR, TextClassifier
from .files import atomic_dir
from .loading import quiet_loading
from .metrics import outputs_to_scores
from .training import lora
from .training.finetune import predict_logits
from .training.windows import MAX_WINDOWS, window_stride
from .training.onnx_graph import (ONNX_FILE, QUANTIZED_FILE, REPORT_FILE, OnnxExportError, OnnxLogits,
                                  export_graph, quantize_int8)
from .training.sentence_classifier import SentenceClassifier

QUANTIZE_CHOICES = ("int8",)
# fp32 graph against PyTorch: same label for every checked text, probabilities within this.
MAX_PROBABILITY_DIFFERENCE = 1e-3
# int8 against fp32: a label may change only where the fp32 model hesitates (its two most probable classes
# closer than this; several labels per text: a label's probability closer than half of this to its threshold);
# anything else means the quantized graph is broken, and it is refused.
INT8_MARGIN = 0.5
# A number per text: the fp32 graph's values may differ from PyTorch's by this share of their size (at least 1), the
# int8 graph's from the fp32 graph's by this share of the spread of the checked texts' values.
MAX_VALUE_DIFFERENCE = 1e-3
INT8_VALUE_SHARE = 0.25

# Checked when the caller gives no texts of its own: short and long, punctuation, digits, other scripts, and one
# longer than any truncation length (so the graph's truncation is checked too).
CHECK_TEXTS = (
    "I loved it.", "Terrible, would not recommend.", "ok", "The service was slow but the food was great!",
    "Shares fell 3% after the quarterly report on Tuesday.", "What time does the last train leave?",
    "The team won the championship in overtime.", "A new study links sleep to memory.", "¿Dónde está la estación?",
    "Ce film est magnifique.", "これはペンです。", "!!!", "12345", "meh " * 3,
    " ".join(["This sentence goes on and on to be longer than any truncation length would allow."] * 60),
)


@dataclass
class ExportCheck:
    """What the export compared: texts, whether every label matched, the largest probability difference.

    Several labels per text: a text's labels match when the same labels reach their thresholds. A number per text
    (``task == "regression"``): ``max_probability_difference`` is the largest difference of the predicted values,
    and a text "matches" when its values are within the tolerance (:data:`MAX_VALUE_DIFFERENCE` of their size)."""

    texts: int
    labels_identical: bool
    agreement: float
    max_probability_difference: float
    against: str = "pytorch"
    mismatched: List[int] = field(default_factory=list)  # positions of the texts whose labels differ
    task: str = "single_label"

    def line(self) -> str:
        same = "identical" if self.labels_identical else f"{self.agreement:.1%} identical"
        if self.task == "regression":
            return (f"{self.texts} texts: predicted values {'the same' if self.labels_identical else same} as "
                    f"{self.against}, max |Δ| {self.max_probability_difference:.2e}")
        return f"{self.texts} texts: labels {same} to {self.against}, max |Δp| {self.max_probability_difference:.2e}"


@dataclass
class OnnxExport:
    """The written folder, its graph files and the checks they passed."""

    directory: Path
    files: List[str]
    inputs: List[str]
    max_length: int
    fp32: ExportCheck
    int8: Optional[ExportCheck] = None
    model_id: Optional[str] = None  # finetuner.json's model_id of the saved weights it was made from

    def as_dict(self) -> Dict[str, Any]:
        """What onnx_export.json keeps (no local path: the folder is made to be moved)."""
        data = asdict(self)
        del data["directory"]
        return data


def export_onnx(classifier: TextClassifier, directory: Union[str, Path], *, quantize: Optional[str] = None,
                texts: Optional[Sequence[str]] = None) -> OnnxExport:
    """Write ``classifier`` as an ONNX model folder at ``directory`` (a new folder, or an earlier export there,
    which is replaced whole, atomically), verified on ``texts`` (default :data:`CHECK_TEXTS`) against the PyTorch
    model; ``quantize="int8"`` adds ``model_quantized.onnx``. Raises :class:`OnnxExportError` (and writes nothing)
    when a check fails."""
    if quantize is not None and quantize not in QUANTIZE_CHOICES:
        raise OnnxExportError(f"Unknown quantization {quantize!r}: choose one of {', '.join(QUANTIZE_CHOICES)}.")
    target = Path(directory).expanduser().resolve()
    _check_target(target, classifier.folder)
    if classifier.folder is not None and target.parent == classifier.folder:  # the folder's own onnx/
        classifier.ensure_model_id(classifier.folder)
    texts = list(texts) if texts else list(CHECK_TEXTS)
    model = _exportable(classifier.model)
    max_length = classifier.length_limit()
    # Checked against the copy the graph is made of (fp32, CPU): a bf16 or GPU model differs from it by rounding.
    expected = outputs_to_scores(predict_logits(model, classifier.tokenizer, texts, max_length,
                                                classifier.config.eval_batch_size, classifier.windows), classifier.task)
    limits = _limits(classifier)
    with atomic_dir(target) as staging:
        inputs = export_graph(model, classifier.tokenizer, staging / ONNX_FILE)
        reference = _probabilities(staging / ONNX_FILE, classifier, texts, max_length)
        fp32 = _compare(reference, expected, "pytorch", classifier.task, limits)
        if _disagrees(fp32, expected, limits, reference):
            raise OnnxExportError(f"The ONNX graph does not predict what the model does ({fp32.line()}); nothing "
                                  "was written.")
        files, int8 = [ONNX_FILE], None
        if quantize == "int8":
            quantize_int8(staging / ONNX_FILE, staging / QUANTIZED_FILE)
            quantized = _probabilities(staging / QUANTIZED_FILE, classifier, texts, max_length)
            int8 = _compare(quantized, reference, "the fp32 graph", classifier.task, limits)
            _check_int8(quantized, reference, int8, limits)
            files.append(QUANTIZED_FILE)
        _write_companions(staging, classifier, model, inputs)
        result = OnnxExport(target, files, inputs, max_length, fp32, int8, classifier.model_id)
        report = {**result.as_dict(), "task": classifier.task, "finetuner_version": __version__,
                  "base_model": classifier.base_model}
        if classifier.task == "multi_label":
            report["thresholds"] = dict(zip(map(str, classifier.label_map.names), map(float, limits)))
        (staging / REPORT_FILE).write_text(json.dumps(report, indent=2), encoding="utf-8")
    return result


def attach_onnx(classifier: TextClassifier) -> TextClassifier:
    """Build the ONNX graph on demand and make ``classifier`` predict with ONNX Runtime (the session holds the
    graph in memory; its temporary folder is gone when this returns)."""
    with tempfile.TemporaryDirectory(prefix="finetuner-onnx-") as temporary:
        export_onnx(classifier, Path(temporary) / "onnx")
        classifier.use_onnx(Path(temporary) / "onnx" / ONNX_FILE)
    return classifier


def _check_target(target: Path, source: Optional[Path]) -> None:
    """Refuse to replace a folder that is not an earlier export, or one that holds the model (saved in ``source``)."""
    if source is not None and (target == source or target in source.parents):
        raise OnnxExportError(f"{target} holds the model being exported: choose a new folder for the export "
                              f"(or leave --output out: it then goes into {source / ONNX_DIR}).")
    if target.exists() and (not target.is_dir() or (any(target.iterdir()) and not (target / REPORT_FILE).is_file())):
        raise OnnxExportError(f"{target} already exists and is not an earlier ONNX export: choose a new folder, "
                              "or delete it first.")


def _exportable(model: Any) -> Any:
    """A copy of the model as the graph should hold it: on the CPU in fp32, a LoRA adapter merged in. A copy, so
    that predictions from other threads (the app, the server) never meet a model being traced."""
    import torch

    model = lora.merged_copy(model) if lora.is_peft_model(model) else copy.deepcopy(model)
    return model.to("cpu", dtype=torch.float32)


def _limits(classifier: TextClassifier) -> Optional[np.ndarray]:
    """Several labels per text: each label's decision threshold (what the labels are decided at); else None."""
    return np.asarray(classifier.label_thresholds(), dtype=float) if classifier.task == "multi_label" else None


def _value_tolerance(expected: np.ndarray) -> float:
    """A number per text: how far the graph's values may be from the model's (relative to their size, at least 1)."""
    return MAX_VALUE_DIFFERENCE * max(1.0, float(np.abs(expected).max(initial=0.0)))


def _disagrees(check: ExportCheck, expected: np.ndarray, limits: Optional[np.ndarray] = None,
               got: Optional[np.ndarray] = None) -> bool:
    """Probabilities further apart than the tolerance, or a label that differs where the model does not hesitate
    (two classes within twice the tolerance may swap places through rounding alone; several labels per text: a
    probability within twice the tolerance of its threshold). A number per text: values further apart than
    :func:`_value_tolerance`."""
    if check.task == "regression":
        return check.max_probability_difference > _value_tolerance(expected)
    if check.max_probability_difference > MAX_PROBABILITY_DIFFERENCE:
        return True
    if check.labels_identical:
        return False
    if limits is not None and got is not None:  # several labels per text: a decision away from its threshold
        clear = np.abs(expected - limits[None, :]) > 2 * MAX_PROBABILITY_DIFFERENCE
        flipped = (got >= limits[None, :]) != (expected >= limits[None, :])
        return bool((flipped & clear).any())
    top_two = np.sort(expected, axis=1)[:, -2:]
    return bool(((top_two[:, 1] - top_two[:, 0]) > 2 * MAX_PROBABILITY_DIFFERENCE)[check.mismatched].any())


def _probabilities(path: Path, classifier: TextClassifier, texts: List[str], max_length: int) -> np.ndarray:
    return outputs_to_scores(OnnxLogits(path)(classifier.tokenizer, texts, max_length,
                                              classifier.config.eval_batch_size, classifier.windows), classifier.task)


def _compare(got: np.ndarray, expected: np.ndarray, against: str, task: str = "single_label",
             limits: Optional[np.ndarray] = None) -> ExportCheck:
    """How ``got`` (a graph's outputs) matches ``expected``: the top class (one label per text), the labels at
    their thresholds (several), the values within :func:`_value_tolerance` (a number)."""
    difference = np.abs(got - expected)
    if task == "regression":
        same = difference.max(axis=1) <= _value_tolerance(expected)
    elif task == "multi_label":
        limits = np.full(expected.shape[1], 0.5) if limits is None else limits
        same = ((got >= limits[None, :]) == (expected >= limits[None, :])).all(axis=1)
    else:
        same = got.argmax(axis=1) == expected.argmax(axis=1)
    return ExportCheck(texts=len(got), labels_identical=bool(same.all()), agreement=float(same.mean()),
                       max_probability_difference=float(difference.max()), against=against,
                       mismatched=[int(i) for i in np.flatnonzero(~same)], task=task)


def _check_int8(quantized: np.ndarray, reference: np.ndarray, check: ExportCheck,
                limits: Optional[np.ndarray] = None) -> None:
    """Refuse an int8 graph that changes a label the fp32 graph was sure of (a number per text: that moves a value
    by more than :data:`INT8_VALUE_SHARE` of the spread of the checked texts' values)."""
    if check.task == "regression":
        spread = max(float(np.ptp(reference)), _value_tolerance(reference))
        if check.max_probability_difference > INT8_VALUE_SHARE * spread:
            raise OnnxExportError(f"The int8 graph moves a predicted value by more than {INT8_VALUE_SHARE:.0%} of "
                                  f"the values' spread ({check.line()}); nothing was written. Export without "
                                  "--quantize.")
        return
    if check.task == "multi_label":
        limits = np.full(reference.shape[1], 0.5) if limits is None else limits
        sure = np.abs(reference - limits[None, :]) >= INT8_MARGIN / 2
        flipped = (((quantized >= limits[None, :]) != (reference >= limits[None, :])) & sure).any(axis=1)
        margin = f"{INT8_MARGIN / 2} or more from its threshold"
    else:
        top_two = np.sort(reference, axis=1)[:, -2:]
        sure = (top_two[:, 1] - top_two[:, 0]) >= INT8_MARGIN
        flipped = (quantized.argmax(axis=1) != reference.argmax(axis=1)) & sure
        margin = f"a margin of {INT8_MARGIN} or more"
    if flipped.any():
        raise OnnxExportError(f"The int8 graph changes {int(flipped.sum())} label(s) the fp32 graph gives with "
                              f"{margin} ({check.line()}); nothing was written. Export without --quantize.")


def _write_companions(staging: Path, classifier: TextClassifier, model: Any, inputs: List[str]) -> None:
    """config.json (with the class names), the tokenizer, labels.txt and a README beside the graph."""
    config = copy.deepcopy(model.encoder.config if isinstance(model, SentenceClassifier) else model.config)
    names = [str(name) for name in classifier.label_map.names]
    config.num_labels = len(names)
    config.id2label = dict(enumerate(names))
    config.label2id = {name: i for i, name in enumerate(names)}
    config.problem_type = classifier.label_map.problem_type  # how optimum and transformers read the logits
    config.architectures = [_architecture(config)]
    tokenizer = copy.deepcopy(classifier.tokenizer)
    tokenizer.model_max_length = classifier.length_limit()  # so that truncation=True cuts where training did
    with quiet_loading():
        config.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
    _portable_tokenizer_class(staging / "tokenizer_config.json")
    (staging / "labels.txt").write_text("\n".join(names) + "\n", encoding="utf-8")
    (staging / "README.md").write_text(_usage(classifier, inputs), encoding="utf-8")


def _usage(classifier: TextClassifier, inputs: List[str]) -> str:
    """How to run the folder without finetuner (its README.md)."""
    feed = ", ".join(f'"{name}": encoded["{name}"]' for name in inputs)
    return "\n".join([
        "---", "library_name: onnx", "pipeline_tag: text-classification", "tags:", "- finetuner", "- onnx", "---", "",
        f"# ONNX export of a finetuner text classifier (base model `{classifier.base_model}`)", "",
        f"{_outputs_line(classifier)} (`labels.txt`, `config.json`).",
        f"`model.onnx` takes {', '.join(f'`{name}`' for name in inputs)} (int64, batch × tokens) and returns "
        f"{_logits_line(classifier)}. Cut texts at {classifier.length_limit()} tokens, as in training"
        + (" (finetuner reads a longer text in overlapping windows of that many tokens, up to "
           f"{MAX_WINDOWS}, and averages their logits: tokenize with `return_overflowing_tokens=True, "
           f"stride={window_stride(classifier.tokenizer, classifier.length_limit())}` to do the same). "
           if classifier.windows else ". ") +
        "`model_quantized.onnx`, where present, is a dynamic int8 copy (`onnx_export.json` says how both were "
        "checked against the PyTorch model).", "",
        "```python", "import numpy as np, onnxruntime as ort", "from transformers import AutoTokenizer", "",
        'tokenizer = AutoTokenizer.from_pretrained("path/to/this/folder")',
        'session = ort.InferenceSession("path/to/this/folder/model.onnx")',
        f'encoded = tokenizer(["an example sentence"], padding=True, truncation=True, '
        f'max_length={classifier.length_limit()}, return_tensors="np")',
        f'logits = session.run(["logits"], {{{feed}}})[0]', "```", "",
        "With optimum: `ORTModelForSequenceClassification.from_pretrained(\"path/to/this/folder\")`; with finetuner: "
        "put this folder as `onnx/` inside the saved model folder and `LLMFinetuner.load` predicts through it.", ""])


def _outputs_line(classifier: TextClassifier) -> str:
    names = ", ".join(f"`{name}`" for name in classifier.label_map.names)
    if classifier.task == "regression":
        return f"Predicts a number per text: {names}"
    if classifier.task == "multi_label":
        return f"Labels (any number of them per text): {names}"
    return f"Classes: {names}"


def _logits_line(classifier: TextClassifier) -> str:
    """What the graph's output means for the classifier's task (the README's words)."""
    if classifier.task == "regression":
        return "`logits` (batch × 1): the predicted value itself, in the target's units"
    if classifier.task == "multi_label":
        limits = ", ".join(f"`{name}` {limit:.3g}" for name, limit in zip(classifier.label_map.names,
                                                                           classifier.label_thresholds()))
        return ("`logits` (batch × labels; the sigmoid of each gives that label's probability, and a text has the "
                f"labels whose probability reaches their threshold: {limits}; also in `onnx_export.json`)")
    return ("`logits` (batch × classes; softmax gives the probabilities, calibrated when finetuner fitted a "
            "temperature)")


def _portable_tokenizer_class(path: Path) -> None:
    """transformers 5 names a tokenizer without a class of its own ``TokenizersBackend``, a name that transformers 4
    (optimum's) and transformers.js do not know; ``PreTrainedTokenizerFast`` is the same class in both."""
    settings = json.loads(path.read_text(encoding="utf-8"))
    if settings.get("tokenizer_class") == "TokenizersBackend":
        settings["tokenizer_class"] = "PreTrainedTokenizerFast"
        path.write_text(json.dumps(settings, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _architecture(config: Any) -> str:
    """The sequence-classification class transformers names for this config (metadata for optimum and the Hub)."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES

    return MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES.get(config.model_type, "PreTrainedModel")
