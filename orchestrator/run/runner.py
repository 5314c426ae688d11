"""A whole run: the run folder, the hosts, preflight, deploy, host facts, then every cell of
the plan, appending each cell's row as soon as it is known."""

from __future__ import annotations

import contextlib
import contextvars
import datetime as dt
import errno
import fcntl
import io
import json
import logging
import os
import re
import secrets
import shutil
import socket
import stat
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterator, Sequence

import yaml

from ..rows import cellrow, intervals, layout, results
from .cell import CellContext, CellOutcome, CellRunner
from ..remote import deploy, facts, hostlock, sshconnect
from . import leftovers, remaining, status
from ..experiment.config import Experiment, Perf, experiment_from_resolved
from ..errors import (ConfigError, DiskError, ExitStatus, FormatVersionError, HostError, OrchestrateError, PairsFailed,
                      PreflightError, RunFailed)
from ..rows.durable import DISK_ERRNOS, disk_error, write_atomic
from ..remote.hosts import Host
from ..processes import KILL_GRACE
from ..experiment.inventory import Inventory, concurrent_pairs_share_nothing
from .pairs import PairOutcome, PairTag, listed, run_pairs
from ..rows.layout import DEFAULT_PAIR
from ..experiment.plan import Cell, Plan, expand, load_plan, new_seed
from .preflight import Preflight, connect_hosts, run_preflight
from .progress import Progress

log = logging.getLogger(__name__)


# Ends the data-path probe's remote run id; a pair name cannot hold its '.'.
PROBE_SUFFIX = ".preflight"


class RunBusy(OrchestrateError):
    """Another orchestrate works in this run folder: this one changed nothing in it and reached no host."""

    exit_code = ExitStatus.BAD_ARGUMENT


class RunLock:
    """The run folder's own lock: `flock` on RUN/run.lock (layout.RUN_LOCK), held by the one
    orchestrate that may change the folder, from before its first change to its end. The kernel
    lets it go when that process dies, however it dies (no stale lock to clear). It lives inside the
    folder, so it moves with the folder; a copy of the folder is a copy of an unheld file."""

    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir) / layout.RUN_LOCK
        self._file: io.FileIO | None = None

    @property
    def held(self) -> bool:
        return self._file is not None

    def take(self) -> "RunLock":
        """Take it now or raise RunBusy naming the holder; a refusal writes nothing in the folder."""
        flags = os.O_RDWR | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
        try:
            try:
                fd = os.open(self.path, flags)  # no O_CREAT first: a refusal must not even create the file
            except FileNotFoundError:
                fd = os.open(self.path, flags | os.O_CREAT, 0o600)  # a new folder, or one older than the lock
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise ConfigError(f"{self.path}: refused: it is a symlink; this run folder is not as orchestrate left it") from None
            if exc.errno in DISK_ERRNOS:
                raise disk_error(self.path, exc) from None
            raise ConfigError(f"{self.path}: cannot open the run folder's lock: {exc.strerror or exc}") from None
        file = io.FileIO(fd, "r+", closefd=True)
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise ConfigError(f"{self.path}: refused: not a regular file; this run folder is not as orchestrate left it")
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 512, 0).decode("utf-8", errors="replace")
                raise RunBusy(f"{self.path.parent} is in use by {_holder_phrase(holder)}. Nothing in the folder was "
                              f"changed and no host was contacted; run this again once that one has ended") from None
            # Who holds it, for the next one refused: written only once it is ours.
            os.ftruncate(fd, 0)
            os.pwrite(fd, _holder_text().encode(), 0)
        except OSError as exc:
            file.close()
            raise disk_error(self.path, exc) from None
        except BaseException:
            file.close()
            raise
        self._file = file
        return self

    def held_by(self) -> str | None:
        """Who holds the lock now (as RunBusy names them), None when no orchestrate does; it is
        only looked at: nothing is taken, created or written (a reader of another's folder)."""
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise ConfigError(f"{self.path}: refused: it is a symlink; this run folder is not as orchestrate left it") from None
            raise ConfigError(f"{self.path}: cannot open the run folder's lock: {exc.strerror or exc}") from None
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise ConfigError(f"{self.path}: refused: not a regular file; this run folder is not as orchestrate left it")
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)  # conflicts with the holder's LOCK_EX only
            except BlockingIOError:
                return _holder_phrase(os.pread(fd, 512, 0).decode("utf-8", errors="replace"))
            fcntl.flock(fd, fcntl.LOCK_UN)
            return None
        except OSError as exc:  # no lock service (ENOLCK on some network file systems), EIO
            raise ConfigError(f"{self.path}: cannot look at the run folder's lock: {exc.strerror or exc}") from None
        finally:
            os.close(fd)

    def last_taken_on(self) -> str | None:
        """The controller that took the lock last, as it wrote itself into the file (the text stays
        after the lock goes), or None when the file has no such line."""
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError:
            return None
        try:
            text = os.pread(fd, 512, 0).decode("utf-8", errors="replace")
        except OSError:
            return None
        finally:
            os.close(fd)
        found = re.search(r"controller=([A-Za-z0-9_.-]{1,64})", text)
        return found.group(1) if found else None

    def release(self) -> None:
        if self._file is not None:
            self._file.close()  # closing the one descriptor lets the flock go
            self._file = None


def controller_name() -> str:
    """This machine, as a run.lock names the controller that took it."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", socket.gethostname())[:64] or "unknown"


def _holder_text() -> str:
    return f"pid={os.getpid()} controller={controller_name()} since={dt.datetime.now(dt.timezone.utc):%Y-%m-%dT%H:%M:%SZ}\n"


def _holder_phrase(text: str) -> str:
    fields = dict(re.findall(r"(\w+)=([A-Za-z0-9_.:-]{1,64})", text))
    if "pid" not in fields:
        return "another orchestrate (its run.lock is held; it did not say which)"
    return (f"another orchestrate (pid {fields['pid']} on {fields.get('controller', '?')}, "
            f"since {fields.get('since', '?')})")


@dataclass
class RunState:
    run_dir: Path
    experiment: Experiment
    inventory: Inventory
    plan: Plan
    # Every pair of the run, as its folder's inventory has them (by default, `inventory`'s):
    # `inventory` may be narrowed to the pairs this session runs (--pairs), and status.json
    # counts the whole run.
    pairs: list[str] = field(default_factory=list)
    # The folder's lock, once this session holds it (create_run takes it; a resume, take_lock).
    lock: RunLock | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.pairs and self.inventory is not None:
            self.pairs = list(self.inventory.pairs)

    @property
    def run_id(self) -> str:
        return self.run_dir.name

    @property
    def shape(self) -> status.RunShape:
        return status.RunShape(self.run_dir, [c.cell_id for c in self.plan.cells], self.pairs)


@dataclass(frozen=True)
class PairState:
    """One pair of a run: its own one-pair inventory (so preflight, facts and the cells see one
    server and one client), its folders (layout.py) and the run id its hosts' folders go by."""

    run: RunState
    name: str

    @property
    def inventory(self) -> Inventory:
        whole = self.run.inventory
        return Inventory(ssh_config=whole.ssh_config, pairs={self.name: whole.pair(self.name)})

    @property
    def root(self) -> Path:
        return layout.pair_root(self.run.run_dir, self.name)

    @property
    def remote_run_id(self) -> str:
        # Pairs that run one after another may share a host: each has its own runs/ folder there.
        return self.run.run_id if self.name == DEFAULT_PAIR else f"{self.run.run_id}-{self.name}"

    @property
    def probe_run_id(self) -> str:
        """The data-path probe's runs/ folder: its separator is one no pair name holds, so it is
        never another pair's (pair `a`'s probe and a pair named `a-preflight`)."""
        return f"{self.remote_run_id}{PROBE_SUFFIX}"


@dataclass
class RunOutcome:
    run_dir: Path
    finished: list[CellOutcome] = field(default_factory=list)
    skipped: int = 0
    pairs: dict[str, PairOutcome] = field(default_factory=dict)

    @property
    def failed(self) -> list[CellOutcome]:
        return [o for o in self.finished if o.error]

    @property
    def failed_pairs(self) -> list[PairOutcome]:
        return [p for p in self.pairs.values() if p.error]

    def verdict(self) -> PairsFailed | RunFailed | None:
        """What the run ends in, once its cells are done: PairsFailed when a pair failed (the others
        finished), else RunFailed when results.csv has a failed or degraded row; None: it is done."""
        if self.failed_pairs:
            return PairsFailed(
                f"{len(self.failed_pairs)} of {len(self.pairs)} pairs failed; the others finished:"
                + "".join(f"\n{listed(p.pair, p.error)}" for p in self.failed_pairs)
                + f"\nonce their hosts are back: orchestrate run --resume {self.run_dir}",
                [p.error for p in self.failed_pairs if p.error is not None], every=False)
        counts = results.row_counts(self.run_dir / layout.RESULTS)
        failed, degraded = counts.get("failed", 0), counts.get("degraded", 0)
        if failed or degraded:
            # Every row of the run counts, not only this session's: a resumed run with failed rows is not done.
            named = len(self.pairs) > 1
            listing = "".join(f"\n  {f'{name}/' if named else ''}{o.cell.cell_id}: {o.error}"
                              for name, p in self.pairs.items() for o in p.failed)
            return RunFailed(
                f"{failed} failed and {degraded} degraded of {sum(counts.values())} cells (raw logs in "
                f"{layout.cells_dir(self.run_dir, '<pair>' if named else DEFAULT_PAIR)})"
                f"{listing}\nmeasure them again with: orchestrate run --resume {self.run_dir} --retry-failed")
        return None


def new_run_id(name: str, now: dt.datetime | None = None) -> str:
    now = now or dt.datetime.now(dt.timezone.utc)
    return f"{now:%Y%m%dT%H%M%SZ}-{name}-{secrets.token_hex(2)}"


def create_run(experiment: Experiment, inventory: Inventory, results_root: Path, plan: Plan | None = None) -> RunState:
    """A new run folder holding the run's config, inventory and plan, its lock taken. `plan`: a
    saved plan to run as it is (a reproduced run: its cells in its order, its seed)."""
    if plan is not None:
        experiment = experiment.model_copy(update={"seed": plan.seed})
    seed = experiment.seed if experiment.seed is not None else new_seed()
    plan = plan if plan is not None else expand(experiment, seed)
    try:
        results_root.mkdir(parents=True, exist_ok=True)
        while True:
            run_dir = results_root / new_run_id(experiment.name)
            try:
                run_dir.mkdir()
                break
            except FileExistsError:
                continue
    except OSError as exc:
        if exc.errno in DISK_ERRNOS:
            raise disk_error(results_root, exc) from None
        raise ConfigError(f"{results_root}: cannot create the run folder: {exc.strerror or exc}") from None
    try:
        lock = RunLock(run_dir).take()  # before the folder's first file: the folder is the lock's
        write_atomic(run_dir / layout.CONFIG, yaml.safe_dump(experiment.resolved(seed), sort_keys=False))
        write_atomic(run_dir / layout.INVENTORY, yaml.safe_dump(_saved_inventory(inventory), sort_keys=False))
        write_atomic(run_dir / layout.PLAN, json.dumps(plan.to_json(), indent=1) + "\n")
    except DiskError:
        shutil.rmtree(run_dir, ignore_errors=True)  # nothing ran: no half run folder to resume
        raise
    return RunState(run_dir, experiment.model_copy(update={"seed": seed}), inventory, plan, lock=lock)


def take_lock(state: RunState) -> RunState:
    """A resumed run takes its folder's lock before it changes anything in it (RunBusy, at once,
    if another orchestrate holds it)."""
    if state.lock is None or not state.lock.held:
        state.lock = RunLock(state.run_dir).take()
    return state


@contextlib.contextmanager
def _locked(state: RunState) -> Iterator[None]:
    """The folder's lock for what follows: the session's own if it holds it, else taken here and
    let go after (a library caller that did not take it)."""
    if state.lock is not None and state.lock.held:
        yield
        return
    take_lock(state)
    try:
        yield
    finally:
        if state.lock is not None:
            state.lock.release()


def _saved_inventory(inventory: Inventory) -> dict:
    """The inventory as the run folder keeps it: the one-pair form for the pair "default" alone
    (as before pairs existed), else `pairs:`."""
    head = {"ssh_config": inventory.ssh_config} if inventory.ssh_config else {}
    if list(inventory.pairs) == [DEFAULT_PAIR]:
        return {**head, "server": inventory.server.public(), "client": inventory.client.public()}
    return {**head, **({} if inventory.concurrent else {"concurrent": False}),
            "pairs": {name: {"server": pair.server.public(), "client": pair.client.public()}
                      for name, pair in inventory.pairs.items()}}


def select_pairs(inventory: Inventory, names: Sequence[str] | None, serial: bool = False) -> Inventory:
    """The inventory with only the pairs named (all of them when None), in the inventory's order;
    a name it lacks is a ConfigError naming the pairs it has. Pairs that will run at the same
    time (not `serial`, not `concurrent: false`) may share no host: a ConfigError names both.
    With `serial` the inventory says `concurrent: false`, so the run folder keeps the choice and
    `--resume` runs the pairs one after another too, without being told again."""
    if names:
        unknown = [n for n in names if n not in inventory.pairs]
        if unknown:
            raise ConfigError(f"--pairs: no pair named {', '.join(unknown)}; the inventory has {', '.join(inventory.pairs)}")
        inventory = inventory.model_copy(update={"pairs": {n: p for n, p in inventory.pairs.items() if n in names}})
    if serial and len(inventory.pairs) > 1:
        inventory = inventory.model_copy(update={"concurrent": False})
    if inventory.concurrent:
        # Where each host's connection ends up, as it will connect: aliases resolved, bastions counted.
        concurrent_pairs_share_nothing(inventory, lambda spec: sshconnect.endpoint(spec, inventory.ssh_config))
    return inventory


def reopen_run(run_dir: Path) -> RunState:
    """A run folder to resume: its own saved config, inventory and plan, not the files today.
    A plan.json or results.csv of another format version is refused before anything is touched."""
    try:
        plan = load_plan(run_dir / layout.PLAN)
        results.check_format(run_dir / layout.RESULTS)
        config = run_dir / layout.CONFIG
        experiment = experiment_from_resolved(yaml.safe_load(config.read_text()), config)
        inventory = Inventory.model_validate(yaml.safe_load((run_dir / layout.INVENTORY).read_text()))
    except FormatVersionError:
        raise
    except (ConfigError, OSError, ValueError, KeyError, TypeError, yaml.YAMLError) as exc:
        raise ConfigError(f"{run_dir}: not a resumable run folder: {exc}") from None
    return RunState(run_dir, experiment, inventory, plan)


class _RunLog(logging.FileHandler):
    """run.log; a full disk must not print logging's own traceback on the user's terminal (the
    next results or raw file that cannot be written stops the run with a DiskError)."""

    def handleError(self, record: logging.LogRecord) -> None:
        pass

    def flush(self) -> None:
        try:
            super().flush()
        except OSError:
            pass

    def close(self) -> None:
        try:
            super().close()
        except OSError:
            pass


def _attach_log(run_dir: Path) -> logging.Handler:
    try:
        handler: logging.Handler = _RunLog(run_dir / layout.RUN_LOG)
    except OSError as exc:
        raise disk_error(run_dir / layout.RUN_LOG, exc, run_dir) from None
    # Each line names the pair it was logged for (`-`: the run's own), then the module.
    handler.setFormatter(logging.Formatter("%(asctime)s %(pair)s %(name)s %(message)s"))
    handler.addFilter(PairTag())
    root = logging.getLogger("orchestrator")
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    # Paramiko's own warnings and errors (a banner read from a dying sshd, with its traceback)
    # go to run.log too: without a handler, logging's last resort prints them on the terminal.
    logging.getLogger("paramiko").addHandler(handler)
    return handler


def _detach_log(handler: logging.Handler) -> None:
    for name in ("orchestrator", "paramiko"):
        logging.getLogger(name).removeHandler(handler)
    handler.close()


class _SharedFiles:
    """The files every pair of a run appends to (results.csv, intervals.csv): opened once, and
    each cell's rows appended whole under one lock, so rows of two pairs never interleave."""

    def __init__(self, run_dir: Path, progress: Progress) -> None:
        self.results = results.ResultsTable(run_dir / layout.RESULTS, resume=run_dir)
        if self.results.torn is not None:
            progress.stage(f"results.csv ended in a torn row (kept in {self.results.torn.name}): that cell runs again")
        self.done = remaining.finished(run_dir)
        self.series = intervals.IntervalsFile(run_dir, resume=run_dir)
        self.series.keep_only(self.done)  # rows of cells results.csv lacks (set aside, or cut off by a crash) go
        self.lock = threading.Lock()

    def append(self, row: results.Row, cell_dir: Path) -> None:
        with self.lock:
            # Intervals before the row: a crash between the two leaves rows keep_only drops.
            self.series.append(intervals.cell_rows(row, cell_dir))
            self.results.append(row)


def stop_within(experiment: Experiment) -> float:
    """How long a stopped pair has to end its agents and release its hosts: a remote command's
    timeout, plus the kill's TERM-to-KILL grace."""
    return experiment.timeouts.command + KILL_GRACE


def execute(
    state: RunState,
    progress: Progress,
    on_preflight: Callable[[Preflight], None] = lambda p: None,
) -> RunOutcome:
    """Every pair of the run's inventory runs the plan's cells it has not finished: the one pair
    here, several each in a thread of its own (one after another when the inventory says
    `concurrent: false`, which select_pairs sets for --serial). A pair that fails is reported
    and the others go on.

    status.json says `running` once the run's files are open, and what the run came to when it
    ends, however it ends (runstatus.py); what stopped it is in run.log too. The folder's lock is
    held throughout (taken here if the caller did not)."""
    with _locked(state):
        return _execute_locked(state, progress, on_preflight)


def _execute_locked(state: RunState, progress: Progress, on_preflight: Callable[[Preflight], None]) -> RunOutcome:
    handler = _attach_log(state.run_dir)
    seen: dict[str, PairOutcome] = {}  # each pair's outcome as it goes: where it was when the run stopped
    try:
        try:
            outcome = _execute_pairs(state, progress, on_preflight, seen)
        except BaseException as exc:
            _record_stop(state, seen, exc)
            raise
        status.write(state.run_dir, status.ended(state.shape, outcome.pairs), state.run_dir)
        return outcome
    finally:
        try:
            progress.stop()
        finally:
            _detach_log(handler)


def _record_stop(state: RunState, seen: dict[str, PairOutcome], exc: BaseException) -> None:
    """What stopped the run, in run.log and status.json. A status that cannot be worked out or
    written (a full disk, a torn results.csv) is logged: the error that stopped the run goes up."""
    try:
        ended = status.ended(state.shape, seen, stopped=exc)
        where = "interrupted" if ended.state == "interrupted" else f"stopped at {ended.stopped_at}"
        log.error("run %s%s: %s", where, "" if ended.measured else ", nothing measured", ended.reason)
        status.write(state.run_dir, ended, state.run_dir)
    except Exception as failed:  # noqa: BLE001 - never hides the error that stopped the run
        log.error("run stopped (%s); its status.json could not be written: %s", status.reason_of(exc), failed)


def _execute_pairs(state: RunState, progress: Progress, on_preflight: Callable[[Preflight], None],
                   seen: dict[str, PairOutcome]) -> RunOutcome:
    try:
        shared = _SharedFiles(state.run_dir, progress)
        status.write(state.run_dir, status.running(state.shape), state.run_dir)

        def run_pair(outcome: PairOutcome, pair_progress: Progress) -> None:
            seen[outcome.pair] = outcome
            _execute_pair(PairState(state, outcome.pair), pair_progress, on_preflight, shared, outcome)

        outcomes = run_pairs(list(state.inventory.pairs), run_pair, progress,
                                     [c.cell_id for c in state.plan.cells], shared.done,
                                     serial=not state.inventory.concurrent,
                                     stop_within=stop_within(state.experiment))
        outcome = RunOutcome(state.run_dir, pairs=outcomes)
        for one in outcomes.values():
            outcome.finished += one.finished
            outcome.skipped += one.skipped
        return outcome
    except OSError as exc:
        # A local file this run could not write (a cell folder on a full disk): typed, never a
        # traceback. Other OSErrors (no filename) are not the disk's doing and go up as they are.
        if exc.filename is None:
            raise
        raise disk_error(Path(exc.filename), exc, state.run_dir) from None


def _execute_pair(pair: PairState, progress: Progress, on_preflight: Callable[[Preflight], None],
                  shared: _SharedFiles, outcome: PairOutcome) -> None:
    """One pair's hosts, preflight, deploy, host facts and cells, each cell kept in `outcome`
    as it finishes (what stops the pair goes up; the cells before it stay counted)."""
    state = pair.run
    experiment, inventory = state.experiment, pair.inventory
    hosts: dict[str, Host] = {}
    locks = hostlock.HostLocks([])
    try:
        outcome.stage = "connect"
        progress.stage("connecting to hosts")
        hosts = connect_hosts(inventory, experiment.timeouts.connect)
        # Before anything is measured or killed: a host another run holds stops this one here.
        outcome.stage = "lock"
        locks = hostlock.acquire(hosts, pair.remote_run_id, experiment.timeouts.command)
        pair.root.mkdir(parents=True, exist_ok=True)
        record = leftovers.GroupRecord(pair.root)
        if record.path.exists():  # a resumed run: nothing of it may still run when it measures again
            outcome.stage = "leftovers"
            progress.stage("ending whatever this run left running")
            for note in leftovers.end_leftovers(hosts, record, experiment.timeouts.command,
                                                (pair.remote_run_id, pair.probe_run_id)):
                progress.stage(note)
        outcome.stage = "preflight"
        progress.stage("preflight")
        # The run's folders under runs/ are made and checked with the workdir; from here on
        # each host carries its workdir resolved on it (`~/` expanded).
        preflight = run_preflight(hosts, experiment, inventory, run_ids=(pair.remote_run_id, pair.probe_run_id))
        on_preflight(preflight)
        if preflight.problems:
            raise PreflightError(
                "preflight found problems:\n" + "\n".join(f"  {p.host}: {p.check}: {p.detail}" for p in preflight.problems)
            )
        outcome.stage = "deploy"
        progress.stage("deploying agents")
        agents = _deploy(hosts, experiment.timeouts.command, preflight.builds)
        outcome.stage = "data_path"
        progress.stage("checking the data path")
        _probe_data_path(pair, hosts, agents, record)
        outcome.stage = "facts"
        progress.stage("gathering host facts")
        _save_facts(pair, hosts, agents, preflight)
        ctx = CellContext(
            run_id=pair.remote_run_id,
            experiment=experiment,
            hosts=hosts,
            agents=agents,
            # Every requested event, supported or not: perf then writes `<not supported>` into the
            # raw file, and the column exists, empty, instead of silently vanishing.
            perf_events={role: list(preflight.perf_events(role)) for role in hosts},
            record=record,
        )
        outcome.stage = "cells"
        _run_cells(pair, ctx, progress, shared, outcome)
        outcome.stage = "done"
    except OSError as exc:
        if exc.filename is None:
            raise
        raise disk_error(Path(exc.filename), exc, state.run_dir) from None
    finally:
        locks.release()
        for host in hosts.values():
            host.close()


def _probe_data_path(pair: PairState, hosts: dict[str, Host], agents: dict[str, deploy.Agent],
                     record: leftovers.GroupRecord | None = None) -> None:
    """One tiny verified transfer between the built agents, over the data addresses, before any
    cell: a firewall, a wrong address or an agent that won't start shows up here, once."""
    state = pair.run
    experiment = state.experiment.model_copy(
        update={"duration": 0.2, "warmup": 0.0, "interval": 0.1, "verify": True, "perf": Perf(enabled=False)}
    )
    ctx = CellContext(pair.probe_run_id, experiment, hosts, agents, {}, record)
    # With receive: zerocopy in the plan the probe receives that way too: a receiving host whose
    # kernel refuses TCP_ZEROCOPY_RECEIVE (EOPNOTSUPP) says so here, before any cell.
    receive = "zerocopy" if "zerocopy" in experiment.dimension("receive") else "copy"
    probe = Cell(workload="stream", mode="one_copy", message_size=1024, threads=1, fields=1,
                 sender=experiment.dimension("sender")[0], nodelay=True, sndbuf=0, rcvbuf=0, receive=receive,
                 uring_buffers="plain", repetition=1)
    # Judged as every cell is, from its raw files, without the window checks a 0.2 s probe
    # cannot meet; only a failed transfer stops the run.
    settings = cellrow.RowSettings.of(ctx.run_id, experiment, checked=False, pair=pair.name)
    outcome, _ = finish_cell(CellRunner(ctx).run(probe, layout.preflight_dir(state.run_dir, pair.name) / probe.cell_id), settings,
                             pair.run.run_dir)
    if outcome.status == "failed":
        server, client = pair.inventory.server, pair.inventory.client
        raise PreflightError(
            f"the agents could not move data from {client.label} to {server.data_address} port {experiment.port}: "
            f"{outcome.error} (raw files in {outcome.local_dir})"
        )


def _deploy(hosts: dict[str, Host], timeout: float, builds: dict[str, list[deploy.Builder]]) -> dict[str, deploy.Agent]:
    """Deploy on each distinct host and workdir once; two roles on one host share the agent."""
    places: dict[tuple[str, str], Host] = {}
    for host in hosts.values():
        places.setdefault((host.spec.label, host.spec.workdir), host)
    with ThreadPoolExecutor(max_workers=len(places)) as pool:
        built = {place: pool.submit(contextvars.copy_context().run, deploy.deploy, host, timeout, builds.get(host.role), hosts)
                 for place, host in places.items()}
        return {role: built[(h.spec.label, h.spec.workdir)].result() for role, h in hosts.items()}


def _save_facts(pair: PairState, hosts: dict[str, Host], agents: dict[str, deploy.Agent], preflight: Preflight) -> None:
    state = pair.run
    folder = layout.hosts_dir(state.run_dir, pair.name)
    folder.mkdir(parents=True, exist_ok=True)
    server_address = pair.inventory.server.data_address
    with ThreadPoolExecutor(max_workers=2) as pool:
        gathered = {role: pool.submit(contextvars.copy_context().run, facts.gather, host, server_address, state.experiment.timeouts.command) for role, host in hosts.items()}
    for role, future in gathered.items():
        data = future.result()
        data["agent_hash"] = agents[role].source_hash
        data["agent_path"] = agents[role].path
        if agents[role].build is not None:
            data["agent_build"] = agents[role].build.to_json()
        data["perf_events_supported"] = preflight.perf_events(role)
        # How perf was allowed to count here, and what it counted per event (preflight's check).
        data["perf_access"] = hosts[role].spec.perf_access
        check = preflight.perf_check(role)
        if check is not None:
            data["perf_check"] = check.to_json()
        path = folder / layout.host_facts(role)
        if path.exists():  # a resumed run keeps the first facts and adds the new ones beside them
            path = folder / f"{role}.{dt.datetime.now(dt.timezone.utc):%Y%m%dT%H%M%SZ}.json"
        write_atomic(path, json.dumps(data, indent=2) + "\n", state.run_dir)


def _run_cells(pair: PairState, ctx: CellContext, progress: Progress, shared: _SharedFiles,
               outcome: PairOutcome) -> None:
    state = pair.run
    todo = remaining.cells_left(state.plan.cells, [pair.name], shared.done)
    outcome.skipped, outcome.planned = len(state.plan.cells) - len(todo), len(state.plan.cells)
    progress.start(len(state.plan.cells), outcome.skipped)
    runner = CellRunner(ctx)
    try:
        for index, cell in enumerate(todo):
            _run_one(pair, ctx, runner, cell, todo[index + 1] if index + 1 < len(todo) else None, shared, outcome, progress)
    finally:
        runner.disarm()


def _run_one(pair: PairState, ctx: CellContext, runner: CellRunner, cell: Cell, next_cell: Cell | None,
             shared: _SharedFiles, outcome: PairOutcome, progress: Progress) -> None:
    state = pair.run
    local_dir = _fresh_cell_dir(layout.cells_dir(state.run_dir, pair.name), cell.cell_id)
    progress.cell_started(cell)
    ran = runner.run(cell, local_dir, next_cell)
    lost = _lost_host(ctx) if ran.error else None
    # The status is decided here, once, from the raw files; cell.json, intervals.csv and
    # results.csv are then written from it and nothing is changed afterwards.
    result, row = finish_cell(ran, cellrow.RowSettings.of(state.run_id, state.experiment, pair=pair.name), state.run_dir)
    if lost:
        # No row: the cell was not measured, and --resume runs it again once the host is back.
        raise _lost_error(pair, ctx, cell, lost, result)
    shared.append(row.row, result.local_dir)
    outcome.finished.append(result)
    progress.cell_finished(result)


def finish_cell(ran: CellOutcome, settings: cellrow.RowSettings,
                run_dir: Path | None = None) -> tuple[CellOutcome, cellrow.CellRow]:
    """A cell that ran, judged from its raw files (cellrow.read_cell), with its cell.json
    written: the outcome's status and error are its row's. `run_dir` is what a full disk's
    message tells the user to resume (a named pair's cells are two folders further down)."""
    row = cellrow.read_cell(ran.local_dir, ran.cell, settings, ran.error)
    result = replace(ran, status=row.status, error=row.error)
    write_atomic(ran.local_dir / layout.CELL_RECORD, json.dumps(result.record(), indent=2) + "\n",
                 run_dir if run_dir is not None else ran.local_dir.parent.parent)
    return result, row


def set_aside_unfinished(state: RunState) -> list[str]:
    """For --retry-failed: the cells whose rows are not `ok` (failed or degraded) are measured
    again. Their raw files move to <pair's cells>/<cell_id>.failed-<n>/ (layout.py) and their
    rows leave results.csv (rewritten whole, atomically), so each cell ends with one row, its new one.
    Only under the folder's lock: never while another orchestrate is appending to results.csv."""
    with _locked(state):
        return _set_aside_locked(state)


def _set_aside_locked(state: RunState) -> list[str]:
    path = state.run_dir / layout.RESULTS
    if not path.exists() or path.stat().st_size == 0:
        return []
    results_csv = results.ResultsTable(path, resume=state.run_dir)  # a torn last row is repaired first
    # With --pairs, only those pairs run again: only theirs move aside.
    redo = results.unfinished_cells(path, state.inventory.pairs)
    for pair, cell_id in redo:
        cells_dir = layout.cells_dir(state.run_dir, pair)
        folder = cells_dir / cell_id
        if not folder.exists():
            continue
        try:
            folder.rename(layout.aside_dir(cells_dir, cell_id, layout.FAILED))
        except OSError as exc:
            raise disk_error(folder, exc, state.run_dir) from None
    if redo:
        results_csv.remove(redo)
    return [cell_id if pair == DEFAULT_PAIR else f"{pair}/{cell_id}" for pair, cell_id in redo]


def _lost_error(pair: PairState, ctx: CellContext, cell: Cell, lost: str, result: CellOutcome) -> HostError:
    """What the user reads about a host lost during a cell: the host, our process groups that may
    still run there, and what to do, once. The cell's own error (the commands, each failed kill)
    goes to run.log and cell.json."""
    log.warning("%s no longer reachable during %s: %s", lost, cell.cell_id, result.error)
    state = pair.run
    one_pair = len(state.inventory.pairs) == 1
    where = f"pair {pair.name}: " if one_pair and pair.name != DEFAULT_PAIR else ""
    roles = {role for role, host in ctx.hosts.items() if host.name == lost}
    groups = sorted({str(s.pgid) for s in (ctx.record.read() if ctx.record else [])
                     if s.cell == cell.cell_id and s.role in roles})
    still = f"; our process group {', '.join(groups)} may still run there (--resume ends it)" if groups else ""
    # One pair: this is the run's error and says what to do; of several, the run's PairsFailed
    # says it once for every pair that failed.
    then = f"\nonce the host is back: orchestrate run --resume {state.run_dir}" if one_pair else ""
    return HostError(lost, f"{where}no longer reachable during {cell.cell_id}{still}{then}")


def _lost_host(ctx: CellContext) -> str | None:
    """After a failed cell, a host that no longer answers ends the run instead of failing every
    remaining cell the same way."""
    for host in ctx.hosts.values():
        try:
            host.run("true", ctx.experiment.timeouts.connect)
        except HostError:
            return host.name
    return None


def _fresh_cell_dir(parent: Path, cell_id: str) -> Path:
    """A cell folder that holds only this attempt; an interrupted earlier attempt is kept aside."""
    path = parent / cell_id
    if path.exists():
        path.rename(layout.aside_dir(parent, cell_id, layout.INTERRUPTED))
    path.mkdir(parents=True)
    return path
