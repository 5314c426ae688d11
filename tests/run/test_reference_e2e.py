"""`reference: iperf3` end to end: a real run with real iperf3 and real agents, on this machine
over loopback and over the namespace lab (SSH, sudo perf, a bastion as the lab builds it)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml

from orchestrator.rows.results import read_results

from ..conftest import require_tool
from ..labs import running_lab
from ..cli.test_cli import ENV, ORCHESTRATE, orchestrate
from .test_robust_e2e import free_port, only_run

pytestmark = pytest.mark.integration

PREFIX = os.environ.get("ORCH_TEST_LAB_PREFIX", "orcht")
SIZES, THREADS = (1024, 65536), (1, 2)


def experiment_file(tmp_path: Path) -> Path:
    config = tmp_path / "reference.yml"
    config.write_text(yaml.safe_dump({
        "name": "reference", "matrix": {"mode": ["one_copy", "two_copy"], "message_size": list(SIZES),
                                        "threads": list(THREADS)},
        "duration": "1s", "warmup": "0s", "interval": "0.5s", "port": free_port(), "reference": "iperf3",
        "perf": {"events": ["task-clock", "context-switches"]},
    }))
    return config


def check_reference_run(run_dir: Path) -> None:
    frame = read_results(run_dir / "results.csv")
    refs = frame[frame["mode"] == "iperf3"]
    assert sorted(zip(refs["message_size"], refs["threads"])) == sorted((s, t) for s in SIZES for t in THREADS)
    assert (refs["status"] == "ok").all(), refs[["cell_id", "error"]]
    assert (refs["throughput_gbps"] > 0).all() and (refs["window_bytes"] > 0).all()
    assert (refs["fields"] == 1).all() and (refs["nodelay"]).all()
    # Under the same perf stat as our agents, on both sides.
    assert (refs["server_task_clock"] > 0).all() and (refs["client_task_clock"] > 0).all()
    for cell_id in refs["cell_id"]:
        folder = run_dir / "cells" / cell_id
        for name in ("client.iperf3.json", "server.iperf3.json", "server.perf.csv", "client.perf.csv"):
            assert (folder / name).stat().st_size > 0, f"{cell_id}/{name}"
        assert "iperf3 -c" in (folder / "cell.json").read_text() and "-N -R" in (folder / "cell.json").read_text()
    ours = frame[frame["mode"] != "iperf3"]
    # the matrix's cells (fields 8), and the one_copy cells at one field the run added for iperf3
    assert len(ours) == 3 * len(SIZES) * len(THREADS) and (ours["status"] == "ok").all(), ours[["cell_id", "error"]]
    added = ours[ours["fields"] == 1]
    assert (added["mode"] == "one_copy").all() and added["cell_id"].str.contains("-fields=1-r").all()
    assert sorted(zip(added["message_size"], added["threads"])) == sorted((s, t) for s in SIZES for t in THREADS)
    assert (refs["iperf3_version"].str.startswith("iperf 3.")).all()
    report = (run_dir / "report.md").read_text()
    section = report.split("## Against iperf3", 1)[1]
    for mode in ("one_copy", "two_copy"):
        for size in ("1KiB", "64KiB"):
            for threads in THREADS:
                assert any(line.startswith(f"| {mode} | {size} | {threads} |") for line in section.splitlines()), \
                    (mode, size, threads)
    assert "**At equal settings, one stream: ours ÷ iperf3 is " in section
    assert "### Several streams (`-P 2` and up): kept apart" in section
    # the added cells are not the study's: no set of plots of their own, no fields=1 row in the tables
    assert not [p for p in (run_dir / "plots").iterdir() if p.is_dir()]
    assert "## Tables with fields" not in report and "## Tables" in report
    assert "Against iperf3" in (run_dir / "report.html").read_text()


def test_reference_cells_over_loopback(tmp_path):
    for tool in ("cc", "perf", "iperf3", "ss"):
        require_tool(tool)
    work = str(tmp_path / "work")
    inventory = tmp_path / "inventory.yml"
    inventory.write_text(yaml.safe_dump({"server": {"host": "local", "workdir": work},
                                         "client": {"host": "local", "workdir": work}}))
    results = tmp_path / "results"
    done = orchestrate("run", str(experiment_file(tmp_path)), "--inventory", str(inventory), "--results", str(results),
                       timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    run_dir = only_run(results)
    check_reference_run(run_dir)
    # iperf3 cells have no intervals.csv rows, and a second report does not take that for a
    # file to build again.
    assert "iperf3" not in (run_dir / "intervals.csv").read_text()
    before = (run_dir / "intervals.csv").stat().st_mtime_ns
    assert orchestrate("report", str(run_dir)).returncode == 0
    assert (run_dir / "intervals.csv").stat().st_mtime_ns == before


def test_preflight_says_how_to_get_iperf3(tmp_path):
    """A host without iperf3: the run stops in preflight, naming the package."""
    for tool in ("cc", "perf"):
        require_tool(tool)
    bare = tmp_path / "bin"
    bare.mkdir()
    # Every tool a run needs but iperf3, through a PATH that has no iperf3 on it.
    for tool in ("sh", "uname", "cc", "gcc", "perf", "tar", "ip", "ss", "sha256sum", "mkdir", "cat", "id", "stat",
                 "ls", "grep", "head", "mktemp", "rm", "sleep", "readlink", "dirname", "env", "chmod", "mv", "find",
                 "test", "realpath", "printf", "tr", "sed", "awk", "cut", "wc", "ln", "touch"):
        found = next((Path(p) / tool for p in os.environ["PATH"].split(":") if (Path(p) / tool).is_file()), None)
        if found:
            (bare / tool).symlink_to(found)
    work = str(tmp_path / "work")
    inventory = tmp_path / "inventory.yml"
    inventory.write_text(yaml.safe_dump({"server": {"host": "local", "workdir": work},
                                         "client": {"host": "local", "workdir": work}}))
    done = subprocess.run([*ORCHESTRATE, "check", str(experiment_file(tmp_path)), "--inventory", str(inventory)],
                          capture_output=True, text=True, env={**ENV, "PATH": str(bare)}, timeout=120)
    assert done.returncode != 0
    assert "apt install iperf3" in done.stdout + done.stderr


@pytest.mark.lab
@pytest.mark.parametrize("login", ["root", "user"])
def test_reference_cells_over_the_lab(tmp_path, login):
    """As root, and as an unprivileged login with perf through sudo (iperf3 runs as the user)."""
    require_tool("iperf3")
    tools, options = (), {}
    if login == "user":
        tools, options = ("useradd", "visudo", "sudo", "setpriv"), {"user": f"{PREFIX.replace('-', '')}iu",
                                                                     "sudo_perf": True}
    with running_lab(tmp_path / "lab", f"{PREFIX}-i{login[0]}", tools, **options) as (inventory, _):
        results = tmp_path / "results"
        done = orchestrate("run", str(experiment_file(tmp_path)), "--inventory", str(inventory),
                           "--results", str(results), timeout=600)
        assert done.returncode == 0, done.stdout + done.stderr
        run_dir = only_run(results)
        check_reference_run(run_dir)
        # The lab's data addresses, not loopback.
        cell = next((run_dir / "cells").glob("stream-iperf3-*")) / "cell.json"
        assert "iperf3 -c 198.18." in cell.read_text()
        assert ("sudo -n perf stat" in cell.read_text()) == (login == "user")
