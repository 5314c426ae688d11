"""The remote workdir on real hosts (this machine, and a real sshd on loopback), as root like CI:
a workdir or an agent someone else planted is refused, and nothing in it ever runs."""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
import stat
from pathlib import Path

import pytest
import yaml

from orchestrator.remote import deploy, workdir
from orchestrator.errors import UnsafeWorkdir
from orchestrator.remote.hosts import LocalHost, connect
from orchestrator.experiment.inventory import HostSpec

from ..conftest import ROOT, require_root, require_tool
from ..sshd import start_sshd
from ..cli.test_cli import orchestrate

pytestmark = pytest.mark.integration

NOBODY = 65534
DIGEST = deploy.source_hash()
FOLDER = deploy.agent_folder(DIGEST, os.uname().machine)  # agents/<hash>-<arch>


@pytest.fixture(scope="module")
def sshd(tmp_path_factory):
    server = start_sshd(tmp_path_factory.mktemp("sshd"))
    yield server
    server.stop()


@pytest.fixture(params=["local", "ssh"])
def make_host(request):
    """A function giving a host of each kind with a given workdir."""
    require_root()
    opened = []

    def make(workdir_path: str):
        if request.param == "local":
            return LocalHost("server", HostSpec(host="local", workdir=workdir_path))
        entry = request.getfixturevalue("sshd").inventory_entry(workdir_path)
        host = connect("server", HostSpec(**entry), connect_timeout=5)
        opened.append(host)
        return host

    yield make
    for host in opened:
        host.close()


def plant(workdir_path: Path, marker: Path, manifest: bool = True) -> Path:
    """What an attacker leaves: an `agent` that would touch `marker`, claims to be ours, and
    (if `manifest`) a manifest with its true sha256."""
    bin_dir = workdir_path / FOLDER / "bin"
    bin_dir.mkdir(parents=True)
    agent = bin_dir / "agent"
    agent.write_text(f"#!/bin/sh\ntouch {marker}\necho 'orchestrate-agent schema 1 source {DIGEST}'\n")
    agent.chmod(0o755)
    if manifest:
        sha = hashlib.sha256(agent.read_bytes()).hexdigest()
        (bin_dir / "manifest").write_text(f"sha256 {sha}\nsource {DIGEST}\nwhere server\narch {os.uname().machine}\n")
    return agent


def chown_tree(path: Path, uid: int) -> None:
    for root, dirs, files in os.walk(path):
        for name in [root, *(os.path.join(root, n) for n in dirs + files)]:
            os.chown(name, uid, uid)


def test_home_is_resolved_on_the_host_and_the_workdir_made_private(make_host):
    name = f".cache/orchestrate-test-{secrets.token_hex(4)}"
    host = make_host(f"~/{name}")
    try:
        found, _ = workdir.check(host, 10, dirs=["agents"])
        assert found.ok, found.problems
        home = host.run("echo $HOME", 10).stdout.strip()
        assert found.workdir == f"{home}/{name}"
        assert stat.S_IMODE(os.stat(found.workdir).st_mode) == 0o700
        assert stat.S_IMODE(os.stat(f"{found.workdir}/agents").st_mode) == 0o700
        workdir.adopt(host, found)
        assert host.spec.workdir == found.workdir
    finally:
        shutil.rmtree(Path(os.path.expanduser("~")) / name, ignore_errors=True)


def test_a_symlinked_workdir_is_refused(make_host, tmp_path):
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    (tmp_path / "link").symlink_to(real)
    host = make_host(str(tmp_path / "link"))
    with pytest.raises(UnsafeWorkdir, match=r"link is a symlink"):
        deploy.deploy(host, 30)
    assert list(real.iterdir()) == []  # nothing made through the link


def test_a_symlinked_agents_folder_is_refused(make_host, tmp_path):
    work, elsewhere = tmp_path / "work", tmp_path / "elsewhere"
    work.mkdir(mode=0o700)
    elsewhere.mkdir(mode=0o700)
    (work / "agents").symlink_to(elsewhere)
    with pytest.raises(UnsafeWorkdir, match=r"agents is a symlink"):
        deploy.deploy(make_host(str(work)), 30)
    assert list(elsewhere.iterdir()) == []


def test_a_workdir_of_another_user_with_a_planted_agent_is_refused_and_nothing_runs(make_host, tmp_path):
    work, marker = tmp_path / "work", tmp_path / "marker"
    work.mkdir()
    plant(work, marker)
    chown_tree(work, NOBODY)
    work.chmod(0o777)
    with pytest.raises(UnsafeWorkdir, match=r"owned by uid 65534"):
        deploy.deploy(make_host(str(work)), 30)
    assert not marker.exists()


def test_a_planted_agent_owned_by_another_user_in_our_workdir_is_refused(make_host, tmp_path):
    work, marker = tmp_path / "work", tmp_path / "marker"
    work.mkdir(mode=0o700)
    agent = plant(work, marker)
    os.chown(agent, NOBODY, NOBODY)
    with pytest.raises(UnsafeWorkdir, match=r"bin/agent is owned by uid 65534"):
        deploy.deploy(make_host(str(work)), 30)
    assert not marker.exists()


def test_a_group_writable_hash_folder_is_refused(make_host, tmp_path):
    work, marker = tmp_path / "work", tmp_path / "marker"
    work.mkdir(mode=0o700)
    plant(work, marker)
    (work / FOLDER).chmod(0o775)
    with pytest.raises(UnsafeWorkdir, match=r"writable by group or others"):
        deploy.deploy(make_host(str(work)), 30)
    assert not marker.exists()


def test_an_agent_without_our_manifest_is_rebuilt_never_run(make_host, tmp_path):
    require_tool("cc")
    work, marker = tmp_path / "work", tmp_path / "marker"
    work.mkdir(mode=0o700)
    planted = plant(work, marker, manifest=False)
    agent = deploy.deploy(make_host(str(work)), 120)
    assert not marker.exists()
    assert agent.build is not None and agent.build.where == "server"
    built = Path(agent.path)
    assert built == planted and b"touch" not in built.read_bytes()
    assert hashlib.sha256(built.read_bytes()).hexdigest() == agent.build.sha256


def test_a_run_on_a_planted_workdir_exits_3_and_runs_nothing(tmp_path):
    require_root()
    work, marker = tmp_path / "work", tmp_path / "marker"
    work.mkdir()
    plant(work, marker)
    chown_tree(work, NOBODY)
    work.chmod(0o777)
    inventory = tmp_path / "inventory.yml"
    inventory.write_text(yaml.safe_dump({"server": {"host": "local", "workdir": str(work)},
                                         "client": {"host": "local", "workdir": str(work)}}))
    done = orchestrate("run", str(ROOT / "configs" / "smoke.yml"), "--inventory", str(inventory),
                       "--results", str(tmp_path / "results"), "--no-report", cwd=tmp_path)
    assert done.returncode == 3, done.stderr
    message = " ".join(done.stderr.split())
    assert f"workdir {work} refused" in message and "owned by uid 65534" in message
    assert "Traceback" not in done.stderr
    assert not marker.exists()
    assert not (work / "runs").exists()  # nothing made inside it either


# ---------------------------------------------------------------- room

def test_room_is_read_from_dfs_figures_whatever_the_names_around_them():
    from orchestrator.experiment.config import Experiment

    # Recorded `df -Pk` lines (a filled 64 KiB tmpfs; this machine's root), and one whose
    # filesystem and mount point hold spaces.
    assert workdir.parse_room("READY 1.2.3.4 5\n@@orchestrate-room tmpfs                   64    64         0     100% /tmp/hf_t\n") == 0
    assert workdir.parse_room("@@orchestrate-room /dev/vda         264212084 26297088  80093824      25% /") == 80093824
    assert workdir.parse_room("@@orchestrate-room my disk 1000 400 600 40% /mnt/a b 7") == 600
    assert workdir.parse_room("no df here\n") is None
    small = Experiment.model_validate({"name": "t", "matrix": {"mode": ["one_copy"]}, "duration": "1s"})
    large = Experiment.model_validate({"name": "t", "matrix": {"threads": [1, 64]}, "duration": "60s", "interval": "0.1s"})
    # Both roles' host counters (256 KiB each) and 512 bytes per connection and interval (plus one).
    assert workdir.cell_files_kib(small) == 2 * (256 + 8) + 2  # 2 intervals + 1 sample each
    assert workdir.cell_files_kib(large) == 2 * (256 + 8) + 64 * 601
    assert workdir.room_needed_kib(large) == 4 * workdir.cell_files_kib(large)
