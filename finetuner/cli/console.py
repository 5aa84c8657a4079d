"""What the command line shows: exit codes, one-line errors, messages, training progress, quiet libraries.

Results go to stdout; messages, warnings, progress and errors to stderr, from the main process only.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Optional, TextIO

from .processes import is_main_process

if TYPE_CHECKING:  # transformers is imported when a command needs it
    from ..training.progress import ProgressEvent

EXIT_OK, EXIT_FAILURE, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130
_PACKAGE_DIR = str(Path(__file__).resolve().parents[1])


class UsageError(Exception):
    """A command line that cannot be run as given (exit code 2)."""

    def __init__(self, message: str, prog: str = "finetuner"):
        super().__init__(message)
        self.prog = prog


def one_line(text: str) -> str:
    """``text`` with its lines joined, for a message that must fit on one line."""
    return " ".join(part.strip() for part in str(text).splitlines() if part.strip())


def duration(seconds: Optional[float]) -> str:
    """``"42s"``, ``"3m05s"`` or ``"2h07m"``; ``"?"`` when unknown."""
    if seconds is None:
        return "?"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


class Console:
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


class ProgressPrinter:
    """A training listener: a tqdm bar on a terminal, plain lines otherwise (on ``stream``)."""

    def __init__(self, stream: TextIO, tty: Optional[bool] = None):
        self.stream = stream
        self.tty = stream.isatty() if tty is None else tty
        self._bar = None
        self._done = False

    def __call__(self, event: ProgressEvent) -> None:
        if event.kind == "start":  # a training starts (auto trains one per candidate)
            self._done = False
        if self._done:  # nothing after the end of a training (e.g. a later evaluation) belongs to the bar
            return
        if event.kind == "start":
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
                           f"loss {event.loss:.4f}  elapsed {duration(event.elapsed_seconds)}  "
                           f"eta {duration(event.eta_seconds)}")
        elif event.kind == "evaluate":
            keys = ("accuracy", "f1_macro", "f1_micro", "pearson", "mae", "loss")  # what the task reports
            shown = "  ".join(f"{key} {event.metrics[key]:.4f}" for key in keys if key in event.metrics)
            self._line(f"epoch {event.epoch:.2f}  evaluation: {shown}")
        elif event.kind == "end":
            if self._bar is not None:
                self._bar.update(max(0, event.step - self._bar.n))
                self._bar.close()
                self._bar = None
            how = "stopped" if event.stopped else "finished"
            self._line(f"Training {how} at step {event.step}/{event.max_steps} in {duration(event.elapsed_seconds)}")
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
    is_main = is_main_process()

    def show(message, category, filename, lineno, file=None, line=None):
        if is_main and issubclass(category, UserWarning) and str(Path(filename).resolve()).startswith(_PACKAGE_DIR):
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
