"""The measured rule behind ``method="auto"``: which method leads for these examples per class, classes and rows.

A pure decision (data and model type in, :class:`MethodChoice` out) over the registered methods
(:mod:`finetuner.methods`). The rule: a decoder LLM trains a LoRA adapter; up to :data:`FEWSHOT_MAX_ROWS` rows with
at most :data:`FEWSHOT_MAX_CLASSES` classes and fewer than :data:`FEWSHOT_BELOW_EXAMPLES_PER_CLASS` examples per
class, few-shot tuning; everything else (more rows, more classes) a head that full fine-tuning starts from. ``auto``
itself tries candidates on held-out training rows (:mod:`finetuner.selection`, :mod:`finetuner.autoselect`); this
rule ranks them, and decides alone when there are too few rows to hold any out.

Measured: bench/results/method_choice.md#how-auto-chooses.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple

from transformers.models.auto.modeling_auto import MODEL_FOR_MASKED_LM_MAPPING_NAMES

from .methods import registry

# Contrastive tuning ("fewshot") for at most this many rows and classes, below this many examples per class
# (measured: bench/results/method_choice.md#the-rule; its pairs reach their cap at 400 rows, so from there its
# time grows only by the head's embedding pass). Anything else gets a head that full fine-tuning starts from.
FEWSHOT_MAX_ROWS = 1000
FEWSHOT_MAX_CLASSES = 6
FEWSHOT_BELOW_EXAMPLES_PER_CLASS = 500
# Label names that say nothing about the class: numbers, "LABEL_3", single letters.
_MEANINGLESS_NAME = re.compile(r"^\s*(label[\s_-]*)?(\d+|[a-z])\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class MethodChoice:
    """The method that trains (or trained) and a sentence saying why; for ``auto``'s selection also the leaderboard
    of the candidates tried (:meth:`finetuner.selection.CandidateResult.as_dict`), the rows held out to score them,
    the temperature folded into the output layer (None: not calibrated) and whether the winner was trained again
    on every row. ``imbalance`` is what training did about the class counts
    (:meth:`finetuner.imbalance.ImbalanceHandling.as_dict`: class weights or none, the metric chosen by, why)."""

    method: str
    reason: str
    candidates: Tuple[Dict[str, Any], ...] = ()
    held_out_rows: int = 0
    temperature: Optional[float] = None
    refit: bool = False
    imbalance: Optional[Dict[str, Any]] = None

    def as_dict(self) -> Dict[str, Any]:
        values: Dict[str, Any] = {"method": self.method, "reason": self.reason}
        if self.candidates:
            values.update(candidates=[dict(c) for c in self.candidates], held_out_rows=self.held_out_rows,
                          temperature=self.temperature, refit=self.refit)
        if self.imbalance:
            values["imbalance"] = dict(self.imbalance)
        return values

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "MethodChoice":
        imbalance = values.get("imbalance")
        return cls(str(values["method"]), str(values["reason"]), tuple(values.get("candidates") or ()),
                   int(values.get("held_out_rows") or 0), values.get("temperature"), bool(values.get("refit")),
                   dict(imbalance) if isinstance(imbalance, Mapping) else None)


def is_encoder(model_type: str) -> bool:
    """Whether the architecture is a bidirectional encoder (BERT-like: it has a masked-LM head in transformers)."""
    return model_type in MODEL_FOR_MASKED_LM_MAPPING_NAMES


def names_are_meaningful(label_names: Sequence[str]) -> bool:
    """Whether every class name is a word or phrase (e.g. "positive", "book_flight"), not a code like "1"."""
    return all(not _MEANINGLESS_NAME.match(str(name)) for name in label_names)


def choose_method(class_counts: Mapping[str, int], model_type: str) -> MethodChoice:
    """The method ``auto`` trains with, for data with ``class_counts`` examples per class and this model."""
    counts = sorted(class_counts.values())
    rows, classes = sum(counts), len(counts)
    if not is_encoder(model_type):
        return _choice("lora", f"{model_type or 'this model'} is a decoder LLM: a LoRA adapter trains a small "
                               "fraction of its weights, faster and with less memory than full fine-tuning.")
    typical = counts[len(counts) // 2]
    summary = f"{typical} examples per class (median over {classes} classes, {rows} rows)"
    if rows <= FEWSHOT_MAX_ROWS and classes <= FEWSHOT_MAX_CLASSES and typical < FEWSHOT_BELOW_EXAMPLES_PER_CLASS:
        return _choice("fewshot", f"{summary}: at this size, contrastive tuning of the encoder on sentence "
                                  "pairs (SetFit), then a classifier on its embeddings, beats full "
                                  "fine-tuning and a head on frozen embeddings (seconds to ten minutes on "
                                  "a CPU).")
    if rows <= FEWSHOT_MAX_ROWS and classes > FEWSHOT_MAX_CLASSES:
        why = (f"with more than {FEWSHOT_MAX_CLASSES} classes this beats contrastive tuning, in a tenth of "
               "the time")
    elif rows > FEWSHOT_MAX_ROWS:
        why = (f"as accurate as plain fine-tuning or more at every size measured; with more than "
               f"{FEWSHOT_MAX_ROWS} rows contrastive tuning is not measured to lead, and it trailed on the whole AG "
               "News file")
    else:
        why = "as accurate as plain fine-tuning or more at every size measured"
    return _choice("head_finetune", f"{summary}: every weight fine-tuned, starting from a head fitted on "
                                    f"sentence embeddings ({why}).")


def _choice(method: str, reason: str) -> MethodChoice:
    return MethodChoice(registry.get(method).name, reason)  # a ConfigError if the method is not registered


# Several labels per text or a number per text: up to this many training rows the head on frozen embeddings alone
# (end-to-end training has too little to learn from), from there every weight fine-tuned from that head (measured:
# bench/results/tasks.md).
TASK_HEAD_ONLY_BELOW_ROWS = 200
# Methods that need one class per text (contrastive pairs are "same class" / "different class").
SINGLE_LABEL_ONLY = ("fewshot",)


def choose_task_method(task: str, num_rows: int, model_type: str) -> MethodChoice:
    """``auto``'s method for several labels per text (``multi_label``) or a number per text (``regression``): a
    LoRA adapter on a decoder; the embedding head below :data:`TASK_HEAD_ONLY_BELOW_ROWS` rows; else the head, then
    full fine-tuning."""
    what = "several labels per text" if task == "multi_label" else "a number per text"
    if model_type and not is_encoder(model_type):
        return _choice("lora", f"{what}, a decoder model ({model_type}): a LoRA adapter")
    if num_rows < TASK_HEAD_ONLY_BELOW_ROWS:
        return _choice("head", f"{what}, {num_rows} training rows (under {TASK_HEAD_ONLY_BELOW_ROWS}): a head on "
                               "frozen sentence embeddings")
    return _choice("head_finetune", f"{what}, {num_rows} training rows: every weight fine-tuned, starting from a "
                                    "head fitted on sentence embeddings")
