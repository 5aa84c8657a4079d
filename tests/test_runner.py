"""The background runner: a tiny training end to end, stop at the next step, one run at a time, failures."""

from __future__ import annotations

import queue
import time

import pandas as pd
import pytest
from conftest import make_sentiment_data

from finetuner.config import TrainConfig
from finetuner.errors import DataError
from finetuner.prepare import prepare
from finetuner.runner import Job, Runner, TrainSpec
from finetuner.runs import MODEL_DIR, RunStore
from finetuner.training.progress import ProgressEvent



@pytest.fixture
def runner(tmp_path) -> Runner:
    return Runner(RunStore(tmp_path / "runs"))


def _spec(model: str, config, n: int = 60) -> TrainSpec:
    texts, labels = make_sentiment_data(n, seed=5)
    return TrainSpec(model, config, prepare(pd.DataFrame({"text": texts, "label": labels}), seed=config.seed,
                                            source="made-up.csv"), preset="custom")


def _wait(job: Job, timeout: float = 120) -> None:
    assert job.done.wait(timeout), f"job still {job.status} after {timeout} s"


def _first_step(job: Job, timeout: float = 60) -> ProgressEvent:
    """Wait for the first training-loss event of ``job``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            item = job.events.get(timeout=1)
        except queue.Empty:
            continue
        if isinstance(item, ProgressEvent) and item.kind == "log":
            return item
    raise AssertionError("no training step reported")


def test_a_run_completes_with_model_metrics_and_evaluation_rows(runner, tiny_bert, tiny_config):
    job = runner.submit(_spec(tiny_bert, tiny_config))
    _wait(job)
    assert job.status == "completed", job.error
    record = runner.store.get(job.record.id)
    assert record.status == "completed" and record.labels == ["negative", "positive"]
    assert set(record.metrics) >= {"accuracy", "f1_macro", "loss"}
    assert record.data["source"] == "made-up.csv" and record.data["eval_rows"] == 12
    assert record.history and record.report["confusion_matrix"]
    # The settings chosen automatically are recorded with the values used, not as None.
    assert tiny_config.max_length is None or record.config["max_length"] == tiny_config.max_length
    assert isinstance(record.config["learning_rate"], float) and isinstance(record.config["max_length"], int)
    assert (runner.store.path(record.id) / MODEL_DIR / "model.safetensors").is_file()
    rows = runner.store.load_evaluation(record.id)
    assert len(rows) == 12 and {"text", "label", "predicted_label", "confidence"} <= set(rows.columns)
    events = []
    while not job.events.empty():
        events.append(job.events.get())
    kinds = [e.kind for e in events if isinstance(e, ProgressEvent)]
    assert kinds[0] == "start" and "log" in kinds and "evaluate" in kinds and "end" in kinds
    assert any(isinstance(e, str) and "Completed" in e for e in events)
    assert runner.store.load_model(record.id).predict_labels(["great"])[0] in ("negative", "positive")
    assert {k: record.method_choice[k] for k in ("method", "reason")} == {"method": "finetune",
                                                                         "reason": "set in the training settings"}
    assert record.method_choice["imbalance"]["weighted"] is False  # alternating classes: balanced


def test_auto_says_the_method_it_chose_and_the_record_keeps_it(runner, tiny_bert):
    job = runner.submit(_spec(tiny_bert, TrainConfig(seed=0)))  # method "auto": 24 examples per class
    _wait(job)
    assert job.status == "completed", job.error
    record = runner.store.get(job.record.id)
    assert record.method_choice["method"] == job.method_choice.method == record.config["method"] == "fewshot"
    reason = job.method_choice.reason
    assert record.method_choice["reason"] == reason and "examples per class" in reason
    lines = []
    while not job.events.empty():
        item = job.events.get()
        lines += [item] if isinstance(item, str) else []
    said = [line for line in lines if line.startswith("Method: ")]  # auto's plan first, then its choice
    assert said[0].startswith("Method: automatic — few-shot (SetFit), the method that leads at this size")
    assert said[1:] == [f"Method: few-shot (SetFit) — {reason}"]
    assert lines.index(said[0]) < lines.index(next(line for line in lines if line.startswith("Training on")))


def test_stop_ends_training_at_the_next_step_and_keeps_no_model(runner, tiny_bert, tiny_config):
    job = runner.submit(_spec(tiny_bert, tiny_config.replace(epochs=500)))
    first = _first_step(job)
    job.stop()
    _wait(job)
    assert job.status == "stopped"
    record = runner.store.get(job.record.id)
    assert record.status == "stopped" and record.metrics == {}
    assert not (runner.store.path(record.id) / MODEL_DIR).exists()
    assert record.history and record.history[-1]["step"] < first.max_steps


def test_one_training_at_a_time_others_wait_in_line_and_can_cancel(runner, tiny_bert, tiny_config):
    first = runner.submit(_spec(tiny_bert, tiny_config.replace(epochs=500)), owner="alice")
    _first_step(first)
    second = runner.submit(_spec(tiny_bert, tiny_config), owner="bob")
    assert second.status == "queued" and runner.position(second) == 1 and runner.position(first) == 0
    assert runner.current is first
    assert runner.stop("bob") == [second]
    assert runner.stop("alice") == [first]
    _wait(first)
    _wait(second)
    assert first.status == "stopped" and second.status == "stopped" and second.record is None
    assert [r.status for r in runner.store.list()] == ["stopped"]


def test_a_model_that_cannot_load_fails_the_run_with_its_message(runner, tiny_config, tmp_path):
    job = runner.submit(_spec(str(tmp_path / "no-such-model"), tiny_config))
    _wait(job)
    assert job.status == "failed" and "not found" in job.error
    assert runner.store.get(job.record.id).status == "failed"


def test_unusable_data_is_refused_before_queueing(runner, tiny_bert, tiny_config):
    spec = TrainSpec(tiny_bert, tiny_config, prepare(pd.DataFrame({"text": ["a", "b"], "label": ["x", "x"]})))
    with pytest.raises(DataError, match="single class"):
        runner.submit(spec)
    assert runner.store.list() == []
