"""The run's cell loop with a fake host (no SSH): exit meanings, one status per cell in cell.json
and results.csv, a lost host, resume skipping done cells, and the format versions of plan.json
and results.csv. The runner's own gates, unpacking and fetching: tests/test_cells.py."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from orchestrator.rows import cellrow, results
from orchestrator.run import cell as cells, runner
from orchestrator.run.pairs import PairOutcome
from orchestrator.run.progress import NoProgress
from orchestrator.rows.results import FORMAT_VERSION, read_results
from orchestrator.experiment.config import Experiment
from orchestrator.remote.deploy import Agent
from orchestrator.errors import ExitStatus, FormatVersionError, HostError
from orchestrator.remote.hosts import CommandResult
from orchestrator.experiment.plan import FORMAT_VERSION as PLAN_VERSION, Cell, Plan, load_plan

from ..conftest import ROOT
from ..fakes import FakeGroup
from .test_cell import tar_of

CELLS = ROOT / "tests" / "fixtures" / "cells"
RUNS = ROOT / "tests" / "fixtures" / "runs"
ONE_COPY = CELLS / "stream-one_copy-65536B-2t-r1"  # the server sends, 2 connections, 2.0 s window


def _experiment(**overrides) -> Experiment:
    """The recorded one_copy cell's settings (its window is 2.0 s, its intervals 0.5 s)."""
    data = {"name": "fake", "matrix": {"mode": ["one_copy"], "message_size": [65536], "threads": [2]},
            "duration": 2.0, "warmup": 0.5, "interval": 0.5, "order": "listed", "perf": {"enabled": False},
            **overrides}
    return Experiment.model_validate(data)


def _returned(files: dict[str, bytes]) -> bytes:
    """A cell command's output as the real one sends it: the agent's, the marker, the tar."""
    return b"agent output\n\n" + cells.FILES_MARKER.encode() + b"\n" + tar_of(files)


class FakeProcess(FakeGroup):
    def __init__(self, host: "FakeHost", command: str) -> None:
        self.host, self.command, self.lines, self.killed = host, command, [], False

    def send_line(self, line: str) -> None:
        self.lines.append(line)

    def read_line(self, startswith: str, timeout: float) -> str | None:
        return "READY" if self.host.ready else None

    def finish(self, timeout: float) -> tuple[int | None, bytes]:
        code = self.host.exit_code
        return code, _returned(self.host.files) if self.host.sends_files else b""



class FakeHost:
    """One role's host: every command it starts ends with `exit_code` and sends `files` back."""

    def __init__(self, role: str, files: dict[str, bytes], exit_code: int = 0) -> None:
        self.role, self.files, self.exit_code = role, files, exit_code
        self.shell_output: dict[str, bytes] = {}
        self.shell_startup = 0.0
        self.ready, self.sends_files, self.reachable = True, True, True
        self.started: list[FakeProcess] = []
        self.fetched: list[str] = []
        self.spec = SimpleNamespace(workdir="/work/fake", data_address="127.0.0.1", perf_access="direct",
                                    label=f"fake-{role}")

    @property
    def name(self) -> str:
        return self.spec.label

    def start(self, command: str) -> FakeProcess:
        process = FakeProcess(self, command)
        self.started.append(process)
        return process

    def run(self, command: str, timeout: float, stdin: bytes | None = None) -> CommandResult:
        if not self.reachable:
            raise HostError(self.name, "connection lost")
        return CommandResult(command, 0, "", "")

    def fetch_dir(self, remote: str, local: Path, timeout: float) -> None:
        self.fetched.append(remote)

    def close(self) -> None:
        pass


def _role_files(folder: Path, role: str) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.name.startswith(f"{role}.")}


def _hosts(folder: Path = ONE_COPY, **exit_codes: int) -> dict[str, FakeHost]:
    return {role: FakeHost(role, _role_files(folder, role), exit_codes.get(role, 0)) for role in cells.ROLES}


def _context(hosts: dict[str, FakeHost], experiment: Experiment, run_id: str = "20261127T040000Z-fake-abcd"):
    agents = {role: Agent("hash", "/work/fake/agent") for role in cells.ROLES}
    return cells.CellContext(run_id, experiment, hosts, agents, {})  # type: ignore[arg-type]


def runner_finish(ran, ctx):
    return runner.finish_cell(ran, cellrow.RowSettings.of(ctx.run_id, ctx.experiment))


def _cell(repetition: int = 1) -> Cell:
    return Cell(workload="stream", mode="one_copy", message_size=65536, threads=2, fields=8, sender="server",
                nodelay=True, sndbuf=0, rcvbuf=0, receive="copy", uring_buffers="plain", repetition=repetition, varied=("mode",))


def _state(tmp_path: Path, experiment: Experiment, cells_: tuple[Cell, ...]) -> runner.RunState:
    run_dir = tmp_path / "20261127T040000Z-fake-abcd"
    run_dir.mkdir(exist_ok=True)
    return runner.RunState(run_dir, experiment, None, Plan(seed=1, cells=cells_))  # type: ignore[arg-type]


# ---------------------------------------------------------------------------- exit meanings


@pytest.mark.parametrize("code, meaning", [
    (0, None),
    (1, "client agent exited with status 1"),
    (2, "client agent exited with status 2 (bad arguments)"),
    (3, "client agent exited with status 3 (a system failure: out of memory, or a socket or thread refused)"),
    (137, "client agent was killed by signal 9"),  # as a shell reports a SIGKILLed child
    (-15, "client agent was killed by signal 15"),  # as SSH reports a signal by name
    (-1, "client agent was killed by a signal"),  # SSH said a signal, not which
    (None, "client agent did not finish within 32.5s"),
])
def test_exit_meanings(code, meaning):
    assert cells.exit_problem("client", code, 32.5) == meaning


def test_a_failed_exit_fails_the_cell_with_the_agents_own_words(tmp_path):
    hosts = _hosts(client=1)
    hosts["client"].files = {"client.stderr": b"connect: Connection refused\n\n"}
    ctx = _context(hosts, _experiment())
    ran = cells.CellRunner(ctx).run(_cell(), tmp_path / "cell")
    assert ran.error == "client agent exited with status 1" and ran.exit_codes == {"client": 1, "server": 0}
    assert hosts["server"].started[0].killed  # the other side was ended at once, not waited out
    result, row = runner.finish_cell(ran, cellrow.RowSettings.of(ctx.run_id, ctx.experiment))
    assert row.status == "failed" and result.status == "failed"
    assert row.error == ("client agent exited with status 1 (client: connect: Connection refused); "
                         "no client agent output")
    assert json.loads((tmp_path / "cell" / "cell.json").read_text())["error"] == row.error


def test_a_failure_quotes_the_error_of_the_agents_own_document(tmp_path):
    hosts = _hosts(client=1)
    hosts["client"].files = {"client.json": (ROOT / "tests" / "fixtures" / "agent" / "error_client_receive.json").read_bytes(),
                             "client.stderr": b"not this line\n"}
    ctx = _context(hosts, _experiment())
    _, row = runner_finish(cells.CellRunner(ctx).run(_cell(), tmp_path / "cell"), ctx)
    assert row.error.startswith("client agent exited with status 1 (client: connection 0: the stream ended "
                                "part-way through a message (1536 of 4096 bytes))")


# ---------------------------------------------------------------------------- one status


def _csv_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def _run_cells(state, ctx, pair: str = "default"):
    """The run loop of one pair, over the run's shared results.csv and intervals.csv."""
    outcome = PairOutcome(pair)
    runner._run_cells(runner.PairState(state, pair), ctx, NoProgress(),
                      runner._SharedFiles(state.run_dir, NoProgress()), outcome)
    return outcome


def _one_cell_run(tmp_path: Path, hosts: dict[str, FakeHost], experiment: Experiment) -> tuple[dict, dict]:
    state = _state(tmp_path, experiment, (_cell(),))
    outcome = _run_cells(state, _context(hosts, experiment, state.run_id))
    (result,) = outcome.finished
    record = json.loads((result.local_dir / "cell.json").read_text())
    (row,) = _csv_rows(state.run_dir / "results.csv")
    assert (result.status, result.error) == (record["status"], record["error"])
    return record, row


def test_a_cell_that_ran_well_is_ok_everywhere(tmp_path):
    record, row = _one_cell_run(tmp_path, _hosts(), _experiment())
    assert record["status"] == row["status"] == "ok" and record["error"] is None and row["error"] == ""
    assert record["exit_codes"] == {"client": 0, "server": 0} and "--mode one_copy" in record["commands"]["client"]


def test_a_degraded_row_says_so_in_cell_json_too(tmp_path):
    # The agents ended well, but their 2 s window is not the 5 s the experiment asked for.
    record, row = _one_cell_run(tmp_path, _hosts(), _experiment(duration=5.0))
    assert record["status"] == row["status"] == "degraded"
    assert record["error"] == row["error"] and "measured window 2.001s, expected 5s" in row["error"]


def test_a_byte_mismatch_fails_the_row_and_cell_json(tmp_path):
    folder = tmp_path / "recorded"
    shutil.copytree(ONE_COPY, folder)
    client = json.loads((folder / "client.json").read_text())
    client["total"]["bytes_received"] -= 1  # one byte lost, the document still adds up
    client["threads_detail"][0]["total"]["bytes_received"] -= 1
    (folder / "client.json").write_text(json.dumps(client))
    record, row = _one_cell_run(tmp_path, _hosts(folder), _experiment())
    assert record["status"] == row["status"] == "failed"
    assert record["error"] == row["error"] == "server sent 13738180608 bytes but client received 13738180607"


ONE_PAIR = {"server": {"host": "local"}, "client": {"host": "local"}}
TWO_PAIRS = {"pairs": {"a": ONE_PAIR, "b": ONE_PAIR}, "concurrent": False}


@pytest.mark.parametrize("inventory", [ONE_PAIR, TWO_PAIRS])
def test_a_lost_host_writes_no_row_and_says_how_to_resume(tmp_path, caplog, inventory):
    """The user reads the host, our process group that may still run there and what to do, once
    (of several pairs, the run's own error says --resume for them all); the cell's own error,
    with the commands, is run.log's."""
    from orchestrator.experiment.inventory import Inventory
    from orchestrator.run.leftovers import GroupRecord

    hosts = _hosts(client=255)
    hosts["client"].reachable = False
    experiment = _experiment()
    state = _state(tmp_path, experiment, (_cell(), _cell(2)))
    state.inventory = Inventory.model_validate(inventory)
    pair = next(iter(state.inventory.pairs))
    ctx = _context(hosts, experiment, state.run_id)
    ctx = cells.CellContext(ctx.run_id, ctx.experiment, ctx.hosts, ctx.agents, {}, GroupRecord(tmp_path))
    with caplog.at_level("WARNING", logger="orchestrator.run.runner"), pytest.raises(HostError) as lost:
        _run_cells(state, ctx, pair)
    said = f"fake-client: no longer reachable during {_cell().cell_id}; our process group 4242 may still run there " \
           "(--resume ends it)"
    if len(state.inventory.pairs) == 1:
        said += f"\nonce the host is back: orchestrate run --resume {state.run_dir}"
    assert str(lost.value) == said
    assert any("fake-client no longer reachable during" in r.getMessage() and "client agent" in r.getMessage()
               for r in caplog.records)
    assert not (state.run_dir / "results.csv").exists()
    from orchestrator.rows import layout

    assert json.loads((layout.cells_dir(state.run_dir, pair) / _cell().cell_id / "cell.json").read_text())["status"] == "failed"


# ---------------------------------------------------------------------------- resume


def test_resume_runs_only_the_cells_results_csv_lacks(tmp_path):
    experiment = _experiment(repetitions=3)
    first = _hosts()
    state = _state(tmp_path, experiment, (_cell(1),))
    _run_cells(state, _context(first, experiment, state.run_id))
    # The cell folder of an attempt cut short before its row: kept aside, the cell run again.
    (state.run_dir / "cells" / _cell(3).cell_id).mkdir()
    again = _hosts()
    state = _state(tmp_path, experiment, (_cell(1), _cell(2), _cell(3)))
    outcome = _run_cells(state, _context(again, experiment, state.run_id))
    assert outcome.skipped == 1 and [o.cell.repetition for o in outcome.finished] == [2, 3]
    assert len(again["server"].started) == 2  # one command per cell run, none for the done one
    assert [r["cell_id"] for r in _csv_rows(state.run_dir / "results.csv")] == [_cell(n).cell_id for n in (1, 2, 3)]
    assert (state.run_dir / "cells" / f"{_cell(3).cell_id}.interrupted-1").is_dir()
    assert results.row_counts(state.run_dir / "results.csv") == {"ok": 3}


# ---------------------------------------------------------------------------- format versions


def _resumable(tmp_path: Path) -> Path:
    experiment = _experiment()
    state = _state(tmp_path, experiment, (_cell(),))
    _run_cells(state, _context(_hosts(), experiment, state.run_id))
    (state.run_dir / "plan.json").write_text(json.dumps(state.plan.to_json()))
    shutil.copy(RUNS / "20261127T014622Z-stall-232a" / "config.yml", state.run_dir / "config.yml")
    (state.run_dir / "inventory.yml").write_text("server: {host: local}\nclient: {host: local}\n")
    return state.run_dir


def test_plan_and_results_carry_their_format_version(tmp_path):
    run_dir = _resumable(tmp_path)
    assert json.loads((run_dir / "plan.json").read_text())["format_version"] == PLAN_VERSION
    header, *rows = list(csv.reader((run_dir / "results.csv").open(newline="")))
    assert header[-1] == "format_version" and rows and all(r[-1] == str(FORMAT_VERSION) for r in rows)
    assert runner.reopen_run(run_dir).plan.cells == (_cell(),)


def _set_results_version(path: Path, version: str) -> None:
    rows = _csv_rows(path)
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(dict.fromkeys([*rows[0], "format_version"])))
        writer.writeheader()
        writer.writerows([{**r, "format_version": version} for r in rows])


@pytest.mark.parametrize("version, says", [(2, "a newer"), (0, "an older")])
def test_resume_refuses_a_plan_of_another_version(tmp_path, version, says):
    run_dir = _resumable(tmp_path)
    plan = json.loads((run_dir / "plan.json").read_text())
    (run_dir / "plan.json").write_text(json.dumps({**plan, "format_version": version}))
    with pytest.raises(FormatVersionError, match=f"plan.json: format version {version}, written by {says}") as caught:
        runner.reopen_run(run_dir)
    assert caught.value.exit_code == ExitStatus.BAD_ARGUMENT
    with pytest.raises(FormatVersionError):
        load_plan(run_dir / "plan.json")


@pytest.mark.parametrize("version, says", [("2", "written by a newer"), ("x", "which no orchestrate writes")])
def test_resume_and_the_reader_refuse_results_of_another_version(tmp_path, version, says):
    run_dir = _resumable(tmp_path)
    _set_results_version(run_dir / "results.csv", version)
    before = (run_dir / "results.csv").read_bytes()
    with pytest.raises(FormatVersionError, match=says):
        runner.reopen_run(run_dir)
    with pytest.raises(FormatVersionError, match=says):
        read_results(run_dir / "results.csv")
    assert (run_dir / "results.csv").read_bytes() == before  # refused before anything was touched


def test_report_refuses_results_of_another_version_before_touching_them(tmp_path):
    from orchestrator.report import write as report

    run_dir = Path(shutil.copytree(RUNS / "20261125T231027Z-variants-85df", tmp_path / "newer"))
    _set_results_version(run_dir / "results.csv", "3")
    with open(run_dir / "results.csv", "a") as fh:
        fh.write("torn,row")  # a torn tail report would otherwise set aside
    before = sorted(p.name for p in run_dir.iterdir()), (run_dir / "results.csv").read_bytes()
    with pytest.raises(FormatVersionError, match="format version 3, written by a newer"):
        report.write_report(run_dir)
    assert (sorted(p.name for p in run_dir.iterdir()), (run_dir / "results.csv").read_bytes()) == before


def test_files_written_before_versions_read_as_version_1(tmp_path):
    run_dir = _resumable(tmp_path)
    plan = json.loads((run_dir / "plan.json").read_text())
    del plan["format_version"]
    (run_dir / "plan.json").write_text(json.dumps(plan))
    _set_results_version(run_dir / "results.csv", "")
    assert runner.reopen_run(run_dir).plan.cells == (_cell(),)
    assert len(read_results(run_dir / "results.csv")) == 1


def _orchestrate(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "orchestrator.cli", *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)


def test_the_cli_refuses_another_version_with_exit_2_and_no_traceback(tmp_path):
    run_dir = _resumable(tmp_path)
    plan = json.loads((run_dir / "plan.json").read_text())
    (run_dir / "plan.json").write_text(json.dumps({**plan, "format_version": 9}))
    done = _orchestrate("run", "--resume", str(run_dir))
    assert done.returncode == ExitStatus.BAD_ARGUMENT, done.stderr
    assert "format version 9, written by a newer orchestrate" in done.stderr and "Traceback" not in done.stderr

    newer = Path(shutil.copytree(RUNS / "20261125T231027Z-variants-85df", tmp_path / "newer"))
    _set_results_version(newer / "results.csv", "2")
    done = _orchestrate("compare", str(RUNS / "20261125T231027Z-variants-85df"), str(newer), "--out", str(tmp_path / "c"))
    assert done.returncode == ExitStatus.BAD_ARGUMENT, done.stderr
    assert "results.csv: format version 2, written by a newer" in " ".join(done.stderr.split())
    assert "Traceback" not in done.stderr and not (tmp_path / "c").exists()


# ---------------------------------------------------------------- several pairs

PAIRS_INVENTORY = {
    "pairs": {
        "gen9": {"server": {"host": "198.18.9.10", "data_address": "198.18.9.1"},
                 "client": {"host": "198.18.9.20", "data_address": "198.18.9.2"}},
        "gen8": {"server": {"host": "198.18.8.10", "data_address": "198.18.8.1"},
                 "client": {"host": "198.18.8.20", "data_address": "198.18.8.2"}},
    },
}


def test_pairs_are_selected_by_name_in_the_inventorys_order_and_an_unknown_one_names_them_all():
    from orchestrator.errors import ConfigError
    from orchestrator.experiment.inventory import Inventory

    inventory = Inventory.model_validate(PAIRS_INVENTORY)
    assert list(runner.select_pairs(inventory, ("gen8", "gen9")).pairs) == ["gen9", "gen8"]
    assert list(runner.select_pairs(inventory, ("gen8",)).pairs) == ["gen8"]
    assert runner.select_pairs(inventory, None) is inventory
    with pytest.raises(ConfigError, match="no pair named gen7; the inventory has gen9, gen8") as caught:
        runner.select_pairs(inventory, ("gen9", "gen7"))
    assert caught.value.exit_code == ExitStatus.BAD_ARGUMENT


def test_the_run_folder_keeps_every_pair_and_one_pair_as_before(tmp_path):
    from orchestrator.experiment.inventory import Inventory

    several = runner.create_run(_experiment(seed=1), Inventory.model_validate(PAIRS_INVENTORY), tmp_path / "a")
    again = runner.reopen_run(several.run_dir)
    assert list(again.inventory.pairs) == ["gen9", "gen8"]
    assert again.inventory.pair("gen8").client.data_address == "198.18.8.2"
    one = Inventory.model_validate({"server": PAIRS_INVENTORY["pairs"]["gen9"]["server"],
                                    "client": PAIRS_INVENTORY["pairs"]["gen9"]["client"]})
    single = runner.create_run(_experiment(seed=1), one, tmp_path / "b")
    import yaml
    assert set(yaml.safe_load((single.run_dir / "inventory.yml").read_text())) == {"server", "client"}


def test_finished_cells_are_told_apart_by_pair_and_an_old_file_is_the_default_pair(tmp_path):
    path = tmp_path / "results.csv"
    path.write_text("run_id,cell_id,workload,mode,message_size,threads,repetition,status\n"
                    "r,c1,stream,one_copy,1024,1,1,ok\n")
    assert results.finished_cells(path) == {("default", "c1")}
    path.write_text("run_id,cell_id,pair,workload,mode,message_size,threads,repetition,status\n"
                    "r,c1,gen9,stream,one_copy,1024,1,1,ok\nr,c1,gen8,stream,one_copy,1024,1,1,failed\n")
    assert results.finished_cells(path) == {("gen9", "c1"), ("gen8", "c1")}


def test_retry_failed_with_pairs_selected_moves_aside_only_their_failed_cells(tmp_path):
    """--resume --pairs gen8 --retry-failed runs gen8 again: gen9's failed row must stay, or
    gen9 would be left with neither its row nor a run to replace it."""
    from orchestrator.rows import layout, results
    from orchestrator.experiment.inventory import Inventory

    state = runner.create_run(_experiment(seed=1), Inventory.model_validate(PAIRS_INVENTORY), tmp_path / "r")
    cell_id = state.plan.cells[0].cell_id
    for pair in ("gen9", "gen8"):
        layout.cell_dir(state.run_dir, cell_id, pair).mkdir(parents=True)
    (state.run_dir / "results.csv").write_text(
        "run_id,cell_id,pair,workload,mode,message_size,threads,repetition,status\n"
        f"r,{cell_id},gen9,stream,one_copy,65536,2,1,failed\nr,{cell_id},gen8,stream,one_copy,65536,2,1,failed\n")
    state.inventory = runner.select_pairs(state.inventory, ("gen8",))
    assert runner.set_aside_unfinished(state) == [f"gen8/{cell_id}"]
    assert results.read_results(state.run_dir / "results.csv")["pair"].tolist() == ["gen9"]
    assert layout.cell_dir(state.run_dir, cell_id, "gen9").is_dir()
    assert not layout.cell_dir(state.run_dir, cell_id, "gen8").exists()
    assert (layout.cells_dir(state.run_dir, "gen8") / f"{cell_id}.failed-1").is_dir()


def test_the_run_folder_names_are_layouts_and_readme_lists_each(tmp_path):
    """Every file and folder the code builds a path to is named in layout.py once; README's
    "Results" listing shows each, and a cell's earlier attempts count up from 1."""
    from orchestrator.rows import layout

    listing = (ROOT / "README.md").read_text().split("### Results", 1)[1].split("```")[1]
    names = [layout.CONFIG, layout.INVENTORY, layout.PLAN, layout.RESULTS, layout.RUN_LOG, layout.STATUS, layout.PROCESSES,
             layout.PREFLIGHT + "/", layout.INTERVALS, layout.RUN_LOCK]
    assert [n for n in names if n not in listing] == []
    state = runner.create_run(_experiment(seed=1), _one_pair_inventory(), tmp_path)
    # The lock is taken before the folder's first file is written, and held by the session that made it.
    assert sorted(p.name for p in state.run_dir.iterdir()) == sorted([layout.CONFIG, layout.INVENTORY, layout.PLAN,
                                                                      layout.RUN_LOCK])
    assert state.lock is not None and state.lock.held
    state.lock.release()
    cells_dir = layout.cells_dir(state.run_dir)
    assert layout.aside_dir(cells_dir, "c1", layout.FAILED) == cells_dir / "c1.failed-1"
    (cells_dir / "c1.failed-1").mkdir(parents=True)
    assert layout.aside_dir(cells_dir, "c1", layout.FAILED) == cells_dir / "c1.failed-2"
    assert layout.aside_dir(cells_dir, "c1", layout.INTERRUPTED) == cells_dir / "c1.interrupted-1"
    assert layout.preflight_dir(state.run_dir, "gen9") == state.run_dir / "pairs" / "gen9" / "preflight"


def _one_pair_inventory():
    from orchestrator.experiment.inventory import Inventory

    return Inventory.model_validate({"server": {"host": "local"}, "client": {"host": "local"}})


def test_serial_is_said_once_by_the_inventory():
    """select_pairs turns --serial into the inventory's `concurrent: false` (kept with the run for
    --resume); execute reads only that, with no second `serial` to disagree with it."""
    import inspect

    from orchestrator.experiment.inventory import Inventory

    assert "serial" not in inspect.signature(runner.execute).parameters
    pair = {"server": {"host": "local"}, "client": {"host": "local"}}
    both = Inventory.model_validate({"pairs": {"a": pair, "b": pair}, "concurrent": False})
    assert runner.select_pairs(both, None).concurrent is False
    apart = {"server": {"host": "198.18.1.1"}, "client": {"host": "198.18.1.2"}}
    other = {"server": {"host": "198.18.2.1"}, "client": {"host": "198.18.2.2"}}
    free = Inventory.model_validate({"pairs": {"a": apart, "b": other}})
    assert runner.select_pairs(free, None).concurrent is True
    assert runner.select_pairs(free, None, serial=True).concurrent is False


# ---------------------------------------------------------------- the run folder's lock

def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_second_holder_of_a_run_folder_is_refused_at_once_and_writes_nothing(tmp_path):
    from orchestrator.rows import layout

    state = runner.create_run(_experiment(seed=1), _one_pair_inventory(), tmp_path)
    try:
        (state.run_dir / layout.RESULTS).write_text("run_id,cell_id,workload,mode,message_size,threads,repetition,status\n"
                                                      "r,c1,stream,one_copy,1024,1,1,failed\n")
        before = _files(state.run_dir)
        again = runner.reopen_run(state.run_dir)
        with pytest.raises(runner.RunBusy, match=rf"in use by another orchestrate \(pid {os.getpid()} on ") as caught:
            runner.take_lock(again)
        assert caught.value.exit_code == ExitStatus.BAD_ARGUMENT
        # --retry-failed and execute take it too, when their caller did not: refused before any change.
        with pytest.raises(runner.RunBusy):
            runner.set_aside_unfinished(again)
        with pytest.raises(runner.RunBusy):
            runner.execute(again, NoProgress())
        assert _files(state.run_dir) == before and again.lock is None
    finally:
        state.lock.release()
    assert runner.take_lock(again).lock.held  # let go: the next one takes it
    again.lock.release()


def test_the_lock_goes_with_its_process_however_it_ends(tmp_path):
    """flock on an open descriptor: the kernel lets it go when the holder dies (SIGKILL here), so
    no stale lock is ever left to clear by hand."""
    from orchestrator.rows import layout

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys; from orchestrator.run.runner import RunLock; lock = RunLock(sys.argv[1]).take(); "
                               "print('held', flush=True); sys.stdin.read()", str(run_dir)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert holder.stdout.readline() == "held\n"
        with pytest.raises(runner.RunBusy, match=f"pid {holder.pid} on"):
            runner.RunLock(run_dir).take()
    finally:
        holder.kill()
        holder.wait()
    lock = runner.RunLock(run_dir).take()
    assert f"pid={os.getpid()} " in (run_dir / layout.RUN_LOCK).read_text()
    lock.release()


def test_a_lock_file_that_is_a_symlink_is_refused(tmp_path):
    from orchestrator.errors import ConfigError
    from orchestrator.rows import layout

    target = tmp_path / "elsewhere"
    target.write_text("keep")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / layout.RUN_LOCK).symlink_to(target)
    with pytest.raises(ConfigError, match="is a symlink"):
        runner.RunLock(tmp_path / "run").take()
    assert target.read_text() == "keep"
