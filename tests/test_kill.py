"""A training process killed outright (SIGKILL) mid-run leaves no model that looks complete, and resumes."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
from conftest import make_sentiment_data

from finetuner import LLMFinetuner
from finetuner.training.checkpoints import last_complete_step

ROOT = Path(__file__).resolve().parents[1]


def test_sigkill_after_a_checkpoint_then_resume(tmp_path, tiny_bert):
    # About 150 steps an epoch (the rows left after the evaluation and held-out splits, in batches of 8): the
    # first checkpoint comes after one epoch, and the kill while three are left (seconds of training even on an
    # idle machine; the checkpoints are polled every 50 ms).
    texts, labels = make_sentiment_data(1600, seed=3)
    data = tmp_path / "train.csv"
    pd.DataFrame({"text": texts, "label": labels}).to_csv(data, index=False)
    run = tmp_path / "run"
    command = [sys.executable, "-m", "finetuner", "train", "--data", str(data), "--model", tiny_bert,
               "--output", str(run), "--epochs", "4", "--batch-size", "8", "--learning-rate", "0.003"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 300
        while last_complete_step(run / "checkpoints") is None:
            assert process.poll() is None, process.stderr.read().decode()
            assert time.monotonic() < deadline, "no checkpoint within 300 s"
            time.sleep(0.05)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == -signal.SIGKILL

    record = json.loads((run / "run.json").read_text())
    assert record["status"] != "completed"
    assert not (run / "model").exists()  # nothing that looks like a finished model

    resumed = subprocess.run([sys.executable, "-m", "finetuner", "train", "--output", str(run), "--resume"],
                             cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming at step" in resumed.stderr
    assert json.loads((run / "run.json").read_text())["status"] == "completed"
    assert LLMFinetuner.load(run / "model").predict_labels(["a wonderful film"]) == ["positive"]
