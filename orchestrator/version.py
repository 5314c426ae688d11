"""orchestrate's version: saved with every run's host facts and printed by `orchestrate --version`."""

__version__ = "0.1.0"
