#!/usr/bin/env python3
"""What one short remote command costs over an open SSH connection: the wall time of
`host.run("true")`, median of --commands runs, on the inventory's server, and the CPU the host's
side spent on it (the login shell's start-up files run for every command). A figure, not a test.

    .venv/bin/python benchmarks/remote_command_cost.py --inventory lab-inventory.yml [--commands 40]

To compare two versions of the code, run each from its own checkout, alternated, and take the
medians of the rounds:

    for i in 1 2 3 4 5; do
      PYTHONPATH=OLD_CHECKOUT .venv/bin/python OLD_CHECKOUT/benchmarks/remote_command_cost.py --inventory INV
      PYTHONPATH=. .venv/bin/python benchmarks/remote_command_cost.py --inventory INV
    done

The host's CPU is read from /proc/stat when the host is this machine (the lab's namespaces share
its kernel); elsewhere it is left out.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

from orchestrator.experiment.inventory import load_inventory
from orchestrator.remote import hosts


def _busy_ticks() -> int:
    fields = open("/proc/stat").readline().split()[1:]
    idle = int(fields[3]) + int(fields[4])
    return sum(int(f) for f in fields[:8]) - idle


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--inventory", required=True)
    parser.add_argument("--commands", type=int, default=40)
    args = parser.parse_args()
    spec = load_inventory(args.inventory).server
    host = hosts.connect("server", spec, connect_timeout=10)
    try:
        host.run("true", 30)  # the connection and its first session, not counted
        walls = []
        busy_before, started = _busy_ticks(), time.monotonic()
        for _ in range(args.commands):
            t0 = time.monotonic()
            result = host.run("true", 30)
            walls.append(time.monotonic() - t0)
            assert result.ok, result
        elapsed = time.monotonic() - started
        busy = (_busy_ticks() - busy_before) / os.sysconf("SC_CLK_TCK")
    finally:
        host.close()
    print(f"{spec.label}: {args.commands} commands, median {statistics.median(walls) * 1000:.1f} ms wall each "
          f"(min {min(walls) * 1000:.1f}, max {max(walls) * 1000:.1f}); machine CPU {busy / args.commands * 1000:.1f} ms "
          f"per command over {elapsed:.1f} s")


if __name__ == "__main__":
    main()
