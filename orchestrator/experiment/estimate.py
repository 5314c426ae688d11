"""How long a run will take, before it starts: `orchestrate run --dry-run` and the progress bar's ETA.

The orchestrator's own time is measured, not guessed. These are the one place its figures live;
benchmarks/orchestrator_overhead.py measures them again (README, "Figures measured here"):

- CELL_OVERHEAD_S: per cell in the cell loop, beyond warm-up plus duration: starting the agents
  over SSH, collecting and checking their files, appending the row. 0.06 s on an idle 2-core VM
  over SSH to the namespace lab, 0.12 s with the same VM loaded (load average 9); 0.04 s locally.
- SETUP_S + BUILD_S: once per run, before the first cell: connecting, the run lock, preflight,
  compiling the agents on a host whose workdir has no build of these sources yet (the first run,
  or after the agents changed), the data-path probe (0.2 s of traffic), host facts. 3.4 s in all
  on the idle VM over the lab, both hosts building at once (run folder created to host facts
  written, tests/lab/test_lab_e2e.py's dry-run test); under load (load average 9) it took 6.8 s.
- REPORT_S: writing summary.csv, intervals.csv, the plots (PNG and SVG) and the report, per set
  of plots (one, unless the run varies sender, nodelay or buffers). 5.0 s on the idle VM.
- REPORT_PAIR_S: what each pair beyond the first adds to the report (its rows, its plots, "Pairs
  compared"). `orchestrate report` on a copy of tests/fixtures/runs/pairs3 (3 pairs, 64 cells
  each) against 20261125T222925Z-vmcheck-598f (the same 64 cells on one pair), three series of 3
  each on the 2-core VM under other work (load average 2.5 to 5): medians 9.4/13.8, 8.7/15.1 and
  8.3/18.4 s; over all 9 runs 8.8 s on one pair, 16.7 s on three, so 4.0 s per pair beyond the first
  (an earlier review measured 5.1 s and 14.0 s).

The figures are an idle machine's: a loaded controller or host runs slower than estimated.
"""

from __future__ import annotations

from dataclasses import dataclass

from .config import Experiment
from .dimensions import OPTIONS

CELL_OVERHEAD_S = 0.1
SETUP_S = 1.4
BUILD_S = 2.0
REPORT_S = 5.0
REPORT_PAIR_S = 4.0


@dataclass(frozen=True)
class Estimate:
    cells: int  # per pair
    per_cell_s: float  # warm-up + duration + CELL_OVERHEAD_S
    setup_s: float  # SETUP_S, plus BUILD_S when a build is expected (per pair)
    report_s: float  # REPORT_S per set of plots, plus REPORT_PAIR_S per pair beyond the first
    # Pairs at once each set up and run their cells side by side: one pair's time.
    # One after another (`serial`), each pair's setup and cells follow the last's.
    pairs: int = 1
    serial: bool = False

    @property
    def rounds(self) -> int:
        return self.pairs if self.serial else 1

    @property
    def cells_s(self) -> float:
        return self.cells * self.per_cell_s * self.rounds

    @property
    def total_s(self) -> float:
        return self.setup_s * self.rounds + self.cells_s + self.report_s

    def breakdown(self) -> str:
        one = f"setup {self.setup_s:.1f} s + {self.cells} cells × {self.per_cell_s:.2f} s"
        if self.pairs == 1:
            return f"{one} + report {self.report_s:.0f} s"
        if self.serial:
            return f"{self.pairs} pairs one after another × ({one}) + report {self.report_s:.0f} s"
        return f"{one}, on {self.pairs} pairs at once, + report {self.report_s:.0f} s"


def per_cell_seconds(experiment: Experiment) -> float:
    """What one cell costs in wall time: its warm-up and measured window, plus our overhead."""
    return experiment.warmup + experiment.duration + CELL_OVERHEAD_S


def estimate(experiment: Experiment, cells: int, *, build: bool = True, report: bool = True,
             plot_sets: int = 1, pairs: int = 1, serial: bool = False) -> Estimate:
    return Estimate(
        cells=cells, per_cell_s=per_cell_seconds(experiment),
        setup_s=SETUP_S + (BUILD_S if build else 0.0),
        report_s=REPORT_S * plot_sets + REPORT_PAIR_S * (max(1, pairs) - 1) if report else 0.0,
        pairs=pairs, serial=serial and pairs > 1,
    )


def plot_sets(experiment: Experiment) -> int:
    """How many sets of plots the report makes: one per combination of the varied extra parameters."""
    count = 1
    for key in OPTIONS:
        count *= len(experiment.dimension(key))
    return count

