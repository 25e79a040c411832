"""`python -m core`: the headless CLI, the same as the `ragbench` command (core/cli/)."""

import sys

from core.cli import main

sys.exit(main())
