"""The progress bar's counts on a real recorded run whose degraded cells must not read as failed."""

from __future__ import annotations

import io

from rich.console import Console

from orchestrator.cli import terminal as cli
from orchestrator.run.cell import CellOutcome

from ..run.test_progress import judged_outcomes


def test_the_bar_counts_degraded_cells_apart_from_failed_ones():
    screen = Console(file=io.StringIO(), force_terminal=True, width=300, color_system=None)
    outcomes = judged_outcomes()
    progress = cli.TerminalProgress(screen, per_cell_s=2.5, repetitions=2)
    progress.start(total=len(outcomes) + 1, done=0)
    try:
        task = progress.bar.tasks[0]
        for outcome in outcomes:
            progress.cell_started(outcome.cell)
            progress.cell_finished(outcome)
        assert task.fields["failed_text"] == "[yellow]3 degraded[/]"
        last = outcomes[0]
        progress.cell_finished(CellOutcome(last.cell, last.local_dir, "server perf was killed by signal 9", 1.0,
                                           status="failed"))
        assert task.fields["failed_text"] == "[red]1 failed[/], [yellow]3 degraded[/]"
        progress.bar.refresh()
    finally:
        progress.stop()
    shown = screen.file.getvalue()
    assert "1 failed, 3 degraded" in shown
    degraded = [o for o in outcomes if o.status == "degraded"]
    for outcome in degraded:
        assert f"~ degraded {outcome.cell.cell_id}: " in shown
        assert f"✗ {outcome.cell.cell_id}" not in shown
    assert f"✗ {last.cell.cell_id}: server perf was killed by signal 9" in shown


def test_the_summary_shows_a_partly_mapped_receive_by_the_receive_rule(tmp_path):
    """A real lab run at MTU 1500 (tests/fixtures/receive/): its zerocopy cells mapped about 94%,
    so the terminal never shows them as plain `zerocopy`."""
    from pathlib import Path

    from orchestrator.report import stats
    from orchestrator.rows.results import read_results

    fixture = Path(__file__).resolve().parent.parent / "fixtures" / "receive" / "results-mtu1500.csv"
    out = io.StringIO()
    term = cli.Terminal.over(out, io.StringIO())
    cli.show_summary(term, tmp_path, stats.summarize(read_results(fixture)))
    text = out.getvalue()
    assert "zerocopy (94% mapped, the rest read)" in text
    assert " copy " in text
