"""The run's cell counts, on a real recorded run (tests/fixtures/runs/20261127T014622Z-stall-232a:
five cells ok, three zero_copy cells degraded by a stall in their first interval): each cell is
judged from its raw files as the run judges it (cellrow.read_cell), then counted."""

from __future__ import annotations

import json
from pathlib import Path

from orchestrator.experiment.config import load_experiment
from orchestrator.experiment.plan import Cell
from orchestrator.rows import cellrow
from orchestrator.rows.results import read_results
from orchestrator.run.cell import CellOutcome
from orchestrator.run.progress import CellTally

STALL = Path(__file__).parents[1] / "fixtures" / "runs" / "20261127T014622Z-stall-232a"


def judged_outcomes(run_dir: Path = STALL) -> list[CellOutcome]:
    """Each recorded cell as the run hands it to its progress: with its row's status and error."""
    experiment = load_experiment(run_dir / "config.yml")
    settings = cellrow.RowSettings.of(run_dir.name, experiment)
    outcomes = []
    for data in json.loads((run_dir / "plan.json").read_text())["cells"]:
        cell = Cell.from_json(data)
        row = cellrow.read_cell(run_dir / "cells" / cell.cell_id, cell, settings)
        outcomes.append(CellOutcome(cell, run_dir / "cells" / cell.cell_id, row.error, 2.0, status=row.status))
    return outcomes


def test_degraded_cells_are_counted_as_degraded_not_failed():
    outcomes = judged_outcomes()
    recorded = read_results(STALL / "results.csv")["status"].value_counts().to_dict()
    assert recorded == {"ok": 5, "degraded": 3}
    tally = CellTally()
    statuses = [tally.add(outcome) for outcome in outcomes]
    # A degraded cell carries its reasons in `error`; that alone never makes it failed.
    assert all(o.error for o in outcomes if o.status == "degraded")
    assert (tally.ok, tally.failed, tally.degraded) == (5, 0, 3)
    assert statuses == [o.status for o in outcomes]


def test_a_cell_not_judged_yet_counts_by_its_run_error():
    (first, *_) = judged_outcomes()
    tally = CellTally()
    assert tally.add(CellOutcome(first.cell, first.local_dir, "server agent exited with status 1", 1.0)) == "failed"
    assert tally.add(CellOutcome(first.cell, first.local_dir, None, 1.0)) == "ok"
    assert (tally.ok, tally.failed, tally.degraded) == (1, 1, 0)
