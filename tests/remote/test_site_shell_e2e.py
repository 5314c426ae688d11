"""A real site's account: bash as its login shell, and start-up files that print on stdout and
stderr, set umask 000 and a locale the machine lacks (`orchestrate lab --chatty`), with perf
through sudo and sshd's PATH for a non-root account. check, run and report go through it."""

from __future__ import annotations

import json
import os
import pwd
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.cli import main
from orchestrator.experiment.inventory import load_inventory
from orchestrator.lab.accounts import CHATTY_BANNER
from orchestrator.remote.facts import SYSCTLS
from orchestrator.rows.results import read_results

from ..conftest import ROOT
from ..labs import running_lab

pytestmark = [pytest.mark.integration, pytest.mark.lab]

PREFIX = os.environ.get("ORCH_TEST_LAB_PREFIX", "orcht") + "ch"
USER = f"{PREFIX}user"
# What the chatty start-up files print, on either stream: none of it may reach a file of ours.
CHATTER = (CHATTY_BANNER.encode(), b"site notice", b"setlocale")


@pytest.fixture(scope="module")
def chatty_lab(tmp_path_factory) -> Path:
    with running_lab(tmp_path_factory.mktemp("lab-chatty"), PREFIX, ("useradd", "usermod", "visudo", "sudo", "setpriv"),
                     user=USER, sudo_perf=True, chatty=True) as (inventory, _):
        yield inventory


def test_the_lab_account_is_a_chatty_bash_login(chatty_lab):
    """The shape is real before anything is measured through it: an SSH command's output starts
    with the banner, and its umask is 000."""
    account = pwd.getpwnam(USER)
    assert account.pw_shell == "/bin/bash"
    spec = load_inventory(chatty_lab).server
    done = subprocess.run(["ssh", "-i", spec.key, "-o", f"UserKnownHostsFile={spec.known_hosts}", "-o", "BatchMode=yes",
                           f"{spec.user}@{spec.host}", "umask; echo $PATH"], capture_output=True, timeout=30)
    assert done.stdout.startswith(b"*** SITE BANNER") and b"site notice" in done.stderr
    assert b"\n0000\n" in done.stdout and b"sbin" not in done.stdout


def test_check_run_and_report_through_a_chatty_account(chatty_lab, tmp_path):
    # check, as a user sees it: preflight passes and names the chatty shell in one line per host.
    check = subprocess.run([sys.executable, "-m", "orchestrator.cli", "check", str(ROOT / "configs" / "smoke.yml"),
                            "--inventory", str(chatty_lab)], capture_output=True, text=True, timeout=300,
                           env={**os.environ, "COLUMNS": "400"})
    assert check.returncode == 0, check.stdout + check.stderr
    named = [line for line in check.stderr.splitlines() if "login shell" in line]  # the table goes to stderr
    assert len(named) == 2 and all("*** SITE BANNER" in line and "stdout and stderr" in line for line in named), named

    results = tmp_path / "results"
    code = main(["run", str(ROOT / "configs" / "smoke.yml"), "--inventory", str(chatty_lab), "--results", str(results)])
    (run_dir,) = results.iterdir()
    frame = read_results(run_dir / "results.csv")
    assert code == 0, frame[["cell_id", "status", "error"]]
    assert len(frame) == 8 and (frame["status"] == "ok").all()
    assert main(["report", str(run_dir)]) == 0

    # No banner, notice or locale warning in any file of the run folder.
    for path in run_dir.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert not [c for c in CHATTER if c in data], path

    # Every sysctl and the NIC's driver, read as the non-root account with sshd's PATH.
    for role in ("server", "client"):
        facts = json.loads((run_dir / "hosts" / f"{role}.json").read_text())
        assert set(facts["sysctls"]) == set(SYSCTLS) and "" not in facts["sysctls"].values(), facts["sysctls"]
        assert facts["sysctls"]["kernel.perf_event_paranoid"] == Path("/proc/sys/kernel/perf_event_paranoid").read_text().strip()
        assert (facts["nic"]["driver"], facts["nic"]["speed"]) == ("veth", "10000Mb/s")
        # Every fact read, but the CPU frequency driver of a machine that has none (this VM).
        no_cpufreq = not Path("/sys/devices/system/cpu/cpu0/cpufreq").exists()
        assert set(facts["unknown"]) == ({"cpu_freq_driver", "cpu_governor"} if no_cpufreq else set()), facts["unknown"]
        assert facts["nic"]["qdisc"] == "noqueue" and facts["nic"]["qdisc_rate_mbit"] is None

    # umask 000 in the start-up files, yet everything the run made on the hosts is the user's alone.
    account = pwd.getpwnam(USER)
    made = [p for p in Path(account.pw_dir).rglob("*") if ".cache" in p.parts]
    assert len(made) > 20
    loose = [(oct(stat.S_IMODE(p.lstat().st_mode)), str(p)) for p in made
             if stat.S_IMODE(p.lstat().st_mode) not in ((0o700,) if p.is_dir() else (0o600, 0o700))]
    assert loose == []
