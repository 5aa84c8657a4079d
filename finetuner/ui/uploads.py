"""The one rule for files the app reads: only what a user uploaded to this server, or what lies in a folder
the operator allowed (FINETUNER_ALLOWED_DIRS, none by default).

Every file input of the app is an :class:`UploadBox`, which applies :func:`uploaded_file` to what a client sends
before Gradio copies it into its cache, and again to what reaches the handler. Gradio checks uploads itself
when the app is started with ``launch()``, but not when it is mounted into another server
(``gr.mount_gradio_app``): there it would copy any file a client names into its cache and hand it to the
handler as an upload. ``tests/test_app_uploads.py`` attacks every file event both ways.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, List, Optional

import gradio as gr
from gradio.utils import get_upload_folder

from ..errors import UploadError
from .common import error

ALLOWED_DIRS_ENV = "FINETUNER_ALLOWED_DIRS"
NOT_UPLOADED = ("That file was not uploaded to this app, so it is not read: the app reads only files uploaded "
                "through its upload boxes (the operator can allow a server folder with "
                f"{ALLOWED_DIRS_ENV}). Upload the file instead.")


def allowed_folders() -> List[Path]:
    """Gradio's upload folder of this server, then the folders in FINETUNER_ALLOWED_DIRS (separated by
    ``os.pathsep``), each with its links resolved."""
    extra = [part.strip() for part in os.environ.get(ALLOWED_DIRS_ENV, "").split(os.pathsep) if part.strip()]
    return [Path(os.path.realpath(os.path.expanduser(folder))) for folder in [get_upload_folder(), *extra]]


def uploaded_file(value: Any) -> Optional[Path]:
    """The real path of an uploaded file (``None`` for no file), or :class:`UploadError`.

    ``value`` is a path string, or a ``FileData``-like object or dict with a ``path``. The path is resolved
    (links and ``..``) before it is compared, so neither a link inside the upload folder nor
    ``upload/../elsewhere`` leads out; a URL is no upload either. The message is the same whether or not the
    file exists, and quotes nothing of it."""
    if value is None or value == "":
        return None
    path = value.get("path") if isinstance(value, dict) else getattr(value, "path", value)
    if not isinstance(path, (str, os.PathLike)) or not str(path) or "\x00" in str(path):
        raise UploadError(NOT_UPLOADED)
    real = Path(os.path.realpath(path))
    if not any(real.is_relative_to(folder) for folder in allowed_folders()):
        raise UploadError(NOT_UPLOADED)
    return real


class UploadBox(gr.File):
    """``gr.File`` for files the app reads: a client's file is taken only where :func:`uploaded_file` allows it.

    The page draws it as a plain File component (``is_template``). The check runs where Gradio moves a client's
    file into its cache (so a server file is never copied in as if uploaded) and on the value the handler gets
    (which catches payloads Gradio does not move, such as streams)."""

    is_template = True

    def move_resource_to_block_cache(self, url_or_file_path: Any) -> Optional[str]:
        return super().move_resource_to_block_cache(_checked(url_or_file_path))

    async def async_move_resource_to_block_cache(self, url_or_file_path: Any) -> Optional[str]:
        return await super().async_move_resource_to_block_cache(_checked(url_or_file_path))

    def preprocess(self, payload: Any) -> Any:
        _checked(payload)
        return super().preprocess(payload)


def _checked(value: Any) -> Any:
    """``value`` unchanged when it is an upload (or nothing); else a ``gr.Error`` for the client."""
    try:
        uploaded_file(value)
    except UploadError as exc:
        raise error(str(exc)) from None
    return value
