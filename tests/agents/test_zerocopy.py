"""MSG_ZEROCOPY over loopback: the kernel copies on local delivery, and the agent says so."""

from __future__ import annotations

from pathlib import Path

import pytest

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
