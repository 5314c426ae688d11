"""A login shell that is not POSIX sh (fish, as many users choose): every remote command runs as
`exec /bin/sh -c …`, so the login shell only execs sh. Checked in the lab, with a lab user whose
login shell is fish: preflight, a short run, and a timed-out command that leaves nothing behind."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from orchestrator.cli import main
from orchestrator.errors import HostError
from orchestrator.remote.hosts import KILL_GRACE, connect
from orchestrator.experiment.inventory import load_inventory
from orchestrator.rows.results import read_results

from ..labs import running_lab
from ..conftest import ROOT, require_tool
from .test_hosts import _by_token, _stat, _token

pytestmark = [pytest.mark.integration, pytest.mark.lab]

PREFIX = os.environ.get("ORCH_TEST_LAB_PREFIX", "orcht") + "fi"
USER = f"{PREFIX}user"


@pytest.fixture(scope="module")
def fish_inventory(tmp_path_factory) -> Path:
    fish = require_tool("fish")
    folder = tmp_path_factory.mktemp("lab-fish")
    with running_lab(folder, PREFIX, ("useradd", "usermod"), user=USER) as (inventory, _):
        # The lab's account is the lab's (lab down removes it); only its login shell changes.
        subprocess.run(["usermod", "--shell", fish, USER], check=True)
        data = yaml.safe_load(inventory.read_text())
        for role in ("server", "client"):
            data[role]["perf_access"] = "user-only"
        fish_inventory = folder / "fish-inventory.yml"
        fish_inventory.write_text(yaml.safe_dump(data))
        yield fish_inventory


def test_the_lab_users_login_shell_is_fish(fish_inventory):
    import pwd
    assert Path(pwd.getpwnam(USER).pw_shell).name == "fish"


def test_check_and_a_short_run_as_a_fish_user(fish_inventory, tmp_path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = yaml.safe_load((ROOT / "configs" / "smoke.yml").read_text())
    config.update(port=port, matrix={"workload": ["stream"], "mode": ["two_copy"]})
    smoke = tmp_path / "smoke.yml"
    smoke.write_text(yaml.safe_dump(config))
    assert main(["check", str(smoke), "--inventory", str(fish_inventory)]) == 0
    results = tmp_path / "results"
    code = main(["run", str(smoke), "--inventory", str(fish_inventory), "--results", str(results), "--no-report"])
    (run_dir,) = results.iterdir()
    assert code == 0, (run_dir / "run.log").read_text()[-3000:]
    frame = read_results(run_dir / "results.csv")
    assert len(frame) > 0 and (frame["status"] == "ok").all()


def test_a_fish_users_command_is_its_own_session_and_a_timeout_leaves_nothing(fish_inventory):
    host = connect("server", load_inventory(fish_inventory).server, connect_timeout=10)
    try:
        token = _token()
        process = host.start(f"echo $$; sleep 30{token}")
        line = process.read_line("", 10)
        assert line is not None and line.strip().isdigit(), line
        pid = int(line)
        fields = _stat(pid)
        assert fields is not None
        # /proc/PID/stat after the name: state, ppid, pgrp, session: sh kept the login shell's pid,
        # which sshd made a session and process group leader.
        assert (int(fields[2]), int(fields[3])) == (pid, pid), fields[:4]
        process._await_pgid(5)  # it comes on stderr, read as it arrives
        assert process.pgid == pid
        process.close()
        assert _gone_token(token)

        token = _token()
        started = time.monotonic()
        with pytest.raises(HostError, match=r"timed out after 1s"):
            host.run(f"sh -c 'sleep 30{token} & sleep 31{token}'", timeout=1)
        assert time.monotonic() - started < 1 + KILL_GRACE + 5
        assert _gone_token(token), _by_token(token)
    finally:
        host.close()


def _gone_token(token: str, within: float = 3.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if not _by_token(token):
            return True
        time.sleep(0.05)
    return False
