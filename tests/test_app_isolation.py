"""Users of one app never see each other's runs or models: two gradio_client users train and predict at the
same time on different label sets; model zips import safely; local model paths can be turned off."""

from __future__ import annotations

import html
import re
import shutil
import tempfile
import threading
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd
import pytest
from gradio_client import Client, handle_file

from conftest import make_sentiment_data, serve_app
from finetuner.errors import ModelLoadError
from finetuner.runs import RunStore
from finetuner.ui.common import LOCAL_MODELS_ENV, SessionOwners, check_model_name, is_owner_id

RUN_ID = re.compile(r"\d{8}-\d{6}-[0-9a-f]{6}")
STATE = re.compile(r'data-state="(\w+)"')
QUICK = {"preset_name": "fast", "method": "finetune", "epochs": 3, "learning_rate": 3e-3, "batch_size": 16,
         "api_name": "/train"}
SENTIMENT = {"positive", "negative"}
TOPICS = {"topic-a", "topic-b", "topic-c"}


@pytest.fixture(scope="module")
def served(tmp_path_factory, tiny_bert):
    runs = tmp_path_factory.mktemp("runs")
    with serve_app(runs, tiny_bert) as url:
        yield url, runs


@pytest.fixture(scope="module")
def tables(tmp_path_factory):
    """Two users' data: sentiment (positive/negative) and topics (topic-a/b/c, written by this test)."""
    folder = tmp_path_factory.mktemp("tables")
    texts, labels = make_sentiment_data(60, seed=3)
    pd.DataFrame({"text": texts, "label": labels}).to_csv(folder / "sentiment.csv", index=False)
    texts, labels = make_sentiment_data(60, seed=4, classes=("positive", "negative", "neutral"))
    topic = {"positive": "topic-a", "negative": "topic-b", "neutral": "topic-c"}
    pd.DataFrame({"sentence": texts, "topic": [topic[x] for x in labels]}).to_csv(folder / "topics.csv", index=False)
    return folder / "sentiment.csv", folder / "topics.csv"


def _client(url: str) -> Client:
    return Client(url, verbose=False)


def _message(exc: BaseException) -> str:
    return html.unescape(str(exc))


def _state(job) -> str:
    outputs = job.outputs()
    found = STATE.search(outputs[-1][0]) if outputs else None
    return found[1] if found else "submitted"


def _history(client: Client) -> tuple:
    """(run ids in the history table, run ids offered in the run picker)."""
    table, picker = client.predict(api_name="/list_runs")
    return [row[0] for row in table["data"]], [value for _, value in picker["choices"]]


def _labels_of(prediction: dict) -> set:
    return {item["label"] for item in prediction["confidences"]}


def _refused(call, run_id: str) -> str:
    with pytest.raises(Exception) as caught:
        call()
    message = _message(caught.value)
    assert "not found" in message and "Traceback" not in message, message
    return message.replace(run_id, "<id>")


def test_two_users_at_once_never_see_each_others_runs_or_models(served, tables):
    url, runs_dir = served
    alice, bob = _client(url), _client(url)
    sentiment, topics = tables
    alice_submitted, bob_training = threading.Event(), threading.Event()
    bob_job = {}

    def alice_flow():
        loaded = alice.predict(handle_file(str(sentiment)), 0.2, api_name="/load_file")
        assert "**60 rows**, **2 classes**" in loaded[5]
        job = alice.submit(**{**QUICK, "epochs": 10})
        while _state(job) == "submitted":  # wait until the server has queued it, so that bob comes second
            time.sleep(0.02)
        alice_submitted.set()
        progress = job.result(timeout=180)[0]
        assert "Completed" in progress, progress
        run_id = RUN_ID.search(progress)[0]
        # Bob's training was queued behind this one; it runs now. Predictions keep working meanwhile.
        assert bob_training.wait(timeout=180), "bob's training never started"
        during, labels = 0, set()
        while not bob_job["job"].done():
            prediction = alice.predict("a wonderful film, i really enjoyed it", api_name="/predict")
            labels |= _labels_of(prediction) | {prediction["label"]}
            if not bob_job["job"].done() and _state(bob_job["job"]) == "running":
                during += 1  # started and answered while bob's model was training
        return run_id, during, labels

    def bob_flow():
        loaded = bob.predict(handle_file(str(topics)), 0.2, api_name="/load_file")
        assert "**60 rows**, **3 classes**" in loaded[5] and "`sentence`" in loaded[5]
        assert alice_submitted.wait(timeout=60)
        job = bob_job["job"] = bob.submit(**{**QUICK, "epochs": 60, "batch_size": 8, "text_column": "sentence",
                                             "label_column": "topic"})
        seen = set()
        while not job.done():
            seen.add(_state(job))
            if "running" in seen:
                bob_training.set()
            time.sleep(0.05)
        progress = job.result(timeout=5)[0]
        assert "Completed" in progress, progress
        return RUN_ID.search(progress)[0], seen

    with ThreadPoolExecutor(2) as pool:
        alice_future, bob_future = pool.submit(alice_flow), pool.submit(bob_flow)
        try:
            bob_run, bob_states = bob_future.result(timeout=300)
        finally:
            bob_training.set()  # never leave alice waiting when bob failed
        alice_run, predictions_while_bob_trained, alice_labels = alice_future.result(timeout=300)

    assert "queued" in bob_states and "running" in bob_states  # one training at a time; bob waited in line
    assert predictions_while_bob_trained >= 1
    assert alice_labels <= SENTIMENT
    bob_prediction = bob.predict("a wonderful film, i really enjoyed it", api_name="/predict")
    assert _labels_of(bob_prediction) == TOPICS and bob_prediction["label"] in TOPICS
    assert _labels_of(alice.predict("an awful boring film", api_name="/predict")) == SENTIMENT

    # Each sees only their own run, in the history table and in the run picker.
    assert _history(alice) == ([alice_run], [alice_run])
    assert _history(bob) == ([bob_run], [bob_run])
    assert _history(_client(url)) == ([], [])  # a new session owns nothing

    # The other's run id behaves exactly like an id that does not exist, for every action.
    missing = "20200101-000000-abcdef"
    for name in ("/load_run", "/export_model", "/delete_run"):
        for caller, other in ((alice, bob_run), (bob, alice_run)):
            as_foreign = _refused(lambda: caller.predict(other, api_name=name), other)
            assert as_foreign == _refused(lambda: caller.predict(missing, api_name=name), missing)
    # Nothing was deleted or exported for the wrong user, and both models still answer their owners.
    assert _history(alice)[0] == [alice_run] and _history(bob)[0] == [bob_run]
    assert not any(bob_run in path.name for path in (Path(tempfile.gettempdir()) / "finetuner-exports").glob("*"))
    assert _labels_of(bob.predict("what a day", api_name="/predict")) == TOPICS
    assert (runs_dir / bob_run / "model").is_dir() and (runs_dir / alice_run / "model").is_dir()
    owners = {RunStore(runs_dir).get(run).owner for run in (alice_run, bob_run)}
    assert len(owners) == 2 and all(is_owner_id(owner) for owner in owners)

    # Each can use, export and delete their own run.
    assert "is now the active model" in alice.predict(alice_run, api_name="/load_run")
    assert Path(alice.predict(alice_run, api_name="/export_model")).name == f"finetuner-{alice_run}.zip"
    table, _, status = bob.predict(bob_run, api_name="/delete_run")
    assert f"Deleted run {bob_run}" in status and table["data"] == []
    assert not (runs_dir / bob_run).exists()
    with pytest.raises(Exception, match="No model yet"):
        bob.predict("still there?", api_name="/predict")  # the active model was deleted


def test_an_exported_zip_imports_as_a_new_run_that_predicts_identically(served, tables, tmp_path):
    url, runs_dir = served
    owner, other = _client(url), _client(url)
    owner.predict(handle_file(str(tables[0])), 0.2, api_name="/load_file")
    progress = owner.predict(**QUICK)[0]
    run_id = RUN_ID.search(progress)[0]
    texts = ["a wonderful film", "an awful boring film", "what a day"]
    expected = [owner.predict(text, api_name="/predict") for text in texts]
    archive = owner.predict(run_id, api_name="/export_model")

    status = other.predict(handle_file(archive), api_name="/import_model")
    imported = RUN_ID.search(status)[0]
    assert imported != run_id and "now the active model" in status
    for text, before in zip(texts, expected):
        after = other.predict(text, api_name="/predict")
        assert after["label"] == before["label"]
        confidences = {item["label"]: item["confidence"] for item in before["confidences"]}
        for item in after["confidences"]:
            assert item["confidence"] == pytest.approx(confidences[item["label"]], abs=1e-5)
    record = RunStore(runs_dir).get(imported)
    assert record.status == "completed" and record.preset == "imported" and record.labels == ["negative", "positive"]
    assert record.metrics == RunStore(runs_dir).get(run_id).metrics  # from the zip's finetuner.json
    assert is_owner_id(record.owner) and record.owner != RunStore(runs_dir).get(run_id).owner  # the uploader's
    assert _history(other) == ([imported], [imported]) and imported not in _history(owner)[0]
    title, metrics, *_ = other.predict(None, api_name="/evaluate")
    assert imported in title and [row[0] for row in metrics["data"]][:1] == ["Accuracy"]
    assert Path(other.predict(imported, api_name="/export_model")).name == f"finetuner-{imported}.zip"


def _zip(path: Path, members: dict, links: tuple = ()) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, content in members.items():
            archive.writestr(name, content)
        for name in links:
            info = zipfile.ZipInfo(name)
            info.external_attr = 0o120777 << 16  # a symbolic link
            archive.writestr(info, "/etc/passwd")
    return path


@pytest.mark.parametrize("members, links, words", [
    ({"model/finetuner.json": "{}", "../../evil.txt": "x"}, (), "outside the target folder"),
    ({"model/finetuner.json": "{}", "/tmp/evil.txt": "x"}, (), "outside the target folder"),
    ({"model/finetuner.json": "{}"}, ("model/tokenizer.json",), "is a link"),
    ({"model/finetuner.json": "{}", "model/pytorch_model.bin": "x"}, (), "pickle"),
    ({"notes/readme.txt": "hello"}, (), "no finetuner model"),
    ({"model/finetuner.json": '{"labels": ["a", "b"]}', "model/model.safetensors": "not weights"}, (),
     "could not be loaded"),
], ids=["traversal", "absolute path", "link", "pickle", "not a model", "broken weights"])
def test_unsafe_or_broken_zips_are_refused_and_nothing_is_written(served, tmp_path, members, links, words):
    url, runs_dir = served
    client = _client(url)
    before = sorted(p.name for p in runs_dir.iterdir())
    upload = _zip(tmp_path / "model.zip", members, links)
    with pytest.raises(Exception) as caught:
        client.predict(handle_file(str(upload)), api_name="/import_model")
    message = _message(caught.value)
    assert words in message and "Traceback" not in message, message
    assert sorted(p.name for p in runs_dir.iterdir()) == before  # no run, no staging folder left behind
    assert not (tmp_path.parent / "evil.txt").exists() and not Path("/tmp/evil.txt").exists()
    assert _history(client) == ([], [])


def test_a_zip_bomb_is_refused_before_extraction(tmp_path):
    store = RunStore(tmp_path / "runs")
    bomb = tmp_path / "bomb.zip"
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("model/finetuner.json", "{}")
        archive.writestr("model/model.safetensors", b"\0" * (3 * 2**20))
    with pytest.raises(ModelLoadError, match="unpacks to 3 MB"):
        store.import_zip(bomb, owner="a" * 32, max_unpacked_mb=1)
    assert list(store.root.iterdir()) == []


def test_local_model_paths_can_be_turned_off(served, tables, tiny_bert, monkeypatch, tmp_path):
    url, _ = served
    client = _client(url)
    client.predict(handle_file(str(tables[0])), 0.2, api_name="/load_file")
    monkeypatch.setenv(LOCAL_MODELS_ENV, "0")  # the app runs in this process and reads it on each call
    other_model = shutil.copytree(tiny_bert, tmp_path / "copy")  # a model folder, but not the app's default
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs" / "x").mkdir(parents=True)  # Hub-style names that transformers would load from disk
    names = [str(other_model), str(tmp_path / "no-such-model"), "/etc", "~/models/x", "../x", "a/b/c", "copy",
             "runs/x", "runs/no-such-run", "C:\\models\\x"]
    messages = set()
    for name in names:
        with pytest.raises(Exception) as caught:
            client.predict(**{**QUICK, "model_name": name})
        message = _message(caught.value)
        assert "local model folders cannot be used on this server" in message and "Traceback" not in message
        messages.add(message.replace(repr(name), "<name>"))
    assert len(messages) == 1  # the same answer whether the path exists or not
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(Exception, match="cannot be reached"):  # Hub ids still pass the switch
        client.predict(**{**QUICK, "model_name": "distilbert-base-uncased"})
    assert "Completed" in client.predict(**QUICK)[0]  # the app's own default model (a local folder) still works


def test_the_model_switch_and_owner_ids_without_an_app(monkeypatch, tmp_path):
    offered = ["/srv/models/default"]
    for value in ("1", "", "yes"):
        monkeypatch.setenv(LOCAL_MODELS_ENV, value)
        check_model_name("/any/local/path", offered)
    monkeypatch.setenv(LOCAL_MODELS_ENV, "0")
    check_model_name("/srv/models/default", offered)
    for hub_id in ("distilbert-base-uncased", "microsoft/deberta-v3-small", "minilm"):
        check_model_name(hub_id, offered)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "secret-folder").mkdir()
    for path in ("secret-folder", "secret-folder/model", "/srv/models/other", "./x", "x/../y", "."):
        with pytest.raises(ModelLoadError, match="local model folders cannot be used"):
            check_model_name(path, offered)

    owners = SessionOwners(capacity=2)

    class Request:
        def __init__(self, session):
            self.session_hash = session

    first = owners.get(Request("s1"))
    assert is_owner_id(first) and owners.get(Request("s1")) == first and owners.get(Request("s2")) != first
    saved = "0123456789abcdef" * 2
    assert owners.restore(Request("s3"), saved) == saved and owners.get(Request("s3")) == saved
    assert owners.restore(Request("s4"), "../not-an-id") != "../not-an-id"
    assert owners.get(Request("s1")) != first  # forgotten beyond the capacity: a fresh owner
    assert owners.get(None) != owners.get(None)  # no session: owns nothing that lasts
