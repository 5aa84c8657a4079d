"""What a training method is: :class:`Method` (its names, defaults and flags, and its ``train`` function) and
the :class:`TrainingJob` / :class:`TrainingResult` that ``train`` takes and returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Union

if TYPE_CHECKING:
    from ..config import TrainConfig
    from ..data import LabelMap
    from ..training.progress import ProgressCallback


def size_learning_rate(num_parameters: int) -> float:
    """A learning rate for full fine-tuning of a model this size (measured:
    bench/results/method_choice.md#learning-rates)."""
    if num_parameters <= 40_000_000:
        return 3e-4
    if num_parameters <= 200_000_000:
        return 5e-5
    return 2e-5


@dataclass
class TrainingJob:
    """Everything a method's ``train`` works with: the model already in the form the method trains (see
    :attr:`Method.sentence_classifier` and :attr:`Method.adapter`), the data raw and tokenized, the settings, and
    where progress goes (``progress``: :class:`~finetuner.training.progress.ProgressCallback`, which also carries
    the stop request)."""

    model: Any
    tokenizer: Any
    label_map: "LabelMap"
    texts: List[str]
    label_ids: List[int]
    train_dataset: Any
    eval_dataset: Optional[Any]
    max_length: int
    config: "TrainConfig"
    progress: "ProgressCallback"
    compute_metrics: Callable[[Any], Dict[str, float]]
    checkpoint_dir: Optional[Union[str, Path]] = None
    resume: bool = False
    # The class names when they say what the classes are (None for codes such as 0/1 or "LABEL_3").
    label_names: Optional[List[str]] = None
    # The untrained encoder's sentence embeddings of ``texts`` when already computed (auto shares them between the
    # methods that fit a head on them), and the contrastive pairs to draw (None: the method's default budget).
    embeddings: Optional[Any] = None
    pairs: Optional[int] = None
    # A weight per class id for the training loss (None: unweighted; see finetuner.imbalance).
    class_weights: Optional[List[float]] = None
    # A time.monotonic() by which the method's training loop stops, keeping what it learned (auto's time budget;
    # None: no limit). The methods that train in steps (the Trainer's, contrastive tuning) heed it.
    deadline: Optional[float] = None


@dataclass
class TrainingResult:
    """What ``train`` hands back: the trained model, the Trainer that trained or evaluated it (its ``state`` holds
    the run's steps), the settings as used (a learning rate left to choose filled in) and whether a stop request
    ended training early."""

    model: Any
    trainer: Any
    config: "TrainConfig"
    stopped: bool = False


@dataclass(frozen=True)
class Method:
    """One training method, declared once and registered with :func:`finetuner.methods.registry.register`.

    Args:
        name: the value of ``TrainConfig.method`` and ``--method`` (e.g. ``"head"``).
        display_name: what status lines and the run history call it, lower case (``"embedding head"``).
        label: its choice in the app's method radio (``"Embedding head (fast)"``).
        summary: a few words for ``--help`` (``"a classifier on frozen sentence embeddings: seconds"``).
        epochs, batch_size: the defaults that ``TrainConfig(epochs=None, batch_size=None)`` takes.
        train: ``train(job: TrainingJob) -> TrainingResult``.
        has_epochs: False when the method makes a single pass whatever ``epochs`` says (the embedding head).
        sentence_classifier: it trains a :class:`~finetuner.training.sentence_classifier.SentenceClassifier`
            (mean-pooled embeddings and a linear head) instead of a standard sequence classifier.
        adapter: it trains a LoRA adapter on a standard classifier (decoders included).
        learning_rate: ``num_parameters -> rate`` when ``learning_rate`` is left unset and the Trainer trains.

    Example::

        register(Method("mine", "my method", "My method", "what it does", epochs=3.0, batch_size=32, train=train))
    """

    name: str
    display_name: str
    label: str
    summary: str
    epochs: float
    batch_size: int
    train: Callable[[TrainingJob], TrainingResult] = field(compare=False)
    has_epochs: bool = True
    sentence_classifier: bool = False
    adapter: bool = False
    learning_rate: Callable[[int], float] = field(default=size_learning_rate, compare=False)

    @property
    def defaults(self) -> Dict[str, Any]:
        """``{"epochs": …, "batch_size": …}``: what ``TrainConfig`` takes when they are left unset."""
        return {"epochs": self.epochs, "batch_size": self.batch_size}
