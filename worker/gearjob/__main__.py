"""``python -m gearjob``: the same as the ``gearjob`` command."""

import sys

from gearjob.cli import main

sys.exit(main())
