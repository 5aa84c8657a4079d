"""``method="auto"``: pick the training method from the examples per class, the number of classes and the rows.

Measured with the bundled all-MiniLM-L6-v2 (one seed unless said; SST-2 test 872 rows, AG News 800 test rows):
- 8 per class, SST-2 (3 seeds): head 0.658 (a random head fine-tuned end to end with the encoder: 0.538, seed 0);
  CLINC150 at 10 per class (3 seeds, full test set): head 0.910, logistic regression without the name prior 0.908.
- 32 per class: SST-2 head 0.70, fine-tuning 0.576; AG News head 0.80, fine-tuning 0.83, head then fine-tuning 0.83.
- 64 per class: SST-2 head 0.737, fine-tuning 0.646, head then fine-tuning 0.744; AG News fine-tuning 0.848,
  head 0.825. 128 per class, SST-2: fine-tuning 0.721 (head 0.737 already at 64).
- 250 per class, AG News (1,000 rows, 2 epochs, 400 test rows): fine-tuning 0.860; head then fine-tuning 0.843 /
  0.850 / 0.845 at learning rates 5e-5 / 1e-4 / 3e-4.
So a head alone for tiny data; from 32 per class a head that full fine-tuning starts from (at least as good as the
better of the two at every point measured there); from 200 per class (between SST-2's 128, where fine-tuning was
still below the head's 64-per-class score, and AG News' 250, where plain fine-tuning led) plain full fine-tuning.
SetFit (``fewshot``) was mixed against the head (``python -m bench --parts accuracy``, 2 seeds, before the name
prior was halved): SST-2 at 8 per class 0.659 vs 0.681, at 32 0.739 vs 0.701; AG News at 8 0.821 vs 0.775. It also
costs minutes where the head costs seconds (CLINC150: 8,000 pairs), so ``auto`` does not pick it yet.
The bench (3 seeds, bench/results/RESULTS.md) confirms ``auto`` at 32 per class (SST-2 0.710 vs head 0.698; AG News
0.854 vs 0.834) and shows head-then-fine-tuning also ahead at 8 per class on AG News (0.803 vs 0.785; SST-2 0.645
vs 0.644): lowering ``HEAD_BELOW_EXAMPLES_PER_CLASS`` waits for a check on CLINC150's 150 classes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Mapping, Sequence

from transformers.models.auto.modeling_auto import MODEL_FOR_MASKED_LM_MAPPING_NAMES

# Below this many examples per class (the median over classes) an encoder gets a head on its sentence embeddings
# and nothing more; from here on that head is the start of full fine-tuning ("head_finetune").
HEAD_BELOW_EXAMPLES_PER_CLASS = 32
# From this many examples per class, plain full fine-tuning (its own head, its higher learning rate) wins.
FINETUNE_FROM_EXAMPLES_PER_CLASS = 200
# Label names that say nothing about the class: numbers, "LABEL_3", single letters.
_MEANINGLESS_NAME = re.compile(r"^\s*(label[\s_-]*)?(\d+|[a-z])\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class MethodChoice:
    """The method that will train and a sentence saying why."""

    method: str
    reason: str


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
        return MethodChoice("lora", f"{model_type or 'this model'} is a decoder LLM: a LoRA adapter trains a small "
                                    "fraction of its weights, faster and with less memory than full fine-tuning.")
    typical = counts[len(counts) // 2]
    if typical < HEAD_BELOW_EXAMPLES_PER_CLASS:
        return MethodChoice("head", f"{typical} examples per class (median over {classes} classes, {rows} rows): "
                                    "with so few, a classifier on sentence embeddings beats full fine-tuning.")
    if typical >= FINETUNE_FROM_EXAMPLES_PER_CLASS:
        return MethodChoice("finetune", f"{typical} examples per class (median over {classes} classes, {rows} "
                                        "rows): enough to fine-tune every weight of the model from the start.")
    return MethodChoice("head_finetune", f"{typical} examples per class (median over {classes} classes, {rows} "
                                         "rows): enough to fine-tune every weight, starting from a head fitted on "
                                         "sentence embeddings (as good as or better than either alone).")
