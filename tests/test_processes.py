"""processes.run_local, the one runner for commands on this machine (the lab's and a local host's)."""

from __future__ import annotations

import os
import signal
import time

import pytest

from orchestrator.processes import run_local

from .remote.test_hosts import _gone, _token

pytestmark = pytest.mark.integration


def test_stdout_comes_back_byte_for_byte_and_stderr_apart():
    every_byte = bytes(range(256))
    done = run_local(["sh", "-c", "cat; echo oops >&2; exit 4"], timeout=10, stdin=every_byte)
    assert (done.exit_code, done.stdout, done.stderr, done.note) == (4, every_byte, "oops\n", None)


def test_a_background_child_holding_stderr_delays_the_end_by_a_moment_only(tmp_path):
    """The shell's exit ends the command; a child it left with our stderr gets about a second
    more to write, not its whole life."""
    token = _token()
    started = time.monotonic()
    done = run_local(["sh", "-c", f"echo $$ > {tmp_path}/pgid; sleep 30{token} >/dev/null & echo done"], timeout=20)
    took = time.monotonic() - started
    pgid = int((tmp_path / "pgid").read_text())
    try:
        assert (done.exit_code, done.stdout) == (0, b"done\n")
        assert took < 4, took
    finally:
        os.killpg(pgid, signal.SIGKILL)
    assert _gone(pgid, token)
