"""report.md's evidence sections (report/evidence.py) on recorded rows and a recorded run folder."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from orchestrator.report import evidence, runfolder
from orchestrator.rows import intervals

RUNS = Path(__file__).parents[1] / "fixtures" / "runs"


def test_report_without_raw_files_says_so():
    run_dir = RUNS / "20261125T222925Z-vmcheck-598f"
    run = runfolder.load_run(run_dir)
    assert intervals.ensure(run_dir, run.results).empty
    text = evidence.over_time_section([], 0.1, None, have_series=False)
    assert "No per-interval samples" in text


LAB = RUNS / "20261206T023809Z-labfull-87e3"


def _retransmitted_shares(results: pd.DataFrame) -> pd.Series:
    """Per cell, retransmitted segments × the path MTU's payload over the window's bytes (this test's own sums)."""
    rows = results[results["status"].isin(["ok", "degraded"])].copy()
    rows["cell"] = rows["cell_id"].str.replace(r"-r\d+$", "", regex=True)
    rows["bytes"] = rows["tcp_retrans"] * (rows["tcp_pmtu"] - 40)
    sums = rows.groupby("cell")[["bytes", "window_bytes", "tcp_retrans"]].sum(min_count=1)
    return (sums["bytes"] / sums["window_bytes"])[sums["tcp_retrans"] > 0].dropna()


def test_tcp_section_gives_retransmits_their_share_of_the_bytes():
    results = pd.read_csv(LAB / "results.csv")
    text = evidence.tcp_section(results)
    shares = _retransmitted_shares(results)
    retransmitted = results[results["tcp_retrans"] > 0]["cell_id"].str.replace(r"-r\d+$", "", regex=True).nunique()
    # The lab run's retransmits are a small share of its bytes: named with that share, not as a threat.
    assert shares.max() < 0.01
    assert f"{retransmitted} cell(s) retransmitted, at most {shares.max() * 100:.2g}% of a cell's window bytes" in text
    assert "could matter" not in text and "Losses" not in text
    drops = [c for c in results if c.endswith(("_tcp_inerrs", "_tcpbacklogdrop", "_tcprcvqdrop"))]
    assert f"summed to {int(results[drops].sum().sum())} over the run's windows" in text
    assert "| `stream-zero_copy-65536B-2t` | 2013 | 0.093% | 24% | 0% | neither |" in text
    assert "`rr-zero_copy-4096B-1t`" in text  # rr cells keep their TCP limits
    # Ten times the retransmits of one cell make it a share that could matter, and it is named.
    hit = results["cell_id"].str.startswith("stream-zero_copy-65536B-1t-")
    more = results.assign(tcp_retrans=results["tcp_retrans"].where(~hit, results["tcp_retrans"] * 10))
    share = _retransmitted_shares(more)["stream-zero_copy-65536B-1t"]
    assert share >= 0.01
    assert (f"**Retransmits that could matter** (at least 1% of the window's bytes) in 1 cell(s): "
            f"`stream-zero_copy-65536B-1t` ({share * 100:.0f}%)") in evidence.tcp_section(more)
    assert "No TCP_INFO samples" in evidence.tcp_section(results.assign(tcp_retrans=pd.NA))


def test_cpu_bars_two_hosts_and_one_kernel():
    frame = pd.DataFrame({
        "cell_id": ["stream-one_copy-65536B-1t-r1", "stream-one_copy-65536B-1t-r2"], "status": ["ok", "ok"],
        "workload": ["stream", "stream"], "window_bytes": [2e9, 4e9],
        "server_host_cpu_user_s": [1.0, 2.0], "server_host_cpu_system_s": [2.0, 4.0],
        "server_host_cpu_softirq_s": [0.5, 1.0], "server_host_cpu_irq_s": [0.1, 0.2],
        "client_host_cpu_user_s": [0.2, 0.4], "client_host_cpu_system_s": [3.0, 6.0],
        "client_host_cpu_softirq_s": [1.0, 2.0], "client_host_cpu_irq_s": [0.0, 0.0],
        "host_shared_kernel": [False, False],
    })  # fmt: skip
    bars = evidence.cpu_bars(frame)
    assert bars["label"].tolist() == ["stream-one_copy-65536B-1t (server host)", "stream-one_copy-65536B-1t (client host)"]
    assert bars["system_s_per_gb"].tolist() == pytest.approx([1.0, 1.5])
    assert bars["softirq_s_per_gb"].tolist() == pytest.approx([0.25, 0.5])
    shared = evidence.cpu_bars(frame.assign(host_shared_kernel=True))
    assert len(shared) == 1 and "one kernel" in shared["label"][0]
    assert "one kernel" in evidence.cpu_section(frame.assign(host_shared_kernel=True), None)
    assert "No host counters" in evidence.cpu_section(frame[["cell_id", "status", "workload"]], None)


def test_cpu_went_of_a_real_lab_run_with_iperf3_cells_counts_the_machine_once():
    """The recorded lab run (two namespaces, one kernel) has iperf3 reference cells, whose rows have
    no host counters and a blank host_shared_kernel: one bar per agent cell, none for iperf3."""
    run = runfolder.load_run(RUNS / "20261206T023809Z-labfull-87e3")
    results = run.results
    assert (results["mode"] == "iperf3").any() and results.loc[results["mode"] == "iperf3", "host_shared_kernel"].isna().all()
    bars = evidence.cpu_bars(results).set_index("label")
    ok = results[(results["status"] == "ok") & (results["workload"] == "stream") & (results["mode"] != "iperf3")]
    cells = sorted(set(ok["cell_id"].str.replace(r"-r\d+$", "", regex=True)))
    assert bars.index.tolist() == [f"{cell} (one kernel, both roles)" for cell in cells]
    # each bar is the server's whole-machine seconds per GB, not server + client
    for cell in cells:
        reps = ok[ok["cell_id"].str.startswith(cell + "-r")]
        want = (reps["server_host_cpu_system_s"] / (reps["window_bytes"] / 1e9)).median()
        assert bars.loc[f"{cell} (one kernel, both roles)", "system_s_per_gb"] == pytest.approx(want)
    text = evidence.cpu_section(results, "plots/where_cpu_went")
    assert "**Both roles ran on one kernel**" in text and "iperf3 reads no host counters" in text
