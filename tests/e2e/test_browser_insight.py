"""Know your data and your model, in headless Chromium: check the labels of an uploaded table and fix two flagged
rows (delete one, accept the suggestion for the other), list near-duplicates, train, read the metrics beside the
quick baselines, and ask why the model labels a sentence. Screenshots go to artifacts/screenshots/."""

from __future__ import annotations

import itertools
import re
import time
from pathlib import Path

import pandas as pd
from conftest import screenshot

ROOT = Path(__file__).resolve().parents[2]
NOUNS = ["movie", "film", "product", "service", "food", "book", "show", "day"]
GOOD = ["great", "excellent", "wonderful", "fantastic", "superb"]
BAD = ["awful", "terrible", "horrible", "boring", "dull"]
MISLABELLED = (6, 10)  # 0-based rows of clearly positive texts labelled "negative"


def _reviews(path: Path) -> Path:
    """48 unmistakable reviews, half positive, half negative, with two positive ones labelled negative."""
    rows = []
    for noun, good, bad in itertools.islice(zip(itertools.cycle(NOUNS), itertools.cycle(GOOD), itertools.cycle(BAD)),
                                            24):
        rows += [(f"i really love this {noun} , it was {good}", "positive"),
                 (f"i really hate this {noun} , it was {bad}", "negative")]
    for row in MISLABELLED:
        rows[row] = (rows[row][0], "negative")
    pd.DataFrame(rows, columns=["text", "label"]).to_csv(path, index=False)
    return path


def _pick_issue(page, row: int) -> None:
    """Click the flagged row numbered ``row`` (1-based) in the list; the fix panel opens for it."""
    cells = page.locator("#data-issues [data-testid^=cell-][data-testid$='-0']")
    next(cell for cell in cells.all() if cell.inner_text().strip() == str(row)).click()
    page.locator("#data-issue-detail").get_by_text(f"Row {row}").wait_for()


def _grid_cell(page, row: int, column: int) -> str:
    return page.locator(f"#data-grid [data-testid=cell-{row}-{column}]").inner_text().strip()


def test_check_fix_train_compare_and_explain(page, tiny_app_url, tmp_path):
    page.goto(tiny_app_url)
    page.locator("#data-summary").get_by_text("400 rows").wait_for()
    page.locator("#data-upload input[type=file]").set_input_files(str(_reviews(tmp_path / "reviews.csv")))
    page.locator("#data-summary").get_by_text("negative: 26, positive: 22").wait_for()

    # Check labels: both mislabelled rows are flagged, with "positive" suggested.
    page.locator("#data-check-labels").click()
    page.locator("#data-issues-status").get_by_text("may be mislabelled").wait_for()
    listed = page.locator("#data-issues").inner_text()
    assert all(f"i really love this {NOUNS[r // 2 % len(NOUNS)]}" in listed for r in MISLABELLED), listed
    screenshot(page, "insight_1_data_label_issues")

    # Delete the first: the grid loses it, and the other flagged row now points one row up.
    first, second = (r + 1 for r in MISLABELLED)
    second_text = _grid_cell(page, second - 1, 0)
    _pick_issue(page, first)
    page.locator("#data-issue-accept").wait_for()
    screenshot(page, "insight_2_data_issue_picked")
    page.locator("#data-issue-delete").click()
    page.locator("#data-issues-status").get_by_text(f"Row {first} deleted").wait_for()
    assert "Rows 1–47 of 47" in page.locator("#data-page-info").inner_text()
    assert _grid_cell(page, second - 2, 0) == second_text

    # Accept the suggestion for the second, now row second - 1: its label in the grid changes.
    _pick_issue(page, second - 1)
    page.locator("#data-issue-accept").click()
    page.locator("#data-issues-status").get_by_text(f"Row {second - 1} relabelled").wait_for()
    assert _grid_cell(page, second - 2, 1) == "positive"
    page.locator("#data-summary").get_by_text("negative: 24, positive: 23").wait_for()
    screenshot(page, "insight_3_data_issues_fixed")

    page.locator("#data-find-duplicates").click()
    page.locator("#data-duplicates-status").get_by_text("Duplicates:").wait_for()
    assert "near-duplicate(s) within training" in page.locator("#data-duplicates-status").inner_text()  # templates
    page.get_by_text("Duplicate and leaking rows").click()
    page.locator("#data-duplicates").get_by_text("near within train").filter(visible=True).first.wait_for()

    # Train; the Evaluate tab shows the model beside the quick baselines.
    page.get_by_role("tab", name="3 · Train").click()
    page.get_by_text("Hyperparameters").click()
    page.locator("#hp-epochs input").fill("8")
    page.locator("#hp-batch input").fill("8")
    page.get_by_label(re.compile(r"^Learning rate")).fill("0.003")  # the tiny model learns in seconds
    page.locator("#train-start").click()
    deadline = time.monotonic() + 240
    while page.locator("#progress-box").get_attribute("data-state") not in ("completed", "failed"):
        assert time.monotonic() < deadline, page.locator("#progress-text").inner_text()
        time.sleep(0.2)
    assert page.locator("#progress-box").get_attribute("data-state") == "completed"
    page.get_by_role("tab", name="4 · Evaluate").click()
    comparison = page.locator("#evaluate-baselines")
    comparison.get_by_text("TF-IDF + logistic regression").wait_for()
    assert "Fine-tuned model" in comparison.inner_text() and "F1 (macro)" in comparison.inner_text()
    assert "Fine-tuning:" in page.locator("#evaluate-baselines-note").inner_text()
    screenshot(page, "insight_4_evaluate_baselines")

    # Predict, then ask why: the words are highlighted.
    page.get_by_role("tab", name="5 · Predict").click()
    sentence = page.locator("#predict-text textarea")
    sentence.fill("i really love this book , it was great")
    sentence.press("Enter")
    page.locator("#predict-label").get_by_text("%").first.wait_for()
    page.locator("#predict-explain").click()
    page.locator("#predict-explain-note").get_by_text("most supported by").wait_for()
    explanation = page.locator("#predict-explanation")
    assert "love" in explanation.inner_text() and "great" in explanation.inner_text()
    assert explanation.locator("[style*=background-color]").count() >= 3
    screenshot(page, "insight_5_predict_explained")
