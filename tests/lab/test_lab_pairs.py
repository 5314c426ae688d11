"""A lab of several pairs (`orchestrate lab up --pairs N`), built for real: each pair's sshds
answer through the one inventory it writes, each data link has its own MTU, no pair can reach
another's data addresses, and `down` leaves nothing behind."""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import pwd
import subprocess
from pathlib import Path

import fabric
import paramiko
import pytest

from orchestrator import lab
from orchestrator.lab import accounts, build, topology, updown
from orchestrator.cli import main
from orchestrator.errors import ConfigError, ExitStatus, LabError
from orchestrator.experiment.inventory import HostSpec, load_inventory
from orchestrator.rows.results import read_results

from ..conftest import ROOT
from ..cli.test_cli import orchestrate
from .test_lab import _require_lab, _require_site, _site_user

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
    ({"pairs": 10, "prefix": "longprefix"}, "at most 8 characters"),
])
def test_pair_options_are_checked_before_anything_is_built(kwargs, message):
    with pytest.raises(LabError, match=message):
        lab.LabOptions(**kwargs)


@pytest.mark.parametrize("argv, message", [
    (["lab", "up", "--sudo-perf"], "needs --user"),
    (["lab", "up", "--pairs", "2", "--mtu", "1500,9000,1280"], "3 values for 2 pairs"),
    (["lab", "status", "--pairs", "0"], "--pairs 0"),
    (["lab", "down", "--prefix", "Bad_Name"], "a-z"),
])
def test_a_bad_combination_of_lab_options_is_a_usage_error_exit_2(argv, message, capsys):
    # Checked before anything is looked at or built, so it needs no root and no lab.
    assert main(argv) == ExitStatus.BAD_ARGUMENT == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    with pytest.raises(ConfigError):  # a bad option, like any other: not "the lab failed" (4)
        lab.LabOptions(pairs=2, mtus=(1500,))


def test_the_pairs_share_the_labs_account_and_each_has_its_own_key_file_and_workdirs():
    opts = lab.LabOptions(prefix="site", pairs=3, bastion=True, user="bench", sudo_perf=True, no_compiler=("client",))
    subs = [opts.pair_options(i) for i in (1, 2, 3)]
    # The pair lets the account log in; the lab of several (its parent) owns the account and the rule.
    assert {(s.user, s.sudo_perf, s.parent, s.bastion, s.no_compiler) for s in subs} == \
        {("bench", True, "site", True, ("client",))}
    assert lab.LabOptions(prefix="site", user="bench").parent is None
    assert accounts.key_file_name(lab.LabOptions(prefix="site", user="bench")) == "authorized_keys"
    assert len({accounts.key_file_name(s) for s in subs}) == 3
    workdirs = [topology.role_workdir(s, role, s.user) for s in subs for role in ("server", "client")]
    assert len(set(workdirs)) == 6 and all(w.startswith("~/") for w in workdirs)


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


# ---------------------------------------------------------------- several pairs, shaped like a real site

SITE = PREFIX + "s"


def _lab_leftovers(prefix: str, user: str, uid: int | None, state_dir: Path, inventory: Path) -> list[str]:
    """Everything of a lab of several pairs that is still there: it should be nothing."""
    left = sorted(n for n in _netns() if n.startswith(f"{prefix}-"))
    left += sorted(link for link in _root_links() if link.startswith(f"{prefix}-"))
    with contextlib.suppress(KeyError):
        left.append(f"account {pwd.getpwnam(user).pw_name}")
    left += [str(p) for p in (Path("/home") / user, Path(f"/etc/sudoers.d/orchestrate-lab-{prefix}"),
                              *(Path(f"/etc/sudoers.d/orchestrate-lab-{prefix}-p{i}") for i in (1, 2)),
                              state_dir, inventory) if p.exists()]
    left += [f"sshd {pid}" for pid in _sshds_of(state_dir)]
    if uid is not None:
        left += [f"process {pid} of uid {uid}: {_cmdline(pid)}" for pid in _uid_pids(uid)]
    return left


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return "(gone)"


def _uid_pids(uid: int) -> list[int]:
    """Processes of a removed account's uid. Other sessions on this machine make lab accounts too:
    once one of theirs has the uid, its processes are not ours, and nothing here can tell."""
    if uid in {account.pw_uid for account in pwd.getpwall()}:
        return []
    found = []
    for entry in os.listdir("/proc"):
        with contextlib.suppress(OSError, IndexError):
            if entry.isdigit() and os.stat(f"/proc/{entry}").st_uid == uid:
                # A zombie has ended; it waits for init (here slow to reap) to collect its status.
                if Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
                    found.append(int(entry))
    return found


@pytest.mark.integration
@pytest.mark.lab
def test_two_site_pairs_share_one_account_and_sudo_rule_run_smoke_and_leave_nothing(tmp_path):
    """`lab up --pairs 2 --bastion --user U --sudo-perf --no-compiler client`, smoke on both pairs
    through the CLI, then `lab down`: one account and one rule for the lab, every trace gone after."""
    _require_site()
    user = _site_user(SITE)
    inventory_path = tmp_path / "site-pairs.yml"
    state_dir = lab.LabOptions(prefix=SITE).resolved_state_dir
    main(["lab", "down", "--prefix", SITE, "--inventory-out", str(inventory_path)])  # an earlier, killed session's
    uid = None
    metrics: list[str] = []
    try:
        up = orchestrate("lab", "up", "--prefix", SITE, "--pairs", "2", "--bastion", "--user", user, "--sudo-perf",
                         "--no-compiler", "client", "--inventory-out", str(inventory_path), timeout=180)
        assert up.returncode == 0, up.stderr
        account = pwd.getpwnam(user)
        uid = account.pw_uid
        assert uid != 0 and account.pw_gecos == f"orchestrate lab {SITE}"  # the lab of several owns it
        # One sudoers rule, the lab's; none per pair.
        assert Path(f"/etc/sudoers.d/orchestrate-lab-{SITE}").is_file()
        assert not any(Path(f"/etc/sudoers.d/orchestrate-lab-{SITE}-p{i}").exists() for i in (1, 2))
        # Each pair's own key file in the one home, named by that pair's sshds.
        assert sorted(p.name for p in (Path(account.pw_dir) / ".ssh").iterdir()) == \
            [f"authorized_keys-{SITE}-p1", f"authorized_keys-{SITE}-p2"]

        st = lab.status(lab.LabOptions(prefix=SITE))  # finds the pairs, the account and the rule itself
        assert st.ok, [r for r in st.rows if r.state != "ok"]
        assert [(r.kind, r.name) for r in st.rows if r.kind in ("user", "sudoers")] == \
            [("user", f"user {user}"), ("sudoers", f"/etc/sudoers.d/orchestrate-lab-{SITE}")]
        assert sum(r.kind == "no compiler" for r in st.rows) == 2 and sum(r.kind == "sshd" for r in st.rows) == 6
        metrics = [r.name.split()[-1] for r in st.rows if r.kind == "route"]
        assert len(metrics) == 2
        shown = orchestrate("lab", "status", "--prefix", SITE)
        assert shown.returncode == 0 and f"user {user}" in shown.stdout, shown.stderr

        inventory = load_inventory(inventory_path)
        assert list(inventory.pairs) == ["p1", "p2"] and inventory.concurrent
        specs = [pair.role(role) for pair in inventory.pairs.values() for role in ("server", "client")]
        assert {(s.user, s.perf_access, s.jump is not None) for s in specs} == {(user, "sudo", True)}
        assert len({s.workdir for s in specs}) == 4  # each pair's workdirs are its own

        results = tmp_path / "results"
        done = orchestrate("run", str(ROOT / "configs" / "smoke.yml"), "--inventory", str(inventory_path),
                           "--results", str(results), "--no-report", "--json", timeout=300)
        assert done.returncode == 0, done.stderr
        assert {name: p["status"] for name, p in json.loads(done.stdout)["pairs"].items()} == {"p1": "ok", "p2": "ok"}
        (run_dir,) = results.iterdir()
        cell_ids = sorted(c["cell_id"] for c in json.loads((run_dir / "plan.json").read_text())["cells"])
        assert len(cell_ids) == 8
        frame = read_results(run_dir / "results.csv")
        found: dict[str, list[str]] = {}
        for pair, cell_id in zip(frame["pair"], frame["cell_id"]):
            found.setdefault(str(pair), []).append(str(cell_id))
        assert {pair: sorted(ids) for pair, ids in found.items()} == {"p1": cell_ids, "p2": cell_ids}
        assert (frame["status"] == "ok").all()
        # perf counted the kernel too: as the unprivileged account at perf_event_paranoid 2 only sudo can.
        for role in ("server", "client"):
            assert set(frame[f"{role}_perf_counts"]) == {"user+kernel"}, frame[f"{role}_perf_counts"]
            assert (frame[f"{role}_context_switches"] > 0).all()
        for pair in ("p1", "p2"):
            facts = {role: json.loads((run_dir / "pairs" / pair / "hosts" / f"{role}.json").read_text())
                     for role in ("server", "client")}
            for role, fact in facts.items():
                assert fact["perf_access"] == "sudo" and fact["perf_check"]["uid"] == uid, (pair, role)
                assert fact["agent_path"].startswith(f"{account.pw_dir}/.cache/orchestrate-{SITE}-{pair}-{role}/")
            # The client's sessions find no compiler: its agent was built elsewhere, static, and pushed.
            built = facts["client"]["agent_build"]
            assert built["where"] in ("controller", "server") and built["static"] is True, built
            assert facts["server"]["agent_build"]["where"] == "server"
    finally:
        down = orchestrate("lab", "down", "--prefix", SITE, "--inventory-out", str(inventory_path), timeout=180)
    assert down.returncode == 0, down.stderr
    # The account goes once, after every pair: its line comes after both pairs' namespaces.
    lines = down.stderr.splitlines()  # what down removed, one line each, on the console
    account_line = [i for i, line in enumerate(lines) if line.startswith(f"removed account {user}")]
    assert len(account_line) == 1 and account_line[0] > max(
        i for i, line in enumerate(lines) if line.startswith(f"removed namespace {SITE}-p"))
    assert sum(line.startswith("removed file /etc/sudoers.d/") for line in lines) == 1
    assert _lab_leftovers(SITE, user, uid, state_dir, inventory_path) == []
    routes = subprocess.run(["ip", "route", "show", "type", "unreachable"], capture_output=True, text=True).stdout
    assert metrics and not any(f"metric {m}" in routes for m in metrics)


@pytest.mark.integration
@pytest.mark.lab
def test_a_user_lab_whose_second_pair_fails_leaves_no_account_after_up_or_down(tmp_path, monkeypatch):
    _require_site()
    prefix = PREFIX + "u"
    user = _site_user(prefix)
    inventory_path = tmp_path / "inv.yml"
    opts = lab.LabOptions(prefix=prefix, inventory_path=inventory_path, pairs=2, user=user)
    real_build = build.build_lab
    built: list[str] = []

    def build_or_fail(sub, state):
        if sub.prefix.endswith("-p2"):
            assert pwd.getpwnam(user)  # the account exists by now: the failure comes after it
            raise LabError("pair 2 cannot be built (test)")
        real_build(sub, state)
        built.append(sub.prefix)

    lab.down(opts)
    uid = None
    try:
        # A fresh lab that fails half-way: up itself removes all of it, the account included.
        monkeypatch.setattr(build, "build_lab", build_or_fail)
        with pytest.raises(LabError, match="pair 2 cannot be built"):
            lab.up(opts)
        assert built == [f"{prefix}-p1"]
        assert _lab_leftovers(prefix, user, None, opts.resolved_state_dir, inventory_path) == []

        # The same, but up dies before it can clean up (as if killed): `lab down` finds the account.
        monkeypatch.setattr(updown, "teardown", lambda opts: [])
        with pytest.raises(LabError, match="pair 2 cannot be built"):
            lab.up(opts)
        monkeypatch.undo()
        uid = pwd.getpwnam(user).pw_uid
        assert f"{prefix}-p1-server" in _netns()
        # A session the user left running in pair 1: down ends it before it removes the account.
        stray = subprocess.Popen(["ip", "netns", "exec", f"{prefix}-p1-server", "setpriv", f"--reuid={uid}",
                                  f"--regid={uid}", "--clear-groups", "sleep", "300"])
        down = orchestrate("lab", "down", "--prefix", prefix, "--inventory-out", str(inventory_path), timeout=120)
        assert down.returncode == 0, down.stderr
        assert f"removed account {user}" in down.stderr
        assert stray.wait(timeout=10) != 0
    finally:
        monkeypatch.undo()
        lab.down(opts)
    assert _lab_leftovers(prefix, user, uid, opts.resolved_state_dir, inventory_path) == []


@pytest.mark.integration
@pytest.mark.lab
def test_a_pairs_lab_up_again_with_another_account_or_none_swaps_it_once(tmp_path):
    _require_site()
    prefix = PREFIX + "a"
    first, second = _site_user(prefix), _site_user(prefix) + "2"
    inventory_path = tmp_path / "inv.yml"

    def opts(**site) -> lab.LabOptions:
        return lab.LabOptions(prefix=prefix, inventory_path=inventory_path, pairs=2, **site)

    def logins() -> set[str]:
        inventory = load_inventory(inventory_path)
        names = set()
        for pair in inventory.pairs.values():
            for role in ("server", "client"):
                with _ssh(pair.role(role)) as conn:
                    names.add(conn.run("id -un", hide=True, in_stream=False).stdout.strip())
        return names

    lab.down(opts())
    uids: list[int] = []
    try:
        assert lab.up(opts(user=first, sudo_perf=True)).ok
        uids.append(pwd.getpwnam(first).pw_uid)
        assert logins() == {first}
        # Another account: the old one and its rule go, the new one logs in on every pair.
        st = lab.up(opts(user=second))
        assert st.ok, [r for r in st.rows if r.state != "ok"]
        uids.append(pwd.getpwnam(second).pw_uid)
        with pytest.raises(KeyError):
            pwd.getpwnam(first)
        assert not Path(f"/etc/sudoers.d/orchestrate-lab-{prefix}").exists()
        assert [r.name for r in st.rows if r.kind in ("user", "sudoers")] == [f"user {second}"]
        assert logins() == {second}
        # No account at all: root logs in again, and the account is gone.
        st = lab.up(opts())
        assert st.ok and not [r for r in st.rows if r.kind == "user"]
        with pytest.raises(KeyError):
            pwd.getpwnam(second)
        assert logins() == {"root"}
    finally:
        lab.down(opts())
    for user, uid in zip((first, second), uids):
        assert _lab_leftovers(prefix, user, uid, opts().resolved_state_dir, inventory_path) == []
    assert len(uids) == 2
