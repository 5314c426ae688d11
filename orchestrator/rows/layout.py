"""Where each file of a run folder lives: one place, so the runner that writes a run folder and the
readers that load it (resume, report, compare) never disagree.

It imports only the pair's default name (experiment.dimensions), so every stage may use it.

    RUN/config.yml, inventory.yml, plan.json, results.csv, intervals.csv, run.log, status.json, run.lock
                                            the whole run, every pair
    RUN/reproduces.json, RUN/compare/[PAIR/]compare.md, ...
                                            a reproduced run: its original, and the comparison with it
    RUN/cells/CELL/cell.json, RUN/hosts/ROLE.json, RUN/preflight/, RUN/processes.jsonl
                                            the pair named "default"
    RUN/pairs/PAIR/cells/CELL/, RUN/pairs/PAIR/hosts/, ...
                                            every other pair, laid out as "default" is
    RUN/.../cells/CELL.failed-N/, CELL.interrupted-N/
                                            a cell's earlier attempts, kept aside

An inventory with one server and one client is the pair "default", so a one-pair run folder is laid
out as it was before pairs existed.
"""

from __future__ import annotations

from pathlib import Path

from ..experiment.dimensions import DEFAULT_PAIR

# The whole run's files, at the top of its folder.
CONFIG = "config.yml"  # the experiment with every default filled in, and the seed
INVENTORY = "inventory.yml"  # the hosts, without secrets
PLAN = "plan.json"
RESULTS = "results.csv"
INTERVALS = "intervals.csv"
RUN_LOG = "run.log"
STATUS = "status.json"  # runstatus.py: what the run came to (measured or not, where it stopped, its counts)
ORIGIN = "reproduces.json"  # origin.py: a reproduced run's original (its id and folder), for `runs` and people
# flock'ed by the one orchestrate that works in the folder (runner.RunLock), its pid inside; the
# kernel lets it go when that process ends, however it ends.
RUN_LOCK = "run.lock"
# Each pair's own, in its pair_root.
PROCESSES = "processes.jsonl"  # leftovers.py: every remote process group this pair started
PREFLIGHT = "preflight"  # the data-path probe's cell folder goes here
CELL_RECORD = "cell.json"  # in each cell folder: what ran and the row's verdict
# A cell folder's raw files, one of each per role. The cell's command names them `ROLE.*` so that
# its tar brings them home.
def agent_json(role: str) -> str:
    return f"{role}.json"  # the agent's report (docs/agent-protocol.md)


def perf_csv(role: str) -> str:
    return f"{role}.perf.csv"  # perf stat -x, -o


def agent_stderr(role: str) -> str:
    return f"{role}.stderr"


def iperf3_json(role: str) -> str:
    return f"{role}.iperf3.json"  # iperf3 -J, in a reference cell


# In hosts/: each host's facts.
def host_facts(role: str) -> str:
    return f"{role}.json"


# What `orchestrate report` writes beside results.csv.
SUMMARY = "summary.csv"
REPORT_MD = "report.md"
REPORT_HTML = "report.html"
PLOTS = "plots"
PAIRS = "pairs.csv"  # a run on several pairs: each pair against the baseline, cell by cell
# What `orchestrate compare` writes in its folder.
COMPARE_MD = "compare.md"
COMPARE_CSV = "compare.csv"
# Where `orchestrate reproduce` writes the comparison with the original: inside the new run.
REPRODUCED_COMPARE = "compare"

# Why an earlier attempt of a cell was kept aside: --retry-failed, or a run cut off mid-cell.
FAILED = "failed"
INTERRUPTED = "interrupted"


def pair_root(run_dir: Path, pair: str = DEFAULT_PAIR) -> Path:
    """The folder that holds one pair's cells/ and hosts/."""
    return Path(run_dir) if pair == DEFAULT_PAIR else Path(run_dir) / "pairs" / pair


def cells_dir(run_dir: Path, pair: str = DEFAULT_PAIR) -> Path:
    return pair_root(run_dir, pair) / "cells"


def cell_dir(run_dir: Path, cell_id: str, pair: str = DEFAULT_PAIR) -> Path:
    return cells_dir(run_dir, pair) / cell_id


def hosts_dir(run_dir: Path, pair: str = DEFAULT_PAIR) -> Path:
    return pair_root(run_dir, pair) / "hosts"


def preflight_dir(run_dir: Path, pair: str = DEFAULT_PAIR) -> Path:
    return pair_root(run_dir, pair) / PREFLIGHT


def aside_dir(cells_dir: Path, cell_id: str, why: str) -> Path:
    """Where an earlier attempt of a cell is kept: the first free `<cell_id>.<why>-<n>` (n from 1)."""
    n = 1
    while (Path(cells_dir) / f"{cell_id}.{why}-{n}").exists():
        n += 1
    return Path(cells_dir) / f"{cell_id}.{why}-{n}"


def pairs_in(run_dir: Path) -> list[str]:
    """The pairs a run folder holds, "default" first when it has one, the others by name."""
    found = [DEFAULT_PAIR] if (Path(run_dir) / "cells").is_dir() or (Path(run_dir) / "hosts").is_dir() else []
    others = Path(run_dir) / "pairs"
    if others.is_dir():
        found += sorted(p.name for p in others.iterdir() if p.is_dir() and not p.is_symlink())
    return found


def reproduced_compare_dir(run_dir: Path, pair: str | None = None) -> Path:
    """Where a reproduced run's comparison with its original goes: RUN/compare/, or RUN/compare/PAIR/
    for each pair of a run reproduced on several."""
    folder = Path(run_dir) / REPRODUCED_COMPARE
    return folder if pair is None else folder / pair
