"""Writing files and folders so that a reader never sees half of one: write beside the target, then rename.

Every "stage, then move into place" in finetuner goes through here.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any, Iterator, Union

PathLike = Union[str, Path]


def staging_path(target: PathLike, tag: str = "partial") -> Path:
    """A hidden, unique sibling of ``target`` to build it in (``.name.partial-1a2b3c4d``)."""
    target = Path(target)
    return target.parent / f".{target.name}.{tag}-{uuid.uuid4().hex[:8]}"


@contextlib.contextmanager
def atomic_file(target: PathLike) -> Iterator[Path]:
    """Yield a staging path to write ``target``'s content to; it replaces ``target`` when the block ends
    without an error, and is removed otherwise."""
    target = Path(target)
    staging = staging_path(target)
    try:
        yield staging
        os.replace(staging, target)
    finally:
        staging.unlink(missing_ok=True)


def write_text_atomic(target: PathLike, text: str) -> None:
    """Write a UTF-8 text file atomically."""
    with atomic_file(target) as staging:
        staging.write_text(text, encoding="utf-8")


def write_json_atomic(target: PathLike, value: Any) -> None:
    """Write ``value`` as indented JSON atomically (values JSON cannot hold are written as strings)."""
    write_text_atomic(target, json.dumps(value, indent=2, default=str) + "\n")


@contextlib.contextmanager
def atomic_dir(target: PathLike) -> Iterator[Path]:
    """Yield a staging folder to build ``target`` in; when the block ends without an error it replaces
    ``target`` (an existing one only once the new one is complete). The staging folder never survives."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = staging_path(target)
    staging.mkdir()
    try:
        yield staging
        replace_dir(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def replace_dir(source: Path, target: Path) -> None:
    """Move the folder ``source`` to ``target``, replacing an existing ``target`` only once ``source`` is there."""
    if not target.exists():
        source.rename(target)
        return
    backup = staging_path(target, "old")
    target.rename(backup)
    try:
        source.rename(target)
    except BaseException:
        backup.rename(target)  # the old one back in place: nothing is lost
        raise
    shutil.rmtree(backup, ignore_errors=True) if backup.is_dir() else backup.unlink(missing_ok=True)
