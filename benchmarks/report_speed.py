#!/usr/bin/env python3
"""How long `orchestrate report` and `orchestrate compare` take, on a quick run and at 10,000 rows.
A figure, not a test: the targets (report <= 1 s on a quick run, <= 2 s at 10,000 rows) hold on an
idle machine only.

    .venv/bin/python benchmarks/report_speed.py [--runs 5] [--old DIR] [--rows 10000]

Each measurement is a fresh `python -m orchestrator.cli report` (or `compare`) process on a fresh
copy of the run folder, so imports, rendering and writing are all counted, as a user sees them.
`--old DIR` names a folder holding another `orchestrator/` package (for example the previous
commit's: `git archive HEAD~1 orchestrator | tar -x -C /tmp/old`); its timings are taken
alternately with this tree's, run by run, so that drift in the machine's load hits both alike.
Every figure printed is the median of `--runs` runs.

The 10,000-row run is synthesized for this benchmark only, from a real recorded run: each of its
rows is repeated as further repetitions of the same cell (cell ids and repetition numbers
renumbered, every measured value kept), so the cells, and so the plots, stay the recorded run's
while the per-row work grows. Its `cells/` folder is left out; intervals.csv is the recorded one.
"""

from __future__ import annotations

import argparse
import csv
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RUN = ROOT / "tests" / "fixtures" / "runs" / "20261206T023809Z-labfull-87e3"
TARGETS = {"quick": 1.0, "large": 2.0}  # seconds, report, on an idle machine


def synthesize(source: Path, dest: Path, rows: int) -> Path:
    """A copy of `source` (without cells/) whose results.csv has about `rows` rows: each recorded
    row repeated as more repetitions of its cell."""
    dest.mkdir(parents=True)
    for item in source.iterdir():
        if item.name in ("cells", "preflight") or item.name.startswith(("report.", "summary", "plots")):
            continue
        (shutil.copytree if item.is_dir() else shutil.copy2)(item, dest / item.name)
    with (source / "results.csv").open(newline="") as handle:
        reader = csv.DictReader(handle)
        header, recorded = reader.fieldnames, list(reader)
    reps = max(int(r["repetition"]) for r in recorded)
    copies = max(1, rows // len(recorded))
    with (dest / "results.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=header)
        writer.writeheader()
        for k in range(copies):
            for row in recorded:
                rep = int(row["repetition"]) + k * reps
                cell = row["cell_id"].rsplit("-r", 1)[0]
                writer.writerow({**row, "repetition": str(rep), "cell_id": f"{cell}-r{rep}"})
    return dest


def timed(code: Path, args: list[str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds: user + system) of one command in a fresh process."""
    env = {**os.environ, "PYTHONPATH": str(code)}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    # Run from `code` itself: `python -m` puts the working folder first on sys.path, ahead of PYTHONPATH,
    # so run from this checkout every timing would be of this checkout's package.
    done = subprocess.run([sys.executable, "-m", "orchestrator.cli", *args], env=env, capture_output=True, text=True,
                          cwd=code)
    took = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(args)} with {code}: exit {done.returncode}\n{done.stderr[-2000:]}")
    return took, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="runs per figure (their median is printed)")
    parser.add_argument("--old", type=Path, help="a folder holding the previous orchestrator/ package, timed alternately")
    parser.add_argument("--rows", type=int, default=10_000, help="rows of the synthesized large run")
    parser.add_argument("--run", type=Path, default=RUN, help="the recorded run the sizes are made from")
    parser.add_argument("--only", choices=("report", "compare"), help="time one command only")
    parser.add_argument("--new", type=Path, default=ROOT, help="the folder holding the orchestrator/ package to time "
                        "(default: this checkout)")
    parser.add_argument("--warm", action="store_true", help="also time `report` run a second time on the same folder")
    args = parser.parse_args()
    trees = {"new": args.new.resolve()} | ({"old": args.old.resolve()} if args.old else {})
    work = Path(tempfile.mkdtemp(prefix="report-speed-"))
    try:
        sources = {"quick": args.run, "large": synthesize(args.run, work / "large-src", args.rows)}
        times: dict[tuple[str, str, str], list[tuple[float, float]]] = {}
        for n in range(args.runs):
            for size, source in sources.items():
                for name, code in (trees.items() if n % 2 == 0 else reversed(trees.items())):
                    folder = work / f"{size}-{n}-{name.replace(' ', '_')}"
                    for side in ("a", "b"):
                        shutil.copytree(source, folder / side, ignore=shutil.ignore_patterns("report.*", "summary.csv", "plots"))
                    if args.only != "compare":
                        times.setdefault(("report", size, name), []).append(timed(code, ["report", str(folder / "a")]))
                        if args.warm:  # the same folder again: its report, summary and plots are there
                            times.setdefault(("report again", size, name), []).append(
                                timed(code, ["report", str(folder / "a")]))
                    if args.only != "report":
                        times.setdefault(("compare", size, name), []).append(
                            timed(code, ["compare", str(folder / "a"), str(folder / "b"), "--out", str(folder / "cmp")]))
                    shutil.rmtree(folder)
        rows_of = {size: sum(1 for _ in (source / "results.csv").open()) - 1 for size, source in sources.items()}
        print(f"median of {args.runs} alternated runs each (wall s, and CPU s: user + system), {os.cpu_count()} CPUs, "
              f"load average {os.getloadavg()[0]:.1f} at the end")
        for (command, size, name), values in sorted(times.items()):
            wall, cpu = [v[0] for v in values], [v[1] for v in values]
            target = f" (target {TARGETS[size]:g} s idle)" if command == "report" and name == "new" else ""
            print(f"{command:12} {size:6} {rows_of[size]:>6} rows  {name:4} wall {statistics.median(wall):6.2f} s "
                  f"[{min(wall):.2f} to {max(wall):.2f}]  CPU {statistics.median(cpu):6.2f} s{target}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
