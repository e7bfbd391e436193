"""``python -m services.cli``: the same command as ``stancestream``."""

import sys

from services.cli import main

sys.exit(main())
