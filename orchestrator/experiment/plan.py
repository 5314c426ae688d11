"""From an experiment to the ordered list of cells that a run executes."""

from __future__ import annotations

import itertools
import random
import secrets
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from . import iperf3
from .config import CELL_KEYS, Experiment
from .dimensions import BASIC
from ..errors import ConfigError, FormatVersionError
from . import estimate
from .units import format_duration

# plan.json's format (docs/results-schema.md, "Format versions"); raised when what a resumed run
# needs from it changes. A plan.json without the key was written before versions: version 1.
FORMAT_VERSION = 1


@dataclass(frozen=True)
class Cell:
    workload: str
    mode: str
    message_size: int
    threads: int
    fields: int
    sender: str
    nodelay: bool
    sndbuf: int
    rcvbuf: int
    receive: str
    uring_buffers: str
    repetition: int
    # Which keys were matrix dimensions; they, and only they, name the cell beyond the basics.
    varied: tuple[str, ...] = ()

    @property
    def cell_id(self) -> str:
        name = f"{self.workload}-{self.mode}-{self.message_size}B-{self.threads}t"
        for key in self.varied:
            if key not in BASIC:
                name += f"-{key}={str(getattr(self, key)).lower()}"
        return f"{name}-r{self.repetition}"

    def params(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("varied")
        return data

    def to_json(self) -> dict[str, Any]:
        return {"cell_id": self.cell_id, **self.params(), "varied": list(self.varied)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Cell":
        fields = {k: v for k, v in data.items() if k != "cell_id"}
        fields["varied"] = tuple(fields.get("varied", ()))
        fields.setdefault("receive", "copy")  # a plan.json from before receive modes: read() throughout
        fields.setdefault("uring_buffers", "plain")  # ... and from before registered buffers
        return cls(**fields)


@dataclass(frozen=True)
class Plan:
    seed: int
    cells: tuple[Cell, ...]

    def to_json(self) -> dict[str, Any]:
        return {"format_version": FORMAT_VERSION, "seed": self.seed, "cells": [c.to_json() for c in self.cells]}

    @classmethod
    def from_json(cls, data: dict[str, Any], source: object = "plan.json") -> "Plan":
        """The plan as saved; FormatVersionError if another format version wrote it."""
        version = data.get("format_version", 1)
        if version != FORMAT_VERSION or isinstance(version, bool):
            raise FormatVersionError(source, version, FORMAT_VERSION)
        return cls(seed=int(data["seed"]), cells=tuple(Cell.from_json(c) for c in data["cells"]))


def load_plan(path: Path) -> Plan:
    """A run folder's plan.json: ConfigError if it cannot be read, FormatVersionError if another
    format version wrote it."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        return Plan.from_json(data, path)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{path}: not a plan this orchestrate can read: {exc}") from None


# Over either, a plan needs --yes: it is more likely a typo in the matrix than a plan.
MAX_PLAN_CELLS = 100_000
MAX_PLAN_SECONDS = 24 * 3600


@dataclass(frozen=True)
class PlanSize:
    cells: int  # per pair: every pair runs the whole plan
    seconds: float  # the whole run, as `run --dry-run` estimates it (estimate.Estimate.total_s)
    pairs: int = 1
    serial: bool = False

    @property
    def too_big(self) -> bool:
        return self.cells > MAX_PLAN_CELLS or self.seconds > MAX_PLAN_SECONDS

    def describe(self) -> str:
        if self.pairs == 1:
            return f"{self.cells:,} cells, about {format_duration(self.seconds)}"
        how = "one pair after another" if self.serial else "the pairs at once"
        return (f"{self.cells:,} cells on each of {self.pairs} pairs ({self.cells * self.pairs:,} in all), "
                f"about {format_duration(self.seconds)} with {how}")


def plan_size(experiment: Experiment, pairs: int = 1, serial: bool = False, report: bool = True) -> PlanSize:
    """The plan's cells and time, from the matrix alone: nothing is expanded, so a plan of
    millions of cells is sized at once. The time is estimate.py's, the one rule for pairs at
    once and one after another, so `run`, `run --dry-run` and `check` say the same."""
    cells = experiment.repetitions
    for key in CELL_KEYS:
        cells *= len(experiment.dimension(key))
    cells += len(iperf3.cell_parameters(experiment.dimension, experiment.reference)) * experiment.repetitions
    cells += len(iperf3.paired_parameters(experiment.dimension, experiment.reference)) * experiment.repetitions
    guess = estimate.estimate(experiment, cells, report=report, plot_sets=estimate.plot_sets(experiment),
                              pairs=pairs, serial=serial)
    return PlanSize(cells, guess.total_s, pairs, guess.serial)


def new_seed() -> int:
    return secrets.randbits(63)


def expand(experiment: Experiment, seed: int) -> Plan:
    """Every combination of the dimensions, times the repetitions.

    Shuffling interleaves repetitions and modes, so slow drift on a host (thermal, a noisy
    neighbour) spreads over all cells instead of biasing whichever ran last. The seed makes
    the order replayable.
    """
    varied = tuple(k for k in CELL_KEYS if getattr(experiment.matrix, k) is not None)
    values = [experiment.dimension(k) for k in CELL_KEYS]
    cells = [
        Cell(**dict(zip(CELL_KEYS, combo)), repetition=rep, varied=varied)
        for rep in range(1, experiment.repetitions + 1)
        for combo in itertools.product(*values)
    ]
    # The iperf3 reference cells, shuffled in with ours like any other cell.
    cells += [Cell(**params, repetition=rep, varied=varied) for rep in range(1, experiment.repetitions + 1)
              for params in iperf3.cell_parameters(experiment.dimension, experiment.reference)]
    # The one_copy cells at one field they pair with, when the matrix lacks them; their ids name
    # their fields, so that they never share an id with the matrix's one_copy cells.
    named = varied if "fields" in varied else (*varied, "fields")
    cells += [Cell(**params, repetition=rep, varied=named) for rep in range(1, experiment.repetitions + 1)
              for params in iperf3.paired_parameters(experiment.dimension, experiment.reference)]
    if experiment.order == "shuffled":
        random.Random(seed).shuffle(cells)
    return Plan(seed=seed, cells=tuple(cells))
