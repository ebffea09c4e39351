"""``python -m asyncsnn``: the same as the ``asyncsnn`` command."""

import sys

from asyncsnn.cli import main

sys.exit(main())
