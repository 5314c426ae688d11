"""orchestrate: socket copy-cost experiments across two hosts."""

__version__ = "0.1.0"
