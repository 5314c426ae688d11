"""Writing run files so that a full disk or an I/O error never leaves a half-written or empty
file behind, and is reported as a DiskError that says which file and how much room is left."""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from pathlib import Path

from ..errors import DiskError

# errno values that mean "this machine's disk", as opposed to a bug or a missing folder.
DISK_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS, errno.EFBIG})


def _free_space(path: Path) -> str:
    for place in (path, *path.parents):
        try:
            usage = shutil.disk_usage(place)
        except OSError:
            continue
        return f"{usage.free / 1e6:.1f} MB free of {usage.total / 1e6:.1f} MB"
    return "free space unknown"


def disk_error(path: str | Path, exc: OSError, resume: Path | None = None, redo: str | None = None) -> DiskError:
    """The error a user sees: which file, why, how much room is left, and how to finish."""
    path = Path(path)
    why = exc.strerror or str(exc)
    message = f"{path}: cannot write: {why} ({_free_space(path.parent)} there)"
    if resume is not None:
        message += f". Finished cells are kept; once there is room: orchestrate run --resume {resume}"
    elif redo:
        message += f". Once there is room: {redo}"
    return DiskError(message)


def write_atomic(path: str | Path, data: str | bytes, resume: Path | None = None, redo: str | None = None) -> None:
    """`path` holds all of `data` or is left as it was: a temporary file beside it, fsynced,
    then renamed over it."""
    path = Path(path)
    payload = data.encode() if isinstance(data, str) else data
    tmp: str | None = None
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as fh:
            fh.write(payload)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        tmp = None
    except OSError as exc:
        raise disk_error(path, exc, resume, redo) from None
    finally:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)


def append_whole(path: Path, payload: bytes, resume: Path | None = None) -> None:
    """Append `payload` (whole lines) and fsync, or leave the file as it was: on a write error the
    file is cut back to its old length, so no half row is ever left (a crash mid-write leaves a
    torn tail, which `results.repair_torn_tail` sets aside on the next start)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    except OSError as exc:
        raise disk_error(path, exc, resume) from None
    try:
        size = os.fstat(fd).st_size
        try:
            written = 0
            while written < len(payload):
                written += os.write(fd, payload[written:])
            os.fsync(fd)
        except OSError as exc:
            try:
                os.ftruncate(fd, size)
                os.fsync(fd)
            except OSError:
                pass
            raise disk_error(path, exc, resume) from None
    finally:
        os.close(fd)
