"""Label tab: label a table that has few or no labels, the most useful rows first, with suggestions that improve
as labels arrive (:mod:`finetuner.ui.label_session`), then train on the labelled rows or export them.

Keyboard: with the focus outside a text field, the keys 1-9 pick a class, Enter accepts the suggestion, S skips
the row and U undoes the last label (:data:`KEYS_JS`, installed when the tab's card first loads). Each key press
names the row it was meant for (the hidden ``label-row`` number), so a press made while the page was still showing
the previous row does nothing rather than label a row the user has not seen.
"""

from __future__ import annotations

import html
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, List, Optional, Tuple

import gradio as gr
import pandas as pd

from ..errors import DataError
from ..labelling import ACCEPTED, MIN_CURVE_ROWS, PERSON, SUGGESTION
from ..predictions import write_csv
from .common import (AppContext, TableData, column_widths, kept_outputs, shown, shown_table, status_line,
                     user_errors)
from .data_tab import LOADED_COUNT, DataTab, show_table
from .label_session import REFIT_EVERY, LabelSession, carry_labels, parse_classes, start_session
from .progress_view import loss_chart

KEYED_CLASSES = 9  # classes with a button and a number key; more are picked from a list
GRID_ROWS = 500
SHOW_CHOICES = ("all rows", "labelled by a person", "accepted suggestions", "suggestions only")
_SHOWN_BY = {"labelled by a person": PERSON, "accepted suggestions": ACCEPTED, "suggestions only": SUGGESTION}
GRID_COLUMNS = ("row", "text", "label", "suggested_label", "confidence", "labelled_by")
_CROSS_VALIDATED, _EXPECTED = "cross-validated on your labels", "expected on the rest"
_CURVE_SERIES = {_CROSS_VALIDATED: "#16a34a", _EXPECTED: "#2563eb"}
_INTRO = ("Label texts that have few or no labels. Load them on the **Data** tab (a text column, and a label column "
          "that may be empty or partly filled), type the class names, and press **Start labelling**. Every row gets a "
          "suggested label (zero-shot from the class names at first, then from a quick model of your labels); the row "
          "shown is the most useful to label next (at first rows that cover the table, then rows the model is "
          "unsure of, spread out). Keys, with the focus outside a text field: **1–9** pick a "
          "class, **Enter** accepts the suggestion, **S** skips, **U** undoes. Suggestions use the bundled sentence "
          "encoder whatever model you train; only your labels (and suggestions you accept) are used for training.")

_CURVE_NOTE = ("Two estimates of how often the suggestions are right, neither exact. **Green**: on the rows you "
               "labelled, each scored by a model that did not see it; those are mostly rows the model was least sure "
               "of, so it runs low and may even fall as you label. **Blue**: the model's own mean confidence on the "
               "rows without a label; it runs high and rises with every label. The truth lies between: on SST-2 and "
               "AG News, from 16 to 128 labels, green read 0.54–0.79 and blue 0.84–0.91 where the suggestions were "
               "right 0.73–0.85 of the time (bench/results/labelling.md#learning-curve).")

# Installed once per page: keys go to the tab's buttons while its card is on screen and no text field has the focus
# (Enter on another focused button presses that button, as usual).
KEYS_JS = """
if (!window.__finetunerLabelKeys) {
  window.__finetunerLabelKeys = true;
  const typing = (el) => el && (el.isContentEditable || el.tagName === 'TEXTAREA' || el.tagName === 'SELECT' ||
    (el.tagName === 'INPUT' && !['radio', 'checkbox', 'range', 'button', 'file'].includes(el.type)));
  document.addEventListener('keydown', (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey || event.repeat || typing(event.target)) return;
    const card = document.getElementById('label-card');
    if (!card || card.offsetParent === null) return;
    const key = event.key.toLowerCase();
    const control = event.target.closest && event.target.closest('button, a, [role=button]');
    if (key === 'enter' && control && !/^label-(class-[1-9]|accept|skip|undo)$/.test(control.id)) return;
    const id = /^[1-9]$/.test(key) ? 'label-class-' + key : {enter: 'label-accept', s: 'label-skip',
                                                              u: 'label-undo'}[key];
    const button = id && document.getElementById(id);
    if (!button || button.offsetParent === null || button.disabled) return;
    event.preventDefault();
    button.click();
  });
}
"""


# After Start, the focus leaves its button: Enter then accepts a suggestion instead of starting again.
_BLUR_JS = "() => { if (document.activeElement) document.activeElement.blur(); }"


@dataclass
class LabelView:
    """The Label tab's components."""

    classes: gr.Textbox
    refit_every: gr.Slider
    start: gr.Button
    status: gr.Markdown
    card: gr.HTML
    shown_row: gr.Number
    class_buttons: List[gr.Button]
    other: gr.Dropdown
    accept: gr.Button
    skip: gr.Button
    undo: gr.Button
    curve: gr.HTML
    threshold: gr.Slider
    accept_bulk: gr.Button
    use: gr.Button
    export: gr.Button
    files: gr.File
    show: gr.Radio
    grid: gr.Dataframe
    session: gr.State

    @property
    def loop_out(self) -> List[Any]:
        """What every labelling step updates (see :func:`render`)."""
        return [self.session, self.card, self.shown_row, self.status, self.curve, self.grid]

    @property
    def classes_out(self) -> List[Any]:
        """What starting a session updates besides :attr:`loop_out`: the class names, their buttons and list."""
        return [self.classes, *self.class_buttons, self.other]


_LOOP_COUNT, _STATUS = 6, 3  # LabelView.loop_out: its length and the status line's position


def build(ctx: AppContext, data: DataTab) -> None:
    view = layout()
    wire(LabelHandlers(ctx), view, data)


def layout() -> LabelView:
    gr.Markdown(_INTRO)
    with gr.Row():
        classes = gr.Textbox(label="Class names (comma-separated)", scale=3, elem_id="label-classes",
                             placeholder="e.g. sports, business, weather — empty: the labels in the label column")
        refit_every = gr.Slider(1, 20, value=REFIT_EVERY, step=1, label="Refit the suggestions every … labels",
                                scale=2, elem_id="label-refit-every")
        start = gr.Button("Start labelling the Data tab's table", variant="primary", scale=1,
                          elem_id="label-start")
    status = gr.Markdown(elem_id="label-status")
    loop = _loop_controls()
    with gr.Row():
        with gr.Column(scale=3):
            curve = gr.HTML(curve_chart([]), elem_id="label-curve")
            gr.Markdown(_CURVE_NOTE, elem_id="label-curve-note")
        with gr.Column(scale=2):
            results = _result_controls()
    show = gr.Radio(list(SHOW_CHOICES), value=SHOW_CHOICES[0], label="Show", elem_id="label-show")
    grid = gr.Dataframe(pd.DataFrame(columns=list(GRID_COLUMNS)), interactive=False, wrap=True, max_height=440,
                        column_widths=column_widths(list(GRID_COLUMNS), "text"), elem_id="label-grid",
                        label=f"Rows (at most {GRID_ROWS}): label is yours or an accepted suggestion; suggested_label "
                              "is the model's")
    return LabelView(classes, refit_every, start, status, *loop, curve, *results, show, grid, gr.State(None))


def _loop_controls() -> Tuple[Any, ...]:
    """The card of the row to label (it installs the keys), the row it shows, and the buttons that label it."""
    card = gr.HTML(render_card(None), js_on_load=KEYS_JS, elem_id="label-card-box")
    shown_row = gr.Number(-1, precision=0, visible="hidden", elem_id="label-row")
    with gr.Row():
        class_buttons = [gr.Button(str(n), visible=False, size="sm", min_width=90, elem_id=f"label-class-{n}")
                         for n in range(1, KEYED_CLASSES + 1)]
    with gr.Row():
        other = gr.Dropdown([], value=None, label="Another class", visible=False, scale=2, elem_id="label-other")
        accept = gr.Button("Accept suggestion (Enter)", variant="primary", scale=1, elem_id="label-accept")
        skip = gr.Button("Skip (S)", scale=1, elem_id="label-skip")
        undo = gr.Button("Undo (U)", scale=1, elem_id="label-undo")
    return card, shown_row, class_buttons, other, accept, skip, undo


def _result_controls() -> Tuple[Any, ...]:
    """Bulk acceptance, the labelled rows to the Data tab, and the export."""
    threshold = gr.Slider(0.5, 1.0, value=0.9, step=0.01, label="Confidence for bulk acceptance",
                          elem_id="label-threshold")
    accept_bulk = gr.Button("Accept the suggestions at or above this confidence", size="sm",
                            elem_id="label-accept-bulk")
    use = gr.Button("Use the labelled rows for training", variant="primary", elem_id="label-use")
    export = gr.Button("Export the labelled table (CSV and JSONL)", elem_id="label-export")
    files = gr.File(label="Labelled table: every row, with label, suggested_label, confidence and labelled_by",
                    file_count="multiple", interactive=False, elem_id="label-files")
    return threshold, accept_bulk, use, export, files


# ---------------------------------------------------------------------------------------------- what is shown


def render(session: Optional[LabelSession], show: str, message: str = "") -> List[Any]:
    """Updates of ``LabelView.loop_out``: the session, the card of the row to label, its row number, the status
    line (``message`` first), the learning curve and the grid."""
    row = session.current() if session is not None else None
    return [session, render_card(session), -1 if row is None else row, render_status(session, message),
            curve_chart(session.curve if session else []), grid_view(session, show)]


def render_card(session: Optional[LabelSession]) -> str:
    """The row to label now: its text, the suggestion and the keys (``data-row``: its number, -1 for none)."""
    if session is None:
        body = "Press <b>Start labelling</b> to label the Data tab's table."
        return f'<div id="label-card" data-row="-1" style="{_CARD_STYLE}">{body}</div>'
    row = session.current()
    if row is None:
        body = ("Every row is labelled. Press <b>Use the labelled rows for training</b>, or export the labelled "
                "table.")
        return f'<div id="label-card" data-row="-1" style="{_CARD_STYLE}">{body}</div>'
    found = session.suggestions
    label, confidence = found.labels[row], float(found.confidence[row])
    free = session.count(SUGGESTION)
    return (f'<div id="label-card" data-row="{row}" data-suggestion="{html.escape(label)}" style="{_CARD_STYLE}">'
            f'<div style="color:#4b5563">Row {session.positions[row] + 1} · label next · {free} '
            f'row{"" if free == 1 else "s"} without a label</div>'
            f'<div id="label-text" style="font-size:1.15em;margin:8px 0;white-space:pre-wrap">'
            f'{html.escape(shown(session.texts[row]))}</div>'
            f'<div>Suggestion: <b id="label-suggestion">{html.escape(label)}</b> (confidence {confidence:.2f}) · '
            f'keys: {_keys(session.classes)} · Enter accepts · S skips · U undoes</div></div>')


_CARD_STYLE = "border:1px solid #d1d5db;border-radius:8px;padding:12px 14px"


def _keys(classes: List[str]) -> str:
    keyed = [f"<b>{n}</b> {html.escape(name)}" for n, name in enumerate(classes[:KEYED_CLASSES], start=1)]
    more = f", the other {len(classes) - KEYED_CLASSES} from the list" if len(classes) > KEYED_CLASSES else ""
    return ", ".join(keyed) + more


def render_status(session: Optional[LabelSession], message: str = "") -> str:
    """Counts of who labelled what, when the next refit comes, and what the last one changed."""
    if session is None:
        return message
    counts = (f"**{session.count(PERSON)}** labelled by a person · **{session.count(ACCEPTED)}** accepted "
              f"suggestion(s) · **{session.count(SUGGESTION)}** with a suggestion only")
    until = max(1, session.refit_every - session.since_refit)  # the slider may have been lowered meanwhile
    refit = f"next refit after {until} more label{'' if until == 1 else 's'}"
    return " ".join(filter(None, [message, f"{counts} · {refit}.", f"_{session.news}_" if session.news else ""]))


def curve_chart(points: List[Tuple[int, float, Optional[float]]]) -> str:
    """The learning curve against the number of a person's labels: the suggestions' cross-validated accuracy on
    those labels, and their expected accuracy on the rows without a label (the model's mean confidence)."""
    drawn = [{"step": n, "loss": accuracy, "series": _CROSS_VALIDATED} for n, accuracy, _ in points]
    drawn += [{"step": n, "loss": expected, "series": _EXPECTED} for n, _, expected in points if expected is not None]
    return loss_chart(drawn,
                      series=_CURVE_SERIES, marked=tuple(_CURVE_SERIES), chart_id="label-curve-chart",
                      title="Accuracy", x_label="labels by a person", y_top=1.0,
                      empty=f"The learning curve starts at {MIN_CURVE_ROWS} labels.")


def grid_view(session: Optional[LabelSession], show: str) -> pd.DataFrame:
    """The rows as listed (at most :data:`GRID_ROWS`), those of ``show`` only: row number, text, label,
    suggestion, confidence and who labelled it."""
    if session is None:
        return pd.DataFrame(columns=list(GRID_COLUMNS))
    rows = [row for row in range(len(session.texts))
            if show not in _SHOWN_BY or session.labelled_by(row) == _SHOWN_BY[show]]
    rows = rows[:GRID_ROWS]
    suggested = [session.suggested(row) for row in rows]
    listed = pd.DataFrame({
        "row": [session.positions[row] + 1 for row in rows],
        "text": [session.texts[row] for row in rows],
        "label": [session.labels[row] or "" for row in rows],
        "suggested_label": [label for label, _ in suggested],
        "confidence": [round(value, 3) for _, value in suggested],
        "labelled_by": [session.labelled_by(row) for row in rows],
    }, columns=list(GRID_COLUMNS))
    return shown_table(listed)


def class_updates(session: LabelSession) -> List[Any]:
    """Updates of ``LabelView.classes_out``: the class names, a numbered button per class (the first nine), and
    the list of the others."""
    buttons = [gr.Button(f"{n} · {name}", visible=True) if name is not None else gr.Button(visible=False)
               for n, name in enumerate((session.classes + [None] * KEYED_CLASSES)[:KEYED_CLASSES], start=1)]
    extra = len(session.classes) > KEYED_CLASSES
    return [", ".join(session.classes), *buttons, gr.Dropdown(session.classes, value=None, visible=extra)]


# ---------------------------------------------------------------------------------------------- handlers


def _kept(message: str) -> List[Any]:
    return kept_outputs(_LOOP_COUNT, {_STATUS: status_line(message)})


def _needs(session: Optional[LabelSession]) -> LabelSession:
    if session is None:
        raise DataError("Press Start labelling first: it reads the Data tab's table and suggests a label for each "
                        "row.")
    return session


class LabelHandlers:
    """The Label tab's event handlers: plain values in, updates out. A session changes under its lock (one key
    press at a time)."""

    def __init__(self, ctx: AppContext):
        self.ctx = ctx

    @staticmethod
    @user_errors(keep=lambda message: kept_outputs(_LOOP_COUNT + 2 + KEYED_CLASSES,
                                                   {_STATUS: status_line(message)}))
    def start(old: Optional[LabelSession], data: Optional[TableData], text_column: Optional[str],
              label_column: Optional[str], classes: str, refit_every: float, show: str) -> List[Any]:
        """Start labelling the Data tab's table (the texts' embeddings are kept from a session on the same texts)."""
        if data is None:
            raise DataError("Load a table on the Data tab first.")
        frame, kept = data.frame, 0
        text_column = text_column if text_column in frame.columns else _text_column(frame)
        same = (old is not None and old.text_column == text_column
                and old.frame.equals(frame.reset_index(drop=True)))
        carried = lost = 0
        if same:  # the same table again (e.g. to change the class names): the labels given here stay
            frame, label_column, kept = old.table(), old.label_column, old.count(PERSON) + old.count(ACCEPTED)
        elif old is not None:  # a changed table: rows with a text labelled before get that label again
            frame, label_column, carried, lost = carry_labels(old, frame, text_column, label_column)
        reuse = old.embeddings if same else None
        session = start_session(frame, text_column, label_column, parse_classes(classes), data.name,
                                refit_every=int(refit_every or REFIT_EVERY), embeddings=reuse)
        if same or carried:  # the Data tab's table as it is, so that Start again on it finds the same table
            session.frame = old.frame if same else data.frame.reset_index(drop=True)
        started = (f"Labelling `{html.escape(data.name or 'the table')}`: {len(session.texts)} texts from column "
                   f"`{html.escape(session.text_column)}`, labels in `{html.escape(session.label_column)}`"
                   + (f"; the {kept} label(s) given before are kept" if kept else "")
                   + (f"; {carried} label(s) given before carried over to the rows with the same text" if carried
                      else "")
                   + (f"; **{lost} label(s) given before are not carried over: their texts are not in this table "
                      "or were labelled two ways** (an export of the earlier labelling still has them)" if lost
                      else "") + ".")
        return [*render(session, show, started), *class_updates(session)]

    @staticmethod
    def step(change: Callable[[LabelSession, int], str]) -> Callable[..., List[Any]]:
        """A handler that applies ``change`` to the row the page showed (a stale key press does nothing)."""
        @user_errors(keep=_kept)
        def handler(session: Optional[LabelSession], row: Any, show: str) -> List[Any]:
            session = _needs(session)
            with session.lock:
                if row is None or int(row) != session.current():
                    return render(session, show)
                message = change(session, int(row))
            return render(session, show, message)
        return handler

    @staticmethod
    def labeller(index: int) -> Callable[..., List[Any]]:
        """The handler of class button ``index`` (0-based)."""
        def change(session: LabelSession, row: int) -> str:
            if index >= len(session.classes):
                raise DataError(f"There is no class {index + 1}; the classes are {', '.join(session.classes)}.")
            return session.give(row, session.classes[index])
        return LabelHandlers.step(change)

    @staticmethod
    @user_errors(keep=_kept)
    def other_class(session: Optional[LabelSession], row: Any, name: Optional[str], show: str) -> List[Any]:
        if not name:
            return [gr.skip()] * _LOOP_COUNT
        return LabelHandlers.step(lambda s, r: s.give(r, name))(session, row, show)

    @staticmethod
    @user_errors(keep=_kept)
    def undo(session: Optional[LabelSession], show: str) -> List[Any]:
        session = _needs(session)
        with session.lock:
            message = session.undo()
        return render(session, show, message)

    @staticmethod
    @user_errors(keep=_kept)
    def accept_bulk(session: Optional[LabelSession], threshold: float, show: str) -> List[Any]:
        session = _needs(session)
        with session.lock:
            message = session.accept_above(float(threshold))
        return render(session, show, message)

    @staticmethod
    def show(session: Optional[LabelSession], show: str) -> pd.DataFrame:
        return grid_view(session, show)

    @staticmethod
    def refit_every(session: Optional[LabelSession], every: float) -> None:
        if session is not None:
            session.refit_every = max(1, int(every or REFIT_EVERY))

    @staticmethod
    @user_errors(keep=lambda message: kept_outputs(LOADED_COUNT + 1, {0: status_line(message)}))
    def use(session: Optional[LabelSession], eval_data: Optional[TableData], fraction: float) -> List[Any]:
        """Put the labelled rows (a person's and accepted suggestions) in the Data tab's table, to train on."""
        session = _needs(session)
        with session.lock:
            frame = session.training_frame()
            person, accepted = session.count(PERSON), session.count(ACCEPTED)
        name = f"{Path(session.source).stem or 'table'} (labelled)"
        message = (f"The Data tab now holds the **{len(frame)}** labelled rows ({person} by a person, {accepted} "
                   f"accepted suggestion(s), said in its `labelled_by` column); rows without a label are left out. "
                   "Train on them in the **Train** tab. Labelling goes on here: press this button again to use more "
                   "labels.")
        columns = (session.text_column, session.label_column)
        return [render_status(session, message), *show_table(TableData(frame, name), eval_data, fraction, columns)]

    @staticmethod
    @user_errors(keep=lambda message: [None, status_line(message)])
    def export(session: Optional[LabelSession]) -> Tuple[List[str], str]:
        """The whole table as CSV (formula-safe) and JSONL, with label, suggested_label, confidence, labelled_by."""
        session = _needs(session)
        with session.lock:
            table = session.table()
        folder = Path(tempfile.mkdtemp(prefix="finetuner-labelled-"))  # fixed names: no uploaded name in a path
        csv_path = write_csv(table, folder / "labelled.csv")
        jsonl_path = folder / "labelled.jsonl"
        table.to_json(jsonl_path, orient="records", lines=True, force_ascii=False)
        counts = table["labelled_by"].value_counts()
        summary = ", ".join(f"{int(counts.get(who, 0))} {who}" for who in (PERSON, ACCEPTED, SUGGESTION))
        return [str(csv_path), str(jsonl_path)], render_status(session, f"Exported {len(table)} rows ({summary}).")


def _text_column(frame: pd.DataFrame) -> str:
    from ..data import detect_text_column

    return detect_text_column(frame)


# ---------------------------------------------------------------------------------------------- wiring


def wire(handlers: LabelHandlers, view: LabelView, data: DataTab) -> None:
    private = {"api_visibility": "private"}
    quick = {"show_progress": "minimal", **private}
    step_in = [view.session, view.shown_row, view.show]
    gr.on([view.start.click, view.classes.submit], handlers.start,
          [view.session, data.table, data.text_column, data.label_column, view.classes, view.refit_every, view.show],
          [*view.loop_out, *view.classes_out], **private).then(None, js=_BLUR_JS, **private)
    for index, button in enumerate(view.class_buttons):
        button.click(handlers.labeller(index), step_in, view.loop_out, **quick)
    # The list is emptied after each pick, so the same class can be picked again for the next row.
    view.other.input(handlers.other_class, [view.session, view.shown_row, view.other, view.show], view.loop_out,
                     **quick).then(lambda: gr.Dropdown(value=None), None, view.other, **private)
    view.accept.click(handlers.step(lambda session, row: session.accept(row)), step_in, view.loop_out, **quick)
    view.skip.click(handlers.step(lambda session, row: session.skip(row)), step_in, view.loop_out, **quick)
    view.undo.click(handlers.undo, [view.session, view.show], view.loop_out, **quick)
    view.accept_bulk.click(handlers.accept_bulk, [view.session, view.threshold, view.show], view.loop_out, **private)
    view.show.input(handlers.show, [view.session, view.show], view.grid, **private)
    view.refit_every.release(handlers.refit_every, [view.session, view.refit_every], None, **private)
    used = view.use.click(handlers.use, [view.session, data.eval_table, data.eval_fraction],
                          [view.status, *data.loaded_out], **private)
    data.follow(used)
    view.export.click(handlers.export, view.session, [view.files, view.status], **private)
