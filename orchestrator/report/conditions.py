"""What held each stream cell back or qualifies its numbers, from results.csv's rows: the share
of zero-copy sends that hit ENOBUFS, the TCP limits (receive window, send buffer) and the share
of the window's bytes retransmitted, and the hosts' own counters (how busy the CPUs were, host
CPU per GB, bytes per NET_RX softirq). One row per cell, the median over its ok repetitions
(sums for ENOBUFS and retransmits); the answers, the tables' flags and the TCP section read them.
"""

from __future__ import annotations

import pandas as pd

from ..rows import tcpinfo
from .derive import column
from .stats import cell_key

CPU_KINDS = ("user", "system", "softirq", "irq")
# TCP/IP headers without options: a segment carries at most the path MTU less these bytes, so
# retransmitted segments × that payload bounds the retransmitted bytes from above.
HEADER_BYTES = 40
# Retransmits below this share of a cell's window bytes are too few to move its figures.
RETRANSMIT_SHARE_THAT_MATTERS = 0.01

COLUMNS = ("enobufs_share", "zerocopy_sends", "zerocopy_enobufs", "rwnd_limited_fraction", "sndbuf_limited_fraction",
           "tcp_bound", "retransmits", "retransmit_share", "host_busy_share", "host_cpu_s_per_gb",
           "bytes_per_net_rx")


def _roles(rows: pd.DataFrame) -> tuple[str, ...]:
    """The roles whose host counters count distinct machines: one when both share a kernel."""
    if "host_shared_kernel" not in rows:
        return ("server", "client")
    # Rows without host counters (a reference program's) say nothing either way.
    said = rows["host_shared_kernel"].dropna().astype(str).str.lower()
    return ("server",) if len(said) and said.eq("true").all() else ("server", "client")


def _receiver(rows: pd.DataFrame) -> pd.Series:
    sender = rows["sender"].fillna("server").astype(str) if "sender" in rows else pd.Series("server", index=rows.index)
    return sender.map({"server": "client", "client": "server"}).fillna("client")


def per_cell(results: pd.DataFrame, statuses: tuple[str, ...] = ("ok",), stream_only: bool = True) -> pd.DataFrame:
    """COLUMNS per cell (index: the cell id without its repetition) over its repetitions of the given
    statuses: stream cells only unless `stream_only` is False (TCP limits hold for rr cells too)."""
    keep = results["status"].astype(str).isin(statuses)
    if stream_only:
        keep &= results["workload"].astype(str) == "stream"
    ok = results[keep].copy()
    if ok.empty:
        return pd.DataFrame(columns=COLUMNS)
    ok["cell"] = ok["cell_id"].astype(str).map(cell_key)
    window = column(ok, "window_bytes").where(lambda b: b > 0)
    roles = _roles(ok)
    busy = sum(column(ok, f"{role}_host_cpu_{kind}_s") for role in roles for kind in CPU_KINDS)
    idle = sum(column(ok, f"{role}_host_cpu_idle_s") for role in roles)
    ok["_busy_share"] = busy / (busy + idle).where(lambda t: t > 0)
    ok["_host_cpu_s_per_gb"] = busy / (window / 1e9)
    receiver = _receiver(ok)
    net_rx = column(ok, "server_host_softirq_net_rx").where(receiver == "server", column(ok, "client_host_softirq_net_rx"))
    ok["_bytes_per_net_rx"] = window / net_rx.where(net_rx > 0)
    payload = (column(ok, "tcp_pmtu") - HEADER_BYTES).where(lambda p: p > 0)
    ok["_retrans_bytes"] = column(ok, "tcp_retrans") * payload
    ok["_window"] = window
    for name in ("zerocopy_sends", "zerocopy_enobufs", "tcp_retrans", "tcp_rwnd_limited_fraction",
                 "tcp_sndbuf_limited_fraction"):
        ok[f"_{name}"] = column(ok, name)
    rows = []
    for cell, group in ok.groupby("cell", sort=True):
        sends = group["_zerocopy_sends"].sum(min_count=1)
        enobufs = group["_zerocopy_enobufs"].sum(min_count=1)
        rwnd, sndbuf = group["_tcp_rwnd_limited_fraction"].median(), group["_tcp_sndbuf_limited_fraction"].median()
        retrans = group["_tcp_retrans"].sum(min_count=1)
        retrans_bytes = group["_retrans_bytes"].sum(min_count=1)
        rows.append({
            "cell": cell,
            "zerocopy_sends": sends, "zerocopy_enobufs": enobufs,
            "enobufs_share": enobufs / sends if sends and sends > 0 and not pd.isna(enobufs) else float("nan"),
            "rwnd_limited_fraction": rwnd, "sndbuf_limited_fraction": sndbuf, "tcp_bound": tcpinfo.bound(rwnd, sndbuf),
            "retransmits": retrans,
            "retransmit_share": (retrans_bytes / group["_window"].sum(min_count=1)
                                 if not pd.isna(retrans_bytes) and group["_window"].sum() > 0 else float("nan")),
            "host_busy_share": group["_busy_share"].median(),
            "host_cpu_s_per_gb": group["_host_cpu_s_per_gb"].median(),
            "bytes_per_net_rx": group["_bytes_per_net_rx"].median(),
        })
    return pd.DataFrame(rows).set_index("cell")


def share_text(share: float) -> str:
    """A share as a percentage with the digits that tell small shares apart (0.08%, 3%, 43%)."""
    if pd.isna(share):
        return "—"
    percent = share * 100
    if percent == 0:
        return "0%"
    if percent < 1:
        return f"{percent:.2g}%"
    return f"{percent:.0f}%"
