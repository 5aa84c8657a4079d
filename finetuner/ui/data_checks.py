"""The Data tab's deeper checks, on a button: rows whose label looks wrong (with fixes), duplicates and leakage.

Both embed every text with the bundled sentence encoder: a few seconds per thousand rows on a CPU. They run when
asked, not on every edit: an edit in the grid must answer at once, and the live summary already counts exact
duplicates and train/evaluation overlap without a model. Flagged rows follow later edits (see :func:`reconcile`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import gradio as gr
import numpy as np
import pandas as pd

from ..data import normalize_label
from ..duplicates import find_duplicates
from ..errors import DataError
from ..label_issues import ISSUE_COLUMNS, find_label_issues, label_check_not_applicable
from ..prepare import blank_cells, prepare
from ..tasks import TASK_NAMES, detect_task
from .common import TableData, column_widths, kept_outputs, shown_table, status_line, user_errors

ACCEPT, KEEP, DELETE = "accept", "keep", "delete"
ISSUE_VIEW_COLUMNS = ("row", "text", "given label", "suggested label", "score")
DUPLICATE_VIEW_COLUMNS = ("kind", "similarity", "text", "other text")
_SHOWN_ROWS = 200
_PICK_HINT = "Click a row of the list to accept the suggested label, keep the given one, or delete the row."

# Called with (table, page number, text column, label column, evaluation table, eval fraction), it returns the
# Data tab's updates after an edit: table, grid page, page number, page info, checks, balance, "Loaded:" line.
EditedViews = Callable[..., Tuple[Any, ...]]


@dataclass
class LabelCheck:
    """A label check's flagged rows still to handle; ``issues.row`` are 0-based positions in the current table,
    which was loaded from ``source``."""

    issues: pd.DataFrame
    checked_rows: int
    flagged: int
    source: str = ""

    def status(self) -> str:
        if not self.flagged:
            return f"✓ No likely label errors among {self.checked_rows} rows."
        if self.issues.empty:
            return f"✓ All {self.flagged} flagged row(s) handled."
        handled = self.flagged - len(self.issues)
        done = f", {handled} handled" if handled else ""
        listed = f" The {_SHOWN_ROWS} most suspicious are listed." if len(self.issues) > _SHOWN_ROWS else ""
        return (f"**{len(self.issues)}** row(s) may be mislabelled ({self.checked_rows} rows checked{done}).{listed} "
                + _PICK_HINT)


def flag_rows(frame: pd.DataFrame, text_column: str, label_column: str, source: str = "") -> LabelCheck:
    """Run the label check on the rows that have a text and a label; rows keep their position in ``frame``."""
    if text_column not in frame.columns or label_column not in frame.columns:
        raise DataError("Choose the text and label columns first.")
    positions = np.flatnonzero(~(blank_cells(frame[text_column]) | blank_cells(frame[label_column])))
    issues = find_label_issues(frame.iloc[positions].reset_index(drop=True), text_column, label_column)
    issues["row"] = positions[issues["row"].to_numpy(dtype=int)]
    return LabelCheck(issues.reset_index(drop=True), len(positions), len(issues), source)


def app_label_check_note(frame: pd.DataFrame, label_column: str) -> str:
    """Why the app's label check does not run on a table (empty when it does): it flags rows whose one class looks
    wrong. A number per text has no label to be wrong (:func:`finetuner.label_issues.label_check_not_applicable`);
    several labels per text are checked by the command line (cleanlab's multi-label check), not in this grid."""
    if label_column not in frame.columns:
        return ""
    task = detect_task(frame[label_column].tolist())
    if task.task == "single_label":
        return ""
    why = label_check_not_applicable(task, label_column) or (
        f"this table has {TASK_NAMES[task.task]}; `python -m finetuner check --data FILE` checks label sets")
    return f"ℹ Check labels does not apply here: {why} Find duplicates & leakage works for every table."


def reconcile(check: LabelCheck, frame: pd.DataFrame, text_column: str, label_column: str) -> LabelCheck:
    """Follow flagged rows through edits made elsewhere: each goes to the row nearest its old position that still
    holds its text and given label; one whose text is gone, or whose label was changed, is dropped."""
    if text_column not in frame.columns or label_column not in frame.columns:
        return replace(check, issues=check.issues.iloc[:0])
    places: Dict[Tuple[str, Optional[str]], List[int]] = {}
    for row, (text, label) in enumerate(zip(frame[text_column], frame[label_column])):
        places.setdefault(("" if pd.isna(text) else str(text), _label_key(label)), []).append(row)
    taken, rows, kept = set(), [], []
    for index, issue in check.issues.iterrows():
        old = int(issue["row"])
        found = places.get((str(issue["text"]), _label_key(issue["given_label"])), [])
        candidates = sorted((r for r in found if r not in taken), key=lambda r: (abs(r - old), r))
        if candidates:
            taken.add(candidates[0])
            rows.append(candidates[0])
            kept.append(index)
    issues = check.issues.loc[kept].assign(row=rows).reset_index(drop=True)
    return replace(check, issues=issues)


def apply_fix(frame: pd.DataFrame, check: LabelCheck, row: int, action: str,
              label_column: str) -> Tuple[pd.DataFrame, LabelCheck, str]:
    """Handle the flagged table row ``row`` (0-based): ``accept`` writes the suggested label, ``keep`` leaves the
    table as it is, ``delete`` removes the row (later flagged rows move up with it). Returns the table, the rows
    still flagged and a message for the user."""
    match = check.issues.index[check.issues["row"] == row]
    if match.empty:
        raise DataError(f"Row {row + 1} is not in the list of flagged rows (any more); pick one from the list.")
    issue = check.issues.loc[match[0]]
    issues = check.issues.drop(index=match[0])
    if action == ACCEPT:
        frame = frame.copy()
        frame[label_column] = frame[label_column].astype(object)
        frame.iloc[row, frame.columns.get_loc(label_column)] = issue["suggested_label"]
        message = f"Row {row + 1} relabelled `{issue['given_label']}` → `{issue['suggested_label']}`."
    elif action == KEEP:
        message = f"Row {row + 1} keeps its label `{issue['given_label']}`."
    elif action == DELETE:
        frame = frame.drop(index=frame.index[row]).reset_index(drop=True)
        issues = issues.assign(row=[r - 1 if r > row else r for r in issues["row"]])
        message = f"Row {row + 1} deleted; the rows after it moved up by one."
    else:
        raise ValueError(action)
    return frame, replace(check, issues=issues.reset_index(drop=True)), message


def issues_view(check: Optional[LabelCheck]) -> pd.DataFrame:
    """The flagged rows as listed on the page: 1-based row numbers (as in the page information), scores rounded."""
    if check is None or check.issues.empty:
        return pd.DataFrame(columns=list(ISSUE_VIEW_COLUMNS))
    shown = check.issues.head(_SHOWN_ROWS)[list(ISSUE_COLUMNS)].copy()
    shown["row"] = shown["row"].astype(int) + 1
    shown["score"] = shown["score"].astype(float).round(3)
    return shown_table(shown.set_axis(list(ISSUE_VIEW_COLUMNS), axis=1))


@dataclass
class ChecksView:
    """The deeper checks' components and states."""

    check_button: gr.Button
    duplicates_button: gr.Button
    issues_status: gr.Markdown
    issues_table: gr.Dataframe
    panel: gr.Row
    detail: gr.Markdown
    accept: gr.Button
    keep: gr.Button
    delete: gr.Button
    duplicates_status: gr.Markdown
    duplicates_box: gr.Accordion
    duplicates_table: gr.Dataframe
    check_state: gr.State
    chosen: gr.State  # the 0-based table row of the flagged row picked for a fix
    duplicates_found: gr.State  # (the table's source, the summary line) of the last duplicates search

    @property
    def issue_out(self) -> List[Any]:
        """What a label check updates (see :func:`_listed`)."""
        return [self.check_state, self.issues_table, self.issues_status, self.chosen, self.panel]

    @property
    def duplicates_out(self) -> List[Any]:
        return [self.duplicates_found, self.duplicates_status, self.duplicates_box, self.duplicates_table]


def build(table: gr.State, page: gr.Number, text_column: gr.Dropdown, label_column: gr.Dropdown,
          eval_table: gr.State, eval_fraction: gr.Slider, edited_out: Sequence[Any], edited_views: EditedViews, *,
          page_size: int, seed: int) -> Callable[[Any], None]:
    """The checks' components. ``edited_out`` are the outputs of ``edited_views`` (the grid's page among them).
    Returns ``follow(event)``, to call with each event that changes the table or the split elsewhere."""
    view = layout()
    handlers = ChecksHandlers(edited_views, len(edited_out), page_size, seed)
    private = {"api_visibility": "private"}
    view.check_button.click(handlers.check_labels, [table, text_column, label_column], view.issue_out, **private)
    view.issues_table.select(handlers.pick, view.check_state, [view.chosen, view.panel, view.detail], **private)
    fix_in = [table, view.check_state, view.chosen, page, text_column, label_column, eval_table, eval_fraction]
    for button, action in ((view.accept, ACCEPT), (view.keep, KEEP), (view.delete, DELETE)):
        button.click(handlers.fixer(action), fix_in, [*edited_out, *view.issue_out], **private)
    view.duplicates_button.click(handlers.duplicates, [table, text_column, label_column, eval_table, eval_fraction],
                                 view.duplicates_out, **private)

    def follow(event: Any) -> None:
        event.then(handlers.follow_edit, [view.check_state, table, text_column, label_column, view.duplicates_found],
                   [*view.issue_out, *view.duplicates_out[:3]], show_progress="hidden", **private)
    return follow


def layout() -> ChecksView:
    gr.Markdown("**Deeper checks** use sentence embeddings of every text (a few seconds per thousand rows), so "
                "they run when you press a button.")
    with gr.Row():
        check_button = gr.Button("Check labels", size="sm", elem_id="data-check-labels")
        duplicates_button = gr.Button("Find duplicates & leakage", size="sm", elem_id="data-find-duplicates")
    issues_status = gr.Markdown(elem_id="data-issues-status")
    issues_table = gr.Dataframe(issues_view(None), interactive=False, wrap=True, max_height=320, visible=False,
                                column_widths=column_widths(list(ISSUE_VIEW_COLUMNS), "text"),
                                label="Rows that may be mislabelled, most suspicious first (score: 1 − the "
                                      "probability a quick model gives the label); click one to fix it",
                                elem_id="data-issues")
    with gr.Row(visible=False, elem_id="data-issue-panel") as panel:
        detail = gr.Markdown(elem_id="data-issue-detail")
        accept = gr.Button("Accept suggestion", variant="primary", size="sm", scale=0, min_width=160,
                           elem_id="data-issue-accept")
        keep = gr.Button("Keep label", size="sm", scale=0, min_width=120, elem_id="data-issue-keep")
        delete = gr.Button("Delete row", variant="stop", size="sm", scale=0, min_width=120,
                           elem_id="data-issue-delete")
    duplicates_status = gr.Markdown(elem_id="data-duplicates-status")
    with gr.Accordion("Duplicate and leaking rows", open=False, visible=False) as duplicates_box:
        duplicates_table = gr.Dataframe(pd.DataFrame(columns=list(DUPLICATE_VIEW_COLUMNS)), interactive=False,
                                        wrap=True, max_height=320, elem_id="data-duplicates",
                                        column_widths=["18%", "12%", "35%", "35%"],
                                        label="For the train/eval kinds, text is the training text and other text "
                                              "the evaluation text")
    return ChecksView(check_button, duplicates_button, issues_status, issues_table, panel, detail, accept, keep,
                      delete, duplicates_status, duplicates_box, duplicates_table, gr.State(None), gr.State(None),
                      gr.State(None))


_ISSUE_OUT_COUNT, _ISSUE_STATUS = 5, 2  # ChecksView.issue_out: its length and the status line's position


def _listed(check: Optional[LabelCheck], done: str = "") -> List[Any]:
    """Updates of ``ChecksView.issue_out`` for ``check`` (nothing picked), the status led by what was ``done``."""
    listed = check is not None and not check.issues.empty
    status = " ".join(filter(None, (done, check.status() if check else "")))
    return [check, gr.Dataframe(issues_view(check), visible=listed), status, None, gr.Row(visible=False)]


class ChecksHandlers:
    """The deeper checks' handlers. ``edited_views`` gives the Data tab's ``edited_count`` updates after an edit."""

    def __init__(self, edited_views: EditedViews, edited_count: int, page_size: int, seed: int):
        self.edited_views, self.edited_count = edited_views, edited_count
        self.page_size, self.seed = page_size, seed

    @staticmethod
    @user_errors(keep=lambda message: kept_outputs(_ISSUE_OUT_COUNT, {_ISSUE_STATUS: status_line(message)}))
    def check_labels(data: TableData, text: str, label: str) -> List[Any]:
        skipped = app_label_check_note(data.frame, label)
        return _listed(None, skipped) if skipped else _listed(flag_rows(data.frame, text, label, data.name))

    @staticmethod
    def pick(check: Optional[LabelCheck], event: gr.SelectData) -> List[Any]:
        """A click on a listed row opens the fix panel for it (found by its row number: the list may be sorted)."""
        row = int(event.row_value[0]) - 1 if event.row_value else -1
        issues = check.issues if check is not None else pd.DataFrame(columns=["row"])
        match = issues[issues["row"] == row]
        if match.empty:
            return [None, gr.Row(visible=False), ""]
        issue = match.iloc[0]
        return [row, gr.Row(visible=True),
                f"**Row {row + 1}** is labelled `{issue['given_label']}`; a quick model says "
                f"`{issue['suggested_label']}` (score {float(issue['score']):.2f})."]

    def fixer(self, action: str) -> Callable[..., List[Any]]:
        """The handler of one fix button: the Data tab's updates after the edit, then the flagged rows left."""
        failed = self.edited_count + _ISSUE_STATUS

        @user_errors(keep=lambda message: kept_outputs(self.edited_count + _ISSUE_OUT_COUNT,
                                                       {failed: status_line(message)}))
        def fix(data: TableData, check: Optional[LabelCheck], row: Optional[int], number: Any, text: str,
                label: str, eval_data: Optional[TableData], fraction: float) -> List[Any]:
            if check is None or row is None:
                raise DataError("Pick a flagged row from the list first.")
            frame, check, message = apply_fix(data.frame, check, row, action, label)
            target = min(row, len(frame) - 1) // self.page_size + 1 if len(frame) else number  # the fixed row's page
            return [*self.edited_views(TableData(frame, data.name), target, text, label, eval_data, fraction),
                    *_listed(check, message)]
        return fix

    @staticmethod
    def follow_edit(check: Optional[LabelCheck], data: TableData, text: str, label: str,
                    found: Optional[Tuple[str, str]]) -> List[Any]:
        """After a change elsewhere: flagged rows follow the table, and a duplicates result is marked as older.
        Another table (a new file or sample) clears both."""
        if check is None:
            labels = [gr.skip()] * _ISSUE_OUT_COUNT
        else:
            labels = _listed(reconcile(check, data.frame, text, label) if check.source == data.name else None)
        if found is None:
            duplicates = [gr.skip()] * 3
        elif found[0] != data.name:
            duplicates = [None, "", gr.Accordion(visible=False)]
        else:
            duplicates = [gr.skip(), f"{found[1]} _(found before the latest change: press **Find duplicates & "
                                     "leakage** again)_", gr.skip()]
        return [*labels, *duplicates]

    @user_errors(keep=lambda message: kept_outputs(4, {1: status_line(message)}))
    def duplicates(self, data: TableData, text: str, label: str, eval_data: Optional[TableData], fraction: float):
        checked = prepare(data.frame, text, label, eval_frame=eval_data.frame if eval_data else None,
                          eval_fraction=fraction, seed=self.seed)
        checked.raise_for_errors()
        report = find_duplicates(checked.train_texts, checked.eval_texts or None)
        found = report.to_frame()
        where = f"{len(checked.train_texts)} training and {len(checked.eval_texts)} evaluation texts"
        summary = f"{report.summary()} ({where}.)"
        view = found[["kind", "similarity", "text", "other_text"]].round({"similarity": 3})
        view = shown_table(view.set_axis(list(DUPLICATE_VIEW_COLUMNS), axis=1))
        return [(data.name, summary), summary, gr.Accordion(visible=not found.empty), view]


def _label_key(value: Any) -> Optional[str]:
    """A label as compared across edits (1, 1.0 and "1" are the same label)."""
    try:
        return str(normalize_label(value))
    except ValueError:
        return None

