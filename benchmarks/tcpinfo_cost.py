"""What the agents' extra sampling costs: receiver throughput with it on and off (TCP_INFO per
connection at every interval boundary, and the host counter snapshots at the window's ends).

Not a test. Runs our agent on loopback in pairs, alternating which setting goes first, with
sampling switched off by the agent's benchmark-only environment switch ORCH_AGENT_NO_TCPINFO=1,
and prints both medians and every run.

    .venv/bin/python benchmarks/tcpinfo_cost.py [--pairs 5] [--duration 3] [--size 65536]
        [--threads 1] [--mode one_copy] [--interval 1] [--agent PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from agents_vs_iperf3 import LOOPBACK, build_agent, wait_for_line  # noqa: E402


def run_agent(agent: Path, args: list[str], sampling: bool, duration: float) -> tuple[float, bool]:
    """Receiver throughput in bit/s, and whether the sender's document held TCP_INFO samples."""
    env = dict(os.environ)
    env.pop("ORCH_AGENT_NO_TCPINFO", None)
    if not sampling:
        env["ORCH_AGENT_NO_TCPINFO"] = "1"
    server = subprocess.Popen([str(agent), "server", "--bind", LOOPBACK, "--port", "0", *args],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)  # fmt: skip
    port = wait_for_line(server, "READY", 10).split()[2]
    client = subprocess.run([str(agent), "client", "--connect", LOOPBACK, "--port", port, *args],
                            capture_output=True, text=True, timeout=duration + 40, env=env)  # fmt: skip
    out, err = server.communicate(timeout=30)
    if server.returncode != 0 or client.returncode != 0:
        raise RuntimeError(f"agent failed: {err} {client.stderr}")
    receiver, sender = json.loads(out), json.loads(client.stdout)
    sampled = sender["threads_detail"][0].get("tcp_info") is not None
    return receiver["window"]["bytes_received"] * 8 / receiver["window"]["seconds"], sampled


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--pairs", type=int, default=5)
    p.add_argument("--duration", type=float, default=3.0)
    p.add_argument("--warmup", type=float, default=0.5)
    p.add_argument("--interval", type=float, default=1.0)
    p.add_argument("--size", type=int, default=65536)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--mode", default="one_copy")
    p.add_argument("--agent", type=Path)
    a = p.parse_args(argv)
    args = ["--mode", a.mode, "--size", str(a.size), "--threads", str(a.threads), "--duration", str(a.duration),
            "--warmup", str(a.warmup), "--interval", str(a.interval), "--sender", "client"]  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        agent = a.agent or build_agent(Path(tmp))
        runs: dict[bool, list[float]] = {True: [], False: []}
        for pair in range(a.pairs):
            order = (True, False) if pair % 2 == 0 else (False, True)
            for sampling in order:
                gbps, sampled = run_agent(agent, args, sampling, a.duration)
                if sampled != sampling:
                    raise RuntimeError(f"sampling was {'on' if sampled else 'off'}, expected the other")
                runs[sampling].append(gbps / 1e9)
        print(f"{a.mode} {a.size} B x {a.threads}, {a.duration:g} s after {a.warmup:g} s warm-up, interval "
              f"{a.interval:g} s, {a.pairs} alternated pairs, receiver Gbit/s")
        for sampling in (True, False):
            values = runs[sampling]
            print(f"TCP_INFO sampling {'on ' if sampling else 'off'}: median {statistics.median(values):.2f}  "
                  f"runs {' '.join(f'{v:.2f}' for v in values)}")
        on, off = statistics.median(runs[True]), statistics.median(runs[False])
        # Pair by pair, the two runs of a pair saw the same background load: their ratio's median
        # is the steadier figure, and its spread says how far noise alone moves it.
        ratios = sorted(x / y for x, y in zip(runs[True], runs[False]))
        print(f"on / off: ratio of medians {on / off:.3f}; per pair median {statistics.median(ratios):.3f} "
              f"(range {ratios[0]:.3f}-{ratios[-1]:.3f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
