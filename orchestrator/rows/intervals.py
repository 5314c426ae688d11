"""`intervals.csv`: the agents' per-interval samples as one tidy table per run, and the stall rule.

One row per cell, repetition, connection and interval of the side whose window gives the row's
figures in results.csv (the stream receiver, the rr client), so the time series and the
throughput column come from the same bytes. Rows are appended as each cell finishes, one
whole fsynced write per cell (as results.csv), and written whole by `orchestrate report` for a
run folder that predates the file (docs/results-schema.md).

The stall list here is stall.py's interval rule, with the `checks.min_interval_fraction` that
also judges a row (results.py); a row is judged on the agent's finer progress samples when it has
them (stall.doubts), so a row can be `degraded` by a gap no whole interval shows.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from . import layout
from ..experiment.iperf3 import MODE as IPERF3
from .agentjson import AgentDocument, load_agent_json
from ..experiment.dimensions import BASIC, PAIR, REPETITION, RUN_AND_CELL, with_pair
from ..errors import OrchestrateError
from ..roles import measuring_role
from .durable import append_whole, write_atomic
from .stall import Rate, low_intervals, summed_rates
from .results import repair_torn_tail

FILE_NAME = layout.INTERVALS
COLUMNS = (
    *RUN_AND_CELL, *PAIR, *BASIC, *REPETITION, "status",
    "role", "connection", "interval", "interval_s", "t_start_s", "t_end_s", "length_s", "bytes", "throughput_gbps",
)  # fmt: skip
_IDENTITY_END = COLUMNS.index("status") + 1  # the columns a row takes from its results.csv row


def frame_rates(cell: pd.DataFrame) -> list[Rate]:
    """stall.agent_rates' figures from one cell repetition's rows of intervals.csv."""
    nominal = float(cell["interval_s"].max()) if cell["interval_s"].notna().any() else 0.0
    by_interval = cell.groupby("interval", sort=True).agg(end=("t_end_s", "max"), moved=("bytes", "sum"))
    return summed_rates(by_interval["end"].tolist(), by_interval["moved"].tolist(), nominal)


def agent_rows(identity: Mapping[str, object], role: str, agent: AgentDocument) -> list[dict[str, object]]:
    """intervals.csv rows of one agent document; none if it measured nothing (an error document)."""
    if agent.status != "ok" or not agent.threads_detail:
        return []
    rows = []
    for thread in agent.threads_detail:
        start = 0.0
        for index, sample in enumerate(thread.intervals):
            length = sample.t - start
            rows.append({
                **{key: identity.get(key) for key in COLUMNS[:_IDENTITY_END]},
                "role": role, "connection": thread.index, "interval": index, "interval_s": agent.interval_s,
                "t_start_s": round(start, 6), "t_end_s": sample.t, "length_s": round(length, 6),
                "bytes": sample.bytes,
                "throughput_gbps": sample.bytes * 8 / length / 1e9 if length > 0 else None,
            })  # fmt: skip
            start = sample.t
    return rows


def cell_rows(row: Mapping[str, object], cell_dir: Path) -> list[dict[str, object]]:
    """intervals.csv rows for one results.csv row, from the measurer's JSON in its cell folder;
    none when that file is missing or unreadable (results.csv already says why)."""
    role = measuring_role(row.get("workload"), row.get("sender"))
    try:
        agent = load_agent_json(cell_dir / layout.agent_json(role))
    except OrchestrateError:
        return []
    return agent_rows(row, role, agent)


def _text(value: object) -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return ""  # not measured, never 0
    if isinstance(value, float):
        return np.format_float_positional(value, trim="0")
    return str(value)


def _csv(rows: Iterable[Mapping[str, object]], header: bool) -> bytes:
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    if header:
        writer.writerow(COLUMNS)
    writer.writerows([_text(r.get(c)) for c in COLUMNS] for r in rows)
    return text.getvalue().encode("utf-8")


class IntervalsFile:
    """intervals.csv of a run, appended a whole cell at a time (one write, then fsync; a write
    that fails part-way is cut back off, as ResultsTable does)."""

    def __init__(self, run_dir: Path, resume: Path | None = None):
        self.path = Path(run_dir) / FILE_NAME
        self.resume = resume
        repair_torn_tail(self.path)

    def append(self, rows: Sequence[Mapping[str, object]]) -> None:
        if not rows:
            return
        new_file = not self.path.exists() or self.path.stat().st_size == 0
        payload = _csv(rows, header=new_file)
        append_whole(self.path, payload, self.resume)

    def keep_only(self, cells: Iterable[tuple[str, str]]) -> None:
        """Drop the rows of every cell not in `cells`, (pair, cell_id) pairs (cells that results.csv
        does not hold: set aside by --retry-failed, or cut off by a crash between the two files), atomically."""
        if not self.path.exists() or self.path.stat().st_size == 0:
            return
        keep = set(cells)
        at_cell, at_pair = COLUMNS.index("cell_id"), COLUMNS.index("pair")
        with self.path.open(newline="", encoding="utf-8") as fh:
            reader = csv.reader(fh)
            header = next(reader, [])
            lines = list(reader)
        if header != list(COLUMNS):
            # A file from an older version (before the `pair` column): written again in today's
            # columns before anything is appended, or appended rows would not match its header.
            # A header that is not an older form of ours is left alone (the report rebuilds it).
            if "cell_id" not in header or not set(header) <= set(COLUMNS):
                return
            old = [dict(zip(header, line)) for line in lines if len(line) == len(header)]
            lines = [[row.get(c) or (layout.DEFAULT_PAIR if c == "pair" else "") for c in COLUMNS] for row in old]
            rewrite = True
        else:
            rewrite = False
        kept = [line for line in lines if len(line) == len(COLUMNS) and (line[at_pair], line[at_cell]) in keep]
        if len(kept) == len(lines) and not rewrite:
            return
        text = io.StringIO()
        writer = csv.writer(text, lineterminator="\n")
        writer.writerow(COLUMNS)
        writer.writerows(kept)
        write_atomic(self.path, text.getvalue(), self.resume)


def _pair(value: object) -> str:
    """A row's pair; none (a file from before pairs existed) is "default", as dimensions.with_pair."""
    return layout.DEFAULT_PAIR if value is None or value is pd.NA or value == "" or (
        isinstance(value, float) and np.isnan(value)) else str(value)


def rebuild(run_dir: Path, results: pd.DataFrame) -> Path:
    """intervals.csv written whole from the cells' raw files, for every results.csv row."""
    run_dir = Path(run_dir)
    rows: list[dict[str, object]] = []
    for record in with_pair(results).to_dict("records"):
        clean = {k: (None if v is pd.NA or (isinstance(v, float) and np.isnan(v)) else v) for k, v in record.items()}
        clean["pair"] = _pair(clean.get("pair"))  # each pair's cells are in its own folder (layout.py)
        rows += cell_rows(clean, layout.cell_dir(run_dir, str(clean["cell_id"]), clean["pair"]))
    path = run_dir / FILE_NAME
    write_atomic(path, _csv(rows, header=True), redo=f"orchestrate report {run_dir}")
    return path


def read_intervals(path: Path) -> pd.DataFrame:
    """intervals.csv as a DataFrame; an empty frame with the columns if it has no rows."""
    try:
        frame = pd.read_csv(path)
    except pd.errors.EmptyDataError:
        return pd.DataFrame(columns=list(COLUMNS))
    except (OSError, pd.errors.ParserError) as exc:
        raise OrchestrateError(f"{path}: cannot read intervals: {exc}") from exc
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise OrchestrateError(f"{path}: missing column(s) {', '.join(missing)}")
    return frame


def ensure(run_dir: Path, results: pd.DataFrame) -> pd.DataFrame:
    """The run's intervals, rebuilt from its raw files when intervals.csv is missing or lacks
    cells that results.csv has (a run from before the file existed)."""
    run_dir = Path(run_dir)
    path = run_dir / FILE_NAME
    results = with_pair(results)
    if path.is_file():
        repair_torn_tail(path)
        try:
            frame = read_intervals(path)
        except OrchestrateError:
            frame = pd.DataFrame(columns=list(COLUMNS))  # unreadable or another layout: built again below
        # A cell is (pair, cell_id): the same cell id on two pairs is two cells.
        have = {(_pair(p), str(c)) for p, c in zip(frame["pair"], frame["cell_id"])}
        folders: dict[str, set[str]] = {}  # each pair's cells/ listed once, not a stat per row
        for pair in {_pair(p) for p in results["pair"]}:
            try:
                folders[pair] = {e.name for e in os.scandir(layout.cells_dir(run_dir, pair)) if e.is_dir()}
            except OSError:
                folders[pair] = set()
        wanted = {(_pair(p), str(c)) for p, c, mode in zip(results["pair"], results["cell_id"], results["mode"])
                  if str(c) in folders[_pair(p)]
                  and mode != IPERF3}  # iperf3 reference cells have no rows here
        if wanted <= have and not frame.empty:
            return frame
    if not any(layout.cells_dir(run_dir, pair).is_dir() for pair in layout.pairs_in(run_dir)):
        return pd.DataFrame(columns=list(COLUMNS))  # no raw files to build it from
    return read_intervals(rebuild(run_dir, results))


@dataclass(frozen=True)
class Stall:
    cell_id: str  # one repetition
    low: tuple[Rate, ...]  # the intervals below the threshold
    median: float  # bytes per second, over the judged intervals
    judged: int

    @property
    def lowest(self) -> Rate:
        return min(self.low, key=lambda r: r.rate)


def stalls(frame: pd.DataFrame, fraction: float) -> list[Stall]:
    """Every cell repetition with an interval below `fraction` of its median (low_intervals)."""
    found = []
    if frame.empty:
        return found
    for cell_id, cell in frame.groupby("cell_id", sort=True):
        rates = frame_rates(cell)
        low, median = low_intervals(rates, fraction)
        if low:
            found.append(Stall(str(cell_id), tuple(low), median, len(rates)))
    return found
