"""The `orchestrate` commands, one handler each (cmd_run, cmd_check, ...): they call the library
and print through the Terminal; main() turns what they raise into exit statuses."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Callable

from rich.markup import escape

from ..rows import layout
from ..errors import ConfigError, ExitStatus, OrchestrateError, PreflightError
from ..run.interrupts import exit_status, signal_name
from ..roles import ROLES
from .terminal import (Terminal, TerminalProgress, _summary, show_comparison, show_lab, show_preflight,
                       show_preflight_problems, show_reproduced, show_runs, show_summary)

# The run, report and analysis modules (pandas, scipy, matplotlib, paramiko) are imported where
# they are used: a bad file is then refused in well under a second, before any of them loads.


def _records(frame) -> list[dict[str, Any]]:
    """DataFrame rows as JSON-safe dicts (NaN becomes null)."""
    return json.loads(frame.to_json(orient="records"))


DEFAULT_INVENTORY = "inventory.yml"  # --inventory's default, in the folder `orchestrate` runs in


def _load_inputs(args: argparse.Namespace):
    # Imported here: pydantic's models cost `--help` and `lab` a tenth of a second they never use.
    from ..experiment.config import load_experiment
    from ..experiment.inventory import load_inventory

    experiment = load_experiment(Path(args.config))
    inventory = load_inventory(Path(args.inventory or DEFAULT_INVENTORY))
    if getattr(args, "seed", None) is not None:  # run --seed: replay the order a dry run showed
        experiment = experiment.model_copy(update={"seed": args.seed})
    return experiment, inventory


def cmd_run(args: argparse.Namespace, term: Terminal) -> ExitStatus:
    from ..run import runner

    if args.retry_failed and not args.resume:
        raise ConfigError("orchestrate run: --retry-failed goes with --resume RUN_DIR")
    if args.resume and args.seed is not None:
        raise ConfigError("orchestrate run: --resume keeps the run's own seed; --seed is for a new run")
    if args.check and not args.dry_run:
        raise ConfigError("orchestrate run: --check goes with --dry-run (a real run always runs preflight)")
    if args.resume and args.inventory is not None:
        # Refused rather than used: the run's hosts are those it was measured on, saved with it.
        raise ConfigError(f"orchestrate run: --resume runs on the hosts saved with the run ({layout.INVENTORY} in its "
                          "folder); --inventory is for a new run")
    if not args.resume and not args.config:
        raise ConfigError("orchestrate run: give an experiment file, or --resume RUN_DIR")
    if args.dry_run:
        return dry_run(args, term)
    if args.resume:
        state = runner.reopen_run(Path(args.resume))
        # Before anything in the folder changes: another orchestrate working in it refuses this one here.
        runner.take_lock(state)
    else:
        experiment, inventory = _load_inputs(args)
        inventory = runner.select_pairs(inventory, args.pairs, args.serial)  # the run folder keeps only these
        _check_baseline(args.baseline, list(inventory.pairs))
        size = _checked_size(experiment, args.yes, inventory, report=not args.no_report)
        state = runner.create_run(experiment, inventory, Path(args.results))  # it holds the new folder's lock
        term.console.print(f"run {state.run_id}: {size.describe()}, seed {state.plan.seed}, folder {state.run_dir}")
    try:
        return _run_locked(args, term, state, after=_compare_with_original(args, term, state.run_dir) if args.resume else None)
    finally:
        if state.lock is not None:
            state.lock.release()


def _run_locked(args: argparse.Namespace, term: Terminal, state, after: Callable[[Any], None] | None = None) -> ExitStatus:
    """cmd_run from where the run holds its folder's lock to its report; `after` is given the
    run's outcome once its report is written, before a failed cell or pair decides the status."""
    from ..experiment import estimate
    from ..run import runner

    if args.resume:
        _check_baseline(args.baseline, list(state.inventory.pairs))  # the report compares all the run's pairs
        state.inventory = runner.select_pairs(state.inventory, args.pairs, args.serial)
        term.console.print(f"resuming {state.run_dir}")
        if args.retry_failed:
            redo = runner.set_aside_unfinished(state)
            term.console.print(f"measuring {len(redo)} failed or degraded cells again; their raw files are kept in "
                               f"{layout.cells_dir(state.run_dir, '<pair>' if len(state.inventory.pairs) > 1 else layout.DEFAULT_PAIR)}"
                               "/<cell_id>.failed-<n>/")
    args.doc.update(run_dir=str(state.run_dir), run_id=state.run_id, seed=state.plan.seed)
    try:
        progress = TerminalProgress(term.console, estimate.per_cell_seconds(state.experiment), state.experiment.repetitions)
        shown = show_preflight if args.verbose else show_preflight_problems
        outcome = runner.execute(state, progress, on_preflight=lambda report: shown(term, report))
    except KeyboardInterrupt as exc:
        hosts = "both hosts" if len(state.inventory.pairs) == 1 else "every pair's hosts"
        term.say(f"[yellow]interrupted[/] ({signal_name(exc)}): agents stopped on {hosts}; finished cells are kept.\n"
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
    if after is not None:
        after(outcome)
    failure = outcome.verdict()
    if failure is not None:
        raise failure
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
    from ..run import remaining, runner
    from ..experiment.plan import expand, new_seed
    from ..experiment.units import format_duration

    if args.resume:
        state = runner.reopen_run(Path(args.resume))
        experiment, inventory, plan = state.experiment, state.inventory, state.plan
        inventory = runner.select_pairs(inventory, args.pairs, args.serial)
        finished = remaining.finished(state.run_dir)
        seed_note = "saved with the run"
    else:
        experiment, inventory = _load_inputs(args)
        inventory = runner.select_pairs(inventory, args.pairs, args.serial)
        _checked_size(experiment, args.yes, inventory, report=not args.no_report)
        seed = experiment.seed if experiment.seed is not None else new_seed()
        plan = expand(experiment, seed)
        finished = set()
        seed_note = ("from --seed" if args.seed is not None else "from the config") if experiment.seed is not None else \
            f"drawn now: to run this order, add --seed {seed}"
    # A cell is still to run while any selected pair lacks its row.
    todo = remaining.cells_left(plan.cells, inventory.pairs, finished)
    done = len(plan.cells) - len(todo)
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
                    cells={"planned": len(plan.cells), "to_run": len(todo), "done": done},
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
    term.out.print(f"[bold]plan[/]: {len(todo)} cells{on_pairs}" + (f" ({done} already done)" if done else "") +
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


def _preflight_only(args: argparse.Namespace, term: Terminal, experiment, inventory, then: str | None = None) -> None:
    """Reach every pair's hosts, run preflight on them all at once, show and record the findings
    of each pair; nothing is started."""
    from ..run.pairs import listed
    from ..run.preflight import preflight_pairs

    several = len(inventory.pairs) > 1
    checked = preflight_pairs(inventory, experiment)
    if not several and isinstance(checked[next(iter(checked))], OrchestrateError):
        raise checked[next(iter(checked))]  # one pair: its error is the command's, as before pairs existed
    findings, problems, errors = [], 0, {}
    for name, report in checked.items():
        if isinstance(report, OrchestrateError):
            errors[name] = report
            term.say(f"[red]✗ pair {escape(name)}[/]: {escape(str(report))}")
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
        failed = [listed(name, exc) for name, exc in errors.items()]
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
    from ..report.write import write_report_with_summary

    run_dir = Path(args.run_dir)
    args.doc["run_dir"] = str(run_dir)  # where an unexpected error's traceback goes: the run's run.log
    report, summary = write_report_with_summary(run_dir, baseline=args.baseline)
    failed = summary[summary["failed"] > 0] if not summary.empty else summary
    args.doc.update(
        run_dir=str(run_dir), report={"markdown": str(report), "html": str(report.with_suffix(".html"))},
        cells={"cells": len(summary), "repetitions": int(summary["repetitions"].sum()) if not summary.empty else 0,
               "failed": int(summary["failed"].sum()) if not summary.empty else 0},
        failures=[{"cell": r["cell"], "failed": int(r["failed"]), "errors": r["errors"]} for _, r in failed.iterrows()],
        summary=_records(summary),
    )
    term.out.print(f"report: {report.with_suffix('.html')} (and {report.name}, {layout.SUMMARY}, {layout.PLOTS}/)")
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
        changes=[{"group": c.group, "fact": c.fact, "roles": list(c.roles), "a": c.a, "b": c.b} for c in comparison.changes],
        identity=comparison.identity, unknown_facts=comparison.unknown_facts,
    )
    show_comparison(term, comparison)
    return ExitStatus.OK


def cmd_reproduce(args: argparse.Namespace, term: Terminal) -> ExitStatus:
    """`orchestrate reproduce RUN_DIR --inventory NEW.yml`: every input checked before any host is
    contacted, then a new run of the original's plan, its report, and its comparison with the original."""
    from ..experiment.inventory import load_inventory
    from ..run import reproduce

    original = reproduce.open_original(Path(args.run_dir))
    inventory_path = Path(args.inventory or DEFAULT_INVENTORY)
    plan = reproduce.plan(original, load_inventory(inventory_path), args.pairs, args.serial, inventory_path)
    size = _checked_size(original.experiment, args.yes, plan.inventory, report=not args.no_report)
    args.doc.update(original={"run_id": original.run_id, "path": str(original.run_dir)}, pairs=plan.pairs,
                    seed=original.plan.seed)
    if args.dry_run:
        return _reproduce_dry_run(args, term, plan, size)
    for note in original.notes:
        term.console.print(f"note: {escape(note)}", highlight=False)
    state = reproduce.start(plan, Path(args.results))  # it holds the new folder's lock
    term.console.print(f"reproducing {original.run_id} ({original.run_dir}) as run {state.run_id}: {size.describe()}, "
                       f"seed {state.plan.seed} and the original's order, folder {state.run_dir}", highlight=False)

    compare = _compare_with_original(args, term, state.run_dir)
    try:
        return _run_locked(args, term, state, after=compare)
    finally:
        if state.lock is not None:
            state.lock.release()


def _compare_with_original(args: argparse.Namespace, term: Terminal, run_dir: Path) -> Callable[[Any], None] | None:
    """For a reproduced run (its reproduces.json): what writes its comparison with the original
    once it has measured, pair by pair (a pair that measured nothing is said and skipped). None
    for any other run."""
    from ..rows import origin
    from ..run.reproduce import comparisons

    found = origin.read(run_dir)
    if found is None:
        return None

    def compare(outcome) -> None:
        from ..report.compare import compare_runs

        written = []
        for one in comparisons(found, run_dir):
            pair = outcome.pairs.get(one.new)
            if pair is not None and pair.error is not None and not pair.finished:
                term.console.print(f"no comparison for pair {escape(one.old)}: it measured nothing ({escape(str(pair.error))})")
                continue
            if not Path(found.path).is_dir():
                term.console.print(f"no comparison: the original run is no longer in {escape(found.path)}")
                return
            comparison = compare_runs(Path(found.path), run_dir, one.out_dir, one.pair)
            written.append({"pair": one.old, "new_pair": one.new, "compare_md": str(one.out_dir / layout.COMPARE_MD),
                            "verdicts": _verdict_counts(comparison.table)})
            show_reproduced(term, comparison, one.old if len(found.pairs) > 1 else None)
        args.doc["comparisons"] = written

    return compare


def _verdict_counts(table) -> dict[str, int]:
    """How many cells each throughput verdict has (a run with no throughput: every metric's)."""
    rows = table[table["metric"] == "throughput_gbps"] if (table["metric"] == "throughput_gbps").any() else table
    return {str(k): int(v) for k, v in rows["verdict"].value_counts().items()}


def _reproduce_dry_run(args: argparse.Namespace, term: Terminal, plan, size) -> ExitStatus:
    """What `reproduce` will run and what differs from the original, before anything starts."""
    original = plan.original
    changes = plan.host_changes()
    versions = [("orchestrate version", original.fact("orchestrate_version"), plan.version),
                ("agent source hash", original.fact("agent_hash"), plan.agent_hash)]
    args.doc.update(
        dry_run=True, hosts=[{"pair": pair, "role": role, "original": was, "new": now, "same": was == now}
                             for pair, role, was, now in changes],
        versions={what: {"original": was, "now": now, "same": was == now} for what, was, now in versions},
        cells={"planned": len(original.plan.cells) * len(plan.pairs)}, plan=[c.cell_id for c in original.plan.cells],
        notes=list(original.notes))
    term.out.print(f"[bold]reproduce[/] {escape(original.run_id)} ({escape(str(original.run_dir))}): experiment "
                   f"{escape(original.experiment.name)}, its own config and plan.json", highlight=False)
    term.out.print("[bold]what differs from the original[/]")
    for pair, role, was, now in changes:
        lead = f"{escape(pair)} " if len(plan.pairs) > 1 or pair != layout.DEFAULT_PAIR else ""
        text = f"{escape(now)} (the same)" if was == now else f"{escape(was)}  ->  {escape(now)}"
        term.out.print(f"  {lead}{role}: {text}", highlight=False)
    for what, was, now in versions:
        text = f"{now} (the same)" if was == now else f"{was or 'not recorded'}  ->  {now}"
        term.out.print(f"  {what}: {escape(text)}", highlight=False)
    term.out.print("  kernel, CPU, NIC, MTU and qdisc: in the comparison, from the facts the new hosts give when the run "
                   "starts", highlight=False)
    for note in original.notes:
        term.out.print(f"  note: {escape(note)}", highlight=False)
    on_pairs = f" on each of {len(plan.pairs)} pairs" if len(plan.pairs) > 1 else ""
    term.out.print(f"[bold]plan[/]: {len(original.plan.cells)} cells{on_pairs}, order {original.experiment.order}, "
                   f"seed {original.plan.seed} (the original's, in its order)", highlight=False)
    for index, cell in enumerate(original.plan.cells, 1):
        term.out.print(f"  {index:>4}  {cell.cell_id}", highlight=False)
    term.out.print(f"[bold]estimate[/]: {size.describe()}", highlight=False)
    where = layout.reproduced_compare_dir(Path(args.results) / "<new-run>")
    term.out.print(f"then: the new run's report, and its comparison with the original in {where}/", highlight=False)
    term.console.print("dry run: nothing was started, and no host was contacted")
    return ExitStatus.OK


def cmd_runs(args: argparse.Namespace, term: Terminal) -> ExitStatus:
    from ..report import runindex

    try:
        filters = runindex.Filters(
            name=args.name, host=args.host, kernel=args.kernel, reproduces=args.reproduces,
            since=runindex.parse_when(args.since) if args.since else None,
            until=runindex.parse_when(args.until, end=True) if args.until else None)
    except ValueError as exc:
        raise ConfigError(f"orchestrate runs: --since/--until: {exc}") from None
    found = runindex.index(Path(args.directory))
    shown = [run for run in found.runs if filters.keep(run)]
    for run in shown:
        if run.state == "running":
            _still_running(run)
    args.doc.update(folder=str(found.folder), runs=[r.to_json() for r in shown], skipped=found.skipped,
                    filtered_out=len(found.runs) - len(shown))
    show_runs(term, shown, found, len(found.runs) - len(shown))
    return ExitStatus.OK


def _still_running(run) -> None:
    """A run whose status.json says running is running only while an orchestrate holds its lock
    (the kernel lets it go however that process died): else it ended mid-run, and says how to go
    on. A lock last taken on another machine may be held there unseen (a network file system that
    keeps locks local), so that one is said, not decided."""
    from ..rows import runstatus
    from ..run.runner import RunLock, controller_name

    lock = RunLock(run.path)
    try:
        if lock.held_by() is not None:
            return
        said = runstatus.read(run.path)  # read again: a run that ended since the listing read it
    except OrchestrateError as exc:
        run.problems.append(f"cannot tell whether it still runs: {exc}")
        return
    if said is not None and said.state != "running":
        run.state, run.cells = said.state, {k: getattr(said.counts, k) for k in runstatus.COUNTS}
        return
    resume = f"orchestrate run --resume {run.path}"
    taken_on = lock.last_taken_on()
    if taken_on is not None and taken_on != controller_name():
        run.problems.append(f"{layout.STATUS} says running, and no orchestrate on this machine holds its lock; it was "
                            f"last taken on {taken_on}, whose lock this machine may not see (a network file system): "
                            f"if that run has ended, finish it with: {resume}")
        return
    run.state = "ended mid-run"
    run.problems.append(f"{layout.STATUS} says running, but no orchestrate holds its lock: it was killed, or copied "
                        f"mid-run; to finish it: {resume}")


def cmd_lab(args: argparse.Namespace, term: Terminal) -> ExitStatus:
    from .. import lab

    # --mtu and --rate-mbit: one value for every pair, or a comma list with one per pair.
    mtus, rates = args.mtu or (), args.rate_mbit or ()
    given = {"mtu": mtus[0] if len(mtus) == 1 else None, "mtus": mtus if len(mtus) > 1 else None,
             "delay_ms": args.delay_ms,
             "rate_mbit": rates[0] if len(rates) == 1 else None, "rates_mbit": rates if len(rates) > 1 else None}
    options = lab.LabOptions(
        prefix=args.prefix, inventory_path=Path(args.inventory_out), bastion=args.bastion, user=args.user,
        sudo_perf=args.sudo_perf, shell=args.shell, chatty=args.chatty, no_compiler=tuple(args.no_compiler), pairs=args.pairs,
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
    show_lab(term, status)
    return ExitStatus.OK


def cmd_init(args: argparse.Namespace, term: Terminal) -> ExitStatus:
    from ..experiment.scaffold import init

    for path in init(Path(args.directory), force=args.force):
        term.console.print(f"wrote {path}")
    term.console.print(f"next: fill in {Path(args.directory) / 'inventory.yml'}, then: orchestrate check configs/smoke.yml")
    return ExitStatus.OK
