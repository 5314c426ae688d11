"""The stall rules, all connections summed, with one threshold (`checks.min_interval_fraction`).

A results row (results.measurement_doubts, through `doubts`) is judged on the agent's progress
samples, taken every 0.1 s whatever the interval (docs/agent-protocol.md): a run of samples
below the fraction of the usual sample rate lasting at least MIN_GAP_S makes the row `degraded`,
with the gap's length and place. The usual rate is the samples' median, or their mean when that
is higher: a stall of over half the window pulls the median down, but cannot pull the mean below
the rest's share. A 0.1 s sample is whole inside any gap of 0.4 s or more, wherever the gap falls,
so such a gap always shows at least MIN_GAP_S of low samples.

An agent document from before the samples were recorded is judged by the interval rule, as it
always was: an interval whose rate is below the fraction of the median interval's rate. That
rule also makes the report's stall list (intervals.stalls, from intervals.csv). A window with too
few samples (or intervals) to judge says so in a doubt of its own: never a silent `ok`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

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


# The shortest gap that makes a row degraded: three whole samples at the finest step, so one
# late wake-up of a busy host's scheduler (a single low sample) does not.
MIN_GAP_S = 0.3
# A sample ends when the timekeeper wakes, a few milliseconds either side of its time: three
# whole samples can span 0.297 s.
WAKE_JITTER_S = 0.02
# Fewer judged samples than this, and the yardstick is too noisy to judge a gap against.
MIN_SAMPLES = 5


def sample_rates(measurer: AgentDocument) -> list[Rate] | None:
    """The progress samples' rates (index: the sample's place), or None when the document has no
    samples (an agent from before they were recorded). A sample shorter than half a step (the
    window's end just after the last sample, on a stream receiver whose data ended early) is too
    noisy to judge and left out, as is one of no length."""
    if measurer.progress is None:
        return None
    step = measurer.progress.step_s
    rates, start = [], 0.0
    for i, sample in enumerate(measurer.progress.samples):
        length = sample.t - start
        if length >= 0.5 * step and length > 0:
            rates.append(Rate(i, start, sample.t, sample.bytes / length))
        start = max(start, sample.t)
    return rates


@dataclass(frozen=True)
class Gap:
    """Consecutive judged samples under the threshold: seconds after the window's start."""

    start: float
    end: float
    moved: float  # bytes in it
    usual: float  # the usual sample rate it was judged against, bytes per second

    @property
    def length(self) -> float:
        return self.end - self.start

    def text(self) -> str:
        share = "no bytes" if self.moved == 0 else f"{self.moved / self.length / self.usual:.0%} of the usual rate"
        return f"stalled {self.length:.1f} s ({share} from {self.start:.2f} s to {self.end:.2f} s)"


@dataclass(frozen=True)
class FineVerdict:
    """The progress-sample rule on one document: the gaps found, or why it could not judge."""

    judged: int
    usual: float = float("nan")
    gaps: list[Gap] = field(default_factory=list)
    too_short: bool = False


def gaps(rates: Sequence[Rate], fraction: float, min_gap: float = MIN_GAP_S) -> FineVerdict:
    """The runs of consecutive samples below `fraction` of the usual rate lasting `min_gap` or more.
    No bytes in any sample is one gap over the whole window."""
    if len(rates) < MIN_SAMPLES:
        return FineVerdict(len(rates), too_short=True)
    mean = sum(r.rate * (r.end - r.start) for r in rates) / sum(r.end - r.start for r in rates)
    usual = max(float(np.median([r.rate for r in rates])), mean)
    found: list[Gap] = []
    run: list[Rate] = []
    for r in [*rates, None]:
        if r is not None and (r.rate < fraction * usual or usual <= 0):
            run.append(r)
            continue
        if run and run[-1].end - run[0].start >= min_gap - WAKE_JITTER_S:
            found.append(Gap(run[0].start, run[-1].end, sum(x.rate * (x.end - x.start) for x in run), usual))
        run = []
    return FineVerdict(len(rates), usual, found)


def doubts(measurer: AgentDocument, fraction: float) -> list[str]:
    """What the stall rules say against a measurement, as results.measurement_doubts words them:
    the gaps in its progress samples, or (an older agent) its low intervals, or that its window
    was too short to judge."""
    rates = sample_rates(measurer)
    if rates is not None:
        verdict = gaps(rates, fraction)
        if verdict.too_short:
            assert measurer.progress is not None
            return [f"window too short to judge stalls ({verdict.judged} progress samples of "
                    f"{measurer.progress.step_s:g} s, {MIN_SAMPLES} needed)"]
        return [g.text() for g in verdict.gaps]
    by_interval = agent_rates(measurer)
    low, median = low_intervals(by_interval, fraction)
    if len(by_interval) < 2:
        return [f"window too short to judge stalls ({len(by_interval)} judged interval(s), and no progress "
                "samples: an agent from before they were recorded)"]
    if not low:
        return []
    worst = min(low, key=lambda r: r.rate)
    return [f"{len(low)} of {len(by_interval)} intervals below {fraction:.0%} of the "
            f"median rate (lowest {worst.rate / median:.0%}, {worst.start:.2f}-{worst.end:.2f}s)"]
