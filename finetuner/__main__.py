"""``python -m finetuner``: the command line (see :mod:`finetuner.cli`)."""

from .cli import console, main  # noqa: F401  (main: what tests call in-process)

if __name__ == "__main__":
    console()
