"""The Data tab's table handling: pages written back after edits, row ranges, page bounds."""

from __future__ import annotations

import pandas as pd
import pytest

from finetuner.errors import DataError
from finetuner.ui.data_tab import PAGE_SIZE, _page, _page_info, parse_rows, replace_page


@pytest.fixture
def frame() -> pd.DataFrame:
    n = 2 * PAGE_SIZE + 10
    return pd.DataFrame({"text": [f"text {i}" for i in range(n)], "label": ["a", "b"] * (n // 2)})


def test_an_edited_page_replaces_only_its_rows(frame):
    page = _page(frame, 2).copy()
    page.iloc[0, 0] = "edited"
    result = replace_page(frame, 2, page)
    assert len(result) == len(frame) and result.loc[PAGE_SIZE, "text"] == "edited"
    assert result.loc[PAGE_SIZE - 1, "text"] == frame.loc[PAGE_SIZE - 1, "text"]


def test_rows_added_or_deleted_on_a_page_shift_the_rest(frame):
    page = _page(frame, 1)
    grown = pd.concat([page, pd.DataFrame({"text": ["new"], "label": ["a"]})], ignore_index=True)
    result = replace_page(frame, 1, grown)
    assert len(result) == len(frame) + 1 and result.loc[PAGE_SIZE, "text"] == "new"
    assert result.loc[PAGE_SIZE + 1, "text"] == frame.loc[PAGE_SIZE, "text"]
    shrunk = replace_page(frame, 3, _page(frame, 3).iloc[1:])
    assert len(shrunk) == len(frame) - 1 and "text 100" not in shrunk["text"].tolist()


def test_renamed_and_added_columns_follow_the_grid(frame):
    renamed = _page(frame, 1).rename(columns={"label": "sentiment"})
    assert list(replace_page(frame, 1, renamed).columns) == ["text", "sentiment"]
    extra = _page(frame, 1).assign(note="x")
    result = replace_page(frame, 1, extra)
    assert list(result.columns) == ["text", "label", "note"] and result["note"].isna().sum() == len(frame) - PAGE_SIZE


def test_pages_show_empty_cells_as_blank_and_say_where_they_are(frame):
    frame.loc[3, "label"] = None
    assert _page(frame, 1).loc[3, "label"] == ""
    assert _page_info(frame, 3) == f"Rows {2 * PAGE_SIZE + 1}–{len(frame)} of {len(frame)} · page 3 of 3"
    assert _page_info(frame.iloc[:0], 1) == "No rows yet."


def test_row_ranges_are_parsed_and_checked():
    assert parse_rows("3, 7-9, 3", 10) == [3, 7, 8, 9]
    for bad, message in (("", "Give the rows"), ("x", "not a row number"), ("5-2", "outside"), ("11", "outside")):
        with pytest.raises(DataError, match=message):
            parse_rows(bad, 10)
