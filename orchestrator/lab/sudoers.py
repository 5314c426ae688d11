"""The sudo rule for perf (``--sudo-perf``): a sudoers drop-in that lets the lab's account run
perf, and only perf, without a password; checked by visudo before sudo can read it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
from pathlib import Path

from ..errors import LabError
from .tools import run, tool

_SUDOERS_MARK = "# orchestrate lab {prefix}:"
SUDOERS_DIR = Path("/etc/sudoers.d")
# Debian's default secure_path: where `sudo perf` finds perf, so where the rule must point.
SUDO_SECURE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def sudoers_path(prefix: str) -> Path:
    # No '.' in the name: sudo skips files in sudoers.d whose names contain one.
    return SUDOERS_DIR / f"orchestrate-lab-{prefix}"


def perf_path() -> str:
    # The rule names the path sudo finds for `perf` on its secure_path; sudo matches the
    # command by that path's inode, so a wrapper script there (Debian's) or a symlink works.
    path = shutil.which("perf", path=SUDO_SECURE_PATH)
    if path is None:
        raise LabError("--sudo-perf needs perf; install the Debian package linux-perf")
    return path


def sudoers_text(prefix: str, user: str, perf: str) -> str:
    return (
        f"{_SUDOERS_MARK.format(prefix=prefix)} {user} may run perf, and only perf, as root without a password.\n"
        "# Written by `orchestrate lab up`; `orchestrate lab down` removes it.\n"
        f"{user} ALL=(root) NOPASSWD: {perf}\n"
    )


def is_our_sudoers(path: Path, prefix: str) -> bool:
    try:
        with path.open() as f:
            return f.readline().startswith(_SUDOERS_MARK.format(prefix=prefix) + " ")
    except OSError:
        return False


def ensure_sudoers(prefix: str, text: str) -> None:
    path = sudoers_path(prefix)
    if path.exists() and not is_our_sudoers(path, prefix):
        raise LabError(f"{path} exists and was not written by this lab; remove it or use another prefix")
    with contextlib.suppress(OSError):
        if path.read_text() == text and stat.S_IMODE(path.stat().st_mode) == 0o440:
            return
    visudo = tool("visudo")
    tool("sudo")
    SUDOERS_DIR.mkdir(mode=0o750, exist_ok=True)
    # A name with a '.' is skipped by sudo, so a half-written file is never read.
    tmp = SUDOERS_DIR / f".orchestrate-lab-{prefix}.tmp"
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o440)
    with os.fdopen(fd, "w") as f:
        os.fchmod(f.fileno(), 0o440)
        f.write(text)
    proc = run([visudo, "-cf", str(tmp)], check=False)
    if proc.returncode != 0:
        tmp.unlink(missing_ok=True)
        raise LabError(f"visudo rejected the lab's sudoers rule: {(proc.stdout + proc.stderr).strip()}")
    tmp.replace(path)


def remove_sudoers(prefix: str, removed: list[str]) -> None:
    (SUDOERS_DIR / f".orchestrate-lab-{prefix}.tmp").unlink(missing_ok=True)
    path = sudoers_path(prefix)
    if path.exists() and is_our_sudoers(path, prefix):
        path.unlink()
        removed.append(f"file {path}")
