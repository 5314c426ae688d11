"""The benchmarks' own logic: the iperf3 benchmark compares equal settings (both tools get TCP_NODELAY,
or neither); the report benchmark's large run is the recorded one, repeated."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "benchmarks" / "agents_vs_iperf3.py"


def _bench():
    spec = importlib.util.spec_from_file_location("agents_vs_iperf3", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_nodelay_on_gives_iperf3_dash_n_and_the_agent_nodelay_1():
    bench = _bench()
    case = bench.Case(65536, 1, "one_copy")
    iperf3 = bench.iperf3_client_args(case, 5999, 3.0, 0.5, nodelay=True)
    agent = bench.agent_args(case, 3.0, 0.5, nodelay=True)
    assert "-N" in iperf3
    assert agent[agent.index("--nodelay") + 1] == "1"
    # iperf3 writes one contiguous buffer per call: so does the agent, unless asked otherwise.
    assert agent[agent.index("--fields") + 1] == "1"
    assert bench.agent_args(case, 3.0, 0.5, nodelay=True, fields=8)[agent.index("--fields") + 1] == "8"


def test_nodelay_off_gives_neither():
    bench = _bench()
    case = bench.Case(1024, 4, "sendfile")
    iperf3 = bench.iperf3_client_args(case, 5999, 3.0, 0.5, nodelay=False)
    agent = bench.agent_args(case, 3.0, 0.5, nodelay=False)
    assert "-N" not in iperf3
    assert "-Z" in iperf3  # sendfile is still compared with iperf3's sendfile
    assert agent[agent.index("--nodelay") + 1] == "0"


def test_the_default_is_nodelay_on_as_the_agents():
    bench = _bench()
    assert bench.build_parser().parse_args([]).nodelay == 1
    assert bench.build_parser().parse_args(["--nodelay", "0"]).nodelay == 0


OVERHEAD = BENCH.parent / "orchestrator_overhead.py"


def _overhead():
    spec = importlib.util.spec_from_file_location("orchestrator_overhead", OVERHEAD)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_the_overhead_split_counts_each_cpu_second_once_and_new_processes_whole():
    bench = _overhead()
    first = bench.Window(0.0, 10.0, {1: ("other", 1.0), 2: ("ssh", 0.5)}, 100.0,
                         bench.LabSample(sshd={(5, 1): 1.0}, commands={(5, 1): 2.0}))
    # Thread 3 (a transport) started inside the window; process 6 too (counted whole); 7 ended (gone).
    last = bench.Window(8.0, 11.2, {1: ("other", 1.6), 2: ("ssh", 0.9), 3: ("ssh", 0.1)}, 104.0,
                        bench.LabSample(sshd={(5, 1): 1.2}, commands={(5, 1): 3.0, (6, 2): 0.5}))
    split = bench._split(first, last, pair_threads={1}, ran=4)
    expected = {"window": 8.0, "ours": 0.3, "ours_pair_threads": 0.15, "ours_ssh_threads": 0.125, "ours_rest": 0.025,
                "machine": 1.0, "lab_sshd": 0.05, "lab_commands": 0.375, "others": 0.275}
    assert split.keys() == expected.keys()
    for key, value in expected.items():
        assert abs(split[key] - value) < 1e-9, (key, split[key], value)


def test_importing_the_overhead_benchmark_changes_no_host_class():
    from orchestrator.remote import hosts
    from orchestrator import processes

    before = (hosts.SshProcess.__init__, hosts.SshProcess.group, processes.GroupProcess.read_line,
              processes.GroupProcess.finish)
    _overhead()
    assert (hosts.SshProcess.__init__, hosts.SshProcess.group, processes.GroupProcess.read_line,
            processes.GroupProcess.finish) == before


REPORT_SPEED = BENCH.parent / "report_speed.py"


def test_report_speed_synthesizes_a_large_run_that_reads_as_the_recorded_one(tmp_path):
    """benchmarks/report_speed.py's 10,000-row run: the recorded rows repeated as more repetitions
    of the same cells, which results.csv's reader accepts, every value but the ids kept."""
    spec = importlib.util.spec_from_file_location("report_speed", REPORT_SPEED)
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    from orchestrator.rows.results import read_results

    big = read_results(bench.synthesize(bench.RUN, tmp_path / "big", 1000) / "results.csv")
    recorded = read_results(bench.RUN / "results.csv")
    assert len(big) == 1000 // len(recorded) * len(recorded) and big["cell_id"].is_unique
    assert set(big["cell_id"].str.replace(r"-r\d+$", "", regex=True)) == set(recorded["cell_id"].str.replace(r"-r\d+$", "", regex=True))
    assert big["throughput_gbps"].sum() == pytest.approx(len(big) // len(recorded) * recorded["throughput_gbps"].sum())
    assert not (tmp_path / "big" / "cells").exists()
