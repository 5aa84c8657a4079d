"""``method="auto"``: pick the training method from the examples per class, the number of classes and the rows.

Measured with the bundled all-MiniLM-L6-v2 (one seed unless said; SST-2 test 872 rows, AG News 800 test rows):
- 8 per class, SST-2 (3 seeds): head 0.658 (a random head fine-tuned end to end with the encoder: 0.538, seed 0);
  CLINC150 at 10 per class (3 seeds, full test set): head 0.910, logistic regression without the name prior 0.908.
- 32 per class: SST-2 head 0.70, fine-tuning 0.576; AG News head 0.80, fine-tuning 0.83, head then fine-tuning 0.83.
- 64 per class: SST-2 head 0.737, fine-tuning 0.646, head then fine-tuning 0.744; AG News fine-tuning 0.848,
  head 0.825. 128 per class, SST-2: fine-tuning 0.721 (head 0.737 already at 64).
- 250 per class, AG News (1,000 rows, 2 epochs, 400 test rows): fine-tuning 0.860; head then fine-tuning 0.843 /
  0.850 / 0.845 at learning rates 5e-5 / 1e-4 / 3e-4.
At 8 per class, contrastive tuning (``fewshot``) that also pulls each class's examples towards sentences saying
its name, at learning rate 5e-5 (training.embedding_methods.contrastive_tune), then the head: SST-2 0.734 (seeds
0–4; head alone 0.649 over 20 seeds), AG News 0.833 (seeds 0–2; head alone 0.783); SetFit's own settings without
the names: SST-2 0.668. Its cost grows with the pairs (20 per text, at most 8,000): ~20–40 s for 16 rows, minutes
from a few hundred rows, while the head takes seconds and is as good as the plain logistic regression with many
classes (CLINC150 at 10 per class, 1,500 rows).
The bench (``python -m bench --parts accuracy --datasets sst2,agnews --k 8,32 --seeds 0,1,2 --methods
head,fewshot,head_finetune,auto --max-train-rows 128``, bench/results/RESULTS.md): at 8 per class fewshot 0.675 /
0.838 (SST-2 / AG News) against head 0.640 / 0.785 and head then fine-tuning 0.632 / 0.803; at 32 per class
fewshot 0.742 / 0.865 against head then fine-tuning 0.711 / 0.856 and head 0.698 / 0.834 (fewshot took ~180 s on
AG News' 128 rows, head then fine-tuning ~16 s).
So: below 64 per class and up to 400 rows, few-shot tuning; below 32 per class with more rows, the head alone;
otherwise a head that full fine-tuning starts from (at least as good as the better of the two at every point
measured there); from 200 per class (between SST-2's 128, where fine-tuning was still below the head's
64-per-class score, and AG News' 250, where plain fine-tuning led) plain full fine-tuning. Between 32 and 63 per
class only 32 was measured.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Mapping, Sequence

from transformers.models.auto.modeling_auto import MODEL_FOR_MASKED_LM_MAPPING_NAMES

# Below this many examples per class (the median over classes), data too large for contrastive tuning gets a head
# on the encoder's sentence embeddings and nothing more ("head"); from here on that head is the start of full
# fine-tuning ("head_finetune").
HEAD_BELOW_EXAMPLES_PER_CLASS = 32
# Below this many examples per class and with at most FEWSHOT_MAX_ROWS rows: contrastive tuning ("fewshot"), which
# beat every other method at 8 and 32 per class on SST-2 and AG News (bench, 3 seeds).
FEWSHOT_BELOW_EXAMPLES_PER_CLASS = 64
# At most this many rows for contrastive tuning, where every text still gets its 20 pairs
# (training.embedding_methods.pair_budget: 8,000 pairs, ~500 steps, about 3 minutes on 2 CPU cores). More rows with
# few examples each (many classes, e.g. CLINC150 at 10 per class: 1,500 rows) get the head alone, in seconds.
FEWSHOT_MAX_ROWS = 400
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
    if typical < FEWSHOT_BELOW_EXAMPLES_PER_CLASS and rows <= FEWSHOT_MAX_ROWS:
        return MethodChoice("fewshot", f"{typical} examples per class (median over {classes} classes, {rows} rows): "
                                       "at this size, contrastive tuning of the encoder on sentence pairs (SetFit), "
                                       "then a classifier on its embeddings, beats full fine-tuning and a head "
                                       "on frozen embeddings.")
    if typical < HEAD_BELOW_EXAMPLES_PER_CLASS:
        return MethodChoice("head", f"{typical} examples per class (median over {classes} classes, {rows} rows): "
                                    "with so few, a classifier on sentence embeddings beats full fine-tuning (with "
                                    f"more than {FEWSHOT_MAX_ROWS} rows, contrastive tuning would take several "
                                    "minutes).")
    if typical >= FINETUNE_FROM_EXAMPLES_PER_CLASS:
        return MethodChoice("finetune", f"{typical} examples per class (median over {classes} classes, {rows} "
                                        "rows): enough to fine-tune every weight of the model from the start.")
    return MethodChoice("head_finetune", f"{typical} examples per class (median over {classes} classes, {rows} "
                                         "rows): enough to fine-tune every weight, starting from a head fitted on "
                                         "sentence embeddings (as good as or better than either alone).")
