"""In headless Debian Chromium: a browser keeps its owner id across reloads (gr.BrowserState), so its runs stay
listed; another browser sees none of them. The run comes from the Export tab's "Import model (.zip)"."""

from __future__ import annotations

import re
import time

from gradio_client import Client


RUN_ID = re.compile(r"\d{8}-\d{6}-[0-9a-f]{6}")


def _model_zip(url: str) -> str:
    """A model zip made through the API (its own session, so its run is nobody else's)."""
    client = Client(url, verbose=False)
    client.predict("lab_sentences.csv", 0.2, api_name="/load_sample")
    progress = client.predict(preset_name="fast", epochs=2, learning_rate=3e-3, batch_size=8, api_name="/train")[0]
    return client.predict(RUN_ID.search(progress)[0], api_name="/export_model")


def _wait_text(locator, text: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while text not in locator.inner_text():
        assert time.monotonic() < deadline, f"{text!r} did not appear in: {locator.inner_text()[:300]}"
        time.sleep(0.2)


def _export_tab(page) -> None:
    page.get_by_role("tab", name="6 · Export").click()
    page.locator("#export-history").wait_for()


def test_a_browser_keeps_its_runs_across_reloads_and_others_do_not_see_them(tiny_app_url, browser):
    archive = _model_zip(tiny_app_url)
    first = browser.new_context(viewport={"width": 1280, "height": 900})
    page = first.new_page()
    page.set_default_timeout(60_000)
    page.goto(tiny_app_url)
    page.locator("#data-summary").get_by_text("rows").first.wait_for()
    _export_tab(page)
    page.locator("#export-import input[type=file]").set_input_files(archive)
    page.locator("#export-status").get_by_text("Imported the model as run").wait_for()
    run_id = RUN_ID.search(page.locator("#export-status").inner_text())[0]
    _wait_text(page.locator("#export-history"), run_id)
    _wait_text(page.locator("#active-model"), run_id)
    assert RUN_ID.search(archive.split("finetuner-")[-1])[0] not in page.locator("#export-history").inner_text()

    page.reload()  # same browser: the owner id comes back from localStorage, and with it the run
    page.locator("#data-summary").get_by_text("rows").first.wait_for()
    _wait_text(page.locator("#active-model"), run_id)  # the most recent completed run is active again
    _export_tab(page)
    _wait_text(page.locator("#export-history"), run_id)

    second = browser.new_context(viewport={"width": 1280, "height": 900})  # another browser: empty storage
    other = second.new_page()
    other.set_default_timeout(60_000)
    other.goto(tiny_app_url)
    other.locator("#data-summary").get_by_text("rows").first.wait_for()
    _export_tab(other)
    other.get_by_role("button", name="Refresh list").click()
    time.sleep(1.5)
    assert run_id not in other.locator("#export-history").inner_text()
    assert run_id not in other.locator("#export-run").inner_text()

    # The first browser still has it after the second one came and went.
    page.get_by_role("button", name="Refresh list").click()
    _wait_text(page.locator("#export-history"), run_id)

    # Deleting asks first; Cancel keeps the run, the confirm button deletes it.
    page.locator("#export-delete").click()
    _wait_text(page.locator("#export-status"), "cannot be undone")
    page.locator("#export-cancel").click()
    page.locator("#export-confirm").wait_for(state="hidden")
    assert run_id in page.locator("#export-history").inner_text()
    page.locator("#export-delete").click()
    page.locator("#export-confirm").click()
    _wait_text(page.locator("#export-status"), f"Deleted run {run_id}")
    first.close()
    second.close()
