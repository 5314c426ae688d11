"""How a cell runs perf per the inventory's perf_access: the command's shape, and (with a
throwaway unprivileged account and a sudoers rule for perf alone, on this machine) what
`sudo -n perf` does to the agent's identity, the raw files and a killed process group."""

from __future__ import annotations

import io
import os
import pwd
import shutil
import signal
import subprocess
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from orchestrator.run import cell as cells
from orchestrator.experiment.config import Experiment
from orchestrator.remote.deploy import Agent
from orchestrator.experiment.inventory import HostSpec
from orchestrator.rows.perfstat import load_perf_file
from orchestrator.experiment.plan import Cell

from ..conftest import require, require_root, require_tool

PREFIX = os.environ.get("ORCH_TEST_LAB_PREFIX", "orcht")
USER = f"{PREFIX}pa"[:31]
SUDOERS = Path("/etc/sudoers.d") / f"orchestrate-test-{PREFIX}"  # no '.': sudo would skip it
CELL = Cell(workload="stream", mode="one_copy", message_size=1024, threads=1, fields=1, sender="server",
            nodelay=True, sndbuf=0, rcvbuf=0, receive="copy", uring_buffers="plain", repetition=1)


@dataclass
class SpecHost:
    spec: HostSpec
    shell_startup: float = 0.0


def context(access: str, workdir: str, agent: str, scope: str = "process") -> cells.CellContext:
    experiment = Experiment.model_validate({
        "name": "t", "matrix": {"mode": ["one_copy"]}, "duration": "0.2s", "warmup": "0s",
        "perf": {"events": ["context-switches", "task-clock"], "scope": scope}})
    spec = HostSpec(host="local", workdir=workdir, perf_access=access)
    hosts = {role: SpecHost(spec) for role in ("server", "client")}
    agents = {role: Agent("0" * 16, agent) for role in ("server", "client")}
    return cells.CellContext("run-1", experiment, hosts, agents,  # type: ignore[arg-type]
                             {"server": ["context-switches", "task-clock"], "client": []})


def test_direct_and_user_only_run_perf_as_the_user():
    for access in ("direct", "user-only"):
        command = cells.agent_command(context(access, "/w", "/w/bin/agent"), CELL, "server")
        assert command.count("perf stat -x, -o server.perf.csv -e context-switches,task-clock -- /w/bin/agent server") == 1
        assert "sudo" not in command and "setpriv" not in command


def test_sudo_runs_perf_alone_as_root_and_keeps_the_command_shape():
    command = cells.agent_command(context("sudo", "/w", "/w/bin/agent", scope="system"), CELL, "server")
    gate, rest = command.split(" && { mkdir -p ", 1)
    assert gate == 'IFS= read -r go && [ "$go" = go ]'
    assert (": >server.perf.csv && sudo -n perf stat -x, -o server.perf.csv -e context-switches,task-clock -a -- "
            'setpriv --reuid="$(id -u)" --regid="$(id -g)" --init-groups --reset-env -- /w/bin/agent server ') in rest
    assert "</dev/null 2>server.stderr; rc=$?; df -Pk . " in rest  # the free room, then the files
    assert rest.endswith(f"{cells.FILES_MARKER}; tar -cf - server.*; exit $rc; }}; }}")
    # perf is off for the client: no sudo at all there
    assert "sudo" not in cells.agent_command(context("sudo", "/w", "/w/bin/agent"), CELL, "client")


# ---------------------------------------------------------------- a real unprivileged account


# Stand in for the agent: say READY, record who they run as, then work a little or wait.
# (Not told by the environment: setpriv --reset-env clears it, as it should.)
FAKE_AGENT = "#!/bin/sh\necho READY\nid -u > server.uid\nsleep {seconds}\n"


@pytest.fixture(scope="module")
def account():
    require_root()
    for tool in ("perf", "useradd", "userdel", "visudo", "setpriv"):
        require_tool(tool)
    require(shutil.which("sudo") is not None, "sudo is not installed (./bootstrap.sh test installs it)")
    subprocess.run(["userdel", "--remove", USER], capture_output=True)
    subprocess.run(["useradd", "--create-home", "--user-group", "--shell", "/bin/sh", USER], check=True)
    perf = shutil.which("perf", path="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
    rule = f"{USER} ALL=(root) NOPASSWD: {perf}\n"
    tmp = SUDOERS.with_name(SUDOERS.name + "-new")
    try:
        tmp.write_text(rule)
        tmp.chmod(0o440)
        subprocess.run(["visudo", "-c", "-q", "-f", str(tmp)], check=True)
        tmp.rename(SUDOERS)
        entry = pwd.getpwnam(USER)
        agents = {}
        for name, seconds in (("quick", "0.2"), ("long", "60")):
            agent = Path(entry.pw_dir) / f"fake-agent-{name}"
            agent.write_text(FAKE_AGENT.format(seconds=seconds))
            agent.chmod(0o755)
            os.chown(agent, entry.pw_uid, entry.pw_gid)
            agents[name] = str(agent)
        yield entry, agents
    finally:
        tmp.unlink(missing_ok=True)
        SUDOERS.unlink(missing_ok=True)
        subprocess.run(["pkill", "-KILL", "-u", USER], capture_output=True)
        time.sleep(0.2)
        subprocess.run(["userdel", "--remove", USER], capture_output=True)


def start_as(entry: pwd.struct_passwd, command: str) -> subprocess.Popen:
    """The command as the SSH user's shell would run it: that uid, its own process group."""
    return subprocess.Popen(
        ["sh", "-c", command], user=entry.pw_uid, group=entry.pw_gid, extra_groups=[], start_new_session=True,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=entry.pw_dir,
        env={"HOME": entry.pw_dir, "PATH": "/usr/bin:/bin"},
    )


def group_members(pgid: int) -> list[str]:
    out = subprocess.run(["ps", "-ww", "-o", "pid=,stat=,user=,args=", "-g", str(pgid)], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if line.split()[1][0] != "Z"]  # zombies are already gone


@pytest.mark.integration
def test_sudo_perf_counts_the_kernel_while_the_agent_runs_as_the_user(account, tmp_path):
    entry, agents = account
    ctx = context("sudo", f"{entry.pw_dir}/work", agents["quick"])
    process = start_as(entry, cells.agent_command(ctx, CELL, "server"))
    out, err = process.communicate(b"go\n", timeout=60)
    assert process.returncode == 0, err.decode()
    before, marker, archive = out.partition(f"\n{cells.FILES_MARKER}\n".encode())
    assert marker and b"READY" in before
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:  # tarred by the user: every file readable
        tar.extractall(tmp_path, filter="data")
    assert (tmp_path / "server.uid").read_text().strip() == str(entry.pw_uid)  # not root
    folder = Path(ctx.remote_dir("server", CELL))
    assert (folder / "server.perf.csv").stat().st_uid == entry.pw_uid
    counters = load_perf_file(tmp_path / "server.perf.csv")
    # Whole counts: no `:u` fallback under sudo, and scheduler events are counted.
    assert set(counters) == {"context-switches", "task-clock"}
    assert counters["context-switches"].value >= 1 and counters["task-clock"].value > 0


@pytest.mark.integration
def test_killing_the_process_group_as_the_user_ends_sudo_perf_and_the_agent(account):
    entry, agents = account
    ctx = context("sudo", f"{entry.pw_dir}/work-kill", agents["long"])
    process = start_as(entry, cells.agent_command(ctx, CELL, "server"))
    try:
        process.stdin.write(b"go\n")
        process.stdin.close()
        assert process.stdout.readline().strip() == b"READY"
        members = group_members(process.pid)
        assert any(" root " in m and "perf stat" in m for m in members), members
        assert any(f" {USER} " in m and "fake-agent-long server" in m for m in members), members
        # The user may not signal root's sudo and perf, only its own processes; that is enough:
        # the agent dies, perf sees its child end, sudo follows.
        killer = subprocess.run(["setpriv", f"--reuid={entry.pw_uid}", f"--regid={entry.pw_gid}", "--clear-groups",
                                 "kill", "-TERM", "--", f"-{process.pid}"], capture_output=True, text=True)
        assert killer.returncode == 0, killer.stderr
        process.wait(10)
        deadline = time.monotonic() + 10
        while group_members(process.pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert group_members(process.pid) == []
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
