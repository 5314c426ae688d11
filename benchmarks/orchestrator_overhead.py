#!/usr/bin/env python3
"""The orchestrator's own cost per cell: a run's wall time, minus the sum of the cells'
warm-up plus duration, divided by the number of cells. A figure, not a test.

    .venv/bin/python benchmarks/orchestrator_overhead.py [--inventory lab-inventory.yml] [--cells 12]

It runs short one_copy cells (0.3 s, after a 0.5 s warm-up: the least that lets the next cell be
armed during it) so the overhead dominates, and prints the figure for the whole run (connect,
preflight, deploy, facts included) and for the cell loop alone.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import yaml

from orchestrator import runner
from orchestrator.config import load_experiment
from orchestrator.inventory import load_inventory


class Clock(runner.Progress):
    def __init__(self) -> None:
        self.loop_started = 0.0
        self.stages: list[tuple[str, float]] = []

    def stage(self, message: str) -> None:
        self.stages.append((message, time.monotonic()))

    def start(self, total: int, done: int) -> None:
        self.loop_started = time.monotonic()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inventory", default="inventory.yml")
    parser.add_argument("--cells", type=int, default=12)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        config = Path(scratch) / "overhead.yml"
        config.write_text(yaml.safe_dump({
            "name": "overhead", "matrix": {"threads": list(range(1, args.cells + 1))},
            "mode": "one_copy", "message_size": "64KiB", "duration": 0.3, "warmup": 0.5, "order": "listed",
        }))
        experiment = load_experiment(config)
        state = runner.create_run(experiment, load_inventory(Path(args.inventory)), Path(scratch) / "results")
        clock = Clock()
        started = time.monotonic()
        outcome = runner.execute(state, clock)
        ended = time.monotonic()
    cells = len(outcome.finished)
    measured = cells * (experiment.warmup + experiment.duration)
    failed = len(outcome.failed)
    print(f"inventory: {args.inventory}; cells: {cells} ({failed} failed); each {experiment.warmup:g}s warm-up + {experiment.duration:g}s")
    print(f"whole run: {ended - started:.2f}s wall, overhead {(ended - started - measured) / cells:.3f} s/cell")
    print(f"cell loop: {ended - clock.loop_started:.2f}s wall, overhead {(ended - clock.loop_started - measured) / cells:.3f} s/cell")
    for message, at in clock.stages:
        print(f"  {message:<22} started at +{at - started:.2f}s")


if __name__ == "__main__":
    main()
