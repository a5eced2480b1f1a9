"""``python -m incsweep``: the console script."""

import sys

from incsweep.cli import main

sys.exit(main())
