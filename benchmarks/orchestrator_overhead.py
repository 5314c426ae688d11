#!/usr/bin/env python3
"""The orchestrator's own cost per cell: a run's wall time, minus the sum of the cells'
warm-up plus duration, divided by the number of cells; and its CPU. A figure, not a test.

    .venv/bin/python benchmarks/orchestrator_overhead.py [--inventory lab-inventory.yml] [--cells 12]
    .venv/bin/python benchmarks/orchestrator_overhead.py --inventory pairs.yml --lab orch --pairs 1,2,4 --rounds 3
    .venv/bin/python benchmarks/orchestrator_overhead.py --inventory pairs.yml --config configs/smoke.yml --pairs 1,3

It runs short one_copy cells (0.3 s, after a 0.5 s warm-up: the least that lets the next cell be
armed during it) so the overhead dominates, and prints the figure for the whole run (connect,
preflight, deploy, facts included) and for the cell loop alone.

With --pairs (an inventory from `orchestrate lab up --pairs N`), each count of pairs runs the same
plan on the inventory's first pairs at once. The pairs' cell loops are lined up (each waits for
the others before its first cell, and after its last), so the window from the first cell to the
last holds cells of every pair and nothing else: no pair's preflight or deploy, no teardown. In
that window it counts, per cell:
  - the wall time each pair's loop spends beyond its cells' warm-up and duration;
  - the orchestrator's CPU (the whole process), split by thread: the pair threads, paramiko's
    transport threads (SSH packets), the rest;
  - with --lab PREFIX (the lab's `--prefix`), the CPU of the lab's namespaces: their sshds, and
    the commands they ran (agents, perf, the shells and tar around them);
  - the whole machine's busy CPU (/proc/stat), so what neither we nor the lab used is the
    machine's other load.
The counts (and the inventories, when --inventory is given more than once, e.g. a lab built with
`--rate-mbit 50` whose agents hardly use CPU) are alternated round after round (--rounds), so
that the machine's other load falls on all of them alike, and the medians over the rounds are
printed.

With --config, each count runs that experiment whole (connect, preflight, deploy, host facts,
cells; no report) and its wall time is printed: N pairs at once against one pair.
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import paramiko
import yaml

from orchestrator.remote import hosts
from orchestrator import processes
from orchestrator.run import runner
from orchestrator.experiment.config import load_experiment
from orchestrator.experiment.inventory import load_inventory

LINE_UP_TIMEOUT = 300.0  # a pair that failed before its first cell never arrives: the window is then void
TICK = os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------------------- CPU counters


def thread_cpu() -> dict[int, tuple[str, float]]:
    """CPU seconds of every live thread of this process, with the thread's kind."""
    seen = {}
    for thread in threading.enumerate():
        if thread.ident is None:
            continue
        kind = "ssh" if isinstance(thread, paramiko.Transport) else "other"
        try:
            seen[thread.ident] = (kind, time.clock_gettime(time.pthread_getcpuclockid(thread.ident)))
        except (OSError, ProcessLookupError):  # it ended just now
            continue
    return seen


def machine_busy() -> float:
    """CPU seconds the whole machine spent busy so far, all CPUs (/proc/stat's first line)."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (values + [0] * 8)[:8]
    return (user + nice + system + irq + softirq + steal) / TICK


@dataclass
class LabSample:
    """CPU seconds of the processes in a lab's namespaces: sshd's own, and what sshd reaped
    (its sessions' shells, perf, the agents, tar) plus whatever else lives there."""

    sshd: dict[tuple[int, int], float] = field(default_factory=dict)  # (pid, start time) -> own
    commands: dict[tuple[int, int], float] = field(default_factory=dict)


def lab_sample(prefix: str | None) -> LabSample | None:
    if not prefix:
        return None
    inodes = set()
    for ns in Path("/run/netns").glob(f"{prefix}-*"):
        inodes.add(ns.stat().st_ino)
    sample = LabSample()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if (proc / "ns" / "net").stat().st_ino not in inodes:
                continue
            text = (proc / "stat").read_text()
        except OSError:
            continue
        comm = text[text.index("(") + 1:text.rindex(")")]
        fields = text[text.rindex(")") + 2:].split()
        utime, stime, cutime, cstime, start = (int(fields[i]) for i in (11, 12, 13, 14, 19))
        key = (int(proc.name), start)
        if comm.startswith("sshd"):
            sample.sshd[key] = (utime + stime) / TICK
            sample.commands[key] = (cutime + cstime) / TICK
        else:
            sample.commands[key] = (utime + stime + cutime + cstime) / TICK
    return sample


def _grown(before: dict, after: dict) -> float:
    """What the processes alive at the end used since the start (all of it, for one started since)."""
    return sum(value - before.get(key, 0.0) for key, value in after.items())


@dataclass
class Window:
    """Counters at one edge of the lined-up cell loops."""

    at: float
    process: float
    threads: dict[int, tuple[str, float]]
    machine: float
    lab: LabSample | None


def open_window(lab: str | None) -> Window:
    # The lab's /proc scan first, and last in close_window: its own CPU stays outside ours.
    sample = lab_sample(lab)
    return Window(time.monotonic(), time.process_time(), thread_cpu(), machine_busy(), sample)


def close_window(lab: str | None) -> Window:
    at, process, threads, machine = time.monotonic(), time.process_time(), thread_cpu(), machine_busy()
    return Window(at, process, threads, machine, lab_sample(lab))


# ---------------------------------------------------------------------------- waits on the hosts

# Where a pair's thread waits for a host: a session opened and its command started, a process
# group id to come back, the server agent's READY line, a command's end (which holds the cell's
# warm-up and duration). The rest of the thread's time in its cell loop is the orchestrator's own:
# its Python, its files and fsyncs, and waiting for a CPU or the GIL.
WAITS = ((hosts.SshProcess, "__init__"), (hosts.SshProcess, "group"), (processes.GroupProcess, "read_line"),
         (processes.GroupProcess, "finish"))
_waiting = threading.local()
_remote: dict[int, float] = {}  # thread -> seconds spent in WAITS while its loop was measured
_measured: set[int] = set()


def _timed(method):
    @functools.wraps(method)
    def wait(*args, **kwargs):
        if getattr(_waiting, "depth", 0) or threading.get_ident() not in _measured:
            return method(*args, **kwargs)
        _waiting.depth, started = 1, time.monotonic()
        try:
            return method(*args, **kwargs)
        finally:
            _waiting.depth = 0
            ident = threading.get_ident()
            _remote[ident] = _remote.get(ident, 0.0) + time.monotonic() - started
    return wait


def _time_the_waits() -> None:
    """Wrap WAITS once, when a run is measured (importing this file changes nothing)."""
    for cls, name in WAITS:
        method = getattr(cls, name)
        if not getattr(method, "timed", False):
            wrapped = _timed(method)
            wrapped.timed = True  # type: ignore[attr-defined]
            setattr(cls, name, wrapped)


# ---------------------------------------------------------------------------- the run


class Clock(runner.Progress):
    """Each pair's cell loop: when it started and ended. With `line_up` pairs, each pair's loop
    waits for all of them before its first cell and after its last, and the counters are read
    by the last one to arrive."""

    def __init__(self, parent: Clock | None = None, line_up: int = 0, lab: str | None = None) -> None:
        self.loop_started = 0.0
        self.last_finished = 0.0
        self.remote = 0.0
        self.ident = 0
        self.todo = 0
        self.stages: list[tuple[str, float]] = []
        self.pairs: dict[str, Clock] = {}
        self.lock = threading.Lock()
        self.parent = parent
        self.lab = lab
        self.pair_threads: set[int] = set()
        self.windows: list[Window] = []
        self.void = False
        if line_up:
            self.first = threading.Barrier(line_up, action=lambda: self.windows.append(open_window(lab)), timeout=LINE_UP_TIMEOUT)
            self.last = threading.Barrier(line_up, action=lambda: self.windows.append(close_window(lab)), timeout=LINE_UP_TIMEOUT)

    @property
    def root(self) -> Clock:
        return self.parent or self

    def for_pair(self, name: str) -> Clock:
        with self.lock:
            return self.pairs.setdefault(name, Clock(self))

    def stage(self, message: str) -> None:
        self.stages.append((message, time.monotonic()))

    def _line_up(self, barrier: threading.Barrier) -> None:
        try:
            barrier.wait()
        except threading.BrokenBarrierError:  # a pair failed: no window for this round
            self.root.void = True

    def start(self, total: int, done: int) -> None:
        self.todo = total - done
        self.root.pair_threads.add(threading.get_ident())
        if hasattr(self.root, "first"):
            self._line_up(self.root.first)
        self.loop_started = time.monotonic()
        self.ident = threading.get_ident()
        _remote[self.ident] = 0.0
        _measured.add(self.ident)

    def cell_finished(self, outcome) -> None:
        self.last_finished = time.monotonic()
        self.todo -= 1
        if self.todo == 0:
            _measured.discard(self.ident)
            self.remote = _remote.get(self.ident, 0.0)
            if hasattr(self.root, "last"):
                self._line_up(self.root.last)

    def pair_failed(self, error: str) -> None:
        if hasattr(self.root, "first"):
            self.root.void = True
            self.root.first.abort()
            self.root.last.abort()


def _experiment(scratch: Path, pairs: int | None, cells: int, config: Path | None, perf: bool = True):
    if config is not None:
        return load_experiment(config)
    # With pairs: the same one-thread cell, repeated, so that the agents load the 2 cores as little
    # as they can and what grows with the pairs is the orchestrator's. With pairs, small socket
    # buffers: on a rate-limited link (`lab up --rate-mbit 50`) the default ones hold more than the
    # window sends, and draining them would stretch every cell's window.
    matrix = {"threads": list(range(1, cells + 1))} if pairs is None else {"threads": [1]}
    path = scratch / "overhead.yml"
    path.write_text(yaml.safe_dump({
        "name": "overhead", "matrix": matrix, "repetitions": 1 if pairs is None else cells,
        "mode": "one_copy", "message_size": "64KiB", "duration": 0.3, "warmup": 0.5, "order": "listed",
        "timeouts": {"connect": "30s"}, **({} if pairs is None else {"sndbuf": "32KiB", "rcvbuf": "32KiB"}),
        **({} if perf else {"perf": {"enabled": False}}),
    }))
    return load_experiment(path)


def run_once(inventory_path: Path, pairs: int | None, cells: int, lab: str | None = None,
             config: Path | None = None, perf: bool = True) -> dict:
    _time_the_waits()
    with tempfile.TemporaryDirectory() as scratch:
        experiment = _experiment(Path(scratch), pairs, cells, config, perf)
        inventory = load_inventory(inventory_path)
        if pairs is not None:
            names = list(inventory.pairs)
            if pairs > len(names):
                raise SystemExit(f"{inventory_path} has {len(names)} pairs, not {pairs}")
            inventory = runner.select_pairs(inventory, names[:pairs])
        state = runner.create_run(experiment, inventory, Path(scratch) / "results")
        clock = Clock(line_up=pairs if pairs is not None and config is None else 0, lab=lab)
        started, cpu_started = time.monotonic(), time.process_time()
        outcome = runner.execute(state, clock)
        ended, cpu_ended = time.monotonic(), time.process_time()
    per_cell = experiment.warmup + experiment.duration
    ran = len(outcome.finished)
    cells = len(state.plan.cells)
    loops = list(clock.pairs.values()) or [clock]
    # Per pair: its own loop's wall time minus what its cells measured, over its cells.
    per_pair = [(c.last_finished - c.loop_started - cells * per_cell) / cells for c in loops]
    # Of each pair's loop: the time its thread was not waiting on a host, per cell.
    local = [(c.last_finished - c.loop_started - c.remote) / cells for c in loops]
    result = {"pairs": len(outcome.pairs), "cells": ran, "failed": len(outcome.failed), "wall": ended - started,
              "whole_per_cell": (ended - started - cells * per_cell) / cells,  # the pairs' cells overlap
              "loop_per_cell_per_pair": statistics.median(per_pair), "local_per_cell_per_pair": statistics.median(local),
              "stages": clock.stages, "started": started,
              "cpu_per_cell": (cpu_ended - cpu_started) / max(1, ran),
              "warmup": experiment.warmup, "duration": experiment.duration}
    if len(clock.windows) == 2 and not clock.void and ran:
        result.update(_split(clock.windows[0], clock.windows[1], clock.pair_threads, ran))
    return result


def _split(first: Window, last: Window, pair_threads: set[int], ran: int) -> dict:
    """The window's CPU per cell run, in seconds, by whose it was."""
    by_kind = {"pair": 0.0, "ssh": 0.0}
    for ident, (kind, seconds) in last.threads.items():
        kind = "pair" if ident in pair_threads else kind
        if kind in by_kind:
            by_kind[kind] += seconds - first.threads.get(ident, (kind, 0.0))[1]
    ours = last.process - first.process
    split = {"window": last.at - first.at, "ours": ours / ran, "ours_pair_threads": by_kind["pair"] / ran,
             "ours_ssh_threads": by_kind["ssh"] / ran, "ours_rest": (ours - by_kind["pair"] - by_kind["ssh"]) / ran,
             "machine": (last.machine - first.machine) / ran}
    if first.lab is not None and last.lab is not None:
        sshd, commands = _grown(first.lab.sshd, last.lab.sshd), _grown(first.lab.commands, last.lab.commands)
        split.update(lab_sshd=sshd / ran, lab_commands=commands / ran)
        split["others"] = split["machine"] - split["ours"] - (sshd + commands) / ran
    return split


# ---------------------------------------------------------------------------- output


def _median(rows: list[dict], key: str) -> float | None:
    values = [r[key] for r in rows if key in r]
    return statistics.median(values) if values else None


def _ms(value: float | None, width: int) -> str:
    return f"{'-':>{width}}" if value is None else f"{value * 1000:{width}.1f}"


def _load() -> str:
    return "/".join(Path("/proc/loadavg").read_text().split()[:3])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inventory", action="append", default=None,
                        help="hosts file (default: inventory.yml); given more than once, each is measured, alternated")
    parser.add_argument("--lab", action="append", default=None, metavar="PREFIX",
                        help="the lab prefix of each --inventory, in the same order: its namespaces' CPU is counted")
    parser.add_argument("--cells", type=int, default=12)
    parser.add_argument("--pairs", default=None, metavar="N[,N...]",
                        help="run on the inventory's first N pairs at once; a comma list alternates the counts")
    parser.add_argument("--rounds", type=int, default=1, help="with --pairs: how many times each count runs, alternated")
    parser.add_argument("--no-perf", action="store_true",
                        help="cells without perf stat (its start-up is the hosts' largest CPU cost per cell)")
    parser.add_argument("--config", type=Path, default=None,
                        help="with --pairs: run this experiment whole on each count and give its wall time")
    args = parser.parse_args()
    inventories = args.inventory or ["inventory.yml"]
    labs = args.lab or []
    if len(labs) not in (0, len(inventories)):
        parser.error("--lab: one prefix per --inventory")
    labs += [None] * (len(inventories) - len(labs))
    if args.pairs is None:
        result = run_once(Path(inventories[0]), None, args.cells)
        print(f"inventory: {inventories[0]}; cells: {result['cells']} ({result['failed']} failed); "
              f"each {result['warmup']:g}s warm-up + {result['duration']:g}s")
        print(f"whole run: {result['wall']:.2f}s wall, overhead {result['whole_per_cell']:.3f} s/cell")
        print(f"cell loop: overhead {result['loop_per_cell_per_pair']:.3f} s/cell")
        for message, at in result["stages"]:
            print(f"  {message:<22} started at +{at - result['started']:.2f}s")
        return
    counts = [int(n) for n in args.pairs.split(",")]
    cases = [(inventory, lab, n) for inventory, lab in zip(inventories, labs) for n in counts]
    seen: dict[tuple, list[dict]] = {case: [] for case in cases}
    print(f"load average at the start: {_load()}", flush=True)
    for round_ in range(1, args.rounds + 1):
        for case in cases:
            inventory, lab, n = case
            result = run_once(Path(inventory), n, args.cells, lab, args.config, perf=not args.no_perf)
            seen[case].append(result)
            if args.config is not None:
                print(f"round {round_} {inventory} pairs {n}: {result['cells']} cells ({result['failed']} failed), "
                      f"wall {result['wall']:.2f}s", flush=True)
                continue
            print(f"round {round_} {inventory} pairs {n}: {result['cells']} cells ({result['failed']} failed), "
                  f"loop overhead {result['loop_per_cell_per_pair']:.3f} s/cell/pair "
                  f"({result['local_per_cell_per_pair']:.3f} not waiting on a host), orchestrator CPU "
                  f"{_ms(result.get('ours'), 0).strip()} ms/cell in the lined-up loops "
                  f"({result['cpu_per_cell'] * 1000:.0f} whole run), load {_load()}", flush=True)
    print(f"load average at the end: {_load()}")
    if args.config is not None:
        print(f"medians over {args.rounds} alternated rounds, {args.config} whole (no report):")
        print("inventory  pairs  cells  wall_s  failed_cells")
        for case in cases:
            rows = seen[case]
            print(f"{case[0]}  {case[2]:>5}  {rows[0]['cells']:>5}  {statistics.median(r['wall'] for r in rows):6.2f}  "
                  f"{sum(r['failed'] for r in rows):>12}")
        return
    print(f"medians over {args.rounds} alternated rounds, {args.cells} cells per pair (0.5 s warm-up + 0.3 s each"
          f"{', no perf' if args.no_perf else ''}); wall in s per cell per pair, of it the pair thread's time not "
          "waiting on a host (local); CPU in ms per cell run, in the window from the pairs' first cell to their last:")
    print("inventory  pairs  wall_overhead  local  ours_ms  (pair_threads  ssh_threads  rest)  "
          "lab_sshd_ms  lab_commands_ms  others_ms  machine_ms  failed_cells")
    for case in cases:
        rows = seen[case]
        print(f"{case[0]}  {case[2]:>5}  {statistics.median(r['loop_per_cell_per_pair'] for r in rows):13.3f}  "
              f"{statistics.median(r['local_per_cell_per_pair'] for r in rows):5.3f}  "
              f"{_ms(_median(rows, 'ours'), 7)}  ({_ms(_median(rows, 'ours_pair_threads'), 12)}  "
              f"{_ms(_median(rows, 'ours_ssh_threads'), 11)}  {_ms(_median(rows, 'ours_rest'), 4)})  "
              f"{_ms(_median(rows, 'lab_sshd'), 11)}  {_ms(_median(rows, 'lab_commands'), 15)}  "
              f"{_ms(_median(rows, 'others'), 9)}  {_ms(_median(rows, 'machine'), 10)}  "
              f"{sum(r['failed'] for r in rows):>12}")


if __name__ == "__main__":
    main()
