"""The `orchestrate` command: argument parsing, terminal output and progress, and the one place
where errors become exit statuses. The only part of the package that prints.

- `parser.py`    build_parser: the commands, their options, --help's text, completion hints.
- `commands.py`  one handler per command (cmd_run, cmd_check, ...): the library's work, printed.
- `terminal.py`  where a command writes, the run's progress bar, and the tables it prints.
- `entry.py`     main(): runs a command, and turns what it raises into the exit status.
"""

from .entry import main
from .parser import build_parser

__all__ = ["build_parser", "main"]
