"""reproduces.json (layout.ORIGIN): the run a reproduced run reproduces, written by `orchestrate
reproduce` into the new run's folder before any cell runs, and read back by `orchestrate runs`.

    {"format": 1, "run_id": "20261206T023809Z-labfull-87e3", "path": "/abs/results/20261206T023809Z-labfull-87e3",
     "pairs": {"default": "default"}, "orchestrate_version": "0.1.0", "agent_hash": "05162aad8195e99f"}

`pairs` maps each of the original's pairs to the new run's pair that reproduced it;
`orchestrate_version` and `agent_hash` are the original's (its host facts), null when unknown.
Read back, the file is untrusted input like status.json (runstatus.py): anything of another
shape, size or alphabet is a ResultsError naming it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import layout
from .durable import write_atomic
from .results import ResultsError

FORMAT = 1
MAX_BYTES = 64 * 1024
# A run id is its folder's name, which a user may have renamed: any name but . and .., without
# a slash or a control character.
_RUN_ID = re.compile(r"(?!\.\.?\Z)[^/\x00-\x1f\x7f-\x9f]{1,255}")
_PAIR_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,31}")
_VERSION = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}")
_HASH = re.compile(r"[0-9a-f]{8,64}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
MAX_PATH = 4096


@dataclass(frozen=True)
class Origin:
    run_id: str
    path: str
    pairs: dict[str, str]
    orchestrate_version: str | None = None
    agent_hash: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"format": FORMAT, "run_id": self.run_id, "path": self.path, "pairs": dict(self.pairs),
                "orchestrate_version": self.orchestrate_version, "agent_hash": self.agent_hash}


def check(origin: Origin) -> None:
    """ValueError naming the key when the reader would refuse this record."""
    _check(origin.to_json())


def write(run_dir: Path, origin: Origin) -> None:
    check(origin)  # what is written is what the reader accepts
    write_atomic(Path(run_dir) / layout.ORIGIN, json.dumps(origin.to_json(), indent=2) + "\n", Path(run_dir))


def read(run_dir: Path) -> Origin | None:
    """The run's reproduces.json, checked; None when there is none (a run that reproduces none)."""
    path = Path(run_dir) / layout.ORIGIN
    if not path.exists() and not path.is_symlink():
        return None
    try:
        if path.is_symlink() or not path.is_file():
            raise ValueError("not a regular file")
        with path.open("rb") as fh:
            data = fh.read(MAX_BYTES + 1)
        if len(data) > MAX_BYTES:
            raise ValueError(f"larger than {MAX_BYTES} bytes")
        return _check(json.loads(data.decode("utf-8")))
    except OSError as exc:
        raise ResultsError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except (ValueError, TypeError, KeyError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise ResultsError(f"{path}: not a record of a reproduced run that this orchestrate writes: {exc}") from None


def _text(value: Any, pattern: re.Pattern[str], key: str, nullable: bool = False) -> str | None:
    if value is None and nullable:
        return None
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise ValueError(f"{key}: {str(value)[:80]!r} is not what orchestrate writes there")
    return value


def _check(doc: Any) -> Origin:
    if not isinstance(doc, dict):
        raise ValueError("expected an object")
    keys = {"format", "run_id", "path", "pairs", "orchestrate_version", "agent_hash"}
    if doc.keys() != keys:
        missing, unknown = keys - doc.keys(), doc.keys() - keys
        raise ValueError("; ".join(([f"missing {', '.join(sorted(missing))}"] if missing else []) +
                                   ([f"unknown {', '.join(sorted(map(str, unknown)))}"] if unknown else [])))
    if type(doc["format"]) is not int or doc["format"] != FORMAT:
        raise ValueError(f"format {doc['format']!r}; this orchestrate reads format {FORMAT}")
    path = doc["path"]
    if not isinstance(path, str) or not path or len(path) > MAX_PATH or _CONTROL.search(path):
        raise ValueError("path: expected a folder's path without control characters")
    pairs = doc["pairs"]
    if not isinstance(pairs, dict) or not pairs:
        raise ValueError("pairs: expected an object of pair names")
    for old, new in pairs.items():
        _text(old, _PAIR_NAME, "pairs")
        _text(new, _PAIR_NAME, f"pairs.{old}")
    return Origin(_text(doc["run_id"], _RUN_ID, "run_id"), path, dict(pairs),  # type: ignore[arg-type]
                  _text(doc["orchestrate_version"], _VERSION, "orchestrate_version", nullable=True),
                  _text(doc["agent_hash"], _HASH, "agent_hash", nullable=True))
