"""``python -m locseg`` (and ``torchrun -m locseg``) runs the command line."""

import sys

from locseg.cli import main

sys.exit(main())
