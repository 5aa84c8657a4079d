"""The labelling loop in headless Chromium: upload texts without labels, type class names, label 10 rows with the
keyboard while the suggestions change, accept the confident suggestions, train on the labelled rows only, and export
the labelled table with who labelled each row. Screenshots go to artifacts/screenshots/label_*.png."""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path

import pandas as pd
from conftest import screenshot

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from topic_data import topic_data  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
# Class names that say nothing about the topics: the zero-shot suggestions are poor, a few labels fix them.
NAMES = {"sports": "alpha", "cooking": "beta", "weather": "gamma"}


def _download(page, name: str, folder: Path) -> Path:
    link = page.locator(f'#label-files a[download="{name}"]')
    with page.expect_download() as info:
        link.click()
    target = folder / name
    info.value.save_as(target)
    return target


def _status(page) -> str:
    return page.locator("#label-status").inner_text()


def _wait_for(condition, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


def test_label_with_the_keyboard_then_train_and_export(page, tiny_app_url, tmp_path):
    texts, topics = topic_data(12)  # 36 short texts, three topics
    truth = {text: NAMES[topic] for text, topic in zip(texts, topics)}
    table = tmp_path / "unlabelled.csv"
    pd.DataFrame({"text": texts, "label": [""] * len(texts)}).to_csv(table, index=False)

    page.goto(tiny_app_url)
    page.locator("#data-summary").get_by_text("400 rows").wait_for()
    page.locator("#data-upload input[type=file]").set_input_files(str(table))
    page.locator("#data-summary").get_by_text("36 rows have no label yet").wait_for()
    screenshot(page, "label_1_data_unlabelled")

    page.get_by_role("tab", name="2 · Label").click()
    page.locator("#label-classes textarea, #label-classes input").first.fill("alpha, beta, gamma")
    page.locator("#label-start").click()
    card = page.locator("#label-card")
    _wait_for(lambda: card.get_attribute("data-row") not in (None, "-1"), "no row to label after Start")
    assert "Zero-shot" in _status(page)
    for n, name in enumerate(NAMES.values(), start=1):
        assert page.locator(f"#label-class-{n}").inner_text().strip() == f"{n} · {name}"
    page.locator("#label-export").click()
    first = pd.read_csv(_download(page, "labelled.csv", tmp_path / "before"))
    screenshot(page, "label_2_zero_shot")

    page.locator("#label-card").click()  # keys act while no text field has the focus
    by_enter = 0
    for done in range(1, 11):
        row = card.get_attribute("data-row")
        text = page.locator("#label-text").inner_text().strip()
        suggestion = page.locator("#label-suggestion").inner_text().strip()
        if suggestion == truth[text]:
            page.keyboard.press("Enter")
            by_enter += 1
        else:
            page.keyboard.press(str(list(NAMES.values()).index(truth[text]) + 1))
        _wait_for(lambda: f"{done} labelled by a person" in _status(page) and card.get_attribute("data-row") != row,
                  f"label {done} was not taken: {_status(page)}")
    assert 0 < by_enter < 10  # both keys were used: Enter to accept a suggestion, a digit to pick a class
    status = _status(page)
    # The refit says what it changed (maybe nothing by now: the export below compares with the zero-shot ones).
    assert re.search(r"Refitted on 10 label\(s\): \d+ suggestion\(s\) changed", status), status
    assert "cross-validated accuracy" in status
    page.locator("#label-curve-chart circle").first.wait_for()
    screenshot(page, "label_3_after_10_labels")

    # The suggestions changed: the unlabelled rows' suggestions differ from the zero-shot ones in the export.
    page.locator("#label-export").click()
    page.locator("#label-status").get_by_text("Exported 36 rows (10 person").wait_for()
    after = pd.read_csv(_download(page, "labelled.csv", tmp_path / "after"))
    still = after["labelled_by"] == "suggestion"
    assert (first.loc[still, "suggested_label"] != after.loc[still, "suggested_label"]).sum() > 0
    right = (after["suggested_label"] == [truth[t] for t in after["text"]]).mean()
    assert right > (first["suggested_label"] == [truth[t] for t in first["text"]]).mean()

    # Train on the labelled rows only.
    # Accept the confident suggestions (about half of the rest: at their median confidence).
    level = f"{int(after.loc[still, 'confidence'].median() * 100) / 100:.2f}"
    threshold = page.locator("#label-threshold input[type=number]")
    threshold.fill(level)
    threshold.press("Enter")
    page.locator("#label-accept-bulk").click()
    _wait_for(lambda: f"with confidence {level} or more" in _status(page), f"no bulk acceptance: {_status(page)}")
    accepted = int(re.search(r"Accepted (\d+) suggestion", _status(page))[1])
    assert 0 < accepted < 26
    page.locator("#label-use").click()
    labelled = 10 + accepted
    page.locator("#label-status").get_by_text(f"now holds the {labelled} labelled rows").wait_for()
    page.get_by_role("tab", name="1 · Data").click()
    page.locator("#data-source").get_by_text(f"({labelled} rows)").wait_for()
    assert "unlabelled (labelled)" in page.locator("#data-source").inner_text()
    assert page.locator("#data-grid").get_by_text("accepted suggestion").count() > 0  # who labelled: a column
    split = re.search(r"Training on (\d+) rows, evaluating on (\d+)", page.locator("#data-summary").inner_text())
    assert split and int(split[1]) + int(split[2]) == labelled

    page.get_by_role("tab", name="3 · Train").click()
    page.locator("#train-method").get_by_label("Full fine-tuning", exact=True).check()
    page.get_by_text("Hyperparameters").click()
    epochs = page.locator("#hp-epochs input")
    for _ in range(20):  # choosing the method fills in its defaults a moment later: type until the value stays
        epochs.fill("2")
        epochs.press("Tab")
        time.sleep(0.3)
        if epochs.input_value() == "2":
            break
    page.locator("#train-start").click()
    box = page.locator("#progress-box")
    _wait_for(lambda: box.get_attribute("data-state") in ("completed", "failed"), "training did not finish", 240)
    progress = page.locator("#progress-text").inner_text()
    assert box.get_attribute("data-state") == "completed", progress
    assert f"on {split[1]} training rows" in page.locator("#train-log textarea").input_value()
    screenshot(page, "label_4_trained")

    page.get_by_role("tab", name="2 · Label").click()
    page.locator("#label-export").click()
    page.locator("#label-status").get_by_text(f"{accepted} accepted suggestion").wait_for()
    exported = pd.read_csv(_download(page, "labelled.csv", tmp_path / "final"))
    lines = pd.read_json(_download(page, "labelled.jsonl", tmp_path / "final"), lines=True)
    assert list(exported.columns) == ["text", "label", "suggested_label", "confidence", "labelled_by"]
    counts = exported["labelled_by"].value_counts().to_dict()
    assert counts == {k: v for k, v in {"person": 10, "accepted suggestion": accepted,
                                        "suggestion": 36 - labelled}.items() if v}
    person = exported[exported["labelled_by"] == "person"]
    assert (person["label"] == [truth[t] for t in person["text"]]).all()
    assert exported.loc[exported["labelled_by"] == "suggestion", "label"].isna().all()
    assert lines["labelled_by"].tolist() == exported["labelled_by"].tolist()
    screenshot(page, "label_5_exported")
