"""The one run pipeline (finetuner.runs.pipeline.train_run) called from Python: the record and folder it writes,
and how a run that is interrupted or fails is recorded."""

from __future__ import annotations

import pytest

from finetuner import LLMFinetuner, RunSpec, RunStore, Split, TrainConfig, train_run
from finetuner.errors import DataError
from finetuner.runs.pipeline import Notice


def _spec(model: str, data, **settings) -> RunSpec:
    train_texts, train_labels, eval_texts, eval_labels = data
    config = TrainConfig(method="finetune", epochs=2, learning_rate=3e-3, batch_size=8, warmup_ratio=0.0, seed=0,
                         **settings)
    return RunSpec(model, config, Split(train_texts[:32], train_labels[:32], eval_texts, eval_labels,
                                        {"source": "memory"}))


def test_a_python_run_writes_the_same_folder_and_record(tiny_bert, sentiment_data, tmp_path):
    events = []
    record = train_run(_spec(tiny_bert, sentiment_data), RunStore(tmp_path), run_id="from-python",
                       listener=events.append)
    assert record.status == "completed" and record.origin == "python" and not record.owner
    assert record.id == "from-python" and record.method_choice["reason"] == "set in the training settings"
    assert record.data == {"source": "memory", "train_rows": 32, "eval_rows": 40}
    assert record.training["steps"] == record.training["max_steps"] == 8 and record.metrics["accuracy"] >= 0
    kinds = [event.kind for event in events if isinstance(event, Notice)]
    assert kinds == ["loading", "method", "training", "evaluating", "saving", "completed"]
    assert {"start", "end"} <= {event.kind for event in events if not isinstance(event, Notice)}
    folder = tmp_path / "from-python"
    assert {"model", "run.json", "evaluation.jsonl", "metrics.json"} <= {p.name for p in folder.iterdir()}
    assert LLMFinetuner.load(folder / "model").labels == record.labels
    assert RunStore(tmp_path).get("from-python", owner="a" * 32).shared  # visible in the app, to everyone


def test_an_interrupted_or_failed_run_is_recorded_and_raised(tiny_bert, sentiment_data, tmp_path, monkeypatch):
    store = RunStore(tmp_path)

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(LLMFinetuner, "fine_tune", interrupt)
    with pytest.raises(KeyboardInterrupt):
        train_run(_spec(tiny_bert, sentiment_data), store, run_id="interrupted")
    assert store.get("interrupted").status == "interrupted"

    def bad_data(*args, **kwargs):
        raise DataError("row 3 has no label")

    monkeypatch.setattr(LLMFinetuner, "fine_tune", bad_data)
    with pytest.raises(DataError):
        train_run(_spec(tiny_bert, sentiment_data), store, run_id="failed")
    failed = store.get("failed")
    assert failed.status == "failed" and failed.error == "row 3 has no label"
    assert not (tmp_path / "failed" / "model").exists()


def test_a_tracker_that_cannot_start_fails_the_run_instead_of_leaving_it_running(tiny_bert, sentiment_data,
                                                                                  tmp_path, monkeypatch):
    from finetuner.runs import pipeline

    def broken(*args, **kwargs):
        raise OSError("database is locked")

    monkeypatch.setattr(pipeline, "open_tracker", broken)
    with pytest.raises(OSError):
        train_run(_spec(tiny_bert, sentiment_data), RunStore(tmp_path), run_id="untracked")
    record = RunStore(tmp_path).get("untracked")
    assert record.status == "failed" and "database is locked" in record.error
