"""report.md's sections: the setup, how the numbers are made, the caveats of this run, the
problem cells and the tables, the pairs compared (a run on several pairs; pairs.py's analysis),
and the markdown page they make with the study's answers."""

from __future__ import annotations

import math
import shlex
from dataclasses import dataclass

import pandas as pd
import yaml

from . import ceiling, compare, conditions, derive, pairs
from ..rows import layout, zerocopy
from .answers import questions_section, summary_section
from .formatting import cell_value, md_table, num, size_text, with_ci
from ..roles import ROLES
from .runfolder import (RunData, UserSpaceOnly, flatten, is_local_link, link_speed_gbps, nic_facts, pair_view,
                        user_space_only)
from .variants import variant_folder, variants

def setup_section(run: RunData) -> str:
    parts = ["## Setup", ""]
    server, client = flatten(run.hosts.get("server", {})), flatten(run.hosts.get("client", {}))
    # NIC offloads run to dozens of lines; they get one line per host below the table.
    keys = [k for k in dict.fromkeys([*server, *client]) if not k.startswith("nic.offloads.")]
    parts += ["### Hosts", ""]
    if keys:
        parts += [md_table(["fact", *ROLES],
                                          [[k, server.get(k, "—"), client.get(k, "—")] for k in keys]), ""]
        for role in ROLES:
            offloads = nic_facts(run, role).get("offloads")
            if isinstance(offloads, dict) and offloads:
                on = sorted(k for k, v in offloads.items() if str(v).startswith("on"))
                parts.append(f"- {role} NIC offloads on: {', '.join(on) or 'none'}")
        parts.append("")
    else:
        parts += ["No host facts were recorded.", ""]
    parts += ["### Link", ""]
    addresses = [f"{role}: {(run.inventory.get(role) or {}).get('data_address', '—')}" for role in ROLES]
    parts.append(f"- Data addresses: {', '.join(addresses)}")
    speed = link_speed_gbps(run)
    parts.append(f"- Link speed (slower NIC): {num(speed)} Gbit/s" if not math.isnan(speed) else "- Link speed: not reported")
    rate, kind = ceiling.qdisc_rate_gbps(run)
    if not math.isnan(rate):
        slower = " (slower than the NIC: the qdisc is the link's ceiling)" if math.isnan(speed) or rate < speed else ""
        parts.append(f"- Shaped by the data interface's {kind} qdisc: {num(rate)} Gbit/s{slower}")
    if is_local_link(run):
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
- A **zero_copy** or **io_uring_zc** cell is labelled by what the kernel did: if it reported at
  least half of the completed sends as copied (`SO_EE_CODE_ZEROCOPY_COPIED`, or
  `IORING_NOTIF_USAGE_ZC_COPIED` in an io_uring notification) the cell is shown as
  "copied (not zero-copy)"; a smaller copied share is shown as a percentage.
- "not counted" means the hosts did not support the counter; it is never read as zero.
- Counts marked *user space only* come from a host where perf could not count the kernel
  (`perf_access: user-only`): they leave out the system calls and the copies inside them.
"""


def caveats_section(run: RunData, summary: pd.DataFrame) -> str:
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
        if is_local_link(run):
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
    if is_local_link(run):
        lines.append("- Server and client share one kernel (loopback or veth): no NIC, and both sides compete for the same CPUs and caches.")
    if not lines:
        return ""
    return "### Caveats for this run\n\n" + "\n".join(lines) + "\n"


def condition_flags(run: RunData, summary: pd.DataFrame) -> dict[str, list[str]]:
    """Per stream cell, the flags its conditions earn: bounded by the link (ceiling.py), by the
    receive window or the send buffer (TCP_INFO), ENOBUFS with its share of the zero-copy sends."""
    cells = conditions.per_cell(run.results)
    flags: dict[str, list[str]] = {}
    for cell, limit in ceiling.bounded_cells(run, summary).items():
        flags.setdefault(cell, []).append(f"at the link ({limit.source}, {limit.gbps:.3g} Gbit/s)")
    for cell, r in cells.iterrows():
        if r["tcp_bound"] == "receive window":
            flags.setdefault(str(cell), []).append(f"receiver-bound ({r['rwnd_limited_fraction']:.0%} rwnd-limited)")
        elif r["tcp_bound"] == "send buffer":
            flags.setdefault(str(cell), []).append(f"send-buffer-bound ({r['sndbuf_limited_fraction']:.0%})")
        if not pd.isna(r["enobufs_share"]) and r["enobufs_share"] > 0:
            flags.setdefault(str(cell), []).append(f"ENOBUFS on {conditions.share_text(r['enobufs_share'])} of sends")
    return flags


def stream_tables(summary: pd.DataFrame, user: UserSpaceOnly = UserSpaceOnly(),
                  conditions_flags: dict[str, list[str]] | None = None) -> str:
    """The stream tables; `conditions_flags` (condition_flags) adds each cell's conditions to its flags."""
    stream = summary[summary["workload"] == "stream"] if not summary.empty else summary
    if stream.empty:
        return "No stream cells in this run.\n"
    rows = []
    for _, r in stream.iterrows():
        flags = list((conditions_flags or {}).get(str(r["cell"]), []))
        if r["unstable"]:
            flags.append(f"unstable (CV {num(r['throughput_gbps_cv'] * 100, 2)}%)")
        if r["failed"]:
            flags.append(f"{int(r['failed'])} failed")
        if r.get("degraded", 0):
            flags.append(f"{int(r['degraded'])} degraded, left out")
        rows.append([
            r["mode_label"], size_text(r["message_size"]), int(r["threads"]), f"{int(r['ok'])}/{int(r['repetitions'])}",
            with_ci(r, "throughput_gbps"), with_ci(r, "messages_per_s"),
            with_ci(r, "sender_cpu_s_per_gb"), with_ci(r, "receiver_cpu_s_per_gb"),
            num(r["zerocopy_copied_fraction_max"]) if r["mode"] in zerocopy.ZERO_COPY_MODES else "",
            ", ".join(flags),
        ])
    main = md_table(["mode", "size", "threads", "ok/reps", "Gbit/s", "msg/s", "sender CPU-s/GB", "receiver CPU-s/GB",
                   "copied fraction", "flags"], rows)
    rows = []
    for _, r in stream.iterrows():
        rows.append([
            r["mode_label"], size_text(r["message_size"]), int(r["threads"]),
            cell_value(stream, r, "sender_cycles_per_byte"), cell_value(stream, r, "receiver_cycles_per_byte"),
            cell_value(stream, r, "l1_misses_per_kib"), cell_value(stream, r, "llc_misses_per_kib"),
            cell_value(stream, r, "context_switches_per_s"),
        ])
    mark = " (user space only)"
    both = mark if user.sides else ""
    counters = md_table(["mode", "size", "threads", f"sender cycles/B{mark if 'sender' in user.sides else ''}",
                       f"receiver cycles/B{mark if 'receiver' in user.sides else ''}", f"L1 misses/KiB{both}",
                       f"LLC misses/KiB{both}", "context switches/s"], rows)
    note = f"\n\n**User space only:** {user.caveat}; they are not whole counts.\n" if user else ""
    return (f"### Stream: throughput and CPU\n\n{main}\n\n### Stream: hardware and software counters\n\n"
            f"{counters}\n{note}")


def rr_table(summary: pd.DataFrame) -> str:
    rr = summary[summary["workload"] == "rr"] if not summary.empty else summary
    if rr.empty:
        return "### Request/response\n\nNo rr cells in this run: latency was not measured.\n"
    rows = [[r["mode_label"], size_text(r["message_size"]), int(r["threads"]), f"{int(r['ok'])}/{int(r['repetitions'])}",
             with_ci(r, "transactions_per_s"), with_ci(r, "latency_p50_us"), with_ci(r, "latency_p99_us"),
             "unstable" if r["unstable"] else ""] for _, r in rr.iterrows()]
    return "### Request/response\n\n" + md_table(
        ["mode", "size", "threads", "ok/reps", "transactions/s", "p50 µs", "p99 µs", "flags"], rows) + "\n"


REPORTED_SPREAD = ("throughput_gbps", "transactions_per_s", "latency_p50_us", "latency_p99_us", "cpu_s_per_gb",
                   "cycles_per_byte", "context_switches_per_s")


def problems_section(summary: pd.DataFrame) -> str:
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


def render_markdown(run: RunData, summary: pd.DataFrame, plot_names: dict[str, list[str]], evidence: str = "") -> str:
    cells, rows = len(summary), len(run.results)
    parts = [
        f"# Run {run.run_id}",
        "",
        f"{cells} cells, {rows} cell repetitions, from `{run.path.name}/results.csv`; one row per cell in `summary.csv`.",
        "",
        summary_section(run, summary),
        setup_section(run),
        METHOD,
        caveats_section(run, summary),
        problems_section(summary),
        evidence,
    ]
    for label, group in variants(summary):
        heading = f"# With {label}\n" if label else ""
        folder = f"plots/{variant_folder(label)}/" if label else "plots/"
        parts += [heading, "## Tables", "", stream_tables(group, user_space_only(run.results), condition_flags(run, group)) if not group.empty else "No cells.\n",
                  rr_table(group) if not group.empty else "", "## Plots", ""]
        user = user_space_only(run.results)
        for name in plot_names.get(label, []):
            parts += [f"### {PLOT_TITLES.get(name, name)}", "", f"![{PLOT_TITLES.get(name, name)}]({folder}{name}.png)",
                      "", f"[SVG]({folder}{name}.svg)", ""]
            if user and name in COUNTER_PLOTS:
                parts += [f"*User space only:* {user.caveat}.", ""]
        parts.append(questions_section(group, run))
    return "\n".join(parts)


def _plots_markdown(run: RunData, label: str, names: list[str]) -> list[str]:
    folder = f"plots/{variant_folder(label)}/" if label else "plots/"
    user = user_space_only(run.results)
    parts = []
    for name in names:
        parts += [f"### {PLOT_TITLES.get(name, name)}", "", f"![{PLOT_TITLES.get(name, name)}]({folder}{name}.png)",
                  "", f"[SVG]({folder}{name}.svg)", ""]
        if user and name in COUNTER_PLOTS:
            parts += [f"*User space only:* {user.caveat}.", ""]
    return parts


def pair_body(view: RunData, summary: pd.DataFrame, evidence: str) -> list[str]:
    """One pair's findings, as a one-pair report gives them (its plots are shared, drawn per pair)."""
    parts = [summary_section(view, summary), setup_section(view), caveats_section(view, summary),
             problems_section(summary), evidence]
    for label, group in variants(summary):
        parts += [f"## Tables{f' with {label}' if label else ''}", "",
                  stream_tables(group, user_space_only(view.results), condition_flags(view, group)) if not group.empty else "No cells.\n",
                  rr_table(group) if not group.empty else "", questions_section(group, view)]
    return parts


@dataclass(frozen=True)
class PairsSection:
    """The "Pairs compared" section in its three parts: the answer (baseline, missing pairs, the
    table at a glance), the host facts side by side, and the per-cell detail, which report.html
    folds away (it has a row per pair, cell and metric)."""

    head: str
    facts: str
    detail_title: str
    detail: str

    def markdown(self) -> str:
        return "\n".join([self.head, self.facts, f"### {self.detail_title}", "", self.detail])


def pairs_compared(run: RunData, baseline: str, table: pd.DataFrame, requested: bool) -> PairsSection:
    """The "Pairs compared" section: the baseline and why, the pairs at a glance, the host facts,
    and the ratio table cell by cell (report.md gives all three in that order)."""
    why = ("chosen with `--baseline`" if requested else
           f"the first pair in {run.pair_order}; choose another with `orchestrate report RUN --baseline NAME`")
    head = ["## Pairs compared", "",
            f"This run ran the same cells on {len(run.pairs)} host pairs: {', '.join(run.pairs)} ({run.pair_order}). "
            f"The baseline is **{baseline}** ({why}).", ""]
    missing = pairs.missing_pairs(run)
    if missing:
        # The folder's absolute path, quoted: the command works pasted into a shell in any directory.
        head += [f"The inventory also named {', '.join(missing)}: no cell of {'it' if len(missing) == 1 else 'theirs'} "
                 f"was measured (the pair failed before finishing any cell; `run.log` says why, and "
                 f"`orchestrate run --resume {shlex.quote(str(run.path.resolve()))}` runs it once its hosts are back).",
                 ""]
    summary = pairs.glance(table)
    if not summary.empty:
        def ratio(value: float) -> str:
            return "—" if pd.isna(value) else f"{value:.3g}"

        rows = [[r["pair"], _metric_label(r["metric"]), str(r["cells"]), ratio(r["geomean_ratio"]),
                 f"{ratio(r['min_ratio'])} – {ratio(r['max_ratio'])}",
                 str(r["better"]), str(r["worse"]), str(r["no_clear_difference"]), str(r["undecided"])]
                for _, r in summary.iterrows()]
        head += ["### At a glance", "",
                 f"Per pair and metric, over the cells measured on both: the geometric mean of pair / {baseline} "
                 f"and its range, and how many cells Welch's test (p < 0.05, as cell by cell below) calls better or "
                 f"worse than {baseline}; \"undecided\" cells had too few repetitions or counts that cannot be compared.",
                 "", md_table(["pair", "metric", "cells", f"geomean pair / {baseline}", "range", "better", "worse",
                               "no clear difference", "undecided"], rows), ""]
    headers, rows = pairs.host_facts(run)
    facts = ["### Host facts per pair", "",
             "What the host facts recorded on each pair's hosts, side by side: the main facts, and every other fact "
             "of the hardware, software or settings on which the pairs differ.", "",
             md_table(headers, rows) if rows else "No host facts were recorded.", ""]
    headers, rows = pairs.where_facts(run)
    if rows:
        facts += ["Where each pair ran: names, addresses and paths, which tell the hosts apart rather than describe "
                  "them, so the table above leaves them out.",
                  "", md_table(headers, rows), ""]
    detail = [f"Per cell, throughput and the per-byte costs the hosts counted (metrics not counted are left out): "
              f"the baseline's and the pair's means ± the half-width of their 95% intervals, the ratio pair / "
              f"{baseline} with its 95% interval, and Welch's test, as `orchestrate compare` gives for two runs. "
              f"`{layout.PAIRS}` has the same rows as plain numbers.", ""]
    if table.empty:
        detail += [f"No cell was measured on both {baseline} and another pair.", ""]
    else:
        rows = [[r["pair"], f"{r['cell_id']} ({r['note']})" if r["note"] else r["cell_id"], _metric_label(r["metric"]), compare.mean_ci_text(r, "a"),
                 compare.mean_ci_text(r, "b"), compare.ratio_text(r),
                 "—" if pd.isna(r["p_value"]) else f"{r['p_value']:.3g}", r["verdict"]]
                for _, r in table.iterrows()]
        detail += [md_table(["pair", "cell", "metric", baseline, "pair's", f"pair / {baseline} [95% CI]",
                             "Welch p", "verdict"], rows), ""]
    return PairsSection("\n".join(head), "\n".join(facts), f"Each pair against {baseline}, cell by cell", "\n".join(detail))


def _metric_label(metric: str) -> str:
    return derive.METRICS[metric].label if metric in derive.METRICS else metric


def render_pairs_markdown(run: RunData, summary: pd.DataFrame, plot_names: dict[str, list[str]], pairs_section: str,
                          evidence: dict[str, str]) -> str:
    """report.md of a run on several pairs: the pairs compared, the plots (one row of panels per
    pair), then one part per pair with that pair's answers, setup, problems and tables."""
    parts = [f"# Run {run.run_id}", "",
             f"{len(summary)} cells over {len(run.pairs)} host pairs ({', '.join(run.pairs)}), {len(run.results)} "
             f"cell repetitions, from `{run.path.name}/results.csv`; one row per pair and cell in `summary.csv`.", "",
             pairs_section]
    for label, _ in variants(summary):
        parts += [f"# Plots{f' with {label}' if label else ''}", "",
                  "Each plot has one row of panels per pair, on one y scale per metric.", "",
                  *_plots_markdown(run, label, plot_names.get(label, []))]
    for pair in run.pairs:
        view = pair_view(run, pair)
        own = summary[summary["pair"].astype(str) == pair].reset_index(drop=True) if not summary.empty else summary
        parts += [f"# Pair {pair}", "", *pair_body(view, own, evidence.get(pair, ""))]
    parts.append(METHOD)
    return "\n".join(parts)
