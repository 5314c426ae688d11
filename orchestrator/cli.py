"""The `orchestrate` command: argument parsing and terminal output only; the work is in the library."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress as RichProgress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from . import __version__
from . import run as runs
from .cells import CellOutcome
from .config import load_experiment
from .report import VARIANT_COLUMNS
from .errors import ConfigError, OrchestrateError, PreflightError, RunFailed
from .interrupts import exit_status, signal_name, signals_interrupt
from .inventory import load_inventory
from .plan import Cell
from .preflight import Preflight, run_preflight

console = Console(stderr=True)
out = Console()


class TerminalProgress(runs.Progress):
    def __init__(self) -> None:
        self.bar: RichProgress | None = None
        self.task = None

    def stage(self, message: str) -> None:
        console.print(f"[bold]·[/] {message}")

    def start(self, total: int, done: int) -> None:
        self.bar = RichProgress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
            TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), console=console,
        )
        self.bar.start()
        self.task = self.bar.add_task("cells", total=total, completed=done)

    def cell_started(self, cell: Cell) -> None:
        if self.bar is not None:
            self.bar.update(self.task, description=cell.cell_id)

    def cell_finished(self, outcome: CellOutcome) -> None:
        if self.bar is not None:
            if outcome.error:
                self.bar.console.print(f"[red]✗[/] {outcome.cell.cell_id}: {escape(outcome.error)}", highlight=False)
            self.bar.advance(self.task)

    def stop(self) -> None:
        if self.bar is not None:
            bar, self.bar = self.bar, None
            try:
                bar.stop()
            except OSError:
                pass  # the terminal is gone (SIGHUP): the run's clean-up must go on regardless


def show_preflight(report: Preflight) -> None:
    grid = Table(title="preflight")
    for column in ("host", "check", "", "detail"):
        grid.add_column(column)
    for f in report.findings:
        grid.add_row(escape(f.host), f.check, "[green]ok[/]" if f.ok else "[red]FAIL[/]", escape(f.detail))
    console.print(grid)


def show_summary(run_dir: Path) -> None:
    """One line per cell, from the same summary the report uses: the figures a user looks at first."""
    from .stats import summarize
    from .table import read_results
    from .units import format_size

    summary = summarize(read_results(run_dir / "results.csv"))
    if summary.empty:
        return
    extra = [k for k in VARIANT_COLUMNS if k in summary and summary[k].nunique(dropna=False) > 1]
    with_workload = summary["workload"].nunique() > 1
    with_latency = summary["latency_p99_us_mean"].notna().any()
    columns = (["workload"] if with_workload else []) + ["mode", "size", "thr", *extra, "ok", "Gbit/s", "sd"] + \
        (["p99 µs"] if with_latency else []) + ["CPU s/GB"]
    grid = Table(title=f"{run_dir.name} (means over ok repetitions)")
    for column in columns:
        if column in ("workload", "mode"):
            grid.add_column(column, no_wrap=True, min_width=len("zero_copy*") if column == "mode" else 6)
        else:
            grid.add_column(column, justify="right")
    marks: set[str] = set()
    for _, cell in summary.iterrows():
        mode = str(cell["mode"])
        if mode == "zero_copy":
            fraction = cell["zerocopy_copied_fraction_max"]
            mark = "?" if fraction != fraction else "*" if fraction > 0 else ""
            mode += mark
            marks.add(mark)

        def figure(metric: str, spec: str) -> str:
            value = cell[metric]
            return "—" if value != value else format(value, spec)

        grid.add_row(
            *([str(cell["workload"])] if with_workload else []), mode, format_size(int(cell["message_size"])),
            str(cell["threads"]), *(str(cell[k]) for k in extra), f"{cell['ok']}/{cell['repetitions']}",
            figure("throughput_gbps_mean", ".3g"), figure("throughput_gbps_std", ".2g"),
            *([figure("latency_p99_us_mean", ".0f")] if with_latency else []), figure("cpu_s_per_gb_mean", ".3g"),
        )
    out.print(grid)
    if "*" in marks:
        out.print("* the kernel copied some or all of these zero_copy sends (SO_EE_CODE_ZEROCOPY_COPIED): "
                  "not zero-copy, as on loopback and veth; the fraction is in results.csv")
    if "?" in marks:
        out.print("? no zero-copy completion was counted for these cells: unverified")


def _load_inputs(args: argparse.Namespace):
    experiment = load_experiment(Path(args.config))
    inventory = load_inventory(Path(args.inventory))
    return experiment, inventory


def cmd_run(args: argparse.Namespace) -> int:
    if args.resume:
        state = runs.reopen_run(Path(args.resume))
        console.print(f"resuming {state.run_dir}")
    else:
        if not args.config:
            raise ConfigError("orchestrate run: give an experiment file, or --resume RUN_DIR")
        experiment, inventory = _load_inputs(args)
        state = runs.create_run(experiment, inventory, Path(args.results))
        console.print(f"run {state.run_id}: {len(state.plan.cells)} cells, seed {state.plan.seed}, folder {state.run_dir}")
    try:
        outcome = runs.execute(state, TerminalProgress(), on_preflight=show_preflight if args.verbose else _problems_only)
    except KeyboardInterrupt as exc:
        _say(f"[yellow]interrupted[/] ({signal_name(exc)}): agents stopped on both hosts; finished cells are kept.\n"
             f"resume with: orchestrate run --resume {state.run_dir}")
        return exit_status(exc)
    show_summary(state.run_dir)
    if not args.no_report:
        from .report import write_report

        console.print(f"report: {write_report(state.run_dir)}")
    if outcome.failed:
        listing = "\n".join(f"  {o.cell.cell_id}: {o.error}" for o in outcome.failed)
        raise RunFailed(f"{len(outcome.failed)} of {len(outcome.finished)} cells failed (raw logs in {state.run_dir}/cells):\n{listing}")
    console.print(f"[green]done[/]: {len(outcome.finished)} cells run, {outcome.skipped} already done, results in {state.run_dir}/results.csv")
    return 0


def _problems_only(report: Preflight) -> None:
    if report.problems:
        show_preflight(report)


def cmd_check(args: argparse.Namespace) -> int:
    experiment, inventory = _load_inputs(args)
    hosts = runs.connect_hosts(inventory, experiment.timeouts.connect)
    try:
        report = run_preflight(hosts, experiment, inventory)
    finally:
        for host in hosts.values():
            host.close()
    show_preflight(report)
    if report.problems:
        raise PreflightError(f"{len(report.problems)} problem(s) found")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from .report import write_report

    out.print(f"report: {write_report(Path(args.run_dir))}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from .compare import compare_runs

    comparison = compare_runs(Path(args.run_a), Path(args.run_b), Path(args.out) if args.out else None)
    comparison.render(out)
    return 0


def cmd_lab(args: argparse.Namespace) -> int:
    from . import lab

    given = {"mtu": args.mtu, "delay_ms": args.delay_ms, "rate_mbit": args.rate_mbit}
    options = lab.LabOptions(
        prefix=args.prefix, inventory_path=Path(args.inventory_out), bastion=args.bastion, user=args.user,
        sudo_perf=args.sudo_perf, no_compiler=tuple(args.no_compiler),
        **{k: v for k, v in given.items() if v is not None},
    )
    if args.action == "up":
        status = lab.up(options)
        console.print(f"lab is up; run with: orchestrate run configs/smoke.yml --inventory {options.resolved_inventory_path}")
        console.print(f"ssh_config (Host aliases {options.prefix}-server, {options.prefix}-client): {status.ssh_config_path}")
    elif args.action == "down":
        for item in lab.down(options):
            console.print(f"removed {item}")
        return 0
    else:
        status = lab.status(options)
    grid = Table(title="lab")
    for column in ("name", "kind", "state", "detail"):
        grid.add_column(column)
    for row in status.rows:
        grid.add_row(row.name, row.kind, row.state, row.detail)
    out.print(grid)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="orchestrate", description=__doc__)
    parser.add_argument("--version", action="version", version=f"orchestrate {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    def with_inventory(p: argparse.ArgumentParser) -> None:
        p.add_argument("--inventory", default="inventory.yml", help="hosts file (default: ./inventory.yml)")

    p = commands.add_parser("run", help="run an experiment and collect its results")
    p.add_argument("config", nargs="?", help="experiment file, such as configs/full.yml")
    with_inventory(p)
    p.add_argument("--results", default="results", help="where run folders go (default: ./results)")
    p.add_argument("--resume", metavar="RUN_DIR", help="finish an interrupted run without redoing its finished cells")
    p.add_argument("--no-report", action="store_true", help="skip the report at the end")
    p.add_argument("-v", "--verbose", action="store_true", help="show the full preflight table")
    p.set_defaults(handler=cmd_run)

    p = commands.add_parser("check", help="preflight only: reach the hosts and check what a run needs")
    p.add_argument("config")
    with_inventory(p)
    p.set_defaults(handler=cmd_check)

    p = commands.add_parser("report", help="write report.md, report.html, summary.csv and plots for a run")
    p.add_argument("run_dir")
    p.set_defaults(handler=cmd_report)

    p = commands.add_parser("compare", help="compare two runs cell by cell")
    p.add_argument("run_a")
    p.add_argument("run_b")
    p.add_argument("--out", help="folder for the comparison's table and plot")
    p.set_defaults(handler=cmd_compare)

    p = commands.add_parser("lab", help="a two-host lab of network namespaces on this machine (root)")
    p.add_argument("action", choices=["up", "down", "status"])
    p.add_argument("--prefix", default="orch", help="name prefix of the namespaces (default: orch)")
    p.add_argument("--inventory-out", default="lab-inventory.yml", help="where lab up writes the lab's inventory")
    p.add_argument("--mtu", type=int, default=None, help="MTU of the data link")
    p.add_argument("--delay-ms", type=float, default=None, help="netem delay on the data link, each way")
    p.add_argument("--rate-mbit", type=float, default=None, help="netem rate limit on the data link")
    p.add_argument("--bastion", action="store_true", help="a bastion namespace; the hosts' sshds are reachable only through it")
    p.add_argument("--user", metavar="NAME", default=None, help="create an unprivileged account NAME and log in as it")
    p.add_argument("--sudo-perf", action="store_true", help="with --user: a sudoers rule that lets NAME run perf, and only perf")
    p.add_argument("--no-compiler", metavar="ROLE", action="append", default=[], choices=["server", "client"],
                   help="hide the C compilers from that host's sshd and its sessions (repeatable)")
    p.set_defaults(handler=cmd_lab)
    return parser


def _say(message: str) -> None:
    # After SIGHUP the terminal may be gone: the message is then lost, never the exit status.
    try:
        console.print(message, highlight=False)
    except OSError:
        pass


def _drop_dead_terminal() -> None:
    """With the terminal gone, Python's own last flush would fail and turn our exit status into 120."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except OSError:
            try:
                os.dup2(os.open(os.devnull, os.O_WRONLY), stream.fileno())
            except (OSError, ValueError):
                pass


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    with signals_interrupt():
        try:
            return args.handler(args)
        except OrchestrateError as exc:
            _say(f"[red]error[/]: {escape(str(exc))}")
            return exc.exit_code
        except KeyboardInterrupt as exc:
            _say(f"[yellow]interrupted[/] ({signal_name(exc)})")
            return exit_status(exc)
        finally:
            _drop_dead_terminal()


if __name__ == "__main__":
    sys.exit(main())
