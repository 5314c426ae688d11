"""Rows of `results.csv` (docs/results-schema.md): built from a cell's raw files, appended durably.

Column order is fixed: the schema's columns in `SCHEMA_COLUMNS` order, then perf columns
sorted by role, event and then the event's `_run_pct`, then any other column, sorted, and
last `format_version` (FORMAT_VERSION). `read_results` is the file's one reader.

Empty means "not measured or not supported", in the file and in memory (None when building,
NaN/<NA> when read back), never 0. Integers are written as integers and floats always in
positional notation, so no count ever appears as `2.1e+09`.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import os
import re
import typing
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ..experiment import config, dimensions, iperf3
from . import hostcounters, stall, tcpinfo, zerocopy
from .agentjson import AgentDocument
from ..errors import ExitStatus, FormatVersionError, OrchestrateError
from .durable import append_whole, disk_error, write_atomic
from .perfstat import Counter, column_name
from ..roles import ROLES, measuring_role, stream_roles

IDENTITY_COLUMNS = dimensions.IDENTITY_COLUMNS
MEASURED_COLUMNS = (
    "status", "error", "warmup_s", "duration_s", "bytes_sent", "bytes_received",
    "window_bytes", "throughput_gbps", "messages_per_s", "send_calls",
    "server_cpu_s", "client_cpu_s", "server_user_s", "server_sys_s", "client_user_s",
    "client_sys_s", "server_voluntary_cs", "server_involuntary_cs", "client_voluntary_cs",
    "client_involuntary_cs",
    "zerocopy_sends", "zerocopy_notifications", "zerocopy_completed_sends",
    "zerocopy_copied_sends", "zerocopy_enobufs", "zerocopy_outstanding",
    "zerocopy_copied_fraction", "receive_bytes_mapped", "receive_mapped_fraction",
    "transactions", "transactions_per_s", "latency_mean_us", "latency_p50_us",
    "latency_p90_us", "latency_p99_us", "latency_max_us",
    "server_perf_counts", "client_perf_counts",
    *tcpinfo.COLUMNS,
)  # fmt: skip
SCHEMA_COLUMNS = IDENTITY_COLUMNS + MEASURED_COLUMNS
# results.csv's format (docs/results-schema.md, "Format versions"): the file's last column, the
# same in every row, written by ResultsTable; raised when the meaning or typing of a column
# changes. A row without it (written before versions were) is version 1.
FORMAT_VERSION = 1
FORMAT_COLUMN = "format_version"
# What every reader of results.csv needs: a file without them is not one.
REQUIRED_COLUMNS = dimensions.REQUIRED_COLUMNS
# What analysis (the report, compare) needs besides: without its throughput every figure is blank.
ANALYSIS_COLUMNS = (*REQUIRED_COLUMNS, "throughput_gbps")

# How read_results types the schema's columns; perf columns are inferred from their text.
_INT_COLUMNS = dimensions.identity_columns_of(int) | frozenset({
    "bytes_sent", "bytes_received", "window_bytes", "send_calls", "server_voluntary_cs",
    "server_involuntary_cs", "client_voluntary_cs", "client_involuntary_cs",
    "zerocopy_sends", "zerocopy_notifications", "zerocopy_completed_sends",
    "zerocopy_copied_sends", "zerocopy_enobufs", "zerocopy_outstanding", "transactions",
    "receive_bytes_mapped", *tcpinfo.INT_COLUMNS, FORMAT_COLUMN,
})  # fmt: skip
_BOOL_COLUMNS = dimensions.identity_columns_of(bool) | frozenset({"host_shared_kernel"})
_TEXT_COLUMNS = dimensions.identity_columns_of(str) | frozenset({
    "status", "error",
    "server_perf_counts", "client_perf_counts",
})  # fmt: skip
# What a role's perf counts cover (perfstat.Reach): `user+kernel`, or `user` when perf could
# count user space only. Empty when perf did not run or counted nothing.
PERF_COUNTS = ("user+kernel", "user")
_PERF_COLUMN = re.compile(r"^(server|client)_(.+?)(_run_pct)?\Z")
_INTEGER_TEXT = re.compile(r"^-?\d+\Z")

Row = dict[str, object]


class ResultsError(OrchestrateError):
    """A run folder's file that cannot be read as orchestrate writes it: a results.csv that is
    missing, empty or hand-edited into rows no run writes, a config.yml or host facts that do
    not parse. Bad input, like a bad experiment file: exit status 2."""

    exit_code = ExitStatus.BAD_ARGUMENT


def perf_columns(role: str, counters: Mapping[str, Counter]) -> Row:
    row: Row = {}
    for counter in counters.values():
        name = f"{role}_{column_name(counter.name)}"
        if name in row:
            raise ResultsError(f"two {role} perf events share the column {name!r}")
        row[name] = counter.value
        row[f"{name}_run_pct"] = counter.run_pct
    return row


def _rusage_columns(role: str, agent: AgentDocument | None) -> Row:
    usage = agent.rusage if agent is not None else None
    if usage is None:
        return {}
    return {
        f"{role}_cpu_s": round(usage.user_s + usage.sys_s, 6),
        f"{role}_user_s": usage.user_s,
        f"{role}_sys_s": usage.sys_s,
        f"{role}_voluntary_cs": usage.voluntary_ctxt_switches,
        f"{role}_involuntary_cs": usage.involuntary_ctxt_switches,
    }


def _agent_problems(role: str, agent: AgentDocument | None, cell: Mapping[str, object]) -> list[str]:
    if agent is None:
        return [f"no {role} agent output"]
    if agent.status == "error":
        return [f"{role} agent: {agent.error}"]
    expected = dict(cell)
    if isinstance(cell.get("fields"), int) and isinstance(cell.get("message_size"), int):
        # The agent splits a message into at most one field per byte (agents/README.md).
        expected["fields"] = min(cell["fields"], cell["message_size"])
    problems = []
    for key in (*dimensions.BASIC, "fields", "sender"):  # what the agent echoes back of its cell
        if key in expected and getattr(agent, key) != expected[key]:
            problems.append(
                f"{role} agent ran {key}={getattr(agent, key)!r}, the cell has {expected[key]!r}"
            )
    return problems


def _usable(agent: AgentDocument | None) -> AgentDocument | None:
    """The report if its measured sections are there (ok documents always have them)."""
    if agent is None or agent.window is None or agent.total is None:
        return None
    return agent


def _sent_columns(sender: AgentDocument) -> Row:
    """What the side that sends the data that counts put on the wire: all its life's bytes, and
    the send calls of its measured window."""
    assert sender.total is not None and sender.window is not None
    return {"bytes_sent": sender.total.bytes_sent, "send_calls": sender.window.send_calls}


def _stream_columns(sender: AgentDocument | None, receiver: AgentDocument | None) -> Row:
    row: Row = _sent_columns(sender) if sender is not None else {}
    if receiver is not None:
        assert receiver.total is not None
        row["bytes_received"] = receiver.total.bytes_received
        row.update(_window_columns(receiver))
    return row


def _window_columns(measurer: AgentDocument) -> Row:
    """The measured window of the side that receives the data that counts: its length, its
    bytes, and the rates over its own measured seconds (never the nominal duration)."""
    assert measurer.window is not None
    seconds = measurer.window.seconds
    row: Row = {"duration_s": seconds, "window_bytes": measurer.window.bytes_received}
    if seconds > 0:
        row["throughput_gbps"] = measurer.window.bytes_received * 8 / seconds / 1e9
        row["messages_per_s"] = measurer.window.messages_received / seconds
    return row


def _rr_columns(server: AgentDocument | None, client: AgentDocument | None) -> Row:
    row: Row = {}
    if client is not None:
        row.update(_sent_columns(client))
        row.update(_window_columns(client))
        if client.rr is not None:
            row["transactions"] = client.rr.transactions
            row["transactions_per_s"] = client.rr.transactions_per_s
            latency = client.rr.latency_us
            if latency is not None:
                row["latency_mean_us"] = latency.mean
                row["latency_p50_us"] = latency.p50
                row["latency_p90_us"] = latency.p90
                row["latency_p99_us"] = latency.p99
                row["latency_max_us"] = latency.max
    if server is not None:
        assert server.total is not None
        row["bytes_received"] = server.total.bytes_received
    return row


def _zerocopy_columns(agent: AgentDocument | None) -> Row:
    zc = agent.zerocopy if agent is not None else None
    if zc is None:
        return {}
    return {
        "zerocopy_sends": zc.sends,
        "zerocopy_notifications": zc.notifications,
        "zerocopy_completed_sends": zc.completed_sends,
        "zerocopy_copied_sends": zc.copied_sends,
        "zerocopy_enobufs": zc.enobufs,
        "zerocopy_outstanding": zc.outstanding_at_end,
        "zerocopy_copied_fraction": (
            zc.copied_sends / zc.completed_sends if zc.completed_sends else None
        ),
    }


def _receive_columns(receiver: AgentDocument | None) -> Row:
    """A zerocopy receiver's mapped bytes and their share of what it received (rows/zerocopy.py's
    receive rule reads the share)."""
    mapped = receiver.receive.mapped if receiver is not None and receiver.receive is not None else None
    if mapped is None:
        return {}
    received = mapped.bytes_mapped + mapped.bytes_read
    return {"receive_bytes_mapped": mapped.bytes_mapped,
            "receive_mapped_fraction": mapped.bytes_mapped / received if received else None}


def _byte_count_problems(
    first: AgentDocument | None, second: AgentDocument | None, first_role: str, second_role: str
) -> list[str]:
    """first's total bytes_sent must equal second's total bytes_received, to the byte."""
    if first is None or second is None:
        return []
    assert first.total is not None and second.total is not None
    sent, received = first.total.bytes_sent, second.total.bytes_received
    if sent == received:
        return []
    return [f"{first_role} sent {sent} bytes but {second_role} received {received}"]


@dataclasses.dataclass(frozen=True)
class MeasurementChecks:
    """What a measurement must show to be `ok` (config `checks:`, docs/results-schema.md)."""

    duration: float  # the configured window, seconds
    window_tolerance: float = 0.05
    min_interval_fraction: float = 0.1
    window_slack: float = 0.1  # seconds; the allowed difference is the larger of this and the tolerance


def measurement_doubts(measurer: AgentDocument | None, checks: MeasurementChecks) -> list[str]:
    """Why a measurement that completed cannot be trusted as it is: a window that is not the
    configured duration (a stall that delayed the last byte, an early end), a stall (a link
    outage, a stopped sender) by stall.py's rules, or a window too short for them to judge: never
    a silent ok. `measurer` is the side
    whose window gives the row's figures: the stream receiver, the rr client."""
    if measurer is None or measurer.window is None or not measurer.threads_detail:
        return []
    doubts = []
    seconds = measurer.window.seconds
    allowed = max(checks.window_tolerance * checks.duration, checks.window_slack)
    if abs(seconds - checks.duration) > allowed:
        doubts.append(f"measured window {seconds:.3f}s, expected {checks.duration:g}s ± {allowed:.3g}s")
    doubts += stall.doubts(measurer, checks.min_interval_fraction)
    return doubts


def cell_row(
    cell: Mapping[str, object],
    server: AgentDocument | None,
    client: AgentDocument | None,
    server_perf: Mapping[str, Counter] | None,
    client_perf: Mapping[str, Counter] | None,
    error: str | None,
    checks: MeasurementChecks | None = None,
    perf_counts: Mapping[str, str | None] | None = None,
) -> Row:
    """One results row: `cell`'s identity and option columns plus what the raw files show.

    Any problem (the `error` passed in, a missing or failed agent, a mismatch between the
    agents and the cell, bytes lost between sender and receiver) makes the row `failed`
    with every problem in `error`; whatever was measured is still filled in. A row with no
    problem whose measurement fails `checks` is `degraded`, with the reasons in `error`.
    `perf_counts` says per role what its perf counts cover (`PERF_COUNTS`), None if nothing.
    """
    problems = [error] if error else []
    problems += _agent_problems("server", server, cell)
    problems += _agent_problems("client", client, cell)
    server_ok, client_ok = _usable(server), _usable(client)

    row: Row = {key: cell.get(key) for key in IDENTITY_COLUMNS}
    row["warmup_s"] = cell.get("warmup_s")
    by_role = {"server": server_ok, "client": client_ok}
    measurer = by_role[measuring_role(cell.get("workload"), cell.get("sender"))]
    if cell.get("workload") == "rr":
        row.update(_rr_columns(server_ok, client_ok))
        problems += _byte_count_problems(client_ok, server_ok, "client", "server")
        problems += _byte_count_problems(server_ok, client_ok, "server", "client")
        zerocopy_side = client_ok  # the requests: the same side bytes_sent is taken from
        row.update(tcpinfo.columns(client_ok))
    else:
        sender_role, receiver_role = stream_roles(cell.get("sender"))
        sender, receiver = by_role[sender_role], by_role[receiver_role]
        row.update(_stream_columns(sender, receiver))
        problems += _byte_count_problems(sender, receiver, sender_role, receiver_role)
        zerocopy_side = sender
        row.update(tcpinfo.columns(sender))
        if cell.get("receive") == "zerocopy":
            row.update(_receive_columns(receiver))
    if cell.get("mode") in zerocopy.ZERO_COPY_MODES:
        row.update(_zerocopy_columns(zerocopy_side))
    row.update(_rusage_columns("server", server))
    row.update(_rusage_columns("client", client))
    row.update(hostcounters.columns("server", server_ok))
    row.update(hostcounters.columns("client", client_ok))
    if server_ok is not None and client_ok is not None:
        # One kernel under both roles (loopback, the namespace lab): each side's host columns are
        # the whole machine, so adding them would count it twice.
        row["host_shared_kernel"] = hostcounters.same_kernel(server_ok, client_ok)
    if server_perf is not None:
        row.update(perf_columns("server", server_perf))
    if client_perf is not None:
        row.update(perf_columns("client", client_perf))
    for role in ROLES:
        reach = (perf_counts or {}).get(role)
        if reach is not None and reach not in PERF_COUNTS:
            raise ResultsError(f"{role} perf counts {reach!r}: expected one of {', '.join(PERF_COUNTS)}")
        row[f"{role}_perf_counts"] = reach
    doubts = measurement_doubts(measurer, checks) if checks is not None and not problems else []
    row["status"] = "failed" if problems else "degraded" if doubts else "ok"
    row["error"] = "; ".join(problems or doubts) or None
    return {key: row.get(key) for key in order_columns(row)}


def _column_key(name: str) -> tuple[int, object]:
    if name == FORMAT_COLUMN:
        return (3, name)
    if name in SCHEMA_COLUMNS:
        return (0, SCHEMA_COLUMNS.index(name))
    match = _PERF_COLUMN.match(name)
    if match:
        role, event, run_pct = match.groups()
        return (1, (role != "server", event, run_pct is not None))
    return (2, name)


def order_columns(columns: Iterable[str]) -> list[str]:
    """Schema columns first in schema order, then perf columns, then anything else, and
    `format_version` last; all of SCHEMA_COLUMNS is always included."""
    return sorted(set(columns) | set(SCHEMA_COLUMNS), key=_column_key)


def _text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (float, np.floating)):
        if not np.isfinite(value):
            return ""
        # Positional and shortest round-trip; trim="0" keeps a ".0" so a float reads back
        # as a float and an int column never gets a ".0".
        return np.format_float_positional(value, trim="0")
    return str(value)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _record_end(data: bytes) -> int:
    """Where the last whole CSV record of `data` ends: after its last line break that is not
    inside a quoted field (an error message may hold a line break). A line break is inside one
    when an odd number of quotes comes before it (a doubled "" inside a field counts twice, so it
    cancels out); counted from the end, with bytes.count, since a per-byte loop costs seconds on a
    large file."""
    total, after, end = data.count(b'"'), 0, len(data)
    while (newline := data.rfind(b"\n", 0, end)) >= 0:
        after += data.count(b'"', newline, end)
        if (total - after) % 2 == 0:
            return newline + 1
        end = newline
    return 0


def repair_torn_tail(path: str | Path) -> Path | None:
    """A results.csv whose last row was cut short (a full disk, a crash mid-write) loses that
    row, and only that row: it is kept beside the file as `results.csv.torn-<n>` and dropped,
    so the cell counts as not measured and is run again. Returns the kept copy, if any."""
    path = Path(path)
    try:
        data = path.read_bytes() if path.exists() else b""
    except OSError as exc:
        raise ResultsError(f"{path}: cannot read results: {exc.strerror or exc}") from None
    end = _record_end(data)
    if end == len(data):
        return None
    n = 1
    while path.with_name(f"{path.name}.torn-{n}").exists():
        n += 1
    kept = path.with_name(f"{path.name}.torn-{n}")
    try:
        write_atomic(kept, data[end:])
        with path.open("r+b") as fh:
            fh.truncate(end)
            fh.flush()
            os.fsync(fh.fileno())
    except OSError as exc:
        raise disk_error(path, exc) from None
    return kept


class ResultsTable:
    """results.csv, one row appended per finished cell and on disk before `append` returns.

    Each row goes to the file in one write() of the whole line, then fsync; a write that fails
    part-way (ENOSPC) is cut back off, so the file never ends in half a row. A torn last row
    left by a crash is repaired when the table is opened (repair_torn_tail).

    A row that brings columns the file lacks (a new perf event) makes the file be rewritten
    with the union of columns, through a temporary file and an atomic rename.
    """

    def __init__(self, path: str | Path, resume: Path | None = None):
        self.path = Path(path)
        self.resume = resume
        self.columns: list[str] = []
        self.torn = repair_torn_tail(self.path)
        records = _read_whole_records(self.path)  # a row no orchestrate writes is refused before one is added
        self.columns = records.header if records is not None else []

    def append(self, row: Mapping[str, object]) -> None:
        columns = order_columns([*self.columns, *row, FORMAT_COLUMN])
        if self.columns and columns != self.columns:
            self._rewrite(columns)
        new_file = not self.columns
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=columns)
        if new_file:
            writer.writeheader()
        writer.writerow({key: _text(row.get(key)) for key in columns} | {FORMAT_COLUMN: str(FORMAT_VERSION)})
        append_whole(self.path, text.getvalue().encode("utf-8"), self.resume)
        self.columns = columns
        if new_file:
            _fsync_dir(self.path.parent)

    def remove(self, cells: Iterable[str | tuple[str, str]]) -> None:
        """Drop the rows of these cells (to measure them again), through an atomic rewrite. A cell
        is a cell id (of the pair "default") or a (pair, cell_id) tuple."""
        self._rewrite(self.columns, drop={c if isinstance(c, tuple) else (dimensions.DEFAULT_PAIR, c) for c in cells})

    def _rewrite(self, columns: list[str], drop: set[tuple[str, str]] = frozenset()) -> None:  # type: ignore[assignment]
        with self.path.open(newline="", encoding="utf-8") as fh:
            rows = [r for r in csv.DictReader(fh) if (r.get("pair") or dimensions.DEFAULT_PAIR, r.get("cell_id")) not in drop]
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=columns, restval="")
        writer.writeheader()
        writer.writerows(rows)
        write_atomic(self.path, text.getvalue().encode("utf-8"), self.resume)
        try:
            _fsync_dir(self.path.parent)
        except OSError as exc:
            raise disk_error(self.path, exc, self.resume) from None


# ---------------------------------------------------------------- reading: every read is checked

# What a reader may meet in a text column that names a choice; anything else is a hand edit.
STATUSES = ("ok", "failed", "degraded")
_CHOICES: dict[str, tuple[str, ...]] = {
    "status": STATUSES,
    "workload": typing.get_args(config.Workload),
    "mode": (*typing.get_args(config.Mode), iperf3.MODE),
    "sender": ROLES,
    # cellrow.py records "off" when perf did not run.
    "perf_scope": (*typing.get_args(config.Perf.model_fields["scope"].annotation), "off"),
    "server_perf_counts": PERF_COUNTS,
    "client_perf_counts": PERF_COUNTS,
}
# What an ok row always holds: its throughput is what every table, plot and comparison is made of
# (a failed row may lack it: its agent never measured).
_OK_NEEDS = ("throughput_gbps",)
# A decimal number as _text writes it (and a hand may: 1e9); float() alone would also take
# "1_000", " 5" and the words for NaN and infinity.
_NUMBER_TEXT = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")
_NOT_FINITE = frozenset({"nan", "+nan", "-nan", "inf", "+inf", "-inf", "infinity", "+infinity", "-infinity"})
_MAX_PROBLEMS = 10  # named one per line; the rest are counted


@dataclasses.dataclass(frozen=True)
class _Records:
    """results.csv parsed: its header, and each row's fields with the line it starts on."""

    header: list[str]
    lines: list[int]  # 1-based, as an editor numbers them (a quoted field may span lines)
    rows: list[list[str]]


def _parse(path: Path, data: bytes) -> _Records:
    """results.csv's records, each with the line it starts on: pandas' reader gives neither
    lines nor refuses what this does, so the csv module parses and pandas types."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise ResultsError(f"{path}, line {line}: not UTF-8 text ({exc.reason}); results.csv is UTF-8") from None
    reader = csv.reader(io.StringIO(text, newline=""))
    header: list[str] | None = None
    lines: list[int] = []
    rows: list[list[str]] = []
    start = 1
    try:
        for record in reader:
            if record:  # a blank line is no row, as in pandas
                if header is None:
                    header = record
                else:
                    lines.append(start)
                    rows.append(record)
            start = reader.line_num + 1
    except csv.Error as exc:
        raise ResultsError(f"{path}, line {start}: not CSV: {exc}") from None
    if header is None:
        raise ResultsError(f"{path}: empty (no header line, no rows); a run writes it with its first cell's row")
    return _Records(header, lines, rows)


# A whole column joined with line breaks, blanks allowed: one regex pass in C over the column
# instead of one Python call per value (results.csv at 10,000 rows has millions of values).
# (_NUMBER_TEXT without its capturing groups, which make a repeated match several times slower.)
_NUMBER_NC = r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?"
_NUMBER_COLUMN = re.compile(rf"(?:{_NUMBER_NC})?(?:\n(?:{_NUMBER_NC})?)*")
_INTEGER_COLUMN = re.compile(r"(?:-?\d+)?(?:\n(?:-?\d+)?)*")


def _is_numeric_column(name: str, values: Sequence[str]) -> bool:
    """Whether results.csv holds `name` as numbers: the schema's numeric columns, the perf and host
    counter columns (`<role>_*`, but for the NIC's name), and another column whose values all are."""
    if name in SCHEMA_COLUMNS:
        return name not in _TEXT_COLUMNS and name not in _BOOL_COLUMNS
    if name in _BOOL_COLUMNS:
        return False
    if _PERF_COLUMN.match(name) and not name.endswith("_host_nic"):
        return True
    if _NUMBER_COLUMN.fullmatch("\n".join(values)):
        return True
    return all(_NUMBER_TEXT.fullmatch(v) or v.lower() in _NOT_FINITE for v in values if v)


def _column_passes(name: str, values: Sequence[str], numeric: bool) -> bool:
    """True when no value of the column can have a _value_problem, decided over the whole column
    at once; False means "look value by value", not that one has a problem."""
    if name in _BOOL_COLUMNS:
        return {v.lower() for v in set(values)} <= {"", "true", "false"}
    if name in _CHOICES:
        return set(values) <= {"", *_CHOICES[name]}
    if not numeric:
        return True
    joined = "\n".join(values)
    if not (_INTEGER_COLUMN if name in _INT_COLUMNS else _NUMBER_COLUMN).fullmatch(joined):
        return False
    return "_host_" in name or "-" not in joined.replace("e-", "").replace("E-", "")


def _value_problem(name: str, value: str, numeric: bool) -> str | None:
    """Why `value` cannot stand in column `name`, or None. A blank is "not measured": always allowed here."""
    if not value:
        return None
    if name in _BOOL_COLUMNS:
        return None if value.lower() in ("true", "false") else f"{value!r} is not true or false"
    if name in _CHOICES:
        return None if value in _CHOICES[name] else f"{value!r} is not one of {', '.join(_CHOICES[name])}"
    if not numeric:
        return None
    if value.lower() in _NOT_FINITE:
        return f"{value!r} is not a finite number"
    if not _NUMBER_TEXT.fullmatch(value):
        return f"{value!r} is not a number"
    if name in _INT_COLUMNS and not _INTEGER_TEXT.match(value):
        return f"{value!r} is not a whole number"
    # Host counters are deltas of counters a driver may reset; every other figure is a count,
    # a time, a rate or a fraction.
    if value.startswith("-") and float(value) != 0 and "_host_" not in name:
        return f"{value!r} is negative"
    return None


def _problems(records: _Records, required: tuple[str, ...]) -> list[tuple[int, str | None, str]]:
    """(line, column, why) for each thing in results.csv that no orchestrate writes, or that lacks
    a column of `required`."""
    header = records.header
    found: list[tuple[int, str | None, str]] = []
    seen_names: set[str] = set()
    for at, name in enumerate(header):
        if not name:
            found.append((1, f"#{at + 1}", "a column without a name"))
        elif name in seen_names:
            found.append((1, name, "a second column of this name"))
        seen_names.add(name)
    missing = [name for name in required if name not in seen_names]
    if missing:
        found.append((1, None, f"missing column(s) {', '.join(missing)}; every results.csv has them"))
    width = len(header)
    for line, row in zip(records.lines, records.rows):
        if len(row) != width:
            where = header[len(row)] if len(row) < width else f"#{len(row)}"
            found.append((line, where, f"the row has {len(row)} fields, the header {width}"))
    whole = [(line, row) for line, row in zip(records.lines, records.rows) if len(row) == width]
    by_column = list(zip(*(row for _, row in whole))) or [()] * width  # the rows' fields, column by column
    for at, name in enumerate(header):
        values = by_column[at]
        numeric = _is_numeric_column(name, values)
        if _column_passes(name, values, numeric):
            continue
        for line, row in whole:
            why = _value_problem(name, row[at], numeric)
            if why:
                found.append((line, name, why))
    position = {name: header.index(name) for name in seen_names if name}
    for name in REQUIRED_COLUMNS:
        if name in position and name not in _OK_NEEDS:
            for line, row in whole:
                if not row[position[name]]:
                    found.append((line, name, "empty; every row names its cell and its status"))
    if "status" in position:
        for name in _OK_NEEDS:
            if name in position:
                for line, row in whole:
                    if row[position["status"]] == "ok" and not row[position[name]]:
                        found.append((line, name, "empty on an ok row; an ok row has measured it"))
    if "cell_id" in position:
        first: dict[tuple[str, str], int] = {}
        for line, row in whole:
            pair = row[position["pair"]] if "pair" in position else ""
            key = (pair or dimensions.DEFAULT_PAIR, row[position["cell_id"]])
            if key[1] and key in first:
                found.append((line, "cell_id", f"a second row of cell {key[1]} (pair {key[0]}); "
                                               f"the first is on line {first[key]}"))
            first.setdefault(key, line)
    return sorted(found, key=lambda p: p[0])


def _check(path: Path, records: _Records, required: tuple[str, ...] = REQUIRED_COLUMNS) -> None:
    """ResultsError naming the file, and each problem's line and column, unless every row is one
    that orchestrate writes (docs/results-schema.md, "Reading it back")."""
    found = _problems(records, required)
    if not found:
        return
    named = [f"{path}, line {line}" + (f", column {name!r}" if name else "") + f": {why}"
             for line, name, why in found[:_MAX_PROBLEMS]]
    if len(found) > _MAX_PROBLEMS:
        named.append(f"... and {len(found) - _MAX_PROBLEMS} more")
    raise ResultsError("\n".join(named))


def _check_versions(versions: Iterable[str | None], path: Path) -> None:
    """FormatVersionError unless every row is of FORMAT_VERSION (an empty one is version 1)."""
    for version in dict.fromkeys(versions):
        found: int | str = version or "1"
        if isinstance(found, str) and _INTEGER_TEXT.match(found.strip()):
            found = int(found)
        if found != FORMAT_VERSION:
            raise FormatVersionError(path, found, FORMAT_VERSION)


def _version_checked(path: Path, records: _Records) -> _Records:
    if FORMAT_COLUMN in records.header:
        at = records.header.index(FORMAT_COLUMN)
        _check_versions((r[at] if at < len(r) else None for r in records.rows), path)
    return records


# The last file read and checked: (path, a digest of its bytes) and its records. `orchestrate
# report` reads results.csv three times (its format first, then its rows): the same bytes are
# parsed and checked once, and only the columns a later reader requires are looked for again.
_LAST_CHECKED: dict[tuple[str, bytes], _Records] = {}


def _checked_records(path: Path, data: bytes, required: tuple[str, ...] = REQUIRED_COLUMNS) -> _Records:
    key = (str(path), hashlib.blake2b(data, digest_size=16).digest())
    records = _LAST_CHECKED.get(key)
    if records is not None and all(name in records.header for name in required):
        return records
    records = _version_checked(path, _parse(path, data))
    _check(path, records, required)
    _LAST_CHECKED.clear()
    _LAST_CHECKED[key] = records
    return records


def _read_whole_records(path: Path) -> _Records | None:
    """The file's whole records, checked; None when there is no file or it is empty. A torn last
    row (no line break yet) is left out, for repair_torn_tail."""
    try:
        data = path.read_bytes() if path.exists() else b""
    except OSError as exc:
        raise ResultsError(f"{path}: cannot read results: {exc.strerror or exc}") from None
    whole = data[:_record_end(data)]
    if not whole:
        return None
    return _checked_records(path, whole)


def check_format(path: str | Path) -> None:
    """FormatVersionError if results.csv (when there is one) holds rows of another format
    version, ResultsError if a row is not one orchestrate writes (`read_results`). Only whole
    records are read: a torn last row is left for repair_torn_tail."""
    _read_whole_records(Path(path))


def _typed(name: str, values: Sequence[str], numeric: bool) -> pd.Series:
    """A checked column typed as results.csv holds it; a blank is missing (<NA>/NaN), never 0."""
    present = [v for v in values if v]
    if name in _BOOL_COLUMNS:
        return pd.Series([v.lower() == "true" if v else None for v in values], dtype="boolean")
    if not numeric:
        return pd.Series([v or None for v in values], dtype="string")
    is_int_column = name in _INT_COLUMNS or (
        name not in SCHEMA_COLUMNS and not name.endswith("_run_pct") and bool(_INTEGER_COLUMN.fullmatch("\n".join(present)))
    )
    # numpy parses the checked texts in C; a blank is masked (Int64) or NaN (float).
    blank = np.array([not v for v in values], dtype=bool)
    if is_int_column:
        numbers = np.array([v or "0" for v in values], dtype=np.int64)
        return pd.Series(pd.arrays.IntegerArray(numbers, blank))
    numbers = np.array([v or "nan" for v in values], dtype=np.float64)
    return pd.Series(numbers, dtype="float64")


def read_results(path: str | Path, required: tuple[str, ...] = REQUIRED_COLUMNS) -> pd.DataFrame:
    """results.csv as a DataFrame: empty cells are missing (NaN/<NA>), never 0; counts are
    nullable Int64, so they print as 2100000000 and not 2.1e+09. The one reader of the file:
    the run, the CLI, the analysis and the report all read it here.

    Every read checks it against the schema (docs/results-schema.md, "Reading it back"): a row
    orchestrate would not write is a ResultsError naming the file, the line and the column, as is a
    missing, empty or unreadable file, or one without a column of `required` (analysis asks for
    ANALYSIS_COLUMNS); FormatVersionError if another format version wrote it. A file with a
    header and no row (every row dropped for --retry-failed) reads as no rows."""
    path = Path(path)
    if not path.is_file():
        raise ResultsError(f"{path}: no results.csv; is this a run folder?")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ResultsError(f"{path}: cannot read results: {exc.strerror or exc}") from None
    records = _checked_records(path, data, required)
    columns = {}
    by_column = list(zip(*records.rows)) or [()] * len(records.header)  # every row is whole: _check said so
    for at, name in enumerate(records.header):
        values = by_column[at]
        columns[name] = _typed(name, values, _is_numeric_column(name, values))
    frame = pd.DataFrame(columns, columns=records.header, index=pd.RangeIndex(len(records.rows)))
    # A file from before pairs existed ran on the one pair: its rows read as pair "default".
    return dimensions.with_pair(frame)


# ---------------------------------------------------------------- what a run's rows say about it


def _has_rows(path: Path) -> bool:
    return path.exists() and path.stat().st_size > 0


def finished_cells(path: str | Path) -> set[tuple[str, str]]:
    """(pair, cell_id) of every row of results.csv; a row without a pair (a results.csv from
    before pairs existed) is the pair "default"."""
    path = Path(path)
    if not _has_rows(path):
        return set()
    frame = read_results(path)  # its pair column is always filled ("default" for older files)
    return {(str(p), str(c)) for p, c in zip(frame["pair"], frame["cell_id"])}


def row_counts(path: str | Path) -> dict[str, int]:
    """How many rows of results.csv have each status (ok, failed, degraded)."""
    path = Path(path)
    if not _has_rows(path):
        return {}
    return {str(k): int(v) for k, v in read_results(path)["status"].astype(str).value_counts().items()}


def unfinished_cells(path: str | Path, pairs: Iterable[str]) -> list[tuple[str, str]]:
    """(pair, cell_id), sorted, of the rows of these pairs that are not `ok` (failed or
    degraded): what --retry-failed measures again."""
    path = Path(path)
    if not _has_rows(path):
        return []
    frame = read_results(path)
    selected = set(pairs)
    return sorted({(str(p), str(c)) for p, c, status in zip(frame["pair"], frame["cell_id"], frame["status"].astype(str))
                   if status != "ok" and str(p) in selected})
