"""Quiet model loading: transformers' load reports and progress bars silenced for the duration of a load.

A leaf module (it imports nothing of finetuner), so model sources (:mod:`finetuner.models`,
:mod:`finetuner.gguf_models`) and training can all use it without importing each other.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

from transformers.utils import logging as hf_logging


@contextlib.contextmanager
def quiet_loading() -> Iterator[None]:
    """Silence transformers' load report and progress bars while loading (errors still raise)."""
    verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()
