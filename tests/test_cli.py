"""The command line: train / evaluate / predict, settings precedence, resume, and exit codes for bad input."""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from conftest import make_sentiment_data
from finetuner import PRESETS, LLMFinetuner, TrainConfig
from finetuner.config import METHODS
from finetuner.cli import build_parser, main
from finetuner.cli.settings import build_config, flag_settings, read_config_file
from finetuner.errors import ConfigError
from finetuner.training.embedding_methods import FEWSHOT_LEARNING_RATE
from finetuner.training.progress import ProgressCallback

REPO = Path(__file__).resolve().parents[1]
# The tiny model learns the fixture data in a few epochs at a high learning rate (fully fine-tuned: "auto" could
# choose another method for so little data).
FAST = ["--method", "finetune", "--learning-rate", "3e-3", "--batch-size", "8", "--warmup-ratio", "0", "--seed", "0"]


def run_cli(*argv: str):
    """(exit code, stdout, stderr) of ``finetuner.cli.main`` run in this process."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


def write_table(path: Path, n: int, seed: int, **columns) -> Path:
    texts, labels = make_sentiment_data(n, seed)
    frame = pd.DataFrame({"review": texts, "sentiment": labels, **columns})
    frame.to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def tables(tmp_path_factory):
    root = tmp_path_factory.mktemp("tables")
    return write_table(root / "train.csv", 80, 1), write_table(root / "eval.csv", 41, 2)


@pytest.fixture(scope="module")
def trained(tables, tiny_bert, tmp_path_factory):
    """One CLI training run shared by the evaluate/predict tests: (run dir, exit code, stdout, stderr)."""
    train, evaluation = tables
    run = tmp_path_factory.mktemp("runs") / "sentiment"
    code, out, err = run_cli("train", "--data", train, "--eval", evaluation, "--model", tiny_bert, "--output", run,
                             "--epochs", "8", *FAST)
    return run, code, out, err


# ------------------------------------------------------------------------------------------ train

def test_train_writes_model_metrics_and_config(trained):
    run, code, out, err = trained
    assert code == 0, err
    assert (run / "model" / "finetuner.json").is_file() and (run / "model" / "model.safetensors").is_file()
    metrics = json.loads((run / "metrics.json").read_text())
    assert {"accuracy", "f1_macro", "precision_macro", "recall_macro", "f1_weighted", "loss"} <= set(metrics)
    assert metrics["accuracy"] >= 0.9  # the tiny model learns the one-sentiment-word task
    config = TrainConfig.from_dict(yaml.safe_load((run / "train_config.yaml").read_text()))
    assert (config.epochs, config.learning_rate, config.batch_size, config.seed) == (8, 3e-3, 8, 0)
    record = json.loads((run / "run.json").read_text())
    training = record["training"]
    assert record["status"] == "completed" and training["world_size"] == 1 and record["origin"] == "cli"
    assert training["steps"] == 80 and training["eval_examples_scored"] == 41  # 10 steps x 8 epochs; every eval row
    assert record["metrics"] == metrics and record["id"] == run.name
    assert not (run / "checkpoints").exists()  # removed once the run has finished
    # A final summary on stdout; progress as plain lines (not a terminal) on stderr.
    assert "accuracy" in out and f"{metrics['accuracy']:.4f}" in out
    assert "step 40/80" in err and "evaluation: accuracy" in err and "Training finished at step 80/80" in err
    assert "Traceback" not in err and "Warning" not in err


def test_train_without_eval_holds_out_a_stratified_split(tables, tiny_bert, tmp_path):
    code, _, err = run_cli("train", "--data", tables[0], "--model", tiny_bert, "--output", tmp_path / "run",
                           "--epochs", "1", *FAST)
    assert code == 0, err
    assert "No --eval file: holding out 20% of train.csv" in err and "64 training rows, 16 evaluation rows" in err
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    assert record["data"]["eval_rows"] == 16 and record["data"]["eval_source"] == "split"
    assert record["report"]["per_class"]["positive"]["support"] == 8  # 8 of each class held out


def test_train_without_method_chooses_one_says_which_and_records_it(tiny_bert, tmp_path):
    data = write_table(tmp_path / "small.csv", 30, 3)  # 24 training rows: 12 examples per class
    code, _, err = run_cli("train", "--data", data, "--model", tiny_bert, "--output", tmp_path / "run")
    assert code == 0, err
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    choice = record["method_choice"]
    assert choice["method"] == "fewshot" and "12 examples per class" in choice["reason"]
    training = record["training"]
    assert training["steps"] == training["max_steps"] > 1 and not training["early_stopped"]  # the tuning steps
    assert f"Method: fewshot — {choice['reason']}" in err.splitlines()
    # As asked (auto) and as used (the method chosen, its learning rate)
    assert record["requested"]["method"] == "auto" and record["config"]["method"] == "fewshot"
    assert record["config"]["learning_rate"] == FEWSHOT_LEARNING_RATE
    assert yaml.safe_load((tmp_path / "run" / "train_config.yaml").read_text())["method"] == "auto"
    meta = json.loads((tmp_path / "run" / "model" / "finetuner.json").read_text())
    assert meta["method"] == "fewshot" and meta["method_choice"] == choice


@pytest.mark.parametrize("method", METHODS)
def test_every_method_is_a_choice_of_the_method_flag(method):
    args = build_parser().parse_args(["train", "--data", "x.csv", "--method", method])
    assert build_config(flags=flag_settings(args)).method == method


def test_settings_precedence_defaults_preset_file_flags(tables, tiny_bert, tmp_path):
    config_file = tmp_path / "settings.yaml"
    # YAML reads 5e-3 as a string; it still counts as a number. The file overrides the preset ...
    config_file.write_text("epochs: 1\nlearning_rate: 5e-3\nbatch_size: 4\nseed: 3\n")
    code, _, err = run_cli("train", "--data", tables[0], "--model", tiny_bert, "--output", tmp_path / "run",
                           "--preset", "best", "--config", config_file, "--batch-size", "8")  # ... flags override it
    assert code == 0, err
    saved = yaml.safe_load((tmp_path / "run" / "train_config.yaml").read_text())
    assert saved["epochs"] == 1 and saved["learning_rate"] == 5e-3 and saved["seed"] == 3  # file
    assert saved["batch_size"] == 8  # flag beats file
    assert saved["early_stopping_patience"] == 2  # preset "best", not in the file
    assert saved["weight_decay"] == TrainConfig().weight_decay  # default


def test_build_config_precedence_and_json_files(tmp_path):
    json_file = tmp_path / "settings.json"
    json_file.write_text(json.dumps({"epochs": 4, "batch-size": 4, "max_length": None}))
    assert read_config_file(str(json_file)) == {"epochs": 4, "batch_size": 4, "max_length": None}
    config = build_config(preset="fast", config_file=str(json_file), flags={"batch_size": 12})
    assert (config.epochs, config.batch_size) == (4, 12)
    assert build_config(preset="fast").epochs == PRESETS["fast"]["epochs"] != TrainConfig().epochs
    with pytest.raises(ConfigError, match="settings.json: Unknown training setting"):
        json_file.write_text('{"epoch": 2}')
        build_config(config_file=str(json_file))


def test_existing_run_is_not_overwritten_by_accident(trained, tables, tiny_bert):
    run = trained[0]
    code, _, err = run_cli("train", "--data", tables[0], "--model", tiny_bert, "--output", run, "--epochs", "1")
    assert code == 2 and "already holds a training run" in err and "--overwrite" in err
    assert (run / "model" / "finetuner.json").is_file()


# ------------------------------------------------------------------------------------------ resume

def test_resume_continues_an_interrupted_run(tables, tiny_bert, tmp_path, monkeypatch):
    run = tmp_path / "run"
    args = ["train", "--data", tables[0], "--eval", tables[1], "--model", tiny_bert, "--output", run,
            "--epochs", "3", *FAST]

    def interrupt(self, *a, **k):  # Ctrl-C right after the first checkpoint (end of epoch 1, step 10)
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(ProgressCallback, "on_save", interrupt)
        code, _, err = run_cli(*args)
    assert code == 130
    assert "last checkpoint is at step 10" in err and "--resume" in err
    assert json.loads((run / "run.json").read_text())["status"] == "interrupted"
    assert not (run / "model").exists()
    (run / "checkpoints" / "checkpoint-15").mkdir()  # cut off while being written: no trainer_state.json

    code, _, err = run_cli("train", "--output", run, "--resume", "--epochs", "5")
    assert code == 2 and "epochs=5.0 (run: 3.0)" in err  # a resumed run keeps its settings

    code, out, err = run_cli("train", "--output", run, "--resume")  # data, model and settings from the run
    assert code == 0, err
    assert "resuming at step 10" in err and "step 12/30" in err and "step 2/30" not in err
    record = json.loads((run / "run.json").read_text())
    assert record["status"] == "completed" and record["training"]["resumed_from_step"] == 10
    assert record["training"]["steps"] == 30
    history = json.loads((run / "model" / "finetuner.json").read_text())["history"]
    assert history[0]["kind"] == "start" and history[0]["step"] == 10  # continued, not restarted
    assert LLMFinetuner.load(run / "model").predict_labels(["a wonderful film"]) in (["positive"], ["negative"])


def test_resume_without_a_checkpoint_is_bad_input(tmp_path):
    code, _, err = run_cli("train", "--output", tmp_path / "nothing", "--resume")
    assert code == 2 and "Nothing to resume" in err


# ------------------------------------------------------------------------------------------ evaluate

def test_evaluate_prints_metrics_json(trained, tables):
    run = trained[0]
    code, out, err = run_cli("evaluate", "--model", run, "--data", tables[1])
    assert code == 0, err
    result = json.loads(out)
    assert result["examples"] == 41
    assert result["accuracy"] == pytest.approx(json.loads((run / "metrics.json").read_text())["accuracy"])


def test_evaluate_report_and_output_file(trained, tables, tmp_path):
    code, out, err = run_cli("evaluate", "--model", trained[0] / "model", "--data", tables[1], "--report",
                             "--output", tmp_path / "report.json")
    assert code == 0, err
    assert "precision  recall  f1-score  support" in out and "Confusion matrix" in out
    assert "negative" in out and "positive" in out
    saved = json.loads((tmp_path / "report.json").read_text())
    assert saved["metrics"]["examples"] == 41 and set(saved["per_class"]) == {"negative", "positive"}
    assert sum(map(sum, saved["confusion_matrix"])) == 41


def test_evaluate_with_an_unknown_class_is_bad_input(trained, tmp_path):
    table = tmp_path / "other.csv"
    pd.DataFrame({"review": ["good film", "bad film"], "sentiment": ["positive", "neutral"]}).to_csv(table, index=False)
    code, _, err = run_cli("evaluate", "--model", trained[0], "--data", table)
    assert code == 2 and "'neutral' is not one of the model's classes" in err and len(err.splitlines()) == 1


# ------------------------------------------------------------------------------------------ predict

def test_predict_streams_chunks_to_csv(trained, tables, tmp_path):
    run = trained[0]
    out_file = tmp_path / "predictions.csv"
    code, out, err = run_cli("predict", "--model", run, "--data", tables[1], "--output", out_file,
                             "--chunk-rows", "7")  # 41 rows: 6 chunks
    assert code == 0, err
    assert out == "" and "Predicted 41 rows" in err
    predicted = pd.read_csv(out_file)
    assert list(predicted.columns) == ["review", "sentiment", "predicted_label", "confidence", "p_negative",
                                       "p_positive"]
    assert len(predicted) == 41
    assert (predicted[["p_negative", "p_positive"]].sum(axis=1) - 1).abs().max() < 1e-5
    source = pd.read_csv(tables[1])
    assert predicted["review"].tolist() == source["review"].tolist()  # input order kept
    expected = LLMFinetuner.load(run / "model").predict_labels(source["review"].tolist())
    assert predicted["predicted_label"].tolist() == expected
    assert not list(tmp_path.glob(".predictions.csv.partial-*"))


def test_predict_to_stdout_and_jsonl(trained, tmp_path):
    table = tmp_path / "texts.jsonl"
    table.write_text('{"sentence": "=HYPERLINK(\\"x\\") great film"}\n{"sentence": "awful day"}\n')
    code, out, err = run_cli("predict", "--model", trained[0], "--data", table)
    assert code == 0, err
    rows = pd.read_csv(io.StringIO(out))
    assert rows["sentence"][0].startswith("'=")  # a formula-looking cell is neutralised in CSV
    assert set(rows["predicted_label"]) <= {"positive", "negative"}
    code, _, err = run_cli("predict", "--model", trained[0], "--data", table, "--output", tmp_path / "out.jsonl")
    assert code == 0, err
    lines = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert len(lines) == 2 and lines[0]["sentence"].startswith("=") and "p_positive" in lines[0]


def test_predict_reports_empty_texts_with_file_row_numbers(trained, tmp_path):
    texts = [f"good film {i}" for i in range(20)]
    texts[11] = " "
    table = tmp_path / "texts.csv"
    pd.DataFrame({"id": range(20), "text": texts}).to_csv(table, index=False)
    code, _, err = run_cli("predict", "--model", trained[0], "--data", table, "--chunk-rows", "5",
                           "--output", tmp_path / "out.csv")
    assert code == 2 and "row 12" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "out.csv").exists() and not list(tmp_path.glob(".out.csv.partial-*"))


# ------------------------------------------------------------------------------------------ bad input

@pytest.mark.parametrize("argv, message", [
    (["train", "--data", "{tmp}/missing.csv"], "missing.csv: file not found"),
    (["train", "--data", "{train}", "--text-column", "body"], "text column 'body' is not in the table"),
    (["train", "--data", "{train}", "--config", "{tmp}/unknown.yaml"], "Unknown training setting(s): epoch"),
    (["train", "--data", "{train}", "--config", "{tmp}/bad-value.yaml"], "bad-value.yaml: learning_rate=7"),
    (["train", "--data", "{train}", "--config", "{tmp}/missing.yaml"], "config file not found"),
    (["train", "--data", "{train}", "--epochs", "-1"], "epochs=-1.0 is out of range"),
    (["train", "--data", "{train}", "--batch-size", "abc"], "argument --batch-size: expected a whole number"),
    (["train", "--data", "{train}", "--preset", "huge"], "argument --preset: invalid choice"),
    (["train", "--data", "{train}", "--resume", "--overwrite"], "exclude each other"),
    (["train"], "required: --data"),
    (["train", "--data", "{tmp}/table.docx"], "unsupported file type '.docx'"),
    (["train", "--data", "{tmp}/numbers.csv"], "numbers.csv: No column holds text: 'a', 'b' hold only numbers"),
    (["evaluate", "--model", "{tmp}", "--data", "{train}"], "is not a trained finetuner model"),
    (["predict", "--data", "{train}"], "the following arguments are required: --model"),
    (["predict", "--model", "{tmp}/none", "--data", "{train}"], "no such model directory"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
])
def test_bad_input_exits_2_with_one_line(argv, message, tables, tmp_path):
    (tmp_path / "unknown.yaml").write_text("epoch: 3\n")
    (tmp_path / "bad-value.yaml").write_text("learning_rate: 7\n")
    (tmp_path / "numbers.csv").write_text("a,b\n" + "0,0\n1,1\n" * 5)
    argv = [a.format(tmp=tmp_path, train=tables[0]) for a in argv]
    code, out, err = run_cli(*argv)
    assert code == 2
    assert out == ""
    assert len(err.strip().splitlines()) == 1, err
    assert "error:" in err and message in err and "Traceback" not in err


def test_train_takes_numbers_as_texts_only_when_the_text_column_is_named(tiny_bert, tmp_path):
    data = tmp_path / "numbers.csv"
    data.write_text("a,b\n" + "".join(f"{i},{i % 2}\n" for i in range(24)))
    code, _, err = run_cli("train", "--data", data, "--model", tiny_bert, "--output", tmp_path / "run", *FAST,
                           "--epochs", "1")
    assert code == 2 and "No column holds text" in err and "--text-column" in err
    code, _, err = run_cli("train", "--data", data, "--model", tiny_bert, "--output", tmp_path / "run", *FAST,
                           "--epochs", "1", "--text-column", "a", "--quiet")
    assert code == 0, err


def test_help_and_no_command():
    code, out, _ = run_cli("train", "--help")
    assert code == 0 and "--learning-rate" in out and "--no-group-by-length" in out and "--resume" in out
    code, _, err = run_cli()
    assert code == 2 and "train" in err and "predict" in err


def test_module_entry_point_exit_codes_and_quiet_output(tables, tiny_bert, tmp_path):
    """``python -m finetuner`` in a fresh process: real exit codes, nothing from the libraries on the console."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    bad = subprocess.run([sys.executable, "-m", "finetuner", "train", "--data", str(tmp_path / "missing.csv")],
                         capture_output=True, text=True, env=env, timeout=120)
    assert bad.returncode == 2 and bad.stdout == ""
    assert bad.stderr.strip() == f"finetuner train: error: {tmp_path / 'missing.csv'}: file not found."

    good = subprocess.run([sys.executable, "-m", "finetuner", "train", "--data", str(tables[0]), "--model", tiny_bert,
                           "--output", str(tmp_path / "run"), "--epochs", "1", *FAST],
                          capture_output=True, text=True, env=env, timeout=300)
    assert good.returncode == 0, good.stderr
    ours = ("No --eval file", "Fine-tuning ", "Method: ", "Training: ", "step ", "epoch ", "Training finished")
    noise = [line for line in good.stderr.splitlines() if not line.startswith(ours)]
    assert noise == []
    assert good.stdout.startswith("Final model on 16 held-out rows of train.csv:")


def test_progress_bar_on_a_terminal():
    from finetuner.cli.console import ProgressPrinter
    from finetuner.training.progress import ProgressEvent

    stream = io.StringIO()
    printer = ProgressPrinter(stream, tty=True)
    printer(ProgressEvent("start", 0, 20, 0.0, 0.0))
    printer(ProgressEvent("log", 10, 20, 1.0, 1.0, loss=0.5))
    printer(ProgressEvent("evaluate", 10, 20, 1.0, 1.0, metrics={"accuracy": 0.75, "loss": 0.4}))
    printer(ProgressEvent("end", 20, 20, 2.0, 2.0))
    printer(ProgressEvent("evaluate", 20, 20, 2.0, 2.0, metrics={"accuracy": 0.8}))  # after training: ignored
    text = stream.getvalue()
    assert "Training:" in text and "10/20" in text and "20/20" in text and "loss=0.5000" in text
    assert "epoch 1.00  evaluation: accuracy 0.7500  loss 0.4000" in text
    assert "Training finished at step 20/20" in text and "accuracy 0.8000" not in text


def test_train_without_output_names_the_run_after_the_file_as_a_valid_run_id(tiny_bert, tmp_path, monkeypatch):
    monkeypatch.setenv("FINETUNER_RUNS_DIR", str(tmp_path / "runs"))
    data = write_table(tmp_path / "_my reviews (v2).csv", 40, 1)
    code, _, err = run_cli("train", "--data", data, "--model", tiny_bert, "--epochs", "1", *FAST)
    assert code == 0, err
    assert [p.name for p in (tmp_path / "runs").iterdir()] == ["my-reviews-v2"]
