"""Hosts without a C compiler (``--no-compiler``): which compilers this machine has, a mount
namespace script that hides them from an sshd and its sessions, and a check of what a process
can still see.
"""

from __future__ import annotations

import contextlib
import glob
import os
import re
import shlex
import shutil
import stat
from pathlib import Path

from ..errors import LabError
from .tools import run
from .topology import Host

# Compiler drivers hidden on a --no-compiler host: cc, c++, gcc*, g++*, clang*, c89*, c99*,
# tcc and friends, and every cross or versioned name (x86_64-linux-gnu-gcc-12, c89-gcc).
_COMPILER_RE = re.compile(
    r"^(cc|c\+\+|c89|c99|tcc|pcc|icc|icx|icpx|nvcc|gcc|g\+\+|clang|clang\+\+)(-.*)?$"
    r"|^.+-(gcc|g\+\+|clang|clang\+\+)(-.*)?$"
)
# Where drivers live: the PATH directories and LLVM's own bin directories.
_COMPILER_DIRS = ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin")
_COMPILER_DIR_GLOBS = ("/usr/lib/llvm-*/bin",)
# The back ends (cc1, collect2, crt*.o): hidden too, so that no copy of a driver can compile.
_COMPILER_BACKENDS = ("/usr/lib/gcc", "/usr/libexec/gcc", "/usr/lib/gcc-cross")


def compiler_dirs() -> list[str]:
    """Directories that hold compiler drivers on this machine, each once (/bin may be /usr/bin)."""
    seen: set[Path] = set()
    dirs = []
    for d in [*_COMPILER_DIRS, *sorted(p for g in _COMPILER_DIR_GLOBS for p in glob.glob(g))]:
        path = Path(d)
        if path.is_symlink() or not path.is_dir() or path.resolve() in seen:
            continue
        seen.add(path.resolve())
        dirs.append(d)
    return dirs


def compilers_in(directory: str) -> list[str]:
    try:
        return sorted(n for n in os.listdir(directory) if _COMPILER_RE.match(n))
    except OSError:
        return []


def visible_compilers(pid: int) -> list[str]:
    """Compilers a process would find, looked at through its own root (so its mount namespace)."""
    root = f"/proc/{pid}/root"
    found = [f"{d}/{n}" for d in compiler_dirs() for n in compilers_in(root + d)]
    for backend in _COMPILER_BACKENDS:
        with contextlib.suppress(OSError):
            if os.listdir(root + backend):
                found.append(backend)
    return found


def hide_script(host: Host) -> str:
    """A shell script that hides the compilers in a fresh mount namespace, then execs "$0" "$@".

    Each directory with compiler drivers gets a read-only overlay whose upper lower layer holds
    whiteouts (character devices 0/0) for the drivers' names; the back-end directories get an
    empty read-only tmpfs. Everything else in those directories stays as it is.
    """
    layers = host.dir / "hidden"
    shutil.rmtree(layers, ignore_errors=True)
    layers.mkdir(mode=0o700)
    steps = ["set -e"]
    for i, directory in enumerate(compiler_dirs()):
        names = compilers_in(directory)
        if not names:
            continue
        whiteouts = layers / str(i)
        whiteouts.mkdir(mode=0o755)
        for name in names:
            os.mknod(whiteouts / name, stat.S_IFCHR | 0o600, os.makedev(0, 0))
        steps.append(shlex.join(["mount", "-t", "overlay", "-o", f"ro,lowerdir={whiteouts}:{directory}",
                                 "orchestrate-lab-nocc", directory]))
    for backend in _COMPILER_BACKENDS:
        if Path(backend).is_dir():
            steps.append(shlex.join(["mount", "-t", "tmpfs", "-o", "ro,mode=0755,size=4k",
                                     "orchestrate-lab-nocc", backend]))
    steps.append('exec "$0" "$@"')
    return "\n".join(steps)


def check_overlay() -> None:
    try:
        filesystems = Path("/proc/filesystems").read_text().split()
    except OSError:
        filesystems = []
    if "overlay" not in filesystems:
        run(["modprobe", "overlay"], check=False)
        if "overlay" not in Path("/proc/filesystems").read_text().split():
            raise LabError("--no-compiler needs overlayfs, which this kernel lacks (CONFIG_OVERLAY_FS, module overlay)")
