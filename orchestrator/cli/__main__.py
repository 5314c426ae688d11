"""`python -m orchestrator.cli`, the same as `orchestrate`."""

import sys

from .commands import main

sys.exit(main())
