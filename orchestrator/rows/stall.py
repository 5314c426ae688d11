"""The one stall rule: an interval whose rate, all connections summed, falls below a fraction of
the median interval's rate. It makes a results row `degraded` (results.measurement_doubts) and
puts a cell in the report's stall list (intervals.stalls), with the same threshold
(`checks.min_interval_fraction`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .agentjson import AgentDocument


@dataclass(frozen=True)
class Rate:
    """One interval of a cell, all connections summed: seconds after the window's start."""

    index: int
    start: float
    end: float
    rate: float  # bytes per second


def summed_rates(ends: Sequence[float], moved: Sequence[float], nominal: float) -> list[Rate]:
    """Per-interval rates from the interval ends and the bytes summed over connections.

    A short last interval (the window is not a multiple of the interval) is too noisy to judge
    and left out, as is an interval of no length."""
    rates = []
    for i, end in enumerate(ends):
        start = ends[i - 1] if i else 0.0
        length = end - start
        if length <= 0 or (nominal and length < 0.5 * nominal):
            continue
        rates.append(Rate(i, start, end, moved[i] / length))
    return rates


def low_intervals(rates: Sequence[Rate], fraction: float) -> tuple[list[Rate], float]:
    """The intervals whose rate is below `fraction` of the median interval's rate, and that
    median: the one stall rule (a `degraded` row and the report's stall list). Fewer than two
    judged intervals, or a median of 0, judge nothing."""
    if len(rates) < 2:
        return [], float("nan")
    median = float(np.median([r.rate for r in rates]))
    if median <= 0:
        return [], median
    return [r for r in rates if r.rate < fraction * median], median


def agent_rates(measurer: AgentDocument) -> list[Rate]:
    """The summed per-interval rates of one agent document (its connections summed: one slow
    connection beside fast ones is sharing, not a stall; all of them slow at once is)."""
    threads = measurer.threads_detail or []
    if not threads:
        return []
    count = max(len(t.intervals) for t in threads)
    ends = [max(t.intervals[i].t for t in threads if i < len(t.intervals)) for i in range(count)]
    moved = [sum(t.intervals[i].bytes for t in threads if i < len(t.intervals)) for i in range(count)]
    return summed_rates(ends, moved, measurer.interval_s or 0.0)
