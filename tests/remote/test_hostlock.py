"""A run owns its hosts: one flock per (host, workdir), held for the run's life, and a second run
told who holds it. On this machine, with real flock(1) and real processes."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import pytest

from orchestrator.remote import hostlock
from orchestrator.errors import HostError
from orchestrator.remote.hosts import LocalHost
from orchestrator.experiment.inventory import HostSpec

from ..conftest import require_tool


def local_hosts(workdir, client_workdir=None) -> dict:
    return {"server": LocalHost("server", HostSpec(host="local", workdir=str(workdir))),
            "client": LocalHost("client", HostSpec(host="local", workdir=str(client_workdir or workdir)))}


@pytest.fixture(autouse=True)
def _flock():
    require_tool("flock")


def test_both_roles_on_one_workdir_take_one_lock_and_a_second_run_is_told_who_holds_it(tmp_path):
    hosts = local_hosts(tmp_path / "work")
    first = hostlock.acquire(hosts, "20261127T000000Z-first-aaaa", 10)
    try:
        assert len(first.held) == 1
        holder = (tmp_path / "work" / "lock.holder").read_text()
        assert "run=20261127T000000Z-first-aaaa" in holder and f"pid={os.getpid()}" in holder
        started = time.monotonic()
        with pytest.raises(hostlock.HostBusy) as caught:
            hostlock.acquire(hosts, "20261127T000001Z-second-bbbb", 10)
        assert time.monotonic() - started < 5
        assert caught.value.exit_code == 3
        assert "20261127T000000Z-first-aaaa" in str(caught.value) and str(tmp_path / "work") in str(caught.value)
    finally:
        first.release()
    assert not (tmp_path / "work" / "lock.holder").exists()
    second = hostlock.acquire(hosts, "20261127T000001Z-second-bbbb", 10)
    second.release()


def test_a_busy_second_host_lets_go_of_the_first(tmp_path):
    other = hostlock.acquire(local_hosts(tmp_path / "c"), "20261127T000000Z-other-cccc", 10)
    try:
        with pytest.raises(hostlock.HostBusy):
            hostlock.acquire(local_hosts(tmp_path / "s", tmp_path / "c"), "20261127T000001Z-mine-dddd", 10)
        # The server's lock was let go: a third run takes it at once.
        hostlock.acquire(local_hosts(tmp_path / "s"), "20261127T000002Z-third-eeee", 10).release()
    finally:
        other.release()


def test_the_lock_goes_with_its_holder_when_the_holder_is_killed(tmp_path):
    """SIGKILL of the orchestrator: the kernel closes the lock command's stdin, and it lets go."""
    work = tmp_path / "work"
    code = (f"import sys, time; sys.path.insert(0, {str(os.getcwd())!r});"
            "from orchestrator.remote import hostlock; from orchestrator.remote.hosts import LocalHost;"
            "from orchestrator.experiment.inventory import HostSpec;"
            f"h = LocalHost('server', HostSpec(host='local', workdir={str(work)!r}));"
            "hostlock.acquire({'server': h}, '20261127T000000Z-killed-ffff', 10); print('held', flush=True); time.sleep(60)")
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(hostlock.HostBusy):
            hostlock.acquire(local_hosts(work), "20261127T000001Z-next-0000", 10)
    finally:
        holder.kill()
        holder.wait()
    deadline = time.monotonic() + 5
    while True:
        try:
            hostlock.acquire(local_hosts(work), "20261127T000001Z-next-0000", 10).release()
            break
        except hostlock.HostBusy:
            assert time.monotonic() < deadline, "the lock outlived its killed holder"
            time.sleep(0.2)


def test_a_workdir_writable_by_others_is_refused(tmp_path):
    work = tmp_path / "shared"
    work.mkdir()
    work.chmod(0o777)
    with pytest.raises(HostError, match="writable by group or others"):
        hostlock.acquire(local_hosts(work), "20261127T000000Z-x-1111", 10)
    assert not (work / "lock").exists()


def test_a_run_waits_briefly_for_its_own_old_lock_and_never_for_another(tmp_path, monkeypatch):
    """A resume right after its orchestrator was killed may find the old lock not yet let go."""
    monkeypatch.setattr(hostlock, "OWN_RUN_WAIT", 1.5)
    hosts = local_hosts(tmp_path / "work")
    with monkeypatch.context() as earlier:  # the same run, from an earlier orchestrator process
        earlier.setattr(hostlock.os, "getpid", lambda: 1)
        old = hostlock.acquire(hosts, "20261127T000000Z-same-aaaa", 10)
    try:
        started = time.monotonic()
        with pytest.raises(hostlock.HostBusy, match="this same run"):
            hostlock.acquire(hosts, "20261127T000000Z-same-aaaa", 10)
        assert 1.5 <= time.monotonic() - started < 6
        started = time.monotonic()
        with pytest.raises(hostlock.HostBusy):
            hostlock.acquire(hosts, "20261127T000001Z-other-bbbb", 10)
        assert time.monotonic() - started < 1.5  # another run's lock: no wait at all
    finally:
        old.release()
    # Let go while the same run waits: it gets the lock.
    with monkeypatch.context() as earlier:
        earlier.setattr(hostlock.os, "getpid", lambda: 1)
        old = hostlock.acquire(hosts, "20261127T000000Z-same-aaaa", 10)
    threading.Timer(0.5, old.release).start()
    hostlock.acquire(hosts, "20261127T000000Z-same-aaaa", 10).release()


def test_a_home_relative_workdir_is_locked_in_the_users_home(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    locks = hostlock.acquire(local_hosts("~/work"), "20261127T000000Z-home-2222", 10)
    try:
        assert (tmp_path / "work" / "lock").is_file() and (tmp_path / "work" / "lock.holder").is_file()
        assert (tmp_path / "work").stat().st_mode & 0o077 == 0  # made private
    finally:
        locks.release()
