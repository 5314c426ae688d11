"""The command line: bad input is refused with exit status 2 before anything starts."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import sys
from pathlib import Path

import pytest

from orchestrator.cli import build_parser

from .conftest import ROOT
from .test_config import expected_message

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
    for argv in (["run", "c.yml"], ["check", "c.yml"], ["report", "r"], ["compare", "a", "b"], ["lab", "status"]):
        assert callable(parser.parse_args(argv).handler)


def test_summary_marks_copied_zero_copy_and_splits_varied_parameters():
    from orchestrator import cli

    with cli.out.capture() as captured:
        cli.show_summary(ROOT / "tests" / "fixtures" / "runs" / "20261125T231027Z-variants-85df")
    text = captured.get()
    assert "zero_copy*" in text and "not zero-copy" in text
    assert "sender" in text and "nodelay" in text
    assert len([line for line in text.splitlines() if "one_copy" in line]) == 4


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
