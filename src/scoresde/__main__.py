"""``python -m scoresde`` (and ``torchrun -m scoresde``) runs the command-line tool."""

import sys

from scoresde.cli.__main__ import main

if __name__ == "__main__":
    sys.exit(main())
