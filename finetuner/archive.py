"""Import a model from an uploaded zip, safely: every member is checked before anything is extracted.

Rejected: absolute paths and ``..`` (path traversal), links, more than ``MAX_MEMBERS`` files, more than
``max_unpacked_mb`` once unpacked (zip bombs), and pickle-based weight files (only safetensors load).
"""

from __future__ import annotations

import shutil
import stat
import uuid
import zipfile
from pathlib import Path, PurePosixPath
from typing import List, Union

from .errors import ModelLoadError

MAX_MEMBERS = 1000
# Formats that unpickle on load and can run code: never accepted from a user.
PICKLE_SUFFIXES = (".bin", ".pkl", ".pickle", ".pt", ".pth", ".ckpt", ".joblib", ".npy", ".npz")
METADATA_FILE = "finetuner.json"


def check_members(archive: zipfile.ZipFile, max_unpacked_mb: float) -> List[zipfile.ZipInfo]:
    """The archive's members if all are safe to extract; else :class:`ModelLoadError` naming the first bad one."""
    members = archive.infolist()
    if len(members) > MAX_MEMBERS:
        raise ModelLoadError(f"The zip has {len(members)} entries; a model has far fewer (limit {MAX_MEMBERS}).")
    total = 0
    for member in members:
        name = member.filename
        parts = PurePosixPath(name.replace("\\", "/")).parts
        if name.startswith(("/", "\\")) or (parts and parts[0].endswith(":")) or ".." in parts:
            raise ModelLoadError(f"Refused the zip: entry {name!r} would be written outside the target folder.")
        if stat.S_ISLNK(member.external_attr >> 16):
            raise ModelLoadError(f"Refused the zip: entry {name!r} is a link.")
        if name.lower().endswith(PICKLE_SUFFIXES):
            raise ModelLoadError(f"Refused the zip: {name!r} is a pickle-based file; only safetensors weights "
                                 "are loaded. Re-save the model with safetensors.")
        total += member.file_size
    if total > max_unpacked_mb * 2**20:
        raise ModelLoadError(f"Refused the zip: it unpacks to {total / 2**20:,.0f} MB "
                             f"(limit {max_unpacked_mb:,.0f} MB).")
    return members


def import_model_zip(zip_path: Union[str, Path], destination: Union[str, Path],
                     max_unpacked_mb: float = 4096) -> Path:
    """Extract a model zip (as exported by finetuner) to ``destination`` and return the model folder.

    The folder holding ``finetuner.json`` (at the top or one level down) becomes ``destination``. Nothing
    is left behind when the zip is refused.
    """
    destination = Path(destination)
    if destination.exists():
        raise ModelLoadError(f"{destination} already exists; choose a new folder for the imported model.")
    try:
        archive = zipfile.ZipFile(zip_path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise ModelLoadError(f"{Path(zip_path).name} is not a readable zip file ({exc}).") from None
    staging = destination.parent / f".{destination.name}.import-{uuid.uuid4().hex[:8]}"
    try:
        with archive:
            members = check_members(archive, max_unpacked_mb)
            staging.mkdir(parents=True)
            for member in members:
                archive.extract(member, staging)
        found = sorted(staging.glob(METADATA_FILE)) or sorted(staging.glob(f"*/{METADATA_FILE}"))
        if not found:
            raise ModelLoadError(f"{Path(zip_path).name} holds no finetuner model (no {METADATA_FILE}); "
                                 "upload a zip exported by finetuner.")
        if not any(found[0].parent.glob("*.safetensors")):
            raise ModelLoadError(f"{Path(zip_path).name} has no .safetensors weights.")
        found[0].parent.rename(destination)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return destination
