"""Experiment tracking (TrainConfig.report_to, ``--report-to``): TensorBoard event files in the run folder and a
local Trackio project, offline, for a Trainer-based method and an embedding method alike."""

from __future__ import annotations

import pytest

from finetuner import RunSpec, RunStore, Split, TrainConfig, train_run
from finetuner.errors import ConfigError
from finetuner.runs import tracking
from test_cli import FAST, run_cli, write_table


def _spec(model: str, data, method: str, report_to: str) -> RunSpec:
    train_texts, train_labels, eval_texts, eval_labels = data
    config = TrainConfig(method=method, epochs=2, learning_rate=3e-3, batch_size=8, seed=0, report_to=report_to)
    return RunSpec(model, config, Split(train_texts[:32], train_labels[:32], eval_texts, eval_labels))


def _tensorboard_scalars(folder) -> dict:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder))
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


@pytest.mark.parametrize("method", ["finetune", "head"])
def test_tensorboard_gets_the_losses_and_scores_of_any_method(tiny_bert, sentiment_data, tmp_path, method):
    record = train_run(_spec(tiny_bert, sentiment_data, method, "tensorboard"), RunStore(tmp_path), run_id=method)
    scalars = _tensorboard_scalars(tmp_path / method / tracking.TRACKING_DIR)
    evaluations = [event for event in record.history if event["kind"] == "evaluate"]
    assert [step for step, _ in scalars["eval/accuracy"]] == [event["step"] for event in evaluations]
    assert scalars["eval/accuracy"][-1][1] == pytest.approx(evaluations[-1]["metrics"]["accuracy"])
    losses = [(event["step"], event["loss"]) for event in record.history if event.get("loss") is not None]
    if method == "finetune":  # every training loss of the run, at its step
        assert len(losses) >= 4 and [step for step, _ in scalars["train/loss"]] == [step for step, _ in losses]
        assert [value for _, value in scalars["train/loss"]] == pytest.approx([value for _, value in losses])
    else:  # the head fits at once: no training loss, its score
        assert not losses and "train/loss" not in scalars


def test_trackio_gets_a_run_named_by_its_id(tiny_bert, sentiment_data, tmp_path, monkeypatch):
    monkeypatch.setenv("TRACKIO_DIR", str(tmp_path / "trackio"))  # read when trackio is first imported ...
    import trackio.sqlite_storage
    import trackio.utils
    for module in (trackio.utils, trackio.sqlite_storage):  # ... and for when it already was: never the user's
        monkeypatch.setattr(module, "TRACKIO_DIR", tmp_path / "trackio")
    from trackio.sqlite_storage import SQLiteStorage

    train_run(_spec(tiny_bert, sentiment_data, "finetune", "trackio"), RunStore(tmp_path / "runs"), run_id="tracked")
    assert "tracked" in SQLiteStorage.get_runs(tracking.TRACKIO_PROJECT)
    logs = SQLiteStorage.get_logs(tracking.TRACKIO_PROJECT, "tracked")
    record = RunStore(tmp_path / "runs").get("tracked")
    losses = [event["step"] for event in record.history if event.get("loss") is not None]
    assert len(losses) >= 4 and [log["step"] for log in logs if "train/loss" in log] == losses
    assert any("eval/accuracy" in log for log in logs)


def test_the_command_line_takes_report_to(tiny_bert, tmp_path, monkeypatch):
    data = write_table(tmp_path / "train.csv", 40, 1)
    code, out, err = run_cli("train", "--data", data, "--model", tiny_bert, "--output", tmp_path / "run",
                             "--epochs", "1", "--report-to", "tensorboard", *FAST)
    assert code == 0, err
    assert "train/loss" in _tensorboard_scalars(tmp_path / "run" / tracking.TRACKING_DIR)
    code, _, err = run_cli("train", "--data", data, "--output", tmp_path / "other", "--report-to", "wandb")
    assert code == 2 and "invalid choice: 'wandb'" in err


def test_a_missing_tracker_package_is_a_clear_error_before_anything_is_written(tiny_bert, sentiment_data, tmp_path,
                                                                               monkeypatch):
    monkeypatch.setattr(tracking.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ConfigError, match="needs the trackio package.*pip install trackio=="):
        train_run(_spec(tiny_bert, sentiment_data, "finetune", "trackio"), RunStore(tmp_path), run_id="never")
    assert not (tmp_path / "never").exists()
    with pytest.raises(ConfigError, match="report_to='wandb' is not supported"):
        TrainConfig(report_to="wandb").validate()
