#!/usr/bin/env python3
"""The orchestrator's own cost per cell: a run's wall time, minus the sum of the cells'
warm-up plus duration, divided by the number of cells. A figure, not a test.

    .venv/bin/python benchmarks/orchestrator_overhead.py [--inventory lab-inventory.yml] [--cells 12]
    .venv/bin/python benchmarks/orchestrator_overhead.py --inventory pairs.yml --pairs 1,2,4 --rounds 3

It runs short one_copy cells (0.3 s, after a 0.5 s warm-up: the least that lets the next cell be
armed during it) so the overhead dominates, and prints the figure for the whole run (connect,
preflight, deploy, facts included) and for the cell loop alone.

With --pairs (an inventory from `orchestrate lab up --pairs N`), each count of pairs runs the same
plan on the inventory's first pairs at once, and the cell-loop overhead is given per cell per pair
(each pair's own loop: its first cell's start to its last cell's end). The counts are alternated
round after round (--rounds), so that the machine's other load falls on all of them alike, and
the medians over the rounds are printed.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from pathlib import Path

import yaml

from orchestrator import runner
from orchestrator.config import load_experiment
from orchestrator.inventory import load_inventory


class Clock(runner.Progress):
    """When each pair's cell loop started and its last cell ended."""

    def __init__(self, parent: Clock | None = None) -> None:
        self.loop_started = 0.0
        self.last_finished = 0.0
        self.stages: list[tuple[str, float]] = []
        self.pairs: dict[str, Clock] = {}
        self.lock = threading.Lock()
        self.parent = parent

    def for_pair(self, name: str) -> Clock:
        with self.lock:
            return self.pairs.setdefault(name, Clock(self))

    def stage(self, message: str) -> None:
        self.stages.append((message, time.monotonic()))

    def start(self, total: int, done: int) -> None:
        self.loop_started = time.monotonic()
        root = self.parent or self
        with root.lock:  # the orchestrator's CPU (every thread) from the first pair's first cell on
            root.loop_cpu = getattr(root, "loop_cpu", None) or time.process_time()

    def cell_finished(self, outcome) -> None:
        self.last_finished = time.monotonic()


def run_once(inventory_path: Path, pairs: int | None, cells: int) -> dict:
    # With pairs: the same one-thread cell, repeated, so that the agents load the 2 cores as little
    # as they can and what grows with the pairs is the orchestrator's.
    matrix = {"threads": list(range(1, cells + 1))} if pairs is None else {"threads": [1]}
    with tempfile.TemporaryDirectory() as scratch:
        config = Path(scratch) / "overhead.yml"
        config.write_text(yaml.safe_dump({
            "name": "overhead", "matrix": matrix, "repetitions": 1 if pairs is None else cells,
            "mode": "one_copy", "message_size": "64KiB", "duration": 0.3, "warmup": 0.5, "order": "listed",
            "timeouts": {"connect": "30s"},
        }))
        experiment = load_experiment(config)
        inventory = load_inventory(inventory_path)
        if pairs is not None:
            names = list(inventory.pairs)
            if pairs > len(names):
                raise SystemExit(f"{inventory_path} has {len(names)} pairs, not {pairs}")
            inventory = runner.select_pairs(inventory, names[:pairs])
        state = runner.create_run(experiment, inventory, Path(scratch) / "results")
        clock = Clock()
        started, cpu_started = time.monotonic(), time.process_time()
        outcome = runner.execute(state, clock)
        ended, cpu_ended = time.monotonic(), time.process_time()
    per_cell = experiment.warmup + experiment.duration
    ran = len(outcome.finished)
    loops = clock.pairs.values() if clock.pairs else [clock]
    n_pairs = len(outcome.pairs)
    # Per pair: its own loop's wall time minus what its cells measured, over its cells.
    per_pair = [(c.last_finished - c.loop_started - cells * per_cell) / cells for c in loops]
    return {"pairs": n_pairs, "cells": ran, "failed": len(outcome.failed), "wall": ended - started,
            "whole_per_cell": (ended - started - cells * per_cell) / cells,  # the pairs' cells overlap
            "loop_per_cell_per_pair": statistics.median(per_pair), "stages": clock.stages, "started": started,
            # The orchestrator's own CPU seconds (all its threads) per cell run, whole run and cell loops.
            "cpu_per_cell": (cpu_ended - cpu_started) / max(1, ran),
            "loop_cpu_per_cell": (cpu_ended - getattr(clock, "loop_cpu", cpu_started)) / max(1, ran),
            "warmup": experiment.warmup, "duration": experiment.duration}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inventory", default="inventory.yml")
    parser.add_argument("--cells", type=int, default=12)
    parser.add_argument("--pairs", default=None, metavar="N[,N...]",
                        help="run on the inventory's first N pairs at once; a comma list alternates the counts")
    parser.add_argument("--rounds", type=int, default=1, help="with --pairs: how many times each count runs, alternated")
    args = parser.parse_args()
    if args.pairs is None:
        result = run_once(Path(args.inventory), None, args.cells)
        print(f"inventory: {args.inventory}; cells: {result['cells']} ({result['failed']} failed); "
              f"each {result['warmup']:g}s warm-up + {result['duration']:g}s")
        print(f"whole run: {result['wall']:.2f}s wall, overhead {result['whole_per_cell']:.3f} s/cell")
        print(f"cell loop: overhead {result['loop_per_cell_per_pair']:.3f} s/cell")
        for message, at in result["stages"]:
            print(f"  {message:<22} started at +{at - result['started']:.2f}s")
        return
    counts = [int(n) for n in args.pairs.split(",")]
    seen: dict[int, list[dict]] = {n: [] for n in counts}
    for round_ in range(1, args.rounds + 1):
        for n in counts:
            result = run_once(Path(args.inventory), n, args.cells)
            seen[n].append(result)
            print(f"round {round_} pairs {n}: {result['cells']} cells ({result['failed']} failed), wall {result['wall']:.2f}s, "
                  f"loop overhead {result['loop_per_cell_per_pair']:.3f} s/cell/pair, orchestrator CPU "
                  f"{result['loop_cpu_per_cell'] * 1000:.0f} ms/cell in the loop ({result['cpu_per_cell'] * 1000:.0f} whole run)",
                  flush=True)
    print(f"medians over {args.rounds} alternated rounds, {args.cells} cells per pair "
          f"(0.5 s warm-up + 0.3 s each):")
    print("pairs  wall_s  loop_wall_overhead_s/cell/pair  loop_cpu_ms/cell  whole_cpu_ms/cell  failed_cells")
    for n in counts:
        rows = seen[n]
        print(f"{n:>5}  {statistics.median(r['wall'] for r in rows):6.2f}  "
              f"{statistics.median(r['loop_per_cell_per_pair'] for r in rows):30.3f}  "
              f"{statistics.median(r['loop_cpu_per_cell'] for r in rows) * 1000:16.0f}  "
              f"{statistics.median(r['cpu_per_cell'] for r in rows) * 1000:17.0f}  {sum(r['failed'] for r in rows):>12}")


if __name__ == "__main__":
    main()
