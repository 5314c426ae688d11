"""`python -m orchestrator.cli`, the same as `orchestrate`."""

import sys

from .entry import main

sys.exit(main())
