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


def _moves(here: pd.DataFrame, metric: str, low: int, high: int) -> list[tuple[str, float, str]]:
    """Per mode of one size: (mode label, after / before, "rose", "fell" or "within noise"), rose or
    fell only where the two thread counts' 95% intervals do not overlap: modes that move opposite
    ways are told apart, never merged into one range."""
    moves = []
    for mode, g in here.groupby("mode_label", sort=False):
        g = g.set_index("threads")
        if g.index.duplicated().any():  # one row per mode and thread count in a group of cells; never two
            raise ValueError(f"two summary rows for {mode} at one thread count")
        if low not in g.index or high not in g.index:
            continue
        before, after = g.at[low, f"{metric}_mean"], g.at[high, f"{metric}_mean"]
        if pd.isna(before) or pd.isna(after) or before <= 0 or not math.isfinite(after / before):
            continue
        bl, bh, al, ah = (g.at[t, f"{metric}_ci_{end}"] for t in (low, high) for end in ("low", "high"))
        apart = not any(pd.isna(v) for v in (bl, bh, al, ah)) and (al > bh or ah < bl)
        word = ("rose" if after > before else "fell") if apart else "within noise"
        moves.append((str(mode), float(after / before), word))
    return sorted(moves, key=lambda m: m[1])


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
        by_size, numbers = [], {}
        for size, here in stream.groupby("message_size"):
            moves = _moves(here, metric, low, high)
            for mode, value, word in moves:
                rows.append([label, size_text(size), mode, f"×{num(value)}", word])
            if not moves:
                continue
            numbers[f"{metric}@{int(size)}"] = span(v for _, v, _ in moves)
            parts = []
            for word in ("rose", "fell"):
                ratios = [v for _, v, w in moves if w == word]
                if ratios:
                    numbers[f"{metric}@{int(size)}:{word}"] = span(ratios)
                    parts.append(f"{word} {times(*span(ratios))} in {len(ratios)}")
            noise = sum(w == "within noise" for _, _, w in moves)
            if noise:
                parts.append(f"within noise in {noise}" if parts else
                             "within noise in both" if noise == 2 else f"within noise in all {noise}")
            by_size.append(f"at {size_text(size)} {', '.join(parts)}")
        if by_size:
            lead = "" if findings else f"from {low} to {high} threads, "
            findings.append(Finding("change", f"{lead}{label} per mode: {'; '.join(by_size)}",
                                    (), numbers, metric))
    if not findings:
        return refused(THREADS_QUESTION, "neither cache misses nor context switches were counted.")
    if not all(is_counted(stream, m) for m, _ in metrics[:2]):
        findings.append(Finding("caveat", f"cache misses were {NOT_COUNTED} on these hosts"))
    elif ctx.user:
        findings.append(Finding("caveat", f"{ctx.user.caveat}: the miss ratios cover user space only"))
    detail = [f"Change from {low} to {high} threads (after / before), per size and mode; it rose or fell where the "
              "two thread counts' 95% intervals do not overlap:", "",
              md_table(["metric", "size", "mode", "change", "moved"], rows), "",
              "Reading: misses per KiB that rise with threads point at contention for a shared cache (LLC); per-byte "
              "counts that stay flat mean each connection keeps to its own working set."]
    return Answer(THREADS_QUESTION, tuple(findings), tuple(detail))
