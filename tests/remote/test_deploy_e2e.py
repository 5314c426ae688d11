"""A server without a compiler, for real: the namespace lab hides every compiler from the server's
sshd (`lab up --no-compiler server`); the agent is built static elsewhere, pushed, and checked
on the host, and the host facts say where it came from."""

from __future__ import annotations

import hashlib
import json
import os
import pwd
import stat
import subprocess
from pathlib import Path

import pytest
import yaml

from orchestrator.remote import deploy
from orchestrator.cli import main
from orchestrator.remote.hosts import connect
from orchestrator.experiment.inventory import load_inventory
from orchestrator.rows.results import read_results

from ..labs import running_lab
from ..conftest import ROOT

pytestmark = [pytest.mark.integration, pytest.mark.lab]

# Derived from the session's own prefix, so that helpers and test files never share a lab.
PREFIX = os.environ.get("ORCH_TEST_LAB_PREFIX", "orcht") + "nc"


@pytest.fixture(scope="module")
def lab_inventory(tmp_path_factory) -> Path:
    with running_lab(tmp_path_factory.mktemp("lab-nc"), PREFIX, ("unshare",), no_compiler=("server",)) as (inventory, _):
        yield inventory


def test_the_servers_sessions_find_no_compiler(lab_inventory):
    host = connect("server", load_inventory(lab_inventory).server, connect_timeout=10)
    try:
        assert host.run("command -v cc || command -v gcc || command -v clang || echo none", 10).stdout.strip() == "none"
    finally:
        host.close()


@pytest.mark.parametrize("builder", ["controller", "client"])
def test_smoke_with_an_agent_built_elsewhere(lab_inventory, tmp_path, monkeypatch, builder):
    if builder == "client":
        # No usable compiler on the controller: the client (same architecture, static libc) builds.
        monkeypatch.setattr(deploy, "controller_toolchain", lambda arch: None)
    results = tmp_path / "results"
    _forget_cached_agents(lab_inventory)  # so that neither case finds the other's agent cached
    code = main(["run", str(ROOT / "configs" / "smoke.yml"), "--inventory", str(lab_inventory),
                 "--results", str(results), "--no-report"])
    (run_dir,) = results.iterdir()
    frame = read_results(run_dir / "results.csv")
    assert code == 0, frame[["cell_id", "error"]]
    assert len(frame) == 8 and (frame["status"] == "ok").all()

    server = json.loads((run_dir / "hosts" / "server.json").read_text())
    client = json.loads((run_dir / "hosts" / "client.json").read_text())
    build = server["agent_build"]
    assert build["where"] == builder and build["static"] is True and build["arch"] == os.uname().machine
    assert client["agent_build"]["where"] == "client" and client["agent_build"]["static"] is False
    # The namespaces share this machine's filesystem: the binary the server ran is the one recorded.
    binary = Path(server["agent_path"])
    assert hashlib.sha256(binary.read_bytes()).hexdigest() == build["sha256"]
    assert _is_static_elf(binary)
    version = subprocess.run([str(binary), "--version"], capture_output=True, text=True).stdout
    assert version.strip() == f"orchestrate-agent schema 1 source {server['agent_hash']}"
    manifest = (binary.parent / "manifest").read_text()
    assert f"sha256 {build['sha256']}\n" in manifest and f"where {builder}\n" in manifest
    log = (run_dir / "run.log").read_text()
    assert ("controller rc=0: CC=" in log) == (builder == "controller")
    assert ("STATIC=1 sh src/build.sh" in log) == (builder == "client")

    # Once more: the server's agent now comes from its cache, checked, not rebuilt or pushed.
    again = tmp_path / "again"
    assert main(["run", str(ROOT / "configs" / "smoke.yml"), "--inventory", str(lab_inventory),
                 "--results", str(again), "--no-report"]) == 0
    (second,) = again.iterdir()
    cached = json.loads((second / "hosts" / "server.json").read_text())["agent_build"]
    assert (cached["where"], cached["origin"], cached["sha256"]) == ("cached", builder, build["sha256"])


def _forget_cached_agents(inventory: Path) -> None:
    for role in ("server", "client"):
        work = Path(load_inventory(inventory).role(role).workdir) / "agents"
        if work.is_dir():
            subprocess.run(["rm", "-rf", str(work)], check=True)


def _is_static_elf(binary: Path) -> bool:
    """No PT_INTERP program header: the kernel runs it without a dynamic loader."""
    out = subprocess.run(["readelf", "-l", str(binary)], capture_output=True, text=True).stdout
    return "INTERP" not in out


@pytest.fixture(scope="module")
def site_lab_inventory(tmp_path_factory) -> Path:
    """A lab shaped like a real site: hosts behind a bastion, an unprivileged login whose
    workdirs are `~/...` paths, perf through sudo, and a server without a compiler."""
    prefix = PREFIX + "s"
    with running_lab(tmp_path_factory.mktemp("lab-site"), prefix, ("unshare", "useradd", "sudo", "setpriv"), bastion=True,
                     user=f"{prefix}user", sudo_perf=True, no_compiler=("server",)) as (inventory, _):
        yield inventory


def test_a_site_login_gets_a_private_workdir_in_its_home_and_a_pushed_agent(site_lab_inventory, tmp_path):
    results = tmp_path / "results"
    code = main(["run", str(ROOT / "configs" / "smoke.yml"), "--inventory", str(site_lab_inventory),
                 "--results", str(results), "--no-report"])
    (run_dir,) = results.iterdir()
    frame = read_results(run_dir / "results.csv")
    assert code == 0, frame[["cell_id", "error"]]
    assert len(frame) == 8 and (frame["status"] == "ok").all() and (frame["server_task_clock"] > 0).all()
    written = load_inventory(site_lab_inventory)
    assert written.server.jump is not None and written.server.workdir.startswith("~/")
    account = pwd.getpwnam(written.server.user)
    facts = json.loads((run_dir / "hosts" / "server.json").read_text())
    # `~/` was resolved on the host, to the login user's home; the saved inventory keeps `~/`.
    expected = Path(account.pw_dir) / written.server.workdir.removeprefix("~/")
    assert facts["agent_path"] == f"{expected}/agents/{facts['agent_hash']}-{os.uname().machine}/bin/agent"
    assert facts["agent_build"]["where"] == "controller" and facts["agent_build"]["static"] is True
    assert yaml.safe_load((run_dir / "inventory.yml").read_text())["server"]["workdir"] == written.server.workdir
    for path in (expected, expected / "agents", expected / "runs", expected / "runs" / run_dir.name):
        info = path.stat()
        assert (info.st_uid, stat.S_IMODE(info.st_mode)) == (account.pw_uid, 0o700), path
    # Written by the login user, not by whoever ran the orchestrator.
    agent = Path(facts["agent_path"])
    assert agent.stat().st_uid == account.pw_uid and stat.S_IMODE(agent.stat().st_mode) == 0o700
