"""What the tabs share: the per-process context, the per-session table value, and error handling."""

from __future__ import annotations

import functools
import html
import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, List, Optional

import gradio as gr
import pandas as pd

from ..errors import FinetunerError
from ..runner import Runner
from ..runs import RunStore

TABLE_FILE_TYPES = [".csv", ".tsv", ".txt", ".jsonl", ".json", ".xlsx", ".parquet"]


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

    def samples(self) -> List[str]:
        if not self.samples_dir.is_dir():
            return []
        return sorted(p.name for p in self.samples_dir.iterdir() if p.suffix.lower() in TABLE_FILE_TYPES)


def user_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Show :class:`FinetunerError` messages in the UI (as ``gr.Error``) instead of a traceback."""
    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def generator(*args: Any, **kwargs: Any):
            try:
                yield from fn(*args, **kwargs)
            except FinetunerError as exc:
                raise error(str(exc)) from None
        return generator

    @functools.wraps(fn)
    def function(*args: Any, **kwargs: Any):
        try:
            return fn(*args, **kwargs)
        except FinetunerError as exc:
            raise error(str(exc)) from None
    return function


def error(message: str) -> gr.Error:
    """A ``gr.Error`` showing ``message`` as text (it may quote file contents, so it is escaped)."""
    return gr.Error(html.escape(message), print_exception=False)


def warn(message: str) -> None:
    """Show a warning toast (escaped, like :func:`error`)."""
    gr.Warning(html.escape(message))


def column_widths(columns: List[Any], text_column: Optional[str]) -> Optional[List[str]]:
    """Widths giving the text column most of a table's width (None: let Gradio decide). Left to itself,
    Gradio 6.31 can size a long-text column so wide that the other columns are pushed out of view."""
    names = [str(c) for c in columns]
    if len(names) < 2 or text_column not in names:
        return None
    text_share = max(40, 100 - 12 * (len(names) - 1))
    other = f"{(100 - text_share) / (len(names) - 1):.1f}%"
    return [f"{text_share}%" if name == text_column else other for name in names]


def short_run_label(run_id: str, model: str, accuracy: Optional[float]) -> str:
    """How a run is named in choice lists: id, model (folder name for local paths) and accuracy."""
    name = Path(model).name if "/" in model and Path(model).is_absolute() else model
    score = f" · accuracy {accuracy:.3f}" if accuracy is not None else ""
    return f"{run_id} · {name}{score}"
