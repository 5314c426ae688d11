"""A lab's state directory: the record of everything ``up`` made (state.json), written before
each thing is made so that ``down`` finds it all even after a half-finished ``up``, and the lock
that serialises ``up`` and ``down``.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..errors import LabError
from .options import MAX_PAIRS, LabOptions


def _state_file(opts: LabOptions) -> Path:
    return opts.resolved_state_dir / "state.json"


def read_state(opts: LabOptions) -> dict[str, Any] | None:
    try:
        return json.loads(_state_file(opts).read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        raise LabError(f"lab state {_state_file(opts)} is unreadable ({e}); run `orchestrate lab down`") from None


def write_state(opts: LabOptions, state: dict[str, Any]) -> None:
    path = _state_file(opts)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2, sort_keys=True) + "\n")
    tmp.replace(path)


@contextlib.contextmanager
def locked(opts: LabOptions) -> Iterator[None]:
    """Serialise up/down. The lock is on the state dir's parent, so it leaves no file behind."""
    parent = opts.resolved_state_dir.parent
    while True:
        parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(parent, os.O_RDONLY | os.O_DIRECTORY)
        fcntl.flock(fd, fcntl.LOCK_EX)
        # The last lab's down removes the parent; if that happened while we waited, start over.
        with contextlib.suppress(FileNotFoundError):
            if os.stat(parent).st_ino == os.fstat(fd).st_ino:
                break
        os.close(fd)
    try:
        yield
    finally:
        os.close(fd)


def pair_indices(opts: LabOptions, state: dict[str, Any] | None) -> list[int]:
    """Every pair a lab of several has or half has: recorded, asked for, or left on disk."""
    found = {int(name[1:]) for name in (state or {}).get("pairs") or [] if re.fullmatch(r"p[0-9]+", name)}
    if opts.pairs > 1:
        found |= set(range(1, opts.pairs + 1))
    with contextlib.suppress(OSError):
        found |= {int(p.name[1:]) for p in opts.resolved_state_dir.iterdir() if re.fullmatch(r"p[0-9]+", p.name)}
    return sorted(i for i in found if 1 <= i <= MAX_PAIRS)
