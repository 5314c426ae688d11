"""The cache and contention answers: which cache level's misses per byte fall most against
two_copy, and how misses and context switches move with threads. Both give ranges per group
(mode, or message size), never one median over cells that move opposite ways."""

from __future__ import annotations

import math

import pandas as pd

from .. import derive
from ..formatting import NOT_COUNTED, is_counted, md_table, num, size_text
from .context import Context
from .model import Answer, Finding, refused, span, times

CACHE_QUESTION = "Which cache level's misses fall most, per byte?"
THREADS_QUESTION = "How does thread count interact with cache misses and context switches?"
LEVELS = {"l1": "L1", "llc": "LLC"}


def _falls(stream: pd.DataFrame, metric: str, mode: str, base: str = "two_copy") -> pd.Series:
    """Per (size, threads) cell measured in both: (base - mode) / base, the share of misses that fell."""
    keyed = stream.set_index(["message_size", "threads"])
    a, b = keyed[keyed["mode"] == base][f"{metric}_mean"], keyed[keyed["mode"] == mode][f"{metric}_mean"]
    joined = pd.concat([a.rename("base"), b.rename("other")], axis=1).dropna()
    joined = joined[joined["base"] > 0]
    return (joined["base"] - joined["other"]) / joined["base"]


def cache_level(ctx: Context) -> Answer:
    stream = ctx.stream
    if sum(is_counted(stream, f"{level}_misses_per_kib") for level in LEVELS) < 2:
        return refused(CACHE_QUESTION, f"L1 and LLC misses were {NOT_COUNTED} on these hosts.")
    if "two_copy" not in ctx.modes or len(ctx.modes) < 2:
        return refused(CACHE_QUESTION, "it needs two_copy and another mode to compare.")
    rows, best = [], None
    for mode in sorted(ctx.modes - {"two_copy"}, key=derive.mode_rank):
        for side in ("", "sender_", "receiver_"):
            cells = []
            for level, word in LEVELS.items():
                falls = _falls(stream, f"{side}{level}_misses_per_kib", mode)
                cells.append("—" if falls.empty else f"{falls.min():+.0%} to {falls.max():+.0%}")
                if side == "" and not falls.empty and (best is None or falls.median() > best[0]):
                    best = (float(falls.median()), word, mode, span(falls))
            rows.append([mode, side.rstrip("_") or "both", *cells])
    detail = ["Fall in misses per KiB moved against two_copy, per cell (positive = fewer misses), lowest to highest:",
              "", md_table(["mode", "side", "L1-dcache", "LLC"], rows)]
    findings = []
    if best is not None and best[0] > 0:
        low, high = best[3]
        every = "in every cell" if low > 0 else "not in every cell"
        findings.append(Finding("fall", f"**{best[1]}** misses fall most, with {best[2]}: {low:+.0%} to {high:+.0%} "
                                f"per KiB against two_copy ({every})", (), {"fall": best[3]}, best[2]))
    else:
        findings.append(Finding("nofall", "neither level's misses per byte fall below two_copy's in this run"))
    if ctx.user:
        findings.append(Finding("caveat", f"{ctx.user.caveat}: these are user-space misses, not the copies'"))
    return Answer(CACHE_QUESTION, tuple(findings), tuple(detail))


def threads_and_contention(ctx: Context) -> Answer:
    stream = ctx.stream[ctx.stream["mode"] != "iperf3"] if not ctx.stream.empty else ctx.stream
    threads = sorted(int(t) for t in stream["threads"].unique()) if not stream.empty else []
    if len(threads) < 2:
        return refused(THREADS_QUESTION, f"it has {len(threads)} thread count(s).")
    low, high = threads[0], threads[-1]
    metrics = [("l1_misses_per_kib", "L1 misses per KiB"), ("llc_misses_per_kib", "LLC misses per KiB"),
               ("context_switches_per_s", "context switches per second")]
    if not is_counted(stream, "context_switches_per_s"):
        metrics[2] = ("rusage_context_switches_per_s", "context switches per second (rusage)")
    counted = [(m, label) for m, label in metrics if is_counted(stream, m)]
    findings, rows = [], []
    for metric, label in counted:
        by_size = []
        for size, here in stream.groupby("message_size"):
            table = here.pivot_table(index="mode_label", columns="threads", values=f"{metric}_mean")
            if low not in table or high not in table:
                continue
            ratios = (table[high] / table[low]).dropna()
            ratios = ratios[ratios.map(math.isfinite)]
            for mode, value in ratios.items():
                rows.append([label, size_text(size), mode, f"×{num(value)}"])
            if len(ratios):
                by_size.append((int(size), span(ratios)))
        if by_size:
            parts = [f"{times(*r)} at {size_text(s)}" for s, r in by_size]
            lead = "" if findings else f"from {low} to {high} threads, "
            findings.append(Finding("change", f"{lead}{label} moved {', '.join(parts)} "
                                    "(over modes)", tuple((s, high) for s, _ in by_size),
                                    {f"{metric}@{s}": r for s, r in by_size}, metric))
    if not findings:
        return refused(THREADS_QUESTION, "neither cache misses nor context switches were counted.")
    if not all(is_counted(stream, m) for m, _ in metrics[:2]):
        findings.append(Finding("caveat", f"cache misses were {NOT_COUNTED} on these hosts"))
    elif ctx.user:
        findings.append(Finding("caveat", f"{ctx.user.caveat}: the miss ratios cover user space only"))
    detail = [f"Change from {low} to {high} threads (after / before), per size and mode:", "",
              md_table(["metric", "size", "mode", "change"], rows), "",
              "Reading: misses per KiB that rise with threads point at contention for a shared cache (LLC); per-byte "
              "counts that stay flat mean each connection keeps to its own working set."]
    return Answer(THREADS_QUESTION, tuple(findings), tuple(detail))
