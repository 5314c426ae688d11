"""SSH routes with real sshds on loopback: a host behind one or two bastions (the inventory's
`jump:`, an ssh_config ProxyJump, a ProxyCommand), host keys checked on every hop, and connect
timeouts under a second on every hop."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

from orchestrator.errors import ConfigError, HostError
from orchestrator.remote.hosts import SshHost, connect
from orchestrator.experiment.inventory import HostSpec, Inventory

from ..conftest import require_tool
from ..sshd import Sshd, start_sshd

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def sshds(tmp_path_factory):
    """target, bastion `near`, and bastion `far` that may only forward to `near`: a chain
    `far,near` works in that order only."""
    started: list[Sshd] = []
    try:
        target = start_sshd(tmp_path_factory.mktemp("target"))
        started.append(target)
        near = start_sshd(tmp_path_factory.mktemp("near"), "LogLevel DEBUG1\n")
        started.append(near)
        far = start_sshd(tmp_path_factory.mktemp("far"), f"PermitOpen 127.0.0.1:{near.port}\n")
        started.append(far)
        yield target, near, far
    finally:
        for server in started:
            server.stop()


def _jump(bastion: Sshd, **changes) -> dict:
    entry = {"host": "127.0.0.1", "user": "root", "port": bastion.port, "key": str(bastion.key),
             "known_hosts": str(bastion.known_hosts)}
    entry.update(changes)
    return entry


def _spec(target: Sshd, tmp_path: Path, **changes) -> HostSpec:
    entry = target.inventory_entry(str(tmp_path / "work"))
    entry.update(changes)
    return HostSpec(**entry)


def _alias(name: str, server: Sshd, *extra: str) -> str:
    lines = [f"Host {name}", "  HostName 127.0.0.1", f"  Port {server.port}", "  User root",
             f"  IdentityFile {server.key}", f"  UserKnownHostsFile {server.known_hosts}", *extra]
    return "\n".join(f"{line}\n" for line in lines)


def _through_a_gateway(host: SshHost) -> bool:
    """The host's connection rides on a channel (bastion) or a pipe (ProxyCommand), not a socket."""
    transport = host._connect().client.get_transport()
    assert transport is not None
    return not isinstance(transport.sock, socket.socket)


def _works(host: SshHost) -> None:
    result = host.run("echo $SSH_CONNECTION", 10)
    assert result.ok and result.stdout.strip(), result


def test_jump_key_in_the_inventory(sshds, tmp_path):
    target, near, _ = sshds
    host = connect("server", _spec(target, tmp_path, jump=_jump(near)), connect_timeout=5)
    try:
        assert isinstance(host, SshHost) and _through_a_gateway(host)
        _works(host)
        assert len(host._route.hops) == 2  # type: ignore[union-attr]
    finally:
        host.close()
    assert "direct-tcpip" in (near.directory / "sshd.log").read_text()


def test_proxy_jump_from_the_inventorys_ssh_config(sshds, tmp_path):
    target, near, _ = sshds
    config = tmp_path / "ssh_config"
    config.write_text(_alias("bastion", near) + _alias("behind", target, "  ProxyJump bastion"))
    inventory = Inventory.model_validate({
        "ssh_config": str(config),
        "server": {"host": "behind", "workdir": str(tmp_path / "s")},
        "client": {"host": "behind", "workdir": str(tmp_path / "c")},
    })
    host = connect("server", inventory.server, 5, inventory.ssh_config)
    try:
        assert isinstance(host, SshHost) and _through_a_gateway(host)
        _works(host)
    finally:
        host.close()


def test_a_proxy_jump_chain_is_visited_in_order(sshds, tmp_path):
    target, near, far = sshds
    config = tmp_path / "ssh_config"
    config.write_text(_alias("far", far) + _alias("near", near) + _alias("behind", target, "  ProxyJump far,near"))
    host = connect("server", HostSpec(host="behind", workdir=str(tmp_path / "w")), 5, str(config))
    try:
        assert [hop.label.split()[0] for hop in host._route.hops] == ["far", "near", "behind"]  # type: ignore[union-attr]
        _works(host)
    finally:
        host.close()


def test_proxy_command_from_the_ssh_config(sshds, tmp_path):
    require_tool("ssh")
    target, near, _ = sshds
    config = tmp_path / "ssh_config"
    proxy = (f"ProxyCommand ssh -F none -o BatchMode=yes -o StrictHostKeyChecking=yes -o UserKnownHostsFile={near.known_hosts}"
             f" -i {near.key} -p {near.port} -W %h:%p root@127.0.0.1")
    config.write_text(_alias("behind", target, "  " + proxy))
    host = connect("server", HostSpec(host="behind", workdir=str(tmp_path / "w")), 5, str(config))
    try:
        assert _through_a_gateway(host)
        _works(host)
    finally:
        host.close()


def test_a_failing_proxy_command_names_the_host(sshds, tmp_path):
    target, _, _ = sshds
    config = tmp_path / "ssh_config"
    config.write_text(_alias("behind", target, "  ProxyCommand sh -c 'exit 7'"))
    with pytest.raises(HostError, match=r"^server \(behind\): .*ProxyCommand"):
        connect("server", HostSpec(host="behind", workdir=str(tmp_path / "w")), 2, str(config))


def test_an_unknown_bastion_key_names_the_bastion(sshds, tmp_path):
    target, near, _ = sshds
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    spec = _spec(target, tmp_path, jump=_jump(near, known_hosts=str(empty)))
    with pytest.raises(HostError, match=rf"^bastion root@127\.0\.0\.1:{near.port} \(in front of server .*\): unknown host key \(not in {empty}\)") as caught:
        connect("server", spec, connect_timeout=5)
    assert caught.value.exit_code == 3


def test_the_bastion_uses_the_hosts_known_hosts_when_it_has_none(sshds, tmp_path):
    target, near, _ = sshds
    both = tmp_path / "known_hosts"
    both.write_text(target.known_hosts.read_text() + near.known_hosts.read_text())
    spec = _spec(target, tmp_path, known_hosts=str(both), jump=_jump(near, known_hosts=None))
    host = connect("server", spec, connect_timeout=5)
    host.close()
    # ...and only that file: the target's own file lacks the bastion's key.
    spec = _spec(target, tmp_path, jump=_jump(near, known_hosts=None))
    with pytest.raises(HostError, match=r"^bastion .*unknown host key"):
        connect("server", spec, connect_timeout=5)


def test_an_unknown_key_behind_the_bastion_names_the_host(sshds, tmp_path):
    target, near, _ = sshds
    only_bastion = tmp_path / "known_hosts"
    only_bastion.write_text(near.known_hosts.read_text())
    spec = _spec(target, tmp_path, known_hosts=str(only_bastion), jump=_jump(near))
    with pytest.raises(HostError, match=r"^server \(root@127\.0\.0\.1:\d+\): unknown host key"):
        connect("server", spec, connect_timeout=5)


def test_a_failed_login_at_the_bastion_names_the_bastion(sshds, tmp_path):
    target, near, far = sshds
    spec = _spec(target, tmp_path, jump=_jump(near, key=str(far.key)))
    with pytest.raises(HostError, match=r"^bastion root@127\.0\.0\.1:\d+ \(in front of server .*\): SSH authentication failed"):
        connect("server", spec, connect_timeout=5)


def test_an_unreachable_bastion_names_the_bastion(sshds, tmp_path):
    target, _, _ = sshds
    spec = _spec(target, tmp_path, jump={"host": "127.0.0.1", "port": 1, "user": "root"})
    with pytest.raises(HostError, match=r"^bastion root@127\.0\.0\.1:1 \(in front of server .*\): cannot connect"):
        connect("server", spec, connect_timeout=2)


def test_a_bastion_that_may_not_forward_there_is_named(sshds, tmp_path):
    target, _, far = sshds  # far forwards to near only
    spec = _spec(target, tmp_path, jump=_jump(far))
    with pytest.raises(HostError, match=r"^server \(.*\): cannot connect through bastion root@127\.0\.0\.1:\d+"):
        connect("server", spec, connect_timeout=5)


def test_a_missing_ssh_config_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="no such file"):
        connect("server", HostSpec(host="behind", workdir=str(tmp_path)), 2, str(tmp_path / "absent"))


# ---------------------------------------------------------------------------- timeouts under a second


@pytest.fixture
def unanswered_port():
    """A loopback port whose SYNs are dropped: a listener with backlog 0 whose one queue slot is
    taken, as a host behind a silent firewall looks."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    filler = socket.create_connection(("127.0.0.1", port), timeout=2)
    yield port
    filler.close()
    listener.close()


@pytest.fixture
def silent_port():
    """A loopback port that accepts and then never says a word (no SSH banner)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    yield listener.getsockname()[1]
    listener.close()


@pytest.mark.parametrize("kind", ["unanswered_port", "silent_port"])
def test_a_connect_timeout_under_a_second_holds(kind, request, tmp_path):
    port = request.getfixturevalue(kind)
    spec = HostSpec(host="127.0.0.1", port=port, user="root", workdir=str(tmp_path))
    started = time.monotonic()
    with pytest.raises(HostError, match=r"^server \(root@127\.0\.0\.1:\d+\): "):
        connect("server", spec, connect_timeout=0.3)
    assert time.monotonic() - started < 2


def test_a_connect_timeout_under_a_second_holds_at_the_bastion(unanswered_port, tmp_path):
    spec = HostSpec(host="127.0.0.1", port=22, user="root", workdir=str(tmp_path),
                    jump={"host": "127.0.0.1", "port": unanswered_port, "user": "root"})
    started = time.monotonic()
    with pytest.raises(HostError, match=r"^bastion .*: cannot connect: timed out after 0\.3s"):
        connect("server", spec, connect_timeout=0.3)
    assert time.monotonic() - started < 2


def test_a_connect_timeout_under_a_second_holds_behind_the_bastion(sshds, silent_port, tmp_path):
    _, near, _ = sshds
    spec = HostSpec(host="127.0.0.1", port=silent_port, user="root", workdir=str(tmp_path), jump=_jump(near))
    started = time.monotonic()
    with pytest.raises(HostError, match=rf"^server \(root@127\.0\.0\.1:{silent_port}\): SSH failed through bastion"):
        connect("server", spec, connect_timeout=0.3)
    assert time.monotonic() - started < 3


def test_a_resumed_run_keeps_the_inventorys_ssh_config(tmp_path):
    from orchestrator.experiment.config import load_experiment
    from orchestrator.run.runner import create_run, reopen_run

    from ..conftest import ROOT

    config = tmp_path / "ssh_config"
    config.write_text("Host behind\n  HostName 127.0.0.1\n")
    inventory = Inventory.model_validate({
        "ssh_config": str(config),
        "server": {"host": "behind", "workdir": "/tmp/s"},
        "client": {"host": "behind", "workdir": "/tmp/c"},
    })
    state = create_run(load_experiment(ROOT / "configs" / "smoke.yml"), inventory, tmp_path / "results")
    assert reopen_run(state.run_dir).inventory.ssh_config == str(config)


def test_a_jump_to_an_ssh_config_alias_uses_its_settings(sshds, tmp_path):
    target, near, _ = sshds
    config = tmp_path / "ssh_config"
    config.write_text(_alias("bastion", near))
    spec = _spec(target, tmp_path, jump={"host": "bastion"})
    host = connect("server", spec, 5, str(config))
    try:
        _works(host)  # type: ignore[arg-type]
    finally:
        host.close()


def test_a_proxy_jump_for_every_host_does_not_loop_through_the_bastion(sshds, tmp_path):
    target, near, _ = sshds
    config = tmp_path / "ssh_config"
    config.write_text(_alias("bastion", near) + _alias("behind", target) + "Host *\n  ProxyJump bastion\n")
    host = connect("server", HostSpec(host="behind", workdir=str(tmp_path / "w")), 5, str(config))
    try:
        assert len(host._route.hops) == 2  # type: ignore[union-attr]
        _works(host)  # type: ignore[arg-type]
    finally:
        host.close()


def test_orchestrate_check_names_a_bastion_with_an_unknown_key(sshds, tmp_path):
    """As a user meets it: exit status 3, the bastion named, no traceback."""
    import yaml

    from ..conftest import ROOT
    from ..cli.test_cli import orchestrate

    target, near, _ = sshds
    empty = tmp_path / "empty_known_hosts"
    empty.write_text("")
    entry = {**target.inventory_entry(str(tmp_path / "work")), "jump": _jump(near, known_hosts=str(empty))}
    inventory = tmp_path / "inventory.yml"
    inventory.write_text(yaml.safe_dump({"server": entry, "client": entry | {"workdir": str(tmp_path / "work2")}}))
    done = orchestrate("check", str(ROOT / "configs" / "smoke.yml"), "--inventory", str(inventory))
    assert done.returncode == 3, done.stdout + done.stderr
    assert f"bastion root@127.0.0.1:{near.port} (in front of server" in done.stderr + done.stdout
    assert "unknown host key" in done.stderr + done.stdout
    assert "Traceback" not in done.stderr
