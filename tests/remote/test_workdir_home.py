"""`~/` in a workdir is the login user's $HOME on that host, taken only when it is a plain
absolute path: the script run under sh with chosen HOMEs."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

from orchestrator.remote import workdir


def run_with_home(home: str | None, tmp_path: Path) -> workdir.WorkdirCheck:
    env = {k: v for k, v in os.environ.items() if k != "HOME"}
    if home is not None:
        env["HOME"] = home
    done = subprocess.run(["sh", "-c", workdir.script("~/.cache/orchestrate", dirs=["agents"], then="echo ran")],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=30)
    return workdir.parse("~/.cache/orchestrate", done.stdout)


def test_home_is_where_the_workdir_goes(tmp_path):
    found = run_with_home(str(tmp_path) + "/", tmp_path)
    assert found.ok and found.workdir == f"{tmp_path}/.cache/orchestrate" and found.output == "ran\n"
    # Made private, parents included (umask 077).
    assert stat.S_IMODE((tmp_path / ".cache").stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / ".cache" / "orchestrate" / "agents").stat().st_mode) == 0o700


@pytest.mark.parametrize("home, says", [
    (None, "not an absolute path"),
    ("", "not an absolute path"),
    ("relative/home", "not an absolute path"),
    ("/home/a b", "characters outside"),
    ("/home/x/../root", "'..'"),
    ("/home/$(touch pwned)", "characters outside"),
])
def test_an_odd_home_is_refused_and_nothing_is_made(home, says, tmp_path):
    found = run_with_home(home, tmp_path)
    assert not found.ok and says in found.describe()
    assert found.output == ""  # the caller's commands did not run
    assert list(tmp_path.iterdir()) == []  # not even a file named by the HOME
