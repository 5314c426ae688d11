"""One workdir shared by both hosts (an NFS home with the default `~/.cache/orchestrate`, or both
roles given the same `~/` path while logged in as one user): both deploy into it at once, and
neither build may trample the other's. The lab's namespaces share this machine's /home, so a lab
user with the same `~/` workdir on both roles is exactly that."""

from __future__ import annotations

import json
import os
import pwd
import socket
import subprocess
from pathlib import Path

import pytest
import yaml

from orchestrator.remote import deploy
from orchestrator.cli import main
from orchestrator.rows.results import read_results

from ..labs import running_lab
from ..conftest import ROOT

pytestmark = [pytest.mark.integration, pytest.mark.lab]

PREFIX = os.environ.get("ORCH_TEST_LAB_PREFIX", "orcht") + "sw"
SHARED = f"~/.cache/{PREFIX}shared"


@pytest.fixture(scope="module")
def shared_inventory(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("lab-shared")
    with running_lab(folder, PREFIX, ("useradd",), user=f"{PREFIX}user") as (inventory, _):
        data = yaml.safe_load(inventory.read_text())
        for role in ("server", "client"):
            data[role]["workdir"] = SHARED
            data[role]["perf_access"] = "user-only"
        shared = folder / "shared-inventory.yml"
        shared.write_text(yaml.safe_dump(data))
        yield shared


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_both_hosts_deploying_into_one_workdir_at_once(shared_inventory, tmp_path):
    config = yaml.safe_load((ROOT / "configs" / "smoke.yml").read_text())
    config.update(port=_free_port(), matrix={"workload": ["stream"], "mode": ["two_copy"]})
    smoke = tmp_path / "smoke.yml"
    smoke.write_text(yaml.safe_dump(config))
    home = Path(pwd.getpwnam(f"{PREFIX}user").pw_dir)
    agents = home / SHARED.removeprefix("~/") / "agents"
    arch = os.uname().machine
    for attempt in range(3):
        # Nothing cached: both hosts build at the same moment, into the same folder.
        subprocess.run(["rm", "-rf", str(agents)], check=True)
        results = tmp_path / f"results{attempt}"
        code = main(["run", str(smoke), "--inventory", str(shared_inventory), "--results", str(results), "--no-report"])
        (run_dir,) = results.iterdir()
        log = (run_dir / "run.log").read_text()
        assert code == 0, log[-3000:]
        frame = read_results(run_dir / "results.csv")
        assert len(frame) > 0 and (frame["status"] == "ok").all()
        facts = {role: json.loads((run_dir / "hosts" / f"{role}.json").read_text()) for role in ("server", "client")}
        folder = agents / f"{deploy.source_hash()}-{arch}"
        # One agent, in a folder named for its architecture, recorded the same by both hosts;
        # one host built it and the other found it in place and reused it.
        assert {f["agent_path"] for f in facts.values()} == {f"{folder}/bin/agent"}
        builds = sorted(f["agent_build"]["where"] for f in facts.values())
        assert builds in (["cached", "client"], ["cached", "server"]), builds
        assert len({f["agent_build"]["sha256"] for f in facts.values()}) == 1
        assert f"arch {arch}\n" in (folder / "bin" / "manifest").read_text()
        # No build folder left behind.
        assert sorted(p.name for p in folder.iterdir()) == ["bin"]
