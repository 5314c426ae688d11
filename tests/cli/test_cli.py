"""The command line: bad input is refused with exit status 2 before anything starts."""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import shutil
import subprocess
import time
import sys
from pathlib import Path

import pytest

from orchestrator.cli import build_parser
from orchestrator.errors import ExitStatus

from ..conftest import ROOT
from ..experiment.test_config import expected_message

BAD = sorted((ROOT / "tests" / "fixtures" / "bad").glob("*.yml"))


ORCHESTRATE = [sys.executable, "-m", "orchestrator.cli"]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "300"}


def orchestrate(*args: str, cwd: Path | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    """The real command in its own process, as a user runs it."""
    return subprocess.run([*ORCHESTRATE, *args], cwd=cwd, capture_output=True, text=True, env=ENV, timeout=timeout)


@pytest.mark.parametrize("bad", BAD, ids=[p.name for p in BAD])
def test_bad_file_exits_2_and_touches_nothing(bad, tmp_path):
    work = tmp_path / "cwd"
    work.mkdir()
    workdir = tmp_path / "hostwork"
    shutil.copy(bad, work / bad.name)
    good_inventory = work / "good-inventory.yml"
    good_inventory.write_text(f"server: {{host: local, workdir: {workdir}}}\nclient: {{host: local, workdir: {workdir}}}\n")
    if bad.name.startswith("inv-"):
        shutil.copy(ROOT / "configs" / "smoke.yml", work / "smoke.yml")
        args = ["run", "smoke.yml", "--inventory", bad.name]
    else:
        args = ["run", bad.name, "--inventory", good_inventory.name]
    before = sorted(p.name for p in work.iterdir())
    done = orchestrate(*args, cwd=work)
    assert done.returncode == 2, done.stderr
    assert bad.name in done.stderr
    assert expected_message(bad) in " ".join(done.stderr.split())
    assert "Traceback" not in done.stderr
    assert sorted(p.name for p in work.iterdir()) == before  # not even results/
    assert not workdir.exists()
    assert not Path("/tmp/pwned").exists()


def test_resume_of_a_folder_that_is_not_a_run(tmp_path):
    done = orchestrate("run", "--resume", str(tmp_path), cwd=tmp_path)
    assert done.returncode == 2
    assert "not a resumable run folder" in done.stderr


def test_run_needs_a_config_or_resume(tmp_path):
    done = orchestrate("run", cwd=tmp_path)
    assert done.returncode == 2 and "give an experiment file" in done.stderr


def test_every_command_is_wired():
    parser = build_parser()
    for argv in (["run", "c.yml"], ["check", "c.yml"], ["report", "r"], ["compare", "a", "b"], ["lab", "status"],
                 ["reproduce", "r", "--inventory", "new.yml"], ["runs"]):
        assert callable(parser.parse_args(argv).handler)


def test_summary_marks_copied_zero_copy_and_splits_varied_parameters():
    from orchestrator.cli import terminal as cli

    stdout, stderr = io.StringIO(), io.StringIO()
    cli.show_summary(cli.Terminal.over(stdout, stderr), ROOT / "tests" / "fixtures" / "runs" / "20261125T231027Z-variants-85df")
    text = stdout.getvalue()
    assert stderr.getvalue() == ""  # the table is for stdout
    assert "zero_copy*" in text and "not zero-copy" in text
    assert "sender" in text and "nodelay" in text
    assert len([line for line in text.splitlines() if "one_copy" in line]) == 4



def test_summary_of_several_pairs_names_the_pair_and_keeps_each_pairs_rows_together():
    from orchestrator.cli import terminal as cli

    stdout, stderr = io.StringIO(), io.StringIO()
    # results.csv holds the pairs' rows interleaved, as they finished; the table follows the order given.
    cli.show_summary(cli.Terminal.over(stdout, stderr), ROOT / "tests" / "fixtures" / "runs" / "pairs3",
                     pairs=["gen3", "gen1", "gen2"])
    rows = [line.split("│")[1].strip() for line in stdout.getvalue().splitlines()
            if line.startswith("│") and "gen" in line]
    assert "pair" in stdout.getvalue().splitlines()[2]
    per_pair = len(rows) // 3
    assert per_pair > 1 and rows == ["gen3"] * per_pair + ["gen1"] * per_pair + ["gen2"] * per_pair

HOSTILE = ["exp-billion-laughs.yml", "exp-not-utf8.yml", "exp-affinity-newline.yml", "exp-affinity-huge.yml",
           "inv-key-dev-zero.yml", "inv-known-hosts-dev-zero.yml", "inv-missing-key.yml", "inv-key-is-a-folder.yml",
           "inv-root-workdir.yml"]


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_fixture_is_refused_within_5s(name, tmp_path):
    bad = ROOT / "tests" / "fixtures" / "bad" / name
    if name.startswith("inv-"):
        args = ["check", str(ROOT / "configs" / "smoke.yml"), "--inventory", str(bad)]
    else:
        args = ["check", str(bad), "--inventory", str(ROOT / "inventory.yml")]
    started = time.monotonic()
    done = orchestrate(*args, cwd=tmp_path, timeout=5)  # TimeoutExpired fails the test
    assert done.returncode == 2, done.stderr
    assert str(bad) in " ".join(done.stderr.split()).replace(" ", "") or name in done.stderr
    assert "Traceback" not in done.stderr
    assert len(done.stderr) < 2000  # a bounded message, not the expanded document
    assert time.monotonic() - started < 5


def _hostile_config(kind: str, tmp_path: Path) -> Path:
    if kind == "dev-zero":
        return Path("/dev/zero")
    if kind == "folder":
        return tmp_path
    path = tmp_path / f"{kind}.yml"
    if kind == "over-1MiB":
        path.write_text("name: x\nmatrix: {mode: [one_copy]}\n# " + "x" * (1 << 20) + "\n")
    elif kind == "huge-value":  # under the size limit, but a value that must not be printed whole
        path.write_text("name: x\nmatrix: {mode: [one_copy]}\nperf: {events: ['" + "y" * 900_000 + "']}\n")
    elif kind == "huge-key":
        path.write_text("name: x\nmatrix: {mode: [one_copy]}\n" + "k" * 900_000 + ": 1\n")
    elif kind == "deep-nesting":
        path.write_text("name: x\nmatrix: {mode: [one_copy]}\nz: " + "[" * 50_000 + "]" * 50_000 + "\n")
    return path


@pytest.mark.parametrize("kind", ["dev-zero", "folder", "over-1MiB", "huge-value", "huge-key", "deep-nesting"])
def test_hostile_config_is_refused_within_5s_with_the_file_named(kind, tmp_path):
    config = _hostile_config(kind, tmp_path)
    started = time.monotonic()
    done = orchestrate("check", str(config), "--inventory", str(ROOT / "inventory.yml"), cwd=tmp_path, timeout=5)
    assert done.returncode == 2, done.stderr[:2000]
    assert str(config) in " ".join(done.stderr.split()).replace(" ", "") or str(config) in done.stderr
    assert "Traceback" not in done.stderr
    assert len(done.stderr) < 3000
    assert time.monotonic() - started < 5


RUNS = ROOT / "tests" / "fixtures" / "runs"


def test_compare_writes_its_files_and_says_where(tmp_path):
    a, b = RUNS / "20261120T101500Z-lab-hw-a1b2", RUNS / "20261124T180000Z-lab-hw2-c3d4"
    done = orchestrate("compare", str(a), str(b), "--out", str(tmp_path / "cmp"))
    assert done.returncode == 0, done.stderr
    for name in ("compare.md", "compare.csv", "compare_throughput.png", "compare_throughput.svg"):
        assert f"wrote {tmp_path / 'cmp' / name}" in done.stderr
        assert (tmp_path / "cmp" / name).stat().st_size > 0
    assert "stream-one_copy-65536B-4t" in done.stdout and "B better" in done.stdout
    # What changed comes first, the link at its head; then what moved; then the cells.
    changed, moved, cells = (done.stdout.index(t) for t in ("What changed", "What moved", "Cell by cell"))
    assert changed < done.stdout.index("    nic.speed (server and client): A 25000Mb/s, B 100000Mb/s") < moved < cells
    assert "  Link\n    nic.speed" in done.stdout


def test_compare_of_runs_with_no_cell_in_common_exits_6(tmp_path):
    a = RUNS / "20261120T101500Z-lab-hw-a1b2"
    b = Path(shutil.copytree(RUNS / "20261125T231027Z-variants-85df", tmp_path / "b"))
    done = orchestrate("compare", str(a), str(b), "--out", str(tmp_path / "cmp"))
    assert done.returncode == 6, done.stderr
    assert "share no cell" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "cmp").exists()


def test_report_json_is_one_document_on_stdout(tmp_path):
    run_dir = Path(shutil.copytree(RUNS / "20261120T101500Z-lab-hw-a1b2", tmp_path / "run"))
    done = orchestrate("report", str(run_dir), "--json")
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["command"] == "report" and doc["run_dir"] == str(run_dir)
    assert doc["exit_status"] == 0 and doc["exit_meaning"] == "success"
    assert doc["cells"] == {"cells": 54, "repetitions": 162, "failed": 1}
    assert doc["failures"] == [{"cell": "stream-one_copy-4096B-2t", "failed": 1, "errors": doc["failures"][0]["errors"]}]
    assert len(doc["summary"]) == 54 and doc["summary"][0]["throughput_gbps_mean"] > 0
    assert Path(doc["report"]["html"]).exists()
    assert f"report: {run_dir / 'report.html'}" in done.stderr  # the human line, on stderr


def test_errors_under_json_are_in_the_document_too(tmp_path):
    done = orchestrate("compare", str(RUNS / "20261120T101500Z-lab-hw-a1b2"), str(RUNS / "20261125T231027Z-variants-85df"),
                       "--out", str(tmp_path / "cmp"), "--json")
    doc = json.loads(done.stdout)
    assert done.returncode == doc["exit_status"] == ExitStatus.NO_COMMON_CELLS
    assert "share no cell" in doc["error"] and "share no cell" in done.stderr


def test_quiet_prints_nothing_but_errors(tmp_path):
    run_dir = Path(shutil.copytree(RUNS / "20261125T090000Z-vm-e5f6", tmp_path / "run"))
    done = orchestrate("report", str(run_dir), "-q")
    assert done.returncode == 0 and done.stdout == "" and done.stderr == ""
    assert (run_dir / "report.html").exists()
    done = orchestrate("report", str(tmp_path / "nope"), "-q")
    assert done.returncode == 2 and "no such run folder" in done.stderr


def test_piped_output_is_not_wrapped_even_in_a_narrow_terminal(tmp_path):
    deep = tmp_path / ("a-long-folder-name-" * 4) / "run"
    run_dir = Path(shutil.copytree(RUNS / "20261125T090000Z-vm-e5f6", deep))
    done = subprocess.run([*ORCHESTRATE, "compare", str(run_dir), str(run_dir), "--out", str(tmp_path / "c")],
                          capture_output=True, text=True, env={**ENV, "COLUMNS": "40"}, timeout=60)
    assert done.returncode == 0, done.stderr
    assert f"wrote {tmp_path / 'c' / 'compare.md'}\n" in done.stderr  # the whole path on one line
    # The longest cell name and its note, whole on their line, where a 40-column terminal would cut them.
    assert "│ stream-zero_copy-65536B-1t │ both: zero_copy: copied (not zero-copy) │" in done.stdout
    assert "…" not in done.stdout
    assert "\x1b[" not in done.stdout + done.stderr  # no colour


def test_every_exit_status_is_listed_in_help_and_readme():
    helped = orchestrate("--help").stdout
    readme = (ROOT / "README.md").read_text()
    for status in ExitStatus:
        assert f"{int(status):>3}  {status.meaning}" in helped
        assert f"| {int(status)} | " in readme
    assert ExitStatus.DISK_FULL == 5 and ExitStatus.BAD_ARGUMENT == 2  # argparse's own status for bad options


def test_help_is_written_for_users():
    helped = orchestrate("--help").stdout
    assert "the work is in the library" not in helped
    assert "Measure what data copies cost" in helped
    assert "orchestrate run --dry-run configs/full.yml" in helped and "examples:" in helped
    assert "tbf" in orchestrate("lab", "--help").stdout


def test_every_positional_argument_has_help():
    parser = build_parser()
    (commands,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    checked = 0
    for name, sub in commands.choices.items():
        for action in sub._actions:
            if not action.option_strings:
                assert action.help, f"{name} {action.dest}"
                checked += 1
    assert checked >= 6


def test_bash_completion_completes_commands_and_choices():
    script = orchestrate("completion", "bash")
    assert script.returncode == 0 and "complete -o bashdefault -F _shtab_orchestrate orchestrate" in script.stdout

    def complete(*words: str) -> list[str]:
        line = "; ".join([
            "source /dev/stdin",
            f"COMP_WORDS=(orchestrate {' '.join(repr(w) for w in words)})",
            f"COMP_CWORD={len(words)}",
            f"_shtab_orchestrate orchestrate {words[-1]!r} {(['orchestrate', *words])[-2]!r}",
            'printf "%s\\n" "${COMPREPLY[@]}"',
        ])
        done = subprocess.run(["bash", "-c", line], input=script.stdout, capture_output=True, text=True, timeout=30)
        assert done.returncode == 0, done.stderr
        return done.stdout.split()

    assert complete("co") == ["compare", "completion"]
    assert complete("lab", "") == ["up", "down", "status"]
    assert complete("run", "--no-r") == ["--no-report"]
    assert "--dry-run" in complete("run", "--d")
    zsh = orchestrate("completion", "zsh")
    assert zsh.returncode == 0 and zsh.stdout.startswith("#compdef orchestrate")


def test_dry_run_prints_the_plan_and_touches_nothing(tmp_path):
    inventory = tmp_path / "inventory.yml"  # hosts that do not exist: any contact would fail
    inventory.write_text("server: {host: 198.18.255.253, data_address: 198.18.0.1, workdir: /nonexistent/s}\n"
                         "client: {host: 198.18.255.254, data_address: 198.18.0.2, workdir: /nonexistent/c}\n")
    done = orchestrate("run", "--dry-run", str(ROOT / "configs" / "full.yml"), "--inventory", str(inventory),
                       "--results", str(tmp_path / "results"))
    assert done.returncode == 0, done.stderr
    assert "name: lab-study" in done.stdout and "repetitions: 3" in done.stdout  # the resolved config
    assert "server: 198.18.255.253, data address 198.18.0.1" in done.stdout
    # 144 of ours, 48 of iperf3 and the 48 one_copy cells at one field that iperf3 pairs with
    assert "plan: 240 cells, order shuffled, seed " in done.stdout
    assert "   240  stream-" in done.stdout and "  stream-iperf3-1024B-1t-r1" in done.stdout
    assert "  stream-one_copy-1024B-1t-fields=1-r1" in done.stdout
    # 240 cells × (2 s warm-up + 10 s + overhead), plus setup and report: about 48 minutes.
    assert "estimate: 48 min " in done.stdout
    assert "no host was contacted" in done.stderr
    assert not (tmp_path / "results").exists()
    assert orchestrate("run", "--check", str(ROOT / "configs" / "full.yml")).returncode == 2
    # The order shown comes back with the seed it names.
    seed = re.search(r"add --seed (\d+)", done.stdout).group(1)
    again = orchestrate("run", "--dry-run", str(ROOT / "configs" / "full.yml"), "--inventory", str(inventory), "--seed", seed)
    assert f"seed {seed} (from --seed)" in again.stdout
    order = [line for line in done.stdout.splitlines() if re.match(r"^ +\d+  stream-", line)]
    assert len(order) == 240 and order == [line for line in again.stdout.splitlines() if re.match(r"^ +\d+  stream-", line)]
    assert orchestrate("run", "--dry-run", "x.yml", "--seed", "-1").returncode == 2


def test_progress_bar_names_the_cell_counts_failures_and_estimates_from_the_per_cell_time():
    from rich.console import Console

    from orchestrator.cli import terminal as cli
    from orchestrator.run.cell import CellOutcome
    from orchestrator.experiment.plan import Cell

    screen = Console(file=io.StringIO(), force_terminal=True, width=200, color_system=None)

    def cell(mode: str, size: int, threads: int, rep: int, **extra) -> Cell:
        params = dict(workload="stream", mode=mode, message_size=size, threads=threads, fields=8, sender="server",
                      nodelay=True, sndbuf=0, rcvbuf=0, receive="copy", uring_buffers="plain", repetition=rep, varied=("mode", "message_size", "threads"))
        params.update(extra)
        return Cell(**params)

    assert cli.describe_cell(cell("zero_copy", 65536, 4, 2), 3) == "zero_copy 64KiB ×4, rep 2/3"
    assert cli.describe_cell(cell("one_copy", 1024, 1, 1, workload="rr", sender="client",
                                  varied=("workload", "mode", "sender")), 1) == "rr one_copy 1KiB ×1, sender=client, rep 1/1"
    # 4 cells left after this one at 3 s each, 1 s into this one: 4 × 3 + 2.
    assert cli.eta_seconds(3.0, 4, current_started=100.0, now=101.0) == 14.0
    assert cli.eta_seconds(3.0, 4, current_started=100.0, now=110.0) == 12.0  # an overrun cell counts as done

    progress = cli.TerminalProgress(screen, per_cell_s=12.1, repetitions=3)
    progress.start(total=10, done=2)  # a resumed run: two cells already done
    try:
        task = progress.bar.tasks[0]
        first = cell("zero_copy", 65536, 4, 2)
        progress.cell_started(first)
        assert task.description == "zero_copy 64KiB ×4, rep 2/3"
        assert task.fields["after_current"] == 7 and task.fields["per_cell_s"] == 12.1
        eta = cli.CellEta().render(task).plain
        assert eta in ("ETA 1 min 37 s", "ETA 1 min 36 s")  # 7 × 12.1 + 12.1, from the measured figure
        progress.cell_finished(CellOutcome(first, Path("."), "agent exited 1", 1.0))
        assert task.completed == 3 and task.fields["failed_text"] == "[red]1 failed[/]"
        # Now this run's own time per cell: about the few milliseconds this test took.
        assert progress.per_cell_s < 1.0 and task.fields["per_cell_s"] == progress.per_cell_s
        progress.bar.refresh()
    finally:
        progress.stop()
    shown = screen.file.getvalue()
    assert "zero_copy 64KiB ×4, rep 2/3" in shown and "1 failed" in shown and "3/10" in shown
    assert "✗ stream-zero_copy-65536B-4t-r2: agent exited 1" in shown


def test_a_failed_pairs_bar_shows_no_eta_and_its_error_waits_for_the_end():
    from rich.console import Console

    from orchestrator.cli import terminal as cli

    screen = Console(file=io.StringIO(), force_terminal=True, width=200, color_system=None)
    run = cli.TerminalProgress(screen, per_cell_s=12.1, repetitions=1)
    lost = run.for_pair("p2")
    lost.start(total=3, done=1)
    try:
        task = lost.bar.tasks[0]
        assert cli.CellEta().render(task).plain.startswith("ETA")
        lost.pair_failed("server (root@198.18.2.10): no longer reachable; long details")
        assert cli.CellEta().render(task).plain == "" and task.description == "p2: failed"
    finally:
        run.stop()
    shown = screen.file.getvalue()
    assert "✗ pair p2 failed" in shown and "no longer reachable" not in shown  # said once, at the end


def test_check_json_lists_the_findings(tmp_path):
    inventory = tmp_path / "inventory.yml"
    inventory.write_text(f"server: {{host: local, workdir: {tmp_path / 'work'}}}\nclient: {{host: local, workdir: {tmp_path / 'work'}}}\n")
    done = orchestrate("check", str(ROOT / "configs" / "smoke.yml"), "--inventory", str(inventory), "--json")
    doc = json.loads(done.stdout)
    assert doc["command"] == "check" and done.returncode == doc["exit_status"] in (0, 3)
    assert doc["problems"] == sum(not f["ok"] for f in doc["findings"])
    assert {f["host"].split()[0] for f in doc["findings"]} == {"server", "client"}
    assert "preflight" in done.stderr  # the table, for people, on stderr


def _local_inventory(tmp_path: Path) -> Path:
    inventory = tmp_path / "inventory.yml"
    inventory.write_text(f"server: {{host: local, workdir: {tmp_path / 'work'}}}\nclient: {{host: local, workdir: {tmp_path / 'work'}}}\n")
    return inventory


def test_a_bug_inside_a_run_is_one_line_pointing_at_run_log(tmp_path, monkeypatch):
    """An unexpected exception (a bug, not a typed error): its whole traceback goes to the run's
    run.log, and the user is shown one line that names that file."""
    from orchestrator import cli
    from orchestrator.run import runner

    def broken(*args, **kwargs):
        raise RuntimeError("a bug in the code\nwith a second line")

    monkeypatch.setattr(runner, "connect_hosts", broken)  # inside execute(), after run.log is opened
    stdout, stderr = io.StringIO(), io.StringIO()
    code = cli.main(["run", str(ROOT / "configs" / "smoke.yml"), "--inventory", str(_local_inventory(tmp_path)),
                     "--results", str(tmp_path / "results"), "-q"], stdout=stdout, stderr=stderr)
    assert code == ExitStatus.INTERNAL_ERROR
    (run_dir,) = (tmp_path / "results").iterdir()
    lines = stderr.getvalue().splitlines()
    assert len(lines) == 1, lines
    assert str(run_dir / "run.log") in lines[0] and "RuntimeError: a bug in the code" in lines[0]
    assert "Traceback" not in stderr.getvalue() and "second line" not in stderr.getvalue()
    assert stdout.getvalue() == ""
    log = (run_dir / "run.log").read_text()
    assert "unexpected error" in log and "Traceback (most recent call last)" in log
    assert "in broken" in log and "RuntimeError: a bug in the code\nwith a second line" in log
    assert not (tmp_path / "work").exists()  # nothing reached a host


def test_a_bug_before_there_is_a_run_folder_goes_to_a_file_of_its_own(tmp_path, monkeypatch):
    import tempfile

    from orchestrator import cli
    from orchestrator.report import compare

    def broken(*args, **kwargs):
        raise KeyError("nope")

    monkeypatch.setattr(compare, "compare_runs", broken)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    stdout, stderr = io.StringIO(), io.StringIO()
    code = cli.main(["compare", "a", "b", "--json"], stdout=stdout, stderr=stderr)
    assert code == ExitStatus.INTERNAL_ERROR
    (saved,) = tmp_path.glob("orchestrate-error-*.log")
    assert "Traceback" in saved.read_text() and "KeyError: 'nope'" in saved.read_text()
    assert stderr.getvalue().splitlines() == [f"error: unexpected error (KeyError: 'nope'); the traceback is in {saved}"]
    doc = json.loads(stdout.getvalue())  # --json keeps its one document, with the error in it
    assert doc["exit_status"] == 70 and str(saved) in doc["error"]


def test_main_writes_to_the_streams_it_is_given(tmp_path):
    """No global capture: the command's stdout and stderr are arguments."""
    from orchestrator import cli

    run_dir = Path(shutil.copytree(RUNS / "20261125T090000Z-vm-e5f6", tmp_path / "run"))
    stdout, stderr = io.StringIO(), io.StringIO()
    assert cli.main(["report", str(run_dir), "--json"], stdout=stdout, stderr=stderr) == 0
    assert json.loads(stdout.getvalue())["run_dir"] == str(run_dir)
    assert f"report: {run_dir / 'report.html'}" in stderr.getvalue()
    stdout, stderr = io.StringIO(), io.StringIO()
    assert cli.main(["report", str(tmp_path / "nope")], stdout=stdout, stderr=stderr) == ExitStatus.BAD_ARGUMENT
    assert "no such run folder" in stderr.getvalue() and stdout.getvalue() == ""
    stdout, stderr = io.StringIO(), io.StringIO()
    with pytest.raises(SystemExit):
        cli.main(["--version"], stdout=stdout, stderr=stderr)
    assert stdout.getvalue().startswith("orchestrate ")


# ---------------------------------------------------------------- several pairs: check, exit statuses

TWO_PAIRS = """
pairs:
  a: {server: {host: 198.18.1.10, data_address: 198.18.1.1}, client: {host: 198.18.1.20, data_address: 198.18.1.2}}
  b: {server: {host: 198.18.2.10, data_address: 198.18.2.1}, client: {host: 198.18.2.20, data_address: 198.18.2.2}}
"""


def _two_pairs(tmp_path: Path) -> Path:
    inventory = tmp_path / "pairs.yml"
    inventory.write_text(TWO_PAIRS)
    return inventory


def test_a_bad_ssh_config_entry_in_one_pair_exits_2_while_the_other_pair_finishes(tmp_path, monkeypatch):
    """A ConfigError inside one pair (its ssh_config entry) is the user's file to fix: exit 2,
    not "some pairs failed" (7); the other pair's outcome is kept, and --resume is offered."""
    import pandas as pd

    from orchestrator import cli
    from orchestrator.cli import commands
    from orchestrator.run import runner
    from orchestrator.errors import ConfigError

    def pair(pair_state, progress, on_preflight, shared, outcome):
        if pair_state.name == "b":
            raise ConfigError("ssh_config entry for 198.18.2.10: bad ProxyCommand")

    monkeypatch.setattr(runner, "_execute_pair", pair)
    monkeypatch.setattr(commands, "_summary", lambda run_dir: pd.DataFrame())  # no cell ran here, so no rows
    stdout, stderr = io.StringIO(), io.StringIO()
    code = cli.main(["run", str(ROOT / "configs" / "smoke.yml"), "--inventory", str(_two_pairs(tmp_path)),
                     "--results", str(tmp_path / "results"), "--no-report", "--json"], stdout=stdout, stderr=stderr)
    doc = json.loads(stdout.getvalue())
    assert code == doc["exit_status"] == ExitStatus.BAD_ARGUMENT, stderr.getvalue()
    assert doc["pairs"]["a"]["status"] == "ok" and doc["pairs"]["b"]["status"] == "failed"
    assert "bad ProxyCommand" in doc["error"] and "--resume" in doc["error"]


def test_a_pair_that_loses_its_host_after_two_cells_counts_them_in_json(tmp_path, monkeypatch):
    """The cells a pair finished before it lost a host have rows in results.csv: --json counts them."""
    import pandas as pd

    from orchestrator import cli
    from orchestrator.cli import commands
    from orchestrator.run import runner
    from orchestrator.run.cell import CellOutcome
    from orchestrator.errors import HostError

    def pair(pair_state, progress, on_preflight, shared, outcome):
        if pair_state.name == "b":
            outcome.finished += [CellOutcome(c, tmp_path, None, 1.0, status="ok") for c in pair_state.run.plan.cells[:2]]
            raise HostError("server", "pair b: no longer reachable")

    monkeypatch.setattr(runner, "_execute_pair", pair)
    monkeypatch.setattr(commands, "_summary", lambda run_dir: pd.DataFrame())
    stdout, stderr = io.StringIO(), io.StringIO()
    code = cli.main(["run", str(ROOT / "configs" / "smoke.yml"), "--inventory", str(_two_pairs(tmp_path)),
                     "--results", str(tmp_path / "results"), "--no-report", "--json"], stdout=stdout, stderr=stderr)
    doc = json.loads(stdout.getvalue())
    assert code == ExitStatus.SOME_PAIRS_FAILED, stderr.getvalue()
    assert doc["pairs"]["b"]["status"] == "failed" and doc["pairs"]["b"]["run"] == 2
    assert doc["cells"]["run"] == 2


def test_json_cells_are_totals_and_done_counts_the_pairs_that_ran(tmp_path, monkeypatch):
    """cells.planned, run and skipped are all totals over the pairs; a pair with every cell done
    (as on --resume) did not run, and the done line says so."""
    import pandas as pd

    from orchestrator import cli
    from orchestrator.cli import commands
    from orchestrator.run import runner
    from orchestrator.run.cell import CellOutcome

    def pair(pair_state, progress, on_preflight, shared, outcome):
        planned = pair_state.run.plan.cells
        outcome.planned = len(planned)
        if pair_state.name == "a":
            outcome.finished += [CellOutcome(c, tmp_path, None, 1.0, status="ok") for c in planned]
        else:
            outcome.skipped = len(planned)

    monkeypatch.setattr(runner, "_execute_pair", pair)
    monkeypatch.setattr(commands, "_summary", lambda run_dir: pd.DataFrame())
    monkeypatch.setattr("orchestrator.rows.results.row_counts", lambda path: {})
    stdout, stderr = io.StringIO(), io.StringIO()
    code = cli.main(["run", str(ROOT / "configs" / "smoke.yml"), "--inventory", str(_two_pairs(tmp_path)),
                     "--results", str(tmp_path / "results"), "--no-report", "--json"], stdout=stdout, stderr=stderr)
    doc = json.loads(stdout.getvalue())
    assert code == ExitStatus.OK, stderr.getvalue()
    each = doc["pairs"]["a"]["planned"]
    assert each > 0 and doc["pairs"]["b"]["planned"] == each
    assert doc["cells"] == {"planned": 2 * each, "run": each, "skipped": each, "failed": 0}
    assert f"done: {each} cells run on 1 of 2 pairs, {each} already done" in " ".join(stderr.getvalue().split())


def _fake_pair_hosts(monkeypatch, problem_on: str | None = None):
    """connect_hosts and run_preflight without hosts: pair b cannot be reached; both pairs must be
    connecting at the same moment (a barrier of two), or the check did not run them at once."""
    import threading
    from types import SimpleNamespace

    from orchestrator.run import preflight as preflight_module
    from orchestrator.errors import PreflightError

    together = threading.Barrier(2, timeout=10)

    def connect(inventory, timeout):
        together.wait()
        (name,) = inventory.pairs
        if name == "b":
            raise PreflightError("cannot reach:\nserver (198.18.2.10): connection refused")
        return {}

    def preflight(hosts, experiment, inventory):
        (name,) = inventory.pairs
        finding = SimpleNamespace(host=f"server ({name})", check="perf", ok=name != problem_on, detail="perf stat works")
        return SimpleNamespace(findings=[finding], problems=[finding] if not finding.ok else [])

    monkeypatch.setattr(preflight_module, "connect_hosts", connect)
    monkeypatch.setattr(preflight_module, "run_preflight", preflight)


def test_check_run_and_dry_run_say_the_same_plan_size_with_the_pairs(tmp_path, monkeypatch):
    from orchestrator import cli
    from orchestrator.experiment.units import format_duration as format_seconds

    _fake_pair_hosts(monkeypatch)
    args = [str(ROOT / "configs" / "smoke.yml"), "--inventory", str(_two_pairs(tmp_path))]
    stdout, stderr = io.StringIO(), io.StringIO()
    assert cli.main(["run", "--dry-run", *args, "--json"], stdout=stdout, stderr=stderr) == 0, stderr.getvalue()
    guess = json.loads(stdout.getvalue())["estimate"]
    assert guess["pairs"] == 2
    stdout, stderr = io.StringIO(), io.StringIO()
    cli.main(["check", *args], stdout=stdout, stderr=stderr)
    said = " ".join((stdout.getvalue() + stderr.getvalue()).split())
    assert "on each of 2 pairs" in said and f"about {format_seconds(guess['total_s'])} with the pairs at once" in said, said


@pytest.mark.parametrize("command", [["check"], ["run", "--dry-run", "--check"]])
def test_check_checks_every_pair_at_once_and_names_the_pair_it_cannot_reach(tmp_path, monkeypatch, command):
    from orchestrator import cli

    _fake_pair_hosts(monkeypatch)
    stdout, stderr = io.StringIO(), io.StringIO()
    code = cli.main([*command, str(ROOT / "configs" / "smoke.yml"), "--inventory", str(_two_pairs(tmp_path)), "--json"],
                    stdout=stdout, stderr=stderr)
    doc = json.loads(stdout.getvalue())
    assert code == ExitStatus.HOST_FAILED, stderr.getvalue()
    assert doc["pairs"]["a"] == {"problems": 0, "error": None}
    assert "connection refused" in doc["pairs"]["b"]["error"] and doc["pairs"]["b"]["problems"] is None
    assert [f["pair"] for f in doc["findings"]] == ["a"]
    assert "preflight: pair a" in stderr.getvalue() and "✗ pair b" in stderr.getvalue()
    assert "1 of 2 pairs could not be checked" in doc["error"]
    # The pair's own further line sits under it, indented (exit 3: check fails on any pair, README).
    assert "\n  b: cannot reach:\n    server (198.18.2.10): connection refused" in doc["error"], doc["error"]


def test_check_with_pairs_checks_only_those(tmp_path, monkeypatch):
    from orchestrator import cli
    from orchestrator.run import preflight

    seen: list[str] = []
    monkeypatch.setattr(preflight, "connect_hosts", lambda inventory, timeout: seen.extend(inventory.pairs) or {})
    monkeypatch.setattr(preflight, "run_preflight", lambda hosts, experiment, inventory: _no_problems())
    stdout, stderr = io.StringIO(), io.StringIO()
    code = cli.main(["check", str(ROOT / "configs" / "smoke.yml"), "--inventory", str(_two_pairs(tmp_path)),
                     "--pairs", "b", "--json"], stdout=stdout, stderr=stderr)
    assert code == ExitStatus.OK, stderr.getvalue()
    assert seen == ["b"] and "pairs" not in json.loads(stdout.getvalue())  # one pair: reported as before pairs


def _no_problems():
    from types import SimpleNamespace

    return SimpleNamespace(findings=[SimpleNamespace(host="server", check="perf", ok=True, detail="ok")], problems=[])


def test_a_baseline_the_run_cannot_have_is_refused_before_any_cell(tmp_path):
    """`run --baseline` is checked against the pairs that will run before anything starts (no run
    folder, no host contacted: the hosts below do not exist), not when the report is written."""
    from orchestrator import cli

    inventory = tmp_path / "pairs.yml"
    inventory.write_text(
        "pairs:\n"
        "  p1: {server: {host: p1s.invalid, data_address: 198.18.4.1}, client: {host: p1c.invalid, data_address: 198.18.4.2}}\n"
        "  p2: {server: {host: p2s.invalid, data_address: 198.18.8.1}, client: {host: p2c.invalid, data_address: 198.18.8.2}}\n")
    stdout, stderr = io.StringIO(), io.StringIO()
    status = cli.main(["run", str(ROOT / "configs" / "smoke.yml"), "--inventory", str(inventory), "--pairs", "p1,p2",
                       "--baseline", "p3", "--results", str(tmp_path / "results")], stdout=stdout, stderr=stderr)
    assert status == 2
    assert "--baseline 'p3'" in stderr.getvalue() and "p1, p2" in stderr.getvalue()
    assert not (tmp_path / "results").exists()
    # Only the pairs that run can be the baseline: p2 left out by --pairs is refused too.
    status = cli.main(["run", str(ROOT / "configs" / "smoke.yml"), "--inventory", str(inventory), "--pairs", "p1",
                       "--baseline", "p2", "--results", str(tmp_path / "results")], stdout=stdout, stderr=stderr)
    assert status == 2 and not (tmp_path / "results").exists()


def test_resume_refuses_inventory_and_changes_nothing(tmp_path):
    """--resume runs on the hosts saved with the run; an --inventory beside it is refused, not ignored."""
    (tmp_path / "run").mkdir()
    (tmp_path / "other.yml").write_text("server: {host: local}\nclient: {host: local}\n")
    for extra in ([], ["--retry-failed"], ["--dry-run"]):
        done = orchestrate("run", "--resume", str(tmp_path / "run"), "--inventory", "other.yml", *extra, cwd=tmp_path)
        assert done.returncode == 2, done.stderr
        assert "--resume runs on the hosts saved with the run (inventory.yml in its folder); --inventory is for a new run" \
            in " ".join(done.stderr.split())
    assert list((tmp_path / "run").iterdir()) == []


def test_run_without_an_experiment_file_is_a_bad_argument_with_or_without_dry_run():
    for args in (["run"], ["run", "--dry-run"], ["run", "--dry-run", "--check"]):
        done = orchestrate(*args)
        assert done.returncode == 2, (args, done.stderr)
        assert "give an experiment file, or --resume RUN_DIR" in done.stderr and "Traceback" not in done.stderr
