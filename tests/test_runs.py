"""The run store: records written atomically, listing, interrupted runs, ids that cannot escape the root."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from finetuner.runs import RECORD_FILE, RunError, RunStore


@pytest.fixture
def store(tmp_path) -> RunStore:
    return RunStore(tmp_path / "runs")


def test_create_finish_and_read_back(store):
    record = store.create("some/model", preset="fast", config={"epochs": 1}, data={"rows": 6})
    assert record.status == "running" and store.get(record.id).status == "running"
    store.finish(record, "completed", metrics={"accuracy": 0.9}, labels=["a", "b"])
    again = store.get(record.id)
    assert again.status == "completed" and again.metrics == {"accuracy": 0.9} and again.labels == ["a", "b"]
    assert again.finished_at and again.duration_seconds is not None
    assert not list(store.path(record.id).glob(".run.json.*"))  # no staging files left behind


def test_the_method_choice_is_kept_and_old_records_without_it_still_load(store):
    record = store.create("some/model", config={"method": "auto"})
    assert record.method_choice == {} and record.method == "auto"  # before training has chosen
    store.finish(record, "completed", method_choice={"method": "head", "reason": "few examples"},
                 config={"method": "head"})
    again = store.get(record.id)
    assert again.method_choice == {"method": "head", "reason": "few examples"} and again.method == "head"
    path = store.path(record.id) / RECORD_FILE
    old = json.loads(path.read_text())
    del old["method_choice"]
    old["config"] = {"method": "lora"}
    path.write_text(json.dumps(old))
    assert store.get(record.id).method_choice == {} and store.get(record.id).method == "lora"


def test_a_method_choice_read_from_a_zip_is_cleaned():
    from finetuner.runs.store import _clean_method_choice
    assert _clean_method_choice({"method": "head", "reason": "few", "extra": 1}) == {"method": "head", "reason": "few"}
    assert _clean_method_choice({"method": "<script>", "reason": "x"}) == {}
    assert _clean_method_choice({"method": "head", "reason": 3}) == {} and _clean_method_choice(None) == {}
    assert len(_clean_method_choice({"method": "lora", "reason": "x" * 10_000})["reason"]) == 2000


def test_list_is_newest_first_and_skips_foreign_folders(store):
    first = store.create("m")
    second = store.create("m")
    (store.root / "not-a-run").mkdir()
    ids = [r.id for r in store.list()]
    assert set(ids) == {first.id, second.id} and ids == sorted(ids, reverse=True)


def test_the_environment_chooses_the_default_root(tmp_path, monkeypatch):
    monkeypatch.setenv("FINETUNER_RUNS_DIR", str(tmp_path / "elsewhere"))
    assert RunStore().root == tmp_path / "elsewhere"


def test_a_run_left_running_by_a_dead_process_reads_as_failed(store):
    record = store.create("m")
    path = store.path(record.id) / RECORD_FILE
    values = json.loads(path.read_text())
    values["process"] = "999999999-deadbeef"
    path.write_text(json.dumps(values))
    again = store.get(record.id)
    assert again.status == "failed" and "Interrupted" in again.error


@pytest.mark.parametrize("bad", ["../etc", "20250101-120000-abc123/../../x", "", None, "x" * 200, ".", "..",
                                 ".hidden", "a/b", "a\\b", "/abs"])
def test_run_ids_are_checked(store, bad):
    with pytest.raises(RunError, match="not a run id"):
        store.path(bad)


def test_missing_runs_and_models_give_clear_errors(store):
    with pytest.raises(RunError, match="not found"):
        store.get("20250101-120000-abc123")
    record = store.create("m")
    store.finish(record, "stopped")
    with pytest.raises(RunError, match="only completed runs have a model"):
        store.model_dir(record.id)
    with pytest.raises(RunError, match="only completed runs"):
        store.load_model(record.id)


def test_delete_refuses_running_runs_and_removes_finished_ones(store):
    record = store.create("m")
    with pytest.raises(RunError, match="still training"):
        store.delete(record.id)
    store.finish(record, "failed", error="boom")
    store.delete(record.id)
    assert store.list() == []


def test_evaluation_rows_round_trip(store):
    record = store.create("m")
    assert store.load_evaluation(record.id) is None
    rows = pd.DataFrame({"text": ["=1+1", "ok"], "label": ["a", "b"], "predicted_label": ["b", "b"],
                         "confidence": [0.9, 0.6]})
    store.save_evaluation(record.id, rows)
    back = store.load_evaluation(record.id)
    assert back["text"].tolist() == ["=1+1", "ok"] and back["confidence"].tolist() == [0.9, 0.6]


def test_an_owner_sees_only_their_runs_and_others_read_as_missing(store):
    alice, bob = "a" * 32, "b" * 32
    mine = store.create("m", owner=alice)
    theirs = store.create("m", owner=bob)
    legacy = store.create("m")  # made before owners existed, or by the Python API: nobody's in the app
    for record in (mine, theirs, legacy):
        store.finish(record, "failed", error="x")
    assert [r.id for r in store.list(alice)] == [mine.id] and [r.id for r in store.list(bob)] == [theirs.id]
    assert {r.id for r in store.list()} == {mine.id, theirs.id, legacy.id}  # no owner given: no check
    assert store.list("") == []
    missing = "20200101-000000-abcdef"
    for run_id in (theirs.id, legacy.id, missing):
        for call in (store.get, store.delete, store.model_dir, store.load_model, store.load_evaluation):
            with pytest.raises(RunError) as caught:
                call(run_id, alice)
            assert str(caught.value) == f"Run {run_id!r} not found in {store.root}."
    assert store.get(theirs.id).owner == bob
    store.delete(mine.id, alice)
    assert store.list(alice) == [] and store.get(theirs.id, bob).id == theirs.id


def test_runs_made_outside_the_app_are_shared_with_every_owner_but_not_deletable_there(store):
    alice, bob = "a" * 32, "b" * 32
    cli = store.create("m", origin="cli")  # python -m finetuner train --output RUNS/name
    named = store.create("m", origin="cli", run_id="my-sst2.run_2")
    for record in (cli, named):
        store.finish(record, "completed")
    assert store.get(named.id).shared and not store.create("m", origin="app", owner=alice).shared
    for owner in (alice, bob, ""):
        assert {cli.id, named.id} <= {r.id for r in store.list(owner)}
        assert store.get(named.id, owner).id == named.id
        with pytest.raises(RunError, match="made outside the app"):
            store.delete(named.id, owner)
    store.delete(named.id)  # no owner given: the command line and Python may
    assert named.id not in {r.id for r in store.list()}
