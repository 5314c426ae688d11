"""Deriving, for every row of results.csv (read by `results.read_results`), the metrics the study compares.

The per-row figures here are what `stats` summarises over repetitions and what the plots
and the report show; each one is computed from columns of results.csv only, so every
number traces back to the agents' JSON and perf files of its cell.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..roles import ROLES
from ..rows import zerocopy


# perf events and rusage figures that exist once per role and are mapped to sender/receiver.
SIDE_COLUMNS = ("cpu_s", "cycles", "l1_dcache_load_misses", "llc_load_misses", "context_switches")

BYTES_PER_GB = 1e9
BYTES_PER_KIB = 1024

# Tables and legends list modes from the most copies to the fewest.
MODE_ORDER = ("two_copy", "one_copy", "zero_copy", "sendfile", "io_uring", "io_uring_zc")


@dataclass(frozen=True)
class Metric:
    name: str
    label: str
    unit: str
    # True: higher is better (throughput); False: lower is better (CPU, misses, latency).
    higher_is_better: bool


METRICS: dict[str, Metric] = {
    m.name: m
    for m in (
        Metric("throughput_gbps", "Throughput", "Gbit/s", True),
        Metric("messages_per_s", "Messages", "msg/s", True),
        Metric("transactions_per_s", "Transactions", "trans/s", True),
        Metric("latency_mean_us", "Latency mean", "µs", False),
        Metric("latency_p50_us", "Latency p50", "µs", False),
        Metric("latency_p99_us", "Latency p99", "µs", False),
        Metric("cpu_s_per_gb", "CPU per GB (both sides)", "CPU-s/GB", False),
        Metric("sender_cpu_s_per_gb", "Sender CPU per GB", "CPU-s/GB", False),
        Metric("receiver_cpu_s_per_gb", "Receiver CPU per GB", "CPU-s/GB", False),
        Metric("cpu_ns_per_byte", "CPU time per byte (both sides)", "ns/B", False),
        Metric("cycles_per_byte", "Cycles per byte (both sides)", "cycles/B", False),
        Metric("sender_cycles_per_byte", "Sender cycles per byte", "cycles/B", False),
        Metric("receiver_cycles_per_byte", "Receiver cycles per byte", "cycles/B", False),
        Metric("l1_misses_per_kib", "L1-dcache load misses per KiB (both sides)", "misses/KiB", False),
        Metric("sender_l1_misses_per_kib", "Sender L1-dcache misses per KiB", "misses/KiB", False),
        Metric("receiver_l1_misses_per_kib", "Receiver L1-dcache misses per KiB", "misses/KiB", False),
        Metric("llc_misses_per_kib", "LLC load misses per KiB (both sides)", "misses/KiB", False),
        Metric("sender_llc_misses_per_kib", "Sender LLC misses per KiB", "misses/KiB", False),
        Metric("receiver_llc_misses_per_kib", "Receiver LLC misses per KiB", "misses/KiB", False),
        Metric("context_switches_per_s", "Context switches (perf, both sides)", "switches/s", False),
        Metric("rusage_context_switches_per_s", "Context switches (rusage, both sides)", "switches/s", False),
        Metric("zerocopy_copied_fraction", "Zero-copy sends copied", "fraction", False),
    )
}

# The metrics made from perf counters, and the sides whose counts each one adds up: where perf
# counted user space only on any of them (results.csv `<role>_perf_counts` = `user`), the
# metric is a user-space-only count too, never a whole one.
COUNTER_METRICS: dict[str, tuple[str, ...]] = {
    **{f"{side}_{m}": (side,) for side in ("sender", "receiver")
       for m in ("cycles_per_byte", "l1_misses_per_kib", "llc_misses_per_kib")},
    **{m: ("sender", "receiver") for m in ("cycles_per_byte", "l1_misses_per_kib", "llc_misses_per_kib")},
    "context_switches_per_s": ROLES,
}
USER_ONLY = "user"

# The metrics whose spread decides whether a cell is flagged as unstable.
PRIMARY_METRICS = ("throughput_gbps", "transactions_per_s", "latency_p50_us")


def column(frame: pd.DataFrame, name: str) -> pd.Series:
    """A column, or all-NaN when results.csv does not have it (an event perf did not count)."""
    if name in frame.columns:
        return pd.to_numeric(frame[name], errors="coerce").astype(float)
    return pd.Series(np.nan, index=frame.index, dtype=float)


def _per(numerator: pd.Series, denominator: pd.Series) -> pd.Series:
    # A zero or missing denominator gives NaN, never inf and never 0.
    return numerator / denominator.where(denominator > 0)


def derive_metrics(results: pd.DataFrame) -> pd.DataFrame:
    """results.csv rows with the derived metrics added (see METRICS); failed rows get NaN.

    Per-byte figures divide by the bytes the receiver took in over the agent's whole life
    (`bytes_received`), not the window's bytes: perf and rusage count the whole run,
    warm-up included, so both sides of the ratio must cover the same span. They are given
    for stream cells only; in rr both sides send and receive and no byte total covers both.
    """
    out = results.copy()
    ok = out["status"].astype(str).eq("ok")
    stream = ok & out["workload"].astype(str).eq("stream")

    duration = column(out, "duration_s")
    # results.csv is the contract: throughput there is already the receiver's window bytes over
    # its measured window (orchestrator/results.py), so it is read, not computed a second time.
    out["throughput_gbps"] = column(out, "throughput_gbps").where(ok)
    for name in ("messages_per_s", "transactions_per_s", "latency_mean_us", "latency_p50_us", "latency_p99_us"):
        out[name] = column(out, name).where(ok)

    sender_is_server = out.get("sender", pd.Series("server", index=out.index)).fillna("server").eq("server")
    for name in SIDE_COLUMNS:
        server, client = column(out, f"server_{name}"), column(out, f"client_{name}")
        out[f"sender_{name}"] = server.where(sender_is_server, client).where(stream)
        out[f"receiver_{name}"] = client.where(sender_is_server, server).where(stream)

    moved = column(out, "bytes_received").where(stream)
    gigabytes, kibibytes = moved / BYTES_PER_GB, moved / BYTES_PER_KIB
    for side in ("sender", "receiver"):
        out[f"{side}_cpu_s_per_gb"] = _per(out[f"{side}_cpu_s"], gigabytes)
        out[f"{side}_cycles_per_byte"] = _per(out[f"{side}_cycles"], moved)
        out[f"{side}_l1_misses_per_kib"] = _per(out[f"{side}_l1_dcache_load_misses"], kibibytes)
        out[f"{side}_llc_misses_per_kib"] = _per(out[f"{side}_llc_load_misses"], kibibytes)
    # Sums stay NaN when either side is missing: half a measurement is not a total.
    out["cpu_s_per_gb"] = out["sender_cpu_s_per_gb"] + out["receiver_cpu_s_per_gb"]
    out["cpu_ns_per_byte"] = out["cpu_s_per_gb"]  # 1 CPU-s per GB is 1 ns per byte
    out["cycles_per_byte"] = out["sender_cycles_per_byte"] + out["receiver_cycles_per_byte"]
    out["l1_misses_per_kib"] = out["sender_l1_misses_per_kib"] + out["receiver_l1_misses_per_kib"]
    out["llc_misses_per_kib"] = out["sender_llc_misses_per_kib"] + out["receiver_llc_misses_per_kib"]

    # perf and rusage see the agent from start to exit: warm-up plus window, near enough.
    span = (column(out, "warmup_s").fillna(0) + duration).where(ok)
    perf_switches = column(out, "server_context_switches") + column(out, "client_context_switches")
    out["context_switches_per_s"] = _per(perf_switches, span)
    rusage_switches = sum(
        column(out, f"{role}_{kind}_cs") for role in ROLES for kind in ("voluntary", "involuntary")
    )
    out["rusage_context_switches_per_s"] = _per(rusage_switches, span)

    # What each counter metric's counts cover (COUNTER_METRICS): per row, `<metric>_perf_counts`.
    server_counts, client_counts = _counts(out, "server"), _counts(out, "client")
    sides = {"server": server_counts, "client": client_counts,
             "sender": server_counts.where(sender_is_server, client_counts),
             "receiver": client_counts.where(sender_is_server, server_counts)}
    for metric, parts in COUNTER_METRICS.items():
        # Few distinct combinations, many rows: each combination is combined once.
        combined: dict[tuple, str] = {}
        keys = zip(*(sides[p].tolist() for p in parts))
        out[f"{metric}_perf_counts"] = [combined[k] if k in combined else combined.setdefault(k, combine_counts(k))
                                        for k in keys] if len(out) else ""

    zero_copy = ok & out["mode"].astype(str).isin(list(zerocopy.ZERO_COPY_MODES))
    out["zerocopy_copied_fraction"] = column(out, "zerocopy_copied_fraction").where(zero_copy)
    return out


def _counts(frame: pd.DataFrame, role: str) -> pd.Series:
    if f"{role}_perf_counts" in frame.columns:
        return frame[f"{role}_perf_counts"].astype("string").fillna("")
    return pd.Series("", index=frame.index, dtype="string")


def combine_counts(values) -> str:
    """What several perf counts together cover: `user` if any covers user space only, else the
    one value they share (`user+kernel`), else "" (not known)."""
    seen = {str(v) for v in values if isinstance(v, str) and v}
    if USER_ONLY in seen:
        return USER_ONLY
    return seen.pop() if len(seen) == 1 else ""


def mode_rank(mode: str) -> int:
    return MODE_ORDER.index(mode) if mode in MODE_ORDER else len(MODE_ORDER)
