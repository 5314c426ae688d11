"""An iperf3 reference cell's row: its `iperf3 -J` output as a results.csv row, with the same perf
columns as our agents' rows (the commands are run/iperf3.py's; the report's table, report/iperf3.py's)."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from . import layout
from .results import MeasurementChecks, Row, order_columns, perf_columns
from ..roles import ROLES

# `start.version` as iperf3 writes it, kept whole ("iperf 3.12": as text, 3.10 never reads as 3.1).
VERSION = re.compile(r"iperf \d{1,3}\.\d{1,3}(\.\d{1,3})?[a-z0-9+-]{0,16}")


def parse(text: str) -> tuple[Row, dict[str, Any], list[str]]:
    """iperf3 -J output of the client: (measured columns, the test's settings, problems).

    Throughput, bytes and seconds are the receiver's (`end.sum_received`) over the measured
    window (iperf3 leaves the -O warm-up out of its sums); retransmits are the sender's
    (`end.sum_sent.retransmits`), over the same window.
    """
    try:
        data = json.loads(text)
    except ValueError as exc:
        return {}, {}, [f"iperf3 output is not JSON: {exc}"]
    if not isinstance(data, dict):
        return {}, {}, ["iperf3 output is not a JSON object"]
    settings = (data.get("start") or {}).get("test_start") or {}
    if data.get("error"):
        return {}, settings, [f"iperf3: {data['error']}"]
    end = data.get("end") or {}
    received, sent = end.get("sum_received") or {}, end.get("sum_sent") or {}
    seconds, moved = received.get("seconds"), received.get("bytes")
    if not isinstance(seconds, (int, float)) or not isinstance(moved, int):
        return {}, settings, ["iperf3 output has no end.sum_received bytes and seconds"]
    row: Row = {"duration_s": float(seconds), "window_bytes": moved,
                "throughput_gbps": moved * 8 / seconds / 1e9 if seconds > 0 else None}
    if isinstance(sent.get("retransmits"), int):
        row["tcp_retrans"] = sent["retransmits"]
    version = (data.get("start") or {}).get("version")
    if isinstance(version, str) and VERSION.fullmatch(version):  # a remote file's text: only a version
        row["iperf3_version"] = version
    return row, settings, []


def _setting_problems(settings: Mapping[str, Any], cell: Mapping[str, object]) -> list[str]:
    expected = {"blksize": cell.get("message_size"), "num_streams": cell.get("threads"),
                "reverse": 1 if cell.get("sender") == "server" else 0}
    return [f"iperf3 ran {key}={settings.get(key)!r}, the cell has {want!r}"
            for key, want in expected.items() if settings and settings.get(key) != want]


def cell_row(identity: Mapping[str, object], cell_dir: Path, error: str | None,
             perf: Mapping[str, Any], perf_counts: Mapping[str, str | None],
             checks: MeasurementChecks | None) -> Row:
    """A reference cell's results.csv row: identity, iperf3's figures, the same perf columns
    as our agents' rows. failed on any problem; degraded when the window is not `duration`."""
    problems = [error] if error else []
    measured: Row = {}
    path = Path(cell_dir) / layout.iperf3_json("client")
    try:
        text = path.read_text()
    except OSError:
        problems.append(f"no iperf3 client output ({path.name})")
    else:
        measured, settings, found = parse(text)
        problems += found + _setting_problems(settings, identity)
    row: Row = {key: identity.get(key) for key in identity}
    row.update(measured)
    for role in ROLES:
        if perf.get(role) is not None:
            row.update(perf_columns(role, perf[role]))
        row[f"{role}_perf_counts"] = perf_counts.get(role)
    doubts = []
    if checks is not None and not problems and isinstance(row.get("duration_s"), float):
        allowed = max(checks.window_tolerance * checks.duration, checks.window_slack)
        if abs(row["duration_s"] - checks.duration) > allowed:
            doubts.append(f"measured window {row['duration_s']:.3f}s, expected {checks.duration:g}s ± {allowed:.3g}s")
    row["status"] = "failed" if problems else "degraded" if doubts else "ok"
    row["error"] = "; ".join(problems or doubts) or None
    return {key: row.get(key) for key in order_columns(row)}
