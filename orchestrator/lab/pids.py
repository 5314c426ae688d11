"""Finding and stopping the lab's processes: by pid, by namespace, by account."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

from .tools import ip


def alive(pid: int) -> bool:
    """Running, as opposed to gone or a zombie (which some init processes are slow to reap)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    state = next((line.split()[1] for line in status.splitlines() if line.startswith("State:")), "")
    return state not in ("Z", "X")


def stop_pid(pid: int, timeout: float = 3.0) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive(pid):
            return
        time.sleep(0.02)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def stop_all(pids: list[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    for pid in pids:
        stop_pid(pid)


def _netns_pids(netns: str) -> list[int]:
    return [int(p) for p in ip("netns", "pids", netns, check=False).stdout.split()]


def uid_pids(uid: int) -> list[int]:
    """Every live process whose real uid is ``uid``."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            status = Path(f"/proc/{entry}/status").read_text()
        except OSError:
            continue
        uid_line = next((line for line in status.splitlines() if line.startswith("Uid:")), "")
        if uid_line.split()[1:2] == [str(uid)] and alive(int(entry)):
            pids.append(int(entry))
    return pids


def stop_namespace(netns: str, removed: list[str]) -> None:
    """Everything still running in the namespace: sshd, its sessions, agents left behind."""
    pids = _netns_pids(netns)
    stop_all(pids)
    removed.extend(f"process {pid} in {netns}" for pid in pids)
