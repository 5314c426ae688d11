"""User-space-only perf counts stay labelled as such beyond results.csv: in summary.csv, in the
plot titles and in `compare`. On a recorded lab run whose results.csv is edited the way a
`perf_access: user-only` host (or a sudo server beside a user-only client) would write it."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import pandas as pd
import pytest

from orchestrator.report import compare, plots, stats
from orchestrator.rows.results import read_results

RUNS = Path(__file__).parents[1] / "fixtures" / "runs"
RUN = "20261120T101500Z-lab-hw-a1b2"


def run_with_counts(tmp_path: Path, server: str, client: str, name: str = RUN) -> Path:
    run = Path(shutil.copytree(RUNS / name, tmp_path / f"{server}-{client}".replace("+", "_") / name))
    results = pd.read_csv(run / "results.csv", dtype=str, keep_default_na=False)
    assert (results["sender"] == "server").all() and results["server_cycles"].ne("").any()
    results["server_perf_counts"], results["client_perf_counts"] = server, client
    results.to_csv(run / "results.csv", index=False)
    return run


def summary_of(run: Path) -> pd.DataFrame:
    return stats.summarize(read_results(run / "results.csv"))


def test_the_summary_says_which_counter_metrics_are_user_space_only(tmp_path):
    # A sudo server (the sender, whole counts) beside a user-only client (the receiver).
    summary = summary_of(run_with_counts(tmp_path, "user+kernel", "user"))
    stream = summary[(summary["workload"] == "stream") & (summary["ok"] > 0)]
    assert len(stream) > 0 and stream["cycles_per_byte_mean"].notna().all()
    assert (stream["server_perf_counts"] == "user+kernel").all() and (stream["client_perf_counts"] == "user").all()
    assert (stream["sender_cycles_per_byte_perf_counts"] == "user+kernel").all()
    assert (stream["receiver_cycles_per_byte_perf_counts"] == "user").all()
    # The both-sides sums mix the two kinds: they are user-space-only counts.
    for metric in ("cycles_per_byte", "l1_misses_per_kib", "llc_misses_per_kib", "context_switches_per_s"):
        assert (stream[f"{metric}_perf_counts"] == "user").all(), metric
    # Whole counts on both sides are said to be whole.
    whole = summary_of(run_with_counts(tmp_path, "user+kernel", "user+kernel"))
    assert len(whole) > 0 and (whole.loc[whole["ok"] > 0, "cycles_per_byte_perf_counts"] == "user+kernel").all()


@pytest.mark.parametrize("name, metric", [("cpu_per_byte_vs_size", "cycles_per_byte"),
                                          ("cache_misses_vs_size", "l1_misses_per_kib"),
                                          ("context_switches_vs_threads", "context_switches_per_s")])
def test_counter_plots_say_user_space_only_in_their_titles(tmp_path, name, metric):
    summary = summary_of(run_with_counts(tmp_path, "user", "user+kernel"))
    assert summary[f"{metric}_mean"].notna().any()
    title = plots.PLOTS[name](summary).get_suptitle()
    assert "(user space only)" in title, title
    whole = plots.PLOTS[name](summary_of(run_with_counts(tmp_path, "user+kernel", "user+kernel"))).get_suptitle()
    assert "(user space only)" not in whole and whole
    # Throughput is no perf count: never labelled.
    assert "user space" not in plots.PLOTS["throughput_vs_size"](summary).get_suptitle()


def test_compare_will_not_set_a_user_only_count_beside_a_whole_one(tmp_path):
    a = run_with_counts(tmp_path, "user+kernel", "user+kernel")
    b = run_with_counts(tmp_path, "user+kernel", "user")  # same run, the receiver now user-only
    table = compare.compare_runs(a, b, tmp_path / "out").table
    cycles = table[table["metric"] == "cycles_per_byte"]
    assert len(cycles) > 0
    assert cycles["verdict"].str.startswith("not comparable: A counted user and kernel space, B user space only").all()
    assert cycles["ratio"].map(math.isnan).all()
    throughput = table[table["metric"] == "throughput_gbps"]
    assert len(throughput) > 0 and (throughput["ratio"] == 1).all() and throughput["verdict"].eq("no clear difference").all()
    both = compare.compare_runs(b, b, tmp_path / "out2").table
    both_cycles = both[both["metric"] == "cycles_per_byte"]
    assert len(both_cycles) > 0 and both_cycles["verdict"].str.endswith("(both counted user space only)").all()
