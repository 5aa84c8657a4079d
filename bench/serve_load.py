"""Load on ``finetuner serve``: concurrent clients, one text per request, against one sequential client; then the
bad inputs the server must refuse while it goes on serving (issue #22).

    python -m bench.serve_load MODEL_DIR [--data sst2/test.csv] [--clients 4] [--requests 200] [--sequential 100]
                                         [--threads N] [--backend B] [--max-wait-ms MS] [--max-batch N] [--output NAME]

MODEL_DIR is a run directory or a saved model directory. The server is the command itself (``python -m finetuner
serve --model MODEL_DIR --port P --quiet``, a separate process, its defaults unless ``--threads`` / ``--backend`` /
``--max-wait-ms`` / ``--max-batch`` are given). Each client is a thread with its own keep-alive connection
(``http.client``) posting ``{"texts": [one text]}`` in a loop; texts are the rows of ``--data`` in order, each
client its own slice. Reported: errors (any non-200 or a malformed answer), latency p50/p95/p99/max per request,
throughput (requests/s over the wall time of the phase), the model calls the server made (``GET /health``) and so
the mean texts per model call. Then: bad JSON (400), an empty list (422), a 10 MB body sent whole (413), and a good
request after them (200). Writes results/serve_load.json (``--output NAME``: results/NAME.json) with the machine and
its load average.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import pandas as pd

from .common import DATASETS_DIR, ROOT, load_avg, log, machine_info, write_json


def _free_port() -> int:
    import socket
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _request(connection: http.client.HTTPConnection, method: str, path: str,
             body: Optional[bytes] = None) -> Tuple[int, Any]:
    connection.request(method, path, body=body, headers={"Content-Type": "application/json"} if body else {})
    response = connection.getresponse()
    data = response.read()
    try:
        return response.status, json.loads(data)
    except ValueError:
        return response.status, data[:200].decode("utf-8", "replace")


def start_server(model: str, port: int, extra: List[str]) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
           "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, "-m", "finetuner", "serve", "--model", model, "--port", str(port), "--quiet", *extra]
    server = subprocess.Popen(command, cwd=str(ROOT), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"the server exited ({server.returncode}):\n{server.stderr.read()[-3000:]}")
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            if _request(connection, "GET", "/health")[0] == 200:
                return server
        except OSError:
            time.sleep(0.2)
    server.kill()
    raise RuntimeError("the server did not answer /health within 180 s")


def load_phase(port: int, texts: List[str], clients: int, requests: int) -> Dict[str, Any]:
    """``clients`` threads × ``requests`` requests of one text each; latency and throughput."""
    latencies: List[List[float]] = [[] for _ in range(clients)]
    errors: List[List[str]] = [[] for _ in range(clients)]
    start = threading.Barrier(clients + 1)

    def client(number: int) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        start.wait()
        for i in range(requests):
            text = texts[(number * requests + i) % len(texts)]
            began = time.perf_counter()
            try:
                status, body = _request(connection, "POST", "/predict", json.dumps({"texts": [text]}).encode())
                ok = status == 200 and len(body["predictions"]) == 1 and body["predictions"][0]["label"]
            except Exception as exc:  # a broken connection counts as an error; the next request reconnects
                status, ok = f"{type(exc).__name__}: {exc}", False
                connection.close()
            latencies[number].append(time.perf_counter() - began)
            if not ok:
                errors[number].append(str(status))
        connection.close()

    before = _health(port)["stats"]
    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    for thread in threads:
        thread.start()
    start.wait()
    began = time.perf_counter()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - began
    after = _health(port)["stats"]
    all_latencies = np.array([v for per_client in latencies for v in per_client]) * 1000
    all_errors = [e for per_client in errors for e in per_client]
    calls = after["model_calls"] - before["model_calls"]
    total = clients * requests
    return {"clients": clients, "requests_per_client": requests, "requests": total, "errors": len(all_errors),
            "error_examples": sorted(set(all_errors))[:5], "wall_s": round(wall, 3),
            "throughput_rps": round(total / wall, 1),
            "latency_ms": {name: round(float(np.percentile(all_latencies, q)), 2)
                           for name, q in (("p50", 50), ("p95", 95), ("p99", 99), ("max", 100))},
            "latency_ms_mean": round(float(all_latencies.mean()), 2),
            "model_calls": calls, "texts_per_model_call": round((after["texts"] - before["texts"]) / max(calls, 1), 2),
            "largest_batch_requests": after["largest_batch_requests"]}


def _health(port: int) -> Dict[str, Any]:
    return _request(http.client.HTTPConnection("127.0.0.1", port, timeout=30), "GET", "/health")[1]


def bad_input_checks(port: int) -> Dict[str, Any]:
    """Each bad request on a fresh connection and its answer, then a good one on the same connection."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    checks: Dict[str, Any] = {}
    for name, body, expected in (("bad_json", b'{"texts": ["good", ', 400), ("empty_list", b'{"texts": []}', 422),
                                 ("wrong_type", b'{"texts": ["good", 3]}', 422),
                                 ("body_10MB", json.dumps({"texts": ["x" * 10_000_000]}).encode(), 413)):
        began = time.perf_counter()
        try:
            status, answer = _request(connection, "POST", "/predict", body)
        except Exception as exc:
            status, answer = None, f"{type(exc).__name__}: {exc}"
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        message = answer.get("error") if isinstance(answer, dict) else answer
        checks[name] = {"status": status, "expected": expected, "ok": status == expected, "message": message,
                        "seconds": round(time.perf_counter() - began, 3)}
    status, answer = _request(connection, "POST", "/predict", b'{"texts": ["a good film"]}')
    checks["still_serving"] = {"status": status, "ok": status == 200,
                               "label": answer["predictions"][0]["label"] if status == 200 else answer}
    return checks


def run(model: str, data: Path, clients: int, requests: int, sequential: int, extra: List[str]) -> Dict[str, Any]:
    frame = pd.read_csv(data, keep_default_na=False)
    texts = [t for t in frame["text"].astype(str) if t.strip()]
    port = _free_port()
    load_start = load_avg()
    log(f"starting the server on port {port}")
    started = time.perf_counter()
    server = start_server(model, port, extra)
    startup = time.perf_counter() - started
    try:
        health = _health(port)
        load_phase(port, texts, 1, 10)  # warm-up
        log(f"sequential: 1 client x {sequential} requests")
        single = load_phase(port, texts, 1, sequential) if sequential else None
        log(f"concurrent: {clients} clients x {requests} requests")
        concurrent = load_phase(port, texts, clients, requests)
        log("bad inputs")
        checks = bad_input_checks(port)
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
    return {"settings": {"model": model, "data": str(data), "texts": len(texts), "clients": clients,
                         "requests_per_client": requests, "sequential_requests": sequential,
                         "server_flags": extra, "limits": health["limits"], "model_identity": health["model"]},
            "machine": machine_info(), "load_avg_start": load_start, "load_avg_end": load_avg(),
            "server_startup_s": round(startup, 2), "sequential": single, "concurrent": concurrent,
            "bad_inputs": checks, "server_exit_code": server.returncode}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="a run directory or a saved model directory")
    parser.add_argument("--data", type=Path, default=DATASETS_DIR / "sst2" / "test.csv",
                        help="table with a 'text' column (default: SST-2 test)")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--requests", type=int, default=200, help="requests per client")
    parser.add_argument("--sequential", type=int, default=100, help="requests of one client alone first (0: none)")
    parser.add_argument("--max-wait-ms", type=float, help="the server's --max-wait-ms (default: its own)")
    parser.add_argument("--max-batch", type=int, help="the server's --max-batch (default: its own)")
    parser.add_argument("--threads", type=int, help="the server's --threads (default: one per core)")
    parser.add_argument("--backend", choices=("auto", "torch", "onnx"),
                        help="the server's --backend (default: auto)")
    parser.add_argument("--output", default="serve_load", help="results/NAME.json (default: serve_load)")
    args = parser.parse_args()
    extra = [*(["--max-wait-ms", str(args.max_wait_ms)] if args.max_wait_ms is not None else []),
             *(["--max-batch", str(args.max_batch)] if args.max_batch is not None else []),
             *(["--threads", str(args.threads)] if args.threads is not None else []),
             *(["--backend", args.backend] if args.backend else [])]
    result = run(args.model, args.data, args.clients, args.requests, args.sequential, extra)
    result["command"] = " ".join(["python -m bench.serve_load", *sys.argv[1:]])
    path = write_json(args.output, result)
    print(json.dumps({k: result[k] for k in ("sequential", "concurrent", "bad_inputs")}, indent=2))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
