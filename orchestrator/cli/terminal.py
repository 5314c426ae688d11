"""The terminal: where a command writes (Terminal), the run's progress bar (TerminalProgress) and
the tables the commands print (preflight, summary, comparison, lab)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Sequence
from typing import TextIO

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress as RichProgress, ProgressColumn, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from typing import TYPE_CHECKING

from ..rows import layout
from ..run.progress import CellTally, Progress

if TYPE_CHECKING:
    from ..run.cell import CellOutcome
    from ..experiment.plan import Cell
    from ..run.preflight import Preflight

# Piped output: no colour, no wrapping, whole paths; tables as wide as their contents.
PIPED_WIDTH = 10_000


def _console(stream: TextIO, quiet: bool = False) -> Console:
    if Console(file=stream).is_terminal:
        return Console(file=stream, quiet=quiet)
    return Console(file=stream, quiet=quiet, soft_wrap=True, width=PIPED_WIDTH, color_system=None, highlight=False)


@dataclass
class Terminal:
    """Where one command writes; main() makes it from the streams it is given, and passes it on."""

    console: Console  # progress and messages (stderr; silent under --quiet)
    out: Console  # the tables a user reads (stdout, or stderr under --json, whose stdout is the JSON alone)
    errors: Console  # errors: stderr, even under --quiet
    stdout: TextIO  # the JSON document and completion scripts, written as they are

    @classmethod
    def over(cls, stdout: TextIO, stderr: TextIO, as_json: bool = False, quiet: bool = False) -> Terminal:
        return cls(console=_console(stderr, quiet), out=_console(stderr if as_json else stdout, quiet),
                   errors=_console(stderr), stdout=stdout)

    def say(self, message: str) -> None:
        """An error or interruption, on stderr even under --quiet."""
        # After SIGHUP the terminal may be gone: the message is then lost, never the exit status.
        try:
            self.errors.print(message, highlight=False)
        except OSError:
            pass


def _summary(run_dir: Path):
    from ..report.stats import summarize
    from ..rows.results import read_results

    return summarize(read_results(run_dir / layout.RESULTS))


def describe_cell(cell: Cell, repetitions: int) -> str:
    """A cell in words for the progress bar: `zero_copy 64KiB ×4, rep 2/3`."""
    from ..experiment.dimensions import BASIC
    from ..experiment.units import format_size

    words = f"{'rr ' if cell.workload == 'rr' else ''}{cell.mode} {format_size(cell.message_size)} ×{cell.threads}"
    extras = [f"{key}={str(getattr(cell, key)).lower()}" for key in cell.varied
              if key not in BASIC]
    return ", ".join([words, *extras, f"rep {cell.repetition}/{repetitions}"])


def eta_seconds(per_cell_s: float, cells_after_current: int, current_started: float | None, now: float) -> float:
    """Time left: the cells after this one at the per-cell time, plus what is left of this one."""
    current = max(0.0, per_cell_s - (now - current_started)) if current_started is not None else 0.0
    return cells_after_current * per_cell_s + current


class CellEta(ProgressColumn):
    """rich's own ETA divides by the speed so far, which knows nothing before the first cell
    ends and counts resumed cells as instant; this one uses the per-cell time instead."""

    def render(self, task) -> Text:
        fields = task.fields
        if "per_cell_s" not in fields or task.finished or fields.get("stopped"):
            return Text("")
        left = eta_seconds(fields["per_cell_s"], fields["after_current"], fields["current_started"], time.monotonic())
        from ..experiment.units import format_duration

        return Text(f"ETA {format_duration(left)}", style="progress.remaining")


class TerminalProgress(Progress):
    """The terminal's run Progress: stages, then a bar over the cells; in a run on several pairs,
    one bar per pair (for_pair), all in one rich display, each line led by its pair's name."""

    def __init__(self, console: Console, per_cell_s: float, repetitions: int, pair: str | None = None,
                 parent: TerminalProgress | None = None) -> None:
        self.console = console
        self.bar: RichProgress | None = None
        self.task = None
        # Until cells have run here, the measured figure (orchestrator/estimate.py); then this run's own.
        self.per_cell_s = per_cell_s
        self.repetitions = repetitions
        self.total = self.done = self.ran = 0
        self.tally = CellTally()
        self.loop_started: float | None = None
        self.pair, self.parent = pair, parent
        self.lock = threading.Lock()  # pairs start their bars from their own threads

    def for_pair(self, name: str) -> TerminalProgress:
        return TerminalProgress(self.console, self.per_cell_s, self.repetitions, pair=name, parent=self)

    def _lead(self) -> str:
        return f"[cyan]{escape(self.pair)}[/] " if self.pair else ""

    def stage(self, message: str) -> None:
        self.console.print(f"[bold]·[/] {self._lead()}{escape(message)}")  # a message may quote a file's text

    def pair_failed(self, error: str) -> None:
        # Its error is said once, with the others', when the run ends (PairsFailed), and in run.log.
        self.console.print(f"[red]✗ pair {escape(self.pair or '')} failed[/]; the other pairs go on "
                           "(why: when the run ends)", highlight=False)
        if self.bar is not None:
            # No ETA for a pair that will run no more cells.
            self.bar.update(self.task, description=f"{self.pair}: failed", current_started=None, stopped=True)

    def _shared_bar(self) -> RichProgress:
        root = self.parent or self
        with root.lock:
            if root.bar is None:
                root.bar = RichProgress(
                    TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[failed_text]}"),
                    TimeElapsedColumn(), CellEta(), console=self.console,
                )
                root.bar.start()
            return root.bar

    def start(self, total: int, done: int) -> None:
        self.total, self.done = total, done
        self.loop_started = time.monotonic()
        self.bar = self._shared_bar()
        self.task = self.bar.add_task(self.pair or "cells", total=total, completed=done, failed_text="",
                                      per_cell_s=self.per_cell_s, after_current=max(0, total - done), current_started=None)

    def cell_started(self, cell: Cell) -> None:
        if self.bar is not None:
            self.bar.update(self.task, description=(f"{self.pair}: " if self.pair else "") + describe_cell(cell, self.repetitions),
                            after_current=max(0, self.total - self.done - 1), current_started=time.monotonic())

    def _counts_text(self) -> str:
        parts = ([f"[red]{self.tally.failed} failed[/]"] if self.tally.failed else []) + \
            ([f"[yellow]{self.tally.degraded} degraded[/]"] if self.tally.degraded else [])
        return ", ".join(parts)

    def cell_finished(self, outcome: CellOutcome) -> None:
        self.done += 1
        self.ran += 1
        status = self.tally.add(outcome)
        if self.loop_started is not None:
            self.per_cell_s = (time.monotonic() - self.loop_started) / self.ran
        if self.bar is not None:
            if outcome.error:
                mark = "[yellow]~ degraded[/]" if status == "degraded" else "[red]✗[/]"
                self.bar.console.print(f"{mark} {self._lead()}{outcome.cell.cell_id}: {escape(outcome.error)}", highlight=False)
            self.bar.update(self.task, advance=1, per_cell_s=self.per_cell_s, after_current=max(0, self.total - self.done),
                            current_started=None, failed_text=self._counts_text())

    def stop(self) -> None:
        if self.parent is not None:
            return  # the run stops the one display once, through the parent
        if self.bar is not None:
            bar, self.bar = self.bar, None
            try:
                bar.stop()
            except OSError:
                pass  # the terminal is gone (SIGHUP): the run's clean-up must go on regardless


def show_preflight(term: Terminal, preflight: Preflight, title: str = "preflight") -> None:
    grid = Table(title=escape(title))
    for column in ("host", "check", "", "detail"):
        grid.add_column(column)
    for f in preflight.findings:
        grid.add_row(escape(f.host), f.check, "[green]ok[/]" if f.ok else "[red]FAIL[/]", escape(f.detail))
    term.console.print(grid)


def show_summary(term: Terminal, run_dir: Path, summary=None, pairs: Sequence[str] = ()) -> None:
    """One line per cell (per pair and cell on several pairs, each pair's rows together, in the
    order of `pairs`), from the same summary the report uses: the figures a user looks at first."""
    from ..experiment.units import format_size

    summary = _summary(run_dir) if summary is None else summary
    if summary.empty:
        return
    from ..rows import zerocopy
    from ..report.variants import VARIANT_COLUMNS

    extra = [k for k in VARIANT_COLUMNS if k in summary and summary[k].nunique(dropna=False) > 1]
    with_pair = "pair" in summary and summary["pair"].nunique() > 1
    if with_pair:
        # Rows come in the order the pairs finished their cells; a reader wants each pair's together.
        order = list(pairs) if pairs else sorted(summary["pair"].astype(str).unique())
        rank = {name: i for i, name in enumerate(order)}
        summary = summary.iloc[sorted(range(len(summary)), key=lambda i: rank.get(str(summary["pair"].iloc[i]), len(rank)))]
    with_workload = summary["workload"].nunique() > 1
    with_latency = summary["latency_p99_us_mean"].notna().any()
    columns = (["pair"] if with_pair else []) + (["workload"] if with_workload else []) + \
        ["mode", "size", "thr", *extra, "ok", "Gbit/s", "sd"] + (["p99 µs"] if with_latency else []) + ["CPU s/GB"]
    grid = Table(title=f"{run_dir.name} (means over ok repetitions)")
    for column in columns:
        if column in ("pair", "workload", "mode"):
            grid.add_column(column, no_wrap=True, min_width=len("zero_copy*") if column == "mode" else 6)
        else:
            grid.add_column(column, justify="right")
    marks: set[str] = set()
    for _, cell in summary.iterrows():
        mode = str(cell["mode"])
        mark = zerocopy.mark(mode, cell["zerocopy_copied_fraction_max"])
        mode += mark
        marks.add(mark)

        def figure(metric: str, spec: str) -> str:
            value = cell[metric]
            return "—" if value != value else format(value, spec)

        grid.add_row(
            *([str(cell["pair"])] if with_pair else []), *([str(cell["workload"])] if with_workload else []), mode, format_size(int(cell["message_size"])),
            str(cell["threads"]), *(_extra_value(cell, k) for k in extra), f"{cell['ok']}/{cell['repetitions']}",
            figure("throughput_gbps_mean", ".3g"), figure("throughput_gbps_std", ".2g"),
            *([figure("latency_p99_us_mean", ".0f")] if with_latency else []), figure("cpu_s_per_gb_mean", ".3g"),
        )
    term.out.print(grid)
    if "*" in marks:
        term.out.print("* the kernel copied some or all of these zero-copy sends (SO_EE_CODE_ZEROCOPY_COPIED, IORING_NOTIF_USAGE_ZC_COPIED): "
                       "not zero-copy, as on loopback and veth; the fraction is in results.csv")
    if "?" in marks:
        term.out.print("? no zero-copy completion was counted for these cells: unverified")


def _extra_value(cell, key: str) -> str:
    """A varied parameter's value; the receive mode by the receive rule (rows/zerocopy.py), so a
    cell that did not map its pages is never shown as a zero-copy receive."""
    if key == "receive":
        from ..rows import zerocopy

        return zerocopy.receive_label(str(cell[key]), cell.get("receive_mapped_fraction_min"))
    return str(cell[key])


def show_preflight_problems(term: Terminal, preflight: Preflight) -> None:
    if preflight.problems:
        show_preflight(term, preflight)


def show_comparison(term: Terminal, comparison) -> None:
    """What changed (ranked; the identity noise counted, listed in compare.md), what moved, then the
    cells; the files written last, on stderr."""
    from ..report.changes import grouped
    from ..report.compare import TEXT_COLUMNS, largest_changes, moved_counts

    def plain(line: str) -> None:
        term.out.print(line, markup=False, highlight=False)

    term.out.print(f"[bold]B = {escape(comparison.label_b)}  vs  A = {escape(comparison.label_a)}[/bold]")
    term.out.print("[bold]What changed[/bold]")
    if not comparison.changes:
        plain("  no host fact and no setting differs")
    for group, changes in grouped(comparison.changes):
        plain(f"  {group}")
        for change in changes:
            plain(f"    {change.text()}")
    for count, what in ((len(comparison.identity), "host names, addresses, paths and hashes differ"),
                        (len(comparison.unknown_facts), "host facts are unknown on one side")):
        if count:
            plain(f"  (and {count} {what}: listed in {comparison.out_dir / 'compare.md'})")
    counts = moved_counts(comparison.table)
    if not counts.empty:
        moved = Table(title="What moved (cells per verdict)")
        for name in ("metric", "cells", "B better", "B worse", "no clear difference", "cannot tell"):
            moved.add_column(name, justify="left" if name == "metric" else "right")
        for row in counts.itertuples():
            moved.add_row(escape(row.metric), *(str(v) for v in (row.cells, row.better, row.worse, row.same, row.undecided)))
        term.out.print(moved)
        for sentence in largest_changes(comparison.table):
            plain(f"  {sentence}")
    grid = Table(title="Cell by cell")
    for name in TEXT_COLUMNS:
        grid.add_column(name, justify="right" if name in ("A", "B", "B/A [95% CI]") else "left",
                        no_wrap=name in ("cell", "note"))
    for row in comparison.text_rows():
        grid.add_row(*(escape(str(c)) for c in row))
    term.out.print(grid)
    for title, lines in comparison.difference_sections():
        if lines:
            term.out.print(f"[bold]{title}[/bold]")
            for line in lines:
                plain(f"  {line}")
    for path in comparison.files():
        term.console.print(f"wrote {path}", markup=False, highlight=False)


def show_lab(term: Terminal, status) -> None:
    grid = Table(title="lab")
    for column in ("name", "kind", "state", "detail"):
        grid.add_column(column)
    for row in status.rows:
        grid.add_row(row.name, row.kind, row.state, row.detail)
    term.out.print(grid)


def show_reproduced(term: Terminal, comparison, pair: str | None) -> None:
    """Where a reproduction's comparison is, and its throughput verdicts in one line."""
    table = comparison.table
    rows = table[table["metric"] == "throughput_gbps"]
    counts = rows["verdict"].value_counts()
    said = ", ".join(f"{int(n)} {escape(str(verdict))}" for verdict, n in counts.items()) or "no throughput in common"
    lead = f"pair {escape(pair)}: " if pair else ""
    term.console.print(f"{lead}throughput B/A per cell: {said}", highlight=False)
    term.console.print(f"comparison: {escape(str(comparison.out_dir / layout.COMPARE_MD))}", highlight=False)


def show_runs(term: Terminal, runs: Sequence, found, hidden: int) -> None:
    """`orchestrate runs`: one line per run folder, then what was skipped or left out."""
    grid = Table(title=f"runs in {escape(str(found.folder))}")
    for name in ("id", "date", "name", "pairs", "hosts", "kernel", "NIC, MTU", "ok/failed/degr", "reproduces"):
        grid.add_column(name, no_wrap=name in ("id", "date"), justify="right" if name == "ok/failed/degr" else "left")
    for run in runs:
        several = len(run.hosts) > 1
        hosts = "\n".join(f"{f'{pair}: ' if several else ''}{' / '.join(roles.values())}" for pair, roles in run.hosts.items())
        nic = ", ".join([*run.nics, *([f"MTU {'/'.join(map(str, run.mtus))}"] if run.mtus else [])])
        cells = "/".join(str(run.cells.get(k, 0)) for k in ("ok", "failed", "degraded")) if run.cells else "?"
        if run.state and run.state != "finished":
            cells += f" ({run.state})"
        name = (run.name or "?") + (" [!]" if run.problems else "")
        grid.add_row(escape(run.run_id), run.date.strftime("%Y-%m-%d %H:%M") if run.date else "?", escape(name),
                     escape(", ".join(run.pairs)), escape(hosts), escape(", ".join(run.kernels)), escape(nic), cells,
                     escape(run.reproduces or ""))
    term.out.print(grid)
    for run in runs:
        for problem in run.problems:
            term.out.print(f"[!] {run.run_id}: {problem}", markup=False, highlight=False)
    said = [f"{len(runs)} runs"]
    if hidden:
        said.append(f"{hidden} left out by the filters")
    if found.skipped:
        said.append(f"{len(found.skipped)} folders that are not runs skipped ({', '.join(found.skipped[:5])}"
                    f"{', …' if len(found.skipped) > 5 else ''})")
    term.console.print("; ".join(said), markup=False, highlight=False)
