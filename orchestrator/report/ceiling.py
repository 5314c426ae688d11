"""Which stream cells were bounded by the link: their throughput within a few percent of the
slowest ceiling the run knows, among the NIC's speed (host facts `nic.speed`), the rate of a
rate-limiting root qdisc on the data interface (`nic.qdisc_rate_mbit`, such as tbf's), and the
rate the other cells saturate at (a plateau that cells of at least two modes reach). Such a cell
says how fast the link was, not what the copies cost.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from ..roles import ROLES
from .runfolder import RunData, link_speed_gbps, nic_facts
from .stats import cell_key

# "Within a few percent": a cell at or above this fraction of the ceiling sat at it.
TOLERANCE = 0.05
# A plateau is a ceiling only when this many cells, of at least two modes, reach it.
PLATEAU_CELLS = 3


@dataclass(frozen=True)
class Ceiling:
    gbps: float
    source: str  # "the NIC speed", "the tbf qdisc rate", "the rate the cells saturate at"

    def text(self) -> str:
        return f"{self.source} ({self.gbps:.3g} Gbit/s)"


def qdisc_rate_gbps(run: RunData) -> tuple[float, str]:
    """The slower data interface's rate-limiting root qdisc, in Gbit/s, and its kind; NaN if none
    (runs from before host facts held the qdisc have none)."""
    found = []
    for role in ROLES:
        nic = nic_facts(run, role)
        rate = nic.get("qdisc_rate_mbit")
        if isinstance(rate, (int, float)) and not isinstance(rate, bool) and rate > 0:
            found.append((float(rate) / 1000, str(nic.get("qdisc") or "qdisc")))
    return min(found) if found else (math.nan, "")


# Reference cells (iperf3) are another program: their rates neither make nor meet a plateau here.
REFERENCE_MODES = ("iperf3",)


def _stream(summary: pd.DataFrame) -> pd.DataFrame:
    if summary.empty:
        return summary
    return summary[(summary["workload"] == "stream") & summary["throughput_gbps_mean"].notna()
                   & ~summary["mode"].isin(REFERENCE_MODES)]


def cell_means(results: pd.DataFrame) -> pd.DataFrame:
    """From results.csv's rows, what the rules here read of a summary: per cell its workload,
    mode and mean throughput over its ok repetitions."""
    ok = results[results["status"].astype(str) == "ok"].copy()
    ok["cell"] = ok["cell_id"].astype(str).map(cell_key)
    ok["throughput_gbps"] = pd.to_numeric(ok["throughput_gbps"], errors="coerce")
    return (ok.groupby("cell", sort=True)
            .agg(workload=("workload", "first"), mode=("mode", "first"), throughput_gbps_mean=("throughput_gbps", "mean"))
            .reset_index())


def plateau_gbps(summary: pd.DataFrame) -> float:
    """The highest cell mean when at least PLATEAU_CELLS cells of two or more modes sit within
    TOLERANCE of it (all of them held at one rate, whatever their copies cost); else NaN."""
    stream = _stream(summary)
    if stream.empty:
        return math.nan
    top = float(stream["throughput_gbps_mean"].max())
    near = stream[stream["throughput_gbps_mean"] >= (1 - TOLERANCE) * top]
    if len(near) >= PLATEAU_CELLS and near["mode"].nunique() >= 2:
        return top
    return math.nan


def ceiling(run: RunData, summary: pd.DataFrame) -> Ceiling | None:
    """The slowest ceiling the run shows, or None. A NIC speed that some cell beat (a veth's
    nominal 10 Gbit/s, loopback) is no ceiling and is left out."""
    stream = _stream(summary)
    fastest = float(stream["throughput_gbps_mean"].max()) if not stream.empty else math.nan
    candidates = []
    speed = link_speed_gbps(run)
    if not math.isnan(speed) and not (fastest > (1 + TOLERANCE) * speed):
        candidates.append(Ceiling(speed, "the NIC speed"))
    rate, kind = qdisc_rate_gbps(run)
    if not math.isnan(rate):
        candidates.append(Ceiling(rate, f"the {kind} qdisc rate"))
    plateau = plateau_gbps(summary)
    if not math.isnan(plateau):
        # A plateau just under a known ceiling is that ceiling (a tbf at 1 Gbit/s delivers 0.99): named by its cause.
        named = [c for c in candidates if (1 - TOLERANCE) * c.gbps <= plateau <= c.gbps * (1 + TOLERANCE)]
        candidates.append(min(named, key=lambda c: c.gbps) if named else Ceiling(plateau, "the rate the cells saturate at"))
    return min(candidates, key=lambda c: c.gbps) if candidates else None


def bounded_cells(run: RunData, summary: pd.DataFrame) -> dict[str, Ceiling]:
    """The stream cells (summary `cell`) whose mean throughput is within TOLERANCE of the ceiling."""
    limit = ceiling(run, summary)
    if limit is None:
        return {}
    stream = _stream(summary)
    held = stream[stream["throughput_gbps_mean"] >= (1 - TOLERANCE) * limit.gbps]
    return {str(cell): limit for cell in held["cell"]}
