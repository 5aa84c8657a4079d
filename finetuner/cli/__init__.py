"""Command line: ``python -m finetuner train | evaluate | predict | suggest | export | serve | check | models``.

The same backend as the app (:class:`~finetuner.LLMFinetuner`, :func:`~finetuner.load_table`), for scripts,
automation and more than one process: ``accelerate launch -m finetuner train ...`` runs data-parallel training
through the transformers Trainer, and only the main process prints and writes files.

Exit codes: 0 success, 2 bad input (one line on stderr), 1 any other failure, 130 interrupted.
``train --output DIR`` writes a run directory (see :mod:`finetuner.cli.run_dir`).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import os
import sys
import traceback
import typing
from typing import Any, Callable, Dict, Optional, Sequence

from .. import __version__
from ..errors import FinetunerError
from . import check, evaluate, export, models, predict, serve, suggest, train
from .console import EXIT_BAD_INPUT, EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_OK, UsageError, one_line, quiet_libraries
from .processes import is_main_process

# torch and transformers are imported when a command needs them, so that --help and bad command lines
# answer at once.

# One entry per subcommand, in help order.
COMMANDS: Dict[str, Callable[[Any, argparse.ArgumentParser], None]] = {
    "train": train.add_parser,
    "evaluate": evaluate.add_parser,
    "predict": predict.add_parser,
    "suggest": suggest.add_parser,
    "export": export.add_parser,
    "serve": serve.add_parser,
    "check": check.add_parser,
    "models": models.add_parser,
}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> typing.NoReturn:  # one line instead of usage + message + exit
        raise UsageError(message, self.prog)


def build_parser() -> argparse.ArgumentParser:
    """The ``finetuner`` parser with every subcommand."""
    parser = _Parser(prog="finetuner", description="Fine-tune pre-trained transformers for text classification.",
                     epilog="Run on several processes/GPUs/machines with: accelerate launch -m finetuner train ...")
    parser.add_argument("--version", action="version", version=f"finetuner {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    common = _Parser(add_help=False)
    common.add_argument("-v", "--verbose", action="store_true",
                        help="keep the libraries' log messages and show tracebacks")
    common.add_argument("-q", "--quiet", action="store_true", help="print only results and errors")
    for add in COMMANDS.values():
        add(subparsers, common)
    return parser


def _usage_error(exc: UsageError) -> int:
    print(f"{exc.prog}: error: {one_line(str(exc))} (see {exc.prog} --help)", file=sys.stderr)
    return EXIT_BAD_INPUT


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command line; returns the exit code (0 ok, 2 bad input, 1 failure, 130 interrupted)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except UsageError as exc:
        return _usage_error(exc)
    except SystemExit as exc:  # --help, --version
        return exc.code if isinstance(exc.code, int) else EXIT_OK
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_BAD_INPUT
    args.argv = argv
    is_main = is_main_process()
    if not args.verbose:  # torch's C++ warnings (e.g. DDP's reducer); read when torch is first imported
        os.environ.setdefault("TORCH_CPP_LOG_LEVEL", "ERROR")
    with quiet_libraries(args.verbose):
        try:
            return args.run(args)
        except UsageError as exc:
            return _usage_error(exc) if is_main else EXIT_BAD_INPUT
        except FinetunerError as exc:  # the same on every process: said once
            if is_main:
                print(f"finetuner {args.command}: error: {one_line(str(exc))}", file=sys.stderr)
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
            rank = f" (process {os.environ.get('RANK')})" if not is_main else ""
            hint = "" if args.verbose else " (run with --verbose for the traceback)"
            print(f"finetuner {args.command}: failed{rank}: {type(exc).__name__}: {one_line(str(exc))[:500]}{hint}",
                  file=sys.stderr)
            return EXIT_FAILURE


def console() -> None:
    """The ``finetuner`` command and ``python -m finetuner``: :func:`main`, then exit with its code. The objects
    left are only torn down, so the garbage collector's passes over them at exit are skipped (``gc.freeze``): a
    second of a training run's wall time with torch and transformers loaded (bench/results/auto.md#exit)."""
    code = main()
    gc.freeze()
    sys.exit(code)
