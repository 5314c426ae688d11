"""The namespace lab as a test fixture: built fresh (after removing what an earlier, killed
session may have left), handed to the tests, and removed whatever happens."""

from __future__ import annotations

import contextlib
import subprocess
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


def namespace_processes(namespaces: Sequence[str]) -> list[tuple[str, int, list[str]]]:
    """(namespace, pid, argv) of every live process in these namespaces."""
    found = []
    for namespace in namespaces:
        pids = subprocess.run(["ip", "netns", "pids", namespace], capture_output=True, text=True).stdout.split()
        for pid in pids:
            try:
                argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
            except OSError:
                continue
            if argv and argv[0]:  # a zombie has an empty command line
                found.append((namespace, int(pid), argv))
    return found
