"""The app in headless Debian Chromium: load a sample, train a tiny model while progress updates, read the
metrics, predict a sentence, stop a second run, and keep using the app. Screenshots go to
artifacts/screenshots/ (not committed); the measured startup time to artifacts/startup.txt."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import free_port

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "artifacts"
SHOTS = ARTIFACTS / "screenshots"
RUN_ID = re.compile(r"\d{8}-\d{6}-[0-9a-f]{6}")


@pytest.fixture(scope="module")
def app_url(tmp_path_factory, tiny_bert):
    """`python app.py` in a subprocess on a free port, with the tiny model as its default model."""
    port = free_port()
    env = dict(os.environ, FINETUNER_MODEL=tiny_bert, FINETUNER_RUNS_DIR=str(tmp_path_factory.mktemp("runs")),
               GRADIO_SERVER_NAME="127.0.0.1", GRADIO_SERVER_PORT=str(port), GRADIO_ANALYTICS_ENABLED="False",
               OMP_NUM_THREADS="1")  # a tiny model only slows down with more threads on a busy machine
    log = open(tmp_path_factory.mktemp("log") / "app.log", "w")
    started = time.monotonic()
    process = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    try:
        while True:
            assert process.poll() is None, f"app.py exited; see {log.name}"
            assert time.monotonic() - started < 120, "app.py did not answer within 120 s"
            try:
                urllib.request.urlopen(url, timeout=1)
                break
            except OSError:
                time.sleep(0.2)
        yield url, started
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


def _shot(page, name: str) -> None:
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def _tab(page, name: str) -> None:
    page.get_by_role("tab", name=name).click()


def _progress(page):
    box = page.locator("#progress-box")
    return box.get_attribute("data-state"), page.locator("#progress-text").inner_text()


def _train(page, epochs: int, until: tuple, timeout: float = 180):
    """Set epochs, press Start, and sample the progress text until the state is one of ``until``."""
    page.locator("#hp-epochs input").fill(str(epochs))
    page.locator("#train-start").click()
    seen, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        state, text = _progress(page)
        if not seen or seen[-1] != text:
            seen.append(text)
        if state in until:
            return state, seen
        time.sleep(0.1)
    raise AssertionError(f"training did not reach {until}; progress seen: {seen[-5:]}")


def test_the_whole_flow_in_a_browser(page, app_url):  # the browser is up before the app starts
    url, started = app_url
    page.goto(url)
    page.locator("#data-summary").get_by_text("400 rows").wait_for()
    _tab(page, "3 · Train")
    page.locator("#train-start").wait_for()
    startup = time.monotonic() - started
    (ARTIFACTS / "startup.txt").write_text(f"app.py start to an interactive page in Chromium: {startup:.1f} s\n")
    assert startup < 60

    # Data: load another bundled sample.
    _tab(page, "1 · Data")
    page.locator("#data-sample input").click()
    page.get_by_role("option", name="news_topics_agnews.csv").click()
    page.locator("#data-summary").get_by_text("4 classes").wait_for()
    assert "Sci/Tech: 100" in page.locator("#data-summary").inner_text()
    assert "Loaded: news_topics_agnews.csv (400 rows)" in page.locator("#data-source").inner_text()
    assert "Rows 1–50 of 400" in page.locator("#data-page-info").inner_text()
    _shot(page, "01_data_sample_loaded")

    # A file that cannot be read: a message, and the table shown stays as it was (no "Error" badges).
    bad = ARTIFACTS / "e2e-binary.csv"
    bad.write_bytes(b"\x00\x01\x02 binary \x00")
    page.locator("#data-upload input[type=file]").set_input_files(str(bad))
    page.locator("#data-source").get_by_text("Problem").wait_for()
    assert "binary" in page.locator("#data-source").inner_text()
    assert "4 classes" in page.locator("#data-summary").inner_text()
    assert "Rows 1–50 of 400" in page.locator("#data-page-info").inner_text()
    assert page.locator("#data-grid [data-testid=cell-0-1]").inner_text().strip() == "Sci/Tech"
    _shot(page, "01b_data_upload_error")
    bad.unlink()

    # Edit a label in the grid (the checks follow), then page through the table.
    label_cell = page.locator("#data-grid [data-testid=cell-0-1]")
    assert label_cell.inner_text().strip() == "Sci/Tech"
    label_cell.dblclick()
    editor = label_cell.locator("input, textarea").first
    editor.fill("World")
    editor.press("Enter")
    page.locator("#data-summary").get_by_text("Sci/Tech: 99, Sports: 100, World: 101").wait_for()
    assert "4 classes" in page.locator("#data-summary").inner_text()
    page.get_by_role("button", name="Next page ▶").click()
    page.locator("#data-page-info").get_by_text("Rows 51–100 of 400").wait_for()
    _shot(page, "02_data_edited_page_2")

    # Train: progress updates several times, then metrics per epoch.
    _tab(page, "3 · Train")
    page.get_by_text("Hyperparameters").click()
    page.locator("#hp-batch input").fill("8")
    state, seen = _train(page, epochs=6, until=("completed", "failed"))
    assert state == "completed", seen[-1]
    steps = [text for text in seen if text.startswith("Step ")]
    assert len(steps) >= 2, f"progress updated only {len(steps)} time(s): {seen}"
    first_run = RUN_ID.search(seen[-1])[0]
    epochs_table = page.locator("#train-epochs").inner_text()
    assert "Accuracy" in epochs_table and "F1 (macro)" in epochs_table
    # The evaluation loss is drawn live, one marker per evaluation (one per epoch here).
    assert page.locator('#loss-chart circle[data-series="evaluation"]').count() >= 1
    _shot(page, "03_train_completed")

    # Evaluate: metrics, per-class report and the confusion matrix of the new run.
    _tab(page, "4 · Evaluate")
    page.locator("#evaluate-status").get_by_text(first_run).wait_for()
    metrics = page.locator("#evaluate-metrics").inner_text()
    assert "Accuracy" in metrics and "F1 (weighted)" in metrics
    assert "Sports" in page.locator("#evaluate-confusion").inner_text()
    _shot(page, "04_evaluate")

    # Predict: a sentence gets a label with class probabilities.
    _tab(page, "5 · Predict")
    page.locator("#predict-text textarea").fill("The team won the championship game last night")
    page.locator("#predict-text textarea").press("Enter")
    label = page.locator("#predict-label")
    label.get_by_text("%").first.wait_for()
    assert any(name in label.inner_text() for name in ("World", "Sports", "Business", "Sci/Tech"))
    _shot(page, "05_predict")

    # A second, long run is stopped: recorded as stopped, the first model stays active, the app stays usable.
    _tab(page, "3 · Train")
    page.locator("#hp-epochs input").fill("500")
    page.locator("#train-start").click()
    page.locator("#progress-text").get_by_text(re.compile(r"^Step \d+")).wait_for()
    page.locator("#train-stop").click()
    page.locator("#progress-box[data-state=stopped]").wait_for()
    assert "Stopped at step" in _progress(page)[1]
    assert page.locator("#train-start").is_enabled() and not page.locator("#train-stop").is_enabled()
    assert first_run in page.locator("#active-model").inner_text()
    _shot(page, "06_train_stopped")

    _tab(page, "5 · Predict")
    page.locator("#predict-text textarea").fill("Stocks fell as oil prices rose")
    page.locator("#predict-run").click()
    page.locator("#predict-label").get_by_text("%").first.wait_for()
    _tab(page, "6 · Export")
    history = page.locator("#export-history")
    history.get_by_text("stopped").wait_for()
    assert "completed" in history.inner_text()
    _shot(page, "07_export_history_after_stop")

    # ONNX export of the active (completed) run: checked against the model, kept in the run, then Predict runs on it.
    page.locator("#export-onnx").click()
    status = page.locator("#export-status")
    status.get_by_text("now use ONNX Runtime").wait_for(timeout=180_000)
    assert "labels identical to pytorch" in status.inner_text() and first_run in status.inner_text()
    _tab(page, "5 · Predict")
    page.locator("#predict-run").click()
    page.locator("#predict-label").get_by_text("%").first.wait_for()
    _tab(page, "6 · Export")

    # Compare the two runs: settings side by side (the epochs differ), scores, and both training losses overlaid.
    page.locator("#compare").get_by_text("Compare runs").first.click()
    picker = page.locator("#compare-runs input")
    for label in (re.compile(f"^{first_run}"), re.compile(r"· stopped$")):
        picker.click()
        page.get_by_role("option", name=label).click()
    page.keyboard.press("Escape")
    page.locator("#compare-button").click()
    page.locator("#compare-status").get_by_text("Comparing 2 runs").wait_for()
    settings = page.locator("#compare-settings").inner_text()
    assert "epochs" in settings and "500" in settings and "✱" in settings  # 6 and 500 epochs: marked as differing
    assert "Accuracy" in page.locator("#compare-metrics").inner_text()
    assert page.locator("#compare-loss-chart polyline").count() == 2
    page.locator("#compare").scroll_into_view_if_needed()
    _shot(page, "07b_compare_runs")

    # Method: a decoder LLM in the model picker selects LoRA and shows its settings; the user can switch back.
    _tab(page, "3 · Train")
    lora = page.locator("#train-lora")
    assert not lora.is_visible()
    page.locator("#train-model input").click()
    page.get_by_role("option", name=re.compile(r"^smollm2 · .*· LoRA$")).click()
    lora.get_by_text("Rank r").wait_for()
    assert page.locator("#train-method").get_by_label("LoRA (adapter + head)").is_checked()
    _shot(page, "08_train_lora_settings")
    page.locator("#train-method").get_by_label("Full fine-tuning", exact=True).check()
    lora.wait_for(state="hidden")
