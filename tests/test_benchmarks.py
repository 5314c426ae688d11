"""The iperf3 benchmark compares equal settings: both tools get TCP_NODELAY, or neither."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

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
