"""What a new user meets in the app on its defaults (issue #21): a fresh ``python app.py``, the preloaded
400-row movie-review sample, preset "fast", method Automatic, and Start training pressed without changing
anything. The must-show: completed in ≤ 60 s on 2 quiet CPU cores, and the Evaluate tab's "Fine-tuning: … points"
line ≥ 0 against the better instant baseline.

    python -m bench.app_first_run [--repeats 1] [--model NAME]

Each repeat starts its own app process (a fresh temporary FINETUNER_RUNS_DIR; FINETUNER_MODEL only with --model,
else the bundled model) and drives it in headless Debian Chromium. It records the seconds from the process start
to an interactive page (the sample shown, the Train tab's Start button there), the seconds from the click on
Start to a "completed" (or "failed") progress box, the progress texts, method line and log lines seen, and the
Evaluate tab's baselines note (with its signed points), accuracy and ECE. Screenshots of the Train tab after
training and of the Evaluate tab go to artifacts/screenshots/bench_first_run_*.png; the figures, with the machine
and its load average at start and end, to results/app_first_run.json.
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from typing import Any, Dict, List, Optional

from .common import ROOT, load_avg, log, machine_info, write_json

SHOTS = ROOT / "artifacts" / "screenshots"
TRAIN_TIMEOUT_S = 15 * 60


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _number(pattern: str, text: str) -> Optional[float]:
    found = re.search(pattern, text)
    return float(found.group(1)) if found else None


def _text(page, selector: str) -> str:
    """The visible text of ``selector``, or "" when the page does not render it (a hidden group)."""
    found = page.locator(selector)
    return found.first.inner_text().strip() if found.count() else ""


def _add_new(seen: List[str], text: str) -> None:
    if text and text not in seen:
        seen.append(text)


def one_run(browser, repeat: int, model: Optional[str], workdir: str) -> Dict[str, Any]:
    port = _free_port()
    env = dict(os.environ, FINETUNER_RUNS_DIR=os.path.join(workdir, f"runs{repeat}"), GRADIO_SERVER_NAME="127.0.0.1",
               GRADIO_SERVER_PORT=str(port), GRADIO_ANALYTICS_ENABLED="False")
    env.pop("FINETUNER_MODEL", None)
    if model:
        env["FINETUNER_MODEL"] = model
    app_log = open(os.path.join(workdir, f"app{repeat}.log"), "w")
    url, result = f"http://127.0.0.1:{port}/", {"repeat": repeat, "model": model or "bundled default"}
    started = time.monotonic()
    process = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=env, stdout=app_log, stderr=subprocess.STDOUT)
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    try:
        while True:  # the server answers
            if process.poll() is not None:
                raise RuntimeError(f"app.py exited with {process.returncode}; see {app_log.name}")
            try:
                urllib.request.urlopen(url, timeout=1)
                break
            except OSError:
                time.sleep(0.2)
        result["seconds_to_http"] = round(time.monotonic() - started, 1)
        page.goto(url)
        page.locator("#data-summary").get_by_text("400 rows").wait_for(timeout=120_000)
        page.get_by_role("tab", name="3 · Train").click()
        page.locator("#train-start").wait_for()
        result["seconds_to_interactive"] = round(time.monotonic() - started, 1)

        page.locator("#train-start").click()
        clicked, state = time.monotonic(), None
        progress, methods, log_lines = [], [], []
        while time.monotonic() - clicked < TRAIN_TIMEOUT_S:
            box = page.locator("#progress-box")
            state = box.get_attribute("data-state")
            _add_new(progress, _text(page, "#progress-text"))
            _add_new(methods, _text(page, "#progress-method"))
            for line in reversed(page.locator("#train-log textarea").input_value().splitlines()):  # newest first
                _add_new(log_lines, line.strip())
            if state in ("completed", "failed"):
                break
            time.sleep(0.25)
        result["seconds_start_to_end"] = round(time.monotonic() - clicked, 1)
        result.update(state=state, progress_texts=progress, method_lines=methods, log_lines=log_lines)
        result["screenshot_train"] = _shot(page, f"bench_first_run_{repeat}_train")

        page.get_by_role("tab", name="4 · Evaluate").click()
        if state == "completed":
            page.locator("#evaluate-status").get_by_text("Run ").wait_for(timeout=60_000)
            try:
                page.locator("#evaluate-baselines-note").get_by_text("Fine-tuning").wait_for(timeout=60_000)
            except Exception:  # no baselines note shown: recorded as empty
                pass
        note, metrics = _text(page, "#evaluate-baselines-note"), _text(page, "#evaluate-metrics")
        result.update(evaluate_status=_text(page, "#evaluate-status"), baselines_note=note,
                      points=_number(r"([+-]?\d+(?:\.\d+)?) points", note.replace("−", "-")),
                      accuracy=_number(r"Accuracy\s+([0-9.]+)", metrics),
                      ece=_number(r"Calibration error \(ECE\)\s+([0-9.]+)", metrics))
        if "same accuracy as the best baseline" in note:
            result["points"] = 0.0
        result["screenshot_evaluate"] = _shot(page, f"bench_first_run_{repeat}_evaluate")
        return result
    finally:
        page.close()
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
        app_log.close()
        result["app_log_tail"] = open(app_log.name).read()[-2000:]


def _shot(page, name: str) -> str:
    path = SHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return str(path.relative_to(ROOT))


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--model", help="FINETUNER_MODEL for the app (default: the bundled model)")
    args = parser.parse_args(argv)
    from playwright.sync_api import sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    payload: Dict[str, Any] = {"machine": machine_info(), "load_avg_start": load_avg(), "runs": []}
    with tempfile.TemporaryDirectory(prefix="bench-first-run-") as workdir, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", headless=True,
                                             args=["--no-sandbox"])
        try:
            for repeat in range(1, args.repeats + 1):
                log(f"repeat {repeat}/{args.repeats}: starting app.py")
                run = one_run(browser, repeat, args.model, workdir)
                payload["runs"].append(run)
                log(f"repeat {repeat}: interactive {run.get('seconds_to_interactive')} s, Start→{run['state']} "
                    f"{run['seconds_start_to_end']} s, points {run['points']}, accuracy {run['accuracy']}, "
                    f"ECE {run['ece']} | {run['baselines_note']!r}")
        finally:
            browser.close()
    payload["load_avg_end"] = load_avg()
    print(f"wrote {write_json('app_first_run', payload)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
