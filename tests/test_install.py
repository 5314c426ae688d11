"""orchestrate as a user installs it: `orchestrate init`, and a wheel in a fresh venv that finds
its agent sources and configs wherever it runs from."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from orchestrator.experiment.config import load_experiment
from orchestrator.experiment.inventory import load_inventory
from orchestrator.experiment.scaffold import INVENTORY_TEMPLATE, init
from orchestrator.rows.results import read_results

from .conftest import ROOT, require_tool
from .cli.test_cli import orchestrate

COMMENTED_KEY = re.compile(r"^(\s*)# ([a-z_]+: \S+)")


def test_init_writes_an_inventory_that_loads_and_the_shipped_configs(tmp_path):
    written = init(tmp_path / "lab")
    assert {p.name for p in written} == {"inventory.yml", "full.yml", "quick.yml", "smoke.yml", "zero-copy.yml"}
    inventory = load_inventory(tmp_path / "lab" / "inventory.yml")
    assert inventory.server.jump is not None and inventory.server.jump.host == "bastion.example.org"
    assert (inventory.server.user, inventory.server.perf_access, inventory.client.perf_access) == ("bench", "sudo", "sudo")
    assert inventory.server.workdir == "~/.cache/orchestrate"
    for name in ("full.yml", "quick.yml", "smoke.yml", "zero-copy.yml"):
        assert (tmp_path / "lab" / "configs" / name).read_bytes() == (ROOT / "configs" / name).read_bytes()
        load_experiment(tmp_path / "lab" / "configs" / name)


def test_every_commented_key_of_the_example_is_a_real_key(tmp_path, monkeypatch):
    """Uncomment every `# key: value` line: the inventory still loads, so the comments tell the truth."""
    # The files the comments name must exist: the inventory checks them at load time.
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / ".ssh").mkdir()
    for name in ("ssh_config", ".ssh/id_ed25519", ".ssh/known_hosts"):
        (tmp_path / name).write_text("# placeholder\n")
    lines = INVENTORY_TEMPLATE.splitlines()
    uncommented = [COMMENTED_KEY.sub(r"\1\2", line) for line in lines]
    assert sum(a != b for a, b in zip(lines, uncommented)) >= 5  # ssh_config, port, key, known_hosts, workdir
    path = tmp_path / "inventory.yml"
    path.write_text("\n".join(uncommented) + "\n")
    inventory = load_inventory(path)
    assert inventory.server.port == 22 and inventory.server.key and inventory.ssh_config
    assert inventory.server.workdir == "~/.cache/orchestrate"



def test_the_examples_several_pairs_block_is_a_valid_inventory(tmp_path):
    """The commented `pairs:` example, uncommented in place of server: and client:, loads as two pairs."""
    lines = INVENTORY_TEMPLATE.splitlines()
    start = lines.index("#  concurrent: true                   # the default: all pairs at once; false: one after another")
    block = [line[1:] for line in lines[start:] if line.startswith("#  ")]
    path = tmp_path / "inventory.yml"
    path.write_text("\n".join(block) + "\n")
    inventory = load_inventory(path)
    assert list(inventory.pairs) == ["gen9", "gen8"] and inventory.concurrent
    assert inventory.pair("gen9").server.user == "bench" and inventory.pair("gen9").client.jump.host == "bastion.example.org"
    assert inventory.pair("gen8").client.data_address == "198.18.8.2"

def test_init_refuses_to_overwrite_unless_forced(tmp_path):
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "quick.yml").write_text("mine\n")
    done = orchestrate("init", str(tmp_path), cwd=tmp_path)
    assert done.returncode == 2 and "quick.yml" in done.stderr and "--force" in done.stderr
    assert (tmp_path / "configs" / "quick.yml").read_text() == "mine\n"
    assert not (tmp_path / "inventory.yml").exists()  # all or nothing
    done = orchestrate("init", "--force", cwd=tmp_path)  # default folder: the current one
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "configs" / "quick.yml").read_bytes() == (ROOT / "configs" / "quick.yml").read_bytes()
    load_inventory(tmp_path / "inventory.yml")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _checkout_copy(target: Path) -> Path:
    """The repository's files, without the venv, builds and results of this checkout."""
    ignore = shutil.ignore_patterns(".git", ".venv", "results", "build", "*.egg-info", "__pycache__", ".pytest_cache",
                                    "lab-inventory.yml")
    shutil.copytree(ROOT, target, ignore=ignore)
    return target


@pytest.mark.integration
@pytest.mark.timeout(300)
def test_a_wheel_in_a_fresh_venv_runs_the_smoke_experiment_from_anywhere(tmp_path):
    require_tool("cc")
    require_tool("perf")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    source = _checkout_copy(tmp_path / "source")
    wheels = tmp_path / "wheels"
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", ".", "-w", str(wheels)],
                           cwd=source, capture_output=True, text=True, env=env, timeout=180)
    assert built.returncode == 0, built.stderr
    (wheel,) = wheels.glob("orchestrate-*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, env=env, timeout=120)
    installed = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                                str(wheel)], capture_output=True, text=True, env=env, timeout=240)
    assert installed.returncode == 0, installed.stderr[-2000:]
    shutil.rmtree(source)  # nothing may come from a checkout from here on

    project = tmp_path / "project"
    project.mkdir()
    bin_orchestrate = str(venv / "bin" / "orchestrate")
    done = subprocess.run([bin_orchestrate, "init"], cwd=project, capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    inventory = yaml.safe_load((project / "inventory.yml").read_text())
    work = tmp_path / "work"
    for role in ("server", "client"):
        inventory[role] = {"host": "local", "data_address": "127.0.0.1", "workdir": str(work)}
    (project / "inventory.yml").write_text(yaml.safe_dump(inventory))
    smoke = project / "configs" / "smoke.yml"
    smoke.write_text(smoke.read_text() + f"port: {_free_port()}\n")

    where = subprocess.run([str(venv / "bin" / "python"), "-c", "from orchestrator.experiment import shipped; print(shipped.agent_sources())"],
                           cwd=project, capture_output=True, text=True, env=env, timeout=60)
    assert where.stdout.strip().startswith(str(venv)), where.stdout + where.stderr

    done = subprocess.run([bin_orchestrate, "run", "configs/smoke.yml", "--no-report"], cwd=project,
                          capture_output=True, text=True, env={**env, "COLUMNS": "200"}, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    (run_dir,) = (project / "results").iterdir()
    frame = read_results(run_dir / "results.csv")
    assert len(frame) == 8 and (frame["status"] == "ok").all(), frame[["cell_id", "error"]]
    facts = json.loads((run_dir / "hosts" / "server.json").read_text())
    assert facts["agent_build"]["where"] in ("server", "client") and facts["agent_path"].startswith(str(work))
