"""Data-parallel training for real: ``accelerate launch`` starts 2 CPU processes (gloo) running the CLI."""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from conftest import build_tiny_model, make_sentiment_data
from finetuner import LLMFinetuner

pytest.importorskip("accelerate")
REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _launch_cli(tmp_path: Path, *train_args: str) -> subprocess.CompletedProcess:
    """``finetuner train`` with ``train_args`` on 2 CPU processes through ``accelerate launch``."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
           "HF_HOME": str(tmp_path / "hf"),  # no accelerate config of the user's
           "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"}
    # `--multi_gpu` selects accelerate's torch.distributed launcher; without GPUs the processes use CPU + gloo.
    # (`--cpu --num_processes 2` would start a single process: accelerate runs multi-CPU jobs through MPI.)
    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
               "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
               "--main_process_port", str(free_port()), "-m", "finetuner", "train", *train_args]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=540, cwd=tmp_path)


def test_two_process_data_parallel_training(tmp_path):
    model = build_tiny_model(tmp_path / "tiny-bert", "bert")
    train, evaluation = tmp_path / "train.csv", tmp_path / "eval.csv"
    # Sizes that do not divide evenly: 83 training rows (6 steps of 2 x 8 per epoch) and 41 evaluation rows
    # in batches of 4 per process, so a sampler that pads the last batch would score duplicates.
    for path, n, seed in ((train, 83, 1), (evaluation, 41, 2)):
        texts, labels = make_sentiment_data(n, seed)
        pd.DataFrame({"text": texts, "label": labels}).to_csv(path, index=False)
    run = tmp_path / "run"
    result = _launch_cli(tmp_path, "--data", str(train), "--eval", str(evaluation), "--model", str(model),
                         "--output", str(run), "--method", "head_finetune", "--epochs", "8", "--batch-size", "8",
                         "--eval-batch-size", "4", "--learning-rate", "3e-3", "--warmup-ratio", "0", "--seed", "0")
    assert result.returncode == 0, result.stderr[-3000:]

    training = json.loads((run / "run.json").read_text())["training"]
    assert training["world_size"] == 2 and training["distributed_type"] == "MULTI_CPU"
    assert training["steps"] == math.ceil(83 / (2 * 8)) * 8  # each step takes 8 rows on each of the 2 processes
    # The metrics cover each evaluation row exactly once (no padding duplicates) ...
    assert training["eval_examples_scored"] == 41
    metrics = json.loads((run / "metrics.json").read_text())
    # ... and equal a single-process evaluation of the saved model.
    finetuner = LLMFinetuner.load(run / "model")
    eval_table = pd.read_csv(evaluation)
    again = finetuner.evaluate_model(eval_table["text"].tolist(), eval_table["label"].tolist())
    assert again["accuracy"] == pytest.approx(metrics["accuracy"])
    # The loss is a mean over batches, which differ here; it is not multiplied by the process count.
    assert again["loss"] == pytest.approx(metrics["loss"], rel=0.02)
    assert metrics["accuracy"] >= 0.8
    assert finetuner.predict_labels(["a wonderful excellent film", "an awful boring film"]) == ["positive", "negative"]

    # One model, written once by the main process; progress and summary printed once.
    assert sorted(p.name for p in run.iterdir()) == ["evaluation.jsonl", "metrics.json", "model", "run.json",
                                                     "train_config.yaml"]
    assert len(pd.read_json(run / "evaluation.jsonl", lines=True)) == 41  # each evaluation row once
    assert result.stderr.count("Training finished at step 48/48") == 1
    assert result.stderr.count("Fine-tuning ") == 1 and "on 2 processes" in result.stderr
    assert result.stdout.count("Final model on 41 rows of eval.csv") == 1


def test_two_process_fewshot_training(tmp_path):
    """Contrastive tuning hands the encoder to SetFit through a folder: every process must find it written."""
    model = build_tiny_model(tmp_path / "tiny-bert", "bert")
    train = tmp_path / "train.csv"
    texts, labels = make_sentiment_data(24, 3)
    pd.DataFrame({"text": texts, "label": labels}).to_csv(train, index=False)
    run = tmp_path / "run"
    result = _launch_cli(tmp_path, "--data", str(train), "--model", str(model), "--output", str(run),
                         "--method", "fewshot", "--batch-size", "8", "--seed", "0")
    assert result.returncode == 0, result.stderr[-3000:]
    finetuner = LLMFinetuner.load(run / "model")
    assert finetuner.config.method == "fewshot" and len(finetuner.predict(texts)) == len(texts)
