"""Trainer checkpoints on disk: which are complete, and clearing the ones cut off mid-write."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Dict, Optional, Union

# The Trainer writes this file last: a checkpoint folder without it was interrupted while saving.
_COMPLETE_MARKER = "trainer_state.json"


def checkpoints(directory: Union[str, Path]) -> Dict[int, Path]:
    """Checkpoint folders (``checkpoint-<step>``) in ``directory`` by step, complete or not."""
    found = {}
    for folder in Path(directory).glob("checkpoint-*"):
        step = folder.name.rsplit("-", 1)[-1]
        if step.isdigit() and folder.is_dir():
            found[int(step)] = folder
    return found


def last_complete_step(directory: Union[str, Path]) -> Optional[int]:
    """Step of the newest complete checkpoint, or None."""
    complete = [step for step, folder in checkpoints(directory).items() if (folder / _COMPLETE_MARKER).is_file()]
    return max(complete) if complete else None


def drop_incomplete(directory: Union[str, Path]) -> None:
    """Remove checkpoints cut off while being written (the Trainer would resume from the newest folder)."""
    for folder in checkpoints(directory).values():
        if not (folder / _COMPLETE_MARKER).is_file():
            shutil.rmtree(folder, ignore_errors=True)
