"""What every answer reads: one group of the run's summary (a variant's cells), the run itself,
each cell's conditions (conditions.py), the cells bounded by the link (ceiling.py), and which
CPU-per-byte metric stands for the copies' cost."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from .. import ceiling, conditions
from ..formatting import NOT_COUNTED, is_counted
from ..runfolder import RunData, UserSpaceOnly, user_space_only


@dataclass(frozen=True)
class Context:
    summary: pd.DataFrame
    run: RunData
    conditions: pd.DataFrame
    bounded: dict[str, ceiling.Ceiling]
    user: UserSpaceOnly

    @classmethod
    def of(cls, run: RunData, summary: pd.DataFrame) -> Context:
        return cls(summary, run, conditions.per_cell(run.results), ceiling.bounded_cells(run, summary),
                   user_space_only(run.results))

    @property
    def stream(self) -> pd.DataFrame:
        if self.summary.empty:
            return self.summary
        return self.summary[self.summary["workload"] == "stream"]

    @property
    def modes(self) -> set[str]:
        return set(self.stream["mode"]) if not self.stream.empty else set()

    @property
    def cpu_metric(self) -> str:
        # User-space cycles miss the copies' kernel time: CPU time (user + system) stands in then.
        if is_counted(self.summary, "cycles_per_byte") and not self.user.sides:
            return "cycles_per_byte"
        return "cpu_ns_per_byte"

    def cpu_metric_note(self) -> str:
        if self.cpu_metric != "cpu_ns_per_byte":
            return ""
        stands = "CPU time per byte (both sides), user + system from rusage, stands in for cycles per byte: "
        if is_counted(self.summary, "cycles_per_byte") and self.user.sides:
            return f"{stands}cycles were counted in user space only: {self.user.caveat}."
        return f"{stands}cycles were {NOT_COUNTED} on these hosts."

    def condition(self, cell: str, name: str) -> float:
        if cell in self.conditions.index and name in self.conditions.columns:
            return self.conditions.at[cell, name]
        return float("nan")
