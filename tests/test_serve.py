"""``finetuner serve``: the HTTP JSON API on a tiny trained model, its limits, micro-batching and the command."""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from collections.abc import Iterator
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import pytest
import uvicorn
from conftest import TINY_CONFIG, free_port, make_sentiment_data
from fastapi.testclient import TestClient

from finetuner import LLMFinetuner
from finetuner.serve import MicroBatcher, ModelCallError, create_app

TEXTS = ["good", "the movie was awful and boring", "i really enjoyed this film , superb", "bad",
         "what a wonderful day and a great show overall", "xyzzy unknown words here"]


@pytest.fixture(scope="module")
def trained(tiny_bert) -> LLMFinetuner:
    """A tiny model trained for one epoch on string labels (well under a second)."""
    finetuner = LLMFinetuner(tiny_bert, config=TINY_CONFIG.replace(epochs=1))
    finetuner.fine_tune(*make_sentiment_data(40, seed=1))
    return finetuner


@pytest.fixture(scope="module")
def client(trained) -> Iterator[TestClient]:
    with TestClient(create_app(trained, name="tiny", max_texts=8, max_body_bytes=200_000)) as test_client:
        yield test_client


def assert_refused(response, status: int, *words: str) -> None:
    assert response.status_code == status, response.text
    message = response.json()["error"]
    for word in words:
        assert word in message, message


def assert_still_serves(client: TestClient) -> None:
    response = client.post("/predict", json={"texts": ["good"]})
    assert response.status_code == 200, response.text


# --------------------------------------------------------------------------------------------- the API

def test_predictions_are_the_models(client, trained):
    response = client.post("/predict", json={"texts": TEXTS})
    assert response.status_code == 200, response.text
    body = response.json()
    expected = trained.predict_proba_array(TEXTS)
    names = trained.label_map.names
    assert body["labels"] == names == ["negative", "positive"]
    assert body["model"] == {"name": "tiny", "base_model": trained.model_name, "method": "finetune", "backend": "torch"}
    assert len(body["predictions"]) == len(TEXTS)
    for row, prediction in zip(expected, body["predictions"]):
        assert list(prediction["probabilities"]) == names  # the label map's order, names as strings
        assert np.allclose([prediction["probabilities"][n] for n in names], row, atol=1e-5)
        assert prediction["label"] == names[int(row.argmax())]
        assert prediction["confidence"] == pytest.approx(float(row.max()), abs=1e-5)


def test_health_labels_and_index(client):
    health = client.get("/health").json()
    assert health["status"] == "ok" and health["labels"] == ["negative", "positive"]
    assert health["model"]["name"] == "tiny"
    assert health["limits"] == {"max_texts": 8, "max_body_bytes": 200_000, "max_batch": 64, "max_wait_ms": 5.0}
    assert {"requests", "texts", "model_calls", "largest_batch_texts"} <= set(health["stats"])
    assert client.get("/labels").json() == {"labels": ["negative", "positive"]}
    assert "POST /predict" in client.get("/").json()["endpoints"]


@pytest.mark.parametrize("body, status, words", [
    (b"{not json", 400, ["not valid JSON", "line 1 column 2", '{"texts"']),
    (b"", 400, ["empty", '{"texts"']),
    (b"\xff\xfe", 400, ["UTF-8"]),
    (b"[" * 100_000, 400, ["nests JSON arrays or objects too deeply"]),
    (b'["good"]', 422, ["JSON array, not an object"]),
    (b'{"text": "good"}', 422, ['no "texts" field', '{"texts": ["..."]}']),
    (b'{"texts": "good"}', 422, ['"texts" is a JSON string', "list of strings"]),
    (b'{"texts": []}', 422, ['"texts" is empty', "at least one"]),
    (b'{"texts": ["good", 3, null, ["x"]]}', 422, ["texts[1] is a JSON number", "texts[2] is a JSON null",
                                                   "texts[3] is a JSON array"]),
    (b'{"texts": ["good", "  "]}', 422, ["texts[1] is empty or blank"]),
    (json.dumps({"texts": ["good"] * 9}).encode(), 422, ["9 texts", "limit of 8", "--max-texts"]),
])
def test_bad_requests_are_refused_with_a_message(client, body, status, words):
    assert_refused(client.post("/predict", content=body, headers={"content-type": "application/json"}),
                   status, *words)
    assert_still_serves(client)


def test_an_over_size_body_is_refused(client):
    big = json.dumps({"texts": ["good " * 2_000_000]}).encode()  # 10 MB
    assert_refused(client.post("/predict", content=big), 413, f"{len(big):,} bytes", "limit of 200,000 bytes",
                   "--max-body-bytes")
    assert_still_serves(client)


def test_unknown_endpoints_and_methods(client):
    assert_refused(client.get("/nope"), 404, "/nope", "POST /predict")
    assert_refused(client.get("/predict"), 405, "GET is not allowed")


class Flaky:
    """A classifier whose model call fails on a text containing "boom"."""

    def __init__(self, classifier: Any):
        self.classifier, self.label_map = classifier, classifier.label_map

    def predict_proba_array(self, texts: List[str]) -> np.ndarray:
        if any("boom" in text for text in texts):
            raise RuntimeError("out of memory (boom)")
        return self.classifier.predict_proba_array(texts)


def test_a_failing_model_call_is_a_500_and_the_server_goes_on(trained):
    with TestClient(create_app(Flaky(trained))) as client:
        assert_refused(client.post("/predict", json={"texts": ["boom"]}), 500, "RuntimeError: out of memory (boom)",
                       "keeps serving")
        assert_still_serves(client)
        assert client.get("/health").json()["stats"]["failed_calls"] == 1


# --------------------------------------------------------------------------------------------- micro-batching

def run_concurrently(batcher: MicroBatcher, requests: List[List[str]]) -> List[Any]:
    async def main():
        try:
            return await asyncio.gather(*(batcher.predict(texts) for texts in requests), return_exceptions=True)
        finally:
            await batcher.close()
    return asyncio.run(main())


def counting_model(calls: List[List[str]]):
    def predict(texts: List[str]) -> np.ndarray:
        calls.append(list(texts))
        if any("boom" in text for text in texts):
            raise RuntimeError("boom")
        return np.array([[len(text), 1.0] for text in texts])
    return predict


def test_requests_waiting_together_share_one_model_call():
    calls: List[List[str]] = []
    batcher = MicroBatcher(counting_model(calls), max_batch=64, max_wait_ms=50)
    requests = [["a"], ["bb", "ccc"], ["dddd"]]
    results = run_concurrently(batcher, requests)
    assert calls == [["a", "bb", "ccc", "dddd"]]
    for texts, result in zip(requests, results):  # each request gets its own rows back
        assert result[:, 0].tolist() == [len(t) for t in texts]
    assert batcher.stats.model_calls == 1 and batcher.stats.requests == 3 and batcher.stats.texts == 4


def test_a_batch_holds_at_most_max_batch_texts_and_requests_are_never_split():
    calls: List[List[str]] = []
    batcher = MicroBatcher(counting_model(calls), max_batch=3, max_wait_ms=0)
    results = run_concurrently(batcher, [["a", "b"], ["c", "d"], ["e"], ["f", "g", "h", "i"]])
    assert calls == [["a", "b"], ["c", "d", "e"], ["f", "g", "h", "i"]]  # the last is larger than a batch: alone
    assert [len(r) for r in results] == [2, 2, 1, 4]


def test_a_failing_request_fails_alone_and_the_worker_goes_on():
    calls: List[List[str]] = []
    batcher = MicroBatcher(counting_model(calls), max_batch=64, max_wait_ms=50)
    results = run_concurrently(batcher, [["a"], ["boom"], ["cc"]])
    assert isinstance(results[1], ModelCallError) and "RuntimeError: boom" in str(results[1])
    assert results[0][:, 0].tolist() == [1] and results[2][:, 0].tolist() == [2]
    assert calls == [["a", "boom", "cc"], ["a"], ["boom"], ["cc"]]  # the batch failed: each again alone
    assert batcher.stats.failed_calls == 2


# --------------------------------------------------------------------------------------------- a real server

@contextlib.contextmanager
def running(app: Any) -> Iterator[int]:
    """``app`` under uvicorn in a thread on a free localhost port; yields the port."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.01)
    assert server.started, "uvicorn did not start"
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def post(connection: http.client.HTTPConnection, body: Any, path: str = "/predict",
         headers: Optional[Dict[str, str]] = None) -> Tuple[int, Dict[str, Any]]:
    data = body if isinstance(body, (bytes, Iterator)) else json.dumps(body).encode()
    connection.request("POST", path, body=data, headers={"Content-Type": "application/json", **(headers or {})},
                       encode_chunked=isinstance(body, Iterator))
    response = connection.getresponse()
    return response.status, json.loads(response.read())


@pytest.fixture(scope="module")
def server(trained) -> Iterator[Tuple[int, Any]]:
    app = create_app(trained, max_wait_ms=20, max_body_bytes=1_000_000)
    with running(app) as port:
        yield port, app


def test_concurrent_clients_are_micro_batched(server, trained):
    port, app = server
    texts = [f"{word} movie {i}" for i in range(25) for word in ("good", "awful", "superb", "boring")]
    expected = dict(zip(texts, trained.predict_proba_array(texts)))
    calls_before = app.state.batcher.stats.model_calls

    def client(number: int) -> int:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        wrong = 0
        for i in range(25):
            text = texts[number * 25 + i]
            status, body = post(connection, {"texts": [text]})
            probabilities = list(body["predictions"][0]["probabilities"].values()) if status == 200 else None
            wrong += status != 200 or not np.allclose(probabilities, expected[text], atol=1e-5)
        connection.close()
        return wrong

    with ThreadPoolExecutor(4) as pool:
        assert sum(pool.map(client, range(4))) == 0
    stats = app.state.batcher.stats
    calls = stats.model_calls - calls_before
    assert calls < 100, f"{calls} model calls for 100 concurrent requests: no micro-batching"
    assert stats.largest_batch_requests > 1


def test_an_over_size_body_is_refused_before_it_is_read(server):
    port, _ = server
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:  # headers only: the body never comes
        raw.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                    b"Content-Length: 10000000\r\n\r\n")
        answer = raw.recv(65536).decode()
    assert answer.startswith("HTTP/1.1 413") and "10,000,000 bytes" in answer
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    status, body = post(connection, json.dumps({"texts": ["x" * 10_000_000]}).encode())  # sent whole
    assert status == 413 and "limit of 1,000,000 bytes" in body["error"]
    chunks = iter([b'{"texts": ["'] + [b"x" * 100_000] * 20 + [b'"]}'])  # 2 MB, no Content-Length
    status, body = post(connection, chunks)
    assert status == 413 and "goes over this server's limit" in body["error"]
    assert post(connection, {"texts": ["good"]})[0] == 200  # the same connection still serves
    assert post(connection, b"{oops")[0] == 400
    assert post(http.client.HTTPConnection("127.0.0.1", port, timeout=30), {"texts": ["good"]})[0] == 200


# --------------------------------------------------------------------------------------------- the command

def test_serve_command_loads_a_saved_model_and_prints_how_to_call_it(trained, tmp_path, monkeypatch, capsys):
    from finetuner import serve as serve_module
    from finetuner.cli import main
    trained.save(tmp_path / "model")
    served = {}

    def fake_serve(app, sock, **kwargs):
        served.update(app=app, port=sock.getsockname()[1], **kwargs)

    monkeypatch.setattr(serve_module, "serve", fake_serve)
    assert main(["serve", "--model", str(tmp_path), "--port", "0", "--max-texts", "3"]) == 0
    out = capsys.readouterr().out
    url = f"http://127.0.0.1:{served['port']}"
    assert f"at {url}" in out and f"curl -s {url}/predict" in out and "labels: negative, positive" in out
    assert served["app"].state.limits["max_texts"] == 3
    with TestClient(served["app"]) as client:
        body = client.post("/predict", json={"texts": TEXTS[:3]}).json()
    assert np.allclose([list(p["probabilities"].values()) for p in body["predictions"]],
                       trained.predict_proba_array(TEXTS[:3]), atol=1e-5)
    assert body["model"]["name"] == str(tmp_path)


def test_serve_command_bad_input(tmp_path, capsys):
    from finetuner.cli import main
    assert main(["serve", "--model", str(tmp_path / "missing")]) == 2
    assert "no such model directory" in capsys.readouterr().err
    assert main(["serve", "--model", str(tmp_path), "--port", "70000"]) == 2
    assert "--port must be between 0 and 65535" in capsys.readouterr().err
    assert main(["serve", "--model", str(tmp_path), "--max-texts", "0"]) == 2
    assert "--max-texts must be at least 1" in capsys.readouterr().err
    assert main(["serve", "--model", str(tmp_path), "--threads", "0"]) == 2
    assert "--threads must be at least 1" in capsys.readouterr().err


def test_serve_command_says_when_the_port_is_taken(trained, tmp_path, capsys):
    from finetuner.cli import main
    trained.save(tmp_path / "model")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        assert main(["serve", "--model", str(tmp_path), "--port", str(port)]) == 2
    err = capsys.readouterr().err
    assert f"cannot listen on 127.0.0.1:{port}" in err and "--port" in err
