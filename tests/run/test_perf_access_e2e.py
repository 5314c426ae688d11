"""perf_access end to end over the namespace lab, logged in as an unprivileged account
(`lab up --user NAME --sudo-perf`): real sshd, real perf, real agents, at the machine's
kernel.perf_event_paranoid of 2.

(a) perf_access: user-only runs, and results.csv and the report say the counts are user space only;
(b) perf_access: sudo (the lab's sudoers rule for perf) counts user and kernel, agents as the user;
(c) perf_access: direct stops at preflight (exit status 3) with the fixes named."""

from __future__ import annotations

import json
import os
import pwd
import subprocess
from pathlib import Path

import pytest
import yaml

from orchestrator.cli import main
from orchestrator.rows.results import read_results

from ..labs import running_lab
from ..conftest import require, require_root

pytestmark = [pytest.mark.integration, pytest.mark.lab]

BASE = os.environ.get("ORCH_TEST_LAB_PREFIX", "orcht")
PREFIX = f"p{BASE}"[:12]                      # this file's own lab, apart from test_lab_e2e's
USER = f"{PREFIX.replace('-', '')}u"
PARANOID = Path("/proc/sys/kernel/perf_event_paranoid")
EVENTS = ["cycles", "instructions", "context-switches", "task-clock", "page-faults"]


@pytest.fixture(scope="module")
def paranoid_2():
    """kernel.perf_event_paranoid at 2, the kernel's default, for the module; put back after."""
    require_root()
    before = PARANOID.read_text().strip()
    try:
        if before != "2":
            PARANOID.write_text("2\n")
        yield
    finally:
        if PARANOID.read_text().strip() != before:
            PARANOID.write_text(before + "\n")


@pytest.fixture(scope="module")
def user_lab(tmp_path_factory, paranoid_2) -> Path:
    with running_lab(tmp_path_factory.mktemp("perf-lab"), PREFIX, ("useradd", "visudo", "sudo", "setpriv"),
                     user=USER, sudo_perf=True) as (inventory, _):
        yield inventory


def home() -> Path:
    return Path(pwd.getpwnam(USER).pw_dir)


def inventory_with(lab_inventory: Path, tmp_path: Path, access: str | None) -> Path:
    data = yaml.safe_load(lab_inventory.read_text())
    for role in ("server", "client"):
        assert data[role]["user"] == USER
        # The lab's `~/` workdir, spelled out: this test is about perf, not where ~ resolves.
        data[role]["workdir"] = str(home() / f".cache/orchestrate-{PREFIX}-{role}")
        data[role].pop("perf_access", None)
        if access is not None:
            data[role]["perf_access"] = access
    path = tmp_path / f"inventory-{access or 'direct'}.yml"
    path.write_text(yaml.safe_dump(data))
    return path


def experiment(tmp_path: Path) -> Path:
    path = tmp_path / "experiment.yml"
    path.write_text(yaml.safe_dump({
        "name": "perf-access", "matrix": {"mode": ["two_copy", "one_copy"]}, "message_size": "16KiB",
        "duration": "0.6s", "warmup": "0.1s", "repetitions": 1, "order": "listed", "perf": {"events": EVENTS}}))
    return path


def run(tmp_path: Path, inventory: Path) -> tuple[int, Path]:
    results = tmp_path / "results"
    code = main(["run", str(experiment(tmp_path)), "--inventory", str(inventory), "--results", str(results)])
    (run_dir,) = results.iterdir()
    return code, run_dir


def test_user_only_runs_and_labels_user_space_counts(user_lab, tmp_path):
    code, run_dir = run(tmp_path, inventory_with(user_lab, tmp_path, "user-only"))
    frame = read_results(run_dir / "results.csv")
    assert code == 0, frame[["cell_id", "error"]]
    assert len(frame) == 2 and (frame["status"] == "ok").all()
    assert (frame["server_perf_counts"] == "user").all() and (frame["client_perf_counts"] == "user").all()
    # perf named them task-clock:u, page-faults:u ...: they are in the requested columns
    assert (frame["server_task_clock"] > 0).all() and (frame["client_page_faults"] > 0).all()
    assert "server_task_clock_u" not in frame
    # context switches happen in the kernel: user space counts 0, which is no count at all
    assert frame["server_context_switches"].isna().all()
    perf_file = (run_dir / "cells" / frame["cell_id"][0] / "server.perf.csv").read_text()
    assert "task-clock:u" in perf_file  # the raw file keeps perf's own names
    facts = json.loads((run_dir / "hosts" / "server.json").read_text())
    assert facts["perf_access"] == "user-only"
    check = facts["perf_check"]
    assert check["perf_event_paranoid"] == 2 and check["uid"] != 0
    assert check["counts"]["page-faults"] == "user" and check["counts"]["task-clock"] == "user+kernel"
    report = " ".join((run_dir / "report.md").read_text().split())
    assert "**User space only:** perf counted user space only on the server and client" in report
    assert "kernel time, where the copies happen, is not in the cycle and cache-miss counts" in report
    assert "<strong>User space only:</strong> perf counted user space only" in (run_dir / "report.html").read_text()


def test_sudo_counts_user_and_kernel_with_agents_as_the_user(user_lab, tmp_path):
    code, run_dir = run(tmp_path, inventory_with(user_lab, tmp_path, "sudo"))
    frame = read_results(run_dir / "results.csv")
    assert code == 0, frame[["cell_id", "error"]]
    assert len(frame) == 2 and (frame["status"] == "ok").all()  # an empty frame would pass .all()
    assert (frame["server_perf_counts"] == "user+kernel").all() and (frame["client_perf_counts"] == "user+kernel").all()
    assert (frame["server_context_switches"] >= 1).all() and (frame["client_task_clock"] > 0).all()
    cell = run_dir / "cells" / frame["cell_id"][0]
    command = json.loads((cell / "cell.json").read_text())["commands"]["server"]
    assert "sudo -n perf stat" in command and "setpriv" in command
    assert ":u," not in (cell / "server.perf.csv").read_text()
    facts = json.loads((run_dir / "hosts" / "client.json").read_text())
    assert facts["perf_access"] == "sudo" and facts["perf_check"]["counts"]["context-switches"] == "user+kernel"
    # The cells' files on the host are the user's own, perf's output too.
    uid = pwd.getpwnam(USER).pw_uid
    remote = list(home().glob(f".cache/orchestrate-{PREFIX}-server/runs/*/*/server.perf.csv"))
    assert remote and all(p.stat().st_uid == uid for p in remote)
    assert "user space only" not in (run_dir / "report.md").read_text().replace("*user space only*", "")


def test_direct_at_paranoid_2_fails_preflight_naming_the_fixes(user_lab, tmp_path):
    require(PARANOID.read_text().strip() == "2", "kernel.perf_event_paranoid must be 2 here")
    results = tmp_path / "results"
    proc = subprocess.run(
        [str(Path(__file__).resolve().parents[2] / ".venv" / "bin" / "orchestrate"), "run", str(experiment(tmp_path)),
         "--inventory", str(inventory_with(user_lab, tmp_path, None)), "--results", str(results)],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 3, proc.stdout + proc.stderr
    said = " ".join((proc.stdout + proc.stderr).split())
    assert "perf may count user space only here" in said
    assert "kernel.perf_event_paranoid=1" in said and "perf_access: sudo" in said and "perf_access: user-only" in said
    assert "Traceback" not in said
    (run_dir,) = results.iterdir()
    assert not (run_dir / "results.csv").exists() or not read_results(run_dir / "results.csv").shape[0]
