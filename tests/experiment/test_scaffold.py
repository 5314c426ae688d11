"""`orchestrate init`'s example inventory: one way of counting for both hosts, so a user who copies
it never mixes kernel-and-user counts with user-space-only ones without meaning to."""

from __future__ import annotations

import re

from orchestrator.experiment.inventory import load_inventory
from orchestrator.experiment.scaffold import INVENTORY_TEMPLATE, init

from ..conftest import ROOT


def test_the_examples_hosts_count_alike_and_the_alternatives_are_comments(tmp_path):
    init(tmp_path)
    inventory = load_inventory(tmp_path / "inventory.yml")
    assert inventory.server.perf_access == inventory.client.perf_access == "sudo"
    # Every value perf_access takes is explained, in comments only.
    for value in ("direct", "sudo", "user-only"):
        assert re.search(rf"^\s*#.*\b{value}\b", INVENTORY_TEMPLATE, re.M), value
    assert re.findall(r"^\s*perf_access: (\S+)", INVENTORY_TEMPLATE, re.M) == ["sudo", "sudo"]


def test_the_readmes_inventory_examples_give_both_hosts_the_same_perf_access():
    readme = (ROOT / "README.md").read_text()
    for block in re.findall(r"```yaml\n(.*?)```", readme, re.S):
        if "server:" in block and "client:" in block and "pairs:" not in block:
            access = re.findall(r"^\s*perf_access: (\S+)", block, re.M)
            assert len(set(access)) <= 1 and len(access) in (0, 2), block
