"""The namespace lab, built for real: namespaces, veths, sshd, SSH with strict host keys.

Each test session uses prefixes of its own (with the pid in them), so it neither touches a
user's lab nor clashes with another test run on the same machine.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import fabric
import paramiko
import pytest
import yaml

from ..conftest import require, require_root
from orchestrator import lab
from orchestrator.lab import build, pids, tools
from orchestrator.errors import LabError
from orchestrator.experiment.inventory import load_inventory
from orchestrator.processes import KILL_GRACE

from ..remote.test_hosts import _gone, _members, _token

# Every lab prefix is derived from ORCH_TEST_LAB_PREFIX when it is set (each helper or CI job
# has its own), else from the pid: a test never touches a user's lab or another session's.
_BASE = os.environ.get("ORCH_TEST_LAB_PREFIX") or f"t{os.getpid() % 100000}"
TAG = _BASE[:10]


def _require_lab() -> None:
    require_root()
    for tool, package in (("ip", "iproute2"), ("tc", "iproute2"), ("sshd", "openssh-server"), ("ssh-keygen", "openssh-client"),
                          ("ssh", "openssh-client")):
        require(shutil.which(tool, path=tools.TOOL_PATH) is not None, f"`{tool}` missing; install {package}")


def _netns() -> set[str]:
    out = subprocess.run(["ip", "-j", "netns", "list"], capture_output=True, text=True, check=True).stdout
    return {n["name"] for n in json.loads(out)} if out.strip() else set()


def _link_json(ifname: str, netns: str | None = None) -> list[dict]:
    argv = ["ip", "-j", *(["-n", netns] if netns else []), "link", "show", "dev", ifname]
    proc = subprocess.run(argv, capture_output=True, text=True)
    return json.loads(proc.stdout) if proc.returncode == 0 and proc.stdout.strip() else []


def _qdisc_text(netns: str) -> str:
    return subprocess.run(["tc", "-n", netns, "qdisc", "show", "dev", "data0"], capture_output=True, text=True, check=True).stdout


def _ssh(spec: dict, known_hosts: str) -> fabric.Connection:
    """The connection the orchestrator's SSH layer makes: lab key only, lab known_hosts only, strict."""
    conn = fabric.Connection(
        spec["host"], user=spec["user"], port=spec["port"], connect_timeout=10,
        connect_kwargs={"key_filename": [spec["key"]], "look_for_keys": False, "allow_agent": False},
    )
    conn.client.set_missing_host_key_policy(paramiko.RejectPolicy())
    conn.client.load_host_keys(known_hosts)
    return conn


@pytest.fixture(scope="module")
def lab_opts(tmp_path_factory) -> Iterator[lab.LabOptions]:
    _require_lab()
    opts = lab.LabOptions(prefix=f"o{TAG}", inventory_path=tmp_path_factory.mktemp("lab") / "lab-inventory.yml")
    try:
        lab.up(opts)
        yield opts
    finally:
        lab.down(opts)


@pytest.fixture
def plain(lab_opts) -> Iterator[lab.LabOptions]:
    """The shared lab, put back to default link options after a test changes them."""
    yield lab_opts
    lab.up(lab_opts)


def _inventory(opts: lab.LabOptions) -> dict:
    return yaml.safe_load(opts.resolved_inventory_path.read_text())


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"prefix": "a-prefix-too-long"}, "15 characters"),
        ({"prefix": "Bad_Name"}, "a-z"),
        ({"mtu": 40}, "MTU"),
        ({"delay_ms": -1.0}, "delay"),
        ({"rate_mbit": 0.0}, "rate"),
        ({"mgmt_index": 500}, "index"),
    ],
)
def test_options_are_checked_before_anything_is_built(kwargs, message):
    with pytest.raises(LabError, match=message):
        lab.LabOptions(**kwargs)


@pytest.mark.integration
@pytest.mark.lab
def test_up_builds_every_part_and_status_reports_it(lab_opts):
    st = lab.status(lab_opts)
    assert st.ok, st.rows
    kinds = sorted(r.kind for r in st.rows)
    assert kinds == sorted(["state", "inventory", "ssh_config"] + ["namespace", "data link", "mgmt link", "sshd"] * 2)
    assert {f"{lab_opts.prefix}-server", f"{lab_opts.prefix}-client"} <= _netns()
    assert "198.18.0.1/24" in st.row(f"{lab_opts.prefix}-server/data0").detail
    assert "198.18.0.2/24" in st.row(f"{lab_opts.prefix}-client/data0").detail
    assert st.row(f"sshd {lab_opts.prefix}-server").detail.split(", ")[1].startswith("198.19.")
    assert "SSH-2.0-" in st.row(f"sshd {lab_opts.prefix}-client").detail
    assert st.inventory_path == lab_opts.resolved_inventory_path

    # The inventory is the documented format, and the project's own loader accepts it.
    doc = _inventory(lab_opts)
    assert doc["server"]["data_address"] == "198.18.0.1" and doc["client"]["data_address"] == "198.18.0.2"
    assert doc["server"]["workdir"] != doc["client"]["workdir"]
    assert all(Path(doc[r][k]).is_file() for r in ("server", "client") for k in ("key", "known_hosts"))
    inventory = load_inventory(lab_opts.resolved_inventory_path)
    assert inventory.server.host == doc["server"]["host"] and inventory.server.user == "root"
    # Private files stay private; the user's own SSH files are not used.
    assert (lab_opts.resolved_state_dir.stat().st_mode & 0o077) == 0
    assert "/root/.ssh" not in (lab_opts.resolved_state_dir / "server" / "sshd_config").read_text()


@pytest.mark.integration
@pytest.mark.lab
def test_ssh_reaches_each_namespace_with_strict_host_keys(lab_opts, tmp_path):
    doc = _inventory(lab_opts)
    for role, mine, other in (("server", "198.18.0.1", "198.18.0.2"), ("client", "198.18.0.2", "198.18.0.1")):
        spec = doc[role]
        with _ssh(spec, spec["known_hosts"]) as conn:
            out = conn.run("ip -o -4 addr show", hide=True, in_stream=False).stdout
        assert f"inet {mine}/24" in out, out
        assert other not in out, out
        assert f"inet {spec['host']}/30" in out

    # The lab's ssh_config names every namespace; OpenSSH and the inventory loader both take it.
    config = lab.status(lab_opts).ssh_config_path
    assert config == lab_opts.resolved_state_dir / "ssh_config" and "ProxyJump" not in config.read_text()
    proc = subprocess.run(["ssh", "-F", str(config), "-o", "BatchMode=yes", f"{lab_opts.prefix}-client", "ip -o -4 addr"],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0 and "inet 198.18.0.2/24" in proc.stdout, proc.stderr
    aliases = tmp_path / "aliases.yml"
    aliases.write_text(yaml.safe_dump({
        "ssh_config": str(config),
        "server": {"host": f"{lab_opts.prefix}-server", "data_address": "198.18.0.1", "workdir": "/tmp/a"},
        "client": {"host": f"{lab_opts.prefix}-client", "data_address": "198.18.0.2", "workdir": "/tmp/b"},
    }))
    assert load_inventory(aliases).ssh_config == str(config)

    # The check is real: with a known_hosts that lacks the host, the connection is refused.
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    with pytest.raises(paramiko.SSHException, match="not found in known_hosts"):
        _ssh(doc["server"], str(empty)).open()
    # And a different key under the server's name is a mismatch, not a silent accept.
    client_key_as_server = (Path(doc["server"]["known_hosts"]).read_text().splitlines()[1]
                            .replace(doc["client"]["host"], doc["server"]["host"]))
    empty.write_text(client_key_as_server + "\n")
    with pytest.raises(paramiko.BadHostKeyException):
        _ssh(doc["server"], str(empty)).open()


@pytest.mark.integration
@pytest.mark.lab
def test_tcp_crosses_the_data_link(lab_opts):
    server_ns, client_ns = f"{lab_opts.prefix}-server", f"{lab_opts.prefix}-client"
    listener = textwrap.dedent(
        """
        import socket
        s = socket.create_server(("198.18.0.1", 0))
        print(s.getsockname()[1], flush=True)
        c, peer = s.accept()
        data = c.recv(64)
        c.sendall(data.upper())
        print(peer[0], data.decode(), flush=True)
        """
    )
    server = subprocess.Popen(["ip", "netns", "exec", server_ns, sys.executable, "-c", listener],
                              stdout=subprocess.PIPE, text=True)
    try:
        port = server.stdout.readline().strip()
        dialer = ("import socket,sys; c=socket.create_connection(('198.18.0.1', int(sys.argv[1])), timeout=5);"
                  "c.sendall(b'hello'); print(c.recv(64).decode())")
        reply = subprocess.run(["ip", "netns", "exec", client_ns, sys.executable, "-c", dialer, port],
                               capture_output=True, text=True, timeout=20, check=True).stdout.strip()
        assert reply == "HELLO"
        assert server.stdout.readline().split() == ["198.18.0.2", "hello"]
    finally:
        server.kill()
        server.wait()


@pytest.mark.integration
@pytest.mark.lab
def test_up_again_changes_nothing(lab_opts):
    before = lab.status(lab_opts)
    state_dir = lab_opts.resolved_state_dir
    keys = {p.name: p.read_bytes() for p in state_dir.rglob("*key*")}
    inventory = lab_opts.resolved_inventory_path.read_text()

    again = lab.up(lab_opts)

    assert again.ok
    # Same sshd processes (details carry the pids), same keys, same inventory, one of everything.
    assert [r for r in again.rows if r.kind == "sshd"] == [r for r in before.rows if r.kind == "sshd"]
    assert {p.name: p.read_bytes() for p in state_dir.rglob("*key*")} == keys
    assert lab_opts.resolved_inventory_path.read_text() == inventory
    assert len(again.rows) == len(before.rows)
    for role in ("s", "c"):
        assert len(_link_json(f"{lab_opts.prefix}-m{role}")) == 1


def _sshd_pids(st: lab.LabStatus) -> dict[str, int]:
    return {r.name: int(r.detail.split()[1].rstrip(",")) for r in st.rows if r.kind == "sshd" and r.state == "ok"}


@pytest.mark.integration
@pytest.mark.lab
def test_up_repairs_a_damaged_lab(plain):
    server_ns, client_ns = f"{plain.prefix}-server", f"{plain.prefix}-client"
    old = _sshd_pids(lab.status(plain))
    os.kill(old[f"sshd {server_ns}"], signal.SIGKILL)
    subprocess.run(["ip", "netns", "del", client_ns], check=True)

    damaged = lab.status(plain)
    assert damaged.row(client_ns).state == "missing"
    assert damaged.row(f"sshd {server_ns}").state == "missing"
    assert not damaged.ok

    repaired = lab.up(plain)
    assert repaired.ok
    new = _sshd_pids(repaired)
    assert set(new.values()).isdisjoint(old.values())
    # The client's old sshd, orphaned in its deleted namespace, was stopped rather than leaked.
    assert not pids.alive(old[f"sshd {client_ns}"])


@pytest.mark.integration
@pytest.mark.lab
def test_mtu_and_rate_take_effect_and_revert(plain):
    shaped = replace(plain, mtu=9000, rate_mbit=100)
    st = lab.up(shaped)
    assert st.ok
    for role in ("server", "client"):
        netns = f"{plain.prefix}-{role}"
        assert _link_json("data0", netns)[0]["mtu"] == 9000
        qdisc = _qdisc_text(netns)
        assert "tbf" in qdisc and "rate 100Mbit" in qdisc, qdisc

    st = lab.up(plain)
    assert st.ok
    for role in ("server", "client"):
        netns = f"{plain.prefix}-{role}"
        assert _link_json("data0", netns)[0]["mtu"] == 1500
        assert "tbf" not in _qdisc_text(netns)


def _kernel_has_netem() -> bool:
    """Asked of the kernel directly, in a scratch namespace, independently of the lab code."""
    scratch = f"n{TAG}-probe"
    subprocess.run(["ip", "netns", "add", scratch], check=True)
    try:
        subprocess.run(["ip", "-n", scratch, "link", "set", "lo", "up"], check=True)
        return subprocess.run(["tc", "-n", scratch, "qdisc", "add", "dev", "lo", "root", "netem", "delay", "1ms"],
                              capture_output=True).returncode == 0
    finally:
        subprocess.run(["ip", "netns", "del", scratch], check=True)


@pytest.mark.integration
@pytest.mark.lab
def test_delay_uses_netem_or_is_refused_clearly(plain):
    delayed = replace(plain, delay_ms=20, rate_mbit=50)
    if _kernel_has_netem():
        assert lab.up(delayed).ok
        for role in ("server", "client"):
            qdisc = _qdisc_text(f"{plain.prefix}-{role}")
            assert "netem" in qdisc and "delay 20ms" in qdisc and "rate 50Mbit" in qdisc, qdisc
    else:
        # Kernels built without sch_netem (this project's CI VM is one) cannot delay; the lab
        # must say so and leave the running lab as it was recorded.
        with pytest.raises(LabError, match="netem"):
            lab.up(delayed)
        assert lab.up(plain).ok


@pytest.mark.integration
@pytest.mark.lab
def test_down_removes_everything_including_stray_processes(lab_opts, tmp_path):
    # A second lab beside the shared one also shows that labs get separate management subnets.
    opts = lab.LabOptions(prefix=f"d{TAG}", inventory_path=tmp_path / "inv.yml")
    stray = None
    try:
        st = lab.up(opts)
        assert st.ok
        ours, theirs = _inventory(opts), _inventory(lab_opts)
        assert ours["server"]["host"] != theirs["server"]["host"]
        sshd_pids = list(_sshd_pids(st).values())
        # An agent someone forgot: down must end it too.
        stray = subprocess.Popen(["ip", "netns", "exec", f"{opts.prefix}-client", "sleep", "300"])
        workdirs = [Path(ours[r]["workdir"]) for r in ("server", "client")]
        (workdirs[0] / "leftover.json").write_text("{}")
    finally:
        removed = lab.down(opts)

    assert f"namespace {opts.prefix}-server" in removed and f"file {opts.inventory_path}" in removed
    assert stray.wait(timeout=5) != 0
    assert not {f"{opts.prefix}-server", f"{opts.prefix}-client"} & _netns()
    assert not _link_json(f"{opts.prefix}-ms") and not _link_json(f"{opts.prefix}-mc")
    for pid in sshd_pids:
        assert not pids.alive(pid)
    assert not opts.resolved_state_dir.exists()
    assert not opts.resolved_inventory_path.exists()
    assert not any(w.exists() for w in workdirs)
    assert not lab.status(opts).exists
    assert lab.down(opts) == []
    # The shared lab next door is untouched.
    assert lab.status(lab_opts).ok


@pytest.mark.integration
@pytest.mark.lab
def test_up_refuses_a_foreign_inventory_and_leaves_nothing(tmp_path):
    _require_lab()
    mine = tmp_path / "inventory.yml"
    mine.write_text("server: {host: example}\n")
    opts = lab.LabOptions(prefix=f"f{TAG}", inventory_path=mine)
    try:
        with pytest.raises(LabError, match="not written by this lab"):
            lab.up(opts)
        assert mine.read_text() == "server: {host: example}\n"
        assert not {f"{opts.prefix}-server", f"{opts.prefix}-client"} & _netns()
        assert not opts.resolved_state_dir.exists()
    finally:
        lab.down(opts)


@pytest.mark.integration
@pytest.mark.lab
def test_non_root_is_told_it_needs_root():
    _require_lab()
    nobody = pwd.getpwnam("nobody")
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child drops root for good, then asks for the lab
        try:
            os.close(read_end)
            os.setgid(nobody.pw_gid)
            os.setuid(nobody.pw_uid)
            try:
                lab.status(lab.LabOptions(prefix=f"n{TAG}"))
                message = "no error"
            except LabError as e:
                message = f"LabError: {e}"
            os.write(write_end, message.encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end) as f:
        message = f.read()
    os.waitpid(pid, 0)
    assert message.startswith("LabError: the lab needs root"), message


@pytest.mark.integration
def test_a_lab_command_that_hangs_is_ended_with_its_whole_group(tmp_path):
    """The lab runs its commands as a local host does (processes.run_local): at the timeout the
    whole process group goes, a background child included, and the error names the command."""
    token = _token()
    started = time.monotonic()
    with pytest.raises(LabError, match=r"`sh -c .*` did not finish within 0\.5 s"):
        tools.run(["sh", "-c", f"echo $$ > {tmp_path}/pgid; sleep 30{token} & sleep 31{token}"], timeout=0.5)
    assert time.monotonic() - started < 0.5 + KILL_GRACE + 3
    pgid = int((tmp_path / "pgid").read_text())
    assert pgid > 1
    assert _gone(pgid, token), f"process group {pgid} still has {_members(pgid)}"


def test_a_lab_command_gives_its_status_and_output():
    proc = tools.run(["sh", "-c", "echo out; echo err >&2; exit 3"], check=False)
    assert (proc.returncode, proc.stdout, proc.stderr) == (3, "out\n", "err\n")
    with pytest.raises(LabError, match=r"failed: err"):
        tools.run(["sh", "-c", "echo err >&2; exit 3"])


# ---------------------------------------------------------------- a lab that looks like a real site


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"sudo_perf": True}, "needs --user"),
        ({"user": "root"}, "not root"),
        ({"user": "Bad User"}, "lab user"),
        ({"user": "-x"}, "lab user"),
        ({"no_compiler": ("bastion",)}, "--no-compiler takes server or client"),
        ({"chatty": True}, "--chatty needs --user"),
        ({"user": "bench", "shell": "zsh; id"}, "--shell takes bash or sh"),
    ],
)
def test_site_options_are_checked_before_anything_is_built(kwargs, message):
    with pytest.raises(LabError, match=message):
        lab.LabOptions(**kwargs)


def test_no_compiler_roles_have_one_spelling():
    assert lab.LabOptions(no_compiler=("client", "server", "client")).no_compiler == ("server", "client")


def test_cli_flags_reach_the_lab_options(monkeypatch, tmp_path):
    from orchestrator.cli import commands, parser, terminal

    seen = []
    monkeypatch.setattr(lab, "status", lambda opts: (seen.append(opts), lab.LabStatus(opts.prefix, tmp_path, None))[1])
    args = parser.build_parser().parse_args(["lab", "status", "--prefix", "x", "--bastion", "--user", "bob",
                                          "--sudo-perf", "--no-compiler", "server", "--no-compiler", "client"])
    assert commands.cmd_lab(args, terminal.Terminal.over(io.StringIO(), io.StringIO())) == 0
    assert (seen[0].bastion, seen[0].user, seen[0].sudo_perf, seen[0].no_compiler) == (True, "bob", True, ("server", "client"))


def _site_user(prefix: str) -> str:
    return f"{prefix.replace('-', '')}u"


def _require_site() -> None:
    _require_lab()
    for tool, package in (("useradd", "passwd"), ("visudo", "sudo"), ("sudo", "sudo"), ("perf", "linux-perf"),
                          ("unshare", "util-linux")):
        require(shutil.which(tool, path=tools.TOOL_PATH) is not None, f"`{tool}` missing; install {package}")


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Iterator[lab.LabOptions]:
    """One lab with every site option: bastion, an unprivileged user with sudo for perf, and a
    server without compilers (the client keeps them)."""
    _require_site()
    prefix = f"s{TAG}"
    opts = lab.LabOptions(prefix=prefix, inventory_path=tmp_path_factory.mktemp("site") / "lab-inventory.yml",
                          bastion=True, user=_site_user(prefix), sudo_perf=True, no_compiler=("server",))
    try:
        lab.up(opts)
        yield opts
    finally:
        lab.down(opts)


def _strict_client(known_hosts: str) -> paramiko.SSHClient:
    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    client.load_host_keys(known_hosts)
    return client


def _connect(client: paramiko.SSHClient, spec: dict, sock=None) -> None:
    client.connect(spec["host"], port=spec["port"], username=spec["user"], key_filename=spec["key"],
                   look_for_keys=False, allow_agent=False, timeout=10, banner_timeout=10, auth_timeout=10, sock=sock)


@contextlib.contextmanager
def _through_bastion(spec: dict) -> Iterator[paramiko.SSHClient]:
    """The host behind the bastion, by hand: SSH to the bastion, a direct-tcpip channel from
    there to the host's sshd, and SSH over that channel; host keys checked strictly at both."""
    jump = spec["jump"]
    bastion = _strict_client(jump["known_hosts"])
    host = _strict_client(spec["known_hosts"])
    try:
        _connect(bastion, jump)
        channel = bastion.get_transport().open_channel(
            "direct-tcpip", (spec["host"], spec["port"]), ("127.0.0.1", 0), timeout=10)
        _connect(host, spec, sock=channel)
        yield host
    finally:
        host.close()
        bastion.close()


def _run_on(client: paramiko.SSHClient, command: str) -> tuple[int, str, str]:
    stdin, stdout, stderr = client.exec_command(command, timeout=30)
    stdin.close()
    out, err = stdout.read().decode(), stderr.read().decode()
    return stdout.channel.recv_exit_status(), out, err


@pytest.mark.integration
@pytest.mark.lab
def test_bastion_is_the_only_way_to_the_hosts(site):
    doc = _inventory(site)
    inventory = load_inventory(site.resolved_inventory_path)  # the project's own loader accepts it
    assert inventory.server.jump is not None and inventory.server.jump == inventory.client.jump
    bastion = doc["server"]["jump"]["host"]
    assert bastion.startswith("198.19.")

    for role, mine in (("server", "198.18.0.1"), ("client", "198.18.0.2")):
        spec = doc[role]
        # From the root namespace the host's sshd is not there, and the attempt fails at once.
        started = time.monotonic()
        with pytest.raises(OSError):
            socket.create_connection((spec["host"], 22), timeout=5).close()
        assert time.monotonic() - started < 2
        # Through the bastion it is.
        with _through_bastion(spec) as host:
            status, out, _ = _run_on(host, "ip -o -4 addr")
        assert status == 0 and f"inet {mine}/24" in out, out
        assert "198.19." not in out, out  # no management link into the host

    # The bastion itself is reachable directly, and only it.
    with _strict_client(doc["server"]["known_hosts"]) as client:
        _connect(client, doc["server"]["jump"])
        status, out, _ = _run_on(client, "ip -o -4 addr")
    assert f"inet {bastion}/30" in out and "198.18.0." not in out

    # The ssh_config the inventory names works with OpenSSH itself (ProxyJump, strict host keys).
    ssh_config = site.ssh_config_path
    header = site.resolved_inventory_path.read_text().splitlines()[1]
    assert str(ssh_config) in header and lab.status(site).ssh_config_path == ssh_config
    text = ssh_config.read_text()
    for name in ("bastion", "server", "client"):
        assert f"Host {site.prefix}-{name}\n" in text
    assert text.count(f"ProxyJump {site.prefix}-bastion") == 2
    proc = subprocess.run(["ssh", "-F", str(ssh_config), "-o", "BatchMode=yes", f"{site.prefix}-server", "ip -o -4 addr"],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0 and "inet 198.18.0.1/24" in proc.stdout, proc.stderr


@pytest.mark.integration
@pytest.mark.lab
def test_the_lab_user_logs_in_unprivileged_with_a_private_workdir_per_role(site):
    doc = _inventory(site)
    assert doc["server"]["user"] == doc["client"]["user"] == site.user
    workdirs = {doc[r]["workdir"] for r in ("server", "client")}
    assert len(workdirs) == 2 and all(w.startswith("~/") for w in workdirs)
    account = pwd.getpwnam(site.user)
    assert account.pw_uid != 0 and Path(account.pw_dir).is_dir()
    # The lab leaves creating the workdir to whoever runs there.
    assert not any((Path(account.pw_dir) / w[2:]).exists() for w in workdirs)
    with _through_bastion(doc["client"]) as host:
        status, out, _ = _run_on(host, "id -u; id -un; echo $HOME")
    assert status == 0
    uid, name, home = out.split()
    assert int(uid) == account.pw_uid != 0 and name == site.user and home == account.pw_dir
    row = lab.status(site).row(f"user {site.user}")
    assert row.state == "ok" and f"uid {account.pw_uid}" in row.detail


@pytest.mark.integration
@pytest.mark.lab
def test_sudo_runs_perf_and_nothing_else(site):
    doc = _inventory(site)
    assert doc["server"]["perf_access"] == doc["client"]["perf_access"] == "sudo"
    sudoers = Path(f"/etc/sudoers.d/orchestrate-lab-{site.prefix}")
    assert oct(sudoers.stat().st_mode & 0o777) == "0o440"
    with _through_bastion(doc["server"]) as host:
        status, _, err = _run_on(host, "sudo -n perf stat -e task-clock -- true")
        assert status == 0 and "task-clock" in err, err
        status, out, err = _run_on(host, "sudo -n id")
        assert status != 0 and "uid=0" not in out and "password is required" in err, (out, err)
        status, out, err = _run_on(host, "sudo -n true")
        assert status != 0, (out, err)


@pytest.mark.integration
@pytest.mark.lab
def test_a_no_compiler_host_has_no_compiler_and_the_rest_of_usr_bin(site):
    doc = _inventory(site)
    probe = "for c in cc gcc clang c89 c99 tcc c++ g++ gcc-12 clang-14 x86_64-linux-gnu-gcc; do command -v $c; done"
    with _through_bastion(doc["server"]) as host:
        assert _run_on(host, probe)[1] == ""
        assert _run_on(host, "gcc --version")[0] != 0
        assert _run_on(host, "ls /usr/lib/llvm-*/bin/clang /usr/lib/gcc/*/*/cc1 2>/dev/null")[1] == ""
        # Every versioned and cross name too, wherever a session would look for one.
        listing = _run_on(host, "ls /usr/bin /usr/local/bin")[1].split()
        assert "tar" in listing and "perf" in listing
        assert [n for n in listing if re.search(r"(^|-)(gcc|g\+\+|clang)($|-)|^(cc|c\+\+|c89|c99|tcc)$", n)] == []
        for tool in ("perf --version", "tar --version", "sh -c true", "ip -V", "sudo -V"):
            assert _run_on(host, tool)[0] == 0, tool
    with _through_bastion(doc["client"]) as host:
        assert _run_on(host, "command -v cc")[1].strip()
        status, _, err = _run_on(host, "printf 'int main(void){return 0;}\\n' | cc -x c -o /dev/null -")
        assert status == 0, err
    st = lab.status(site)
    assert st.row(f"compilers {site.prefix}-server").state == "ok"
    assert not [r for r in st.rows if r.name == f"compilers {site.prefix}-client"]
    # The hiding is sshd's own: the machine outside still has its compilers.
    assert shutil.which("cc") is not None


@pytest.mark.integration
@pytest.mark.lab
def test_site_lab_up_again_changes_nothing_and_repairs(site):
    before = lab.status(site)
    assert before.ok, before.rows
    again = lab.up(site)
    assert [r for r in again.rows if r.kind == "sshd"] == [r for r in before.rows if r.kind == "sshd"]

    server_sshd = _sshd_pids(before)[f"sshd {site.prefix}-server"]
    os.kill(server_sshd, signal.SIGKILL)
    Path(f"/etc/sudoers.d/orchestrate-lab-{site.prefix}").unlink()
    damaged = lab.status(site)
    assert damaged.row(f"sshd {site.prefix}-server").state == "missing"
    assert damaged.row(f"/etc/sudoers.d/orchestrate-lab-{site.prefix}").state == "missing"
    repaired = lab.up(site)
    assert repaired.ok, repaired.rows
    assert repaired.row(f"compilers {site.prefix}-server").state == "ok"

    # The bastion's namespace deleted under it: rebuilt, with its links, and the way in works again.
    old_bastion_sshd = _sshd_pids(lab.status(site))[f"sshd {site.prefix}-bastion"]
    subprocess.run(["ip", "netns", "del", f"{site.prefix}-bastion"], check=True)
    assert lab.status(site).row(f"{site.prefix}-bastion").state == "missing"
    assert lab.up(site).ok
    assert not pids.alive(old_bastion_sshd)  # orphaned in the deleted namespace, then stopped
    with _through_bastion(_inventory(site)["server"]) as host:
        assert _run_on(host, "id -un")[1].strip() == site.user


def _leftovers(opts: lab.LabOptions, user: str) -> list[str]:
    left = []
    names = {f"{opts.prefix}-{n}" for n in ("bastion", "server", "client")}
    left += sorted(names & _netns())
    left += [i for i in (f"{opts.prefix}-mb", f"{opts.prefix}-ms", f"{opts.prefix}-mc") if _link_json(i)]
    with contextlib.suppress(KeyError):
        left.append(f"account {pwd.getpwnam(user).pw_name}")
    left += [str(p) for p in (Path("/home") / user, Path(f"/etc/sudoers.d/orchestrate-lab-{opts.prefix}"),
                              opts.resolved_state_dir, opts.resolved_inventory_path) if p.exists()]
    return left


@pytest.mark.integration
@pytest.mark.lab
def test_site_down_and_reshape_leave_nothing_behind(tmp_path):
    _require_site()
    prefix = f"r{TAG}"
    user = _site_user(prefix)
    full = lab.LabOptions(prefix=prefix, inventory_path=tmp_path / "inv.yml", bastion=True, user=user,
                          sudo_perf=True, no_compiler=("server", "client"))
    try:
        st = lab.up(full)
        assert st.ok
        metric_route = next(r.name for r in st.rows if r.kind == "route")
        uid = pwd.getpwnam(user).pw_uid
        sshd_pids = list(_sshd_pids(st).values())
        # A session the user left running: down must end it before it can remove the account.
        stray = subprocess.Popen(["ip", "netns", "exec", f"{prefix}-server", "setpriv", f"--reuid={uid}",
                                  f"--regid={uid}", "--clear-groups", "sleep", "300"])

        # The same lab, plain again: the site parts go, the plain parts stay.
        plain = lab.up(lab.LabOptions(prefix=prefix, inventory_path=tmp_path / "inv.yml"))
        assert plain.ok, plain.rows
        assert stray.wait(timeout=10) != 0
        assert f"{prefix}-bastion" not in _netns() and not _link_json(f"{prefix}-mb")
        with pytest.raises(KeyError):
            pwd.getpwnam(user)
        assert not Path(f"/etc/sudoers.d/orchestrate-lab-{prefix}").exists()
        assert metric_route.split()[-1] not in subprocess.run(
            ["ip", "route", "show", "type", "unreachable"], capture_output=True, text=True).stdout
        assert _inventory(full)["server"]["user"] == "root" and "jump" not in _inventory(full)["server"]

        # And back to the full site, then down.
        assert lab.up(full).ok
    finally:
        removed = lab.down(full)
    assert any(r.startswith("account ") for r in removed) and any(r.startswith("route ") for r in removed)
    for pid in sshd_pids:
        assert not pids.alive(pid)
    assert _leftovers(full, user) == []
    assert metric_route not in subprocess.run(["ip", "route", "show", "type", "unreachable"],
                                              capture_output=True, text=True).stdout
    assert lab.down(full) == []


@pytest.mark.integration
@pytest.mark.lab
def test_an_account_the_lab_did_not_create_is_refused_and_left_alone(tmp_path):
    _require_site()
    prefix = f"u{TAG}"
    user = _site_user(prefix)
    subprocess.run(["useradd", "--create-home", "--shell", "/bin/sh", user], check=True)
    try:
        before = pwd.getpwnam(user)
        (Path(before.pw_dir) / "mine").write_text("keep")
        opts = lab.LabOptions(prefix=prefix, inventory_path=tmp_path / "inv.yml", user=user)
        with pytest.raises(LabError, match="not created by this lab"):
            lab.up(opts)
        assert not {f"{prefix}-server", f"{prefix}-client"} & _netns()
        lab.down(opts)
        assert pwd.getpwnam(user) == before
        assert (Path(before.pw_dir) / "mine").read_text() == "keep"
    finally:
        subprocess.run(["userdel", "--remove", user], capture_output=True)


@pytest.mark.integration
@pytest.mark.lab
def test_a_fresh_up_that_fails_half_way_removes_the_account_it_made(tmp_path, monkeypatch):
    _require_site()
    prefix = f"h{TAG}"
    user = _site_user(prefix)
    opts = lab.LabOptions(prefix=prefix, inventory_path=tmp_path / "inv.yml", bastion=True, user=user, sudo_perf=True)

    def broken(*args, **kwargs):
        assert pwd.getpwnam(user)  # the account exists by now: the failure comes after it
        raise LabError("sudoers broke")

    monkeypatch.setattr(build, "ensure_sudoers", broken)
    try:
        with pytest.raises(LabError, match="sudoers broke"):
            lab.up(opts)
        assert _leftovers(opts, user) == []
    finally:
        monkeypatch.undo()
        lab.down(opts)
