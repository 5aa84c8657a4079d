"""Progress events: the callback on its own, then the events of a real (tiny) training run and stop requests."""

from __future__ import annotations

import math
import threading

import pytest
from conftest import TINY_CONFIG, make_sentiment_data
from transformers import TrainerControl, TrainerState

from finetuner import LLMFinetuner, ProgressEvent
from finetuner.training import progress as progress_module
from finetuner.training.progress import EVENT_KINDS, ProgressCallback



def test_event_fraction():
    assert ProgressEvent("log", 5, 10, 0.5, 1.0).fraction == 0.5
    assert ProgressEvent("end", 12, 10, 1.0, 1.0).fraction == 1.0
    assert ProgressEvent("start", 0, 0, 0.0, 0.0).fraction == 0.0


def test_callback_eta_leaves_out_the_start_up_and_the_first_step(monkeypatch):
    clock = [100.0]
    monkeypatch.setattr(progress_module.time, "monotonic", lambda: clock[0])
    events = []
    callback = ProgressCallback(events.append)
    state, control = TrainerState(global_step=0, max_steps=10), TrainerControl()
    callback.on_train_begin(None, state, control)
    assert events[0].kind == "start" and events[0].eta_seconds is None and events[0].step == 0
    clock[0] += 20.0  # start-up and a slow first step
    state.global_step, state.epoch = 1, 0.1
    callback.on_step_end(None, state, control)
    callback.on_log(None, state, control, logs={"loss": 0.9})
    assert events[-1].eta_seconds is None  # one step tells nothing of the rate
    clock[0] += 3.0  # steps 2-4: a second each
    state.global_step, state.epoch = 4, 0.4
    callback.on_step_end(None, state, control)
    callback.on_log(None, state, control, logs={"loss": 0.7, "learning_rate": 1e-4})
    log = events[-1]
    assert (log.kind, log.step, log.max_steps, log.epoch, log.loss) == ("log", 4, 10, 0.4, 0.7)
    assert log.elapsed_seconds == pytest.approx(23.0)
    assert log.eta_seconds == pytest.approx(6.0)  # 6 steps left at a second each (not 6 x 23 / 4)
    state.global_step = 10
    callback.on_train_end(None, state, control)
    assert events[-1].kind == "end" and events[-1].eta_seconds == 0.0


def test_callback_ignores_logs_without_a_loss():
    events = []
    callback = ProgressCallback(events.append)
    state = TrainerState(global_step=1, max_steps=2)
    callback.on_log(None, state, TrainerControl(), logs={"train_runtime": 1.0})
    callback.on_log(None, state, TrainerControl(), logs=None)
    assert events == []


def test_callback_evaluate_metrics_are_cleaned():
    events = []
    callback = ProgressCallback(events.append)
    callback.on_evaluate(None, TrainerState(global_step=3, max_steps=6, epoch=1.0), TrainerControl(),
                         metrics={"eval_loss": 0.5, "eval_accuracy": 0.75, "eval_runtime": 0.1,
                                  "eval_samples_per_second": 80.0, "eval_steps_per_second": 4.0, "epoch": 1.0,
                                  "eval_note": "text"})
    assert events[0].kind == "evaluate"
    assert events[0].metrics == {"loss": 0.5, "accuracy": 0.75, "epoch": 1.0}


def test_callback_without_listener_still_stops():
    stop = threading.Event()
    callback = ProgressCallback(listener=None, stop_event=stop)
    state = TrainerState(global_step=1, max_steps=5)
    callback.on_train_begin(None, state, TrainerControl())
    callback.on_log(None, state, TrainerControl(), logs={"loss": 1.0})  # no listener: nothing to call
    control = callback.on_step_end(None, state, TrainerControl())
    assert not control.should_training_stop and not callback.stopped
    stop.set()
    control = TrainerControl(should_evaluate=True, should_save=True)
    control = callback.on_step_end(None, state, control)
    assert control.should_training_stop and not control.should_evaluate and not control.should_save
    assert callback.stopped


# ---------------------------------------------------------------------------------------------
# A real run
# ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def run(tiny_bert):
    """Two epochs, eval set, 16 rows at batch 8: 4 steps, 2 evaluations."""
    train = make_sentiment_data(16, seed=1)
    evaluation = make_sentiment_data(8, seed=2)
    events = []
    finetuner = LLMFinetuner(tiny_bert, config=TINY_CONFIG.replace(epochs=2))
    finetuner.fine_tune(*train, *evaluation, listener=events.append)
    return finetuner, list(events)


def test_events_come_in_order(run):
    finetuner, events = run
    kinds = [event.kind for event in events]
    assert set(kinds) <= set(EVENT_KINDS)
    assert kinds[0] == "start" and kinds[-1] == "end"
    assert kinds.count("start") == 1 and kinds.count("end") == 1
    assert kinds.count("evaluate") == 2  # one per epoch
    assert kinds.count("log") >= 2
    # Each epoch logs its steps before it is evaluated.
    evaluations = [e for e in events if e.kind == "evaluate"]
    assert [e.epoch for e in evaluations] == [1.0, 2.0]
    first_eval = kinds.index("evaluate")
    assert "log" in kinds[1:first_eval]
    assert all(e.step <= evaluations[0].step for e in events[:first_eval])


def test_steps_and_epochs_are_consistent(run):
    finetuner, events = run
    max_steps = finetuner.trainer.state.max_steps
    assert max_steps == 4
    assert all(event.max_steps == max_steps for event in events)
    steps = [event.step for event in events]
    assert steps == sorted(steps) and steps[0] == 0 and steps[-1] == max_steps
    epochs = [event.epoch for event in events]
    assert epochs == sorted(epochs) and epochs[-1] == pytest.approx(2.0)
    assert events[-1].fraction == 1.0
    assert not finetuner.stopped and not any(event.stopped for event in events)


def test_eta_and_elapsed(run):
    _, events = run
    assert events[0].eta_seconds is None  # no step done yet
    assert all(e.eta_seconds is None for e in events if e.step == 1)  # one step tells nothing of the rate
    later = [e for e in events if e.step > 1]
    assert later and all(e.eta_seconds is not None and e.eta_seconds >= 0 for e in later)
    assert events[-1].eta_seconds == 0
    elapsed = [e.elapsed_seconds for e in events]
    assert elapsed == sorted(elapsed) and elapsed[0] >= 0


def test_log_and_evaluate_payloads(run):
    _, events = run
    for event in events:
        if event.kind == "log":
            assert event.loss is not None and math.isfinite(event.loss) and event.loss >= 0
        if event.kind == "evaluate":
            assert {"accuracy", "f1_macro", "loss"} <= set(event.metrics)
            assert 0 <= event.metrics["accuracy"] <= 1
            assert not any(k.startswith("eval_") or k.endswith("runtime") for k in event.metrics)


def test_history_records_the_events(run):
    finetuner, events = run
    assert [h["kind"] for h in finetuner.history[:len(events)]] == [e.kind for e in events]
    assert finetuner.history[0]["step"] == 0 and "eta_seconds" not in finetuner.history[0]


def test_stop_request_from_the_listener_stops_early(tiny_bert):
    train = make_sentiment_data(24, seed=1)
    stop = threading.Event()
    events = []

    def listener(event):
        events.append(event)
        if event.kind == "log":
            stop.set()

    finetuner = LLMFinetuner(tiny_bert, config=TINY_CONFIG.replace(epochs=3))
    finetuner.fine_tune(*train, listener=listener, stop_event=stop)  # 3 batches x 3 epochs = 9 steps
    state = finetuner.trainer.state
    assert state.max_steps == 9
    assert state.global_step < state.max_steps
    assert finetuner.stopped is True
    assert events[-1].kind == "end" and events[-1].stopped is True
    assert finetuner.trained  # what was learned so far is kept and can predict
    assert len(finetuner.predict(["good"])) == 1


def test_stop_set_before_training_stops_after_one_step(tiny_bert):
    stop = threading.Event()
    stop.set()
    finetuner = LLMFinetuner(tiny_bert, config=TINY_CONFIG.replace(epochs=2))
    finetuner.fine_tune(*make_sentiment_data(16, seed=1), stop_event=stop)
    assert finetuner.trainer.state.global_step == 1 and finetuner.stopped


def test_a_stopped_run_skips_the_end_of_epoch_evaluation(tiny_bert):
    stop = threading.Event()
    stop.set()
    events = []
    finetuner = LLMFinetuner(tiny_bert, config=TINY_CONFIG.replace(epochs=2))
    texts, labels = make_sentiment_data(16, seed=1)
    finetuner.fine_tune(texts, labels, texts, labels, listener=events.append, stop_event=stop)
    assert finetuner.stopped and "evaluate" not in [event.kind for event in events]


def test_direct_api_sends_the_same_events_without_trainer_state(monkeypatch):
    """Training outside a Trainer (the embedding methods) reports through begin/step/log/evaluate/end."""
    clock = [0.0]
    monkeypatch.setattr(progress_module.time, "monotonic", lambda: clock[0])
    events, stop = [], threading.Event()
    callback = ProgressCallback(events.append, stop)
    callback.begin(4)
    clock[0] += 5.0
    assert callback.step(1, 0.25) is False
    clock[0] += 2.0
    callback.step(3, 0.75)
    callback.log(0.5)
    stop.set()
    assert callback.step(4, 1.0) is True and callback.stopped
    callback.evaluate({"eval_accuracy": 0.9, "eval_runtime": 0.1})
    callback.end()
    assert [e.kind for e in events] == ["start", "log", "evaluate", "end"]
    log = events[1]
    assert (log.step, log.max_steps, log.epoch, log.loss) == (3, 4, 0.75, 0.5)
    assert log.eta_seconds == pytest.approx(1.0)  # 2 s for steps 2-3, one step left
    assert events[2].metrics == {"accuracy": 0.9} and events[-1].stopped and events[-1].eta_seconds == 0.0
