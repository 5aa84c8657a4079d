"""The app reads only files that were uploaded to it (finetuner/ui/uploads.py).

An outsider's API client names files on the server instead of uploading them: an existing table with an allowed
extension, a link inside Gradio's upload folder that points out, and an ``upload/../`` path. Every event that takes
a file refuses each one and answers nothing of the file: the public endpoints through gradio_client, and every
event with a file input (the page's private ones too, which Gradio also answers over plain HTTP) through the HTTP
API. Twice: with the app started by ``launch()`` (Gradio refuses such paths itself) and mounted into a FastAPI
server with ``gr.mount_gradio_app`` (Gradio checks nothing there; the app's own check is all that holds). Genuine
uploads still work on every file endpoint, and the other strings that name something on the server (sample names,
run ids, model names) stay refused in the same way.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
import threading
import time
import zipfile
from pathlib import Path
from typing import Iterator

import fastapi
import gradio as gr
import httpx
import pytest
import uvicorn
from gradio.utils import get_upload_folder
from gradio_client import Client, handle_file
from gradio_client.client import Endpoint

from bad_inputs import SERVER_PATH_CASES
from conftest import free_port, make_sentiment_data, serve_app
from finetuner.errors import UploadError
from finetuner.ui import build_app
from finetuner.ui.common import LOCAL_MODELS_ENV
from finetuner.ui.uploads import ALLOWED_DIRS_ENV, NOT_UPLOADED, UploadBox, uploaded_file

SECRET = "TOP SECRET"
PUBLIC_FILE_ENDPOINTS = {"/load_file", "/evaluate", "/predict_file", "/import_model"}
RUN_ID = re.compile(r"\d{8}-\d{6}-[0-9a-f]{6}")
QUICK = {"preset_name": "fast", "method": "finetune", "epochs": 3, "learning_rate": 3e-3, "batch_size": 16,
         "api_name": "/train"}


@contextlib.contextmanager
def mounted_app(runs_dir: Path, model: str) -> Iterator[str]:
    """The app mounted into a FastAPI server (``gr.mount_gradio_app``) under uvicorn in this process."""
    server_app = gr.mount_gradio_app(fastapi.FastAPI(), build_app(runs_dir=runs_dir, model=model), path="/")
    port = free_port()
    # Gradio's event streams stay open: without a timeout, shutting down waits for them until join() gives up.
    server = uvicorn.Server(uvicorn.Config(server_app, host="127.0.0.1", port=port, log_level="warning",
                                           timeout_graceful_shutdown=1))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "uvicorn did not start"
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture(scope="module", params=["launched", "mounted"])
def served(request, tmp_path_factory, tiny_bert):
    serve = serve_app if request.param == "launched" else mounted_app
    with serve(tmp_path_factory.mktemp("runs"), tiny_bert) as url:
        yield request.param, url


@pytest.fixture(scope="module")
def secrets(tmp_path_factory) -> dict:
    """Paths of server files nobody uploaded, by the suffix a file input accepts and by kind of attack (the
    corpus's SERVER_PATH_CASES): a table and a model zip outside the upload folder, links to them from inside it,
    ``..`` paths that start inside it."""
    folder = tmp_path_factory.mktemp("operator-files")
    table = folder / "secret.csv"
    table.write_text("text,label\n" + "".join(f"{SECRET} line {i},{'ab'[i % 2]}\n" for i in range(20)))
    archive = folder / "secret.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        bundle.writestr("finetuner.json", json.dumps({"labels": [SECRET]}))
    uploads = Path(get_upload_folder()) / f"finetuner-test-{os.getpid()}"
    uploads.mkdir(parents=True, exist_ok=True)
    return {original.suffix: {name: where(original, uploads) for name, where in SERVER_PATH_CASES}
            for original in (table, archive)}


@pytest.fixture
def outsider(monkeypatch):
    """gradio_client as a client on another machine would use it: a file argument is sent as the path it names
    instead of being uploaded first (here client and server share one disk, so it would upload)."""
    monkeypatch.setattr(Endpoint, "_upload_file", lambda self, f, data_index: {
        "path": f["path"], "meta": {"_type": "gradio.FileData"}})


def _named(path: str) -> dict:
    """A file argument naming ``path`` (``handle_file`` would first check that the path exists on the client)."""
    return {"path": path, "meta": {"_type": "gradio.FileData"}}


def _suffix(types) -> str:
    return ".zip" if types and ".zip" in types else ".csv"


def _file_events(url: str) -> list:
    """Every event of the app with a file input: (api name, input values with the file's position marked, suffix
    the file input accepts). The values are the components' defaults; a state input is None."""
    config = httpx.get(url + "config", timeout=30).json()
    components = {c["id"]: c for c in config["components"]}
    events = []
    for dependency in config["dependencies"]:
        inputs = [components[i] for i in dependency["inputs"]]
        files = [i for i, c in enumerate(inputs) if c["type"] == "file"]
        if files and dependency.get("api_name"):
            values = [None if c["type"] in ("state", "file") else c.get("props", {}).get("value") for c in inputs]
            events.append((dependency["api_name"], values, files[0],
                           _suffix(inputs[files[0]]["props"].get("file_types"))))
    return events


def _http_call(url: str, api_name: str, data: list) -> str:
    """One event over Gradio's HTTP API; returns the whole streamed answer."""
    event = httpx.post(f"{url}gradio_api/call/{api_name}", json={"data": data}, timeout=30)
    event.raise_for_status()
    return httpx.get(f"{url}gradio_api/call/{api_name}/{event.json()['event_id']}", timeout=60).text


def test_every_file_event_refuses_server_paths_over_http(served, secrets):
    kind, url = served
    events = _file_events(url)
    names = {name for name, *_ in events}
    assert {name.lstrip("/") for name in PUBLIC_FILE_ENDPOINTS} <= names, names
    assert "load_eval" in names  # the page's own private events are checked as well
    for name, values, at, suffix in events:
        payloads = {attack: {"path": path} for attack, path in secrets[suffix].items()}
        # Gradio moves no stream into its cache: the handler would get the path as sent
        payloads["stream"] = {"path": secrets[suffix][SERVER_PATH_CASES[0][0]], "is_stream": True}
        for attack, payload in payloads.items():
            data = list(values)
            data[at] = {**payload, "meta": {"_type": "gradio.FileData"}}
            answer = _http_call(url, name, data)
            assert "event: error" in answer, (kind, name, attack, answer[:300])
            assert SECRET not in answer and "line 1" not in answer, (kind, name, attack)
            if kind == "mounted":  # Gradio said nothing: the app's own refusal, readable
                assert json.loads(answer.split("data:", 1)[1])["error"] == NOT_UPLOADED, (name, attack, answer)


def test_public_file_endpoints_refuse_server_paths_through_gradio_client(served, secrets, outsider):
    kind, url = served
    client = Client(url, verbose=False)
    for name in sorted(PUBLIC_FILE_ENDPOINTS):
        extra = (0.2,) if name == "/load_file" else ()
        for attack, path in secrets[".zip" if name == "/import_model" else ".csv"].items():
            with pytest.raises(Exception) as refused:
                client.predict(_named(path), *extra, api_name=name)
            message = str(refused.value)
            assert SECRET not in message and "Traceback" not in message, (kind, name, attack, message)
            if kind == "mounted":
                assert NOT_UPLOADED in message and "&#x27;" not in message, (name, attack, message)


def test_genuine_uploads_still_work_on_every_file_endpoint(served, tmp_path):
    """Load a table, train, evaluate on a test file, predict a file, export and import the model zip."""
    kind, url = served
    texts, labels = make_sentiment_data(60, seed=5)
    table = tmp_path / "reviews.csv"
    table.write_text("text,label\n" + "".join(f"{t},{y}\n" for t, y in zip(texts, labels)))
    client = Client(url, verbose=False)
    loaded = client.predict(handle_file(str(table)), 0.2, api_name="/load_file")
    assert "**60 rows**, **2 classes**" in loaded[5]
    run_id = RUN_ID.search(client.predict(**QUICK)[0])[0]
    title, metrics, *_ = client.predict(handle_file(str(table)), api_name="/evaluate")
    assert "reviews.csv" in title and "(60 rows)" in title and metrics["data"][0][0] == "Accuracy"
    csv, preview, note = client.predict(handle_file(str(table)), api_name="/predict_file")
    assert "Predicted 60 row(s)" in note and Path(csv).read_text().count("\n") == 61
    archive = client.predict(run_id, api_name="/export_model")
    status = client.predict(handle_file(archive), api_name="/import_model")
    assert "now the active model" in status and RUN_ID.search(status)[0] != run_id


def test_an_operator_allowed_folder_is_read_where_the_app_checks(secrets, tmp_path, monkeypatch, outsider,
                                                                  tiny_bert):
    """FINETUNER_ALLOWED_DIRS (off by default) lets a mounted app read server files in the folders it names."""
    table = secrets[".csv"][SERVER_PATH_CASES[0][0]]
    monkeypatch.setenv(ALLOWED_DIRS_ENV, str(Path(table).parent))
    with mounted_app(tmp_path / "runs", tiny_bert) as url:
        loaded = Client(url, verbose=False).predict(_named(table), 0.2, api_name="/load_file")
    assert "**20 rows**, **2 classes**" in loaded[5]


def test_uploaded_file_resolves_before_it_compares(secrets, tmp_path, monkeypatch):
    monkeypatch.delenv(ALLOWED_DIRS_ENV, raising=False)
    for path in (*secrets[".csv"].values(), "relative.csv", "/etc/passwd", "https://example.com/a.csv", "a\x00b"):
        with pytest.raises(UploadError, match="not uploaded to this app"):
            uploaded_file(path)
    assert uploaded_file(None) is None and uploaded_file("") is None
    genuine = Path(get_upload_folder()) / f"finetuner-test-{os.getpid()}" / "genuine.csv"
    genuine.write_text("text,label\n")
    assert uploaded_file(str(genuine)) == genuine.resolve()
    assert uploaded_file({"path": str(genuine)}) == genuine.resolve()
    monkeypatch.setenv(ALLOWED_DIRS_ENV, os.pathsep.join(["", str(tmp_path)]))
    (tmp_path / "kept.csv").write_text("text,label\n")
    assert uploaded_file(str(tmp_path / "kept.csv")) == (tmp_path / "kept.csv").resolve()
    with pytest.raises(UploadError):
        uploaded_file(str(tmp_path / ".." / "elsewhere.csv"))


def test_other_strings_that_name_server_things_are_refused(served, monkeypatch):
    """Sample names, run ids and (with local models off) model names never become paths of the client's choice."""
    kind, url = served
    client = Client(url, verbose=False)
    for name in ("../README.md", "/etc/passwd", "../../sample_data/../README.md"):
        with pytest.raises(Exception, match="No sample called|not in the list of choices"):
            client.predict(name, 0.2, api_name="/load_sample")
    for run_id in ("../..", "/etc", "20250101-120000-abc123/../..", ".."):
        for endpoint in ("/load_run", "/export_model", "/delete_run"):
            with pytest.raises(Exception) as refused:
                client.predict(run_id, api_name=endpoint)
            assert f"{run_id!r} is not a run id" in str(refused.value)  # readable: quotes not HTML-escaped
    monkeypatch.setenv(LOCAL_MODELS_ENV, "0")
    client.predict("movie_reviews_sst2.csv", 0.2, api_name="/load_sample")
    for model in ("/etc", "../runs", tempfile.gettempdir()):
        with pytest.raises(Exception, match="local model folders cannot be used"):
            client.predict(**{**QUICK, "model_name": model})


def test_every_file_input_of_the_app_is_an_upload_box(tmp_path):
    """A new file input cannot skip the rule: each gr.File that feeds an event is an UploadBox."""
    app = build_app(runs_dir=tmp_path)
    inputs = {block._id for fn in app.fns.values() for block in fn.inputs}
    files = [block for block in app.blocks.values() if isinstance(block, gr.File) and block._id in inputs]
    assert len(files) == 5 and all(isinstance(block, UploadBox) for block in files), files
