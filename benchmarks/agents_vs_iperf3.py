"""Our agent against iperf3 on loopback: same message size, streams, duration and warm-up.

Not a test: it prints receiver throughput for both tools and the ratio ours/iperf3 per case,
alternating the two tools run by run so that drift in the machine hits both alike.

    .venv/bin/python benchmarks/agents_vs_iperf3.py [--duration 3] [--repeats 3]
        [--modes one_copy two_copy zero_copy sendfile] [--nodelay 1|0] [--agent PATH]
        [--cases 1024x1 ...] [--cpus SERVER,CLIENT]

Equal settings: TCP_NODELAY is on in both tools or off in both. Our agent's default is on
(`--nodelay 1`), so iperf3 gets `-N` then; with `--nodelay 0` neither sets it. (iperf3 without
`-N` against our agent with it measured 1.5-1.8x slower here, an unequal comparison.)

iperf3 always write()s one buffer per call, except that our `sendfile` mode is compared with
`iperf3 -Z` (sendfile). Both tools measure at the receiver: iperf3's `end.sum_received`, our receiver's
`window.bytes_received / window.seconds`. Our client sends (`--sender client`), as iperf3's does.

`--cpus SERVER,CLIENT` pins each side of both tools with taskset. At 1 KiB on one stream the
result depends on where the scheduler puts the two sides (see benchmarks/syscall_profile.py and
README "Figures measured here"): on two CPUs our receiver keeps up and every 1 KiB write becomes
a packet of its own; on one CPU writes coalesce.
"""

from __future__ import annotations

import argparse
import json
import queue
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOOPBACK = "127.0.0.1"
CASES = [(1024, 1), (1024, 4), (65536, 1), (65536, 4)]
# iperf3's nearest technique: plain write() for the others, sendfile for ours in sendfile.
IPERF3_MODE_ARGS = {"sendfile": ["-Z"]}


@dataclass(frozen=True)
class Case:
    size: int
    streams: int
    mode: str

    @property
    def label(self) -> str:
        return f"{self.mode:9} {self.size // 1024:>3} KiB x{self.streams}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


def wait_for_line(proc: subprocess.Popen[str], marker: str, timeout: float) -> str:
    """The first stdout line containing `marker`. A thread reads, since a buffered reader may
    already hold the line that select() would wait for on the descriptor."""
    assert proc.stdout is not None
    stdout = proc.stdout
    found: queue.Queue[str] = queue.Queue()

    def reader() -> None:
        for line in stdout:
            if marker in line:
                found.put(line)
                return
        found.put("")

    threading.Thread(target=reader, daemon=True).start()
    try:
        line = found.get(timeout=timeout)
    except queue.Empty:
        line = ""
    if not line:
        proc.kill()
        raise RuntimeError(f"no {marker!r} line from {proc.args[0]} within {timeout} s")
    return line


def iperf3_client_args(case: Case, port: int, duration: float, warmup: float, nodelay: bool) -> list[str]:
    """iperf3's client command line, with the same settings as our agent's."""
    return ["iperf3", "-c", LOOPBACK, "-p", str(port), "-l", str(case.size),
            "-P", str(case.streams), "-t", str(duration), "-O", str(warmup), "-J",
            *(["-N"] if nodelay else []), *IPERF3_MODE_ARGS.get(case.mode, [])]  # fmt: skip


def agent_args(case: Case, duration: float, warmup: float, nodelay: bool, fields: int = 1) -> list[str]:
    """Our agent's arguments shared by both ends, with the same settings as iperf3's: iperf3
    writes one contiguous buffer per call, so the agent sends one field per message unless told."""
    return ["--mode", case.mode, "--size", str(case.size), "--fields", str(fields), "--threads", str(case.streams),
            "--duration", str(duration), "--warmup", str(warmup), "--sender", "client",
            "--nodelay", "1" if nodelay else "0"]  # fmt: skip


def pin(cpu: str | None) -> list[str]:
    return ["taskset", "-c", cpu] if cpu is not None else []


def run_iperf3(case: Case, duration: float, warmup: float, nodelay: bool, cpus: tuple[str | None, str | None] = (None, None)) -> float:
    """iperf3's receiver throughput in bit/s."""
    port = free_port()
    server = subprocess.Popen(
        [*pin(cpus[0]), "iperf3", "-s", "-1", "-B", LOOPBACK, "-p", str(port), "--forceflush"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        wait_for_line(server, "Server listening", 10)
        client = subprocess.run(
            [*pin(cpus[1]), *iperf3_client_args(case, port, duration, warmup, nodelay)],
            capture_output=True, text=True, timeout=duration + warmup + 30, check=True,
        )  # fmt: skip
    finally:
        server.wait(timeout=10)
    return float(json.loads(client.stdout)["end"]["sum_received"]["bits_per_second"])


def run_agent(agent: Path, case: Case, duration: float, warmup: float, nodelay: bool, fields: int = 1,
              cpus: tuple[str | None, str | None] = (None, None)) -> float:  # fmt: skip
    """Our receiver's throughput in bit/s."""
    args = agent_args(case, duration, warmup, nodelay, fields)
    server = subprocess.Popen(
        [*pin(cpus[0]), str(agent), "server", "--bind", LOOPBACK, "--port", "0", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    port = wait_for_line(server, "READY", 10).split()[2]
    client = subprocess.run(
        [*pin(cpus[1]), str(agent), "client", "--connect", LOOPBACK, "--port", port, *args],
        capture_output=True, text=True, timeout=duration + warmup + 30,
    )  # fmt: skip
    out, err = server.communicate(timeout=30)
    if server.returncode != 0 or client.returncode != 0:
        raise RuntimeError(f"agent failed: {err} {client.stderr} {out} {client.stdout}")
    receiver = json.loads(out)
    window = receiver["window"]
    return float(window["bytes_received"]) * 8 / float(window["seconds"])


def build_agent(out: Path) -> Path:
    subprocess.run(["sh", str(ROOT / "agents" / "build.sh"), str(out)], check=True)
    return out / "agent"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--duration", type=float, default=3.0)
    p.add_argument("--warmup", type=float, default=0.5)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--modes", nargs="+", default=["one_copy"],
                   choices=["two_copy", "one_copy", "zero_copy", "sendfile"])  # fmt: skip
    p.add_argument("--nodelay", type=int, choices=[0, 1], default=1,
                   help="TCP_NODELAY in both tools (1: our --nodelay 1 and iperf3 -N; 0: neither)")
    p.add_argument("--fields", type=int, default=1,
                   help="buffers per message for our agent (default 1: one contiguous buffer per write, as iperf3)")
    p.add_argument("--agent", type=Path, help="a built agent (default: build one)")
    p.add_argument("--cases", nargs="+", metavar="SIZExSTREAMS",
                   help="e.g. 1024x1 65536x4 (default: " + " ".join(f"{s}x{n}" for s, n in CASES) + ")")
    p.add_argument("--cpus", help="SERVER,CLIENT: pin each side of both tools to a CPU with taskset "
                   "(e.g. 1,0 apart, 0,0 on one CPU); default: the scheduler places them")
    return p


def main(argv: list[str] | None = None) -> int:
    a = build_parser().parse_args(argv)
    nodelay = bool(a.nodelay)
    cpus: tuple[str | None, str | None] = (None, None)
    if a.cpus:
        parts = a.cpus.split(",")
        if len(parts) != 2 or not all(x.isdigit() for x in parts):
            build_parser().error("--cpus takes SERVER,CLIENT, two CPU numbers")
        cpus = (parts[0], parts[1])
    cases = CASES
    if a.cases:
        try:
            cases = [(int(x.split("x")[0]), int(x.split("x")[1])) for x in a.cases]
        except (ValueError, IndexError):
            build_parser().error("--cases takes SIZExSTREAMS items, e.g. 1024x1")

    with tempfile.TemporaryDirectory() as tmp:
        agent = a.agent or build_agent(Path(tmp))
        print(f"settings: TCP_NODELAY {'on in both (agent --nodelay 1, iperf3 -N)' if nodelay else 'off in both'}; "
              f"{a.duration:g} s measured after {a.warmup:g} s warm-up (iperf3 -O); receiver throughput; "
              f"medians of {a.repeats} alternated runs per tool; our agent sends {a.fields} buffer(s) per message; "
              f"CPUs (server,client): {a.cpus or 'not pinned'}")
        print(f"{'case':22} {'ours Gbit/s':>12} {'iperf3 Gbit/s':>14} {'ratio':>6}")
        for mode in a.modes:
            for size, streams in cases:
                case = Case(size, streams, mode)
                ours: list[float] = []
                theirs: list[float] = []
                for r in range(a.repeats):
                    # Alternate which tool goes first, so neither always gets the warmer machine.
                    if r % 2 == 0:
                        ours.append(run_agent(agent, case, a.duration, a.warmup, nodelay, a.fields, cpus))
                        theirs.append(run_iperf3(case, a.duration, a.warmup, nodelay, cpus))
                    else:
                        theirs.append(run_iperf3(case, a.duration, a.warmup, nodelay, cpus))
                        ours.append(run_agent(agent, case, a.duration, a.warmup, nodelay, a.fields, cpus))
                o, t = statistics.median(ours), statistics.median(theirs)
                print(f"{case.label:22} {o / 1e9:12.2f} {t / 1e9:14.2f} {o / t:6.2f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
