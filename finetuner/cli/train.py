"""``train``: fine-tune on a labelled table and write a run directory; ``--resume`` continues an interrupted run."""

from __future__ import annotations

import argparse
import hashlib
import re
import shlex
import shutil
import sys
import time
from collections import Counter
from dataclasses import asdict
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Tuple

from ..config import PRESETS, TrainConfig
from ..data import (LabelledTexts, Split, in_file, label_counts, load_table, read_table, split_train_eval,
                    table_to_labelled)
from ..tasks import TASK_NAMES, TaskChoice
from ..errors import ConfigError, DataError
from ..imbalance import class_balance_warnings
from ..runs import (CHECKPOINT_DIR, CONFIG_FILE, EVALUATION_FILE, METRICS_FILE, MODEL_DIR, RECORD_FILE, RunRecord,
                    RunStore, default_runs_dir, is_run_id)
from ..runs.pipeline import Notice, RunSpec, train_run
from ..runs.tracking import TRACKING_DIR
from ..training.checkpoints import drop_incomplete, last_complete_step
from .console import EXIT_INTERRUPTED, EXIT_OK, Console, ProgressPrinter, UsageError, duration
from .processes import Processes
from .run_dir import holds_run
from .settings import add_setting_flags, build_config, flag_settings, read_config_file, write_config


def add_parser(subparsers: Any, common: argparse.ArgumentParser) -> None:
    p = subparsers.add_parser(
        "train", parents=[common], help="fine-tune a model on a labelled table",
        description="Fine-tune a model on a labelled table; write the model, metrics.json and the settings "
                    "into the output directory. Settings: TrainConfig defaults < --preset < --config < flags.")
    p.add_argument("--data", metavar="TRAIN", help="training table (.csv .tsv .txt .jsonl .json .xlsx .parquet)")
    p.add_argument("--eval", metavar="EVAL",
                   help="evaluation table; without it a stratified share (--eval-fraction) of TRAIN is held out")
    p.add_argument("--text-column", metavar="C", help="column of texts (default: detected)")
    p.add_argument("--label-column", metavar="C",
                   help="column of labels (default: detected); for several labels per text also comma-separated 0/1 "
                        "columns, one per label (a,b,c)")
    p.add_argument("--model", metavar="M",
                   help="base model: a Hub id, a local model directory, a run directory, a .gguf file or an "
                        "offline LLM from `models pull` (smollm2) (default: the "
                        "bundled sentence-transformers/all-MiniLM-L6-v2)")
    p.add_argument("--output", metavar="DIR",
                   help="run folder (default: the runs folder, FINETUNER_RUNS_DIR or ./runs, /<TRAIN name>); a run "
                        "in the runs folder is listed by the app")
    p.add_argument("--config", metavar="FILE", help="YAML or JSON file of training settings (TrainConfig fields)")
    p.add_argument("--preset", choices=tuple(PRESETS), help="named settings: " + ", ".join(PRESETS))
    p.add_argument("--resume", action="store_true",
                   help="continue the interrupted run in --output DIR from its last checkpoint")
    p.add_argument("--overwrite", action="store_true", help="replace a previous run in --output DIR")
    p.add_argument("--keep-checkpoints", action="store_true",
                   help=f"keep DIR/{CHECKPOINT_DIR} after the run has finished")
    add_setting_flags(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Fine-tune, evaluate, and write the run folder (through the one run pipeline, as the app does)."""
    output = _output_dir(args)
    checkpoints = output / CHECKPOINT_DIR
    store = RunStore(output.parent)
    processes = Processes()
    console = Console(args.quiet, processes.is_main)
    started = time.monotonic()

    record: Optional[RunRecord] = None
    saved_config: Optional[Dict[str, Any]] = None
    if args.resume:
        record, saved_config = _resumable_run(store, output, checkpoints)
    elif holds_run(output) and not args.overwrite:
        raise ConfigError(f"{output} already holds a training run. Continue it with --resume, replace it with "
                          "--overwrite, or choose another --output.")
    config = build_config(preset=args.preset, config_file=args.config, flags=flag_settings(args), base=saved_config)
    if saved_config is not None:
        _same_as_run(config, TrainConfig.from_dict(saved_config), output)
    data, eval_source = _read_data(args, record, config, console, output)
    task = TaskChoice(**data.description["task"])
    if record is not None and record.data.get("fingerprints") not in (None, data.description["fingerprints"]):
        raise DataError("The training or evaluation data differ from the interrupted run's; resume with the same "
                        "files (or leave out --data/--eval to use them), or start again with --overwrite.")

    from ..models import DEFAULT_MODEL, resolve_model
    model_name = _model_id(args.model or (record.base_model if record else None) or DEFAULT_MODEL)
    if record is not None and args.model and model_name != record.base_model:
        raise ConfigError(f"--model {args.model} differs from the interrupted run's base model "
                          f"{record.base_model!r}; resume it without --model.")
    resolve_model(_base_model(model_name))  # an unknown model fails now, before anything is written
    processes.barrier()  # every process has checked the directory before the main one writes into it
    if processes.is_main:
        _prepare_output(output, checkpoints, resume=args.resume)
        write_config(output / CONFIG_FILE, config)
    processes.barrier()  # ... and the others start once it has (they read the checkpoints)

    where = f" on {processes.world_size} processes" if processes.world_size > 1 else ""
    printer = ProgressPrinter(sys.stderr) if processes.is_main and not args.quiet else None

    headed = []

    def listen(item: Any) -> None:
        if isinstance(item, Notice):
            if item.kind == "method" and not headed:
                headed.append(True)
                classes = {"regression": "a number per text",
                           "multi_label": f"{len(label_counts(data.train_labels, task))} labels, several per text"
                           }.get(task.task, f"{len(set(map(str, data.train_labels)))} classes")
                console.info(f"Fine-tuning {model_name} on {len(data.train_texts)} rows, {classes}{where} -> "
                             f"{output}")
            if item.kind == "method":
                console.info(f"Method: {item.values['method']} — {item.values['reason']}")
            elif item.kind == "candidate":
                console.info(f"  {item.text}")
            elif item.kind == "long_texts":
                console.info(item.text)
        elif printer is not None:
            printer(item)

    # The task read from the training file (the settings file keeps "auto", so --resume compares equal).
    spec = RunSpec(_base_model(model_name), config.replace(task=task.task), data, origin="cli",
                   command="python -m finetuner " + shlex.join(args.argv))
    try:
        record = train_run(spec, store, run_id=output.name, resume=args.resume, listener=listen,
                           checkpoint_dir=checkpoints, is_main=processes.is_main)
    except KeyboardInterrupt:
        if processes.is_main:
            _interrupted(output, checkpoints)
        return EXIT_INTERRUPTED
    if processes.is_main and not args.keep_checkpoints:
        shutil.rmtree(checkpoints, ignore_errors=True)
    console.result(_summary(record.metrics, eval_source, output, time.monotonic() - started))
    processes.finish()
    return EXIT_OK


def _output_dir(args: argparse.Namespace) -> Path:
    """The run directory, once the options have been checked against each other."""
    if args.resume and args.overwrite:
        raise UsageError("--resume and --overwrite exclude each other", "finetuner train")
    if args.data is None and not args.resume:
        raise UsageError("the following arguments are required: --data", "finetuner train")
    if args.output is None and args.data is None:
        raise UsageError("--resume needs --output DIR (the run to continue)", "finetuner train")
    if args.output is None:  # the training file's name, as a run id
        name = re.sub(r"[^A-Za-z0-9_.-]+", "-", Path(args.data).stem).strip("._-")[:120]
        return (default_runs_dir() / (name if is_run_id(name) else "run")).expanduser().resolve()
    output = Path(args.output).expanduser().resolve()
    if not is_run_id(output.name):
        raise UsageError(f"--output {args.output}: the run folder's name must be letters, digits, '.', '_' or '-' "
                         "(it is the run's id in the app)", "finetuner train")
    return output


def _read_data(args: argparse.Namespace, record: Optional[RunRecord], config: TrainConfig, console: Console,
               output: Path) -> Tuple[Split, str]:
    """The rows to train and score on (a resumed run's own files by default; without --eval a stratified share
    is held out), and how to name the evaluation rows in the summary."""
    saved = record.data if record is not None else {}
    train_path = args.data or saved.get("train_path")
    if not train_path:
        raise UsageError(f"--data is required: {output / RECORD_FILE} does not name the training data",
                         "finetuner train")
    eval_path = args.eval or (saved.get("eval_path") if args.resume else None)
    train = load_table(train_path, args.text_column or saved.get("text_column"),
                       args.label_column or saved.get("label_column"), task=config.task)
    for message in train.warnings:
        console.warn(message)
    if train.task.task != "single_label":
        console.info(f"Task: {TASK_NAMES[train.task.task]} — {train.task.reason}.")
    name = Path(train_path).name
    description = {"source": name, "train_path": str(Path(train_path).resolve()), "rows": len(train),
                   "text_column": train.text_column, "label_column": train.label_column, "task": asdict(train.task)}
    if eval_path:
        evaluation = _read_like(eval_path, args.text_column, args.label_column, train)
        for message in evaluation.warnings:
            console.warn(message)
        split = Split(train.texts, train.labels, evaluation.texts, evaluation.labels,
                      {**description, "eval_path": str(Path(eval_path).resolve()), "eval_source": "file"})
        eval_source = f"{len(evaluation)} rows of {Path(eval_path).name}"
    else:
        stratify = train.task.task == "single_label"
        train_texts, train_labels, eval_texts, eval_labels, notes = split_train_eval(
            train.texts, train.labels, config.eval_fraction, config.seed, stratify=stratify)
        for message in notes:
            console.warn(message)
        console.info(f"No --eval file: holding out {config.eval_fraction:.0%} of {name} for evaluation "
                     f"({'stratified' if stratify else 'random'} split, seed {config.seed}): {len(train_texts)} "
                     f"training rows, {len(eval_texts)} evaluation rows.")
        split = Split(train_texts, train_labels, eval_texts, eval_labels,
                      {**description, "eval_path": None, "eval_source": "split", "eval_fraction": config.eval_fraction})
        eval_source = f"{len(eval_texts)} held-out rows of {name}"
    if train.task.task == "single_label":
        for message in class_balance_warnings(Counter(map(str, split.train_labels)), config.class_weights):
            console.warn(message)  # about the rows it trains on, and what training will do about them
    split.description["fingerprints"] = {"train": _fingerprint(split.train_texts, split.train_labels),
                                         "eval": _fingerprint(split.eval_texts, split.eval_labels)}
    return split, eval_source


def _read_like(path: str, text_column: Optional[str], label_column: Optional[str],
               like: LabelledTexts) -> LabelledTexts:
    """Read a labelled table, using the columns of ``like`` (another file's) where it has them."""
    frame = read_table(path)
    text_column = text_column or (like.text_column if like.text_column in frame.columns else None)
    known = like.label_column in frame.columns or set(like.label_column.split(",")) <= set(map(str, frame.columns))
    label_column = label_column or (like.label_column if known and like.label_column != text_column else None)
    with in_file(path):
        return table_to_labelled(frame, text_column, label_column, task=like.task.task,
                                 separator=like.task.separator)


def _resumable_run(store: RunStore, output: Path, checkpoints: Path
                   ) -> Tuple[Optional[RunRecord], Optional[Dict[str, Any]]]:
    """The interrupted run's record and settings; a clear error when there is nothing to resume."""
    record = store.get(output.name) if (output / RECORD_FILE).is_file() else None
    if record is not None and record.status == "completed":
        raise ConfigError(f"The run in {output} has already finished; nothing to resume. Start a new one with "
                          "--overwrite or another --output.")
    if last_complete_step(checkpoints) is None:
        raise ConfigError(f"Nothing to resume in {output}: no checkpoint in {CHECKPOINT_DIR}/ (one is written at "
                          "the end of every epoch). Start again with --overwrite.")
    if record is None:
        return None, None
    config_file = output / CONFIG_FILE
    return record, read_config_file(str(config_file)) if config_file.is_file() else record.requested


def _same_as_run(config: TrainConfig, saved: TrainConfig, output: Path) -> None:
    changed = [f"{name}={value!r} (run: {saved.to_dict()[name]!r})"
               for name, value in config.to_dict().items() if saved.to_dict()[name] != value]
    if changed:
        raise ConfigError(f"--resume continues the run in {output} with its own settings ({CONFIG_FILE}), but these "
                          f"differ: {', '.join(changed)}. Leave them out, or start again with --overwrite.")


def _model_id(name: str) -> str:
    """A local model directory or .gguf file as an absolute path (so that the run record works from anywhere)."""
    directory = Path(name).expanduser()
    is_gguf = directory.suffix.lower() == ".gguf" and directory.is_file()
    return str(directory.resolve()) if directory.is_dir() or is_gguf else name


def _base_model(name: str) -> str:
    """A run directory given as the base model means the model it trained."""
    directory = Path(name).expanduser()
    if directory.is_dir() and not (directory / "config.json").is_file() \
            and (directory / MODEL_DIR / "config.json").is_file():
        return str(directory / MODEL_DIR)
    return name


def _prepare_output(output: Path, checkpoints: Path, resume: bool) -> None:
    """Drop half-written checkpoints of a resumed run, or the leftovers of a replaced one."""
    if resume:
        drop_incomplete(checkpoints)
    else:
        # The old model/ stays until the new one replaces it whole (a failed run must not cost the old model).
        for stale in (checkpoints, output / METRICS_FILE, output / RECORD_FILE, output / EVALUATION_FILE,
                      output / TRACKING_DIR):
            shutil.rmtree(stale, ignore_errors=True) if stale.is_dir() else stale.unlink(missing_ok=True)
    output.mkdir(parents=True, exist_ok=True)


def _interrupted(output: Path, checkpoints: Path) -> None:
    """Say how to continue (the pipeline has recorded the run as interrupted)."""
    step = last_complete_step(checkpoints)
    if step is None:
        print("Interrupted before the first checkpoint (one is written at the end of every epoch); start again "
              "with --overwrite.", file=sys.stderr, flush=True)
    else:
        print(f"Interrupted; the last checkpoint is at step {step}. Continue with: "
              f"python -m finetuner train --output {shlex.quote(str(output))} --resume", file=sys.stderr, flush=True)


def _summary(metrics: Dict[str, float], source: str, output: Path, seconds: float) -> str:
    from ..metrics import CALIBRATION_KEYS, MULTI_LABEL_KEYS, REGRESSION_KEYS, SUMMARY_KEYS
    lines = [f"Final model on {source}:"]
    keys = dict.fromkeys((*SUMMARY_KEYS, *MULTI_LABEL_KEYS, *REGRESSION_KEYS, *CALIBRATION_KEYS, "loss"))
    lines += [f"  {key:<20}{metrics[key]:.4f}" for key in keys if key in metrics]
    lines.append(f"Model saved to {output / MODEL_DIR} ({METRICS_FILE}, {CONFIG_FILE} and {RECORD_FILE} in "
                 f"{output}); {duration(seconds)} in all.")
    return "\n".join(lines)


def _fingerprint(texts: Sequence[str], labels: Sequence[Any]) -> str:
    digest = hashlib.sha256()
    for text, label in zip(texts, labels):
        digest.update(f"{text}\x1f{label}\x1e".encode("utf-8", "surrogatepass"))
    return digest.hexdigest()[:16]
