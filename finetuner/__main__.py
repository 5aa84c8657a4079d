"""``python -m finetuner``: the command line (see :mod:`finetuner.cli`)."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
