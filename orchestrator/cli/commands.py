"""The `orchestrate` command: argument parsing and terminal output only; the work is in the library."""
# (For developers. What users read is DESCRIPTION and EXAMPLES below.)

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
import tempfile
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Sequence
from typing import Any, TextIO

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress as RichProgress, ProgressColumn, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from typing import TYPE_CHECKING

from ..version import __version__
from ..rows import layout
from ..errors import EXIT_MEANINGS, ConfigError, ExitStatus, OrchestrateError, PairsFailed, PreflightError, RunFailed
from ..run.interrupts import exit_status, signal_name, signals_interrupt
from ..roles import ROLES

# The run, report and analysis modules (pandas, scipy, matplotlib, paramiko) are imported where
# they are used: a bad file is then refused in well under a second, before any of them loads.
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


def _records(frame) -> list[dict[str, Any]]:
    """DataFrame rows as JSON-safe dicts (NaN becomes null)."""
    return json.loads(frame.to_json(orient="records"))


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


class TerminalProgress:
    """The terminal's run.Progress: stages, then a bar over the cells; in a run on several pairs,
    one bar per pair (for_pair), all in one rich display, each line led by its pair's name."""

    def __init__(self, console: Console, per_cell_s: float, repetitions: int, pair: str | None = None,
                 parent: TerminalProgress | None = None) -> None:
        self.console = console
        self.bar: RichProgress | None = None
        self.task = None
        # Until cells have run here, the measured figure (orchestrator/estimate.py); then this run's own.
        self.per_cell_s = per_cell_s
        self.repetitions = repetitions
        self.total = self.done = self.failed = self.ran = 0
        self.loop_started: float | None = None
        self.pair, self.parent = pair, parent
        self.lock = threading.Lock()  # pairs start their bars from their own threads

    def for_pair(self, name: str) -> TerminalProgress:
        return TerminalProgress(self.console, self.per_cell_s, self.repetitions, pair=name, parent=self)

    def _lead(self) -> str:
        return f"[cyan]{escape(self.pair)}[/] " if self.pair else ""

    def stage(self, message: str) -> None:
        self.console.print(f"[bold]·[/] {self._lead()}{message}")

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

    def cell_finished(self, outcome: CellOutcome) -> None:
        self.done += 1
        self.ran += 1
        if outcome.error:
            self.failed += 1
        if self.loop_started is not None:
            self.per_cell_s = (time.monotonic() - self.loop_started) / self.ran
        if self.bar is not None:
            if outcome.error:
                self.bar.console.print(f"[red]✗[/] {self._lead()}{outcome.cell.cell_id}: {escape(outcome.error)}", highlight=False)
            self.bar.update(self.task, advance=1, per_cell_s=self.per_cell_s, after_current=max(0, self.total - self.done),
                            current_started=None,
                            failed_text=f"[red]{self.failed} failed[/]" if self.failed else "")

    def stop(self) -> None:
        if self.parent is not None:
            return  # the run stops the one display once, through the parent
        if self.bar is not None:
            bar, self.bar = self.bar, None
            try:
                bar.stop()
            except OSError:
                pass  # the terminal is gone (SIGHUP): the run's clean-up must go on regardless


def show_preflight(term: Terminal, report: Preflight, title: str = "preflight") -> None:
    grid = Table(title=escape(title))
    for column in ("host", "check", "", "detail"):
        grid.add_column(column)
    for f in report.findings:
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
            str(cell["threads"]), *(str(cell[k]) for k in extra), f"{cell['ok']}/{cell['repetitions']}",
            figure("throughput_gbps_mean", ".3g"), figure("throughput_gbps_std", ".2g"),
            *([figure("latency_p99_us_mean", ".0f")] if with_latency else []), figure("cpu_s_per_gb_mean", ".3g"),
        )
    term.out.print(grid)
    if "*" in marks:
        term.out.print("* the kernel copied some or all of these zero_copy sends (SO_EE_CODE_ZEROCOPY_COPIED): "
                       "not zero-copy, as on loopback and veth; the fraction is in results.csv")
    if "?" in marks:
        term.out.print("? no zero-copy completion was counted for these cells: unverified")


def _load_inputs(args: argparse.Namespace):
    # Imported here: pydantic's models cost `--help` and `lab` a tenth of a second they never use.
    from ..experiment.config import load_experiment
    from ..experiment.inventory import load_inventory

    experiment = load_experiment(Path(args.config))
    inventory = load_inventory(Path(args.inventory))
    if getattr(args, "seed", None) is not None:  # run --seed: replay the order a dry run showed
        experiment = experiment.model_copy(update={"seed": args.seed})
    return experiment, inventory


def _seed(text: str) -> int:
    if not text.isdigit() or int(text) > 2**63 - 1:
        raise argparse.ArgumentTypeError(f"expected a whole number from 0 to 2**63-1, not {text!r}")
    return int(text)


def cmd_run(args: argparse.Namespace, term: Terminal) -> ExitStatus:
    from ..experiment import estimate
    from ..run import runner

    if args.retry_failed and not args.resume:
        raise ConfigError("orchestrate run: --retry-failed goes with --resume RUN_DIR")
    if args.resume and args.seed is not None:
        raise ConfigError("orchestrate run: --resume keeps the run's own seed; --seed is for a new run")
    if args.check and not args.dry_run:
        raise ConfigError("orchestrate run: --check goes with --dry-run (a real run always runs preflight)")
    if args.dry_run:
        return dry_run(args, term)
    if args.resume:
        state = runner.reopen_run(Path(args.resume))
        _check_baseline(args.baseline, list(state.inventory.pairs))  # the report compares all the run's pairs
        state.inventory = runner.select_pairs(state.inventory, args.pairs, args.serial)
        term.console.print(f"resuming {state.run_dir}")
        if args.retry_failed:
            redo = runner.set_aside_unfinished(state)
            term.console.print(f"measuring {len(redo)} failed or degraded cells again; their raw files are kept in "
                               f"{layout.cells_dir(state.run_dir, '<pair>' if len(state.inventory.pairs) > 1 else layout.DEFAULT_PAIR)}"
                               "/<cell_id>.failed-<n>/")
    else:
        if not args.config:
            raise ConfigError("orchestrate run: give an experiment file, or --resume RUN_DIR")
        experiment, inventory = _load_inputs(args)
        inventory = runner.select_pairs(inventory, args.pairs, args.serial)  # the run folder keeps only these
        _check_baseline(args.baseline, list(inventory.pairs))
        size = _checked_size(experiment, args.yes, inventory, report=not args.no_report)
        state = runner.create_run(experiment, inventory, Path(args.results))
        term.console.print(f"run {state.run_id}: {size.describe()}, seed {state.plan.seed}, folder {state.run_dir}")
    args.doc.update(run_dir=str(state.run_dir), run_id=state.run_id, seed=state.plan.seed)
    try:
        progress = TerminalProgress(term.console, estimate.per_cell_seconds(state.experiment), state.experiment.repetitions)
        shown = show_preflight if args.verbose else _problems_only
        outcome = runner.execute(state, progress, on_preflight=lambda report: shown(term, report))
    except KeyboardInterrupt as exc:
        hosts = "both hosts" if len(state.inventory.pairs) == 1 else "every pair's hosts"
        _say(term, f"[yellow]interrupted[/] ({signal_name(exc)}): agents stopped on {hosts}; finished cells are kept.\n"
             f"resume with: orchestrate run --resume {state.run_dir}")
        return ExitStatus(exit_status(exc))
    summary = _summary(state.run_dir)
    args.doc.update(
        # Totals over the pairs, as `run` and `skipped` are; each pair's own figures are under `pairs`.
        cells={"planned": sum(p.planned for p in outcome.pairs.values()), "run": len(outcome.finished),
               "skipped": outcome.skipped, "failed": len(outcome.failed)},
        failures=[{"pair": name, "cell": o.cell.cell_id, "error": o.error}
                  for name, p in outcome.pairs.items() for o in p.failed],
        summary=_records(summary),
        pairs={name: {"status": p.status, "planned": p.planned, "run": len(p.finished), "skipped": p.skipped,
                      "failed": len(p.failed), "error": str(p.error) if p.error else None}
               for name, p in outcome.pairs.items()},
    )
    show_summary(term, state.run_dir, summary, list(state.inventory.pairs))
    if not args.no_report:
        from ..report.write import write_report

        report = write_report(state.run_dir, baseline=args.baseline)
        args.doc["report"] = {"markdown": str(report), "html": str(report.with_suffix(".html"))}
        term.console.print(f"report: {report.with_suffix('.html')}")
    if outcome.failed_pairs:
        raise PairsFailed(
            f"{len(outcome.failed_pairs)} of {len(outcome.pairs)} pairs failed; the others finished:"
            + "".join(f"\n{_listed(p.pair, p.error)}" for p in outcome.failed_pairs)
            + f"\nonce their hosts are back: orchestrate run --resume {state.run_dir}",
            [p.error for p in outcome.failed_pairs if p.error is not None], every=False)
    from ..rows.results import row_counts

    counts = row_counts(state.run_dir / layout.RESULTS)
    failed, degraded = counts.get("failed", 0), counts.get("degraded", 0)
    if failed or degraded:
        # Every row of the run counts, not only this session's: a resumed run with failed rows is not done.
        named = len(outcome.pairs) > 1
        listing = "".join(f"\n  {f'{name}/' if named else ''}{o.cell.cell_id}: {o.error}"
                          for name, p in outcome.pairs.items() for o in p.failed)
        raise RunFailed(
            f"{failed} failed and {degraded} degraded of {sum(counts.values())} cells (raw logs in "
            f"{layout.cells_dir(state.run_dir, '<pair>' if len(state.inventory.pairs) > 1 else layout.DEFAULT_PAIR)})"
            f"{listing}\nmeasure them again with: orchestrate run --resume {state.run_dir} --retry-failed")
    ran = sum(1 for p in outcome.pairs.values() if p.finished)  # on --resume, maybe not every pair
    on_pairs = "" if len(outcome.pairs) == 1 else \
        f" on {ran} pairs" if ran == len(outcome.pairs) else f" on {ran} of {len(outcome.pairs)} pairs"
    term.console.print(f"[green]done[/]: {len(outcome.finished)} cells run{on_pairs}, {outcome.skipped} already done, "
                       f"results in {state.run_dir}/results.csv")
    return ExitStatus.OK


def _check_baseline(baseline: str | None, pairs: list[str]) -> None:
    """A --baseline the run cannot have is refused before any cell runs, not after them all."""
    if baseline is not None:
        from ..report.pairs import check_baseline

        check_baseline(baseline, pairs)


def _listed(pair: str, error: object) -> str:
    """A pair's error in a list of them: its own further lines indented under it."""
    return f"  {pair}: " + str(error).replace("\n", "\n    ")


def _checked_size(experiment, yes: bool, inventory=None, report: bool = True):
    """The plan's size, said before anything runs; a plan over the limit needs --yes. The
    inventory is select_pairs' (its `concurrent` already says --serial); none: one pair."""
    from ..experiment.plan import MAX_PLAN_CELLS, MAX_PLAN_SECONDS, plan_size
    from ..experiment.units import format_duration

    pairs, serial = (len(inventory.pairs), not inventory.concurrent) if inventory is not None else (1, False)
    size = plan_size(experiment, pairs, serial, report)
    if size.too_big and not yes:
        raise ConfigError(
            f"{experiment.name}: this plan is {size.describe()}: over the limit of {MAX_PLAN_CELLS:,} cells or "
            f"{format_duration(MAX_PLAN_SECONDS)}; check the matrix, or run it anyway with --yes")
    return size


def dry_run(args: argparse.Namespace, term: Terminal) -> ExitStatus:
    """What `run` would do, touching no host (with --check: preflight only, nothing started)."""
    import yaml

    from ..experiment import estimate
    from ..run import runner
    from ..experiment.plan import expand, new_seed
    from ..experiment.units import format_duration
    from ..rows.results import finished_cells

    if args.resume:
        state = runner.reopen_run(Path(args.resume))
        experiment, inventory, plan = state.experiment, state.inventory, state.plan
        inventory = runner.select_pairs(inventory, args.pairs, args.serial)
        # A cell is still to run while any selected pair lacks its row.
        finished = finished_cells(state.run_dir / layout.RESULTS)
        done = {c.cell_id for c in plan.cells if all((p, c.cell_id) in finished for p in inventory.pairs)}
        seed_note = "saved with the run"
    else:
        if not args.config:
            raise ConfigError("orchestrate run: give an experiment file, or --resume RUN_DIR")
        experiment, inventory = _load_inputs(args)
        inventory = runner.select_pairs(inventory, args.pairs, args.serial)
        _checked_size(experiment, args.yes, inventory, report=not args.no_report)
        seed = experiment.seed if experiment.seed is not None else new_seed()
        plan = expand(experiment, seed)
        done = set()
        seed_note = ("from --seed" if args.seed is not None else "from the config") if experiment.seed is not None else \
            f"drawn now: to run this order, add --seed {seed}"
    todo = [c for c in plan.cells if c.cell_id not in done]
    guess = estimate.estimate(experiment, len(todo), report=not args.no_report,
                              plot_sets=estimate.plot_sets(experiment), pairs=len(inventory.pairs),
                              serial=not inventory.concurrent)
    by_pair = {name: {role: {"ssh": pair.role(role).label, "data_address": pair.role(role).data_address,
                             "workdir": pair.role(role).workdir} for role in ROLES}
               for name, pair in inventory.pairs.items()}
    # One pair: its hosts as before pairs existed; several: the hosts of each pair by name.
    hosts = next(iter(by_pair.values())) if len(by_pair) == 1 else by_pair
    resolved = experiment.resolved(plan.seed)
    args.doc.update(dry_run=True, config=resolved, hosts=hosts, seed=plan.seed, order=experiment.order,
                    cells={"planned": len(plan.cells), "to_run": len(todo), "done": len(done)},
                    plan=[c.cell_id for c in todo],
                    estimate={"total_s": round(guess.total_s, 1), "setup_s": guess.setup_s, "per_cell_s": guess.per_cell_s,
                              "report_s": guess.report_s, "pairs": guess.pairs, "serial": guess.serial})

    term.out.print("[bold]resolved config[/]")
    term.out.print(escape(yaml.safe_dump(resolved, sort_keys=False).rstrip()), highlight=False)
    term.out.print("[bold]hosts[/]")
    for name, pair_hosts in by_pair.items():
        for role, host in pair_hosts.items():
            lead = f"{escape(name)} " if len(by_pair) > 1 else ""
            term.out.print(f"  {lead}{role}: {escape(host['ssh'])}, data address {host['data_address']}, "
                           f"workdir {escape(host['workdir'])}", highlight=False)
    on_pairs = f" on each of {len(inventory.pairs)} pairs" if len(inventory.pairs) > 1 else ""
    term.out.print(f"[bold]plan[/]: {len(todo)} cells{on_pairs}" + (f" ({len(done)} already done)" if done else "") +
                   f", order {experiment.order}, seed {plan.seed} ({seed_note})", highlight=False)
    for index, cell in enumerate(todo, 1):
        term.out.print(f"  {index:>4}  {cell.cell_id}", highlight=False)
    term.out.print(f"[bold]estimate[/]: {format_duration(guess.total_s)} = {guess.breakdown()}"
                   f" (warm-up {experiment.warmup:g} s + duration {experiment.duration:g} s + "
                   f"{estimate.CELL_OVERHEAD_S:g} s overhead per cell; setup includes building the agents)", highlight=False)
    if args.check:
        _preflight_only(args, term, experiment, inventory)
    term.console.print("dry run: nothing was started" + ("" if args.check else ", and no host was contacted"))
    return ExitStatus.OK


def _problems_only(term: Terminal, report: Preflight) -> None:
    if report.problems:
        show_preflight(term, report)


def _preflight_only(args: argparse.Namespace, term: Terminal, experiment, inventory, then: str | None = None) -> None:
    """Reach every pair's hosts, run preflight on them all at once, show and record the findings
    of each pair; nothing is started."""
    from ..run.preflight import preflight_pairs

    several = len(inventory.pairs) > 1
    checked = preflight_pairs(inventory, experiment)
    if not several and isinstance(checked[next(iter(checked))], OrchestrateError):
        raise checked[next(iter(checked))]  # one pair: its error is the command's, as before pairs existed
    findings, problems, errors = [], 0, {}
    for name, report in checked.items():
        if isinstance(report, OrchestrateError):
            errors[name] = report
            _say(term, f"[red]✗ pair {escape(name)}[/]: {escape(str(report))}")
            continue
        findings += [{**({"pair": name} if several else {}), "host": f.host, "check": f.check, "ok": f.ok,
                      "detail": f.detail} for f in report.findings]
        problems += len(report.problems)
        show_preflight(term, report, f"preflight: pair {name}" if several else "preflight")
    args.doc.update(findings=findings, problems=problems)
    if several:
        args.doc["pairs"] = {name: {"problems": None if isinstance(r, OrchestrateError) else len(r.problems),
                                    "error": str(r) if isinstance(r, OrchestrateError) else None}
                             for name, r in checked.items()}
    if then:
        term.console.print(then)
    if errors:
        failed = [_listed(name, exc) for name, exc in errors.items()]
        message = f"{len(errors)} of {len(checked)} pairs could not be checked:\n" + "\n".join(failed)
        if any(isinstance(e, ConfigError) for e in errors.values()):
            raise ConfigError(message)
        raise PreflightError(message + (f"\nand {problems} problem(s) found on the others" if problems else ""))
    if problems:
        raise PreflightError(f"{problems} problem(s) found" + (" (the table of each pair above)" if several else ""))


def cmd_check(args: argparse.Namespace, term: Terminal) -> ExitStatus:
    from ..experiment.plan import plan_size

    experiment, inventory = _load_inputs(args)  # a bad file is refused before the run modules load
    from ..run.runner import select_pairs

    inventory = select_pairs(inventory, args.pairs)
    size = plan_size(experiment, len(inventory.pairs), not inventory.concurrent)  # as `run` will say it
    _preflight_only(args, term, experiment, inventory, then=f"plan: {size.describe()}")
    return ExitStatus.OK


def cmd_report(args: argparse.Namespace, term: Terminal) -> ExitStatus:
    from ..report.write import write_report

    run_dir = Path(args.run_dir)
    args.doc["run_dir"] = str(run_dir)  # where an unexpected error's traceback goes: the run's run.log
    report = write_report(run_dir, baseline=args.baseline)
    summary = _summary(run_dir)
    failed = summary[summary["failed"] > 0] if not summary.empty else summary
    args.doc.update(
        run_dir=str(run_dir), report={"markdown": str(report), "html": str(report.with_suffix(".html"))},
        cells={"cells": len(summary), "repetitions": int(summary["repetitions"].sum()) if not summary.empty else 0,
               "failed": int(summary["failed"].sum()) if not summary.empty else 0},
        failures=[{"cell": r["cell"], "failed": int(r["failed"]), "errors": r["errors"]} for _, r in failed.iterrows()],
        summary=_records(summary),
    )
    term.out.print(f"report: {report.with_suffix('.html')} (and {report.name}, summary.csv, plots/)")
    return ExitStatus.OK


def cmd_compare(args: argparse.Namespace, term: Terminal) -> ExitStatus:
    from ..report.compare import compare_runs

    comparison = compare_runs(Path(args.run_a), Path(args.run_b), Path(args.out) if args.out else None, args.pair)
    args.doc.update(
        run_a=comparison.run_a, run_b=comparison.run_b, pair_a=comparison.pair_a, pair_b=comparison.pair_b,
        out_dir=str(comparison.out_dir),
        files=[str(p) for p in comparison.files()], rows=_records(comparison.table),
        only_in_a=comparison.only_in_a, only_in_b=comparison.only_in_b,
        config_differences=comparison.config_differences, host_differences=comparison.host_differences,
    )
    show_comparison(term, comparison)
    return ExitStatus.OK


def show_comparison(term: Terminal, comparison) -> None:
    from ..report.compare import TEXT_COLUMNS

    grid = Table(title=f"B = {comparison.label_b}  vs  A = {comparison.label_a}")
    for name in TEXT_COLUMNS:
        grid.add_column(name, justify="right" if name in ("A", "B", "B/A [95% CI]") else "left",
                        no_wrap=name == "cell")
    for row in comparison.text_rows():
        grid.add_row(*(escape(str(c)) for c in row))
    term.out.print(grid)
    for title, lines in comparison.difference_sections():
        if lines:
            term.out.print(f"[bold]{title}[/bold]")
            for line in lines:
                term.out.print(f"  {line}", markup=False, highlight=False)
    if not comparison.config_differences:
        term.out.print("The two runs' configs are the same.")
    for path in comparison.files():
        term.console.print(f"wrote {path}", markup=False, highlight=False)


def _names(text: str) -> tuple[str, ...]:
    """An argparse type: a comma list of pair names."""
    names = tuple(part.strip() for part in text.split(",") if part.strip())
    if not names:
        raise argparse.ArgumentTypeError(f"expected a comma list of pair names, not {text!r}")
    return names


def _per_pair(cast):
    """An argparse type: one number, or a comma list of numbers (one per lab pair)."""
    def parse(text: str) -> tuple:
        try:
            return tuple(cast(part) for part in text.split(","))
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number or a comma list of numbers, not {text!r}") from None
    return parse


def cmd_lab(args: argparse.Namespace, term: Terminal) -> ExitStatus:
    from .. import lab

    # --mtu and --rate-mbit: one value for every pair, or a comma list with one per pair.
    mtus, rates = args.mtu or (), args.rate_mbit or ()
    given = {"mtu": mtus[0] if len(mtus) == 1 else None, "mtus": mtus if len(mtus) > 1 else None,
             "delay_ms": args.delay_ms,
             "rate_mbit": rates[0] if len(rates) == 1 else None, "rates_mbit": rates if len(rates) > 1 else None}
    options = lab.LabOptions(
        prefix=args.prefix, inventory_path=Path(args.inventory_out), bastion=args.bastion, user=args.user,
        sudo_perf=args.sudo_perf, no_compiler=tuple(args.no_compiler), pairs=args.pairs,
        **{k: v for k, v in given.items() if v is not None},
    )
    if args.action == "up":
        status = lab.up(options)
        term.console.print(f"lab is up; run with: orchestrate run configs/smoke.yml --inventory {options.resolved_inventory_path}")
        prefixes = [options.prefix] if options.pairs == 1 else [f"{options.prefix}-{p}" for p in options.pair_names]
        aliases = ", ".join(f"{p}-{role}" for p in prefixes for role in ROLES)
        term.console.print(f"ssh_config (Host aliases {aliases}): {status.ssh_config_path}")
    elif args.action == "down":
        for item in lab.down(options):
            term.console.print(f"removed {item}")
        return ExitStatus.OK
    else:
        status = lab.status(options)
    grid = Table(title="lab")
    for column in ("name", "kind", "state", "detail"):
        grid.add_column(column)
    for row in status.rows:
        grid.add_row(row.name, row.kind, row.state, row.detail)
    term.out.print(grid)
    return ExitStatus.OK


def cmd_init(args: argparse.Namespace, term: Terminal) -> ExitStatus:
    from ..experiment.scaffold import init

    for path in init(Path(args.directory), force=args.force):
        term.console.print(f"wrote {path}")
    term.console.print(f"next: fill in {Path(args.directory) / 'inventory.yml'}, then: orchestrate check configs/smoke.yml")
    return ExitStatus.OK


DESCRIPTION = """\
Measure what data copies cost on the socket send path (two_copy, one_copy, zero_copy, sendfile)
between two hosts, with perf counters, and turn the raw files into results.csv and a report."""

EXAMPLES = """\
examples:
  orchestrate run --dry-run configs/full.yml    what a run would do, and how long it would take
  orchestrate run configs/quick.yml             run it; the report is results/<run-id>/report.html
  orchestrate run --resume results/<run-id>     finish an interrupted run
  orchestrate check configs/full.yml --inventory lab.yml   reach the hosts, check what a run needs
  orchestrate report results/<run-id> --json    (re)write the report; print a JSON summary
  orchestrate compare results/<A> results/<B>   the same cells of two runs side by side
  orchestrate lab up --prefix orch              two hosts made of network namespaces (root)
  orchestrate completion bash > ~/.local/share/bash-completion/completions/orchestrate
"""


def exit_status_help() -> str:
    """The exit statuses, from the one enum, for --help's epilog."""
    return "exit status:\n" + "\n".join(f"  {int(status):>3}  {EXIT_MEANINGS[status]}" for status in ExitStatus)


# What an argument completes to, for `orchestrate completion`; shtab is imported only there.
FILE, DIRECTORY = "file", "directory"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="orchestrate", description=DESCRIPTION,
                                     epilog=EXAMPLES + "\n" + exit_status_help(),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"orchestrate {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    def with_inventory(p: argparse.ArgumentParser) -> None:
        p.add_argument("--inventory", default="inventory.yml", help="hosts file (default: ./inventory.yml)")

    def with_output(p: argparse.ArgumentParser) -> None:
        p.add_argument("--json", action="store_true",
                       help="print one JSON document on stdout (run folder, cell counts, failures, summary rows, "
                            "exit status); human output goes to stderr")
        p.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors (and --json's document)")

    def with_baseline(p: argparse.ArgumentParser) -> None:
        p.add_argument("--baseline", metavar="NAME", default=None,
                       help="with several host pairs: the pair the report divides the others by "
                            "(default: the first pair in the inventory's order)")

    p = commands.add_parser("init", help="write an example inventory.yml and the shipped configs/ into a folder")
    p.add_argument("directory", nargs="?", default=".", help="where to write them (default: .)").complete = DIRECTORY
    p.add_argument("--force", action="store_true", help="overwrite files that are already there")
    p.set_defaults(handler=cmd_init)

    p = commands.add_parser("run", help="run an experiment and collect its results")
    p.add_argument("config", nargs="?", help="experiment file, such as configs/full.yml").complete = FILE
    with_inventory(p)
    p.add_argument("--results", default="results", help="where run folders go (default: ./results)")
    p.add_argument("--resume", metavar="RUN_DIR", help="finish an interrupted run without redoing its finished cells")
    p.add_argument("--retry-failed", action="store_true",
                   help="with --resume: measure failed and degraded cells again (their raw files are kept aside)")
    p.add_argument("--yes", action="store_true", help="run a plan over the size limit (24 h or 100,000 cells)")
    p.add_argument("--no-report", action="store_true", help="skip the report at the end")
    with_baseline(p)
    p.add_argument("-v", "--verbose", action="store_true", help="show the full preflight table")
    p.add_argument("-n", "--dry-run", action="store_true",
                   help="print the resolved config, the hosts, the planned cells in order with their seed, and an "
                        "estimate of the wall time; contact no host")
    p.add_argument("--check", action="store_true", help="with --dry-run: run preflight on the hosts too")
    p.add_argument("--seed", type=_seed, default=None,
                   help="the seed that shuffles the cells (default: the config's, or a new one): replays a dry run's order")
    p.add_argument("--pairs", type=_names, default=None, metavar="A,B",
                   help="run only these pairs of the inventory (default: every pair, all at once)")
    p.add_argument("--serial", action="store_true",
                   help="run the pairs one after another, not at the same time (pairs that share a switch)")
    with_output(p)
    p.set_defaults(handler=cmd_run)

    p = commands.add_parser("check", help="preflight only: reach the hosts and check what a run needs")
    p.add_argument("config", help="experiment file whose needs are checked, such as configs/full.yml").complete = FILE
    with_inventory(p)
    p.add_argument("--pairs", type=_names, default=None, metavar="A,B",
                   help="check only these pairs of the inventory (default: every pair, all at once)")
    with_output(p)
    p.set_defaults(handler=cmd_check)

    p = commands.add_parser("report", help="write report.md, report.html, summary.csv and plots for a run")
    p.add_argument("run_dir", help="a run folder, such as results/<run-id>").complete = DIRECTORY
    with_baseline(p)
    with_output(p)
    p.set_defaults(handler=cmd_report)

    p = commands.add_parser("compare", help="compare two runs cell by cell")
    p.add_argument("run_a", metavar="RUN_A", help="the reference run's folder, such as results/<run-id>").complete = DIRECTORY
    p.add_argument("run_b", metavar="RUN_B", help="the run to set against it; ratios are B/A").complete = DIRECTORY
    p.add_argument("--out", metavar="DIR", help="folder for compare.md, compare.csv and the plot "
                   "(default: compare/RUN_A_vs_RUN_B beside RUN_B)")
    p.add_argument("--pair", metavar="NAME[:NAME]", help="for runs on several host pairs: the pair of each run to "
                   "compare (A_NAME:B_NAME when their names differ; a run on one pair gives its own)")
    with_output(p)
    p.set_defaults(handler=cmd_compare)

    p = commands.add_parser("lab", help="a two-host lab of network namespaces on this machine (root)")
    p.add_argument("action", choices=["up", "down", "status"],
                   help="up: build the lab (again), down: remove it, status: show what exists")
    p.add_argument("--prefix", default="orch", help="name prefix of the namespaces (default: orch)")
    p.add_argument("--inventory-out", default="lab-inventory.yml", help="where lab up writes the lab's inventory")
    p.add_argument("--pairs", type=int, default=1, metavar="N",
                   help="N independent pairs p1..pN, each with its own data link and sshds, in one inventory")
    p.add_argument("--mtu", type=_per_pair(int), default=None,
                   help="MTU of the data link; with --pairs, a comma list gives each pair its own (1500,9000,1280)")
    p.add_argument("--delay-ms", type=float, default=None, help="netem delay on the data link, each way")
    p.add_argument("--rate-mbit", type=_per_pair(float), default=None,
                   help="rate limit on the data link, Mbit/s (a tbf qdisc; with --delay-ms, netem's rate); "
                        "a comma list gives each pair its own")
    p.add_argument("--bastion", action="store_true", help="a bastion namespace; the hosts' sshds are reachable only through it")
    p.add_argument("--user", metavar="NAME", default=None, help="create an unprivileged account NAME and log in as it")
    p.add_argument("--sudo-perf", action="store_true", help="with --user: a sudoers rule that lets NAME run perf, and only perf")
    p.add_argument("--no-compiler", metavar="ROLE", action="append", default=[], choices=ROLES,
                   help="hide the C compilers from that host's sshd and its sessions (repeatable)")
    p.set_defaults(handler=cmd_lab)

    p = commands.add_parser("completion", help="print a shell completion script (bash or zsh)",
                            description="Print a completion script for orchestrate, generated from its options.",
                            epilog="bash: orchestrate completion bash > ~/.local/share/bash-completion/completions/orchestrate\n"
                                   "zsh:  orchestrate completion zsh > ~/.zfunc/_orchestrate  (with fpath+=~/.zfunc)",
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("shell", choices=["bash", "zsh"], help="the shell to complete in")
    p.set_defaults(handler=cmd_completion)
    return parser


def cmd_completion(args: argparse.Namespace, term: Terminal) -> ExitStatus:
    import shtab

    # shtab reads the parser itself: completion never falls behind the options. Its FILE and
    # DIRECTORY hints replace our markers here only, so every other command skips importing it.
    parser = build_parser()
    hints = {FILE: shtab.FILE, DIRECTORY: shtab.DIRECTORY}
    for action in _all_actions(parser):
        if getattr(action, "complete", None) in hints:
            action.complete = hints[action.complete]  # type: ignore[attr-defined]
    term.stdout.write(shtab.complete(parser, shell=args.shell))
    return ExitStatus.OK


def _all_actions(parser: argparse.ArgumentParser):
    for action in parser._actions:  # argparse has no public walk of its subparsers
        yield action
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from _all_actions(sub)


def _say(term: Terminal, message: str) -> None:
    # After SIGHUP the terminal may be gone: the message is then lost, never the exit status.
    try:
        term.errors.print(message, highlight=False)
    except OSError:
        pass


def _save_traceback(exc: Exception, run_dir: str | None) -> Path | None:
    """The whole traceback, appended to the run's run.log (or, before there is a run folder, to
    a new file in the temp folder); None if neither can be written."""
    record = logging.LogRecord("orchestrator.cli", logging.ERROR, __file__, 0, "unexpected error, a bug in orchestrate",
                               None, (type(exc), exc, exc.__traceback__))
    text = logging.Formatter("%(asctime)s %(name)s %(message)s").format(record) + "\n"
    if run_dir and Path(run_dir).is_dir():
        try:
            with open(Path(run_dir) / layout.RUN_LOG, "a", encoding="utf-8") as log:
                log.write(text)
            return Path(run_dir) / layout.RUN_LOG
        except OSError:
            pass
    try:
        fd, name = tempfile.mkstemp(prefix="orchestrate-error-", suffix=".log")
        with os.fdopen(fd, "w", encoding="utf-8") as log:
            log.write(text)
        return Path(name)
    except OSError:
        return None


def _unexpected(term: Terminal, exc: Exception, run_dir: str | None) -> str:
    """A bug: its traceback goes to a file, and the user is shown one line that points at it."""
    first = (str(exc).splitlines() or [""])[0][:200]
    what = f"{type(exc).__name__}: {first}" if first else type(exc).__name__
    saved = _save_traceback(exc, run_dir)
    if saved is None:
        # Nowhere to keep it: the traceback on the terminal is then better than losing it.
        _say(term, escape("".join(traceback.format_exception(type(exc), exc, exc.__traceback__)).rstrip()))
        message = f"unexpected error ({what}); its traceback could not be saved, and is above"
    else:
        message = f"unexpected error ({what}); the traceback is in {saved}"
    _say(term, f"[red]error[/]: {escape(message)}")
    return message


def _drop_dead_terminal(*streams: TextIO) -> None:
    """With the terminal gone, Python's own last flush would fail and turn our exit status into 120."""
    for stream in streams:
        try:
            stream.flush()
        except OSError:
            try:
                os.dup2(os.open(os.devnull, os.O_WRONLY), stream.fileno())
            except (OSError, ValueError):
                pass


def main(argv: list[str] | None = None, stdout: TextIO | None = None, stderr: TextIO | None = None) -> int:
    """`orchestrate ARGV`, writing to the streams given (by default this process's own)."""
    stdout = sys.stdout if stdout is None else stdout
    stderr = sys.stderr if stderr is None else stderr
    parser = build_parser()
    # argparse writes --help, --version and usage errors to sys.stdout and sys.stderr itself.
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        args = parser.parse_args(argv)
    as_json = getattr(args, "json", False)
    term = Terminal.over(stdout, stderr, as_json=as_json, quiet=getattr(args, "quiet", False))
    args.doc = {"command": args.command}
    with signals_interrupt():
        try:
            status = ExitStatus(args.handler(args, term))
        except OrchestrateError as exc:
            _say(term, f"[red]error[/]: {escape(str(exc))}")
            status = ExitStatus(exc.exit_code)
            args.doc["error"] = str(exc)
        except KeyboardInterrupt as exc:
            _say(term, f"[yellow]interrupted[/] ({signal_name(exc)})")
            status = ExitStatus(exit_status(exc))
        except Exception as exc:  # noqa: BLE001 - the one boundary for bugs: never a traceback on the terminal
            args.doc["error"] = _unexpected(term, exc, args.doc.get("run_dir"))
            status = ExitStatus.INTERNAL_ERROR
    try:
        if as_json:
            args.doc.update(exit_status=int(status), exit_meaning=status.meaning)
            stdout.write(json.dumps(args.doc, indent=2, default=str) + "\n")
    finally:
        _drop_dead_terminal(stdout, stderr)
    return int(status)

