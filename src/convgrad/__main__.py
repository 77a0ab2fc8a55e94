"""``python -m convgrad``: the same as the ``convgrad`` command."""

import sys

from .cli import main

sys.exit(main())
