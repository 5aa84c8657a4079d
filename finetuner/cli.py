"""Command line: ``python -m finetuner train | evaluate | predict``.

The same backend as the app (:class:`~finetuner.LLMFinetuner`, :func:`~finetuner.load_table`), for scripts,
automation and more than one process: ``accelerate launch -m finetuner train ...`` runs data-parallel training
through the transformers Trainer, and only the main process prints and writes files.

Exit codes: 0 success, 2 bad input (one line on stderr), 1 any other failure, 130 interrupted.

``train --output DIR`` writes a run directory::

    DIR/model/             the trained model (``LLMFinetuner.load``; ``--model DIR`` also finds it)
    DIR/metrics.json       metrics of the final model on the evaluation data (accuracy, f1_macro, ...)
    DIR/train_config.yaml  the training settings (usable again with --config)
    DIR/run.json           the run record: data, base model, processes, steps, timings, per-class report
    DIR/checkpoints/       resumable checkpoints while training (removed once the run has finished)
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import dataclasses
import hashlib
import json
import logging
import os
import shlex
import shutil
import sys
import time
import traceback
import typing
import uuid
import warnings
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, Optional, Sequence, TextIO, Tuple

import pandas as pd

from . import __version__
from .config import METHODS, PRESETS, TrainConfig
from .data import (SUPPORTED_EXTENSIONS, TEXT_COLUMN_NAMES, LabelledTexts, read_table, split_train_eval,
                   table_to_labelled)
from .errors import ConfigError, DataError, FinetunerError, ModelLoadError
from .predictions import neutralize_frame, predictions_table
from .training.checkpoints import drop_incomplete, last_complete_step

# torch and transformers are imported when a command needs them, so that --help and bad command lines
# answer at once.

EXIT_OK, EXIT_FAILURE, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130

MODEL_SUBDIR = "model"
CHECKPOINT_SUBDIR = "checkpoints"
METRICS_FILE = "metrics.json"
RUN_FILE = "run.json"
CONFIG_FILE = "train_config.yaml"
DEFAULT_OUTPUT_ROOT = "finetuner-runs"
PREDICTION_FORMATS = (".csv", ".tsv", ".jsonl")
_SETTING_PREFIX = "setting__"
_NONE_WORDS = ("none", "null", "auto", "off")

_SETTING_HELP = {
    "method": "training method",
    "epochs": "passes over the training data (fractions allowed)",
    "learning_rate": "peak learning rate; 'auto' picks one from the model size",
    "batch_size": "training texts per step and process",
    "eval_batch_size": "texts per evaluation/prediction batch",
    "max_length": "truncate texts to this many tokens; 'auto' picks it from the training texts",
    "weight_decay": "AdamW weight decay",
    "warmup_ratio": "fraction of the steps with a linear learning-rate warm-up",
    "seed": "random seed (initialisation, shuffling, the evaluation split)",
    "early_stopping_patience": "stop after this many evaluations without a better F1; 'none' trains all epochs",
    "eval_fraction": "share of the training rows held out for evaluation when --eval is not given",
    "group_by_length": "batch texts of similar length together (less padding)",
    "logging_steps": "report the training loss every N steps",
}


# =============================================================================================
# Parsing
# =============================================================================================

class UsageError(Exception):
    """A command line that cannot be run as given (exit code 2)."""

    def __init__(self, message: str, prog: str = "finetuner"):
        super().__init__(message)
        self.prog = prog


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> typing.NoReturn:  # one line instead of usage + message + exit
        raise UsageError(message, self.prog)


def _setting_type(name: str) -> Tuple[Any, bool]:
    """``(type, optional)`` of a :class:`TrainConfig` field, from its annotation."""
    hint = typing.get_type_hints(TrainConfig)[name]
    if typing.get_origin(hint) is typing.Union:
        members = typing.get_args(hint)
        rest = [m for m in members if m is not type(None)]
        return (rest[0] if len(rest) == 1 else str), len(rest) < len(members)
    return hint, False


def _value_parser(kind: Any, optional: bool) -> Callable[[str], Any]:
    """An argparse ``type`` for one setting, with a readable message for bad values."""
    def parse(text: str) -> Any:
        if optional and text.strip().lower() in _NONE_WORDS:
            return None
        try:
            if kind is int:
                return int(text)
            if kind is float:
                return float(text)
            if kind is str:
                return text
            return json.loads(text)
        except ValueError:
            what = {int: "a whole number", float: "a number"}.get(kind, "a value")
            raise argparse.ArgumentTypeError(
                f"expected {what}{' or none' if optional else ''}; got {text!r}") from None
    return parse


def add_setting_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per :class:`TrainConfig` field (``--learning-rate``, ``--no-group-by-length``, ...)."""
    group = parser.add_argument_group(
        "training settings", "Override --preset and --config; defaults are TrainConfig's.")
    for field in dataclasses.fields(TrainConfig):
        kind, optional = _setting_type(field.name)
        flag = "--" + field.name.replace("_", "-")
        default = None if field.default is dataclasses.MISSING else field.default
        shown = ("none" if field.name == "early_stopping_patience" else "auto") if default is None else default
        kwargs: Dict[str, Any] = {"dest": _SETTING_PREFIX + field.name, "default": argparse.SUPPRESS,
                                  "help": f"{_SETTING_HELP.get(field.name, field.name)} (default: {shown})"}
        if kind is bool:
            group.add_argument(flag, action=argparse.BooleanOptionalAction, **kwargs)
            continue
        kwargs["type"] = _value_parser(kind, optional)
        kwargs["metavar"] = {int: "N", float: "X"}.get(kind, "VALUE")
        if field.name == "method":
            kwargs["choices"] = METHODS
        group.add_argument(flag, **kwargs)


def _common_options() -> argparse.ArgumentParser:
    common = _Parser(add_help=False)
    common.add_argument("-v", "--verbose", action="store_true",
                        help="keep the libraries' log messages and show tracebacks")
    common.add_argument("-q", "--quiet", action="store_true", help="print only results and errors")
    return common


def _add_train(subparsers, common) -> None:
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
                   help="base model: a Hub id, a local model directory or a run directory (default: the "
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
    p.set_defaults(run=cmd_train)


def _add_evaluate(subparsers, common) -> None:
    p = subparsers.add_parser(
        "evaluate", parents=[common], help="metrics of a trained model on a labelled table",
        description="Print the metrics of a trained model on a labelled table as JSON.")
    p.add_argument("--model", metavar="DIR", required=True, help="a run directory or a saved model directory")
    p.add_argument("--data", metavar="TEST", required=True, help="labelled table")
    p.add_argument("--text-column", metavar="C", help="column of texts (default: detected)")
    p.add_argument("--label-column", metavar="C", help="column of labels (default: detected)")
    p.add_argument("--report", action="store_true", help="also print a per-class table and the confusion matrix")
    p.add_argument("--output", metavar="FILE.json", help="also write the metrics and per-class report there")
    p.add_argument("--batch-size", type=_value_parser(int, False), metavar="N",
                   help="texts per batch (default: the model's eval_batch_size)")
    p.set_defaults(run=cmd_evaluate)


def _add_predict(subparsers, common) -> None:
    p = subparsers.add_parser(
        "predict", parents=[common], help="label and class probabilities for every row of a table",
        description="Add the predicted label, its probability and every class's probability to each row. "
                    "Large files are read and written in chunks.")
    p.add_argument("--model", metavar="DIR", required=True, help="a run directory or a saved model directory")
    p.add_argument("--data", metavar="IN", required=True, help="table of texts (labels are not needed)")
    p.add_argument("--text-column", metavar="C", help="column of texts (default: detected)")
    p.add_argument("--output", metavar="OUT",
                   help=f"output file ({' '.join(PREDICTION_FORMATS)}); default: CSV on standard output")
    p.add_argument("--chunk-rows", type=_value_parser(int, False), default=2048, metavar="N",
                   help="rows read, predicted and written at a time (default: 2048)")
    p.add_argument("--batch-size", type=_value_parser(int, False), metavar="N",
                   help="texts per model batch (default: the model's eval_batch_size)")
    p.set_defaults(run=cmd_predict)


# One entry per subcommand, in help order (``models`` and ``check`` will join them).
COMMANDS: Dict[str, Callable[[Any, argparse.ArgumentParser], None]] = {
    "train": _add_train,
    "evaluate": _add_evaluate,
    "predict": _add_predict,
}


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="finetuner", description="Fine-tune pre-trained transformers for text classification.",
                     epilog="Run on several processes/GPUs/machines with: accelerate launch -m finetuner train ...")
    parser.add_argument("--version", action="version", version=f"finetuner {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    common = _common_options()
    for add in COMMANDS.values():
        add(subparsers, common)
    return parser


# =============================================================================================
# Settings
# =============================================================================================

def read_config_file(path: str) -> Dict[str, Any]:
    """Training settings from a YAML or JSON file: a mapping of TrainConfig field names to values."""
    import yaml

    file = Path(path).expanduser()
    if not file.is_file():
        raise ConfigError(f"{file}: config file not found.")
    try:
        text = file.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise ConfigError(f"{file.name}: not a text file; write the config as UTF-8 YAML or JSON.") from None
    is_json = file.suffix.lower() == ".json"
    try:
        values = json.loads(text) if is_json else yaml.safe_load(text)  # YAML also reads JSON
    except (ValueError, yaml.YAMLError) as exc:
        detail = " ".join(str(exc).split())[:160]
        raise ConfigError(f"{file.name}: not valid {'JSON' if is_json else 'YAML'} ({detail}).") from None
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise ConfigError(f"{file.name}: expected settings as 'name: value' pairs (like 'epochs: 3'), "
                          f"got a {type(values).__name__}.")
    settings = {}
    for key, value in values.items():
        name = str(key).strip().replace("-", "_")
        settings[name] = _coerce_setting(name, value)
    return settings


def _coerce_setting(name: str, value: Any) -> Any:
    """Numbers written as text (YAML reads ``5e-5`` as a string) become numbers; the rest is left to validation."""
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    if name not in known or not isinstance(value, str):
        return value
    kind, optional = _setting_type(name)
    if optional and value.strip().lower() in _NONE_WORDS:
        return None
    if kind in (int, float):
        with contextlib.suppress(ValueError):
            number = float(value)
            return int(number) if kind is int and number.is_integer() and "." not in value else number
    return value


def build_config(*, preset: Optional[str] = None, config_file: Optional[str] = None,
                 flags: Optional[Dict[str, Any]] = None, base: Optional[Dict[str, Any]] = None) -> TrainConfig:
    """Settings in order of precedence: ``base`` (defaults) < ``preset`` < ``config_file`` < ``flags``."""
    values: Dict[str, Any] = dict(base or {})
    if preset:
        values.update(PRESETS[preset])
    if config_file:
        values.update(read_config_file(config_file))
        try:
            TrainConfig.from_dict(values)
        except ConfigError as exc:
            raise ConfigError(f"{Path(config_file).name}: {exc}") from None
    values.update(flags or {})
    return TrainConfig.from_dict(values)


def _flag_settings(args: argparse.Namespace) -> Dict[str, Any]:
    return {key[len(_SETTING_PREFIX):]: value for key, value in vars(args).items() if key.startswith(_SETTING_PREFIX)}


# =============================================================================================
# Processes and output
# =============================================================================================

class _Processes:
    """This process's place in a launch by ``accelerate launch``/``torchrun``: rank, world size, barrier."""

    def __init__(self, join: bool = True):
        self.world_size = int(os.environ.get("WORLD_SIZE") or 1)
        self.rank = int(os.environ.get("RANK") or 0)
        self._state = None
        if join and self.world_size > 1:
            from accelerate import PartialState
            self._state = PartialState()  # joins the process group the launcher set up

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self._state is not None:
            self._state.wait_for_everyone()

    def finish(self) -> None:
        """Wait for every process, then leave the process group."""
        if self._state is None:
            return
        import torch.distributed as dist
        if dist.is_available() and dist.is_initialized():
            dist.barrier()
            dist.destroy_process_group()


class _Console:
    """Messages on stderr (main process only); results go to stdout."""

    def __init__(self, quiet: bool = False, main: bool = True):
        self.quiet, self.main = quiet, main

    def info(self, message: str) -> None:
        if self.main and not self.quiet:
            print(message, file=sys.stderr, flush=True)

    def warn(self, message: str) -> None:
        if self.main:
            print(f"warning: {message}", file=sys.stderr, flush=True)

    def result(self, text: str) -> None:
        if self.main:
            print(text, flush=True)


def _duration(seconds: Optional[float]) -> str:
    if seconds is None:
        return "?"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


class ProgressPrinter:
    """A training listener: a tqdm bar on a terminal, plain lines otherwise (on ``stream``)."""

    def __init__(self, stream: TextIO, tty: Optional[bool] = None):
        self.stream = stream
        self.tty = stream.isatty() if tty is None else tty
        self._bar = None
        self._started = time.monotonic()
        self._first_step = 0
        self._done = False

    def __call__(self, event) -> None:
        if self._done:  # the final evaluation after training reports through the same callbacks
            return
        elapsed = time.monotonic() - self._started
        done_here = event.step - self._first_step
        eta = elapsed / done_here * max(0, event.max_steps - event.step) if done_here > 0 else None
        if event.kind == "start":
            self._started, self._first_step = time.monotonic(), event.step
            resumed = f", resuming at step {event.step}" if event.step else ""
            if self.tty:
                from tqdm.auto import tqdm
                self._bar = tqdm(total=event.max_steps, initial=event.step, unit="step", desc="Training",
                                 file=self.stream, dynamic_ncols=True)
                if resumed:
                    self._bar.write(f"Resuming at step {event.step}", file=self.stream)
            else:
                self._line(f"Training: {event.max_steps} steps{resumed}")
        elif event.kind == "log" and event.loss is not None:
            if self._bar is not None:
                self._bar.set_postfix(epoch=f"{event.epoch:.2f}", loss=f"{event.loss:.4f}", refresh=False)
                self._bar.update(max(0, event.step - self._bar.n))
            else:
                self._line(f"step {event.step}/{event.max_steps} ({event.fraction:.0%})  epoch {event.epoch:.2f}  "
                           f"loss {event.loss:.4f}  elapsed {_duration(elapsed)}  eta {_duration(eta)}")
        elif event.kind == "evaluate":
            shown = "  ".join(f"{key} {event.metrics[key]:.4f}" for key in ("accuracy", "f1_macro", "loss")
                              if key in event.metrics)
            self._line(f"epoch {event.epoch:.2f}  evaluation: {shown}")
        elif event.kind == "end":
            if self._bar is not None:
                self._bar.update(max(0, event.step - self._bar.n))
                self._bar.close()
                self._bar = None
            how = "stopped" if event.stopped else "finished"
            self._line(f"Training {how} at step {event.step}/{event.max_steps} in {_duration(elapsed)}")
            self._done = True

    def _line(self, text: str) -> None:
        if self._bar is not None:
            self._bar.write(text, file=self.stream)
        else:
            print(text, file=self.stream, flush=True)


@contextlib.contextmanager
def quiet_libraries(verbose: bool = False) -> Iterator[None]:
    """Keep transformers/datasets/accelerate log lines, progress bars and library warnings off the console.

    Warnings raised by finetuner itself are shown as one ``warning: ...`` line (main process only).
    """
    if verbose:
        yield
        return
    import datasets
    from transformers.utils import logging as hf_logging

    saved = (hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled(),
             datasets.logging.get_verbosity(), datasets.is_progress_bar_enabled())
    loggers = {name: logging.getLogger(name).level for name in ("accelerate", "torch.distributed")}
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    datasets.logging.set_verbosity_error()
    datasets.disable_progress_bars()
    for name in loggers:
        logging.getLogger(name).setLevel(logging.ERROR)
    package_dir = str(Path(__file__).resolve().parent)
    is_main = int(os.environ.get("RANK") or 0) == 0

    def show(message, category, filename, lineno, file=None, line=None):
        if is_main and issubclass(category, UserWarning) and str(Path(filename).resolve()).startswith(package_dir):
            print(f"warning: {message}", file=sys.stderr, flush=True)

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("default")
            warnings.showwarning = show
            yield
    finally:
        hf_logging.set_verbosity(saved[0])
        if saved[1]:
            hf_logging.enable_progress_bar()
        datasets.logging.set_verbosity(saved[2])
        if saved[3]:
            datasets.enable_progress_bars()
        for name, level in loggers.items():
            logging.getLogger(name).setLevel(level)


# =============================================================================================
# Files
# =============================================================================================

def _write_json(path: Path, value: Any) -> None:
    """Write JSON atomically (a reader never sees half a file)."""
    staging = path.parent / f".{path.name}.{uuid.uuid4().hex[:8]}"
    staging.write_text(json.dumps(value, indent=2, default=str) + "\n", encoding="utf-8")
    os.replace(staging, path)


def _read_json(path: Path) -> Dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: cannot be read ({exc}).") from None


def find_model_dir(path: str) -> Path:
    """A saved model directory: ``path`` itself or the ``model`` folder of a run directory."""
    from .finetuner import METADATA_FILE
    directory = Path(path).expanduser()
    for candidate in (directory, directory / MODEL_SUBDIR):
        if (candidate / METADATA_FILE).is_file():
            return candidate
    if not directory.exists():
        raise ModelLoadError(f"{directory}: no such model directory.")
    raise ModelLoadError(f"{directory} is not a trained finetuner model (no {METADATA_FILE} in it or in "
                         f"{MODEL_SUBDIR}/). Train one with: python -m finetuner train --data TRAIN --output DIR")


def _model_id(name: str) -> str:
    """A local model directory as an absolute path (so that the run record works from anywhere)."""
    directory = Path(name).expanduser()
    return str(directory.resolve()) if directory.is_dir() else name


def _base_model(name: str) -> str:
    """A run directory given as the base model means the model it trained."""
    directory = Path(name).expanduser()
    if directory.is_dir() and not (directory / "config.json").is_file() \
            and (directory / MODEL_SUBDIR / "config.json").is_file():
        return str(directory / MODEL_SUBDIR)
    return name


def _labelled(path: str, text_column: Optional[str], label_column: Optional[str],
              prefer: Tuple[Optional[str], Optional[str]] = (None, None)) -> LabelledTexts:
    """Read and validate a labelled table; ``prefer`` names columns to use when present (another file's)."""
    frame = read_table(path)
    text_column = text_column or (prefer[0] if prefer[0] in frame.columns else None)
    label_column = label_column or (prefer[1] if prefer[1] in frame.columns and prefer[1] != text_column else None)
    try:
        return table_to_labelled(frame, text_column, label_column)
    except DataError as exc:
        raise DataError(f"{Path(path).name}: {exc}") from None


def _fingerprint(texts: Sequence[str], labels: Sequence[Any]) -> str:
    digest = hashlib.sha256()
    for text, label in zip(texts, labels):
        digest.update(f"{text}\x1f{label}\x1e".encode("utf-8", "surrogatepass"))
    return digest.hexdigest()[:16]


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


# ---------------------------------------------------------------------------------------------
# Streaming tables for predict
# ---------------------------------------------------------------------------------------------

def _sniff_text_file(path: Path, sep: Optional[str]) -> Tuple[str, str]:
    """Encoding and delimiter of a delimited text file, from its first 64 KiB."""
    with open(path, "rb") as handle:
        head = handle.read(65536)
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        encoding = "utf-16"
    elif b"\x00" in head[:4096]:
        raise DataError(f"{path.name}: looks like a binary file, not a text table. Export it as CSV (UTF-8).")
    else:
        encoding = "utf-8-sig"
        try:
            head.decode("utf-8")
        except UnicodeDecodeError as exc:
            if exc.start < len(head) - 3:  # not merely a character cut at the end of the sample
                encoding = "cp1252"
                try:
                    head.decode(encoding)
                except UnicodeDecodeError:
                    encoding = "latin-1"
    text = head.decode(encoding, errors="ignore")
    if not text.strip():
        raise DataError(f"{path.name}: the file is empty. Give a table with a header row.")
    if sep is None:
        try:
            sep = csv.Sniffer().sniff(text[:20000], delimiters=",;\t|").delimiter
        except csv.Error:
            sep = ","
    return encoding, sep


def iter_table_chunks(path: str, chunk_rows: int) -> Iterator[pd.DataFrame]:
    """Read a table in chunks of ``chunk_rows`` rows: CSV/TSV/TXT, JSONL and Parquet are streamed;
    JSON arrays and Excel files are read whole and then chunked."""
    file = Path(path).expanduser()
    suffix = file.suffix.lower()
    if suffix not in SUPPORTED_EXTENSIONS:
        raise DataError(f"{file.name}: unsupported file type {suffix or '(no extension)'!r}. "
                        f"Use one of: {', '.join(SUPPORTED_EXTENSIONS)}.")
    if not file.is_file():
        raise DataError(f"{file}: file not found.")
    if file.stat().st_size == 0:
        raise DataError(f"{file.name}: the file is empty. Give a table with a header row.")
    rows = 0
    try:
        with contextlib.ExitStack() as stack:
            if suffix in (".csv", ".tsv", ".txt"):
                encoding, sep = _sniff_text_file(file, "\t" if suffix == ".tsv" else None)
                chunks = stack.enter_context(pd.read_csv(
                    file, sep=sep, encoding=encoding, dtype=str, keep_default_na=False, na_values=[""],
                    chunksize=chunk_rows))
            elif suffix == ".jsonl" or (suffix == ".json" and not _starts_with(file, b"[")):
                chunks = stack.enter_context(pd.read_json(file, lines=True, dtype=False, chunksize=chunk_rows,
                                                          encoding="utf-8"))
            elif suffix == ".parquet":
                import pyarrow.parquet as pq
                parquet = stack.enter_context(pq.ParquetFile(file))
                chunks = (batch.to_pandas() for batch in parquet.iter_batches(batch_size=chunk_rows))
            else:
                whole = read_table(file)
                chunks = (whole.iloc[start:start + chunk_rows] for start in range(0, len(whole), chunk_rows))
            for chunk in chunks:
                chunk.columns = [str(c).strip() for c in chunk.columns]
                rows += len(chunk)
                yield chunk.reset_index(drop=True)
    except DataError:
        raise
    except Exception as exc:  # the readers raise many types; all mean "this file is not a readable table"
        detail = " ".join(str(exc).split())[:200] or type(exc).__name__
        raise DataError(f"{file.name}: could not be read as a {suffix[1:].upper()} table after {rows} rows "
                        f"({detail}).") from None
    if rows == 0:
        raise DataError(f"{file.name}: no data rows found (only a header, or nothing). Add rows of text.")


def _starts_with(path: Path, prefix: bytes) -> bool:
    with open(path, "rb") as handle:
        return handle.read(4096).lstrip(b"\xef\xbb\xbf \t\r\n").startswith(prefix)


def _text_column(frame: pd.DataFrame, given: Optional[str], source: str) -> str:
    columns = list(frame.columns)
    if given is not None:
        if given not in columns:
            raise DataError(f"{source}: the text column {given!r} is not in the table. "
                            f"Columns found: {', '.join(repr(c) for c in columns)}.")
        return given
    if len(columns) == 1:
        return columns[0]
    lowered = {c.lower(): c for c in columns}
    for name in TEXT_COLUMN_NAMES:
        if name in lowered:
            return lowered[name]
    lengths = {c: frame[c].astype(str).str.len().mean() for c in columns}
    return max(lengths, key=lengths.get)


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, float) and value != value) or not str(value).strip()


class PredictionWriter:
    """Writes prediction chunks as CSV/TSV (formula-safe) or JSONL, to a file (atomically) or stdout."""

    def __init__(self, output: Optional[str]):
        self.path: Optional[Path] = None
        self._staging: Optional[Path] = None
        self.format = ".csv"
        if output is None:
            self.stream: TextIO = sys.stdout
        else:
            self.path = Path(output).expanduser()
            self.format = self.path.suffix.lower()
            if self.format not in PREDICTION_FORMATS:
                raise DataError(f"{self.path.name}: unsupported output type {self.format or '(no extension)'!r}. "
                                f"Use one of: {', '.join(PREDICTION_FORMATS)}.")
            if self.path.is_dir():
                raise DataError(f"{self.path} is a directory; give a file name such as predictions.csv.")
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._staging = self.path.parent / f".{self.path.name}.partial-{uuid.uuid4().hex[:8]}"
            self.stream = open(self._staging, "w", encoding="utf-8", newline="")
        self._header = True

    def write(self, frame: pd.DataFrame) -> None:
        if self.format == ".jsonl":
            text = frame.to_json(orient="records", lines=True, force_ascii=False, double_precision=6)
            self.stream.write(text.rstrip("\n") + "\n")
        else:
            neutralize_frame(frame).to_csv(self.stream, sep="\t" if self.format == ".tsv" else ",", index=False,
                                           header=self._header)
        self._header = False
        self.stream.flush()

    def commit(self) -> None:
        if self._staging is not None:
            self.stream.close()
            os.replace(self._staging, self.path)
            self._staging = None

    def abort(self) -> None:
        if self._staging is not None:
            self.stream.close()
            self._staging.unlink(missing_ok=True)
            self._staging = None


# =============================================================================================
# Commands
# =============================================================================================

def cmd_train(args: argparse.Namespace) -> int:
    """``train``: fine-tune, evaluate, and write the run directory."""
    if args.resume and args.overwrite:
        raise UsageError("--resume and --overwrite exclude each other", "finetuner train")
    if args.data is None and not args.resume:
        raise UsageError("the following arguments are required: --data", "finetuner train")
    if args.output is None and args.data is None:
        raise UsageError("--resume needs --output DIR (the run to continue)", "finetuner train")
    output = Path(args.output or Path(DEFAULT_OUTPUT_ROOT) / Path(args.data).stem).expanduser().resolve()
    checkpoints = output / CHECKPOINT_SUBDIR
    processes = _Processes()
    console = _Console(args.quiet, processes.is_main)
    started = time.monotonic()

    record: Dict[str, Any] = {}
    saved_config: Optional[Dict[str, Any]] = None
    if args.resume:
        record, saved_config = _resumable_run(output, checkpoints)
    elif _holds_run(output) and not args.overwrite:
        raise ConfigError(f"{output} already holds a training run. Continue it with --resume, replace it with "
                          "--overwrite, or choose another --output.")

    config = build_config(preset=args.preset, config_file=args.config, flags=_flag_settings(args), base=saved_config)
    if saved_config is not None:
        _same_as_run(config, TrainConfig.from_dict(saved_config), output)
    train_info = record.get("train_data", {})
    eval_info = record.get("eval_data") or {}
    train_path = args.data or train_info.get("path")
    if not train_path:
        raise UsageError(f"--data is required: {output / RUN_FILE} does not name the training data", "finetuner train")
    eval_path = args.eval or (eval_info.get("path") if args.resume else None)
    train = _labelled(train_path, args.text_column or train_info.get("text_column"),
                      args.label_column or train_info.get("label_column"))
    for message in train.warnings:
        console.warn(message)
    if eval_path:
        evaluation = _labelled(eval_path, args.text_column, args.label_column,
                               prefer=(train.text_column, train.label_column))
        for message in evaluation.warnings:
            console.warn(message)
        train_texts, train_labels = train.texts, train.labels
        eval_texts, eval_labels = evaluation.texts, evaluation.labels
        eval_source = f"{len(eval_texts)} rows of {Path(eval_path).name}"
    else:
        train_texts, train_labels, eval_texts, eval_labels, notes = split_train_eval(
            train.texts, train.labels, config.eval_fraction, config.seed)
        for message in notes:
            console.warn(message)
        eval_source = f"{len(eval_texts)} held-out rows of {Path(train_path).name}"
        console.info(f"No --eval file: holding out {config.eval_fraction:.0%} of {Path(train_path).name} for "
                     f"evaluation (stratified split, seed {config.seed}): {len(train_texts)} training rows, "
                     f"{len(eval_texts)} evaluation rows.")
    fingerprints = {"train": _fingerprint(train_texts, train_labels), "eval": _fingerprint(eval_texts, eval_labels)}
    if args.resume and record.get("fingerprints") and record["fingerprints"] != fingerprints:
        raise DataError("The training or evaluation data differ from the interrupted run's; resume with the same "
                        "files (or leave out --data/--eval to use them), or start again with --overwrite.")

    from .finetuner import LLMFinetuner  # torch and transformers: once the inputs have been checked
    from .models import DEFAULT_MODEL
    model_name = _model_id(args.model or record.get("base_model") or DEFAULT_MODEL)
    if args.resume and args.model and model_name != record.get("base_model"):
        raise ConfigError(f"--model {args.model} differs from the interrupted run's base model "
                          f"{record.get('base_model')!r}; resume it without --model.")
    finetuner = LLMFinetuner(_base_model(model_name), config=config)  # before anything is written: it may fail
    resumed_from = last_complete_step(checkpoints) if args.resume else None
    processes.barrier()  # every process has checked the directory before the main one writes into it
    if processes.is_main:
        if args.resume:
            drop_incomplete(checkpoints)
        else:
            for stale in (checkpoints, output / METRICS_FILE, output / RUN_FILE):
                shutil.rmtree(stale, ignore_errors=True) if stale.is_dir() else stale.unlink(missing_ok=True)
        output.mkdir(parents=True, exist_ok=True)
        _write_config(output / CONFIG_FILE, config)
        command = "python -m finetuner " + shlex.join(args.argv)
        record = {
            **(record if args.resume else {"started_at": _now(), "command": command}),
            "status": "running",
            "finetuner_version": __version__,
            "base_model": model_name,
            "train_data": {"path": str(Path(train_path).resolve()), "rows": len(train),
                           "text_column": train.text_column, "label_column": train.label_column},
            "eval_data": {"path": str(Path(eval_path).resolve()) if eval_path else None, "rows": len(eval_texts),
                          "source": "file" if eval_path else f"stratified split ({config.eval_fraction:g})"},
            "fingerprints": fingerprints,
            "config": config.to_dict(),
            "world_size": processes.world_size,
        }
        if args.resume:
            record.setdefault("resumes", []).append({"at": _now(), "from_step": resumed_from, "command": command})
        _write_json(output / RUN_FILE, record)
    processes.barrier()  # ... and the others start once it has (they read the checkpoints)

    where = f" on {processes.world_size} processes" if processes.world_size > 1 else ""
    console.info(f"Fine-tuning {model_name} on {len(train_texts)} rows, {len(set(map(str, train_labels)))} classes"
                 f"{where} -> {output}")
    printer = ProgressPrinter(sys.stderr) if processes.is_main and not args.quiet else None
    training_started = time.monotonic()
    try:
        finetuner.fine_tune(train_texts, train_labels, eval_texts, eval_labels, config=config, listener=printer,
                            checkpoint_dir=checkpoints, resume=args.resume)
    except KeyboardInterrupt:
        if processes.is_main:
            _interrupted(output, checkpoints, record)
        return EXIT_INTERRUPTED
    except BaseException as exc:
        if processes.is_main:
            record.update({"status": "failed", "error": f"{type(exc).__name__}: {_one_line(str(exc))[:500]}"})
            with contextlib.suppress(OSError):
                _write_json(output / RUN_FILE, record)
        raise
    train_seconds = time.monotonic() - training_started

    metrics = finetuner.evaluate_model(eval_texts, eval_labels)  # every process: the Trainer gathers the batches
    report = finetuner.report or {}
    finetuner.save(output / MODEL_SUBDIR)  # written by the main process only
    if processes.is_main:
        trainer = finetuner.trainer
        scored = int(sum(map(sum, report.get("confusion_matrix", [])))) or None
        _write_json(output / METRICS_FILE, metrics)
        record.update({
            "status": "completed",
            "finished_at": _now(),
            "world_size": int(trainer.args.world_size),
            "distributed_type": str(trainer.accelerator.distributed_type).split(".")[-1],
            "steps": int(trainer.state.global_step),
            "max_steps": int(trainer.state.max_steps),
            "epochs": float(trainer.state.epoch or 0.0),
            "learning_rate_used": float(trainer.args.learning_rate),  # the setting may be "auto"
            "resumed_from_step": resumed_from,
            "early_stopped": int(trainer.state.global_step) < int(trainer.state.max_steps),
            "train_seconds": round(train_seconds, 2),
            "wall_seconds": round(time.monotonic() - started, 2),
            "eval_examples_scored": scored,
            "metrics": metrics,
            "report": report,
        })
        _write_json(output / RUN_FILE, record)
        if not args.keep_checkpoints:
            shutil.rmtree(checkpoints, ignore_errors=True)
    console.result(_summary(metrics, eval_source, output, time.monotonic() - started))
    processes.finish()
    return EXIT_OK


def _holds_run(directory: Path) -> bool:
    return any((directory / name).exists() for name in (RUN_FILE, MODEL_SUBDIR, CHECKPOINT_SUBDIR, METRICS_FILE))


def _resumable_run(output: Path, checkpoints: Path) -> Tuple[Dict[str, Any], Optional[Dict[str, Any]]]:
    """The interrupted run's record and settings; a clear error when there is nothing to resume."""
    record = _read_json(output / RUN_FILE) if (output / RUN_FILE).is_file() else {}
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


def _write_config(path: Path, config: TrainConfig) -> None:
    import yaml
    staging = path.parent / f".{path.name}.{uuid.uuid4().hex[:8]}"
    staging.write_text("# Training settings of this run (python -m finetuner train --config this-file)\n"
                       + yaml.safe_dump(config.to_dict(), sort_keys=False), encoding="utf-8")
    os.replace(staging, path)


def _interrupted(output: Path, checkpoints: Path, record: Dict[str, Any]) -> None:
    step = last_complete_step(checkpoints)
    record.update({"status": "interrupted", "interrupted_at": _now(), "last_checkpoint_step": step})
    with contextlib.suppress(OSError):
        _write_json(output / RUN_FILE, record)
    if step is None:
        print("Interrupted before the first checkpoint (one is written at the end of every epoch); start again "
              "with --overwrite.", file=sys.stderr, flush=True)
    else:
        print(f"Interrupted; the last checkpoint is at step {step}. Continue with: "
              f"python -m finetuner train --output {shlex.quote(str(output))} --resume", file=sys.stderr, flush=True)


def _summary(metrics: Dict[str, float], source: str, output: Path, seconds: float) -> str:
    from .metrics import SUMMARY_KEYS
    lines = [f"Final model on {source}:"]
    lines += [f"  {key:<20}{metrics[key]:.4f}" for key in (*SUMMARY_KEYS, "loss") if key in metrics]
    lines.append(f"Model saved to {output / MODEL_SUBDIR} ({METRICS_FILE}, {CONFIG_FILE} and {RUN_FILE} in "
                 f"{output}); {_duration(seconds)} in all.")
    return "\n".join(lines)


def cmd_evaluate(args: argparse.Namespace) -> int:
    """``evaluate``: metrics JSON (and with --report a per-class table) of a trained model on a labelled table."""
    processes = _Processes()
    console = _Console(args.quiet, processes.is_main)
    from .finetuner import LLMFinetuner
    finetuner = LLMFinetuner.load(find_model_dir(args.model))
    if args.batch_size:
        finetuner.config = finetuner.config.replace(eval_batch_size=args.batch_size)
    table = _labelled(args.data, args.text_column, args.label_column)
    for message in table.warnings:
        console.warn(message)
    try:
        metrics = finetuner.evaluate_model(table.texts, table.labels)
    except DataError as exc:
        raise DataError(f"{Path(args.data).name}: {exc}") from None
    result = {**metrics, "examples": len(table)}
    report = finetuner.report or {}
    if processes.is_main:
        console.result(json.dumps(result, indent=2))
        if args.report:
            console.result(format_report(report))
        if args.output:
            target = Path(args.output).expanduser()
            target.parent.mkdir(parents=True, exist_ok=True)
            _write_json(target, {"metrics": result, **{k: report.get(k) for k in ("labels", "per_class",
                                                                                   "confusion_matrix")}})
    processes.finish()
    return EXIT_OK


def format_report(report: Dict[str, Any]) -> str:
    """A per-class precision/recall/F1/support table and the confusion matrix, as text."""
    labels = report.get("labels") or list(report.get("per_class", {}))
    width = max([len("class")] + [len(name) for name in labels])
    lines = ["", f"{'class':<{width}}  precision  recall  f1-score  support"]
    for name in labels:
        row = report["per_class"][name]
        lines.append(f"{name:<{width}}  {row['precision']:>9.4f}  {row['recall']:>6.4f}  {row['f1-score']:>8.4f}  "
                     f"{int(row['support']):>7d}")
    matrix = report.get("confusion_matrix") or []
    if matrix:
        cell = max([len(name) for name in labels] + [len(str(v)) for row in matrix for v in row])
        lines += ["", "Confusion matrix (rows: true class, columns: predicted class)",
                  " " * width + "  " + "  ".join(f"{name:>{cell}}" for name in labels)]
        lines += [f"{name:<{width}}  " + "  ".join(f"{v:>{cell}}" for v in row) for name, row in zip(labels, matrix)]
    return "\n".join(lines)


def cmd_predict(args: argparse.Namespace) -> int:
    """``predict``: label and per-class probabilities for every row, streamed chunk by chunk."""
    processes = _Processes(join=False)
    if not processes.is_main:  # prediction runs in one process; the others of a launch have nothing to do
        return EXIT_OK
    if args.chunk_rows < 1:
        raise UsageError("--chunk-rows must be at least 1", "finetuner predict")
    console = _Console(args.quiet)
    from .finetuner import LLMFinetuner
    finetuner = LLMFinetuner.load(find_model_dir(args.model))
    if args.batch_size:
        finetuner.config = finetuner.config.replace(eval_batch_size=args.batch_size)
    source = Path(args.data).name
    chunks = iter_table_chunks(args.data, args.chunk_rows)
    writer = None
    bar = None
    done = 0
    try:
        text_column = None
        for chunk in chunks:
            if text_column is None:
                text_column = _text_column(chunk, args.text_column, source)
                writer = PredictionWriter(args.output)
                if sys.stderr.isatty() and not args.quiet:
                    from tqdm.auto import tqdm
                    bar = tqdm(unit="rows", desc="Predicting", file=sys.stderr, dynamic_ncols=True)
            texts = chunk[text_column].tolist()
            blank = [done + i + 1 for i, text in enumerate(texts) if _blank(text)]
            if blank:
                shown = ", ".join(map(str, blank[:5])) + (f" and {len(blank) - 5} more" if len(blank) > 5 else "")
                raise DataError(f"{source}: empty text in column {text_column!r} at row {shown}. "
                                "Fill them in or delete those rows.")
            table = predictions_table(finetuner, [str(t) for t in texts]).drop(columns="text")
            kept = chunk.drop(columns=[c for c in table.columns if c in chunk.columns])
            writer.write(pd.concat([kept, table], axis=1))
            done += len(chunk)
            if bar is not None:
                bar.update(len(chunk))
        writer.commit()
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    finally:
        if bar is not None:
            bar.close()
    console.info(f"Predicted {done} rows of {source} -> {args.output or 'standard output'}")
    return EXIT_OK


# =============================================================================================
# Entry point
# =============================================================================================

def _one_line(text: str) -> str:
    return " ".join(part.strip() for part in str(text).splitlines() if part.strip())


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command line; returns the exit code (0 ok, 2 bad input, 1 failure, 130 interrupted)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except UsageError as exc:
        print(f"{exc.prog}: error: {_one_line(str(exc))} (see {exc.prog} --help)", file=sys.stderr)
        return EXIT_BAD_INPUT
    except SystemExit as exc:  # --help, --version
        return exc.code if isinstance(exc.code, int) else EXIT_OK
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_BAD_INPUT
    args.argv = argv
    is_main = int(os.environ.get("RANK") or 0) == 0
    if not args.verbose:  # torch's C++ warnings (e.g. DDP's reducer); read when torch is first imported
        os.environ.setdefault("TORCH_CPP_LOG_LEVEL", "ERROR")
    with quiet_libraries(args.verbose):
        try:
            return args.run(args)
        except UsageError as exc:
            if is_main:
                print(f"{exc.prog}: error: {_one_line(str(exc))} (see {exc.prog} --help)", file=sys.stderr)
            return EXIT_BAD_INPUT
        except FinetunerError as exc:  # the same on every process: said once
            if is_main:
                print(f"finetuner {args.command}: error: {_one_line(str(exc))}", file=sys.stderr)
            return EXIT_BAD_INPUT
        except KeyboardInterrupt:
            print("Interrupted.", file=sys.stderr)
            return EXIT_INTERRUPTED
        except BrokenPipeError:  # e.g. `predict ... | head`: the reader has gone
            with contextlib.suppress(OSError):
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return EXIT_FAILURE
        except Exception as exc:  # a bug or an environment problem, not bad input
            if args.verbose:
                traceback.print_exc()
            rank = f" (process {os.environ.get('RANK')})" if os.environ.get("RANK") not in (None, "0") else ""
            hint = "" if args.verbose else " (run with --verbose for the traceback)"
            print(f"finetuner {args.command}: failed{rank}: {type(exc).__name__}: {_one_line(str(exc))[:500]}{hint}",
                  file=sys.stderr)
            return EXIT_FAILURE
