"""The headless CLI: every page action from a terminal, a notebook's shell or a CI job, writing
the same runs the pages read.

    ragbench loop data/sample/loop.toml                    # the whole loop from one config file
    ragbench ingest docs/*.pdf --name handbook              # or: python -m core ingest ...

`ragbench --help` lists every command. Results go to stdout as one JSON object per line and a
readable table to stderr (`--format table`: the table on stdout, no JSON). Exit codes: 0 success,
1 a stage failed (the message says what, what was found and the fix), 2 bad usage or config,
130 interrupted. A refused command leaves no run behind.
"""

from core.cli.main import main

__all__ = ["main"]
