"""Several labels per text in headless Chromium: upload a table whose label cells hold `a;b`, read the task the
Data tab found, train a tiny model, read the per-label scores beside the baselines, and predict a sentence that
gets two labels. Screenshots go to artifacts/screenshots/."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pandas as pd
from conftest import make_multi_label_data, screenshot

ROOT = Path(__file__).resolve().parents[2]


def test_several_labels_per_text_upload_train_predict(page, tiny_app_url, tmp_path):
    texts, labels = make_multi_label_data(96, seed=1)
    table = tmp_path / "reviews_tags.csv"
    pd.DataFrame({"text": texts, "labels": labels}).to_csv(table, index=False)

    page.goto(tiny_app_url)
    page.locator("#data-summary").get_by_text("400 rows").wait_for()
    page.locator("#data-upload input[type=file]").set_input_files(str(table))
    summary = page.locator("#data-summary")
    summary.get_by_text("several labels per text", exact=True).wait_for()
    text = summary.inner_text()
    assert "3 labels; 50% of rows have 2+" in text and "complaint: 48, praise: 48, recommend: 48" in text
    assert "random split of 20%" in text
    # Label issues say plainly that they do not apply; the grid shows the cells as a;b.
    page.locator("#data-check-labels").click()
    page.locator("#data-issues-status").get_by_text("does not apply").wait_for()
    assert page.locator("#data-grid [data-testid=cell-0-1]").inner_text().strip() in ("praise;recommend", "complaint")
    screenshot(page, "tasks_1_data_multi_label")

    page.get_by_role("tab", name="3 · Train").click()
    assert page.locator("#train-task").get_by_role("combobox").input_value() == "Detect from the label column"
    page.locator("#train-method").get_by_label("Full fine-tuning", exact=True).check()
    page.get_by_text("Hyperparameters").click()
    # Choosing the method fills in its defaults a moment later, which may land after a value typed meanwhile: each
    # value is typed until it stays (this tiny model learns the task only with these).
    for field, value in ((page.locator("#hp-epochs input"), "8"), (page.locator("#hp-batch input"), "8"),
                         (page.get_by_label(re.compile(r"^Learning rate")), "0.003")):
        for _ in range(20):
            field.fill(value)
            field.press("Tab")
            time.sleep(0.3)
            if field.input_value() == value:
                break
        assert field.input_value() == value
    page.locator("#train-start").click()
    deadline = time.monotonic() + 240
    while page.locator("#progress-box").get_attribute("data-state") not in ("completed", "failed"):
        assert time.monotonic() < deadline, page.locator("#progress-text").inner_text()
        time.sleep(0.2)
    progress = page.locator("#progress-text").inner_text()
    assert page.locator("#progress-box").get_attribute("data-state") == "completed", progress
    assert "F1 (macro)" in progress and "accuracy" not in progress
    assert "F1 (micro)" in page.locator("#train-epochs").inner_text()
    assert "Task: several labels per text" in page.locator("#train-log textarea").input_value()
    screenshot(page, "tasks_2_train_multi_label")

    page.get_by_role("tab", name="4 · Evaluate").click()
    page.locator("#evaluate-status").get_by_text("label set").wait_for()
    assert "F1 (micro)" in page.locator("#evaluate-metrics").inner_text()
    page.locator("#evaluate-baselines").get_by_text("one-vs-rest").first.wait_for()
    note = page.locator("#evaluate-baselines-note").inner_text()
    assert note.startswith("Fine-tuning:") and "macro F1" in note and "best baseline" in note
    screenshot(page, "tasks_3_evaluate_multi_label")

    page.get_by_role("tab", name="5 · Predict").click()
    sentence = page.locator("#predict-text textarea")
    sentence.fill("the film was really great")
    sentence.press("Enter")
    chosen = page.locator("#predict-chosen")
    chosen.get_by_text("Labels:").wait_for()
    assert "praise" in chosen.inner_text() and "recommend" in chosen.inner_text()
    assert "complaint" not in chosen.inner_text()
    probabilities = page.locator("#predict-label").inner_text()
    assert all(name in probabilities for name in ("praise", "recommend", "complaint"))  # the others' too
    screenshot(page, "tasks_4_predict_multi_label")
    # Typing another text clears the labels of the last one (in the browser, before anything reaches the server),
    # and pressing Enter gives the new text's labels.
    sentence.select_text()
    sentence.press_sequentially("an awful film, avoid it", delay=20)
    page.wait_for_function("() => !document.querySelector('#predict-chosen').innerText.includes('Labels:')")
    sentence.press("Enter")
    chosen.get_by_text("Labels:").wait_for()
    assert "complaint" in chosen.inner_text() and "praise" not in chosen.inner_text()
