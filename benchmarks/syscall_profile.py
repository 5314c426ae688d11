"""Load-independent evidence for agents_vs_iperf3.py: what each tool does per byte on loopback.

Not a test. Runs one case per tool with both ends under `perf stat` (software counters and
syscall tracepoints, which count the same whatever else the machine is doing) and prints, per
side, per MiB moved: the syscalls, the CPU time, the voluntary (blocked) and involuntary
(preempted) context switches, and the loopback packets sent in that side's context
(net:net_dev_xmit, which on loopback also counts the packets a side transmits on the other
side's behalf when it processes its ACKs), so the two tools can be compared without trusting
Gbit/s. Bytes per packet show whether 1 KiB writes went out one per packet or were coalesced.

    .venv/bin/python benchmarks/syscall_profile.py [--size 1024] [--streams 1] [--duration 2]
        [--agent PATH] [--fields 1] [--cpus SERVER,CLIENT]

Needs root (or perf_event_paranoid <= -1) for the tracepoints. Warm-up is 0 in both tools so
that the process-lifetime counts and the byte totals cover the same span. The settings are those
of agents_vs_iperf3.py (TCP_NODELAY on in both, iperf3 -N; our client sends, as iperf3's does).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import agents_vs_iperf3 as avi  # noqa: E402  (a sibling script, not a package)

SYSCALLS = ["read", "write", "recvfrom", "sendto", "sendmsg", "recvmsg", "pselect6", "select",
            "poll", "ppoll", "epoll_wait", "futex", "clock_nanosleep", "clock_gettime"]  # fmt: skip
EVENTS = ["task-clock", "context-switches", "cpu-migrations", "net:net_dev_xmit",
          *(f"syscalls:sys_enter_{s}" for s in SYSCALLS)]  # fmt: skip


def perf_prefix(out: Path) -> list[str]:
    return ["perf", "stat", "-x", ",", "-o", str(out), "-e", ",".join(EVENTS), "--"]


def read_perf(path: Path) -> dict[str, float]:
    counts: dict[str, float] = {}
    for line in path.read_text().splitlines():
        parts = line.split(",")
        if len(parts) < 3 or line.startswith("#"):
            continue
        try:
            value = float(parts[0])
        except ValueError:
            continue  # <not counted> / <not supported>
        name = parts[2].removeprefix("syscalls:sys_enter_")
        counts[name] = value
    return counts


def run_side(cmd: list[str], cpu: str | None, out: Path, marker: str | None = None) -> tuple[subprocess.Popen[str], str | None]:
    """Starts one side under perf stat (and taskset when pinned); returns it and, with a marker,
    the first stdout line that holds it."""
    pin = ["taskset", "-c", cpu] if cpu is not None else []
    proc = subprocess.Popen([*pin, *perf_prefix(out), *cmd], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)  # fmt: skip
    return proc, avi.wait_for_line(proc, marker, 10) if marker else None


def finish(proc: subprocess.Popen[str]) -> tuple[str, dict[str, float]]:
    """Its remaining stdout, and its rusage (the side's own process; perf stat waited for it,
    so its figures are included, plus perf's own few)."""
    assert proc.stdout is not None
    out = proc.stdout.read()
    _, status, ru = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, so Popen must not wait
    if proc.returncode != 0:
        raise RuntimeError(f"{proc.args} exited with {proc.returncode}")
    return out, {"voluntary": ru.ru_nvcsw, "involuntary": ru.ru_nivcsw}


def profile_agent(agent: Path, case: avi.Case, duration: float, fields: int, cpus: list[str | None],
                  tmp: Path) -> tuple[dict, dict, int]:  # fmt: skip
    args = avi.agent_args(case, duration, 0.0, True, fields)
    sp, cp = tmp / "agent-server.perf", tmp / "agent-client.perf"
    server, ready = run_side([str(agent), "server", "--bind", avi.LOOPBACK, "--port", "0", *args],
                             cpus[0], sp, "READY")  # fmt: skip
    assert ready is not None
    client, _ = run_side([str(agent), "client", "--connect", avi.LOOPBACK, "--port", ready.split()[2], *args],
                         cpus[1], cp)  # fmt: skip
    _, cru = finish(client)
    out, sru = finish(server)
    total = json.loads(out)["total"]
    return read_perf(sp) | sru, read_perf(cp) | cru, int(total["bytes_received"])


def profile_iperf3(case: avi.Case, duration: float, cpus: list[str | None], tmp: Path) -> tuple[dict, dict, int]:
    port = avi.free_port()
    sp, cp = tmp / "iperf3-server.perf", tmp / "iperf3-client.perf"
    server, _ = run_side(["iperf3", "-s", "-1", "-B", avi.LOOPBACK, "-p", str(port), "--forceflush"],
                         cpus[0], sp, "Server listening")  # fmt: skip
    client, _ = run_side(avi.iperf3_client_args(case, port, duration, 0, True), cpus[1], cp)
    out, cru = finish(client)
    _, sru = finish(server)
    return read_perf(sp) | sru, read_perf(cp) | cru, int(json.loads(out)["end"]["sum_received"]["bytes"])


def report(tool: str, receiver: dict, sender: dict, nbytes: int, duration: float) -> None:
    mib = nbytes / (1 << 20)
    print(f"{tool}: {mib:.0f} MiB received, {mib / duration:.0f} MiB/s (load-dependent)")
    for side, c in (("receiver", receiver), ("sender", sender)):
        calls = {k: v for k, v in c.items() if k in SYSCALLS and v > 0}
        per = ", ".join(f"{k} {v / mib:.0f}" for k, v in sorted(calls.items(), key=lambda kv: -kv[1]))
        pkts = c.get("net:net_dev_xmit", 0)
        print(f"  {side:8} per MiB: {per}; CPU ms {c.get('task-clock', 0) / mib:.2f}; switches: "
              f"voluntary {c['voluntary'] / mib:.1f}, involuntary {c['involuntary'] / mib:.1f}; "
              f"lo packets {pkts / mib:.1f}; CPU busy {c.get('task-clock', 0) / 1e3 / duration:.0%}")
    rx = receiver.get("recvfrom", 0) + receiver.get("read", 0)
    pkts = receiver.get("net:net_dev_xmit", 0) + sender.get("net:net_dev_xmit", 0)
    if rx and pkts:
        print(f"  bytes per receive call {nbytes / rx:.0f}; bytes per loopback packet (data and ACKs) "
              f"{nbytes / pkts:.0f}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--size", type=int, default=1024)
    p.add_argument("--streams", type=int, default=1)
    p.add_argument("--duration", type=int, default=2)
    p.add_argument("--fields", type=int, default=1)
    p.add_argument("--agent", type=Path, help="a built agent (default: build one)")
    p.add_argument("--cpus", help="SERVER,CLIENT: pin each side of both tools to a CPU (taskset), "
                   "e.g. 1,0 (apart) or 0,0 (one CPU); default: the scheduler places them")
    a = p.parse_args(argv)
    cpus: list[str | None] = a.cpus.split(",") if a.cpus else [None, None]
    if len(cpus) != 2:
        p.error("--cpus takes SERVER,CLIENT")
    case = avi.Case(a.size, a.streams, "one_copy")
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        agent = a.agent or avi.build_agent(tmp)
        print(f"{a.size} B x{a.streams}, {a.duration} s, our receiver is the server, the client sends; "
              f"CPUs (server,client): {a.cpus or 'not pinned'}")
        report("ours", *profile_agent(agent, case, a.duration, a.fields, cpus, tmp), a.duration)
        report("iperf3", *profile_iperf3(case, a.duration, cpus, tmp), a.duration)
    return 0


if __name__ == "__main__":
    sys.exit(main())
