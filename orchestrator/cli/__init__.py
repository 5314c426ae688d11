"""The `orchestrate` command: argument parsing, terminal output and progress, and the one place
where errors become exit statuses. The only part of the package that prints."""

from .commands import build_parser, main

__all__ = ["build_parser", "main"]
