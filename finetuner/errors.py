"""Exceptions raised for problems a user can fix: bad data, bad settings, an unavailable model.

Every message says what is wrong, where, and how to fix it. The CLI turns them into exit code 2 and
one line; the app shows them as an error message.
"""


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
