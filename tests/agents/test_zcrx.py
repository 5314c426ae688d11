"""Receiving through mapped pages (--receive zerocopy): each system call of agents/zcrx.c made to
fail on a real descriptor (zcrx_calls.c, built warning-free with gcc and clang), and real agents
in a network namespace whose loopback carries whole pages (MTU 61492), where mapping happens."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from .conftest import run_c_checks, run_pair

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("compiler", ["gcc", "clang"])
def test_every_call_failure_is_returned_and_named(compiler: str, tmp_path: Path) -> None:
    run_c_checks(compiler, tmp_path, "zcrx_calls", "zcrx.c", "-D_GNU_SOURCE")


def test_receive_zerocopy_is_refused_with_rr(built_agent: Path) -> None:
    r = subprocess.run([str(built_agent), "server", "--bind", "127.0.0.1", "--port", "0", "--workload", "rr",
                        "--receive", "zerocopy"], capture_output=True, text=True, timeout=10)  # fmt: skip
    assert r.returncode == 2 and "--receive zerocopy needs --workload stream" in r.stderr


def test_copy_receiver_reports_no_mapping(built_agent: Path) -> None:
    pair = run_pair(built_agent, ["--size", "65536", "--duration", "0.3"])
    receiver = pair.by_direction("receive")
    assert receiver["receive"] == {"mode": "copy", "mapped": None}


def test_plain_loopback_receive_zerocopy_accounts_every_byte(built_agent: Path) -> None:
    """Whatever the kernel maps, mapped and read bytes add up to what was received, verified."""
    args = ["--mode", "zero_copy", "--size", "65536", "--duration", "0.5", "--verify", "--receive", "zerocopy"]
    pair = run_pair(built_agent, args)
    receiver = pair.by_direction("receive")
    assert receiver["status"] == "ok", receiver["error"]
    mapped = receiver["receive"]["mapped"]
    assert mapped["bytes_mapped"] + mapped["bytes_read"] == receiver["total"]["bytes_received"] > 0


NS_SCRIPT = r"""
set -e
ip link set lo up
ip link set lo mtu 61492
"$1" server --bind 127.0.0.1 --port 0 $ARGS > "$2/server.out" &
pid=$!
for i in $(seq 100); do grep -q READY "$2/server.out" && break; sleep 0.05; done
port=$(head -n 1 "$2/server.out" | cut -d ' ' -f 3)
"$1" client --connect 127.0.0.1 --port "$port" $ARGS > "$2/client.json"
wait $pid
"""


@pytest.mark.parametrize("mode", ["zero_copy", "io_uring_zc", "one_copy"])
def test_whole_pages_are_mapped_from_an_aligned_sender(built_agent: Path, tmp_path: Path, mode: str) -> None:
    """At MTU 61492 every segment carries 15 whole pages: a zero_copy or io_uring_zc sender's bytes are all
    mapped, with hardly a call that maps nothing; a plain sender's (one_copy) pages are not aligned, and the receive falls back to read()."""
    if os.geteuid() != 0 or shutil.which("unshare") is None or shutil.which("ip") is None:
        pytest.skip("needs root, unshare and ip for a network namespace")
    args = f"--mode {mode} --size 65536 --duration 0.5 --verify --receive zerocopy"
    r = subprocess.run(["unshare", "-n", "sh", "-c", NS_SCRIPT, "sh", str(built_agent), str(tmp_path)],
                       env={**os.environ, "ARGS": args}, capture_output=True, text=True, timeout=30)  # fmt: skip
    assert r.returncode == 0, r.stderr
    client = json.loads((tmp_path / "client.json").read_text())
    assert client["status"] == "ok", client["error"]
    mapped = client["receive"]["mapped"]
    received = client["total"]["bytes_received"]
    assert mapped["bytes_mapped"] + mapped["bytes_read"] == received > 0
    if mode in ("zero_copy", "io_uring_zc"):  # both send from pinned, page-aligned user pages
        assert mapped["bytes_mapped"] >= 0.99 * received
        # Each call follows a wait that ends when a whole area is queued: a call maps nothing only
        # after a wait that timed out (100 ms), not once per area as when calling straight on.
        assert mapped["calls"] - mapped["mapped_calls"] <= client["total"]["seconds"] / 0.1 + 2, mapped
    else:
        assert mapped["bytes_mapped"] <= 0.05 * received
