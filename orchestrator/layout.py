"""Where each file of a run folder lives: one place, so the runner that writes a run folder and the
readers that load it (resume, report, compare) never disagree.

A leaf: it imports nothing from the package.

    RUN/plan.json, results.csv, intervals.csv, run.log, ...   the whole run, every pair
    RUN/cells/CELL/, RUN/hosts/ROLE.json                       the pair named "default"
    RUN/pairs/PAIR/cells/CELL/, RUN/pairs/PAIR/hosts/ROLE.json every other pair

An inventory with one server and one client is the pair "default", so a one-pair run folder is laid
out as it was before pairs existed.
"""

from __future__ import annotations

from pathlib import Path

DEFAULT_PAIR = "default"


def pair_root(run_dir: Path, pair: str = DEFAULT_PAIR) -> Path:
    """The folder that holds one pair's cells/ and hosts/."""
    return Path(run_dir) if pair == DEFAULT_PAIR else Path(run_dir) / "pairs" / pair


def cells_dir(run_dir: Path, pair: str = DEFAULT_PAIR) -> Path:
    return pair_root(run_dir, pair) / "cells"


def cell_dir(run_dir: Path, cell_id: str, pair: str = DEFAULT_PAIR) -> Path:
    return cells_dir(run_dir, pair) / cell_id


def hosts_dir(run_dir: Path, pair: str = DEFAULT_PAIR) -> Path:
    return pair_root(run_dir, pair) / "hosts"


def pairs_in(run_dir: Path) -> list[str]:
    """The pairs a run folder holds, "default" first when it has one, the others by name."""
    found = [DEFAULT_PAIR] if (Path(run_dir) / "cells").is_dir() or (Path(run_dir) / "hosts").is_dir() else []
    others = Path(run_dir) / "pairs"
    if others.is_dir():
        found += sorted(p.name for p in others.iterdir() if p.is_dir() and not p.is_symlink())
    return found
