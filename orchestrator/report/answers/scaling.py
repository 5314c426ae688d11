"""How throughput scales with threads.

Rules, each stated where it acts:
- No median across opposite moves: the first step (fewest threads to the next count) and the rest
  (from there to the most) are told apart, each as a range over the (mode, size) cells.
- A step is a finding only where the two thread counts' 95% throughput intervals do not overlap;
  the others are counted as within noise. Rises and falls are given apart, each as a range.
- A step is super-linear only where even the least speed-up both intervals allow (low end after
  over high end before) beats the thread ratio. It is
  explained from the run's own host counters: how busy the CPUs already were before the step, how
  much host CPU each GB took before and after, and how many bytes each NET_RX softirq carried
  (coalescing). Where the counters are missing or do not show bytes getting cheaper, it is said to
  be unexplained; it is never presented as plain scaling.
- A cell bounded by the link (ceiling.py) at the step's upper end is left out of the ranges: the
  link was the limit there, not threads or copies.
"""

from __future__ import annotations

import pandas as pd


from .. import derive
from ..formatting import md_table, num, size_text
from .context import Context
from .model import Answer, Finding, cells_text, percents, refused, span, times

QUESTION = "How does throughput scale with threads?"
REFERENCE_MODES = ("iperf3",)


def _steps(threads: list[int]) -> list[tuple[int, int]]:
    """The first step, then the rest as one: [1, 2, 4, 8] -> (1, 2), (2, 8)."""
    if len(threads) < 2:
        return []
    steps = [(threads[0], threads[1])]
    if len(threads) > 2:
        steps.append((threads[1], threads[-1]))
    return steps


def _ratio(ctx: Context, low_cell: str, high_cell: str, name: str) -> float:
    low, high = ctx.condition(low_cell, name), ctx.condition(high_cell, name)
    return float(high / low) if not pd.isna(low) and not pd.isna(high) and low > 0 else float("nan")


def scaling(ctx: Context) -> Answer:
    stream = ctx.stream[~ctx.stream["mode"].isin(REFERENCE_MODES)] if not ctx.stream.empty else ctx.stream
    threads = sorted(int(t) for t in stream["threads"].unique()) if not stream.empty else []
    if len(threads) < 2:
        return refused(QUESTION, f"it has {len(threads)} thread count(s).")
    findings, rows = [], []
    for low, high in _steps(threads):
        moves, held = [], []
        for (mode, size), group in sorted(stream.groupby(["mode", "message_size"]),
                                          key=lambda item: (derive.mode_rank(item[0][0]), item[0][1])):
            g = group.set_index("threads")
            if low not in g.index or high not in g.index:
                continue
            base, top = g.at[low, "throughput_gbps_mean"], g.at[high, "throughput_gbps_mean"]
            if pd.isna(base) or pd.isna(top) or base <= 0:
                continue
            cell = (int(size), high)
            lo_id, hi_id = str(g.at[low, "cell"]), str(g.at[high, "cell"])
            lo_low, lo_high = g.at[low, "throughput_gbps_ci_low"], g.at[low, "throughput_gbps_ci_high"]
            hi_low, hi_high = g.at[high, "throughput_gbps_ci_low"], g.at[high, "throughput_gbps_ci_high"]
            judged = not any(pd.isna(v) for v in (lo_low, lo_high, hi_low, hi_high))
            move = {"cell": cell, "mode": mode, "speedup": float(top / base), "low_id": lo_id, "high_id": hi_id,
                    "resolved": judged and (hi_low > lo_high or hi_high < lo_low),
                    "least": float(hi_low / lo_high) if judged and lo_high > 0 else float("nan"),
                    "busy_before": ctx.condition(lo_id, "host_busy_share"),
                    "busy_after": ctx.condition(hi_id, "host_busy_share"),
                    "cpu_per_gb": _ratio(ctx, lo_id, hi_id, "host_cpu_s_per_gb"),
                    "net_rx": _ratio(ctx, lo_id, hi_id, "bytes_per_net_rx")}
            rows.append([g["mode_label"].iloc[0], size_text(size), f"{low}→{high}", num(base), num(top), f"×{num(move['speedup'])}",
                         f"{move['speedup'] / (high / low):.0%}", percents(move["busy_before"], move["busy_before"]),
                         percents(move["busy_after"], move["busy_after"]),
                         f"×{num(move['cpu_per_gb'])}", f"×{num(move['net_rx'])}",
                         "link" if hi_id in ctx.bounded else "",
                         "resolved" if move["resolved"] else "within noise"])
            (held if hi_id in ctx.bounded else moves).append(move)
        findings += _step_findings(ctx, low, high, moves, held)
    if not rows:
        return refused(QUESTION, f"no cell has throughput at both {threads[0]} and {threads[1]} threads.")
    detail = ("Per mode and size, each step: throughput at both ends, the speed-up and its share of linear, the "
              "host's busy share before and after, and how host CPU per GB and bytes per NET_RX softirq changed "
              "(after / before; from the hosts' /proc counters, results.csv `<role>_host_*`), and whether the two "
              "throughput intervals are apart (resolved) or overlap (within noise):", "",
              md_table(["mode", "size", "threads", "Gbit/s before", "Gbit/s after", "speed-up", "of linear",
                        "host busy before", "host busy after", "host CPU per GB", "bytes per NET_RX", "bounded by",
                        "95% intervals"],
                       rows))
    return Answer(QUESTION, tuple(findings), detail)


def _step_findings(ctx: Context, low: int, high: int, moves: list[dict], held: list[dict]) -> list[Finding]:
    findings = []
    linear = high / low
    if moves:
        rose = [m for m in moves if m["resolved"] and m["speedup"] > 1]
        fell = [m for m in moves if m["resolved"] and m["speedup"] < 1]
        noise = len(moves) - len(rose) - len(fell)
        busy = [m["busy_after"] for m in moves if not pd.isna(m["busy_after"])]
        numbers: dict[str, tuple[float, float]] = {}
        parts = []
        for word, group in (("rose", rose), ("fell", fell)):
            if group:
                numbers[word] = span(m["speedup"] for m in group)
                parts.append(f"{word} {times(*numbers[word])} in {len(group)}")
        text = f"from {low} to {high} threads (×{linear:g}) throughput "
        text += " and ".join(parts) + f" of {len(moves)} cells" if parts else ("moved within noise in both cells" if len(moves) == 2 else f"moved within noise in all {len(moves)} cells")
        if parts and noise:
            text += f" (within noise in {noise})"
        if busy:
            numbers["busy_after"] = span(busy)
            text += f", with the host {percents(*numbers['busy_after'])} busy"
        findings.append(Finding("step", text, tuple(m["cell"] for m in moves), numbers, f"{low}->{high}"))
        superlinear = [m for m in moves if m["resolved"] and m["least"] > linear]
        if superlinear:
            findings.append(_superlinear(low, high, superlinear, len(moves)))
    if held:
        limit = ctx.bounded[held[0]["high_id"]]
        cells = sorted({m["cell"] for m in held})  # one (size, threads) cell per mode: named once
        findings.append(Finding("link", f"at {high} threads {cells_text(cells)} sat at "
                                f"{limit.text()}: the link was the limit there, not threads or copies",
                                tuple(cells), {"ceiling_gbps": (limit.gbps, limit.gbps)},
                                f"{low}->{high}"))
    return findings


def _superlinear(low: int, high: int, cells: list[dict], total: int) -> Finding:
    numbers = {"speedup": span(m["speedup"] for m in cells)}
    text = f"super-linear in {len(cells)} of {total} cells ({times(*numbers['speedup'])})"
    busy = [m["busy_before"] for m in cells if not pd.isna(m["busy_before"])]
    cheaper = [m for m in cells if not pd.isna(m["cpu_per_gb"]) and m["cpu_per_gb"] < 1]
    if not busy or not cheaper:
        return Finding("superlinear", text + ", unexplained: the hosts' counters do not show why" if busy else
                       text + ", unexplained: this run has no host counters to say why",
                       tuple(m["cell"] for m in cells), numbers, f"{low}->{high}")
    numbers["busy_before"] = span(busy)
    numbers["cpu_per_gb_fall"] = span(1 / m["cpu_per_gb"] for m in cheaper)
    because = (f": with {low} thread{'s' if low != 1 else ''} the host was already {percents(*numbers['busy_before'])} "
               f"busy, and bytes got cheaper (host CPU per GB fell {times(*numbers['cpu_per_gb_fall'])}")
    rx = [m["net_rx"] for m in cheaper if not pd.isna(m["net_rx"])]
    if rx:
        numbers["net_rx_rise"] = span(rx)
        because += f", bytes per NET_RX softirq {times(*numbers['net_rx_rise'])} as writes coalesced"
    because += ")"
    if len(cheaper) < len(cells):
        because += f"; {len(cells) - len(cheaper)} unexplained: their bytes did not get cheaper"
    return Finding("superlinear", text + because, tuple(m["cell"] for m in cells), numbers, f"{low}->{high}")



