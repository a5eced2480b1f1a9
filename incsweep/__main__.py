"""``python -m incsweep``: the console script."""

import sys

from incsweep.study.cli import main

sys.exit(main())
