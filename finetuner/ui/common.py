"""What the tabs share: the per-process context, the per-session table value, owners, and error handling."""

from __future__ import annotations

import functools
import html
import inspect
import os
import re
import secrets
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional

import gradio as gr
import pandas as pd

from ..errors import FinetunerError, ModelLoadError
from ..runner import Runner
from ..runs import RunStore

TABLE_FILE_TYPES = [".csv", ".tsv", ".txt", ".jsonl", ".json", ".xlsx", ".parquet"]
LOCAL_MODELS_ENV = "FINETUNER_ALLOW_LOCAL_MODELS"
_OWNER_ID = re.compile(r"^[0-9a-f]{32}$")
# Longer cells are cut for display (a 10 MB cell would stall the page); the data itself keeps the full text.
MAX_CELL_CHARS = 5_000
_CUT_NOTE = " … [{more:,} more characters not shown]"
_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,95}(/[A-Za-z0-9][A-Za-z0-9_.-]{0,95})?$")


def new_owner_id() -> str:
    """A random owner id (128 bits): whoever holds it sees that owner's runs, so it is never shown to others."""
    return secrets.token_hex(16)


def is_owner_id(value: Any) -> bool:
    return isinstance(value, str) and bool(_OWNER_ID.match(value))


class SessionOwners:
    """The owner id of each session (a page load, or one gradio_client ``Client``).

    A session starts with a fresh owner id; a browser page replaces it with the id kept in its
    ``gr.BrowserState`` (see :meth:`restore`), so reloading the page keeps its runs. The least recently
    used sessions are forgotten beyond ``capacity``."""

    def __init__(self, capacity: int = 10_000):
        self.capacity = capacity
        self._owners: "OrderedDict[str, str]" = OrderedDict()
        self._lock = threading.Lock()

    def get(self, request: Optional[gr.Request]) -> str:
        """The owner id of the request's session (a new one for a new session)."""
        return self._set(request, None)

    def restore(self, request: Optional[gr.Request], saved: Any) -> str:
        """Use the owner id a browser kept (when it is one), else keep the session's; returns the id."""
        return self._set(request, saved if is_owner_id(saved) else None)

    def forget(self, request: Optional[gr.Request]) -> None:
        session = getattr(request, "session_hash", None)
        with self._lock:
            self._owners.pop(session or "", None)

    def _set(self, request: Optional[gr.Request], owner: Optional[str]) -> str:
        session = getattr(request, "session_hash", None)
        if not session:  # no session to remember it in: an owner of nothing
            return owner or new_owner_id()
        with self._lock:
            owner = owner or self._owners.get(session) or new_owner_id()
            self._owners[session] = owner
            self._owners.move_to_end(session)
            while len(self._owners) > self.capacity:
                self._owners.popitem(last=False)
        return owner


@dataclass
class TableData:
    """A table held in a session's ``gr.State``, with the name of the file or sample it came from."""

    frame: pd.DataFrame
    name: str = ""


@dataclass
class AppContext:
    """Shared by every session of one app: the run store, the training runner, defaults, and the
    session's active run (the ``gr.State`` whose run the Evaluate, Predict and Export tabs use)."""

    store: RunStore
    runner: Runner
    default_model: str
    samples_dir: Path
    active_run: gr.State
    owners: SessionOwners
    session_started: Any = None  # the page-load event that restores the browser's owner id (chain with .then)

    def owner(self, request: Optional[gr.Request]) -> str:
        """The owner id of the request's session: only that owner's runs are listed, loaded or changed."""
        return self.owners.get(request)

    def samples(self) -> List[str]:
        if not self.samples_dir.is_dir():
            return []
        return sorted(p.name for p in self.samples_dir.iterdir() if p.suffix.lower() in TABLE_FILE_TYPES)


def user_errors(fn: Optional[Callable[..., Any]] = None, *,
                keep: Optional[Callable[[str], Any]] = None) -> Callable[..., Any]:
    """Turn :class:`FinetunerError` into a message for the user instead of a traceback.

    On the page (the browser's own calls carry ``x-gradio-user: app``) the message shows in a warning toast
    and the event's outputs keep what they showed: the handler returns ``keep(message)`` — updates that are
    ``gr.skip()`` except a status line that repeats the message — or a single ``gr.skip()`` without ``keep``.
    (A raised ``gr.Error`` would turn every output into a red "Error" badge.) API clients (gradio_client,
    the JS client, plain HTTP) get a ``gr.Error`` with the message, so their call fails with it."""
    if fn is None:
        return functools.partial(user_errors, keep=keep)

    def kept(exc: FinetunerError) -> Any:
        message = str(exc)
        if not from_page():
            raise error(message) from None
        warn(message)
        return keep(message) if keep is not None else gr.skip()

    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def generator(*args: Any, **kwargs: Any):
            try:
                yield from fn(*args, **kwargs)
            except FinetunerError as exc:
                yield kept(exc)
        return generator

    @functools.wraps(fn)
    def function(*args: Any, **kwargs: Any):
        try:
            return fn(*args, **kwargs)
        except FinetunerError as exc:
            return kept(exc)
    return function


def from_page() -> bool:
    """Whether the running event was sent by the app's own page (not by an API client)."""
    from gradio.context import LocalContext

    request = LocalContext.request.get(None)
    headers = getattr(request, "headers", None) or {}
    return headers.get("x-gradio-user") == "app"


def page_update(component: Callable[..., Any], value: Any, **props: Any) -> Any:
    """``value`` with other ``props`` (a title, column widths) on the page, and as the value alone for API clients,
    which would otherwise get the update's properties instead of the value."""
    return component(value, **props) if from_page() else value


def status_line(message: str) -> str:
    """A persistent status line for a user error (markdown; the message is escaped)."""
    return f"**Problem:** {html.escape(message)}"


def kept_outputs(count: int, values: Dict[int, Any]) -> List[Any]:
    """Updates for ``count`` outputs: ``gr.skip()`` (unchanged) except ``values`` (by position)."""
    return [values[i] if i in values else gr.skip() for i in range(count)]


def local_models_allowed() -> bool:
    """Whether the model picker accepts local model folders (FINETUNER_ALLOW_LOCAL_MODELS, default on)."""
    return os.environ.get(LOCAL_MODELS_ENV, "1").strip().lower() not in ("0", "false", "no", "off")


def check_model_name(name: str, offered: Iterable[str]) -> None:
    """With local models turned off, accept only the offered models and Hugging Face Hub ids.

    Anything that is not a Hub id (an absolute or relative path, ``~``, ``..``, more than one ``/``) is
    refused without looking at the file system, so the answer never tells whether a path exists. A
    Hub-style name whose first part exists in the app's working directory (``runs``, ``sample_data``...)
    is refused with the same message, because transformers would load such a name from disk."""
    if local_models_allowed() or name in set(offered):
        return
    first = name.split("/")[0]
    if not _HUB_ID.match(name) or ".." in name or name.endswith(".") or os.path.lexists(first):
        raise ModelLoadError(f"Model {name!r}: local model folders cannot be used on this server "
                             f"({LOCAL_MODELS_ENV}=0). Choose a model from the list or give a Hugging Face Hub "
                             "model id such as 'distilbert-base-uncased' or 'organisation/model-name'.")


def error(message: str) -> gr.Error:
    """A ``gr.Error`` carrying ``message`` as text. The page renders an error's message as HTML, so there it is
    escaped (it may quote file contents); API clients get the message as it is, readable and unescaped."""
    return gr.Error(html.escape(message) if from_page() else message, print_exception=False)


def warn(message: str) -> None:
    """Show a warning toast (escaped, like :func:`error`)."""
    gr.Warning(html.escape(message))


def shown(value: Any) -> Any:
    """A cell as shown in a table on the page: a text longer than ``MAX_CELL_CHARS`` is cut, with a note."""
    if isinstance(value, str) and len(value) > MAX_CELL_CHARS:
        return value[:MAX_CELL_CHARS] + _CUT_NOTE.format(more=len(value) - MAX_CELL_CHARS)
    return value


def shown_table(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` as shown on the page: empty cells blank, very long texts cut (see :func:`shown`)."""
    rows = frame.astype(object)
    return rows.where(rows.notna(), "").map(shown)


def column_widths(columns: List[Any], text_column: Optional[str]) -> Optional[List[str]]:
    """Widths giving the text column most of a table's width (None: let Gradio decide). Left to itself,
    Gradio 6.31 can size a long-text column so wide that the other columns are pushed out of view."""
    names = [str(c) for c in columns]
    if len(names) < 2 or text_column not in names:
        return None
    text_share = max(40, 100 - 12 * (len(names) - 1))
    other = f"{(100 - text_share) / (len(names) - 1):.1f}%"
    return [f"{text_share}%" if name == text_column else other for name in names]


# The score a run is named by, per task: accuracy (one label per text), macro F1 (several labels per text: there is
# no accuracy), Pearson's r (a number per text). The first of these a run's metrics hold.
MAIN_METRICS = ("accuracy", "f1_macro", "pearson")
MAIN_METRIC_WORDS = {"accuracy": "accuracy", "f1_macro": "macro F1", "pearson": "Pearson r"}


def main_metric(metrics: Optional[Dict[str, Any]]) -> Optional[str]:
    """The key of the score a run's ``metrics`` are summed up by (see :data:`MAIN_METRICS`), None without one."""
    return next((key for key in MAIN_METRICS if isinstance((metrics or {}).get(key), (int, float))), None)


def main_score(metrics: Optional[Dict[str, Any]]) -> str:
    """E.g. "accuracy 0.912", "macro F1 0.480" or "Pearson r 0.731"; empty without a score."""
    key = main_metric(metrics)
    return f"{MAIN_METRIC_WORDS[key]} {float(metrics[key]):.3f}" if key else ""


def short_run_label(run_id: str, model: str, metrics: Optional[Dict[str, Any]]) -> str:
    """How a run is named in choice lists: id, model (folder name for local paths) and its main score."""
    name = Path(model).name if "/" in model and Path(model).is_absolute() else model
    score = main_score(metrics)
    return f"{run_id} · {name}{' · ' + score if score else ''}"
