#!/usr/bin/env python3
"""How close `orchestrate run --dry-run` comes to the real run's wall time. A figure, not a test:
the target (within 10%, median of the repeats) holds on an idle machine only, since the
estimate's constants were measured there.

    .venv/bin/python benchmarks/dry_run_estimate.py --inventory lab-inventory.yml [--repeats 3]

Each repeat removes the hosts' cached agents (the estimate assumes a build), asks for the dry
run's estimate, then times the same run for real. Only the inventory's hosts are contacted.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

TARGET = 0.10
EXPERIMENT = {
    "name": "estimate", "matrix": {"mode": ["one_copy", "two_copy"], "threads": [1, 2], "message_size": ["16KiB", "64KiB"]},
    "duration": "2.5s", "warmup": "0.5s", "seed": 7, "perf": {"events": ["cycles", "context-switches", "task-clock"]},
}


def orchestrate(*args: str) -> tuple[int, dict]:
    command = Path(sys.executable).parent / "orchestrate"  # the venv's own entry point
    done = subprocess.run([str(command), *args, "--json", "-q"], capture_output=True, text=True)
    return done.returncode, json.loads(done.stdout)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inventory", required=True)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    inventory = yaml.safe_load(Path(args.inventory).read_text())
    errors = []
    with tempfile.TemporaryDirectory() as scratch:
        config = Path(scratch) / "estimate.yml"
        config.write_text(yaml.safe_dump(EXPERIMENT))
        for repeat in range(args.repeats):
            for role in ("server", "client"):
                # The lab's workdirs are local folders; elsewhere, remove the cached agents by hand first.
                workdir = Path(inventory[role]["workdir"])
                if workdir.is_absolute():
                    subprocess.run(["rm", "-rf", str(workdir / "agents")], check=True)
            code, plan = orchestrate("run", "--dry-run", str(config), "--inventory", args.inventory)
            if code != 0:
                print(f"dry run failed: {plan}", file=sys.stderr)
                return 1
            started = time.monotonic()
            code, done = orchestrate("run", str(config), "--inventory", args.inventory, "--results", str(Path(scratch) / "results"))
            wall = time.monotonic() - started
            if code != 0:
                print(f"run failed: {done.get('error')}", file=sys.stderr)
                return 1
            estimate = plan["estimate"]["total_s"]
            errors.append((estimate - wall) / wall)
            print(f"repeat {repeat + 1}: estimate {estimate:.1f} s, wall {wall:.1f} s ({errors[-1]:+.1%})")
    median = statistics.median(errors)
    verdict = "within" if abs(median) <= TARGET else "OUTSIDE"
    print(f"median error {median:+.1%} over {len(errors)} runs: {verdict} the {TARGET:.0%} target")
    return 0 if abs(median) <= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
