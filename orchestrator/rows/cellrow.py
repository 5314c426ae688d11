"""From a cell folder to its results row: the one place that reads a cell's raw files (agent
JSON through `agentjson`, perf's file through `perfstat`) and decides the cell's status.

The run calls `read_cell` once per cell, before it writes anything about the cell (its
`cell.json`, its `intervals.csv` and `results.csv` rows), so all three say the same; the
tests call it on recorded cell folders.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import agentjson, iperf3, layout, perfstat, results
from .agentjson import AgentDocument
from ..experiment.config import Experiment
from ..errors import OrchestrateError
from .layout import DEFAULT_PAIR
from ..experiment.iperf3 import MODE as IPERF3
from ..experiment.plan import Cell
from ..roles import ROLES


@dataclass(frozen=True)
class RowSettings:
    """What a run's experiment says about every one of its rows."""

    run_id: str
    perf_scope: str  # process, system, or off
    perf_events: tuple[str, ...]  # as asked for: perf's user-space fallback lands in their columns
    warmup: float
    checks: results.MeasurementChecks | None  # None: a completed measurement is never `degraded`
    pair: str = DEFAULT_PAIR  # the pair of hosts the rows' cells ran on

    @classmethod
    def of(cls, run_id: str, experiment: Experiment, checked: bool = True, pair: str = DEFAULT_PAIR) -> "RowSettings":
        checks = experiment.checks
        return cls(
            pair=pair,
            run_id=run_id,
            perf_scope=experiment.perf.scope if experiment.perf.enabled else "off",
            perf_events=tuple(experiment.perf.events),
            warmup=experiment.warmup,
            checks=results.MeasurementChecks(experiment.duration, checks.window_tolerance,
                                           checks.min_interval_fraction, checks.window_slack) if checked else None,
        )


@dataclass(frozen=True)
class CellRow:
    """A cell's results row; its status and error are the row's own, decided once."""

    row: results.Row

    @property
    def status(self) -> str:
        return str(self.row["status"])

    @property
    def error(self) -> str | None:
        error = self.row["error"]
        return None if error is None else str(error)

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def read_cell(folder: Path, cell: Cell, settings: RowSettings, run_error: str | None = None) -> CellRow:
    """The row of the cell whose raw files are in `folder`. `run_error` is what went wrong while
    the cell ran (an agent's exit status, a time limit, a lost host): it fails the row, with the
    agents' own last words added to it."""
    identity: dict[str, Any] = {
        "run_id": settings.run_id,
        "cell_id": cell.cell_id,
        "pair": settings.pair,
        **cell.params(),
        "perf_scope": settings.perf_scope,
        "warmup_s": settings.warmup,
    }
    agents: dict[str, AgentDocument | None] = {}
    perf: dict[str, dict[str, perfstat.Counter] | None] = {}
    counts: dict[str, str | None] = {}
    problems: list[str] = []
    for role in ROLES:
        path = folder / layout.agent_json(role)
        agents[role] = None
        try:
            agents[role] = agentjson.load_agent_json(path)
        except OrchestrateError as exc:
            if path.exists() and not run_error:  # a missing file is reported by the row itself
                problems.append(str(exc))
        perf_path = folder / layout.perf_csv(role)
        perf[role], counts[role] = None, None
        try:
            if perf_path.exists():
                # Records perf narrowed to user space (`cycles:u`) land in the columns of the
                # events asked for; the row says what they cover (`<role>_perf_counts`).
                perf[role], counts[role] = perfstat.counted_as_requested(
                    perfstat.load_perf_file(perf_path), settings.perf_events)
        except OrchestrateError as exc:
            problems.append(str(exc))
    error = explain(run_error, folder, agents) if run_error else ("; ".join(problems) or None)
    if cell.mode == IPERF3:  # an iperf3 reference cell: iperf3's -J output, not our agents' JSON
        return CellRow(iperf3.cell_row(identity, folder, error, perf, counts, settings.checks))
    return CellRow(results.cell_row(identity, agents["server"], agents["client"], perf["server"], perf["client"],
                                  error, settings.checks, perf_counts=counts))


def explain(error: str, folder: Path, agents: dict[str, AgentDocument | None]) -> str:
    """A run's failure with the agents' own words added: their JSON error, or else the last
    line of their stderr (an agent that died before it wrote its document)."""
    details = []
    for role in ROLES:
        agent = agents.get(role)
        message = agent.error if agent is not None else None
        if not message:
            try:
                lines = [line for line in (folder / layout.agent_stderr(role)).read_text().splitlines() if line.strip()]
                message = lines[-1] if lines else None
            except (OSError, UnicodeDecodeError):
                pass
        if message:
            details.append(f"{role}: {message}")
    return error + (" (" + "; ".join(details) + ")" if details else "")
