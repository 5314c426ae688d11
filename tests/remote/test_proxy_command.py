"""A ProxyCommand that fails is named with its cause: its exit status and the end of what it
printed on stderr (OpenSSH's "Host key verification failed."), at once rather than after the
banner timeout; paramiko's own log lines about it never reach the terminal."""

from __future__ import annotations

import shlex
import sys
import time
from pathlib import Path

import paramiko
import pytest
import yaml

from orchestrator.errors import HostError
from orchestrator.experiment.inventory import HostSpec
from orchestrator.remote import sshconnect
from orchestrator.remote.hosts import connect
from orchestrator.remote.sshconnect import STDERR_KEPT, STDERR_QUOTED, _ProxyCommand, proxy_failure

from ..conftest import ROOT

OPENSSH_SAID = ("No ED25519 host key is known for 198.19.1.2 and you have requested strict checking.\r\n"
                "Host key verification failed.\r\n")


def _child(script: str) -> str:
    """A ProxyCommand line that runs this Python code (paramiko splits it as a shell would)."""
    return shlex.join([sys.executable, "-c", script])


# ---------------------------------------------------------------------------- the message


def test_the_message_quotes_the_command_its_status_and_what_it_said():
    message = proxy_failure("ssh -W 10.0.0.2:22 bastion", 255, OPENSSH_SAID)
    assert message == ("`ssh -W 10.0.0.2:22 bastion` exited with status 255 and said: \"No ED25519 host key is "
                       "known for 198.19.1.2 and you have requested strict checking. Host key verification failed.\"")


def test_the_message_keeps_the_end_of_a_long_stderr_on_one_printable_line():
    noise = "".join(f"debug1: line {n}\n" for n in range(2000)) + "\x1b[31mred\x07\n" + OPENSSH_SAID
    message = proxy_failure("ssh -v bastion", 255, noise)
    said = message.split(" and said: ", 1)[1]
    assert len(said) <= STDERR_QUOTED + 2  # the quotes
    assert said.startswith('"…') and said.endswith('Host key verification failed."')
    assert "\n" not in message and "\r" not in message and "\x1b" not in message and "\x07" not in message


def test_the_message_says_when_nothing_was_said_or_a_signal_ended_it():
    assert proxy_failure("nc bastion 22", 1, "") == "`nc bastion 22` exited with status 1, saying nothing on stderr"
    assert proxy_failure("nc bastion 22", -15, "  \n") == "`nc bastion 22` was killed by SIGTERM, saying nothing on stderr"
    assert proxy_failure("nc bastion 22", None, "x").startswith("`nc bastion 22` is still running")


# ---------------------------------------------------------------------------- the child


def test_the_end_of_its_output_fails_at_once_with_what_it_said():
    proxy = _child("import sys; sys.stderr.write('Host key verification failed.\\r\\n'); sys.exit(255)")
    command = _ProxyCommand(proxy)
    command.settimeout(10)
    started = time.monotonic()
    try:
        with pytest.raises(paramiko.ProxyCommandFailure, match="exited with status 255 and said: \"Host key verification failed.\""):
            while True:
                command.recv(128)
        assert time.monotonic() - started < 5  # paramiko's own recv spins until the timeout
    finally:
        command.close()


def test_a_chatty_child_neither_blocks_nor_is_kept_whole():
    # 1 MiB on stderr: more than a pipe holds, so it blocks unless the stderr is drained.
    proxy = _child("import sys; sys.stderr.write('x' * (1 << 20) + 'the end\\n'); sys.stdout.write('SSH-2.0-x\\r\\n')")
    command = _ProxyCommand(proxy)
    command.settimeout(10)
    try:
        assert command.recv(128).startswith(b"SSH-2.0-x")
        assert command.ended(wait=10) == 0
        assert len(command.stderr) <= STDERR_KEPT and command.stderr.endswith("the end\n")
    finally:
        command.close()


def test_close_never_raises_after_the_child_is_gone():
    command = _ProxyCommand(_child("pass"))
    assert command.ended(wait=10) == 0
    command.close()
    command.close()  # the transport thread closes it again; an exception there prints a traceback


# ---------------------------------------------------------------------------- through connect and the CLI

FAILING = _child("import sys; sys.stderr.write('" + OPENSSH_SAID.replace("\r\n", "\\r\\n") + "'); sys.exit(255)")


def _ssh_config(tmp_path: Path) -> Path:
    config = tmp_path / "ssh_config"
    config.write_text(f"Host behind\n  HostName 192.0.2.7\n  User root\n  ProxyCommand {FAILING}\n")
    return config


def test_connect_names_the_proxy_command_and_quotes_it(tmp_path):
    started = time.monotonic()
    with pytest.raises(HostError) as caught:
        connect("server", HostSpec(host="behind", workdir=str(tmp_path / "w")), 10, str(_ssh_config(tmp_path)))
    assert time.monotonic() - started < 5  # not the 10 s banner timeout
    message = str(caught.value)
    assert message.startswith("server (behind): cannot connect through its ProxyCommand: `")
    assert "exited with status 255 and said:" in message and "Host key verification failed." in message
    assert caught.value.exit_code == 3


def test_a_silent_proxy_command_is_quoted_and_ended(tmp_path, monkeypatch):
    """Alive but no SSH banner (a bastion that hangs): the timeout is the error, what it said
    so far is quoted, and the child does not outlive the failed connect."""
    made: list[_ProxyCommand] = []

    class Recorded(_ProxyCommand):
        def __init__(self, command_line: str):
            super().__init__(command_line)
            made.append(self)

    monkeypatch.setattr(sshconnect, "_ProxyCommand", Recorded)
    config = tmp_path / "ssh_config"
    hang = _child("import sys, time; sys.stderr.write('debug1: connecting to bastion\\n'); sys.stderr.flush(); time.sleep(60)")
    config.write_text(f"Host behind\n  HostName 192.0.2.7\n  User root\n  ProxyCommand {hang}\n")
    with pytest.raises(HostError) as caught:
        connect("server", HostSpec(host="behind", workdir=str(tmp_path / "w")), 0.5, str(config))
    message = str(caught.value)
    assert message.startswith("server (behind): SSH failed through ProxyCommand `"), message
    assert message.endswith('; the ProxyCommand said: "debug1: connecting to bastion"'), message
    assert len(made) == 1 and made[0].process.poll() is not None


def _inventory(tmp_path: Path) -> Path:
    inventory = tmp_path / "inventory.yml"
    inventory.write_text(yaml.safe_dump({
        "ssh_config": str(_ssh_config(tmp_path)),
        "server": {"host": "behind", "workdir": str(tmp_path / "s")},
        "client": {"host": "behind", "workdir": str(tmp_path / "c")},
    }))
    return inventory


def _terminal_is_clean(done, what: str) -> None:
    terminal = done.stdout + done.stderr
    assert done.returncode == 3, terminal
    assert "Host key verification failed." in terminal, terminal
    assert "through its ProxyCommand" in terminal, terminal
    # paramiko's transport thread logs "Exception (client): ..." and a traceback; never here.
    assert "Exception (client)" not in terminal and "Traceback" not in terminal, f"{what}:\n{terminal}"


def test_check_prints_no_paramiko_log_line(tmp_path):
    from ..cli.test_cli import orchestrate

    done = orchestrate("check", str(ROOT / "configs" / "smoke.yml"), "--inventory", str(_inventory(tmp_path)))
    _terminal_is_clean(done, "check")


def test_run_puts_paramikos_log_lines_in_run_log_only(tmp_path):
    from ..cli.test_cli import orchestrate

    results = tmp_path / "results"
    done = orchestrate("run", str(ROOT / "configs" / "smoke.yml"), "--inventory", str(_inventory(tmp_path)),
                       "--results", str(results), "--no-report", "--yes")
    _terminal_is_clean(done, "run")
    (run_dir,) = results.iterdir()
    assert "paramiko.transport Exception (client)" in (run_dir / "run.log").read_text()
