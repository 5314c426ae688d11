"""status.json (layout.STATUS): what a run came to, so that its folder says whether it measured
anything and, if it stopped, where and why. The run writes it when it starts (`running`) and
when it ends, whole or not at all (durable.write_atomic); a resumed run writes it again.

    {"format": 1, "state": "stopped", "measured": false, "stopped_at": "connect",
     "reason": "cannot reach: ...", "cells": {"planned": 8, "ok": 0, "failed": 0, "degraded": 0},
     "updated": "2026-01-01T00:00:00Z"}

`state` is running, finished (every planned cell has a row), partial (the session ended, but
pairs left out with --pairs still have cells to run), stopped (an error: `stopped_at` is the
stage, `reason` the error) or interrupted (a signal, named in `reason`). `cells` counts the rows
of results.csv by status, over the whole run; `measured` is whether there is any. A run on
several pairs adds `pairs`: each pair's own state, stage, reason and counts.

Read back (`read`), the file is input like any other: a run folder may come from anywhere, so
it is held to this shape, size and alphabet, and anything else is a ResultsError naming it.
results.csv stays the truth about rows; status.json says why there are none, and how the last
session ended.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import layout
from .durable import write_atomic
from .results import ResultsError, read_results

FORMAT = 1
STATES = ("running", "finished", "partial", "stopped", "interrupted")
# Where a run can stop, in the order a pair goes through them; `pairs`: several pairs stopped at
# different stages (each one's is under `pairs`); `setup`: before any pair began.
STAGES = ("setup", "connect", "lock", "leftovers", "preflight", "deploy", "data_path", "facts", "cells", "pairs")
COUNTS = ("ok", "failed", "degraded")
MAX_BYTES = 256 * 1024
MAX_REASON = 16 * 1024
# A reason is an error message: its lines, and nothing that could drive a terminal.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_PAIR_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,31}")
_TIMESTAMP = re.compile(r"\d{8}T\d{6}Z|\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")


@dataclass(frozen=True)
class Counts:
    planned: int = 0
    ok: int = 0
    failed: int = 0
    degraded: int = 0

    @property
    def rows(self) -> int:
        return self.ok + self.failed + self.degraded

    def to_json(self) -> dict[str, int]:
        return {"planned": self.planned, "ok": self.ok, "failed": self.failed, "degraded": self.degraded}


def written_reason(reason: str | None) -> str | None:
    """A reason as the file holds it, within what the reader accepts: control characters (a remote
    tool's escape codes) become spaces, and a reason longer than MAX_REASON keeps its start."""
    if reason is None:
        return None
    text = _CONTROL.sub(" ", reason)
    return text if len(text) <= MAX_REASON else text[:MAX_REASON - 1] + "…"


@dataclass(frozen=True)
class PairStatus:
    state: str
    counts: Counts
    stopped_at: str | None = None
    reason: str | None = None

    @property
    def measured(self) -> bool:
        return self.counts.rows > 0

    def to_json(self) -> dict[str, Any]:
        return {"state": self.state, "measured": self.measured, "stopped_at": self.stopped_at,
                "reason": written_reason(self.reason), "cells": self.counts.to_json()}


@dataclass(frozen=True)
class RunStatus:
    state: str
    counts: Counts
    stopped_at: str | None = None
    reason: str | None = None
    pairs: dict[str, PairStatus] = field(default_factory=dict)  # only for a run on several pairs
    updated: str = ""

    @property
    def measured(self) -> bool:
        return self.counts.rows > 0

    def to_json(self) -> dict[str, Any]:
        doc = {"format": FORMAT, "state": self.state, "measured": self.measured, "stopped_at": self.stopped_at,
               "reason": written_reason(self.reason), "cells": self.counts.to_json(),
               "updated": self.updated or f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%dT%H:%M:%SZ}"}
        if self.pairs:
            doc["pairs"] = {name: pair.to_json() for name, pair in self.pairs.items()}
        return doc

    def why_nothing(self) -> str:
        """Why a run with no rows has none, in a phrase."""
        if self.state == "stopped":
            return f"it stopped at {self.stopped_at}: {self.reason}"
        if self.state == "interrupted":
            return f"it was interrupted ({self.reason}) before any cell finished"
        if self.state == "running":
            return "no cell has finished yet (it is still running, or was killed)"
        return f"it ended {self.state} without a row"


def write(run_dir: Path, status: RunStatus, resume: Path | None = None) -> None:
    write_atomic(Path(run_dir) / layout.STATUS, json.dumps(status.to_json(), indent=2) + "\n", resume)


def counts_by_pair(run_dir: Path) -> dict[str, Counts]:
    """The rows of results.csv by pair and status (planned left 0: the caller knows the plan)."""
    path = Path(run_dir) / layout.RESULTS
    if not path.is_file() or path.stat().st_size == 0:
        return {}
    frame = read_results(path)
    found: dict[str, dict[str, int]] = {}
    for (pair, status), n in frame.groupby([frame["pair"].astype(str), frame["status"].astype(str)]).size().items():
        found.setdefault(str(pair), {})[str(status)] = int(n)
    return {pair: Counts(0, *(by.get(k, 0) for k in COUNTS)) for pair, by in found.items()}


# ---------------------------------------------------------------- read back, as untrusted input


def read(run_dir: Path) -> RunStatus | None:
    """The run folder's status.json, checked; None when there is none (a run from before it was
    written). A file of another shape is a ResultsError that names it."""
    path = Path(run_dir) / layout.STATUS
    if not path.exists() and not path.is_symlink():
        return None
    try:
        if not path.is_file() or path.is_symlink():
            raise ValueError("not a regular file")
        with path.open("rb") as fh:
            data = fh.read(MAX_BYTES + 1)
        if len(data) > MAX_BYTES:
            raise ValueError(f"larger than {MAX_BYTES} bytes")
        doc = json.loads(data.decode("utf-8"))
        return _status(doc)
    except OSError as exc:
        raise ResultsError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except (ValueError, TypeError, KeyError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise ResultsError(f"{path}: not a run status this orchestrate writes: {exc}") from None


def _keys(doc: Any, where: str, required: set[str], optional: set[str] = frozenset()) -> dict[str, Any]:
    if not isinstance(doc, dict):
        raise ValueError(f"{where}: expected an object")
    missing, unknown = required - doc.keys(), doc.keys() - required - optional
    if missing or unknown:
        raise ValueError(f"{where}: " + "; ".join(
            ([f"missing {', '.join(sorted(missing))}"] if missing else []) +
            ([f"unknown {', '.join(sorted(map(str, unknown)))}"] if unknown else [])))
    return doc


def _choice(value: Any, allowed: tuple[str, ...], where: str, nullable: bool = False) -> str | None:
    if value is None and nullable:
        return None
    if not isinstance(value, str) or value not in allowed:
        raise ValueError(f"{where}: {value!r} is not one of {', '.join(allowed)}")
    return value


def _reason(value: Any, where: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > MAX_REASON or _CONTROL.search(value):
        raise ValueError(f"{where}: expected text of at most {MAX_REASON} characters without control characters")
    return value


def _counts(doc: Any, where: str) -> Counts:
    doc = _keys(doc, where, {"planned", *COUNTS})
    for key, value in doc.items():
        if type(value) is not int or not 0 <= value < 2**31:
            raise ValueError(f"{where}.{key}: expected a count, got {value!r}")
    return Counts(doc["planned"], *(doc[k] for k in COUNTS))


def _stop(doc: dict[str, Any], where: str, counts: Counts) -> tuple[str, str | None, str | None]:
    state = _choice(doc["state"], STATES, f"{where}state")
    stopped_at = _choice(doc["stopped_at"], STAGES, f"{where}stopped_at", nullable=True)
    reason = _reason(doc["reason"], f"{where}reason")
    if type(doc["measured"]) is not bool or doc["measured"] != (counts.rows > 0):
        raise ValueError(f"{where}measured: {doc['measured']!r} does not match its cells' counts")
    if (state == "stopped") != (stopped_at is not None):
        raise ValueError(f"{where}stopped_at: given exactly when the state is stopped")
    return state, stopped_at, reason  # type: ignore[return-value]


def _status(doc: Any) -> RunStatus:
    doc = _keys(doc, "status", {"format", "state", "measured", "stopped_at", "reason", "cells", "updated"}, {"pairs"})
    if doc["format"] != FORMAT or type(doc["format"]) is not int:
        raise ValueError(f"format {doc['format']!r}; this orchestrate reads format {FORMAT}")
    if not isinstance(doc["updated"], str) or not _TIMESTAMP.fullmatch(doc["updated"]):
        raise ValueError(f"updated: {doc['updated']!r} is not a UTC time")
    counts = _counts(doc["cells"], "cells")
    state, stopped_at, reason = _stop(doc, "", counts)
    pairs: dict[str, PairStatus] = {}
    given = doc.get("pairs", {})
    if not isinstance(given, dict):
        raise ValueError("pairs: expected an object")
    for name, pair in given.items():
        if not isinstance(name, str) or not _PAIR_NAME.fullmatch(name):
            raise ValueError(f"pairs: {name!r} is not a pair name")
        pair = _keys(pair, f"pairs.{name}", {"state", "measured", "stopped_at", "reason", "cells"})
        pair_counts = _counts(pair["cells"], f"pairs.{name}.cells")
        pair_state, pair_stopped_at, pair_reason = _stop(pair, f"pairs.{name}.", pair_counts)
        pairs[name] = PairStatus(pair_state, pair_counts, pair_stopped_at, pair_reason)
    return RunStatus(state, counts, stopped_at, reason, pairs, doc["updated"])
