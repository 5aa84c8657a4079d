"""``train``: fine-tune on a labelled table and write a run directory; ``--resume`` continues an interrupted run."""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import shlex
import shutil
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from .. import __version__
from ..config import PRESETS, TrainConfig
from ..data import LabelledTexts, in_file, load_table, read_table, split_train_eval, table_to_labelled
from ..errors import ConfigError, DataError
from ..training.checkpoints import drop_incomplete, last_complete_step
from .console import EXIT_INTERRUPTED, EXIT_OK, Console, ProgressPrinter, UsageError, duration, one_line
from .processes import Processes
from ..files import write_json_atomic as write_json
from .run_dir import (CHECKPOINT_SUBDIR, CONFIG_FILE, DEFAULT_OUTPUT_ROOT, METRICS_FILE, MODEL_SUBDIR, RUN_FILE,
                      holds_run, read_json)
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
    p.add_argument("--label-column", metavar="C", help="column of labels (default: detected)")
    p.add_argument("--model", metavar="M",
                   help="base model: a Hub id, a local model directory, a run directory, a .gguf file or an "
                        "offline LLM from `models pull` (smollm2) (default: the "
                        "bundled sentence-transformers/all-MiniLM-L6-v2)")
    p.add_argument("--output", metavar="DIR", help=f"run directory (default: {DEFAULT_OUTPUT_ROOT}/<TRAIN name>)")
    p.add_argument("--config", metavar="FILE", help="YAML or JSON file of training settings (TrainConfig fields)")
    p.add_argument("--preset", choices=tuple(PRESETS), help="named settings: " + ", ".join(PRESETS))
    p.add_argument("--resume", action="store_true",
                   help="continue the interrupted run in --output DIR from its last checkpoint")
    p.add_argument("--overwrite", action="store_true", help="replace a previous run in --output DIR")
    p.add_argument("--keep-checkpoints", action="store_true",
                   help=f"keep DIR/{CHECKPOINT_SUBDIR} after the run has finished")
    add_setting_flags(p)
    p.set_defaults(run=run)


@dataclass
class _Data:
    """The training and evaluation texts of a run, and where they came from."""

    train_path: str
    eval_path: Optional[str]
    train: LabelledTexts  # the whole training file
    train_texts: List[str]
    train_labels: List[Any]
    eval_texts: List[str]
    eval_labels: List[Any]
    eval_source: str  # for the summary: "41 rows of eval.csv"

    @property
    def fingerprints(self) -> Dict[str, str]:
        return {"train": _fingerprint(self.train_texts, self.train_labels),
                "eval": _fingerprint(self.eval_texts, self.eval_labels)}


def run(args: argparse.Namespace) -> int:
    """Fine-tune, evaluate, and write the run directory."""
    output = _output_dir(args)
    checkpoints = output / CHECKPOINT_SUBDIR
    processes = Processes()
    console = Console(args.quiet, processes.is_main)
    started = time.monotonic()

    record: Dict[str, Any] = {}
    saved_config: Optional[Dict[str, Any]] = None
    if args.resume:
        record, saved_config = _resumable_run(output, checkpoints)
    elif holds_run(output) and not args.overwrite:
        raise ConfigError(f"{output} already holds a training run. Continue it with --resume, replace it with "
                          "--overwrite, or choose another --output.")
    config = build_config(preset=args.preset, config_file=args.config, flags=flag_settings(args), base=saved_config)
    if saved_config is not None:
        _same_as_run(config, TrainConfig.from_dict(saved_config), output)
    data = _read_data(args, record, config, console, output)
    fingerprints = data.fingerprints
    if args.resume and record.get("fingerprints") and record["fingerprints"] != fingerprints:
        raise DataError("The training or evaluation data differ from the interrupted run's; resume with the same "
                        "files (or leave out --data/--eval to use them), or start again with --overwrite.")

    from ..finetuner import LLMFinetuner  # torch and transformers: once the inputs have been checked
    from ..models import DEFAULT_MODEL
    model_name = _model_id(args.model or record.get("base_model") or DEFAULT_MODEL)
    if args.resume and args.model and model_name != record.get("base_model"):
        raise ConfigError(f"--model {args.model} differs from the interrupted run's base model "
                          f"{record.get('base_model')!r}; resume it without --model.")
    finetuner = LLMFinetuner(_base_model(model_name), config=config)  # before anything is written: it may fail
    choice = finetuner.choose_method(data.train_labels, config)
    resumed_from = last_complete_step(checkpoints) if args.resume else None
    processes.barrier()  # every process has checked the directory before the main one writes into it
    if processes.is_main:
        _prepare_output(output, checkpoints, resume=args.resume)
        write_config(output / CONFIG_FILE, config)
        command = "python -m finetuner " + shlex.join(args.argv)
        record = {
            **(record if args.resume else {"started_at": _now(), "command": command}),
            "status": "running",
            "finetuner_version": __version__,
            "base_model": model_name,
            "train_data": {"path": str(Path(data.train_path).resolve()), "rows": len(data.train),
                           "text_column": data.train.text_column, "label_column": data.train.label_column},
            "eval_data": {"path": str(Path(data.eval_path).resolve()) if data.eval_path else None,
                          "rows": len(data.eval_texts),
                          "source": "file" if data.eval_path else f"stratified split ({config.eval_fraction:g})"},
            "fingerprints": fingerprints,
            "config": config.to_dict(),
            "method_choice": {"method": choice.method, "reason": choice.reason},
            "world_size": processes.world_size,
        }
        if args.resume:
            record.setdefault("resumes", []).append({"at": _now(), "from_step": resumed_from, "command": command})
        write_json(output / RUN_FILE, record)
    processes.barrier()  # ... and the others start once it has (they read the checkpoints)

    where = f" on {processes.world_size} processes" if processes.world_size > 1 else ""
    console.info(f"Fine-tuning {model_name} on {len(data.train_texts)} rows, "
                 f"{len(set(map(str, data.train_labels)))} classes{where} -> {output}")
    console.info(f"Method: {choice.method} — {choice.reason}")
    printer = ProgressPrinter(sys.stderr) if processes.is_main and not args.quiet else None
    training_started = time.monotonic()
    try:
        finetuner.fine_tune(data.train_texts, data.train_labels, data.eval_texts, data.eval_labels, config=config,
                            listener=printer, checkpoint_dir=checkpoints, resume=args.resume)
    except KeyboardInterrupt:
        if processes.is_main:
            _interrupted(output, checkpoints, record)
        return EXIT_INTERRUPTED
    except BaseException as exc:
        if processes.is_main:
            record.update({"status": "failed", "error": f"{type(exc).__name__}: {one_line(str(exc))[:500]}"})
            with contextlib.suppress(OSError):
                write_json(output / RUN_FILE, record)
        raise
    train_seconds = time.monotonic() - training_started

    # Every process evaluates (the Trainer gathers the batches); only the main one saves and writes.
    metrics = finetuner.evaluate_model(data.eval_texts, data.eval_labels)
    finetuner.save(output / MODEL_SUBDIR)
    if processes.is_main:
        write_json(output / METRICS_FILE, metrics)
        record.update(_results(finetuner, metrics, resumed_from, train_seconds, time.monotonic() - started))
        write_json(output / RUN_FILE, record)
        if not args.keep_checkpoints:
            shutil.rmtree(checkpoints, ignore_errors=True)
    console.result(_summary(metrics, data.eval_source, output, time.monotonic() - started))
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
    return Path(args.output or Path(DEFAULT_OUTPUT_ROOT) / Path(args.data).stem).expanduser().resolve()


def _read_data(args: argparse.Namespace, record: Dict[str, Any], config: TrainConfig, console: Console,
               output: Path) -> _Data:
    """Read and validate the tables (a resumed run's own by default); hold out evaluation rows without --eval."""
    train_info = record.get("train_data", {})
    eval_info = record.get("eval_data") or {}
    train_path = args.data or train_info.get("path")
    if not train_path:
        raise UsageError(f"--data is required: {output / RUN_FILE} does not name the training data", "finetuner train")
    eval_path = args.eval or (eval_info.get("path") if args.resume else None)
    train = load_table(train_path, args.text_column or train_info.get("text_column"),
                       args.label_column or train_info.get("label_column"))
    for message in train.warnings:
        console.warn(message)
    if eval_path:
        evaluation = _read_like(eval_path, args.text_column, args.label_column, train)
        for message in evaluation.warnings:
            console.warn(message)
        return _Data(train_path, eval_path, train, train.texts, train.labels, evaluation.texts, evaluation.labels,
                     f"{len(evaluation)} rows of {Path(eval_path).name}")
    train_texts, train_labels, eval_texts, eval_labels, notes = split_train_eval(
        train.texts, train.labels, config.eval_fraction, config.seed)
    for message in notes:
        console.warn(message)
    name = Path(train_path).name
    console.info(f"No --eval file: holding out {config.eval_fraction:.0%} of {name} for evaluation (stratified "
                 f"split, seed {config.seed}): {len(train_texts)} training rows, {len(eval_texts)} evaluation rows.")
    return _Data(train_path, None, train, train_texts, train_labels, eval_texts, eval_labels,
                 f"{len(eval_texts)} held-out rows of {name}")


def _read_like(path: str, text_column: Optional[str], label_column: Optional[str],
               like: LabelledTexts) -> LabelledTexts:
    """Read a labelled table, using the columns of ``like`` (another file's) where it has them."""
    frame = read_table(path)
    text_column = text_column or (like.text_column if like.text_column in frame.columns else None)
    label_column = label_column or (like.label_column if like.label_column in frame.columns
                                    and like.label_column != text_column else None)
    with in_file(path):
        return table_to_labelled(frame, text_column, label_column)


def _resumable_run(output: Path, checkpoints: Path) -> Tuple[Dict[str, Any], Optional[Dict[str, Any]]]:
    """The interrupted run's record and settings; a clear error when there is nothing to resume."""
    record = read_json(output / RUN_FILE) if (output / RUN_FILE).is_file() else {}
    if record.get("status") == "completed":
        raise ConfigError(f"The run in {output} has already finished; nothing to resume. Start a new one with "
                          "--overwrite or another --output.")
    if last_complete_step(checkpoints) is None:
        raise ConfigError(f"Nothing to resume in {output}: no checkpoint in {CHECKPOINT_SUBDIR}/ (one is written at "
                          "the end of every epoch). Start again with --overwrite.")
    if not record:
        return record, None
    saved = record.get("config")
    config_file = output / CONFIG_FILE
    if config_file.is_file():
        saved = read_config_file(str(config_file))
    return record, saved


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
            and (directory / MODEL_SUBDIR / "config.json").is_file():
        return str(directory / MODEL_SUBDIR)
    return name


def _prepare_output(output: Path, checkpoints: Path, resume: bool) -> None:
    """Drop half-written checkpoints of a resumed run, or the leftovers of a replaced one."""
    if resume:
        drop_incomplete(checkpoints)
    else:
        for stale in (checkpoints, output / METRICS_FILE, output / RUN_FILE):
            shutil.rmtree(stale, ignore_errors=True) if stale.is_dir() else stale.unlink(missing_ok=True)
    output.mkdir(parents=True, exist_ok=True)


def _results(finetuner: Any, metrics: Dict[str, float], resumed_from: Optional[int], train_seconds: float,
             wall_seconds: float) -> Dict[str, Any]:
    """What the run record says about a finished run."""
    trainer = finetuner.trainer
    report = finetuner.report or {}
    return {
        "status": "completed",
        "finished_at": _now(),
        "world_size": int(trainer.args.world_size),
        "distributed_type": str(trainer.accelerator.distributed_type).split(".")[-1],
        "steps": int(trainer.state.global_step),
        "max_steps": int(trainer.state.max_steps),
        "epochs": float(trainer.state.epoch or 0.0),
        # The rate "auto" chose; None for the embedding methods when it was not set (fine_tune records no choice).
        "learning_rate_used": finetuner.config.learning_rate,
        "resumed_from_step": resumed_from,
        "early_stopped": int(trainer.state.global_step) < int(trainer.state.max_steps),
        "train_seconds": round(train_seconds, 2),
        "wall_seconds": round(wall_seconds, 2),
        "eval_examples_scored": int(sum(map(sum, report.get("confusion_matrix", [])))) or None,
        "metrics": metrics,
        "report": report,
    }


def _interrupted(output: Path, checkpoints: Path, record: Dict[str, Any]) -> None:
    step = last_complete_step(checkpoints)
    record.update({"status": "interrupted", "interrupted_at": _now(), "last_checkpoint_step": step})
    with contextlib.suppress(OSError):
        write_json(output / RUN_FILE, record)
    if step is None:
        print("Interrupted before the first checkpoint (one is written at the end of every epoch); start again "
              "with --overwrite.", file=sys.stderr, flush=True)
    else:
        print(f"Interrupted; the last checkpoint is at step {step}. Continue with: "
              f"python -m finetuner train --output {shlex.quote(str(output))} --resume", file=sys.stderr, flush=True)


def _summary(metrics: Dict[str, float], source: str, output: Path, seconds: float) -> str:
    from ..metrics import SUMMARY_KEYS
    lines = [f"Final model on {source}:"]
    lines += [f"  {key:<20}{metrics[key]:.4f}" for key in (*SUMMARY_KEYS, "loss") if key in metrics]
    lines.append(f"Model saved to {output / MODEL_SUBDIR} ({METRICS_FILE}, {CONFIG_FILE} and {RUN_FILE} in "
                 f"{output}); {duration(seconds)} in all.")
    return "\n".join(lines)


def _fingerprint(texts: Sequence[str], labels: Sequence[Any]) -> str:
    digest = hashlib.sha256()
    for text, label in zip(texts, labels):
        digest.update(f"{text}\x1f{label}\x1e".encode("utf-8", "surrogatepass"))
    return digest.hexdigest()[:16]


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
