"""A small HTTP JSON API for a trained classifier (``python -m finetuner serve``), without the Gradio app.

``POST /predict`` with ``{"texts": ["...", ...]}`` answers, for each text, the predicted label, its probability and
every class's probability (a model of several labels per text: the list of predicted ``labels``, those whose
probability reaches their threshold, and every label's probability; a model of a number per text: the predicted
``value``); ``GET /health`` the model, its task, labels, limits and counters; ``GET /labels`` the labels; ``GET /``
what the service offers.

Requests that arrive together are predicted together (:class:`MicroBatcher`): one worker takes what is waiting
(up to ``max_batch`` texts, waiting at most ``max_wait_ms`` for more while the model is idle), runs one model call
in a single worker thread and hands every request its rows. There is one model call at a time.

Limits, each answered with a 4xx and a message saying what is wrong and how to fix it (the server goes on
serving): a body over ``max_body_bytes`` (413; refused from its Content-Length before it is read, and a body sent
without one is cut off there), a body that is not JSON (400), ``texts`` missing, empty, not a list of non-blank
strings (422) or longer than ``max_texts`` (422). There is no limit on a text's length: a text longer than the
model's input length is read in at most 16 overlapping windows (:mod:`finetuner.training.windows`; the body limit
bounds what is sent). The API has no authentication:
it listens on 127.0.0.1 unless told otherwise.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Deque, Dict, List, Optional, Sequence

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from . import __version__
from .errors import described

logger = logging.getLogger("finetuner.serve")

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
DEFAULT_MAX_TEXTS = 256
DEFAULT_MAX_BODY_BYTES = 1_000_000
DEFAULT_MAX_WAIT_MS = 5.0
DEFAULT_MAX_BATCH = 64
PROBABILITY_DECIMALS = 6  # as `finetuner predict` writes them


class ModelCallError(RuntimeError):
    """The model failed on a batch (the message is the one sent back to the client)."""


# ----------------------------------------------------------------------------------------------- micro-batching

@dataclass
class BatchStats:
    """What the batcher has done: requests and texts predicted, model calls, the largest batch, failed calls."""

    requests: int = 0
    texts: int = 0
    model_calls: int = 0
    largest_batch_texts: int = 0
    largest_batch_requests: int = 0
    failed_calls: int = 0
    batch_sizes: Dict[int, int] = field(default_factory=dict)  # requests in a model call -> how many such calls

    def as_dict(self) -> Dict[str, Any]:
        stats = asdict(self)
        stats["batch_sizes"] = {str(k): v for k, v in sorted(self.batch_sizes.items())}
        return stats


@dataclass
class _Pending:
    texts: List[str]
    future: "asyncio.Future[np.ndarray]"


class MicroBatcher:
    """Predicts the texts of concurrent requests in shared model calls.

    ``await batcher.predict(texts)`` queues the request; one worker task takes the first waiting request, waits up
    to ``max_wait_ms`` for more while fewer than ``max_batch`` texts are waiting, then calls ``predict`` once (in
    one worker thread, so one model call at a time) on every text taken and resolves each request's future with
    its rows. Requests are never split: one larger than ``max_batch`` is a call of its own. While a call runs, new
    requests wait in the queue and make up the next batch. When a call of several requests fails, each is retried
    alone, so that one request that breaks the model fails alone; a failure reaches its request as
    :class:`ModelCallError`, and the worker goes on.
    """

    def __init__(self, predict: Callable[[List[str]], np.ndarray], *, max_batch: int = DEFAULT_MAX_BATCH,
                 max_wait_ms: float = DEFAULT_MAX_WAIT_MS):
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1; got {max_batch}.")
        if not max_wait_ms >= 0:
            raise ValueError(f"max_wait_ms must be 0 or more; got {max_wait_ms}.")
        self._predict = predict
        self.max_batch = max_batch
        self.max_wait = max_wait_ms / 1000
        self.stats = BatchStats()
        self._pending: Deque[_Pending] = collections.deque()
        self._waiting_texts = 0
        self._arrived: Optional[asyncio.Event] = None
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._worker: Optional[asyncio.Task] = None
        self._executor: Optional[ThreadPoolExecutor] = None

    async def predict(self, texts: List[str]) -> np.ndarray:
        """The probabilities of ``texts`` (shape texts × classes), predicted with whatever else is waiting."""
        self._start()
        future: asyncio.Future[np.ndarray] = asyncio.get_running_loop().create_future()
        self._pending.append(_Pending(list(texts), future))
        self._waiting_texts += len(texts)
        self._arrived.set()
        return await future

    def _start(self) -> None:
        """Start the worker on the running event loop (again when the loop has changed, e.g. in tests)."""
        loop = asyncio.get_running_loop()
        if self._loop is loop and self._worker is not None and not self._worker.done():
            return
        self._loop = loop
        self._arrived = asyncio.Event()
        self._pending.clear()
        self._waiting_texts = 0
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="finetuner-model")
        self._worker = loop.create_task(self._run(), name="finetuner-micro-batcher")

    async def close(self) -> None:
        """Stop the worker (requests still waiting get an error) and the model thread."""
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError, RuntimeError):
                await self._worker
            self._worker = None
        while self._pending:
            item = self._pending.popleft()
            if not item.future.done():
                item.future.set_exception(ModelCallError("The server is shutting down; send the request again "
                                                         "once it is back."))
        self._waiting_texts = 0
        if self._executor is not None:
            self._executor.shutdown(wait=False)
            self._executor = None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            while not self._pending:
                self._arrived.clear()
                await self._arrived.wait()
            if self.max_wait > 0 and self._waiting_texts < self.max_batch:  # the model is idle: let others join
                deadline = loop.time() + self.max_wait
                while self._waiting_texts < self.max_batch:
                    remaining = deadline - loop.time()
                    if remaining <= 0:
                        break
                    self._arrived.clear()
                    try:
                        await asyncio.wait_for(self._arrived.wait(), remaining)
                    except asyncio.TimeoutError:
                        break
            batch = [self._pending.popleft()]
            count = len(batch[0].texts)
            while self._pending and count + len(self._pending[0].texts) <= self.max_batch:
                item = self._pending.popleft()
                batch.append(item)
                count += len(item.texts)
            self._waiting_texts -= count
            batch = [item for item in batch if not item.future.done()]  # a client that has gone
            if batch:
                await self._call(loop, batch)

    async def _call(self, loop: asyncio.AbstractEventLoop, batch: List[_Pending]) -> None:
        texts = [text for item in batch for text in item.texts]
        try:
            probabilities = await self._model_call(loop, texts, len(batch))
        except ModelCallError as exc:
            if len(batch) == 1:
                _fail(batch[0], exc)
                return
            for item in batch:  # which request breaks the model? each alone
                try:
                    _resolve(item, await self._model_call(loop, item.texts, 1))
                except ModelCallError as alone:
                    _fail(item, alone)
            return
        start = 0
        for item in batch:
            _resolve(item, probabilities[start:start + len(item.texts)])
            start += len(item.texts)

    async def _model_call(self, loop: asyncio.AbstractEventLoop, texts: List[str], requests: int) -> np.ndarray:
        stats = self.stats
        stats.model_calls += 1
        stats.batch_sizes[requests] = stats.batch_sizes.get(requests, 0) + 1
        stats.largest_batch_texts = max(stats.largest_batch_texts, len(texts))
        stats.largest_batch_requests = max(stats.largest_batch_requests, requests)
        try:
            probabilities = np.asarray(await loop.run_in_executor(self._executor, self._predict, texts))
            if probabilities.ndim != 2 or probabilities.shape[0] != len(texts):
                raise RuntimeError(f"the model returned an array of shape {probabilities.shape} for "
                                   f"{len(texts)} texts")
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            stats.failed_calls += 1
            logger.exception("Model call on %d texts failed", len(texts))
            raise ModelCallError(f"The model failed on this request ({described(exc)}). The server keeps "
                                 "serving; the server's log has the traceback.") from exc
        stats.requests += requests
        stats.texts += len(texts)
        return probabilities


def _resolve(item: _Pending, rows: np.ndarray) -> None:
    if not item.future.done():
        item.future.set_result(rows)


def _fail(item: _Pending, exc: BaseException) -> None:
    if not item.future.done():
        item.future.set_exception(exc)


# ----------------------------------------------------------------------------------------------- request limits

class RequestError(Exception):
    """A request the API refuses: the status code and a message saying what is wrong and how to fix it."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def _error_body(status: int, message: str) -> bytes:
    return json.dumps({"error": message, "status": status}).encode("utf-8")


class BodyLimit:
    """ASGI middleware: refuses a request body over ``max_bytes`` with 413 before the app sees it.

    A Content-Length over the limit is refused before any of the body is read (a client that sent
    ``Expect: 100-continue`` never sends it); a body without one (chunked) is read up to the limit and refused
    there. What the client still sends is discarded by the server, never kept. The app gets the body in one piece.
    """

    def __init__(self, app: Any, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    @property
    def state(self) -> Any:
        """The wrapped app's ``state``."""
        return self.app.state

    def _too_large(self, declared: Optional[int] = None) -> str:
        size = f"is {declared:,} bytes (its Content-Length), over" if declared is not None else "goes over"
        return (f"The request body {size} this server's limit of {self.max_bytes:,} bytes. Send fewer or shorter "
                "texts per request (or start the server with a larger --max-body-bytes).")

    async def __call__(self, scope: Dict[str, Any], receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None:
            try:
                length = int(declared)
            except ValueError:
                await _send_error(send, 400, "The Content-Length header is not a number; send a valid one.")
                return
            if length > self.max_bytes:
                await _send_error(send, 413, self._too_large(length))
                return
        chunks: List[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body = message.get("body", b"")
            size += len(body)
            if size > self.max_bytes:
                await _send_error(send, 413, self._too_large())
                return
            chunks.append(body)
            if not message.get("more_body", False):
                break
        whole = b"".join(chunks)
        delivered = False

        async def replay() -> Dict[str, Any]:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": whole, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


async def _send_error(send: Callable, status: int, message: str) -> None:
    body = _error_body(status, message)
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def parse_texts(body: bytes, max_texts: int) -> List[str]:
    """The texts of a ``/predict`` body, or a :class:`RequestError` saying what is wrong with it."""
    example = 'Send JSON such as {"texts": ["first text", "second text"]}.'
    if not body.strip():
        raise RequestError(400, f"The request body is empty. {example}")
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise RequestError(400, f"The request body is not UTF-8 text (byte {exc.start}). {example}") from None
    try:
        payload = json.loads(text)
    except ValueError as exc:  # json.JSONDecodeError: says where
        raise RequestError(400, f"The request body is not valid JSON ({exc}). {example}") from None
    except RecursionError:
        raise RequestError(400, f"The request body nests JSON arrays or objects too deeply. {example}") from None
    if not isinstance(payload, dict):
        raise RequestError(422, f"The request body is a JSON {_json_type(payload)}, not an object. {example}")
    if "texts" not in payload:
        hint = ' (for one text too: {"texts": ["..."]})' if "text" in payload else ""
        raise RequestError(422, f"The request has no \"texts\" field{hint}. {example}")
    texts = payload["texts"]
    if not isinstance(texts, list):
        raise RequestError(422, f"\"texts\" is a JSON {_json_type(texts)}; it must be a list of strings. {example}")
    if not texts:
        raise RequestError(422, f"\"texts\" is empty; give at least one text. {example}")
    if len(texts) > max_texts:
        raise RequestError(422, f"\"texts\" has {len(texts):,} texts, over this server's limit of {max_texts:,} per "
                                "request. Split them over several requests (or start the server with a larger "
                                "--max-texts).")
    wrong = [i for i, text in enumerate(texts) if not isinstance(text, str)]
    if wrong:
        shown = ", ".join(f"texts[{i}] is a JSON {_json_type(texts[i])}" for i in wrong[:5])
        more = f" and {len(wrong) - 5} more" if len(wrong) > 5 else ""
        raise RequestError(422, f"Every text must be a string: {shown}{more}. Put the texts in quotes.")
    blank = [i for i, text in enumerate(texts) if not text.strip()]
    if blank:
        shown = ", ".join(f"texts[{i}]" for i in blank[:10])
        more = f" and {len(blank) - 10} more" if len(blank) > 10 else ""
        raise RequestError(422, f"{shown}{more} {'is' if len(blank) == 1 else 'are'} empty or blank; give a text "
                                "to classify or leave it out.")
    return texts


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


# ----------------------------------------------------------------------------------------------- the app

def model_identity(classifier: Any, name: Optional[str] = None) -> Dict[str, Any]:
    """What the responses say about the model: its name (the directory it was loaded from, when given), the
    pre-trained model it started from, the training method and what predicts (ONNX Runtime or PyTorch)."""
    base = getattr(classifier, "model_name", None) or getattr(classifier, "base_model", None)
    config = getattr(classifier, "config", None)
    inner = getattr(classifier, "classifier", classifier)  # LLMFinetuner wraps a TextClassifier
    return {"name": name or base or type(classifier).__name__, "base_model": base,
            "method": getattr(config, "method", None), "backend": getattr(inner, "backend", None)}


def create_app(classifier: Any, *, name: Optional[str] = None, max_texts: int = DEFAULT_MAX_TEXTS,
               max_body_bytes: int = DEFAULT_MAX_BODY_BYTES, max_wait_ms: float = DEFAULT_MAX_WAIT_MS,
               max_batch: int = DEFAULT_MAX_BATCH) -> Any:
    """The API for ``classifier`` (a :class:`~finetuner.LLMFinetuner` or :class:`~finetuner.TextClassifier`:
    anything with ``predict_proba_array`` and ``label_map``); ``name`` identifies the model in the responses.

    The returned ASGI app is the body-size limit around a FastAPI app; ``app.state`` (both share it) holds the
    ``batcher`` (its ``stats`` count model calls), ``limits`` and ``model``.
    """
    for setting, value in (("max_texts", max_texts), ("max_body_bytes", max_body_bytes), ("max_batch", max_batch)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{setting} must be a whole number of at least 1; got {value!r}.")
    if isinstance(max_wait_ms, bool) or not isinstance(max_wait_ms, (int, float)) or not math.isfinite(max_wait_ms) \
            or max_wait_ms < 0:
        raise ValueError(f"max_wait_ms must be 0 or more; got {max_wait_ms!r}.")
    labels = [str(label) for label in classifier.label_map.names]
    task = classifier.label_map.task
    thresholds = (list(map(float, classifier.label_thresholds())) if task == "multi_label" else None)
    identity = model_identity(classifier, name)
    limits = {"max_texts": max_texts, "max_body_bytes": max_body_bytes, "max_batch": max_batch,
              "max_wait_ms": max_wait_ms}
    batcher = MicroBatcher(lambda texts: classifier.predict_proba_array(texts), max_batch=max_batch,
                           max_wait_ms=max_wait_ms)

    @contextlib.asynccontextmanager
    async def lifespan(_app: Any):
        yield
        await batcher.close()

    api = FastAPI(title="finetuner", version=__version__, lifespan=lifespan,
                  description=f"Text classification with {identity['name']} (labels: {', '.join(labels)}).")
    api.state.batcher, api.state.limits, api.state.model, api.state.labels = batcher, limits, identity, labels
    api.state.task = task
    # What a response adds for the other tasks (one label per text keeps its response as it always was).
    extra: Dict[str, Any] = {} if task == "single_label" else {"task": task}
    answers = {"single_label": "label and class probabilities for each text",
               "multi_label": "the labels above their thresholds and every label's probability for each text",
               "regression": "the predicted value for each text"}[task]

    def error(status: int, message: str) -> JSONResponse:
        return JSONResponse({"error": message, "status": status}, status_code=status)

    @api.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 404:
            return error(404, f"No such endpoint: {request.url.path}. The endpoints are POST /predict, GET /health, "
                              "GET /labels and GET /.")
        if exc.status_code == 405:
            return error(405, f"{request.method} is not allowed on {request.url.path}; see GET / for how to call "
                              "each endpoint.")
        return error(exc.status_code, str(exc.detail))

    @api.get("/")
    async def index() -> Dict[str, Any]:
        return {"service": "finetuner text classification", "version": __version__, "model": identity,
                "endpoints": {"POST /predict": f'body {{"texts": ["...", ...]}}: {answers}',
                              "GET /health": "status, model, labels, limits and counters",
                              "GET /labels": "the labels, in the order of the probabilities"},
                "limits": limits}

    @api.get("/health")
    async def health() -> Dict[str, Any]:
        thresholds_of = {"thresholds": dict(zip(labels, thresholds))} if thresholds is not None else {}
        return {"status": "ok", "model": identity, "task": task, "labels": labels, **thresholds_of,
                "limits": limits, "stats": batcher.stats.as_dict()}

    @api.get("/labels")
    async def get_labels() -> Dict[str, Any]:
        return {"labels": labels}

    @api.post("/predict", openapi_extra={"requestBody": {"required": True, "content": {"application/json": {
        "schema": {"type": "object", "required": ["texts"], "properties": {"texts": {
            "type": "array", "minItems": 1, "maxItems": max_texts, "items": {"type": "string"}}}},
        "example": {"texts": ["what a great film", "a dull, boring plot"]}}}}})
    async def predict(request: Request) -> JSONResponse:
        """The label, its probability and every class's probability for each text (several labels per text: the
        labels and every label's probability; a number: the value)."""
        try:
            texts = parse_texts(await request.body(), max_texts)
        except RequestError as exc:
            return error(exc.status, exc.message)
        try:
            probabilities = await batcher.predict(texts)
        except ModelCallError as exc:
            return error(500, str(exc))
        return JSONResponse({"model": identity, **extra, "labels": labels,
                             "predictions": predictions(probabilities, labels, task, thresholds)})

    return BodyLimit(api, max_body_bytes)


def predictions(probabilities: np.ndarray, labels: Sequence[str], task: str = "single_label",
                thresholds: Optional[Sequence[float]] = None) -> List[Dict[str, Any]]:
    """One ``{"label", "confidence", "probabilities": {label: p}}`` per row, probabilities rounded as
    ``finetuner predict`` writes them. Several labels per text: ``{"labels": [the labels whose probability reaches
    their threshold (default 0.5)], "probabilities": {label: p}}``; a number per text: ``{"value": v}``."""
    if task == "regression":
        return [{"value": float(v)} for v in np.round(np.asarray(probabilities, dtype=np.float64)[:, 0],
                                                      PROBABILITY_DECIMALS)]
    if task == "multi_label":
        scores = np.asarray(probabilities, dtype=np.float64)
        limits = np.full(len(labels), 0.5) if thresholds is None else np.asarray(thresholds, dtype=np.float64)
        chosen = scores >= limits[None, :]  # before rounding, as the model decides
        rows = np.round(scores, PROBABILITY_DECIMALS)
        return [{"labels": [label for label, on in zip(labels, keep) if on],
                 "probabilities": {label: float(p) for label, p in zip(labels, row)}}
                for row, keep in zip(rows, chosen)]
    best = np.asarray(probabilities).argmax(axis=1)  # before rounding: a near-tie keeps the model's own label
    rows = np.round(np.asarray(probabilities, dtype=np.float64), PROBABILITY_DECIMALS)
    return [{"label": labels[b], "confidence": float(row[b]),
             "probabilities": {label: float(p) for label, p in zip(labels, row)}} for row, b in zip(rows, best)]


# ----------------------------------------------------------------------------------------------- running it

def bind(host: str, port: int) -> Any:
    """A listening socket on ``host:port`` (port 0: any free port); OSError when it cannot be had."""
    import socket
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def serve(app: Any, sock: Any, *, log_level: str = "info", access_log: bool = True) -> None:
    """Serve ``app`` with uvicorn on the bound socket ``sock`` until interrupted (Ctrl-C stops it cleanly)."""
    import uvicorn
    config = uvicorn.Config(app, log_level=log_level, access_log=access_log, timeout_graceful_shutdown=5,
                            lifespan="on")
    uvicorn.Server(config).run(sockets=[sock])
