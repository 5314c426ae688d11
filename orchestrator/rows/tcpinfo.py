"""Per-cell TCP_INFO columns of results.csv, from the agents' per-connection samples
(docs/agent-protocol.md `tcp_info`, docs/results-schema.md), and which limit bounded a cell
(`bound`; report/evidence.py words it for report.md).

The samples come from the side that sends the data that counts (the stream sender, the rr
client): retransmits, cwnd, delivery rate and the limited-time counters are the sender's.
Counters (retransmits, busy and limited time) are deltas from the window's first sample to its
last, summed over connections; gauges (rtt, rttvar, cwnd) are the median over connections of
the last sample; delivery rate is summed; pmtu is the smallest. Anything the agent did not
sample, or the kernel did not return, is empty: never 0.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence

import pandas as pd

from .agentjson import AgentDocument, TcpInfo

COLUMNS = (
    "tcp_retrans", "tcp_rtt_us", "tcp_rttvar_us", "tcp_snd_cwnd", "tcp_delivery_rate_gbps",
    "tcp_busy_s", "tcp_rwnd_limited_s", "tcp_sndbuf_limited_s", "tcp_rwnd_limited_fraction",
    "tcp_sndbuf_limited_fraction", "tcp_pmtu",
)  # fmt: skip
INT_COLUMNS = frozenset({"tcp_retrans", "tcp_snd_cwnd", "tcp_pmtu"})

# A cell is bounded by the receive window or the send buffer when that limit held it for at
# least this fraction of its busy (sending) time, summed over connections.
LIMIT_FRACTION = 0.5
# Below that, a limit that held a cell for at least this fraction is named as a partial bound in
# the answers it affects: a fifth of the busy time is enough to narrow a difference between modes.
PARTLY_FRACTION = 0.2


def _ends(agent: AgentDocument) -> list[tuple[TcpInfo, TcpInfo]] | None:
    """(first, last) sample per connection; None if any connection lacks either."""
    pairs = []
    for thread in agent.threads_detail or []:
        samples = thread.tcp_info
        if not samples or samples[0] is None or samples[-1] is None or len(samples) < 2:
            return None
        pairs.append((samples[0], samples[-1]))
    return pairs or None


def _delta(pairs: Sequence[tuple[TcpInfo, TcpInfo]], field: str) -> int | None:
    total = 0
    for first, last in pairs:
        a, b = getattr(first, field), getattr(last, field)
        if a is None or b is None:
            return None
        total += b - a
    return total


def _over_last(pairs: Sequence[tuple[TcpInfo, TcpInfo]], field: str, how: Callable[[list[int]], float]) -> float | None:
    values = [getattr(last, field) for _, last in pairs]
    if any(v is None for v in values):
        return None
    return how(values)


def columns(agent: AgentDocument | None) -> dict[str, object]:
    """The tcp_* columns of one results row from the sampling side's document; {} if it has no samples."""
    if agent is None:
        return {}
    pairs = _ends(agent)
    if pairs is None:
        return {}
    row: dict[str, object] = {
        "tcp_retrans": _delta(pairs, "total_retrans"),
        "tcp_rtt_us": _over_last(pairs, "rtt_us", statistics.median),
        "tcp_rttvar_us": _over_last(pairs, "rttvar_us", statistics.median),
        "tcp_snd_cwnd": _over_last(pairs, "snd_cwnd", lambda v: int(statistics.median_low(v))),
        "tcp_pmtu": _over_last(pairs, "pmtu", min),
    }
    rate = _over_last(pairs, "delivery_rate", sum)
    row["tcp_delivery_rate_gbps"] = rate * 8 / 1e9 if rate is not None else None
    busy = _delta(pairs, "busy_us")
    row["tcp_busy_s"] = busy / 1e6 if busy is not None else None
    for name in ("rwnd", "sndbuf"):
        limited = _delta(pairs, f"{name}_limited_us")
        row[f"tcp_{name}_limited_s"] = limited / 1e6 if limited is not None else None
        row[f"tcp_{name}_limited_fraction"] = limited / busy if limited is not None and busy else None
    return row


def bound(rwnd_fraction: float, sndbuf_fraction: float) -> str:
    """Which limit bounded a cell: `receive window`, `send buffer`, `neither`, or `not measured`."""
    if pd.isna(rwnd_fraction) and pd.isna(sndbuf_fraction):
        return "not measured"
    rwnd = 0.0 if pd.isna(rwnd_fraction) else float(rwnd_fraction)
    sndbuf = 0.0 if pd.isna(sndbuf_fraction) else float(sndbuf_fraction)
    if max(rwnd, sndbuf) < LIMIT_FRACTION:
        return "neither"
    return "receive window" if rwnd >= sndbuf else "send buffer"
