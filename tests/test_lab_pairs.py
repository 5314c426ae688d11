"""A lab of several pairs (`orchestrate lab up --pairs N`), built for real: each pair's sshds
answer through the one inventory it writes, each data link has its own MTU, no pair can reach
another's data addresses, and `down` leaves nothing behind."""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
from pathlib import Path

import fabric
import paramiko
import pytest

from orchestrator import lab
from orchestrator.lab import build, topology
from orchestrator.cli import main
from orchestrator.errors import LabError
from orchestrator.inventory import HostSpec, load_inventory

from .test_lab import _require_lab

# Derived from the session's own prefix, short enough for "<prefix>-p3-ms" to fit IFNAMSIZ.
PREFIX = (os.environ.get("ORCH_TEST_LAB_PREFIX") or f"t{os.getpid() % 100000}")[:6] + "-n"
MTUS = (1500, 9000, 1280)


def _netns() -> set[str]:
    out = subprocess.run(["ip", "-j", "netns", "list"], capture_output=True, text=True, check=True).stdout
    return {n["name"] for n in json.loads(out)} if out.strip() else set()


def _root_links() -> set[str]:
    out = subprocess.run(["ip", "-j", "link", "show"], capture_output=True, text=True, check=True).stdout
    return {link["ifname"] for link in json.loads(out)}


def _sshds_of(state_dir: Path) -> list[int]:
    """Live sshd processes whose command line names a config in this lab's state dir."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        if b"sshd" in cmdline and str(state_dir).encode() + b"/" in cmdline:
            found.append(int(entry))
    return found


def _ssh(spec: HostSpec) -> fabric.Connection:
    """Strict: the inventory's key and known_hosts only."""
    assert spec.key and spec.known_hosts and spec.user
    conn = fabric.Connection(spec.host, user=spec.user, port=spec.port, connect_timeout=10,
                             connect_kwargs={"key_filename": [spec.key], "look_for_keys": False, "allow_agent": False})
    conn.client.set_missing_host_key_policy(paramiko.RejectPolicy())
    conn.client.load_host_keys(spec.known_hosts)
    return conn


def _tcp_probe(conn: fabric.Connection, address: str) -> str:
    """What a TCP connect to address:9 (discard; nothing listens) meets from that host."""
    script = f"exec 3<>/dev/tcp/{address}/9"
    result = conn.run(f"timeout 5 bash -c '{script}' 2>&1; true", hide=True, warn=True, in_stream=False)
    return result.stdout


@pytest.mark.parametrize("kwargs, message", [
    ({"pairs": 0}, "--pairs 0"),
    ({"pairs": lab.MAX_PAIRS + 1}, "--pairs"),
    ({"pairs": 2, "mtus": (1500, 9000, 1280)}, "3 values for 2 pairs"),
    ({"pairs": 3, "rates_mbit": (100.0,)}, "1 values for 3 pairs"),
    ({"pairs": 3, "mtus": (1500, 40, 1280)}, "MTU 40"),
    ({"pairs": 2, "user": "bench"}, "one pair only"),
    ({"pairs": 10, "prefix": "longprefix"}, "at most 8 characters"),
])
def test_pair_options_are_checked_before_anything_is_built(kwargs, message):
    with pytest.raises(LabError, match=message):
        lab.LabOptions(**kwargs)


def test_pair_address_blocks_do_not_overlap():
    nets = []
    for block in range(lab.MAX_PAIRS + 1):
        data = {a.network for a in topology.data_addresses(block).values()}
        assert len(data) == 1  # server and client share their data link's subnet
        nets += [*data, *topology.jump_networks(block).values()]
    assert all(net.subnet_of(lab.LAB_RANGE) for net in nets)
    assert not any(a.overlaps(b) for i, a in enumerate(nets) for b in nets[i + 1:])
    # Block 0 is the one-pair lab's, unchanged.
    assert topology.data_addresses(0)["server"] == ipaddress.IPv4Interface("198.18.0.1/24")


def test_per_pair_values_on_the_command_line_must_be_numbers(capsys):
    with pytest.raises(SystemExit) as caught:
        main(["lab", "up", "--pairs", "2", "--mtu", "1500,jumbo"])
    assert caught.value.code == 2
    assert "comma list of numbers" in capsys.readouterr().err


@pytest.mark.integration
@pytest.mark.lab
def test_three_pairs_with_three_mtus_are_reachable_isolated_and_removed(tmp_path):
    _require_lab()
    inventory_path = tmp_path / "pairs-inventory.yml"
    opts = lab.LabOptions(prefix=PREFIX, inventory_path=inventory_path, pairs=3, mtus=MTUS)
    state_dir = opts.resolved_state_dir
    lab.down(opts)
    try:
        # Through the CLI, as a user would: per-pair MTUs as a comma list.
        assert main(["lab", "up", "--prefix", PREFIX, "--pairs", "3", "--mtu", ",".join(map(str, MTUS)),
                     "--inventory-out", str(inventory_path)]) == 0
        st = lab.status(lab.LabOptions(prefix=PREFIX))  # status finds the pairs without being told
        assert st.ok, [r for r in st.rows if r.state != "ok"]
        assert sum(r.kind == "sshd" for r in st.rows) == 6 and sum(r.kind == "data link" for r in st.rows) == 6

        inventory = load_inventory(inventory_path)  # the project's loader: concurrent pairs share no host
        assert list(inventory.pairs) == ["p1", "p2", "p3"] and inventory.concurrent
        data = {name: {role: pair.role(role).data_address for role in ("server", "client")}
                for name, pair in inventory.pairs.items()}
        assert len({a for d in data.values() for a in d.values()}) == 6

        conns = {(name, role): _ssh(pair.role(role)) for name, pair in inventory.pairs.items()
                 for role in ("server", "client")}
        try:
            for (name, role), conn in conns.items():
                netns = f"{PREFIX}-{name}-{role}"
                # The sshd answering is the one in that pair's namespace, and its data link has the pair's MTU.
                inode = conn.run("stat -L -c %i /proc/self/ns/net", hide=True, in_stream=False).stdout.strip()
                assert inode == str(os.stat(f"/run/netns/{netns}").st_ino), (name, role)
                mtu = conn.run("cat /sys/class/net/data0/mtu", hide=True, in_stream=False).stdout.strip()
                assert mtu == str(MTUS[int(name[1:]) - 1]), (name, role, mtu)
            for name in inventory.pairs:
                client = conns[(name, "client")]
                for other in inventory.pairs:
                    seen = _tcp_probe(client, data[other]["server"])
                    if other == name:
                        # Its own server is there: the connect is refused (a reset came back).
                        assert "refused" in seen, (name, other, seen)
                    else:
                        assert "unreachable" in seen, (name, other, seen)
        finally:
            for conn in conns.values():
                conn.close()

        # Asked for another number of pairs, up refuses rather than half-reshape the lab.
        with pytest.raises(LabError, match="has 3 pairs, not 2"):
            lab.up(lab.LabOptions(prefix=PREFIX, inventory_path=inventory_path, pairs=2))
        assert _sshds_of(state_dir)
    finally:
        # Down without --pairs finds every pair from the lab's state.
        assert main(["lab", "down", "--prefix", PREFIX]) == 0
    assert not {n for n in _netns() if n.startswith(f"{PREFIX}-")}
    assert not {link for link in _root_links() if link.startswith(f"{PREFIX}-")}
    assert _sshds_of(state_dir) == []
    assert not state_dir.exists() and not inventory_path.exists()
    assert not any(Path(lab.WORKDIR_ROOT, f"{PREFIX}-p{i}").exists() for i in (1, 2, 3))


@pytest.mark.integration
@pytest.mark.lab
def test_a_pair_that_fails_to_build_leaves_no_pair_behind(tmp_path):
    _require_lab()
    inventory_path = tmp_path / "taken.yml"
    inventory_path.write_text("server: {host: local}\nclient: {host: local}\n")  # the user's, not the lab's
    opts = lab.LabOptions(prefix=PREFIX + "f", inventory_path=inventory_path, pairs=2)
    with pytest.raises(LabError, match="not written by this lab"):
        lab.up(opts)
    assert inventory_path.read_text().startswith("server:")
    assert not {n for n in _netns() if n.startswith(f"{opts.prefix}-")}
    assert not opts.resolved_state_dir.exists()


@pytest.mark.integration
@pytest.mark.lab
def test_a_fresh_lab_whose_second_pair_fails_removes_the_first(tmp_path, monkeypatch):
    _require_lab()
    opts = lab.LabOptions(prefix=PREFIX + "h", inventory_path=tmp_path / "inv.yml", pairs=2)
    real_build = build.build_lab
    built: list[str] = []

    def build_or_fail(sub, state):
        if sub.prefix.endswith("-p2"):
            raise LabError("pair 2 cannot be built (test)")
        real_build(sub, state)
        built.append(sub.prefix)

    monkeypatch.setattr(build, "build_lab", build_or_fail)
    try:
        with pytest.raises(LabError, match="pair 2 cannot be built"):
            lab.up(opts)
    finally:
        monkeypatch.undo()
        leftover = lab.down(opts)
    assert built == [f"{opts.prefix}-p1"]  # the first pair was really there ...
    assert leftover == []  # ... and up removed it, with everything else it had made
    assert not {n for n in _netns() if n.startswith(f"{opts.prefix}-")}
    assert _sshds_of(opts.resolved_state_dir) == [] and not opts.resolved_state_dir.exists()
