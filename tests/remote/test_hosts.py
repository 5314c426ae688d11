"""Hosts: this machine, and a real sshd on loopback."""

import logging
import os
import secrets
import signal
import shutil
import socket
import time
from pathlib import Path

import pytest

from orchestrator.errors import HostError
from orchestrator.processes import Output
from orchestrator.remote.hosts import KILL_GRACE, LocalHost, SshHost, connect
from orchestrator.experiment.inventory import HostSpec

from ..sshd import start_sshd

pytestmark = pytest.mark.integration


def _token() -> str:
    """A fraction no other sleep on this machine uses: `sleep 30.<token>` names our processes."""
    return "." + str(secrets.randbelow(10**8)).rjust(8, "1")


def _stat(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2:].split()  # state, ppid, pgrp, ...


def _live_pids():
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (fields := _stat(int(entry))) and fields[0] != "Z":  # a zombie is dead
            yield int(entry), fields


def _members(pgid: int) -> list[int]:
    return [pid for pid, fields in _live_pids() if int(fields[2]) == pgid]


def _pgid(pid: int) -> int:
    fields = _stat(pid)
    assert fields is not None
    return int(fields[2])


def _by_token(token: str) -> list[int]:
    """Our `sleep` processes (not the shells whose command lines also hold the token)."""
    found = []
    for pid, _ in _live_pids():
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_text().split("\0")
            if argv[0] == "sleep" and argv[1].endswith(token):
                found.append(pid)
        except OSError:
            pass
    return found


def _gone(pgid: int, token: str, within: float = 3.0) -> bool:
    """Nothing alive in the group, and no process named by the token, within a moment."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if not _members(pgid) and not _by_token(token):
            return True
        time.sleep(0.05)
    return False


@pytest.fixture(scope="module")
def sshd(tmp_path_factory):
    server = start_sshd(tmp_path_factory.mktemp("sshd"))
    yield server
    server.stop()


def ssh_host(sshd, tmp_path, **changes) -> SshHost:
    entry = sshd.inventory_entry(str(tmp_path / "work"))
    entry.update(changes)
    return connect("server", HostSpec(**entry), connect_timeout=5)  # type: ignore[return-value]


@pytest.fixture(params=["local", "ssh"])
def host(request, tmp_path):
    if request.param == "local":
        yield LocalHost("server", HostSpec(host="local", workdir=str(tmp_path / "work")))
    else:
        h = ssh_host(request.getfixturevalue("sshd"), tmp_path)
        yield h
        h.close()


def test_run_returns_output_and_status(host):
    result = host.run("echo out; echo err >&2; exit 3", timeout=10)
    assert (result.exit_code, result.stdout.strip(), result.stderr.strip()) == (3, "out", "err")


def test_run_times_out_with_a_clear_error(host, tmp_path):
    token = _token()
    started = time.monotonic()
    with pytest.raises(HostError, match=r"timed out after 0\.5s"):
        host.run(f"echo $$ > {tmp_path}/pgid; sleep 30{token}", timeout=0.5)
    assert time.monotonic() - started < 0.5 + KILL_GRACE + 3
    # The timed-out command is gone with its whole process group, not left to sleep on.
    pgid = int((tmp_path / "pgid").read_text())
    assert pgid > 1
    assert _gone(pgid, token), f"process group {pgid} still has {_members(pgid)}"


def test_a_timed_out_command_leaves_nothing_of_its_group(host, tmp_path):
    token = _token()
    started = time.monotonic()
    with pytest.raises(HostError, match=r"timed out after 1s"):
        host.run(f"echo $$ > {tmp_path}/pgid; sh -c 'sleep 30{token} & sleep 31{token}'", timeout=1)
    assert time.monotonic() - started < 1 + KILL_GRACE + 3
    pgid = int((tmp_path / "pgid").read_text())
    assert pgid > 1
    assert _gone(pgid, token), f"process group {pgid} still has {_members(pgid)}"


def test_a_process_closed_early_leaves_nothing_of_its_group(host, tmp_path):
    token = _token()
    process = host.start(f"sh -c 'sleep 30{token} & sleep 31{token}'; echo never")
    deadline = time.monotonic() + 5
    while len(_by_token(token)) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    sleepers = _by_token(token)
    assert len(sleepers) == 2
    pgid = _pgid(sleepers[0])
    assert _members(pgid)  # the group we are about to end is alive now
    process.close()
    assert _gone(pgid, token), f"process group {pgid} still has {_members(pgid)}"


def test_a_process_that_ended_is_not_killed_at_close(host):
    process = host.start("echo done")
    assert process.finish(5) == (0, b"done\n")
    assert process.kill() is None
    process.close()


def test_stderr_keeps_only_what_the_command_wrote(host):
    result = host.run("printf 'a\\nb\\n' >&2", timeout=10)
    assert result.stderr == "a\nb\n"


def test_started_process_gives_its_ready_line_then_the_rest_as_bytes(host):
    process = host.start("echo starting; sleep 0.2; echo 'READY 127.0.0.1 1234'; sleep 0.2; printf 'a\\0b'; exit 4")
    assert process.read_line("READY", 5) == "READY 127.0.0.1 1234"
    assert process.finish(5) == (4, b"a\0b")
    process.close()


def test_a_gated_process_waits_for_its_line(host):
    process = host.start("IFS= read -r go && [ \"$go\" = go ] && echo ran")
    assert process.read_line("ran", 0.3) is None
    process.send_line("go")
    assert process.read_line("ran", 5) == "ran"
    assert process.finish(5)[0] == 0
    process.close()
    refused = host.start("IFS= read -r go && [ \"$go\" = go ] && echo ran")
    refused.send_line("stop")
    assert refused.finish(5) == (1, b"")
    refused.close()


def test_finish_gives_up_at_the_timeout(host):
    process = host.start("sleep 3")
    assert process.finish(0.3) == (None, b"")
    process.close()


def test_read_line_gives_up_at_the_timeout(host):
    process = host.start("sleep 3")
    assert process.read_line("READY", 0.3) is None
    process.close()


def test_folders_move_both_ways_in_one_piece(host, tmp_path):
    source = tmp_path / "src"
    source.mkdir()
    (source / "a.c").write_text("int main(void) { return 0; }\n")
    (source / "sub").mkdir()
    (source / "sub" / "b.txt").write_bytes(bytes(range(256)))
    remote = f"{host.spec.workdir}/copy"
    host.push_dir(source, remote, timeout=10)
    assert host.run(f"cat {remote}/a.c", 10).stdout.startswith("int main")
    back = tmp_path / "back"
    host.fetch_dir(remote, back, timeout=10)
    assert (back / "sub" / "b.txt").read_bytes() == bytes(range(256))


def test_ssh_uses_one_connection_for_many_commands(sshd, tmp_path):
    host = ssh_host(sshd, tmp_path)
    transport = host._connect().client.get_transport()
    for _ in range(20):
        assert host.run("true", 5).ok
    assert host._connect().client.get_transport() is transport
    host.close()


def test_unknown_host_key_is_refused(sshd, tmp_path):
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    with pytest.raises(HostError, match="unknown host key"):
        ssh_host(sshd, tmp_path, known_hosts=str(empty))


def test_wrong_key_is_refused(sshd, tmp_path):
    import subprocess

    other = tmp_path / "other"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    with pytest.raises(HostError, match="authentication failed"):
        ssh_host(sshd, tmp_path, key=str(other))


def test_unreachable_host_names_the_host(tmp_path):
    # Nothing listens on loopback port 1: the connection is refused at once.
    spec = HostSpec(host="127.0.0.1", port=1, user="root", workdir=str(tmp_path))
    with pytest.raises(HostError, match=r"server \(root@127\.0\.0\.1:1\): cannot connect"):
        connect("server", spec, connect_timeout=2)


def test_an_interrupted_command_leaves_nothing_of_its_group(host, tmp_path):
    token = _token()

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGALRM, interrupt)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.5)
        with pytest.raises(KeyboardInterrupt):
            host.run(f"echo $$ > {tmp_path}/pgid; sleep 30{token}", timeout=20)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    pgid = int((tmp_path / "pgid").read_text())
    assert _gone(pgid, token), f"process group {pgid} still has {_members(pgid)}"


def _started(host, token: str):
    process = host.start(f"sleep 30{token}")
    deadline = time.monotonic() + 5
    while not _by_token(token) and time.monotonic() < deadline:
        time.sleep(0.05)
    sleepers = _by_token(token)
    assert sleepers, "the command did not start"
    return process, _pgid(sleepers[0])


def _cut(host: SshHost) -> None:
    """The TCP connection dies under us (sshd's session stays: no pty, so no SIGHUP for the command)."""
    transport = host._connect().client.get_transport()
    assert transport is not None
    transport.sock.shutdown(socket.SHUT_RDWR)


def test_a_lost_connection_kills_the_command_over_a_new_one(sshd, tmp_path):
    host = ssh_host(sshd, tmp_path)
    token = _token()
    process, pgid = _started(host, token)
    _cut(host)
    with pytest.raises(HostError, match="connection lost while a command ran$"):
        process.finish(10)
    process.close()
    assert _gone(pgid, token), f"process group {pgid} still has {_members(pgid)}"
    assert host.run("true", 5).ok  # the host reconnected to kill it, and stays usable
    host.close()


def test_a_host_gone_for_good_is_named_with_what_may_still_run(tmp_path, caplog):
    server = start_sshd(tmp_path / "sshd")
    token, pgid = _token(), None
    try:
        host = ssh_host(server, tmp_path)
        process, pgid = _started(host, token)
        server.stop()  # no new connection is possible; the established one lives on...
        _cut(host)  # ...until now
        with caplog.at_level(logging.WARNING, logger="orchestrator.remote"):
            with pytest.raises(HostError, match=rf"^server \(root@127\.0\.0\.1:{server.port}\): connection lost.*"
                                                rf"may still run our process group {pgid}: could not kill it") as lost:
                process.finish(10)
        assert f"sleep 30{token}" not in str(lost.value)  # the command is run.log's, not the user's
        assert any(f"process group {pgid}" in r.getMessage() and f"sleep 30{token}" in r.getMessage()
                   for r in caplog.records if r.name == "orchestrator.remote")
        process.close()
        host.close()
    finally:
        if pgid:
            try:
                os.killpg(pgid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        server.stop()


def test_kill_agents_ends_exactly_the_given_commands(host):
    """Not every command that looks the same: another run's agents built from the same sources
    run the same binary with the same path."""
    from orchestrator.run.cell import kill_agents

    token = _token()
    ours, pgid = _started(host, token)
    theirs = host.start(f"sleep 30{token}")
    deadline = time.monotonic() + 5
    while len(_by_token(token)) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    other = [pid for pid in _by_token(token) if _pgid(pid) != pgid]
    assert len(other) == 1
    try:
        kill_agents([ours])
        assert _gone(pgid, "never-matches"), f"process group {pgid} still has {_members(pgid)}"
        assert _stat(other[0]) is not None and _stat(other[0])[0] != "Z"  # type: ignore[index]
    finally:
        theirs.close()
        ours.close()
    assert not _by_token(token)


class _HeardShell:
    def __init__(self):
        self.shell_output = {}

    def heard_shell(self, stream, data):
        self.shell_output.setdefault(stream, data)

    def shell_started(self, seconds):
        self.shell_startup = seconds


def _bare_process(keep_stderr=True):
    """An SshProcess with only its output parsing, no channel."""
    from orchestrator.remote.hosts import SshProcess
    process = SshProcess.__new__(SshProcess)
    process.host, process.errors, process.pgid, process.own_group, process.keep_stderr, process.ended = \
        "server (x)", bytearray(), None, True, keep_stderr, False
    process.before, process.framed = {"stdout": bytearray(), "stderr": bytearray()}, {"stdout": False, "stderr": False}
    process.ssh_host = _HeardShell()
    process.output, process.eof, process.started, process.timed = Output(), False, time.monotonic() - 1.5, True
    return process


def test_a_garbled_pgid_marker_is_a_clear_error_not_a_traceback():
    process = _bare_process()
    with pytest.raises(HostError, match="did not report its process group"):
        process._feed_stderr(b"@@orchestrate-pgid $$ fish: $$ is not supported\n")
    process = _bare_process()
    process._feed_stderr(b"@@orchestrate-pgid 4242\nhello\n")
    assert process.pgid == 4242 and bytes(process.errors) == b"hello\n"


def test_what_the_login_shell_prints_is_set_aside_on_both_streams():
    """A chatty .bashrc's lines, arriving in pieces and split anywhere, never reach the command's
    stdout (a tar stream) or its stderr (an error message); the host keeps them to tell the user."""
    process = _bare_process()
    for piece in (b"*** SITE BAN", b"NER\ncaf\xe9\n@@orchestrate-st", b"dout\nREADY 1\n", b"\x00tar"):
        process._got_stdout(piece)
    for piece in (b"bash: warning: setlocale\n@@orchestrate-pg", b"id 77", b"\nagent says\n"):
        process._feed_stderr(piece)
    assert process.output.take("READY") == "READY 1"
    assert process.output.rest() == b"\x00tar"
    assert process.pgid == 77 and bytes(process.errors) == b"agent says\n"
    assert 1.5 <= process.ssh_host.shell_startup < 60  # from asking for the session to our command running
    assert process.ssh_host.shell_output == {"stdout": b"*** SITE BANNER\ncaf\xe9\n",
                                             "stderr": b"bash: warning: setlocale\n"}


def test_a_login_shell_that_never_lets_our_command_start_is_named():
    from orchestrator.remote.hosts import SHELL_OUTPUT_LIMIT
    process = _bare_process()
    with pytest.raises(HostError, match="login shell printed over"):
        process._got_stdout(b"y\n" * (SHELL_OUTPUT_LIMIT // 2 + 1))


@pytest.mark.parametrize("shell", ["sh", "bash", "fish", "csh", "tcsh"])
def test_a_command_means_the_same_under_any_login_shell(shell):
    from orchestrator.remote.hosts import login_shell_command
    import subprocess
    path = shutil.which(shell)
    if path is None:
        pytest.fail(f"`{shell}` is not installed (./bootstrap.sh test installs it)")
    script = "x='a b'; printf '%s|%s\\n' \"$x\" \"\\$HOME\" ! 'it''s'\necho \"é `echo q`\" $((1+2)); exit 7"
    want = subprocess.run(["sh", "-c", script], capture_output=True)
    got = subprocess.run([path, "-c", login_shell_command(script)], capture_output=True)
    assert want.stdout and (got.returncode, got.stdout, got.stderr) == (want.returncode, want.stdout, want.stderr)


def test_a_login_shell_that_echoes_our_command_line_does_not_fool_the_markers(tmp_path):
    """`set -x` in the start-up files (here through BASH_ENV) makes bash print the command line
    it runs, our markers' printf included, on stderr before the command runs."""
    import subprocess
    from orchestrator.remote.hosts import framed, login_shell_command
    rc = tmp_path / "rc"
    rc.write_text("set -x\n")
    done = subprocess.run(["bash", "-c", login_shell_command(framed("echo hi; echo oops >&2"))], capture_output=True,
                          env={**os.environ, "BASH_ENV": str(rc)}, timeout=30)
    assert done.stderr.startswith(b"+ exec /bin/sh")  # the echo of our command line came first
    process = _bare_process()
    process._got_stdout(done.stdout)
    process._feed_stderr(done.stderr)
    assert process.output.rest() == b"hi\n" and bytes(process.errors) == b"oops\n"
    assert process.pgid is not None and process.ssh_host.shell_output["stderr"].startswith(b"+ exec /bin/sh")


def test_a_gated_command_read_late_does_not_count_as_a_slow_login_shell():
    """An armed cell's command is read only when its cell comes, seconds after its marker arrived:
    that wait is not the shell's start-up, and must not stop later cells from being armed."""
    process = _bare_process()
    process.timed = False
    process._feed_stderr(b"@@orchestrate-pgid 99\n")
    assert process.pgid == 99 and not hasattr(process.ssh_host, "shell_startup")
