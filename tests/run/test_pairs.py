"""How a run's pairs run beside each other (orchestrator/run/pairs.py), with fake pairs (no host):
a pair that fails fails alone, a full disk or a signal stops every pair and goes up, a pair
that does not end when stopped cannot hang the run, what the exit status is when pairs fail,
and that run.log names the pair of each line. The real thing: tests/test_run_pairs_e2e.py."""

from __future__ import annotations

import _thread
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
import contextvars

import pytest

from orchestrator.run import cell as cells, interrupts, pairs as pairrun, runner
from orchestrator.errors import ConfigError, DiskError, ExitStatus, HostError, PairsFailed, PreflightError
from orchestrator.run.pairs import PairOutcome
from orchestrator.rows.results import ResultsError

CELLS = ["c1", "c2"]


class Told:
    """The run's progress: what each pair was told."""

    def __init__(self) -> None:
        self.failed: dict[str, str] = {}

    def for_pair(self, name: str) -> "Told.Pair":
        return Told.Pair(self, name)

    class Pair:
        def __init__(self, run: "Told", name: str) -> None:
            self.run, self.name = run, name

        def pair_failed(self, error: str) -> None:
            self.run.failed[self.name] = error


class Pairs:
    """Fake pairs: each name does what `plan` says (return, raise, or wait to be stopped), and
    what happened to it is kept: started, stopped (its clean-up ran), ended."""

    def __init__(self, together: bool = True, **plan) -> None:
        self.plan, self.together = plan, together
        self.started: set[str] = set()
        self.stopped: set[str] = set()
        self.release = threading.Event()  # lets a stubborn pair go at the end of a test
        self.all_started = threading.Event()

    def __call__(self, outcome: PairOutcome, progress) -> None:
        name = outcome.pair
        self.started.add(name)
        if self.started >= set(self.plan):
            self.all_started.set()
        what = self.plan[name]
        if what == "ok":
            return
        if isinstance(what, BaseException):
            if self.together:
                self.all_started.wait(5)  # raised once every pair runs, so the others are there to stop
            raise what
        try:
            while not self.release.wait(0.02):  # "wait": runs until stopped
                pass
        except interrupts.PairStopped:
            self.stopped.add(name)
            if what == "stubborn":  # a clean-up that never returns (a host that does not answer)
                while not self.release.wait(0.02):
                    pass
            raise


def run(pairs: Pairs, progress=None, serial=False, done=frozenset(), stop_within=10.0):
    return pairrun.run_pairs(list(pairs.plan), pairs, progress or Told(), CELLS, set(done), serial=serial,
                             stop_within=stop_within)


def test_a_pair_that_fails_fails_alone_and_is_told_so():
    told, pairs = Told(), Pairs(gen9="ok", gen8=HostError("b8", "connection lost"), gen7="ok")
    outcomes = run(pairs, told)
    assert list(outcomes) == ["gen9", "gen8", "gen7"]
    assert {n: o.status for n, o in outcomes.items()} == {"gen9": "ok", "gen8": "failed", "gen7": "ok"}
    assert isinstance(outcomes["gen8"].error, HostError) and outcomes["gen8"].planned == 2
    assert told.failed == {"gen8": "b8: connection lost"}


def test_a_pair_that_loses_its_host_keeps_the_cells_it_finished():
    """Their rows are in results.csv: the outcome counts them (run, failures, the done line)."""
    def run_pair(outcome, progress):
        if outcome.pair == "gen8":
            outcome.finished += [cells.CellOutcome(None, None, None, 1.0, status="ok")] * 2  # type: ignore[arg-type]
            raise HostError("b8", "no longer reachable")

    for serial in (False, True):
        outcomes = pairrun.run_pairs(["gen9", "gen8"], run_pair, Told(), CELLS, set(), serial=serial, stop_within=1)
        lost = outcomes["gen8"]
        assert (lost.status, len(lost.finished), lost.planned) == ("failed", 2, 2), serial
        assert isinstance(lost.error, HostError)


def test_a_full_disk_in_one_pair_stops_every_pair_and_goes_up():
    pairs = Pairs(gen9="wait", gen8=DiskError("results.csv: no space left on device"), gen7="wait")
    started = time.monotonic()
    with pytest.raises(DiskError, match="no space left"):
        run(pairs)
    assert time.monotonic() - started < 5  # the others were stopped, not waited for
    assert pairs.stopped == {"gen9", "gen7"}  # each one's clean-up ran (its agents ended)


def test_a_signal_in_the_main_thread_stops_every_pair_and_goes_up(caplog):
    pairs = Pairs(gen9="wait", gen8="wait")

    def signal_once_running() -> None:
        pairs.all_started.wait(5)
        time.sleep(0.1)
        _thread.interrupt_main()  # as a SIGINT lands: a KeyboardInterrupt in the main thread

    threading.Thread(target=signal_once_running, daemon=True).start()
    with caplog.at_level(logging.INFO, logger="orchestrator.run.pairs"), pytest.raises(KeyboardInterrupt):
        run(pairs)
    assert pairs.stopped == {"gen9", "gen8"}
    # run.log: one line per pair stopped by a plain Ctrl-C, no traceback.
    stopped = [r for r in caplog.records if r.getMessage().startswith("pair gen")]
    assert sorted(r.getMessage().split(":")[0] for r in stopped) == ["pair gen8 stopped", "pair gen9 stopped"]
    assert not any(r.exc_info for r in stopped)


def test_a_bug_in_a_pair_has_its_traceback_in_run_log(caplog):
    pairs = Pairs(gen9="wait", gen8=ZeroDivisionError("a bug"))
    with caplog.at_level(logging.INFO, logger="orchestrator.run.pairs"), pytest.raises(ZeroDivisionError):
        run(pairs)
    (bug,) = [r for r in caplog.records if r.getMessage().startswith("pair gen8 stopped")]
    assert bug.exc_info and bug.exc_info[0] is ZeroDivisionError


def test_a_pair_that_does_not_end_when_stopped_does_not_hang_the_run(caplog):
    pairs = Pairs(gen9="wait", gen8="stubborn")

    def signal_once_running() -> None:
        pairs.all_started.wait(5)
        time.sleep(0.1)
        _thread.interrupt_main()

    threading.Thread(target=signal_once_running, daemon=True).start()
    started = time.monotonic()
    try:
        with caplog.at_level(logging.INFO, logger="orchestrator.run.pairs"), pytest.raises(KeyboardInterrupt):
            run(pairs, stop_within=1.0)
        waited = time.monotonic() - started
    finally:
        pairs.release.set()
    assert 1.0 <= waited < 5, waited
    assert pairs.stopped == {"gen9", "gen8"}
    stuck = [r.getMessage() for r in caplog.records if "did not end" in r.getMessage()]
    assert stuck and stuck[0].startswith("pairs gen8 did not end within 1 s"), stuck


def test_a_second_signal_while_the_pairs_stop_goes_up_at_once():
    pairs = Pairs(gen9="stubborn", gen8="wait")

    def signal_twice() -> None:
        pairs.all_started.wait(5)
        time.sleep(0.1)
        _thread.interrupt_main()
        time.sleep(0.5)  # inside the bounded wait for gen9, 60 s long
        _thread.interrupt_main()

    threading.Thread(target=signal_twice, daemon=True).start()
    started = time.monotonic()
    try:
        with pytest.raises(KeyboardInterrupt):
            run(pairs, stop_within=60.0)
        waited = time.monotonic() - started
    finally:
        pairs.release.set()
    assert waited < 5, waited


def test_serial_pairs_run_in_order_and_a_finished_pair_is_not_contacted():
    order: list[str] = []

    def run_pair(outcome, progress):
        order.append(outcome.pair)
        assert threading.current_thread() is threading.main_thread()

    done = {("gen9", "c1"), ("gen9", "c2"), ("gen8", "c1")}
    outcomes = pairrun.run_pairs(["gen9", "gen8", "gen7"], run_pair, Told(), CELLS, done, serial=True, stop_within=1)
    assert order == ["gen8", "gen7"]
    assert outcomes["gen9"].skipped == 2 and outcomes["gen9"].status == "ok"


@pytest.mark.parametrize("errors, status", [
    ([HostError("a", "connection lost"), HostError("b", "connection lost")], ExitStatus.HOST_FAILED),
    ([ConfigError("ssh_config entry for a: bad"), ConfigError("ssh_config entry for b: bad")], ExitStatus.BAD_ARGUMENT),
    ([ConfigError("ssh_config entry for a: bad"), HostError("b", "connection lost")], ExitStatus.BAD_ARGUMENT),
    ([PreflightError("no perf"), HostError("b", "connection lost")], ExitStatus.HOST_FAILED),
])
def test_every_pair_failing_exits_with_their_common_kind(errors, status):
    plan = {f"p{i}": e for i, e in enumerate(errors)}
    with pytest.raises(PairsFailed, match="every pair failed") as caught:
        run(Pairs(together=False, **plan), serial=True)
    assert caught.value.exit_code == status


def test_some_pairs_failing_exits_7_unless_one_is_the_users_file():
    lost = HostError("b", "connection lost")
    assert PairsFailed("m", [lost], every=False).exit_code == ExitStatus.SOME_PAIRS_FAILED == 7
    assert PairsFailed("m", [lost, ConfigError("ssh_config entry for c: bad")], every=False).exit_code == 2
    # Every pair failed the same way: that way's own status (a bad results.csv: 2), not always 3.
    unreadable = [ResultsError("results.csv: cannot read results"), ResultsError("results.csv: cannot read results")]
    assert PairsFailed("m", unreadable, every=True).exit_code == ExitStatus.BAD_ARGUMENT


def test_run_log_names_the_pair_of_each_line_pool_threads_included(tmp_path):
    def run_pair(outcome, progress):
        name = outcome.pair
        logging.getLogger("orchestrator.remote").info("in %s's own thread", name)
        with ThreadPoolExecutor(max_workers=1) as pool:
            pool.submit(contextvars.copy_context().run, logging.getLogger("orchestrator.remote.deploy").info,
                        "from a pool thread of %s", name).result()

    handler = runner._attach_log(tmp_path)
    try:
        logging.getLogger("orchestrator.run.runner").info("the run's own line")
        pairrun.run_pairs(["gen9", "gen8"], run_pair, Told(), CELLS, set(), serial=False, stop_within=1)
        pairrun.run_pairs(["solo"], run_pair, Told(), CELLS, set(), serial=False, stop_within=1)
    finally:
        runner._detach_log(handler)
    lines = [line.split(" ", 2)[2] for line in (tmp_path / "run.log").read_text().splitlines()]
    for name in ("gen9", "gen8", "solo"):
        assert f"{name} orchestrator.remote in {name}'s own thread" in lines
        assert f"{name} orchestrator.remote.deploy from a pool thread of {name}" in lines
    assert "- orchestrator.run.runner the run's own line" in lines


def test_paramikos_own_errors_go_to_run_log_not_the_terminal(tmp_path, capsys):
    """A banner read from a dying sshd: paramiko logs an error with its traceback, which
    logging's last resort would print on the user's terminal."""
    handler = runner._attach_log(tmp_path)
    try:
        try:
            raise EOFError("Error reading SSH protocol banner")
        except EOFError:
            logging.getLogger("paramiko.transport").error("Exception (client): Error reading SSH protocol banner",
                                                          exc_info=True)
    finally:
        runner._detach_log(handler)
    assert "Traceback" not in capsys.readouterr().err
    logged = (tmp_path / "run.log").read_text()
    assert "paramiko.transport Exception (client): Error reading SSH protocol banner" in logged and "Traceback" in logged
    assert handler not in logging.getLogger("paramiko").handlers


@pytest.mark.parametrize("names", [("a", "a-preflight"), ("default", "preflight"), ("x", "x-preflight", "preflight")])
def test_no_pair_uses_another_pairs_remote_run_folder(tmp_path, names):
    """A pair's runs/ folder and its data-path probe's are never another pair's: pair `a`'s
    probe and a pair named `a-preflight` once shared one."""
    state = runner.RunState(tmp_path / "20261127T040000Z-x-abcd", None, None, None)  # type: ignore[arg-type]
    ids = [i for n in names for i in (runner.PairState(state, n).remote_run_id, runner.PairState(state, n).probe_run_id)]
    assert len(set(ids)) == len(ids) == 2 * len(names), ids
    assert all(i.startswith(state.run_id) for i in ids)
