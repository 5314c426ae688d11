"""report.md's evidence sections, each with its figure: throughput over time (and the stalls),
TCP retransmits and limits, where the CPU went, and the comparison with iperf3. A one-pair run
gets them once; a run on several pairs once per pair, from that pair's rows."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd

from . import ceiling, conditions, iperf3, plots
from .ceiling import Ceiling
from .runfolder import RunData, pair_view
from .variants import variant_folder
from ..experiment.dimensions import with_pair
from ..roles import ROLES
from ..rows import hostcounters, intervals, layout, tcpinfo
from ..rows.durable import disk_error
from ..rows.intervals import Stall
from ..rows.results import MeasurementChecks

# results.csv's host counters of segments the TCP stack dropped or found bad.
DROP_COUNTERS = ("_host_tcp_inerrs", "_host_tcpext_tcpbacklogdrop", "_host_tcpext_tcprcvqdrop")


def sections(run: RunData, redo: str) -> str:
    """The evidence sections of a one-pair run, in report.md's order."""
    return (_over_time(run, redo) + "\n" + tcp_section(run.results, _bounded(run)) + "\n" + _cpu_went(run, redo)
            + "\n" + iperf3.section(run.results))


def per_pair(run: RunData, redo: str) -> dict[str, str]:
    """The evidence sections once per pair, each from that pair's rows, figures under plots/pairs/PAIR/."""
    # An intervals.csv without a pair column holds the "default" pair's rows (dimensions.with_pair).
    series = with_pair(intervals.ensure(run.path, run.results))
    evidence = {}
    for pair in run.pairs:
        view = pair_view(run, pair)
        folder = f"plots/pairs/{variant_folder(pair)}"
        own = series[series["pair"].astype(str) == pair]
        evidence[pair] = (_over_time(view, redo, own.reset_index(drop=True), folder) + "\n"
                          + tcp_section(view.results, _bounded(view)) + "\n" + _cpu_went(view, redo, folder)
                          + "\n" + iperf3.section(view.results))
    return evidence


def _bounded(run: RunData) -> dict[str, Ceiling]:
    return ceiling.bounded_cells(run, ceiling.cell_means(run.results))


# ---------------------------------------------------------------------------- throughput over time


def _over_time(run: RunData, redo: str, series: pd.DataFrame | None = None, folder: str = layout.PLOTS) -> str:
    """intervals.csv (rebuilt from the raw files for an older run folder), its figure and the
    stall list, by the run's own `checks.min_interval_fraction`. With several pairs, `series` is one
    pair's rows and `folder` that pair's plots folder."""
    checks = run.config.get("checks") if isinstance(run.config.get("checks"), dict) else {}
    fraction = float(checks.get("min_interval_fraction", MeasurementChecks.min_interval_fraction))
    if series is None:
        series = intervals.ensure(run.path, run.results)
    found = intervals.stalls(series, fraction)
    name = None
    if not series.empty:
        try:
            plots.write_throughput_over_time(series, {s.cell_id: [r.index for r in s.low] for s in found},
                                             run.path / folder)
        except OSError as exc:
            raise disk_error(Path(exc.filename or run.path / folder), exc, redo=redo) from None
        name = f"{folder}/throughput_over_time"
    return over_time_section(found, fraction, name, not series.empty)


def over_time_section(found: Sequence[Stall], fraction: float, plot: str | None, have_series: bool) -> str:
    """The report's "Throughput over time" section: the figure and the cells with a stall."""
    lines = ["## Throughput over time", ""]
    if not have_series:
        return "\n".join(lines + ["No per-interval samples: this run folder has neither `intervals.csv` nor "
                                   "the cells' raw agent files.", ""])
    lines += [f"Per-interval samples of every cell are in `{layout.INTERVALS}` (one row per cell, repetition, connection "
              "and interval; docs/results-schema.md).", ""]
    if plot:
        lines += [f"![Throughput over time]({plot}.png)", "", f"[SVG]({plot}.svg)", ""]
    if not found:
        lines += [f"No stall: no interval of any cell fell below {fraction:.0%} of its cell's median rate.", ""]
        return "\n".join(lines)
    lines += [f"Cells with a stall (an interval below {fraction:.0%} of the cell's median rate, all connections "
              "summed; the rule that makes a row `degraded`):", ""]
    for s in found:
        w = s.lowest
        lines.append(f"- `{s.cell_id}`: {len(s.low)} of {s.judged} intervals; lowest {w.rate / s.median:.0%} of the "
                     f"median ({w.rate * 8 / 1e9:.3g} against {s.median * 8 / 1e9:.3g} Gbit/s) at "
                     f"{w.start:.2f}-{w.end:.2f} s.")
    return "\n".join(lines + [""])


# ---------------------------------------------------------------------------- TCP


def tcp_section(results: pd.DataFrame, bounded: Mapping[str, Ceiling] | None = None) -> str:
    """The report's "TCP: retransmits and limits" section, over ok and degraded rows. `bounded`:
    the cells bounded by the link (ceiling.py), named in the "bounded by" column."""
    lines = ["## TCP: retransmits and limits", ""]
    if "tcp_retrans" not in results or results["tcp_retrans"].isna().all():
        return "\n".join(lines + ["No TCP_INFO samples in this run (an agent from before they were taken, "
                                  "or sampling off).", ""])
    bounded = bounded or {}
    cells = conditions.per_cell(results, ("ok", "degraded"), stream_only=False)
    lines += ["From the sending side's `getsockopt(TCP_INFO)` at the window's start and end, per connection "
              f"(results.csv `tcp_*`). A cell is bounded by a limit that held it for at least {tcpinfo.LIMIT_FRACTION:.0%} "
              "of its busy time, connections summed, or by the link when its throughput sat within "
              f"{ceiling.TOLERANCE:.0%} of the link's ceiling. Retransmitted bytes are at most the segments times "
              "the path MTU's payload, given as a share of the window's bytes.", ""]
    table = ["| cell | retransmits (window, all repetitions) | retransmitted share of bytes, at most | "
             "receive-window limited | send-buffer limited | bounded by |", "|---|---|---|---|---|---|"]
    retransmitted = cells[cells["retransmits"].fillna(0) > 0]
    matter = retransmitted[retransmitted["retransmit_share"] >= conditions.RETRANSMIT_SHARE_THAT_MATTERS]
    if not len(retransmitted):
        lines += ["No cell retransmitted inside its window.", ""]
    elif len(matter):
        named = ", ".join(f"`{c}` ({conditions.share_text(r['retransmit_share'])})" for c, r in matter.iterrows())
        lines += [f"**Retransmits that could matter** (at least {conditions.RETRANSMIT_SHARE_THAT_MATTERS:.0%} of the "
                  f"window's bytes) in {len(matter)} cell(s): {named}. Losses of that size can swamp the differences "
                  f"between copy modes there. {len(retransmitted) - len(matter)} other cell(s) retransmitted less.", ""]
    else:
        worst = retransmitted["retransmit_share"].max()
        lines += [f"{len(retransmitted)} cell(s) retransmitted, at most {conditions.share_text(worst)} of a cell's "
                  "window bytes: too few to move the figures.", ""]
    drops = [c for c in results.columns if c.endswith(DROP_COUNTERS)]
    if drops:
        total = pd.concat([pd.to_numeric(results[c], errors="coerce") for c in drops]).sum(min_count=1)
        if not pd.isna(total):
            lines += [f"The hosts' TCP drop counters ({', '.join(sorted({c.split('_host_')[1] for c in drops}))}) "
                      f"summed to {int(total)} over the run's windows.", ""]
    for cell, r in cells.iterrows():
        frac = (lambda v: "" if pd.isna(v) else f"{v:.0%}")  # noqa: E731
        total = "" if pd.isna(r["retransmits"]) else str(int(r["retransmits"]))
        bound = r["tcp_bound"]
        if cell in bounded:
            bound = f"the link: {bounded[cell].text()}" if bound in ("neither", "not measured") else f"{bound}; the link"
        table.append(f"| `{cell}` | {total} | {conditions.share_text(r['retransmit_share']) if total else ''} | "
                     f"{frac(r['rwnd_limited_fraction'])} | {frac(r['sndbuf_limited_fraction'])} | {bound} |")
    return "\n".join(lines + table + [""])


# ---------------------------------------------------------------------------- where the CPU went


def _cpu_went(run: RunData, redo: str, folder: str = layout.PLOTS) -> str:
    bars = cpu_bars(run.results)
    name = None
    if not bars.empty:
        try:
            plots.write_where_cpu_went(bars, run.path / folder)
        except OSError as exc:
            raise disk_error(Path(exc.filename or run.path / folder), exc, redo=redo) from None
        name = f"{folder}/where_cpu_went"
    return cpu_section(run.results, name)


def cpu_bars(results: pd.DataFrame) -> pd.DataFrame:
    """Per cell (over its ok repetitions, median) and host: CPU seconds per GB by kind. With one
    kernel under both roles, one bar per cell labelled so, not two that would count it twice."""
    if "server_host_cpu_user_s" not in results and "client_host_cpu_user_s" not in results:
        return pd.DataFrame()
    shared = hostcounters.one_kernel(results)
    ok = results[(results["status"].astype(str) == "ok") & (results["workload"].astype(str) == "stream")].copy()
    ok["cell"] = ok["cell_id"].astype(str).str.replace(r"-r\d+(?=-|$)", "", regex=True)
    roles = ("server",) if shared else ROLES
    # The host counters span the window, so the window's bytes, not the agent's whole life.
    # A window that moved nothing has no CPU per byte: NaN (no bar), never inf (as derive._per).
    gigabytes = (pd.to_numeric(ok["window_bytes"], errors="coerce") / 1e9).where(lambda g: g > 0)
    rows = []
    for cell, group in ok.groupby("cell", sort=True):
        for role in roles:
            if f"{role}_host_cpu_user_s" not in group:
                continue
            row = {"label": f"{cell} ({'one kernel, both roles' if shared else role + ' host'})"}
            for kind in ("user", "system", "softirq", "irq"):
                name = f"{role}_host_cpu_{kind}_s"
                per = pd.to_numeric(group[name], errors="coerce") / gigabytes[group.index] if name in group else None
                row[f"{kind}_s_per_gb"] = float(per.median()) if per is not None and per.notna().any() else float("nan")
            if any(pd.notna(row[f"{kind}_s_per_gb"]) for kind in ("user", "system", "softirq", "irq")):
                rows.append(row)  # a cell without host counters (iperf3's) has no bar, not an empty one
    return pd.DataFrame(rows)


def cpu_section(results: pd.DataFrame, plot: str | None) -> str:
    """The report's "Where the CPU went" section: the figure of cpu_bars, and what it counts."""
    lines = ["## Where the CPU went", ""]
    bars = cpu_bars(results)
    if bars.empty:
        return "\n".join(lines + ["No host counters in this run (an agent from before they were read).", ""])
    lines += ["Each host's CPU time over the agent's measured window, all CPUs, from `/proc/stat` read by the "
              "agent at the window's start and end (results.csv `<role>_host_*`), per GB the receiver took in "
              "that window; the median over ok repetitions. It counts everything the host ran, not only the agents.", ""]
    if hostcounters.one_kernel(results):
        lines += ["**Both roles ran on one kernel** (loopback or the namespace lab): each side's counters are the "
                  "whole machine, so one bar per cell is shown; adding the two would count it twice.", ""]
    if "mode" in results and (results["mode"].astype(str) == "iperf3").any():
        lines += ["The iperf3 reference cells have no bars: iperf3 reads no host counters.", ""]
    if plot:
        lines += [f"![Where the CPU went]({plot}.png)", "", f"[SVG]({plot}.svg)", ""]
    return "\n".join(lines)
