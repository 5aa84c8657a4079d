"""Exceptions raised for problems a user can fix: bad data, bad settings, an unavailable model.

Every message says what is wrong, where, and how to fix it. The CLI turns them into exit code 2 and
one line; the app shows them as an error message.
"""

from typing import Optional


class FinetunerError(ValueError):
    """Base class of every user-facing finetuner error."""


class DataError(FinetunerError):
    """The table of texts and labels cannot be used as given."""


class ConfigError(FinetunerError):
    """A training setting is out of range or inconsistent."""


class ModelLoadError(FinetunerError):
    """The requested model cannot be found or loaded."""


class UploadError(DataError):
    """A file handed to the app is not one a user uploaded to it (or one in a folder the operator allows)."""


def first_line(exc: BaseException, limit: Optional[int] = 200) -> str:
    """The first line of an exception's message (at most ``limit`` characters), or its type's name when it has
    none: what a user-facing message quotes of an error from a library."""
    text = str(exc).strip()
    return text.splitlines()[0][:limit] if text else type(exc).__name__


def described(exc: BaseException, limit: Optional[int] = 200) -> str:
    """``"TypeName: first line of the message"`` (``"TypeName"`` when it has none)."""
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0][:limit]}" if text else type(exc).__name__
