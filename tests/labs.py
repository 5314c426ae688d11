"""The namespace lab as a test fixture: built fresh (after removing what an earlier, killed
session may have left), handed to the tests, and removed whatever happens."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path

from orchestrator import lab

from .conftest import require_root, require_tool


@contextlib.contextmanager
def running_lab(folder: Path, prefix: str, tools: Sequence[str] = (), **options) -> Iterator[tuple[Path, lab.LabStatus]]:
    """(the lab's inventory, its status) for a lab with these LabOptions."""
    require_root()
    for tool in ("ip", "ssh-keygen", "cc", "perf", *tools):
        require_tool(tool)
    opts = lab.LabOptions(prefix=prefix, inventory_path=folder / "lab-inventory.yml", **options)
    lab.down(opts)
    try:
        status = lab.up(opts)
        yield opts.resolved_inventory_path, status
    finally:
        lab.down(opts)
