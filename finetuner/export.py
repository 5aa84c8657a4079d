"""Export a completed run: a zip of the model with a model card, or a push to the Hugging Face Hub.

The Hub token is used for the upload calls only: it is never logged, stored, or put into a message.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Iterator, Optional, Union

from . import methods
from .classifier import ONNX_DIR
from .errors import FinetunerError
from .files import atomic_file
from .evaluation import metric_name
from .runs import RunRecord, RunStore

CARD_FILE = "README.md"
LABELS_FILE = "labels.txt"
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]{0,95}/[A-Za-z0-9][\w.-]{0,95}$")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?$")


class ExportError(FinetunerError):
    """The model cannot be exported or pushed as asked."""


# What a saved model folder holds (saved_kind), which decides how the card says to load it.
CLASSIFIER, SENTENCE, ADAPTER = "classifier", "sentence", "adapter"
ONNX_COMMAND = "python -m finetuner export --model path/to/this/folder --format onnx --output DIR"


def saved_kind(model_dir: Union[str, Path]) -> str:
    """What the saved model folder ``model_dir`` holds: ``SENTENCE`` (a sentence classifier: an encoder and a head on
    its mean-pooled embeddings), ``ADAPTER`` (a LoRA adapter and head, without the base model) or ``CLASSIFIER`` (a
    whole transformers sequence classifier, which transformers' pipeline loads as it is)."""
    from .training.sentence_classifier import is_sentence_classifier_dir

    if is_sentence_classifier_dir(model_dir):
        return SENTENCE
    return ADAPTER if (Path(model_dir) / "adapter_config.json").is_file() else CLASSIFIER


def _method_kind(method_name: Optional[str]) -> str:
    """What a run of ``method_name`` saves, for a card written without the model folder."""
    method = methods.find(method_name)
    if method and method.sentence_classifier:
        return SENTENCE
    return ADAPTER if method and method.adapter else CLASSIFIER


def model_card(record: RunRecord, model_dir: Optional[Union[str, Path]] = None) -> str:
    """A Hub-style README.md: what the model is, how to load it, the data it saw, its settings and its scores.

    How to load it follows what ``model_dir`` holds (:func:`saved_kind`); without it, what the run's method saves."""
    data, config = record.data or {}, record.config or {}
    base = record.base_model
    kind = saved_kind(model_dir) if model_dir is not None else _method_kind(config.get("method"))
    lines = _front_matter(kind, base) + [
        "", f"# Text classifier fine-tuned with finetuner (run {record.id})", "",
        _purpose(base, record.labels, config.get("task")), "",
        *_method_note(kind, config.get("method"), base),
        "## Training data", "",
        f"- Source: {data.get('source') or 'table edited in the app'}",
        f"- Rows: {data.get('rows', '?')} ({data.get('train_rows', '?')} for training, "
        f"{data.get('eval_rows', '?')} for evaluation, "
        + ("a separate evaluation file)" if data.get("eval_source") == "file"
           else f"a stratified {float(data.get('eval_fraction') or 0):.0%} split)"),
        f"- Columns: text `{data.get('text_column', '?')}`, label `{data.get('label_column', '?')}`",
        "- Class balance: " + ", ".join(f"{k}: {v}" for k, v in (data.get("class_counts") or {}).items()),
        "", "## Training settings", "", f"Preset: {record.preset}", "", "| setting | value |", "|---|---|",
        *[f"| {key} | {value} |" for key, value in config.items()],
        "", "## Evaluation", "",
    ]
    if record.metrics:
        lines += ["| metric | value |", "|---|---|",
                  *[f"| {metric_name(k)} | {v:.4f} |" for k, v in record.metrics.items()]]
    else:
        lines.append("No evaluation data was held out.")
    per_class = (record.report or {}).get("per_class") or {}
    if per_class:
        lines += ["", "| class | precision | recall | F1 | support |", "|---|---|---|---|---|",
                  *[f"| {name} | {v['precision']:.3f} | {v['recall']:.3f} | {v['f1-score']:.3f} | {int(v['support'])} |"
                    for name, v in per_class.items()]]
    lines += [
        "", "## Use", "", "```python", "from finetuner import LLMFinetuner", "",
        'model = LLMFinetuner.load("path/to/this/folder")',
        'model.predict_proba(["an example sentence"])', "```", "",
        *_use_note(kind, config.get("max_length"), config.get("task")),
        "## Limitations", "",
        "Scores come from the held-out rows above; texts unlike the training data may be classified poorly.", "",
    ]
    return "\n".join(lines)


def _purpose(base: str, labels: list, task: Optional[str]) -> str:
    names = ", ".join(f"`{label}`" for label in labels)
    if task == "regression":
        return f"Fine-tuned from `{base}` to predict a number per text ({names})."
    if task == "multi_label":
        return f"Fine-tuned from `{base}` to give each text any of {len(labels)} labels: {names}."
    return f"Fine-tuned from `{base}` to sort texts into {len(labels)} classes: {names}."


def _front_matter(kind: str, base: str) -> list:
    """The card's Hub metadata: the library that loads the folder, and no inference widget where transformers'
    pipeline refuses it."""
    library = {CLASSIFIER: "transformers", SENTENCE: "finetuner", ADAPTER: "peft"}[kind]
    front = ["---", f"library_name: {library}", "pipeline_tag: text-classification",
             *([] if kind == CLASSIFIER else ["inference: false"]),
             "tags:", "- finetuner", "- text-classification", *(["- lora"] if kind == ADAPTER else [])]
    if _HUB_ID.match(base) and not Path(base).expanduser().exists():  # a Hub id, not a local directory
        front.append(f"base_model: {base}")
    return front + ["---"]


def _method_note(kind: str, method_name: Optional[str], base: str) -> list:
    """The card's lines on how the model was trained and what the folder holds."""
    method = methods.find(method_name)
    if kind == ADAPTER:
        return _adapter_note(base)
    if kind == SENTENCE:
        trained = method.display_name if method else "sentence classifier"
        return [f"Method: {trained}. The model is a linear head on the encoder's mean-pooled, unit-length sentence "
                "embeddings: the encoder is in `encoder/`, the head in `sentence_head.safetensors`.", ""]
    if method and method.adapter:
        return [f"Method: {method.display_name}, merged into the base model's weights (the folder holds the whole "
                "model).", ""]
    return ["Method: full fine-tuning (every weight trained; the folder holds the whole model).", ""]


def _use_note(kind: str, max_length: Optional[int], task: Optional[str] = None) -> list:
    """The card's lines on loading the folder without finetuner: transformers' pipeline where it gives finetuner's
    predictions, else why it refuses the folder and what to use instead."""
    if kind == CLASSIFIER:
        length = f", max_length={max_length}" if isinstance(max_length, int) else ""
        outputs = {"multi_label": ["With `top_k=None` the pipeline gives every label's own probability (a sigmoid); "
                                   "finetuner's decision threshold per label is `thresholds` in `finetuner.json`.",
                                   ""],
                   "regression": ["The pipeline's `score` is the predicted number (in the target's units).", ""]}
        top = ", top_k=None" if task == "multi_label" else ""
        return ["or with transformers alone (the same labels as finetuner for a text that fits in max_length tokens; "
                "a longer one is cut there, where finetuner reads it in overlapping windows and averages them):", "",
                "```python",
                "from transformers import pipeline", "",
                f'classifier = pipeline("text-classification", model="path/to/this/folder"{top})',
                f'classifier(["an example sentence"], truncation=True{length})', "```", "",
                *outputs.get(task or "", [])]
    if kind == ADAPTER:
        return ["(This needs the base model named above.) transformers' `pipeline` refuses this folder on purpose "
                "(its `config.json` has the model type `finetuner-lora-adapter`): the adapter loaded onto the base "
                "model alone would name the classes `LABEL_0`, `LABEL_1`, ... instead of this model's. For a "
                "folder that `pipeline` loads, save the whole model with the adapter merged in: "
                '`LLMFinetuner.load("path/to/this/folder").save("merged", merge=True)`.', ""]
    return ["transformers' `pipeline` and `AutoModelForSequenceClassification` refuse this folder on purpose (its "
            "`config.json` has the model type `finetuner-sentence-classifier`): no transformers classifier puts a "
            "head on mean-pooled, unit-length embeddings, and the encoder under a new head would predict at random.",
            "",
            "`encoder/` is a standard transformers model with its tokenizer, for the sentence embeddings the head "
            "classifies: "
            '`AutoModel.from_pretrained("path/to/this/folder/encoder")` (mean-pool its token states over the real '
            'tokens, then scale to unit length), or `SentenceTransformer("path/to/this/folder/encoder")` with '
            "`encode(texts, normalize_embeddings=True)`.", "",
            f"Without finetuner: `{ONNX_COMMAND}` writes a standard ONNX model folder for onnxruntime or optimum.",
            ""]


def _adapter_note(base: str) -> list:
    """The model card's lines on a LoRA run: the folder holds the adapter only, and which base model it needs."""
    return [f"Method: LoRA. **This folder holds only the LoRA adapter and the classification head**, not the base "
            f"model: loading it needs the base model `{base}`, which finetuner loads as it did for training "
            "(from the Hub, the local folder or file of that name, or the offline LLM pulled with "
            f"`python -m finetuner models pull`). With peft alone: load `{base}` with "
            "`AutoModelForSequenceClassification` and this folder's labels (`id2label` and `label2id` in its "
            "`config.json`), then `PeftModel.from_pretrained(base, \"path/to/this/folder\")`; "
            "`AutoPeftModelForSequenceClassification` would load the base model without them.", ""]


def export_zip(store: RunStore, run_id: str, directory: Optional[Union[str, Path]] = None, *,
               owner: Optional[str] = None) -> Path:
    """``finetuner-<run id>.zip`` with the model files, ``labels.txt`` and the model card, in one folder.

    With ``owner``, only a run of that owner is exported (see :meth:`RunStore.get`)."""
    record = store.get(run_id, owner)
    directory = Path(directory) if directory is not None else Path(tempfile.mkdtemp(prefix="finetuner-export-"))
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / f"finetuner-{run_id}.zip"
    folder = f"finetuner-{run_id}"
    with _published(store.model_dir(run_id, owner)) as model_dir, atomic_file(target) as staging, \
            zipfile.ZipFile(staging, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(model_dir.rglob("*")):
            # An imported model folder may hold an older card and labels file: both are written anew below.
            if path.is_file() and path.relative_to(model_dir).as_posix() not in (CARD_FILE, LABELS_FILE):
                info = _member(zipfile.ZipInfo.from_file(path, f"{folder}/{path.relative_to(model_dir).as_posix()}"))
                with path.open("rb") as source, archive.open(info, "w") as member:
                    shutil.copyfileobj(source, member, 1 << 20)
        now = time.localtime()[:6]
        archive.writestr(_member(zipfile.ZipInfo(f"{folder}/{CARD_FILE}", now)), model_card(record, model_dir))
        archive.writestr(_member(zipfile.ZipInfo(f"{folder}/{LABELS_FILE}", now)),
                         "\n".join(map(str, record.labels)) + "\n")
    return target


@contextlib.contextmanager
def _published(model_dir: Path) -> Iterator[Path]:
    """The folder to publish: ``model_dir``, or, for a sentence classifier or adapter saved before format 2 (whose
    folder transformers' pipeline would load with a random head), a copy re-saved in the current format."""
    from .classifier import FORMAT_VERSION, METADATA_FILE, TextClassifier

    version = json.loads((model_dir / METADATA_FILE).read_text(encoding="utf-8")).get("format_version", 1)
    if version >= FORMAT_VERSION or saved_kind(model_dir) == CLASSIFIER:
        yield model_dir
        return
    with tempfile.TemporaryDirectory(prefix="finetuner-upgrade-") as staging:
        try:
            upgraded = TextClassifier.load(model_dir, backend="torch").save(Path(staging) / "model")
        except Exception:  # e.g. an old adapter whose base model cannot be loaded here: publish it as it was
            yield model_dir
            return
        if (model_dir / ONNX_DIR).is_dir():
            shutil.copytree(model_dir / ONNX_DIR, upgraded / ONNX_DIR)
        yield upgraded


def _member(info: zipfile.ZipInfo) -> zipfile.ZipInfo:
    """A zip member readable by everyone once extracted (mode 0644), compressed; saved files can be 0600."""
    info.external_attr = (0o100644 << 16)
    info.compress_type = zipfile.ZIP_DEFLATED
    return info


def push_to_hub(store: RunStore, run_id: str, repo_id: str, token: str, *, private: bool = True,
                owner: Optional[str] = None) -> str:
    """Upload a completed run's model and card to ``repo_id`` on the Hub; returns the repository URL."""
    repo_id, token = (repo_id or "").strip(), (token or "").strip()
    if not _REPO_ID.match(repo_id):
        raise ExportError(f"{repo_id!r} is not a Hub repository id: use the form 'your-name/model-name'.")
    if not token:
        raise ExportError("Give a Hugging Face access token with write permission to push to the Hub.")
    stored = store.model_dir(run_id, owner)
    record = store.get(run_id, owner)
    from .models import hub_reachable

    if not hub_reachable():
        raise ExportError("The Hugging Face Hub cannot be reached from here (offline). Download the zip "
                          "instead and upload it from a machine with network access.")
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    with tempfile.TemporaryDirectory(prefix="finetuner-push-") as staging, _published(stored) as model_dir:
        upload = Path(staging) / "model"
        shutil.copytree(model_dir, upload)
        (upload / CARD_FILE).write_text(model_card(record, model_dir), encoding="utf-8")
        (upload / LABELS_FILE).write_text("\n".join(map(str, record.labels)) + "\n", encoding="utf-8")
        try:
            url = api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
            api.upload_folder(folder_path=str(upload), repo_id=repo_id, repo_type="model",
                              commit_message=f"Upload finetuner run {run_id}")
        except Exception as exc:  # network, permission or quota problems: report them without the token
            raise ExportError(f"Pushing to {repo_id} failed: {_redact(str(exc), token)}") from None
    return str(url)


def _redact(text: str, secret: str) -> str:
    return text.replace(secret, "***").splitlines()[0][:300] if text else "unknown error"

