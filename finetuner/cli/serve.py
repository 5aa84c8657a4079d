"""``serve``: a trained model as a small HTTP JSON API (``POST /predict``, ``GET /health``); see
:mod:`finetuner.serve`."""

from __future__ import annotations

import argparse
import ipaddress
import json
from typing import Any

from .console import EXIT_OK, Console, UsageError
from .processes import is_main_process
from .run_dir import find_model_dir, load_model
from .settings import value_parser

# The defaults of finetuner.serve, repeated so that --help answers without importing it (fastapi, numpy)
DEFAULT_HOST, DEFAULT_PORT = "127.0.0.1", 8000
DEFAULT_MAX_TEXTS, DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_WAIT_MS, DEFAULT_MAX_BATCH = 256, 1_000_000, 5.0, 64


def add_parser(subparsers: Any, common: argparse.ArgumentParser) -> None:
    p = subparsers.add_parser(
        "serve", parents=[common], help="serve a trained model as an HTTP JSON API",
        description="Serve a trained model as an HTTP JSON API: POST /predict with {\"texts\": [...]} answers the "
                    "label and every class's probability for each text; GET /health the model and its labels. "
                    "Requests that arrive together are predicted in one model batch. No authentication: keep the "
                    "default host (this machine only) unless the network is trusted.")
    p.add_argument("--model", metavar="DIR", required=True, help="a run directory or a saved model directory")
    p.add_argument("--host", default=DEFAULT_HOST, help=f"address to listen on (default: {DEFAULT_HOST}, this "
                                                        "machine only; 0.0.0.0: every network interface)")
    p.add_argument("--port", type=value_parser(int), default=DEFAULT_PORT, metavar="N",
                   help=f"port to listen on (default: {DEFAULT_PORT}; 0: any free port)")
    p.add_argument("--max-texts", type=value_parser(int), default=DEFAULT_MAX_TEXTS, metavar="N",
                   help=f"most texts in one request (default: {DEFAULT_MAX_TEXTS})")
    p.add_argument("--max-body-bytes", type=value_parser(int), default=DEFAULT_MAX_BODY_BYTES, metavar="N",
                   help=f"largest request body (default: {DEFAULT_MAX_BODY_BYTES:,} bytes)")
    p.add_argument("--max-batch", type=value_parser(int), default=DEFAULT_MAX_BATCH, metavar="N",
                   help=f"most texts of concurrent requests predicted in one model call (default: "
                        f"{DEFAULT_MAX_BATCH})")
    p.add_argument("--max-wait-ms", type=value_parser(float), default=DEFAULT_MAX_WAIT_MS, metavar="MS",
                   help=f"how long an idle model waits for more requests to batch with the first (default: "
                        f"{DEFAULT_MAX_WAIT_MS:g}; 0: no wait)")
    p.add_argument("--batch-size", type=value_parser(int), metavar="N",
                   help="texts per forward pass within a model call (default: the model's eval_batch_size)")
    p.add_argument("--threads", type=value_parser(int), metavar="N",
                   help="CPU threads for the model's computations (default: one per core; on a machine whose cores "
                        "other work keeps busy, 1 can be much faster)")
    p.add_argument("--backend", choices=("auto", "torch", "onnx"), default="auto",
                   help="auto (default): ONNX Runtime when the model folder holds an export (finetuner export), "
                        "else PyTorch; onnx: build the graph now if there is none")
    p.set_defaults(run=run)


def _check(args: argparse.Namespace) -> None:
    prog = "finetuner serve"
    if not 0 <= args.port <= 65535:
        raise UsageError(f"--port must be between 0 and 65535; got {args.port}", prog)
    for flag in ("max_texts", "max_body_bytes", "max_batch"):
        if getattr(args, flag) < 1:
            raise UsageError(f"--{flag.replace('_', '-')} must be at least 1; got {getattr(args, flag)}", prog)
    if not args.max_wait_ms >= 0 or args.max_wait_ms == float("inf"):
        raise UsageError(f"--max-wait-ms must be 0 or more (milliseconds); got {args.max_wait_ms}", prog)
    if args.batch_size is not None and args.batch_size < 1:
        raise UsageError(f"--batch-size must be at least 1; got {args.batch_size}", prog)
    if args.threads is not None and args.threads < 1:
        raise UsageError(f"--threads must be at least 1; got {args.threads}", prog)


def run(args: argparse.Namespace) -> int:
    """Load the model, bind the port, print the URL and serve until interrupted."""
    if not is_main_process():  # one server; the other processes of a launch have nothing to do
        return EXIT_OK
    _check(args)
    console = Console(args.quiet)
    model_dir = find_model_dir(args.model)  # a bad --model answers before the slow imports
    from .. import serve
    try:
        sock = serve.bind(args.host, args.port)
    except OSError as exc:
        hint = "choose another with --port (0: any free port)" if args.port else "check --host"
        raise UsageError(f"cannot listen on {args.host}:{args.port} ({exc.strerror or exc}); {hint}",
                         "finetuner serve") from None
    try:
        console.info(f"Loading {model_dir} ...")
        if args.threads:
            import torch
            torch.set_num_threads(args.threads)
        finetuner = load_model(str(model_dir), args.batch_size, args.backend)  # ONNX Runtime takes torch's threads
        app = serve.create_app(finetuner, name=str(args.model), max_texts=args.max_texts,
                               max_body_bytes=args.max_body_bytes, max_wait_ms=args.max_wait_ms,
                               max_batch=args.max_batch)
        host, port = sock.getsockname()[:2]
        url = f"http://{_url_host(host)}:{port}"
        if not _is_loopback(args.host):
            console.warn(f"listening on {args.host}: anyone who can reach this machine on port {port} can use "
                         "the API (it has no authentication)")
        example = json.dumps({"texts": ["what a great film", "a dull, boring plot"]})
        what = {"regression": "predicts a number: ", "multi_label": "several labels per text: "}.get(
            app.state.task, "labels: ")
        console.result(f"Serving {args.model} ({what}{', '.join(app.state.labels)}) at {url}\n"
                       f"  curl -s {url}/predict -H 'Content-Type: application/json' -d '{example}'\n"
                       f"  curl -s {url}/health\n"
                       "Press Ctrl-C to stop.")
        serve.serve(app, sock, log_level="warning" if args.quiet else "info", access_log=not args.quiet)
    finally:
        sock.close()
    return EXIT_OK


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _url_host(host: str) -> str:
    if host in ("0.0.0.0", "::"):
        return "127.0.0.1" if host == "0.0.0.0" else "[::1]"
    return f"[{host}]" if ":" in host else host
