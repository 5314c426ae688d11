"""MSG_ZEROCOPY over loopback: the kernel copies on local delivery, and the agent says so."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import require_root, require_tool

from .conftest import assert_ok, run_pair

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("size", [1024, 65536])
def test_zerocopy_completions_all_copied(built_agent: Path, size: int) -> None:
    args = ["--mode", "zero_copy", "--size", str(size), "--threads", "2", "--duration", "0.4",
            "--warmup", "0.1", "--verify"]  # fmt: skip
    pair = run_pair(built_agent, args)
    assert_ok(pair)
    sender = pair.server.doc
    zc = sender["zerocopy"]
    assert zc["sends"] > 0
    assert zc["notifications"] > 0
    assert zc["copied_sends"] == zc["completed_sends"] == zc["sends"]
    assert zc["copied_notifications"] == zc["notifications"]
    assert zc["outstanding_at_end"] == 0
    # Every send call in zero_copy mode was a MSG_ZEROCOPY sendmsg.
    assert zc["sends"] == sender["total"]["send_calls"]
    assert sum(t["zerocopy"]["sends"] for t in sender["threads_detail"]) == zc["sends"]
    assert pair.client.doc["zerocopy"] is None  # the receiver sends nothing


# In a private network namespace (its own loopback and its own net.core.optmem_max), a tiny
# optmem limit makes MSG_ZEROCOPY sends fail with ENOBUFS; the agent must wait for completions
# and retry, and still deliver every byte.
ENOBUFS_SCRIPT = """
set -e
ip link set lo up
sysctl -qw net.core.optmem_max=2048
"$1" server --bind 127.0.0.1 --port 0 $ARGS > "$2/server.out" 2>&1 &
for i in $(seq 100); do grep -q READY "$2/server.out" && break; sleep 0.05; done
port=$(awk '/READY/ {print $3}' "$2/server.out")
"$1" client --connect 127.0.0.1 --port "$port" $ARGS > "$2/client.json"
wait
"""


def test_zerocopy_enobufs_retried(built_agent: Path, tmp_path: Path) -> None:
    require_root()
    require_tool("unshare")
    require_tool("ip")
    args = "--mode zero_copy --size 65536 --threads 2 --duration 0.5 --verify"
    r = subprocess.run(["unshare", "-n", "sh", "-c", ENOBUFS_SCRIPT, "sh", str(built_agent),
                        str(tmp_path)], env={**os.environ, "ARGS": args},
                       capture_output=True, text=True, timeout=30)  # fmt: skip
    assert r.returncode == 0, r.stderr
    server = json.loads((tmp_path / "server.out").read_text().split("\n", 1)[1])
    client = json.loads((tmp_path / "client.json").read_text())
    assert server["status"] == client["status"] == "ok"
    zc = server["zerocopy"]
    assert zc["enobufs"] > 0
    assert zc["completed_sends"] == zc["sends"] > 0 and zc["outstanding_at_end"] == 0
    assert server["total"]["bytes_sent"] == client["total"]["bytes_received"]
