"""``method="auto"``: train the candidates (the embedding head first, then the others most promising first) on most
of the training rows while the time budget lasts,
score each on the rows held out, keep the winner (trained again on every row when that pays and fits), and fit
its temperature on the held-out rows so its probabilities are calibrated. Candidates are scored by accuracy, or by
macro-F1 when the classes are skewed and the loss is weighted by class (:mod:`finetuner.imbalance`). The decisions
are :mod:`finetuner.selection`'s; this module carries them out.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Mapping, Optional

import numpy as np

from . import selection
from .calibration import fit_temperature, fold_temperature
from .imbalance import ImbalanceHandling, imbalance_handling
from .method_choice import MethodChoice, choose_method
from .methods import TrainingJob, TrainingResult, registry
from .selection import Candidate, CandidateResult
from .training.finetune import inference_autocast, predict_logits, select_texts
from .training.model_form import model_for_method

Notify = Callable[[Any], None]
# Candidates trained with the Trainer, which checkpoints (at most one per candidate list).
_TRAINER_METHODS = ("head_finetune", "finetune")
# Seconds kept free at the end of a time budget for evaluating and saving the winner (at least this many, or this
# share of the budget), on top of one inference pass over the evaluation rows (timed by the embedding pass).
_RESERVE_SECONDS, _RESERVE_SHARE = 3.0, 0.05


@dataclass
class AutoOutcome:
    """The winner's training result, and why it won (with the leaderboard of every candidate)."""

    result: TrainingResult
    choice: MethodChoice


def train_auto(job: TrainingJob, *, model_type: str, class_counts: Mapping[str, int], trained_with: str,
               deadline: Optional[float] = None, notify: Optional[Notify] = None,
               imbalance: Optional[ImbalanceHandling] = None) -> AutoOutcome:
    """Choose and train a method for ``job`` (its ``model`` is the model to start from, its ``config.method``
    "auto"); ``deadline`` is a ``time.monotonic()`` by which the run should be done (None: no limit); ``notify``
    receives each :class:`CandidateResult` as it is known. ``imbalance`` is what training does about the class
    counts (default: :func:`~finetuner.imbalance.imbalance_handling` of ``class_counts`` and
    ``config.class_weights``; ``job.class_weights`` are its weights): with class weights, candidates are scored by
    macro-F1."""
    notify = notify or (lambda item: None)
    budget = _Budget(deadline)
    imbalance = imbalance or imbalance_handling(class_counts, job.config.class_weights)
    candidates = selection.candidate_methods(class_counts, model_type)
    split = selection.validation_split(job.label_ids, job.config.seed) if len(candidates) > 1 else None
    if split is None:  # one candidate, or too few rows to hold any out: the measured rule decides alone
        prior = choose_method(class_counts, model_type)
        result = registry.get(prior.method).train(_for(job, prior.method, trained_with, copy_model=False))
        why = ("" if len(candidates) == 1 else
               f" Too few rows to hold some out for choosing ({len(job.texts)}), so it trained on every row; not "
               "calibrated.")
        weighted = f" {_sentence(imbalance.reason)}" if imbalance.weighted else ""
        return AutoOutcome(result, MethodChoice(prior.method, prior.reason + why + weighted,
                                                imbalance=imbalance.as_dict()))
    return _Selection(job, candidates, split, budget, notify, trained_with, class_counts, imbalance).run()


class _Budget:
    def __init__(self, deadline: Optional[float]):
        self.deadline = deadline
        self.reserve = 0.0 if deadline is None else max(_RESERVE_SECONDS,
                                                        _RESERVE_SHARE * (deadline - time.monotonic()))

    def left(self) -> float:
        return math.inf if self.deadline is None else self.deadline - self.reserve - time.monotonic()

    def keep_for_evaluation(self, rows: int, seconds_per_text: float) -> None:
        """Keep the time to score ``rows`` evaluation rows free too (the winner is evaluated before the deadline)."""
        if self.deadline is not None:
            self.reserve += rows * seconds_per_text


class _Selection:
    def __init__(self, job: TrainingJob, candidates: List[Candidate], split, budget: _Budget, notify: Notify,
                 trained_with: str, class_counts: Mapping[str, int], imbalance: ImbalanceHandling):
        self.job, self.candidates, self.budget, self.notify = job, candidates, budget, notify
        self.trained_with, self.class_counts, self.imbalance = trained_with, class_counts, imbalance
        self.train_rows, self.held_rows = split
        self.held_texts = [job.texts[i] for i in self.held_rows]
        self.held_ids = np.asarray([job.label_ids[i] for i in self.held_rows])
        self.metric = imbalance.metric
        self.row_weights = selection.row_weights(self.held_ids, self.metric)
        self.results: List[CandidateResult] = []
        self.trained: Dict[str, TrainingResult] = {}
        self.held_logits: Dict[str, np.ndarray] = {}

    def run(self) -> AutoOutcome:
        job = self.job
        embeddings, seconds_per_text = _embedding_pass(job, self.trained_with, self.budget)
        part = self._part(self.train_rows, embeddings)
        early_stopping = job.config.early_stopping_patience is not None
        order = selection.trial_order(self.candidates)
        for index, candidate in enumerate(order):
            later = sum(self._estimate(c.method, len(part.texts), seconds_per_text) for c in order[index + 1:])
            result = self._try(candidate, part, seconds_per_text, early_stopping, later)
            self.results.append(result)
            self.notify(result)
            if job.progress.stopped:
                break
        if job.progress.stopped or not self.trained:  # a stop request: the run ends without a model
            stopped = TrainingResult(job.model, None, job.config, stopped=True)
            return AutoOutcome(stopped, MethodChoice("auto", "stopped while choosing a method"))
        winner, why = selection.pick(self.results, self.row_weights)
        return self._finish(winner, why, embeddings, seconds_per_text)

    # ------------------------------------------------------------------ steps

    def _part(self, rows: List[int], embeddings: Optional[np.ndarray]) -> TrainingJob:
        job = self.job
        return dataclasses.replace(job, texts=[job.texts[i] for i in rows],
                                   label_ids=[job.label_ids[i] for i in rows],
                                   train_dataset=select_texts(job.train_dataset, rows),
                                   embeddings=None if embeddings is None else embeddings[rows])

    def _estimate(self, method: str, rows: int, seconds_per_text: float) -> float:
        return selection.estimate_seconds(method, rows, self._epochs(method), seconds_per_text)

    def _epochs(self, method: str) -> float:
        return self.job.config.epochs or registry.get(method).epochs

    def _try(self, candidate: Candidate, part: TrainingJob, seconds_per_text: float, early_stopping: bool,
             later: float) -> CandidateResult:
        """Train one candidate on the training part and score it on the held-out rows (skipped when it does not
        fit the budget left; contrastive tuning draws the pairs that fit, leaving ``later`` seconds for the
        candidates after it when it can)."""
        method, rows, left = candidate.method, len(part.texts), self.budget.left()
        pairs = None
        if method == "fewshot":
            pairs = (selection.affordable_pairs(rows, seconds_per_text, left - later)
                     or selection.affordable_pairs(rows, seconds_per_text, left))
            estimate = selection.estimate_seconds(method, rows, 1, seconds_per_text, pairs)
        else:
            estimate = self._estimate(method, rows, seconds_per_text)
        result = CandidateResult(method, candidate.rank, "skipped", estimated_seconds=round(estimate, 1),
                                 metric=self.metric)
        if self.trained and (estimate > left or (method == "fewshot" and pairs is None)):
            result.note = f"needs about {estimate:.0f} s; {max(0.0, left):.0f} s of the time budget left"
            return result
        if pairs is not None and pairs < selection.pair_budget(rows):
            result.settings["pairs"] = pairs
        started = time.monotonic()
        # The Trainer's candidate keeps the run's checkpoints (a resumed run chooses again and continues it from
        # them: same held-out split, same rows); the others start over.
        keeps = method in _TRAINER_METHODS
        deadline = self._deadline(method, rows, seconds_per_text, started)
        sub = _for(part, method, self.trained_with, pairs=pairs,
                   checkpoint_dir=self.job.checkpoint_dir if keeps else None, resume=self.job.resume and keeps,
                   eval_dataset=select_texts(self.job.train_dataset, self.held_rows) if early_stopping
                   else None, deadline=deadline)
        trained = registry.get(method).train(sub)
        result.seconds = time.monotonic() - started
        if deadline is not None and time.monotonic() >= deadline and not trained.stopped:
            result.note = "reached the end of the time budget while training: stopped there, keeping what it learned"
        if trained.stopped:
            result.status = "stopped"
            return result
        logits = self._held_logits(trained.model)
        predicted = logits.argmax(axis=1)
        result.correct = predicted == self.held_ids
        result.status = "trained"
        result.score = selection.validation_score(predicted, self.held_ids, self.metric)
        self.held_logits[method] = logits  # for the temperature
        self.trained[method] = trained
        return result

    def _deadline(self, method: str, rows: int, seconds_per_text: float, started: float) -> Optional[float]:
        """When ``method``'s training loop must stop for the run to end within its time budget (None: no budget):
        what is left of it, less the embedding pass that fits the head after contrastive tuning."""
        left = self.budget.left()
        if math.isinf(left):
            return None
        after = rows * seconds_per_text if method == "fewshot" else 0.0
        return started + max(0.0, left - after)

    def _held_logits(self, model) -> np.ndarray:
        job = self.job
        with inference_autocast(job.config.precision, next(model.parameters()).device):
            return predict_logits(model, job.tokenizer, self.held_texts, job.max_length, job.config.eval_batch_size,
                                  job.config.long_texts == "windows")

    def _finish(self, winner: CandidateResult, why: str, embeddings: np.ndarray,
                seconds_per_text: float) -> AutoOutcome:
        job = self.job
        chosen = self.trained[winner.method]
        temperature, calibration = selection.trusted_temperature(
            fit_temperature(self.held_logits[winner.method], self.held_ids), len(self.held_rows))
        calibrate = not calibration  # no reason against it: the temperature is folded in
        estimate = selection.estimate_seconds(winner.method, len(job.texts), self._epochs(winner.method),
                                              seconds_per_text, winner.settings.get("pairs"))
        refit, refit_why = selection.should_refit(self.class_counts, estimate, self.budget.left())
        if refit and not job.progress.stopped:
            every_row = dataclasses.replace(job, embeddings=embeddings)
            again = registry.get(winner.method).train(_for(every_row, winner.method, self.trained_with,
                                                           pairs=winner.settings.get("pairs"), checkpoint_dir=None,
                                                           resume=False))
            if not again.stopped:
                chosen = again
        folded = calibrate and fold_temperature(chosen.model, temperature)
        if calibrate:
            calibration = (f"probabilities calibrated on the held-out rows (temperature {temperature:.2f})" if folded
                           else "not calibrated (the model has no output layer to scale)")
        board = "; ".join(r.line() for r in self.results)
        reason = f"{_name(winner.method)}: {why}. Candidates — {board}. {refit_why.capitalize()}; {calibration}."
        if self.imbalance.weighted:
            reason += f" {_sentence(self.imbalance.reason)}"
        choice = MethodChoice(winner.method, reason, candidates=tuple(r.as_dict() for r in self.results),
                              held_out_rows=len(self.held_rows), temperature=round(temperature, 4) if folded else None,
                              refit=chosen is not self.trained[winner.method], imbalance=self.imbalance.as_dict())
        return AutoOutcome(chosen, choice)


def _embedding_pass(job: TrainingJob, trained_with: str, budget: _Budget):
    """The untrained encoder's embeddings of every training text (shared by the head fits) and the seconds it took
    per text (what the cost estimates scale); the budget then also keeps the time to score the evaluation rows."""
    from .training.embedding_methods import encode

    # The encoder itself, not a copy, under a throwaway head: nothing here changes its weights.
    model = model_for_method(job.model, job.config.replace(method="head"), len(job.label_map), adapter=False,
                             sentence_classifier=True, trained_with=trained_with)
    started = time.monotonic()
    # bf16 (half the time) only without a time budget: the cost model's multiples are of an fp32 pass, and
    # contrastive tuning runs in fp32 (bench/results/auto.md#whole-process-session-14)
    precision = job.config.precision if budget.deadline is None else "fp32"
    with inference_autocast(precision, model.head.weight.device):
        embeddings = encode(model, job.tokenizer, job.texts, job.max_length, job.config.eval_batch_size,
                            windows=job.config.long_texts == "windows")
    per_text = (time.monotonic() - started) / max(1, len(job.texts))
    budget.keep_for_evaluation(len(job.eval_dataset or ()), per_text)
    return embeddings, per_text


def _for(job: TrainingJob, method: str, trained_with: str, copy_model: bool = True, **changes: Any) -> TrainingJob:
    """``job`` for ``method``: its own copy of the model (unless ``copy_model`` is False) in the method's form, and
    the settings with the method's epochs and batch size where none were set."""
    spec = registry.get(method)
    config = job.config.replace(method=method)
    model = model_for_method(copy.deepcopy(job.model) if copy_model else job.model, config, len(job.label_map),
                             adapter=spec.adapter, sentence_classifier=spec.sentence_classifier,
                             trained_with=trained_with)
    return dataclasses.replace(job, model=model, config=config, **changes)


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:] + ("" if text.endswith(".") else ".")


def _name(method: str) -> str:
    name = registry.METHOD_NAMES.get(method, method)
    return name[:1].upper() + name[1:]


def fit_task_budget(job: TrainingJob, choice: MethodChoice, deadline: Optional[float],
                    trained_with: str) -> "tuple[TrainingJob, MethodChoice]":
    """Several labels per text or a number per text: ``auto``'s method (:func:`finetuner.method_choice.
    choose_task_method`) within the time budget. Head-then-fine-tuning embeds the training texts first (timed; the
    head fit reuses them); when the Trainer's epochs would then run past ``deadline`` by the cost model
    (:func:`finetuner.selection.estimate_seconds`), the head alone trains instead, and the choice says why. The
    time kept for evaluating and saving is :class:`_Budget`'s, as in the selection for one class per text."""
    if deadline is None or choice.method != "head_finetune":
        return job, choice
    budget = _Budget(deadline)
    embeddings, per_text = _embedding_pass(job, trained_with, budget)
    epochs = job.config.epochs or registry.get("head_finetune").epochs
    needed = selection.estimate_seconds("head_finetune", len(job.texts), epochs, per_text) - len(job.texts) * per_text
    left = budget.left()
    job = dataclasses.replace(job, embeddings=embeddings)
    if needed <= left:
        return job, choice
    what, _, _ = choice.reason.partition(":")
    _, _, rest = choice.reason.partition("; ")
    why = (f"{what}: fine-tuning every weight would take about {needed:.0f} s, more than the {max(0.0, left):.0f} s "
           "left of the time budget, so a head on frozen sentence embeddings")
    return job, dataclasses.replace(choice, method="head", reason=f"{why}; {rest}" if rest else why)
