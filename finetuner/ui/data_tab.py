"""Data tab: load a file or a bundled sample, edit it page by page, choose columns, see the checks."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, List, Optional, Tuple

import gradio as gr
import pandas as pd

from ..config import TrainConfig
from ..data import detect_columns, read_table
from ..errors import DataError
from ..prepare import PreparedData, clean_table, prepare
from . import data_checks
from .common import (MAX_CELL_CHARS, TABLE_FILE_TYPES, AppContext, TableData, column_widths, kept_outputs,
                     page_update, shown, shown_table, status_line, user_errors)
from .uploads import UploadBox

PAGE_SIZE = 50
LABEL_TAB = "2 · Label"  # the tab that labels rows without a label (finetuner.ui.label_tab)
_SEED = TrainConfig().seed


@dataclass
class DataTab:
    """The components the Train and Label tabs read. The Label tab also puts a table in: ``loaded_out`` are the
    outputs of :func:`show_table`, and ``follow(event)`` makes the deeper checks follow an event that changes it."""

    table: gr.State
    eval_table: gr.State
    text_column: gr.Dropdown
    label_column: gr.Dropdown
    eval_fraction: gr.Slider
    loaded_out: List[Any]
    follow: Callable[[Any], None]


def load_initial(ctx: AppContext, sample: Optional[str]) -> Optional[TableData]:
    """The table shown when a session starts: ``sample`` from the samples folder, if it is there."""
    if not sample or not (ctx.samples_dir / sample).is_file():
        return None
    return TableData(read_table(ctx.samples_dir / sample), sample)


# The outputs of loading a table (the API's /load_sample and /load_file: grid, page, page info, text column, label
# column, checks, balance, the "Loaded:" line, the sample picker and the upload box; the picker not used is reset)
# and of an edit (see _edited), by DataView attribute.
_LOADED_OUT = ("table", "grid", "page", "page_info", "text_column", "label_column", "summary", "balance", "source",
               "sample", "upload")
_EDITED_OUT = ("table", "grid", "page", "page_info", "summary", "balance", "source")
LOADED_COUNT = len(_LOADED_OUT)  # DataTab.loaded_out
_CHECKS_IN = ("table", "text_column", "label_column", "eval_table", "eval_fraction")
_CHECKS_OUT = ("summary", "balance")


@dataclass
class DataView:
    """The Data tab's components."""

    sample: gr.Dropdown
    upload: UploadBox
    source: gr.Markdown
    text_column: gr.Dropdown
    label_column: gr.Dropdown
    grid: gr.Dataframe
    previous: gr.Button
    following: gr.Button
    page_info: gr.Markdown
    page: gr.Number
    delete_spec: gr.Textbox
    add_row: gr.Button
    delete: gr.Button
    clean: gr.Button
    summary: gr.Markdown
    balance: gr.BarPlot
    table: gr.State
    eval_table: gr.State
    eval_fraction: gr.Slider
    eval_upload: UploadBox

    def pick(self, *names: str) -> List[Any]:
        """The components called ``names`` (e.g. ``pick(*_EDITED_OUT)``)."""
        return [getattr(self, name) for name in names]


def build(ctx: AppContext, initial: Optional[TableData]) -> DataTab:
    _LONG_TEXTS.model = ctx.default_model
    view = layout(ctx, initial)
    follow = data_checks.build(view.table, view.page, view.text_column, view.label_column, view.eval_table,
                               view.eval_fraction, view.pick(*_EDITED_OUT), _edited, page_size=PAGE_SIZE, seed=_SEED)
    for event in wire(DataHandlers(ctx), view):  # the deeper checks' results follow the table (see data_checks)
        follow(event)
    return DataTab(view.table, view.eval_table, view.text_column, view.label_column, view.eval_fraction,
                   view.pick(*_LOADED_OUT), follow)


def show_table(data: TableData, eval_data: Optional[TableData], fraction: float,
               columns: Optional[Tuple[str, str]] = None) -> List[Any]:
    """The updates of ``DataTab.loaded_out`` that show ``data`` as if it had been uploaded (the sample picker
    cleared), with these text and label ``columns`` (default: detected)."""
    return _loaded(data, eval_data, fraction, from_sample=False, columns=columns)


def layout(ctx: AppContext, initial: Optional[TableData]) -> DataView:
    """The tab's components, showing ``initial`` (an empty table without one). The deeper checks come after."""
    frame = initial.frame if initial is not None else pd.DataFrame({"text": [], "label": []})
    name = initial.name if initial else ""
    columns = _columns(frame)
    checked = prepare(frame, *columns, eval_fraction=0.2, seed=_SEED, source=name)
    gr.Markdown("Load a labelled table: one column of texts and one of labels. Edit cells directly in the grid; "
                "the checks below update as you go.")
    with gr.Row():
        sample = gr.Dropdown(ctx.samples(), value=name or None, label="Bundled sample",
                             info="Small ready-made datasets", scale=1, elem_id="data-sample")
        upload = UploadBox(label="Or upload a table (CSV, TSV, JSONL, Excel, Parquet)", file_types=TABLE_FILE_TYPES,
                           height=110, scale=2, elem_id="data-upload")
    source = gr.Markdown(_source(frame, name), elem_id="data-source")
    with gr.Row():
        text_column = gr.Dropdown(list(frame.columns), value=columns[0], label="Text column", allow_custom_value=True)
        label_column = gr.Dropdown(list(frame.columns), value=columns[1], label="Label column",
                                   allow_custom_value=True)
    grid = gr.Dataframe(_page(frame, 1), interactive=True, wrap=True, max_height=440,
                        column_widths=column_widths(list(frame.columns), columns[0]),
                        label="Table (editable; right-click a row to add or delete rows)", elem_id="data-grid")
    with gr.Row():
        previous = gr.Button("◀ Previous page", size="sm", scale=0, min_width=150)
        following = gr.Button("Next page ▶", size="sm", scale=0, min_width=150)
        page_info = gr.Markdown(_page_info(frame, 1), elem_id="data-page-info")
    page, delete_spec, add_row, delete, clean = _row_tools()
    with gr.Row():
        summary = gr.Markdown(_summary(checked), elem_id="data-summary")
        balance = gr.BarPlot(_balance(checked), x="class", y="rows", title=_balance_title(checked), height=260,
                             x_label_angle=-30, y_lim=[0, None])
    table = gr.State(initial or TableData(frame))
    eval_table = gr.State(None)
    with gr.Accordion("Evaluation data", open=True):
        with gr.Row():
            eval_fraction = gr.Slider(0.05, 0.5, value=0.2, step=0.05, label="Fraction held out for evaluation",
                                      info="A stratified split of the table (ignored when an evaluation file is given)")
            eval_upload = UploadBox(label="Optional separate evaluation file", file_types=TABLE_FILE_TYPES, height=110)
    return DataView(sample, upload, source, text_column, label_column, grid, previous, following, page_info, page,
                    delete_spec, add_row, delete, clean, summary, balance, table, eval_table, eval_fraction,
                    eval_upload)


def _row_tools() -> Tuple[Any, ...]:
    """Go to a page; add, delete or clean rows: the page number, the rows to delete and three buttons."""
    with gr.Accordion("Go to a page · add, delete or clean rows", open=False):
        with gr.Row():
            page = gr.Number(1, label="Page (press Enter)", precision=0, elem_id="data-page")
            delete_spec = gr.Textbox(placeholder="e.g. 3, 7-9 (row numbers in the whole table)", label="Rows to delete")
        with gr.Row():
            add_row = gr.Button("Add a row at the end", size="sm")
            delete = gr.Button("Delete these rows", size="sm")
            clean = gr.Button("Drop empty & duplicate rows", size="sm")
    return page, delete_spec, add_row, delete, clean


def _load_failed(message: str) -> List[Any]:
    """A file or sample that cannot be loaded: the table shown stays, and so does the picker that loaded it."""
    return kept_outputs(len(_LOADED_OUT), {_LOADED_OUT.index("source"): status_line(
        f"{message} The table below is unchanged.") + "  \n" + _LOADED_HINT, _LOADED_OUT.index("upload"): None})


def _edit_failed(message: str) -> List[Any]:
    return kept_outputs(len(_EDITED_OUT), {_EDITED_OUT.index("source"): status_line(message)})


class DataHandlers:
    """The Data tab's event handlers: plain values in, updates out."""

    def __init__(self, ctx: AppContext):
        self.ctx = ctx

    @user_errors(keep=_load_failed)
    def load_sample(self, name: Optional[str], eval_data: Optional[TableData], fraction: float):
        if not name:
            return [gr.skip()] * len(_LOADED_OUT)
        if name not in self.ctx.samples():
            raise DataError(f"No sample called {name!r}; choose one of: {', '.join(self.ctx.samples())}.")
        return _loaded(TableData(read_table(self.ctx.samples_dir / name), name), eval_data, fraction,
                       from_sample=True)

    @staticmethod
    @user_errors(keep=_load_failed)
    def load_file(path: Optional[str], eval_data: Optional[TableData], fraction: float):
        if not path:
            return [gr.skip()] * len(_LOADED_OUT)
        return _loaded(TableData(read_table(path), Path(path).name), eval_data, fraction, from_sample=False)

    @staticmethod
    def go_to(data: TableData, number: Any):
        number = _clamp_page(data.frame, number)
        return _page(data.frame, number), number, _page_info(data.frame, number)

    @staticmethod
    def apply_edit(data: TableData, number: Any, shown_page: pd.DataFrame, text: str, label: str,
                   eval_data: Optional[TableData], fraction: float):
        number = _clamp_page(data.frame, number)
        frame = replace_page(data.frame, number, shown_page)
        edited = TableData(frame, data.name)
        return (edited, gr.skip(), gr.skip(), _page_info(frame, number),
                *_checks(edited, text, label, eval_data, fraction), _source(frame, data.name))

    @staticmethod
    def append_row(data: TableData, text: str, label: str, eval_data: Optional[TableData], fraction: float):
        frame = pd.concat([data.frame, pd.DataFrame([[""] * data.frame.shape[1]], columns=data.frame.columns)],
                          ignore_index=True)
        return _edited(TableData(frame, data.name), _page_count(frame), text, label, eval_data, fraction)

    @staticmethod
    @user_errors(keep=_edit_failed)
    def delete_rows(data: TableData, spec: str, number: Any, text: str, label: str,
                    eval_data: Optional[TableData], fraction: float):
        rows = parse_rows(spec, len(data.frame))
        frame = data.frame.drop(index=[r - 1 for r in rows]).reset_index(drop=True)
        gr.Info(f"Deleted {len(rows)} row(s).")
        return _edited(TableData(frame, data.name), number, text, label, eval_data, fraction)

    @staticmethod
    @user_errors(keep=_edit_failed)
    def clean_rows(data: TableData, number: Any, text: str, label: str, eval_data: Optional[TableData],
                   fraction: float):
        frame, removed = clean_table(data.frame, text, label)
        gr.Info(f"Removed {removed} empty or duplicate row(s).")
        return _edited(TableData(frame, data.name), number, text, label, eval_data, fraction)

    @staticmethod
    @user_errors(keep=lambda message: kept_outputs(4, {}))
    def load_eval(path: Optional[str], data: TableData, text: str, label: str, fraction: float):
        eval_data = TableData(read_table(path), Path(path).name) if path else None
        return (eval_data, gr.Slider(interactive=eval_data is None), *_checks(data, text, label, eval_data, fraction))


def wire(handlers: DataHandlers, view: DataView) -> List[Any]:
    """Connect the tab's events; returns those that change the table or the split (the deeper checks follow them)."""
    private = {"api_visibility": "private"}
    loaded_out, edited_out = view.pick(*_LOADED_OUT), view.pick(*_EDITED_OUT)
    checks_in, checks_out = view.pick(*_CHECKS_IN), view.pick(*_CHECKS_OUT)
    columns_in = [view.text_column, view.label_column, view.eval_table, view.eval_fraction]
    edits = [
        view.sample.input(handlers.load_sample, [view.sample, view.eval_table, view.eval_fraction], loaded_out,
                          api_name="load_sample"),
        view.upload.upload(handlers.load_file, [view.upload, view.eval_table, view.eval_fraction], loaded_out,
                           api_name="load_file"),
        view.grid.input(handlers.apply_edit, [view.table, view.page, view.grid, *columns_in], edited_out,
                        trigger_mode="always_last", show_progress="hidden", **private),
        view.add_row.click(handlers.append_row, [view.table, *columns_in], edited_out, **private),
        view.delete.click(handlers.delete_rows, [view.table, view.delete_spec, view.page, *columns_in], edited_out,
                          **private),
        view.clean.click(handlers.clean_rows, [view.table, view.page, *columns_in], edited_out, **private),
    ]
    paging = [view.grid, view.page, view.page_info]
    view.page.submit(handlers.go_to, [view.table, view.page], paging, **private)
    view.previous.click(lambda data, n: handlers.go_to(data, (n or 1) - 1), [view.table, view.page], paging,
                        **private)
    view.following.click(lambda data, n: handlers.go_to(data, (n or 1) + 1), [view.table, view.page], paging,
                         **private)
    for control in (view.text_column, view.label_column):
        edits.append(control.input(_checks, checks_in, checks_out, **private))
    eval_in = [view.eval_upload, view.table, view.text_column, view.label_column, view.eval_fraction]
    eval_out = [view.eval_table, view.eval_fraction, *checks_out]
    edits += [view.eval_fraction.release(_checks, checks_in, checks_out, **private),
              view.eval_upload.upload(handlers.load_eval, eval_in, eval_out, **private),
              view.eval_upload.clear(handlers.load_eval, eval_in, eval_out, **private)]
    return edits


def _loaded(data: TableData, eval_data: Optional[TableData], fraction: float, from_sample: bool,
            columns: Optional[Tuple[str, str]] = None) -> List[Any]:
    text, label = columns or _columns(data.frame)
    choices = list(data.frame.columns)
    grid_page = gr.Dataframe(_page(data.frame, 1), column_widths=column_widths(choices, text))
    return [data, grid_page, 1, _page_info(data.frame, 1), gr.Dropdown(choices, value=text),
            gr.Dropdown(choices, value=label), *_checks(data, text, label, eval_data, fraction),
            _source(data.frame, data.name), gr.skip() if from_sample else None,
            gr.skip() if not from_sample else None]


def _edited(data: TableData, number: Any, text: str, label: str, eval_data: Optional[TableData],
            fraction: float) -> Tuple[Any, ...]:
    """The updates after an edit: table, grid page ``number``, page, page info, checks, balance, "Loaded:" line."""
    number = _clamp_page(data.frame, number)
    return (data, _page(data.frame, number), number, _page_info(data.frame, number),
            *_checks(data, text, label, eval_data, fraction), _source(data.frame, data.name))


def _checks(data: TableData, text: Optional[str], label: Optional[str], eval_data: Optional[TableData],
            fraction: float) -> Tuple[str, Any]:
    checked = prepare(data.frame, text, label, eval_frame=eval_data.frame if eval_data else None,
                      eval_fraction=fraction, seed=_SEED, source=data.name)
    return _summary(checked), page_update(gr.BarPlot, _balance(checked), title=_balance_title(checked))


def _summary(checked: PreparedData) -> str:
    """The checks, how many training texts are longer than the model reads at once, and where to label rows that
    have no label yet."""
    notes = [_LONG_TEXTS(checked.train_texts) if checked.ok else "", unlabelled_note(checked)]
    return "\n\n".join([checked.to_markdown(), *filter(None, notes)])


def unlabelled_note(checked: PreparedData) -> str:
    """Where rows without a label (or a table of texts alone) get labelled: the Label tab (empty when none)."""
    if checked.task_name != "single_label" or not checked.rows:
        return ""
    if checked.label_column is None:
        return (f"ℹ No labels yet? The **{LABEL_TAB}** tab suggests a label for each text from your class names "
                "and labels them with you, the most useful rows first.")
    missing = len(checked.missing_labels)
    if not missing:
        return ""
    return (f"ℹ {missing} row{'' if missing == 1 else 's'} {'has' if missing == 1 else 'have'} no label yet: label "
            f"them in the **{LABEL_TAB}** tab (it suggests a label for each, the most useful rows first), or drop "
            "them with **Drop empty & duplicate rows**.")


class _LongTextNote:
    """The notice of training texts longer than the app's default model reads at once, with the Train tab's
    defaults (max tokens chosen from the data, long texts read in windows): what the start of training will say
    (:func:`finetuner.training.finetune.plan_windows`). The tokenizer is loaded once per model; token counts are
    kept per text, so that an edit counts only the texts it changed. A model whose tokenizer cannot be had
    offline at once (a GGUF file to convert, a Hub model not downloaded) gets no notice here."""

    _KEPT_COUNTS = 500_000

    def __init__(self) -> None:
        self.model: Optional[str] = None
        self._loaded: dict = {}
        self._counts: dict = {}

    def __call__(self, texts: List[str]) -> str:
        loaded = self._load(self.model) if texts and self.model else None
        if loaded is None:
            return ""
        from ..training.finetune import plan_windows

        tokenizer, limit = loaded
        counts = self._counts.setdefault(self.model, {})
        if len(counts) > self._KEPT_COUNTS:
            counts.clear()
        _, note = plan_windows(tokenizer, texts, limit, cache=counts, quick=True)
        return f"ℹ Long texts: {note}" if note else ""

    def _load(self, name: str) -> Optional[Tuple[Any, int]]:
        if name not in self._loaded:
            self._loaded[name] = None
            try:
                self._loaded[name] = _tokenizer_and_limit(name)
            except Exception:  # a notice, not a check: the Train tab says it when training starts
                pass
        return self._loaded[name]


def _tokenizer_and_limit(name: str) -> Optional[Tuple[Any, int]]:
    from types import SimpleNamespace

    from transformers import AutoConfig

    from ..gguf_models import OFFLINE_LLMS, is_gguf_path
    from ..models import load_tokenizer, resolve_model
    from ..training.finetune import model_length_limit

    if name.lower() in OFFLINE_LLMS or is_gguf_path(name):
        return None
    source = resolve_model(name)
    tokenizer = load_tokenizer(source)
    config = AutoConfig.from_pretrained(source.location, **source.load_kwargs)
    return tokenizer, model_length_limit(tokenizer, SimpleNamespace(config=config))


_LONG_TEXTS = _LongTextNote()  # its model: the app's default model (set when the tab is built)


def _source(frame: pd.DataFrame, name: str) -> str:
    """The "Loaded:" line: which table the other tabs use, and its size."""
    rows = f"{len(frame):,} row{'' if len(frame) == 1 else 's'}"
    return f"**Loaded:** `{name}` ({rows})" if name else f"**Loaded:** a table edited here ({rows})"


_LOADED_HINT = "Pick a bundled sample or upload another file."


_TARGET_BINS = 10


def _balance(checked: PreparedData) -> pd.DataFrame:
    """Rows per class (several labels per text: per label); for a number per text, rows per range of the target."""
    if checked.task_name == "regression" and checked.train_labels:
        values = pd.Series([float(v) for v in checked.train_labels + checked.eval_labels])
        bins = pd.cut(values, min(_TARGET_BINS, values.nunique()))
        counts = bins.value_counts(sort=False)
        return pd.DataFrame({"class": [f"{b.left:.3g}–{b.right:.3g}" for b in counts.index],
                             "rows": counts.to_numpy()})
    return pd.DataFrame({"class": list(checked.class_counts), "rows": list(checked.class_counts.values())})


def _balance_title(checked: PreparedData) -> str:
    return {"multi_label": "Rows per label", "regression": "Rows per range of the target"}.get(
        checked.task_name, "Class balance")


def _columns(frame: pd.DataFrame) -> Tuple[Optional[str], Optional[str]]:
    try:
        return detect_columns(frame)
    except DataError:
        return None, None


def _page_count(frame: pd.DataFrame) -> int:
    return max(1, math.ceil(len(frame) / PAGE_SIZE))


def _clamp_page(frame: pd.DataFrame, number: Any) -> int:
    try:
        number = int(number)
    except (TypeError, ValueError):
        number = 1
    return min(max(1, number), _page_count(frame))


def _page(frame: pd.DataFrame, number: int) -> pd.DataFrame:
    """The rows of page ``number`` as shown in the grid: empty cells blank, very long texts cut."""
    start = (number - 1) * PAGE_SIZE
    return shown_table(frame.iloc[start:start + PAGE_SIZE])


def _page_info(frame: pd.DataFrame, number: int) -> str:
    if frame.empty:
        return "No rows yet."
    start = (number - 1) * PAGE_SIZE
    return (f"Rows {start + 1}–{min(start + PAGE_SIZE, len(frame))} of {len(frame)} "
            f"· page {number} of {_page_count(frame)}")


def replace_page(frame: pd.DataFrame, number: int, edited: pd.DataFrame) -> pd.DataFrame:
    """The full table with page ``number`` replaced by the edited page (which may have more or fewer rows)."""
    start = (number - 1) * PAGE_SIZE
    old_rows = min(PAGE_SIZE, max(0, len(frame) - start))
    # Cells shown cut (see _page) and left unchanged get their full text back.
    cut = {shown(v): v for v in frame.iloc[start:start + old_rows].to_numpy().ravel()
           if isinstance(v, str) and len(v) > MAX_CELL_CHARS}
    if cut:
        edited = edited.map(lambda v: cut.get(v, v) if isinstance(v, str) else v)
    frame = _align_columns(frame, edited)
    return pd.concat([frame.iloc[:start], edited, frame.iloc[start + old_rows:]], ignore_index=True)


def _align_columns(frame: pd.DataFrame, shown: pd.DataFrame) -> pd.DataFrame:
    """Follow column renames, additions and deletions made in the grid."""
    if list(shown.columns) == list(frame.columns):
        return frame
    if len(shown.columns) == len(frame.columns):
        return frame.set_axis(list(shown.columns), axis=1)
    return frame.reindex(columns=list(shown.columns))


def parse_rows(spec: str, total: int) -> List[int]:
    """Row numbers from text like "3, 7-9" (1-based, as shown in the page information)."""
    rows = set()
    for part in filter(None, (p.strip() for p in (spec or "").split(","))):
        match = re.fullmatch(r"(\d+)\s*(?:[-–]\s*(\d+))?", part)
        if not match:
            raise DataError(f"{part!r} is not a row number or range; write e.g. 3, 7-9.")
        first, last = int(match[1]), int(match[2] or match[1])
        if not 1 <= first <= last <= total:
            raise DataError(f"Rows {part} are outside the table (rows 1 to {total}).")
        rows.update(range(first, last + 1))
    if not rows:
        raise DataError("Give the rows to delete, e.g. 3, 7-9.")
    return sorted(rows)
