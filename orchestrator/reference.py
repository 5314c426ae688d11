"""iperf3 as a reference in the same run (issue 11): `reference: iperf3` in an experiment.

For each message size and thread count of the stream cells (and each sender, nodelay and
buffer setting they vary), the plan gets an iperf3 cell with mode `iperf3`. It runs on the
same two hosts, through the same SSH sessions, gate, perf stat, warm-up and window as our
agents (cells.py puts iperf3 where the agent would be): `iperf3 -s -1` on the server host,
the client on the client host to the server's data address. Its `-J` output becomes a row of
the same results.csv schema, and the report gives ours ÷ iperf3 per cell with a 95% interval.

Equal settings: `-N` exactly when the cell's nodelay is on, `-R` when the server sends (as our
default `sender: server`), `-w` for the socket buffers, `taskset -c` for the affinity, `-l` the
message size and `-P` the connections. iperf3 writes one buffer of the message size per call;
our agent sends `fields` buffers per message, so one_copy (one sendmsg per message) is the fair
comparison, which the report says.
"""

from __future__ import annotations

import ipaddress
import itertools
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from . import derive, stats
from .errors import ConfigError
from .hosts import q
from .table import MeasurementChecks, Row, _perf_columns, order_columns

if TYPE_CHECKING:
    from .config import Experiment
    from .plan import Cell

MODE = "iperf3"
CLIENT_JSON = "client.iperf3.json"  # `role.*` names: the cell command's tar brings them home
SERVER_JSON = "server.iperf3.json"
# The cell keys an iperf3 cell takes over from the stream cells it is the reference for; it
# always sends one buffer per write (fields 1).
KEYS = ("message_size", "threads", "sender", "nodelay", "sndbuf", "rcvbuf")
# iperf3's own limits (iperf 3.12 refuses beyond them): -l, -O, -i; -t and -O take whole seconds.
MAX_BLOCK = 1 << 20
MAX_OMIT = 600
MIN_INTERVAL, MAX_INTERVAL = 0.1, 60.0
# Ours ÷ iperf3 outside these is flagged for a look.
LOW, HIGH = 0.8, 1.25
INSTALL = ("`apt install iperf3` (Debian, Ubuntu), `dnf install iperf3` (Fedora, RHEL), "
           "or the distribution's iperf3 package")
_POLL = 0.05  # seconds between looks for the server's listening socket


def settings_problems(experiment: Experiment) -> list[str]:
    """Why iperf3 could not run at the experiment's settings (config.py's validator)."""
    problems = []
    if "stream" not in experiment.dimension("workload"):
        problems.append("iperf3 is a reference for stream cells, and the experiment has none")
    for name, value, top in (("duration", experiment.duration, 86400), ("warmup", experiment.warmup, MAX_OMIT)):
        if value != int(value) or value > top:
            problems.append(f"iperf3 takes {name} in whole seconds up to {top} (-t, -O); {name} is {value:g}s")
    if max(experiment.dimension("message_size")) > MAX_BLOCK:
        problems.append(f"iperf3 writes at most {MAX_BLOCK} bytes per call (-l); use message sizes up to 1MiB")
    for sndbuf, rcvbuf in itertools.product(experiment.dimension("sndbuf"), experiment.dimension("rcvbuf")):
        if sndbuf != rcvbuf:
            problems.append("iperf3 sets both socket buffers to one value (-w): sndbuf and rcvbuf must be equal")
            break
    return problems


def _combinations(experiment: Experiment) -> list[dict[str, Any]]:
    if experiment.reference != MODE or "stream" not in experiment.dimension("workload"):
        return []
    return [dict(zip(KEYS, combo)) for combo in itertools.product(*(experiment.dimension(k) for k in KEYS))]


def cell_count(experiment: Experiment) -> int:
    """How many reference cells the plan gets (plan_size, without expanding)."""
    return len(_combinations(experiment)) * experiment.repetitions


def cell_parameters(experiment: Experiment) -> list[dict[str, Any]]:
    """The reference cells' parameters (plan.expand adds repetitions): one per combination of
    KEYS among the stream cells, each sending one buffer per write (fields 1)."""
    return [{"workload": "stream", "mode": MODE, "fields": 1, **combo} for combo in _combinations(experiment)]


def _address(value: str) -> str:
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise ConfigError(f"data address {value!r} is not an IP address") from None


def _interval(experiment: Experiment) -> str:
    return f"{min(max(experiment.interval, MIN_INTERVAL), MAX_INTERVAL):g}"


def arguments(cell: Cell, experiment: Experiment, role: str, server_address: str, lifetime: float) -> list[str]:
    """iperf3's command line for one side of a reference cell, at the cell's settings.
    `lifetime`: as our agent's --lifetime, a server no client reached ends by itself then."""
    address, port = _address(server_address), str(int(experiment.port))
    if role == "server":
        args = ["iperf3", "-s", "-1", "-J", "-B", address, "-p", port, "-i", _interval(experiment),
                "--idle-timeout", str(math.ceil(lifetime))]
    else:
        args = ["iperf3", "-c", address, "-p", port, "-J",
                "-l", str(int(cell.message_size)), "-P", str(int(cell.threads)),
                "-t", str(int(experiment.duration)), "-O", str(int(experiment.warmup)), "-i", _interval(experiment)]
        if cell.nodelay:
            args.append("-N")
        if cell.sender == "server":
            args.append("-R")  # the server sends, as our agents do with sender: server
        if cell.sndbuf:
            args += ["-w", str(int(cell.sndbuf))]
    cpus = getattr(experiment.affinity, role)
    if cpus:
        # Our agent pins its threads round-robin over the list; iperf3 has one CPU (-A) only,
        # so the whole process gets the list.
        args = ["taskset", "-c", cpus, *args]
    return args


def program(cell: Cell, experiment: Experiment, role: str, server_address: str, lifetime: float) -> str:
    """What cells.agent_command runs in the agent's place (inside the same perf stat): iperf3
    with its JSON into `<role>.iperf3.json`."""
    output = SERVER_JSON if role == "server" else CLIENT_JSON
    return " ".join(q(a) for a in arguments(cell, experiment, role, server_address, lifetime)) + f" >{q(output)}"


def ready_when_listening(command: str, port: int) -> str:
    """The server side's command, started in the background, says READY (as our agent does)
    once its port listens: iperf3 -J prints nothing until the end. If iperf3 exits first (the
    port taken), no READY comes and its exit status is the command's."""
    port_filter = q(f"sport = :{int(port)}")
    return (f"{{ {command} & p=$!; while kill -0 \"$p\" 2>/dev/null && ! ss -Htln {port_filter} | grep -q .; "
            f"do sleep {_POLL:g}; done; kill -0 \"$p\" 2>/dev/null && echo READY iperf3; wait \"$p\"; }}")


def preflight_probe(experiment: Experiment, role: str) -> str:
    """Shell lines for preflight's first round trip: `@noiperf3`, `@notaskset`, `@noss`."""
    if experiment.reference != MODE:
        return ""
    lines = ['command -v iperf3 >/dev/null 2>&1 || echo "@noiperf3"']
    if getattr(experiment.affinity, role):
        lines.append('command -v taskset >/dev/null 2>&1 || echo "@notaskset"')
    if role == "server":
        lines.append('command -v ss >/dev/null 2>&1 || echo "@noss"')
    return "; ".join(lines)


def preflight_findings(experiment: Experiment, lines: list[str]) -> list[tuple[bool, str]]:
    """(ok, detail) for preflight's `iperf3` line, from preflight_probe's output."""
    if experiment.reference != MODE:
        return []
    if "@noiperf3" in lines:
        return [(False, f"no `iperf3`, which `reference: iperf3` runs on both hosts: install it with {INSTALL}")]
    found = [(True, "iperf3 found")]
    if "@notaskset" in lines:
        found.append((False, "no `taskset` (util-linux), which pins iperf3 to the affinity's CPUs"))
    if "@noss" in lines:
        found.append((False, "no `ss` (iproute2), which tells when the iperf3 server listens"))
    return found


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
    path = Path(cell_dir) / CLIENT_JSON
    try:
        text = path.read_text()
    except OSError:
        problems.append(f"no iperf3 client output ({path.name})")
    else:
        measured, settings, found = parse(text)
        problems += found + _setting_problems(settings, identity)
    row: Row = {key: identity.get(key) for key in identity}
    row.update(measured)
    for role in ("server", "client"):
        if perf.get(role) is not None:
            row.update(_perf_columns(role, perf[role]))
        row[f"{role}_perf_counts"] = perf_counts.get(role)
    doubts = []
    if checks is not None and not problems and isinstance(row.get("duration_s"), float):
        allowed = max(checks.window_tolerance * checks.duration, checks.window_slack)
        if abs(row["duration_s"] - checks.duration) > allowed:
            doubts.append(f"measured window {row['duration_s']:.3f}s, expected {checks.duration:g}s ± {allowed:.3g}s")
    row["status"] = "failed" if problems else "degraded" if doubts else "ok"
    row["error"] = "; ".join(problems or doubts) or None
    return {key: row.get(key) for key in order_columns(row)}


def without_reference(summary: pd.DataFrame) -> pd.DataFrame:
    """The report's tables and plots compare our modes; the reference has its own section."""
    if summary.empty or "mode" not in summary:
        return summary
    return summary[summary["mode"].astype(str) != MODE].reset_index(drop=True)


def ratio_table(results: pd.DataFrame) -> pd.DataFrame:
    """Per stream cell of ours that has an iperf3 cell at the same settings: both mean
    throughputs and ours ÷ iperf3 with its 95% interval (stats.ratio), over ok repetitions."""
    columns = ["mode", "fields", *KEYS, "ours_n", "ours_gbps", "iperf3_n", "iperf3_gbps",
               "ratio", "ratio_ci_low", "ratio_ci_high", "look"]
    if results.empty or MODE not in set(results["mode"].astype(str)):
        return pd.DataFrame(columns=columns)
    ok = results[(results["status"].astype(str) == "ok") & (results["workload"].astype(str) == "stream")]
    keys = [k for k in KEYS if k in ok.columns]
    reference = {key: group["throughput_gbps"].dropna().astype(float).tolist()
                 for key, group in ok[ok["mode"].astype(str) == MODE].groupby(keys, sort=True)}
    rows = []
    ours = ok[ok["mode"].astype(str) != MODE]
    for key, group in ours.groupby(["mode", "fields", *keys], sort=False):
        theirs = reference.get(tuple(key[2:]))
        values = group["throughput_gbps"].dropna().astype(float).tolist()
        if not theirs or not values:
            continue
        result = stats.ratio(theirs, values)
        look = not math.isnan(result.ratio) and not LOW <= result.ratio <= HIGH
        # A zero_copy cell the kernel copied is never shown as zero-copy (derive.zero_copy_label).
        copied = group["zerocopy_copied_fraction"].max() if "zerocopy_copied_fraction" in group else math.nan
        key = (derive.zero_copy_label(str(key[0]), copied), *key[1:])
        rows.append([*key, len(values), stats.estimate(values).mean, len(theirs), stats.estimate(theirs).mean,
                     result.ratio, result.ci_low, result.ci_high, look])
    table = pd.DataFrame(rows, columns=columns)
    # one_copy first: it is the fair comparison (one call per message, as iperf3).
    rank = {"one_copy": 0, "two_copy": 1, "zero_copy": 2, "sendfile": 3}
    return table.sort_values(["mode", "message_size", "threads"], kind="stable",
                             key=lambda c: c.map(lambda m: rank.get(m.split(" ")[0].rstrip(":"), 9)) if c.name == "mode" else c).reset_index(drop=True)


def _num(value: float) -> str:
    return "—" if pd.isna(value) else f"{value:.3g}"


def _size(value: int) -> str:
    for unit, size in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if value >= size and value % size == 0:
            return f"{value // size}{unit}"
    return f"{value}B"


def report_section(results: pd.DataFrame) -> str:
    """The report's "Against iperf3" section; empty when the run has no reference cells."""
    if results.empty or MODE not in set(results["mode"].astype(str)):
        return ""
    table = ratio_table(results)
    refs = results[results["mode"].astype(str) == MODE]
    lines = ["## Against iperf3 (reference cells in the same run)", "",
             "Each row: our receiver's throughput over iperf3's at the same message size (`-l`), connections "
             "(`-P`), sender (`-R` when the server sends), TCP_NODELAY (`-N` exactly when nodelay is on) and socket "
             "buffers (`-w`), on the same hosts, with the same warm-up (`-O`) and window (`-t`), under the same "
             "perf stat. Ours ÷ iperf3 is the ratio of mean throughputs with its 95% interval (log-scale delta "
             "method, as `orchestrate compare`).", "",
             "**one_copy is the fair comparison**: iperf3 makes one write of the message size per call, and "
             "one_copy one sendmsg per message. two_copy makes one send per field (`fields`), so its ratio also "
             f"carries the extra system calls. A ratio below {LOW:g}× or above {HIGH:g}× is flagged for a look.", ""]
    if table.empty:
        lines += ["No cell of ours and of iperf3 both succeeded at the same settings: no ratio.", ""]
    else:
        rows = []
        for _, r in table.iterrows():
            ci = f"[{_num(r['ratio_ci_low'])}, {_num(r['ratio_ci_high'])}]" if not pd.isna(r["ratio_ci_low"]) else \
                f"(n={r['ours_n']}/{r['iperf3_n']}: no interval)"
            extra = ", ".join(f"{k}={r[k]}" for k in ("sender", "nodelay", "sndbuf") if table[k].nunique() > 1)
            rows.append([str(r["mode"]) + (f" ({extra})" if extra else ""), _size(int(r["message_size"])),
                         str(r["threads"]), str(r["fields"]), _num(r["ours_gbps"]), _num(r["iperf3_gbps"]),
                         f"{_num(r['ratio'])} {ci}", "**for a look**" if r["look"] else ""])
        header = ["mode", "size", "threads", "fields", "ours Gbit/s", "iperf3 Gbit/s", "ours ÷ iperf3 [95% CI]", "flag"]
        lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
        lines.append("")
        fair = table[table["mode"] == "one_copy"]
        if not fair.empty:
            lines += [f"one_copy ÷ iperf3 ranges from {_num(fair['ratio'].min())} to {_num(fair['ratio'].max())} "
                      f"over {len(fair)} cell(s); {int(fair['look'].sum())} flagged.", ""]
    bad = refs[refs["status"].astype(str) != "ok"]
    if len(bad):
        lines += [f"iperf3 repetitions not ok ({len(bad)} of {len(refs)}), left out of the ratios:", ""]
        lines += [f"- `{r['cell_id']}` {r['status']}: {r['error']}" for _, r in bad.iterrows()]
        lines.append("")
    return "\n".join(lines)
