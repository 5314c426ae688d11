"""`orchestrate report`: summary.csv, the plots, and report.md/report.html beside a run.

The report answers the lab study's questions from this run's numbers only. Where the run
holds no data for a question (no rr cells, no hardware counters, one thread count), it
says the question is not answerable rather than guessing.
"""

from __future__ import annotations

import base64
import html
import ipaddress
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import markdown
import pandas as pd
import yaml

from . import derive, hostcounters, intervals, plots, stats, tcpinfo
from .errors import ConfigError, OrchestrateError
from .files import disk_error, write_atomic
from .table import MeasurementChecks, ResultsError, check_format, read_results, repair_torn_tail
from .units import format_size
from .yamlfile import load_yaml

NOT_COUNTED = "not counted"
NOT_ANSWERABLE = "Not answerable from this run"


@dataclass
class RunData:
    path: Path
    run_id: str
    results: pd.DataFrame
    config: dict[str, Any]
    inventory: dict[str, Any]
    hosts: dict[str, dict[str, Any]]
    notes: list[str] = field(default_factory=list)


def _read_json(path: Path, notes: list[str]) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        notes.append(f"{path.parent.name}/{path.name} is missing")
        return {}
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ResultsError(f"{path}: not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ResultsError(f"{path}: expected a JSON object of host facts")
    return data


def _read_yaml(path: Path, notes: list[str]) -> dict[str, Any]:
    if not path.exists():
        notes.append(f"{path.name} is missing")
        return {}
    try:
        return load_yaml(path)
    except OrchestrateError as exc:
        raise ResultsError(str(exc)) from None


def load_run(run_dir: Path) -> RunData:
    """A run folder's results, config, inventory and host facts; missing facts are noted, not fatal."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ConfigError(f"{run_dir}: no such run folder")  # a bad argument (exit 2), not a bad run
    results = read_results(run_dir / "results.csv")
    notes: list[str] = []
    config = _read_yaml(run_dir / "config.yml", notes)
    inventory = _read_yaml(run_dir / "inventory.yml", notes)
    hosts = {role: _read_json(run_dir / "hosts" / f"{role}.json", notes) for role in ("server", "client")}
    run_ids = results["run_id"].dropna().unique() if "run_id" in results.columns else []
    run_id = str(run_ids[0]) if len(run_ids) else run_dir.name
    return RunData(run_dir, run_id, results, config, inventory, hosts, notes)


# ---------------------------------------------------------------- formatting


def _num(value: float, digits: int = 3) -> str:
    """`digits` significant figures, with thousands separators rather than exponents."""
    if value is None or pd.isna(value):
        return "—"
    if value == 0:
        return "0"
    if abs(value) >= 1e12 or abs(value) < 1e-3:
        return f"{value:.{digits}g}"
    places = digits - 1 - int(math.floor(math.log10(abs(value))))
    return f"{round(value, places):,.{max(0, places)}f}"


def _with_ci(row: pd.Series, metric: str, digits: int = 3) -> str:
    mean = row.get(f"{metric}_mean", math.nan)
    if pd.isna(mean):
        return "—"
    low, high = row.get(f"{metric}_ci_low", math.nan), row.get(f"{metric}_ci_high", math.nan)
    if pd.isna(low):
        return f"{_num(mean, digits)} (n=1)" if row.get(f"{metric}_n", 0) == 1 else _num(mean, digits)
    return f"{_num(mean, digits)} ± {_num((high - low) / 2, 2)}"


def _counted(summary: pd.DataFrame, metric: str) -> bool:
    column = f"{metric}_mean"
    return column in summary.columns and summary[column].notna().any()


@dataclass(frozen=True)
class UserSpaceOnly:
    """Where perf counted user space only (results.csv `<role>_perf_counts` = `user`): by role,
    and by the stream side (sender, receiver) those roles played."""

    roles: tuple[str, ...] = ()
    sides: frozenset[str] = frozenset()

    def __bool__(self) -> bool:
        return bool(self.roles)

    @property
    def where(self) -> str:
        return " and ".join(self.roles)

    @property
    def caveat(self) -> str:
        return (f"perf counted user space only on the {self.where} (perf_access: user-only): kernel time, "
                "where the copies happen, is not in the cycle and cache-miss counts")


def user_space_only(results: pd.DataFrame) -> UserSpaceOnly:
    ok = results[results["status"].astype(str) == "ok"] if "status" in results else results
    roles = tuple(r for r in ("server", "client")
                  if f"{r}_perf_counts" in ok and ok[f"{r}_perf_counts"].astype(str).eq("user").any())
    sides = set()
    stream = ok[ok["workload"].astype(str) == "stream"] if "workload" in ok else ok.iloc[0:0]
    for _, row in stream.iterrows():
        sender = "client" if str(row.get("sender", "server")) == "client" else "server"
        for role in roles:
            if str(row.get(f"{role}_perf_counts")) == "user":
                sides.add("sender" if role == sender else "receiver")
    return UserSpaceOnly(roles, frozenset(sides))


def _cell_value(summary: pd.DataFrame, row: pd.Series, metric: str, digits: int = 3) -> str:
    return _with_ci(row, metric, digits) if _counted(summary, metric) else NOT_COUNTED


def _table(headers: list[str], rows: list[list[str]]) -> str:
    def clean(text: object) -> str:
        return str(text).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(clean(h) for h in headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(clean(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _size(value: float) -> str:
    return format_size(int(value))


def flatten(data: Any, prefix: str = "") -> dict[str, str]:
    if isinstance(data, dict):
        out: dict[str, str] = {}
        for key, value in data.items():
            out.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
        return out
    if isinstance(data, list):
        return {prefix: ", ".join(str(v) for v in data)}
    # Tabs (as in sysctl tcp_rmem) would break a table cell's alignment.
    return {prefix: "—" if data is None else str(data).replace("\t", " ")}


# ---------------------------------------------------------------- setup


_ETHTOOL_SPEED = re.compile(r"^(\d+)\s*Mb/s\Z")


def _nic(run: RunData, role: str) -> dict[str, Any]:
    nic = run.hosts.get(role, {}).get("nic")
    return nic if isinstance(nic, dict) else {}


def _is_local_link(run: RunData) -> bool:
    """Loopback or veth: the data never leaves the kernel, so MSG_ZEROCOPY is always copied."""
    for role in ("server", "client"):
        nic = _nic(run, role)
        if nic.get("interface") == "lo" or nic.get("name") == "lo" or nic.get("kind") == "veth":
            return True
        address = (run.inventory.get(role) or {}).get("data_address") or run.hosts.get(role, {}).get("data_address")
        try:
            if address and ipaddress.ip_address(address).is_loopback:
                return True
        except ValueError:
            pass
    return False


def _speed_gbps(nic: dict[str, Any]) -> float:
    # facts.py records ethtool's "25000Mb/s"; "Unknown!" and absent mean not reported.
    if isinstance(nic.get("speed_mbps"), (int, float)):
        return nic["speed_mbps"] / 1000
    match = _ETHTOOL_SPEED.match(str(nic.get("speed") or ""))
    return int(match.group(1)) / 1000 if match else math.nan


def _link_speed_gbps(run: RunData) -> float:
    speeds = [_speed_gbps(_nic(run, role)) for role in ("server", "client")]
    speeds = [s for s in speeds if not math.isnan(s) and s > 0]
    return min(speeds) if speeds else math.nan


def _setup_section(run: RunData) -> str:
    parts = ["## Setup", ""]
    server, client = flatten(run.hosts.get("server", {})), flatten(run.hosts.get("client", {}))
    # NIC offloads run to dozens of lines; they get one line per host below the table.
    keys = [k for k in dict.fromkeys([*server, *client]) if not k.startswith("nic.offloads.")]
    parts += ["### Hosts", ""]
    if keys:
        parts += [_table(["fact", "server", "client"],
                                          [[k, server.get(k, "—"), client.get(k, "—")] for k in keys]), ""]
        for role in ("server", "client"):
            offloads = _nic(run, role).get("offloads")
            if isinstance(offloads, dict) and offloads:
                on = sorted(k for k, v in offloads.items() if str(v).startswith("on"))
                parts.append(f"- {role} NIC offloads on: {', '.join(on) or 'none'}")
        parts.append("")
    else:
        parts += ["No host facts were recorded.", ""]
    parts += ["### Link", ""]
    addresses = [f"{role}: {(run.inventory.get(role) or {}).get('data_address', '—')}" for role in ("server", "client")]
    parts.append(f"- Data addresses: {', '.join(addresses)}")
    speed = _link_speed_gbps(run)
    parts.append(f"- Link speed (slower NIC): {_num(speed)} Gbit/s" if not math.isnan(speed) else "- Link speed: not reported")
    if _is_local_link(run):
        parts.append("- **Local link (loopback or veth)**: no NIC is involved, and the kernel copies every MSG_ZEROCOPY send.")
    parts.append("")
    parts += ["### Config", "", "```yaml", yaml.safe_dump(run.config, sort_keys=False).rstrip() or "# config.yml missing", "```", ""]
    if run.notes:
        parts += ["### Missing files", ""] + [f"- {note}" for note in run.notes] + [""]
    return "\n".join(parts)


METHOD = """## How the numbers are made

- **Throughput** is the receiver's bytes inside its measured window (after warm-up) × 8 / the
  window's measured length. Messages per second likewise.
- **CPU per GB, cycles per byte, misses per KiB** divide the agents' whole-run counts (rusage and
  perf count from start to exit, warm-up included) by the bytes the receiver took in over the
  same whole run (`bytes_received`), so both sides of the ratio cover the same span. Sender and
  receiver are mapped from the `server_*`/`client_*` columns with the `sender` column. These
  figures are given for stream cells only.
- **Context switches per second** are perf's counts of both agents over warm-up + window.
- Each cell is summarised over its successful repetitions: mean ± the half-width of a 95%
  Student-t confidence interval. With one repetition there is no interval ("n=1").
  A cell whose primary metric has a coefficient of variation over 10% is flagged *unstable*.
- A **zero_copy** cell is labelled by what the kernel did: if it reported at least half of the
  completed sends as copied (`SO_EE_CODE_ZEROCOPY_COPIED`) the cell is shown as
  "copied (not zero-copy)"; a smaller copied share is shown as a percentage.
- "not counted" means the hosts did not support the counter; it is never read as zero.
- Counts marked *user space only* come from a host where perf could not count the kernel
  (`perf_access: user-only`): they leave out the system calls and the copies inside them.
"""


# ---------------------------------------------------------------- tables


def _caveats_section(run: RunData, summary: pd.DataFrame) -> str:
    """What about this particular run qualifies its numbers."""
    lines = []
    ok = run.results[run.results["status"].astype(str) == "ok"]
    for column in sorted(c for c in ok.columns if c.endswith("_run_pct")):
        lowest = pd.to_numeric(ok[column], errors="coerce").min()
        if not pd.isna(lowest) and lowest < 100:
            event = column.removesuffix("_run_pct")
            lines.append(f"- perf multiplexed `{event}` (ran {lowest:.0f}% of the time at worst); its counts are scaled estimates.")
    if "perf_scope" in ok.columns and ok["perf_scope"].astype(str).eq("system").any():
        lines.append("- perf counted system-wide (`perf_scope: system`): counts include every process and "
                     "softirq work on the hosts, not the agents alone.")
        if _is_local_link(run):
            lines.append("- With system-wide counting and both roles on one machine, the server's and the client's "
                         "counts each cover every CPU: their sums (cycles per byte, misses per KiB, context "
                         "switches per second) count the machine twice. Read one side's figure instead.")
    user = user_space_only(run.results)
    if user:
        lines.append(f"- {user.caveat}. Per-byte CPU cost is read from CPU time "
                     "(rusage, user + system) instead, and context switches from rusage.")
    if not summary.empty and (summary["ok"] == 2).any():
        lines.append(f"- {int((summary['ok'] == 2).sum())} cells have two successful repetitions: their 95% intervals "
                     "use t = 12.7 and are wide; more repetitions narrow them quickly (t = 4.3 at three).")
    if not summary.empty and (summary["ok"] == 1).any():
        lines.append(f"- {int((summary['ok'] == 1).sum())} cells have a single successful repetition: no interval or spread for them.")
    if _is_local_link(run):
        lines.append("- Server and client share one kernel (loopback or veth): no NIC, and both sides compete for the same CPUs and caches.")
    if not lines:
        return ""
    return "### Caveats for this run\n\n" + "\n".join(lines) + "\n"


def _stream_tables(summary: pd.DataFrame, user: UserSpaceOnly = UserSpaceOnly()) -> str:
    stream = summary[summary["workload"] == "stream"] if not summary.empty else summary
    if stream.empty:
        return "No stream cells in this run.\n"
    rows = []
    for _, r in stream.iterrows():
        flags = []
        if r["unstable"]:
            flags.append(f"unstable (CV {_num(r['throughput_gbps_cv'] * 100, 2)}%)")
        if r["failed"]:
            flags.append(f"{int(r['failed'])} failed")
        if r.get("degraded", 0):
            flags.append(f"{int(r['degraded'])} degraded, left out")
        rows.append([
            r["mode_label"], _size(r["message_size"]), int(r["threads"]), f"{int(r['ok'])}/{int(r['repetitions'])}",
            _with_ci(r, "throughput_gbps"), _with_ci(r, "messages_per_s"),
            _with_ci(r, "sender_cpu_s_per_gb"), _with_ci(r, "receiver_cpu_s_per_gb"),
            _num(r["zerocopy_copied_fraction_max"]) if r["mode"] == "zero_copy" else "",
            ", ".join(flags),
        ])
    main = _table(["mode", "size", "threads", "ok/reps", "Gbit/s", "msg/s", "sender CPU-s/GB", "receiver CPU-s/GB",
                   "copied fraction", "flags"], rows)
    rows = []
    for _, r in stream.iterrows():
        rows.append([
            r["mode_label"], _size(r["message_size"]), int(r["threads"]),
            _cell_value(stream, r, "sender_cycles_per_byte"), _cell_value(stream, r, "receiver_cycles_per_byte"),
            _cell_value(stream, r, "l1_misses_per_kib"), _cell_value(stream, r, "llc_misses_per_kib"),
            _cell_value(stream, r, "context_switches_per_s"),
        ])
    mark = " (user space only)"
    both = mark if user.sides else ""
    counters = _table(["mode", "size", "threads", f"sender cycles/B{mark if 'sender' in user.sides else ''}",
                       f"receiver cycles/B{mark if 'receiver' in user.sides else ''}", f"L1 misses/KiB{both}",
                       f"LLC misses/KiB{both}", "context switches/s"], rows)
    note = f"\n\n**User space only:** {user.caveat}; they are not whole counts.\n" if user else ""
    return (f"### Stream: throughput and CPU\n\n{main}\n\n### Stream: hardware and software counters\n\n"
            f"{counters}\n{note}")


def _rr_table(summary: pd.DataFrame) -> str:
    rr = summary[summary["workload"] == "rr"] if not summary.empty else summary
    if rr.empty:
        return "### Request/response\n\nNo rr cells in this run: latency was not measured.\n"
    rows = [[r["mode_label"], _size(r["message_size"]), int(r["threads"]), f"{int(r['ok'])}/{int(r['repetitions'])}",
             _with_ci(r, "transactions_per_s"), _with_ci(r, "latency_p50_us"), _with_ci(r, "latency_p99_us"),
             "unstable" if r["unstable"] else ""] for _, r in rr.iterrows()]
    return "### Request/response\n\n" + _table(
        ["mode", "size", "threads", "ok/reps", "transactions/s", "p50 µs", "p99 µs", "flags"], rows) + "\n"


# ---------------------------------------------------------------- questions


def _wins(a: float, b: float, higher_is_better: bool) -> bool:
    return a > b if higher_is_better else a < b


def _clear(row_a: pd.Series, row_b: pd.Series, metric: str) -> bool:
    """The two 95% intervals do not overlap: the difference is not noise."""
    la, ha = row_a[f"{metric}_ci_low"], row_a[f"{metric}_ci_high"]
    lb, hb = row_b[f"{metric}_ci_low"], row_b[f"{metric}_ci_high"]
    return ha < lb or hb < la


def _outcome(row_a: pd.Series, row_b: pd.Series, metric: str, higher: bool) -> str:
    """`win`, `loss` or `tie` (95% intervals overlap) of A against B."""
    a, b = row_a[f"{metric}_mean"], row_b[f"{metric}_mean"]
    has_ci = not any(pd.isna(r[f"{metric}_ci_low"]) for r in (row_a, row_b))
    if a == b or (has_ci and not _clear(row_a, row_b, metric)):
        return "tie"
    # Without intervals (one repetition) the means decide; the answer says so.
    return "win" if (a > b) == higher else "loss"


def _sizes(sizes: list[int]) -> str:
    return ", ".join(_size(s) for s in sizes)


def crossover(summary: pd.DataFrame, better: str, worse: str, metric: str) -> dict[int, str]:
    """Per thread count, in words: the smallest message size from which `better` beats
    `worse` beyond the 95% intervals, with no clear loss at any larger size measured.

    Sizes where the intervals overlap count as ties: two modes that both fill the link are
    equal, and noise must not move the answer.
    """
    higher = derive.METRICS[metric].higher_is_better
    stream = summary[summary["workload"] == "stream"]
    answers: dict[int, str] = {}
    for threads in sorted(stream["threads"].unique()):
        here = stream[stream["threads"] == threads]
        a = here[here["mode"] == better].set_index("message_size")
        b = here[here["mode"] == worse].set_index("message_size")
        sizes = sorted(s for s in set(a.index) & set(b.index)
                       if not pd.isna(a.at[s, f"{metric}_mean"]) and not pd.isna(b.at[s, f"{metric}_mean"]))
        if not sizes:
            continue
        outcome = {s: _outcome(a.loc[s], b.loc[s], metric, higher) for s in sizes}
        wins = [s for s in sizes if outcome[s] == "win"]
        losses = [s for s in sizes if outcome[s] == "loss"]
        start = next((w for w in wins if not any(l > w for l in losses)), None)
        if not wins:
            text = f"never, up to {_size(sizes[-1])}"
            ties = [s for s in sizes if outcome[s] == "tie"]
            if ties:
                text += f" (within noise at {_sizes(ties)})"
        elif start is None:
            text = f"not consistently: wins at {_sizes(wins)}, loses at {_sizes(losses)}"
        else:
            text = "at every size measured" if start == sizes[0] else f"from {_size(start)}"
            ties = [s for s in sizes if s > start and outcome[s] == "tie"]
            if ties:
                text += f", except within noise at {_sizes(ties)}"
        if any(pd.isna(r[f"{metric}_ci_low"]) for frame in (a, b) for _, r in frame.loc[sizes].iterrows()):
            text += " (some cells have one repetition: compared by mean alone)"
        answers[int(threads)] = text
    return answers


def _crossover_lines(summary: pd.DataFrame, better: str, worse: str, metric: str) -> list[str]:
    answers = crossover(summary, better, worse, metric)
    if not answers:
        return [f"- {derive.METRICS[metric].label}: {NOT_ANSWERABLE} (no stream cells with both modes measured)."]
    per = "; ".join(f"{t} thread{'s' if t != 1 else ''}: {text}" for t, text in answers.items())
    return [f"- {derive.METRICS[metric].label}: {per}."]


def _cpu_metric(summary: pd.DataFrame, user: UserSpaceOnly = UserSpaceOnly()) -> str:
    # User-space cycles miss the copies' kernel time: CPU time (user + system) stands in then.
    return "cycles_per_byte" if _counted(summary, "cycles_per_byte") and not user.sides else "cpu_ns_per_byte"


def _cpu_metric_note(summary: pd.DataFrame, metric: str, user: UserSpaceOnly) -> list[str]:
    if metric != "cpu_ns_per_byte":
        return []
    if _counted(summary, "cycles_per_byte") and user.sides:
        return [f"  (cycles were counted in user space only: {user.caveat}, so CPU time per byte, "
                "user + system from rusage, stands in.)"]
    return [f"  (cycles {NOT_COUNTED} on these hosts, so CPU time per byte stands in.)"]


def _copied_caveat(summary: pd.DataFrame, mode: str = "zero_copy") -> list[str]:
    cells = summary[summary["mode"] == mode]
    if mode == "zero_copy" and len(cells) and cells["copied"].any():
        return [f"- Caveat: {int(cells['copied'].sum())} of {len(cells)} zero_copy cells were copied by the kernel; "
                "there, \"zero_copy\" compares MSG_ZEROCOPY's bookkeeping plus a copy, not zero-copy."]
    return []


def _modes(summary: pd.DataFrame) -> set[str]:
    return set(summary.loc[summary["workload"] == "stream", "mode"]) if not summary.empty else set()


def _q_zero_vs_one(summary: pd.DataFrame, user: UserSpaceOnly = UserSpaceOnly()) -> list[str]:
    lines = ["### From which message size does zero_copy beat one_copy?", ""]
    if not {"zero_copy", "one_copy"} <= _modes(summary):
        return lines + [f"{NOT_ANSWERABLE}: it needs stream cells of both zero_copy and one_copy.", ""]
    metric = _cpu_metric(summary, user)
    lines += _crossover_lines(summary, "zero_copy", "one_copy", metric)
    lines += _cpu_metric_note(summary, metric, user)
    lines += _crossover_lines(summary, "zero_copy", "one_copy", "throughput_gbps")
    return lines + _copied_caveat(summary) + [""]


def _thread_span(stream: pd.DataFrame) -> tuple[int, int] | str:
    """The fewest and most threads measured, or why thread questions can't be answered."""
    threads = sorted(stream["threads"].unique())
    if len(threads) < 2:
        return f"{NOT_ANSWERABLE}: it has {len(threads)} thread count(s)."
    return threads[0], threads[-1]


def _q_thread_scaling(summary: pd.DataFrame, run: RunData) -> list[str]:
    lines = ["### How does throughput scale with threads?", ""]
    stream = summary[summary["workload"] == "stream"]
    span = _thread_span(stream)
    if isinstance(span, str):
        return lines + [span, ""]
    low, high = span
    rows, efficiencies = [], []
    pairs = stream.groupby(["mode", "message_size"])
    for (mode, size), group in sorted(pairs, key=lambda item: (derive.mode_rank(item[0][0]), item[0][1])):
        g = group.set_index("threads")
        if low not in g.index or high not in g.index:
            continue
        base, top = g.at[low, "throughput_gbps_mean"], g.at[high, "throughput_gbps_mean"]
        if pd.isna(base) or pd.isna(top) or base <= 0:
            continue
        speedup = top / base
        efficiency = speedup / (high / low)
        efficiencies.append(efficiency)
        rows.append([g["mode_label"].iloc[0], _size(size), _num(base), _num(top), f"×{_num(speedup)}", f"{efficiency:.0%}"])
    if not rows:
        return lines + [f"{NOT_ANSWERABLE}: no cell has throughput at both {low} and {high} threads.", ""]
    lines.append(_table(["mode", "size", f"Gbit/s at {low}t", f"Gbit/s at {high}t", "speed-up", "of linear"], rows))
    median = float(pd.Series(efficiencies).median())
    lines += ["", f"- From {low} to {high} threads, the median cell reaches {median:.0%} of linear scaling."]
    speed = _link_speed_gbps(run)
    peak = stream["throughput_gbps_mean"].max()
    if not math.isnan(speed) and peak >= 0.9 * speed:
        lines.append(f"- The best cells reach {_num(peak)} Gbit/s of a {_num(speed)} Gbit/s link: "
                     "past that point more threads cannot help, and scaling flattens at the link.")
    return lines + [""]


def _q_zero_copy_real(summary: pd.DataFrame, run: RunData) -> list[str]:
    lines = ["### Was the zero-copy real, or copied?", ""]
    cells = summary[summary["mode"] == "zero_copy"] if not summary.empty else summary
    if cells.empty:
        return lines + [f"{NOT_ANSWERABLE}: it has no zero_copy cells.", ""]
    fractions = cells["zerocopy_copied_fraction_max"]
    if fractions.isna().all():
        return lines + [f"{NOT_ANSWERABLE}: no zero_copy completions were counted, so whether the kernel copied "
                        "is unknown; these cells are labelled unverified.", ""]
    copied, partial = int(cells["copied"].sum()), int(((fractions > 0) & ~cells["copied"]).sum())
    real = int((fractions == 0).sum())
    lines.append(f"- Of {len(cells)} zero_copy cells: {real} real zero-copy (no send copied), {partial} partly copied, "
                 f"{copied} copied (at least half of the sends), {int(fractions.isna().sum())} unverified.")
    lines.append(f"- Copied fraction across cells: {_num(fractions.min())} to {_num(fractions.max())}.")
    if copied:
        why = ("The data stays on this machine (loopback or veth), and the kernel always copies "
               "MSG_ZEROCOPY data delivered to a local socket." if _is_local_link(run)
               else "The kernel reported SO_EE_CODE_ZEROCOPY_COPIED: the NIC or route could not send from pinned pages.")
        lines.append(f"- **The copied cells are not zero-copy results**, and the tables and plots label them so. {why}")
    return lines + [""]


def _q_vs_two_copy(summary: pd.DataFrame, user: UserSpaceOnly = UserSpaceOnly()) -> list[str]:
    lines = ["### From which size does one_copy beat two_copy, and zero_copy beat two_copy?", ""]
    modes = _modes(summary)
    metric = _cpu_metric(summary, user)
    for better in ("one_copy", "zero_copy"):
        if not {better, "two_copy"} <= modes:
            lines.append(f"- {better} vs two_copy: {NOT_ANSWERABLE} (needs stream cells of both).")
            continue
        lines.append(f"- **{better} vs two_copy**")
        lines += ["  " + line for line in _crossover_lines(summary, better, "two_copy", "throughput_gbps")]
        lines += ["  " + line for line in _crossover_lines(summary, better, "two_copy", metric)]
    if any(m in modes for m in ("one_copy", "zero_copy")) and "two_copy" in modes:
        lines += _cpu_metric_note(summary, metric, user)
    return lines + _copied_caveat(summary) + [""]


def _relative_reduction(stream: pd.DataFrame, metric: str, mode: str, base: str = "two_copy") -> float:
    """Median over matching (size, threads) cells of (base - mode) / base."""
    keyed = stream.set_index(["message_size", "threads"])
    a, b = keyed[keyed["mode"] == base][f"{metric}_mean"], keyed[keyed["mode"] == mode][f"{metric}_mean"]
    joined = pd.concat([a.rename("base"), b.rename("other")], axis=1).dropna()
    joined = joined[joined["base"] > 0]
    if joined.empty:
        return math.nan
    return float(((joined["base"] - joined["other"]) / joined["base"]).median())


def _q_cache_level(summary: pd.DataFrame, user: UserSpaceOnly = UserSpaceOnly()) -> list[str]:
    lines = ["### Which cache level's misses fall most, per byte?", ""]
    stream = summary[summary["workload"] == "stream"]
    counted = [m for m in ("l1_misses_per_kib", "llc_misses_per_kib") if _counted(stream, m)]
    if len(counted) < 2:
        return lines + [f"{NOT_ANSWERABLE}: L1 and LLC misses were {NOT_COUNTED} on these hosts.", ""]
    if "two_copy" not in _modes(summary) or len(_modes(summary)) < 2:
        return lines + [f"{NOT_ANSWERABLE}: it needs two_copy and another mode to compare.", ""]
    rows, best = [], None
    for mode in sorted(_modes(summary) - {"two_copy"}, key=derive.mode_rank):
        for side in ("", "sender_", "receiver_"):
            cells = []
            for level in ("l1", "llc"):
                value = _relative_reduction(stream, f"{side}{level}_misses_per_kib", mode)
                cells.append(value)
                if side == "" and not math.isnan(value) and (best is None or value > best[0]):
                    best = (value, level.upper(), mode)
            rows.append([mode, side.rstrip("_") or "both", *(f"{v:+.0%}" if not math.isnan(v) else "—" for v in cells)])
    lines.append("Median fall in misses per KiB moved, relative to two_copy (positive = fewer misses):")
    lines += ["", _table(["mode", "side", "L1-dcache", "LLC"], rows), ""]
    if best is not None and best[0] > 0:
        lines.append(f"- The largest fall is in **{best[1]}** misses with {best[2]} ({best[0]:+.0%} per KiB).")
    else:
        lines.append("- Neither level's misses per byte fall below two_copy's in this run.")
    if user:
        lines.append(f"- Caveat: {user.caveat}: these are the agents' own user-space misses, not the copies'.")
    return lines + _copied_caveat(summary) + [""]


def _q_threads_and_contention(summary: pd.DataFrame, user: UserSpaceOnly = UserSpaceOnly()) -> list[str]:
    lines = ["### How does thread count interact with cache misses and context switches?", ""]
    stream = summary[summary["workload"] == "stream"]
    span = _thread_span(stream)
    if isinstance(span, str):
        return lines + [span, ""]
    low, high = span
    metrics = [("l1_misses_per_kib", "L1 misses per KiB"), ("llc_misses_per_kib", "LLC misses per KiB"),
               ("context_switches_per_s", "context switches per second")]
    if not _counted(stream, "context_switches_per_s"):
        metrics[2] = ("rusage_context_switches_per_s", "context switches per second (rusage)")
    rows = []
    for mode in sorted(_modes(summary), key=derive.mode_rank):
        here = stream[stream["mode"] == mode]
        row = [here["mode_label"].iloc[0] if here["mode_label"].nunique() == 1 else mode]
        for metric, _ in metrics:
            if not _counted(stream, metric):
                row.append(NOT_COUNTED)
                continue
            by = here.pivot_table(index="message_size", columns="threads", values=f"{metric}_mean")
            if low in by and high in by:
                ratio = (by[high] / by[low]).dropna()
                row.append(f"×{_num(float(ratio.median()))}" if len(ratio) else "—")
            else:
                row.append("—")
        rows.append(row)
    lines.append(f"Median change from {low} to {high} threads, over message sizes:")
    lines += ["", _table(["mode", *(label for _, label in metrics)], rows), ""]
    spans = []
    for index, (_, label) in enumerate(metrics):
        ratios = [float(row[1 + index][1:].replace(",", "")) for row in rows if str(row[1 + index]).startswith("×")]
        if ratios:
            spans.append(f"{label} ×{_num(min(ratios))}" + (f" to ×{_num(max(ratios))}" if len(ratios) > 1 else ""))
    if spans:
        lines.append(f"- From {low} to {high} threads, over the modes: {'; '.join(spans)}.")
    if all(_counted(stream, m) for m, _ in metrics[:2]):
        lines.append("- Reading: misses per KiB that rise with threads point at contention for a shared cache "
                     "(LLC); per-byte counts that stay flat mean each connection keeps to its own working set.")
    else:
        lines.append(f"- Cache misses were {NOT_COUNTED} on these hosts, so only the context-switch part is answered.")
    if user and any(_counted(stream, m) for m, _ in metrics[:2]):
        lines.append(f"- Caveat: {user.caveat}: the miss ratios cover user space only.")
    return lines + [""]


def _questions(summary: pd.DataFrame, run: RunData) -> list[list[str]]:
    """Each question's lines, its `### ` heading first."""
    user = user_space_only(run.results)
    return [_q_zero_vs_one(summary, user), _q_thread_scaling(summary, run), _q_zero_copy_real(summary, run),
            _q_vs_two_copy(summary, user), _q_cache_level(summary, user), _q_threads_and_contention(summary, user)]


def _questions_section(summary: pd.DataFrame, run: RunData) -> str:
    if summary.empty:
        return f"## The study's questions\n\n{NOT_ANSWERABLE}: no cell succeeded.\n"
    lines = ["## The study's questions", ""]
    for question in _questions(summary, run):
        lines += question
    return "\n".join(lines)


def _short_answer(lines: list[str]) -> str:
    """One line for the summary, quoted from a question's full answer: its verdict bullets, joined."""
    body = [line for line in lines[1:] if line.strip()]
    refusal = next((line for line in body if NOT_ANSWERABLE in line and not line.startswith("-")), None)
    if refusal:
        return refusal
    picked, label = [], ""
    for line in body:
        text = line.strip()
        if not text.startswith("- ") or text.startswith(("- Caveat", "- Reading")):
            continue
        text = text[2:]
        if text.startswith("**") and text.endswith("**"):  # a sub-heading such as **one_copy vs two_copy**
            label = text.strip("*") + ": "
            continue
        if line.startswith("  ") and not label:
            continue
        picked.append(label + text.rstrip("."))
        label = ""
    return "; ".join(picked[:3]) + "." if picked else "see below."


def _summary_section(run: RunData, summary: pd.DataFrame) -> str:
    """The answer first: each question in one line, per combination of varied parameters."""
    lines = ["## What this run shows", ""]
    if summary.empty:
        return "\n".join(lines + [f"{NOT_ANSWERABLE}: no cell succeeded.", ""])
    for label, group in variants(summary):
        if label:
            lines += [f"**With {label}**", ""]
        for question in _questions(group, run):
            lines.append(f"- *{question[0].removeprefix('### ')}* {_short_answer(question)}")
        lines.append("")
    return "\n".join(lines)


REPORTED_SPREAD = ("throughput_gbps", "transactions_per_s", "latency_p50_us", "latency_p99_us", "cpu_s_per_gb",
                   "cycles_per_byte", "context_switches_per_s")


def _problems_section(summary: pd.DataFrame) -> str:
    lines = ["## Failed, degraded and unstable cells", ""]
    degraded_count = summary["degraded"] if "degraded" in summary else 0
    failed = summary[(summary["failed"] > 0) | (degraded_count > 0)] if not summary.empty else summary
    unstable = summary[summary["unstable"]] if not summary.empty else summary
    if failed.empty and unstable.empty:
        return "\n".join(lines + ["Every repetition succeeded, and no cell varied by more than 10%.", ""])
    for _, r in failed.iterrows():
        parts = []
        if r["failed"]:
            parts.append(f"{int(r['failed'])} of {int(r['repetitions'])} repetitions failed")
        if r.get("degraded", 0):
            parts.append(f"{int(r['degraded'])} of {int(r['repetitions'])} were degraded (measured, but the checks "
                         "doubt the measurement; left out of the figures)")
        lines.append(f"- `{r['cell']}`: {', '.join(parts)} ({r['errors']}).")
    for _, r in unstable.iterrows():
        # summary.csv lists every metric over 10%; here, only the ones the study reads.
        shown = [m for m in r["unstable_metrics"].split() if m in REPORTED_SPREAD]
        cvs = ", ".join(f"{derive.METRICS[m].label} CV {r[f'{m}_cv']:.0%}" for m in shown)
        lines.append(f"- `{r['cell']}`: unstable, repetitions disagree ({cvs}).")
    return "\n".join(lines + [""])


# Plots that can show perf's cycle and cache-miss counts.
COUNTER_PLOTS = ("cpu_per_byte_vs_size", "cache_misses_vs_size")

PLOT_TITLES = {
    "throughput_vs_size": "Throughput vs message size",
    "throughput_vs_threads": "Throughput vs threads",
    "latency_vs_threads": "Latency vs threads",
    "latency_vs_size": "Latency vs message size",
    "cpu_per_byte_vs_size": "CPU per byte vs message size",
    "cache_misses_vs_size": "Cache misses vs message size",
    "context_switches_vs_threads": "Context switches vs threads",
}


# Cell parameters beyond mode, size and threads. When a run varies one of them, tables, plots
# and answers are given once per combination: comparing modes across them would mix cells.
VARIANT_COLUMNS = ("fields", "sender", "nodelay", "sndbuf", "rcvbuf", "perf_scope")


def variants(summary: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """(label, rows) per combination of the varied extra parameters; one unlabelled group if none vary."""
    varied = [c for c in VARIANT_COLUMNS if c in summary and summary[c].nunique(dropna=False) > 1]
    if not varied:
        return [("", summary)]
    return [(", ".join(f"{k}={v}" for k, v in zip(varied, key)), group.reset_index(drop=True))
            for key, group in summary.groupby(varied, sort=True, dropna=False)]


def _variant_folder(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.=-]+", "_", label)


def render_markdown(run: RunData, summary: pd.DataFrame, plot_names: dict[str, list[str]], evidence: str = "") -> str:
    cells, rows = len(summary), len(run.results)
    parts = [
        f"# Run {run.run_id}",
        "",
        f"{cells} cells, {rows} cell repetitions, from `{run.path.name}/results.csv`; one row per cell in `summary.csv`.",
        "",
        _summary_section(run, summary),
        _setup_section(run),
        METHOD,
        _caveats_section(run, summary),
        _problems_section(summary),
        evidence,
    ]
    for label, group in variants(summary):
        heading = f"# With {label}\n" if label else ""
        folder = f"plots/{_variant_folder(label)}/" if label else "plots/"
        parts += [heading, "## Tables", "", _stream_tables(group, user_space_only(run.results)) if not group.empty else "No cells.\n",
                  _rr_table(group) if not group.empty else "", "## Plots", ""]
        user = user_space_only(run.results)
        for name in plot_names.get(label, []):
            parts += [f"### {PLOT_TITLES.get(name, name)}", "", f"![{PLOT_TITLES.get(name, name)}]({folder}{name}.png)",
                      "", f"[SVG]({folder}{name}.svg)", ""]
            if user and name in COUNTER_PLOTS:
                parts += [f"*User space only:* {user.caveat}.", ""]
        parts.append(_questions_section(group, run))
    return "\n".join(parts)


HTML_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 72rem; margin: 2rem auto; padding: 0 1rem; line-height: 1.45;
       background: #fff; color: #111; }
table { border-collapse: collapse; margin: 1rem 0; font-size: 0.9rem; }
th, td { border: 1px solid #bbb; padding: 0.25rem 0.5rem; text-align: left; }
th { background: #eee; }
th.sortable { cursor: pointer; user-select: none; }
th.sortable::after { content: " \\2195"; color: #999; }
th[aria-sort=ascending]::after { content: " \\2191"; color: #000; }
th[aria-sort=descending]::after { content: " \\2193"; color: #000; }
figure { margin: 1rem 0; }
figure img { max-width: 100%; height: auto; }
figcaption { font-weight: 600; }
pre { background: #f5f5f5; padding: 0.75rem; overflow-x: auto; }
details { margin: 0.75rem 0; }
details > summary { cursor: pointer; font-weight: 600; font-size: 1.1rem; }
.headline { border: 1px solid #ddd; padding: 0.5rem; }
@media print {
  body { max-width: none; margin: 0; background: #fff; color: #000; font-size: 10pt; }
  figure { break-inside: avoid; page-break-inside: avoid; }
  figure img { width: 100%; }
  table { break-inside: auto; }
  tr { break-inside: avoid; }
  th.sortable::after { content: ""; }
  details > summary { list-style: none; }
}
"""

# Hand-written rather than a library: the page must work offline, attached to a mail, with no CDN.
HTML_SCRIPT = """
(function () {
  var UNITS = {B: 1, KiB: 1024, MiB: 1048576, GiB: 1073741824};
  function key(text) {
    var t = text.trim().replace(/^[\u00d7x]/, "").replace(/,/g, "");
    var m = t.match(/^([-+]?[0-9]*\\.?[0-9]+(?:e[-+]?[0-9]+)?)\\s*(B|KiB|MiB|GiB)?/i);
    if (!m) return null;
    return parseFloat(m[1]) * (m[2] ? UNITS[m[2]] || 1 : 1);
  }
  function sortBy(table, column, th) {
    var body = table.tBodies[0];
    var ascending = th.getAttribute("aria-sort") !== "ascending";
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = a.cells[column] ? a.cells[column].textContent : "", y = b.cells[column] ? b.cells[column].textContent : "";
      var kx = key(x), ky = key(y), order;
      if (kx !== null && ky !== null) order = kx - ky;
      else if (kx !== null) order = -1;
      else if (ky !== null) order = 1;
      else order = x.localeCompare(y);
      return ascending ? order : -order;
    });
    rows.forEach(function (row) { body.appendChild(row); });
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (cell) { cell.removeAttribute("aria-sort"); });
    th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
  }
  document.querySelectorAll("table").forEach(function (table) {
    if (!table.tHead || !table.tBodies.length) return;
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, column) {
      th.classList.add("sortable");
      th.title = "sort by this column";
      th.addEventListener("click", function () { sortBy(table, column, th); });
    });
  });
  // Collapsed sections would be missing from paper.
  window.addEventListener("beforeprint", function () {
    document.querySelectorAll("details").forEach(function (d) { d.open = true; });
  });
})();
"""

HTML_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>{style}</style></head><body>
{body}
<script>{script}</script>
</body></html>
"""


def _html(text: str) -> str:
    return markdown.markdown(text, extensions=["tables", "fenced_code"])


def _figure(path: Path, title: str) -> str:
    """An SVG plot as a data URI: the page carries its images, and each figure keeps its own ids."""
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return (f'<figure><img src="data:image/svg+xml;base64,{data}" alt="{html.escape(title)}">'
            f"<figcaption>{html.escape(title)}</figcaption></figure>")


def _collapsed(summary_text: str, body: str, open_: bool = False) -> str:
    return f"<details{' open' if open_ else ''}><summary>{html.escape(summary_text)}</summary>\n{body}\n</details>"


def _inline_plots(page: str, run_path: Path) -> str:
    """Sections written in markdown name their figures as files under plots/; the page carries
    them instead, so it still works when mailed on its own."""

    def inline(match: re.Match) -> str:
        data = base64.b64encode((run_path / f"{match.group(1)}.svg").read_bytes()).decode("ascii")
        return f'<img src="data:image/svg+xml;base64,{data}"'

    page = re.sub(r'<img src="(plots/[^"]+?)\.(?:png|svg)"', inline, page)
    return re.sub(r'<a href="plots/[^"]*">[^<]*</a>', "", page)


def render_html(run: RunData, summary: pd.DataFrame, plot_paths: dict[str, dict[str, list[Path]]],
                evidence: str = "") -> str:
    """The same findings as report.md, answer first: summary, headline figure and problem cells,
    then per combination the plots and full answers; tables, setup and method collapsed."""
    cells, rows = len(summary), len(run.results)
    parts = [f"<h1>{html.escape(f'Run {run.run_id}')}</h1>",
             _html(f"{cells} cells, {rows} cell repetitions, from `{run.path.name}/results.csv`; "
                   "one row per cell in `summary.csv`.")]
    parts.append(_html(_summary_section(run, summary)))
    headline = next((paths for by_name in plot_paths.values() for name, paths in by_name.items()
                     if name == "throughput_vs_size"), None)
    if headline:
        svg = next(p for p in headline if p.suffix == ".svg")
        parts.append(f'<div class="headline">{_figure(svg, PLOT_TITLES["throughput_vs_size"])}</div>')
    parts.append(_html(_problems_section(summary)))
    parts.append(_html(_caveats_section(run, summary)))
    for label, group in variants(summary):
        if label:
            parts.append(f"<h1>{html.escape(f'With {label}')}</h1>")
        parts.append("<h2>Plots</h2>")
        user = user_space_only(run.results)
        for name, paths in plot_paths.get(label, {}).items():
            svg = next(p for p in paths if p.suffix == ".svg")
            parts.append(_figure(svg, PLOT_TITLES.get(name, name)))
            if user and name in COUNTER_PLOTS:
                parts.append(_html(f"*User space only:* {user.caveat}."))
        parts.append(_html(_questions_section(group, run)))
        tables = (_stream_tables(group, user_space_only(run.results)) + "\n" + _rr_table(group)) if not group.empty else "No cells.\n"
        parts.append(_collapsed("Tables: every cell (click a column to sort)", _html(tables)))
    if evidence.strip():
        parts.append(_inline_plots(_html(evidence), run.path))
    parts.append(_collapsed("Setup: hosts, link and config", _html(_setup_section(run).removeprefix("## Setup\n"))))
    parts.append(_collapsed("How the numbers are made", _html(METHOD.split("\n", 1)[1])))
    return HTML_PAGE.format(title=html.escape(f"Run {run.run_id}"), style=HTML_STYLE, script=HTML_SCRIPT,
                            body="\n".join(parts))


def _over_time(run: RunData, redo: str) -> str:
    """intervals.csv (rebuilt from the raw files for an older run folder), its figure and the
    stall list, by the run's own `checks.min_interval_fraction`."""
    checks = run.config.get("checks") if isinstance(run.config.get("checks"), dict) else {}
    fraction = float(checks.get("min_interval_fraction", MeasurementChecks.min_interval_fraction))
    series = intervals.ensure(run.path, run.results)
    found = intervals.stalls(series, fraction)
    name = None
    if not series.empty:
        try:
            plots.write_throughput_over_time(series, {s.cell_id: [r.index for r in s.low] for s in found},
                                             run.path / "plots")
        except OSError as exc:
            raise disk_error(Path(exc.filename or run.path / "plots"), exc, redo=redo) from None
        name = "plots/throughput_over_time"
    return intervals.report_section(found, fraction, name, not series.empty)


def _cpu_went(run: RunData, redo: str) -> str:
    bars = hostcounters.cpu_bars(run.results)
    name = None
    if not bars.empty:
        try:
            plots.write_where_cpu_went(bars, run.path / "plots")
        except OSError as exc:
            raise disk_error(Path(exc.filename or run.path / "plots"), exc, redo=redo) from None
        name = "plots/where_cpu_went"
    return hostcounters.report_section(run.results, name)


def write_report(run_dir: Path) -> Path:
    """summary.csv, plots/*.png and *.svg, report.md and report.html in the run folder; returns report.md.

    A torn last row of results.csv (a crash or a full disk mid-write) is set aside first, as
    `--resume` does. Every file is written whole or not at all: a full disk is a DiskError."""
    run_dir = Path(run_dir)
    if (run_dir / "results.csv").is_file():
        check_format(run_dir / "results.csv")  # another format version is refused before it is touched
        repair_torn_tail(run_dir / "results.csv")
    run = load_run(run_dir)
    redo = f"orchestrate report {run.path}"
    summary = stats.summarize(run.results)
    write_atomic(run.path / "summary.csv", summary.to_csv(index=False), redo=redo)
    try:
        written = {
            label: plots.write_plots(group, run.path / "plots" / _variant_folder(label) if label else run.path / "plots")
            for label, group in variants(summary)
        }
    except OSError as exc:
        raise disk_error(Path(exc.filename or run.path / "plots"), exc, redo=redo) from None
    evidence = _over_time(run, redo) + "\n" + tcpinfo.report_section(run.results) + "\n" + _cpu_went(run, redo)
    text = render_markdown(run, summary, {label: list(paths) for label, paths in written.items()}, evidence)
    report = run.path / "report.md"
    write_atomic(report, text, redo=redo)
    write_atomic(run.path / "report.html", render_html(run, summary, written, evidence), redo=redo)
    return report
