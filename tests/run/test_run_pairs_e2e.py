"""One experiment on several lab pairs at once, for real: three pairs of namespaces with
three MTUs, each with its own sshds, agents and perf; a pair that loses its server fails alone;
a signal ends every pair's agents; --pairs and --serial; check on every pair at once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from orchestrator import lab
from orchestrator.rows import layout
from orchestrator.errors import ExitStatus
from orchestrator.rows.results import read_results

from ..conftest import ROOT
from ..labs import namespace_processes, running_lab
from ..cli.test_cli import ENV, ORCHESTRATE, orchestrate

pytestmark = [pytest.mark.integration, pytest.mark.lab]

# Derived from the session's own prefix, short enough for "<prefix>-p3-ms" to fit IFNAMSIZ.
PREFIX = (os.environ.get("ORCH_TEST_LAB_PREFIX") or f"t{os.getpid() % 100000}")[:6] + "-r"
MTUS = (1500, 9000, 1280)
PAIRS = ("p1", "p2", "p3")
SMOKE = ROOT / "configs" / "smoke.yml"


@pytest.fixture(scope="module")
def pairs_lab(tmp_path_factory):
    with running_lab(tmp_path_factory.mktemp("pairs"), PREFIX, pairs=3, mtus=MTUS) as (inventory, _):
        yield inventory


def namespaces(pairs=PAIRS) -> list[str]:
    return [f"{PREFIX}-{pair}-{role}" for pair in pairs for role in ("server", "client")]


def lab_processes(pairs=PAIRS) -> list[tuple[str, int, list[str]]]:
    """(namespace, pid, argv) of every live process in these pairs' namespaces."""
    return namespace_processes(namespaces(pairs))


def agents_in(pair: str, size: str = "16384") -> list[int]:
    """Agents of the experiment's cells (not the 1 KiB data-path probe) running in a pair."""
    return [pid for _, pid, argv in lab_processes((pair,))
            if argv[0].endswith("/bin/agent") and "--size" in argv and argv[argv.index("--size") + 1] == size]


def ours_alive(pairs=PAIRS) -> list[str]:
    """Every process of ours in the pairs' namespaces: all but the sshd listeners."""
    return [f"{ns} {pid}: {' '.join(argv)}" for ns, pid, argv in lab_processes(pairs) if "[listener]" not in " ".join(argv)]


def wait_until_none_of_ours(timeout: float, pairs=PAIRS) -> list[str]:
    deadline = time.monotonic() + timeout
    while (left := ours_alive(pairs)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


def experiment(tmp_path: Path, **overrides) -> Path:
    data = {"name": "pairs", "matrix": {"threads": [1, 2, 3]}, "mode": "one_copy", "message_size": "16KiB",
            "duration": "1.5s", "warmup": "0.2s", "order": "listed", "perf": {"events": ["context-switches", "task-clock"]},
            # Several pairs' sessions on a shared 2-core machine: sshd may take seconds to answer.
            "timeouts": {"connect": "30s"}}
    data.update(overrides)
    path = tmp_path / "experiment.yml"
    path.write_text(yaml.safe_dump(data))
    return path


def only_run(results: Path) -> Path:
    runs = [p for p in results.iterdir() if p.is_dir()]
    assert len(runs) == 1, runs
    return runs[0]


def rows_by_pair(run_dir: Path) -> dict[str, list[str]]:
    frame = read_results(run_dir / "results.csv")
    found: dict[str, list[str]] = {}
    for pair, cell_id in zip(frame["pair"], frame["cell_id"]):
        found.setdefault(str(pair), []).append(str(cell_id))
    return found


def test_three_pairs_run_smoke_at_once_each_with_its_own_mtu(pairs_lab, tmp_path):
    results = tmp_path / "results"
    done = orchestrate("run", str(SMOKE), "--inventory", str(pairs_lab), "--results", str(results), "--no-report",
                       "--json", timeout=300)
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert {name: p["status"] for name, p in doc["pairs"].items()} == {p: "ok" for p in PAIRS}
    run_dir = only_run(results)
    planned = json.loads((run_dir / "plan.json").read_text())
    cell_ids = sorted(c["cell_id"] for c in planned["cells"])
    assert len(cell_ids) == 8
    found = rows_by_pair(run_dir)
    # Every pair's cells, each exactly once, under the right pair.
    assert {pair: sorted(ids) for pair, ids in found.items()} == {pair: cell_ids for pair in PAIRS}
    assert (read_results(run_dir / "results.csv")["status"] == "ok").all()
    for index, pair in enumerate(PAIRS):
        for role in ("server", "client"):
            facts = json.loads((layout.hosts_dir(run_dir, pair) / f"{role}.json").read_text())
            assert facts["nic"]["mtu"] == MTUS[index], (pair, role, facts["nic"])
        for cell_id in cell_ids:
            assert (layout.cell_dir(run_dir, cell_id, pair) / "cell.json").is_file()
        assert (layout.pair_root(run_dir, pair) / "processes.jsonl").is_file()
    assert not (run_dir / "cells").exists()  # no pair named default: nothing at the top
    series = pd.read_csv(run_dir / "intervals.csv")
    assert set(series["pair"]) == set(PAIRS)
    assert not wait_until_none_of_ours(5)
    # The report of the real run shows the three pairs: against the baseline, and their MTUs apart.
    made = orchestrate("report", str(run_dir), "--baseline", "p2", timeout=300)
    assert made.returncode == 0, made.stderr
    text = (run_dir / "report.md").read_text()
    assert "## Pairs compared" in text and "The baseline is **p2** (chosen with `--baseline`)" in text
    mtu_rows = [line for line in text.splitlines() if "mtu" in line.lower() and "differs" in line]
    assert mtu_rows and all(str(m) in mtu_rows[0] for m in MTUS), mtu_rows
    # Each pair has its own sshds and addresses: listed where each pair ran, not as differences.
    differing = [line for line in text.splitlines() if line.endswith("| differs |")]
    assert not [line for line in differing if "ssh_target" in line or "data_address" in line], differing
    assert [line for line in text.splitlines() if line.startswith("| server.ssh_target | ")]
    compared = pd.read_csv(run_dir / "pairs.csv")
    assert set(compared["pair"]) == {"p1", "p3"}, compared.columns.tolist()


def test_a_pair_whose_server_sshd_stops_fails_alone_and_resume_completes_it(pairs_lab, tmp_path):
    results = tmp_path / "results"
    victim = "p2"

    def stop_sshd() -> None:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and not agents_in(victim):
            time.sleep(0.05)
        # Every sshd in p2's server namespace: the listener and the session serving us.
        for ns, pid, argv in lab_processes((victim,)):
            if ns == f"{PREFIX}-{victim}-server" and "sshd" in " ".join(argv):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass

    stopper = threading.Thread(target=stop_sshd, daemon=True)
    stopper.start()
    try:
        done = orchestrate("run", str(experiment(tmp_path)), "--inventory", str(pairs_lab), "--results", str(results),
                           "--no-report", "--json", timeout=240)
    finally:
        stopper.join()
    try:
        assert done.returncode == ExitStatus.SOME_PAIRS_FAILED == 7, done.stderr
        doc = json.loads(done.stdout)
        assert doc["pairs"][victim]["status"] == "failed" and "no longer reachable" in doc["pairs"][victim]["error"]
        assert all(doc["pairs"][p]["status"] == "ok" for p in PAIRS if p != victim), doc["pairs"]
        assert "Traceback" not in done.stderr
        run_dir = only_run(results)
        # Said once, short: the host, our process group there and --resume; the commands are run.log's.
        assert done.stderr.count("no longer reachable") == done.stderr.count("orchestrate run --resume") == 1, done.stderr
        assert "may still run there" in doc["error"] and len(doc["error"]) < 600, doc["error"]
        assert "mkdir -p" not in done.stderr and "mkdir -p" in (run_dir / layout.RUN_LOG).read_text()
        found = rows_by_pair(run_dir)
        for pair in PAIRS:
            if pair != victim:
                assert sorted(found[pair]) == [f"stream-one_copy-16384B-{t}t-r1" for t in (1, 2, 3)], found
        assert len(found.get(victim, [])) < 3
    finally:
        lab.up(lab.LabOptions(prefix=PREFIX, inventory_path=pairs_lab, pairs=3, mtus=MTUS))  # restores the sshd
    resumed = orchestrate("run", "--resume", str(run_dir), "--no-report", timeout=240)
    assert resumed.returncode == 0, resumed.stderr
    frame = read_results(run_dir / "results.csv")
    assert (frame["status"] == "ok").all()
    found = rows_by_pair(run_dir)
    assert {p: sorted(ids) for p, ids in found.items()} == \
        {p: [f"stream-one_copy-16384B-{t}t-r1" for t in (1, 2, 3)] for p in PAIRS}
    assert not wait_until_none_of_ours(10)


def test_sigint_during_a_two_pair_run_leaves_nothing_of_ours_in_any_namespace(pairs_lab, tmp_path):
    results = tmp_path / "results"
    config = experiment(tmp_path, duration="3s")
    process = subprocess.Popen([*ORCHESTRATE, "run", str(config), "--inventory", str(pairs_lab), "--results", str(results),
                                "--no-report", "--pairs", "p1,p3"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and not (agents_in("p1") and agents_in("p3")):
        time.sleep(0.05)
    assert agents_in("p1") and agents_in("p3"), "both pairs' cells should be running"
    time.sleep(0.3)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=90)
    assert process.returncode == 130, stderr
    assert "interrupted (SIGINT)" in stderr and "--resume" in stderr and "Traceback" not in stderr
    # The agents were ended before the orchestrator exited, in both pairs.
    assert not agents_in("p1") and not agents_in("p3")
    assert not wait_until_none_of_ours(5)
    run_dir = only_run(results)
    assert "SIGINT received" in (run_dir / "run.log").read_text()
    # Nothing ran on the pair that was not asked for.
    assert not layout.pair_root(run_dir, "p2").exists()


def test_pairs_selects_and_serial_runs_one_pair_after_the_other(pairs_lab, tmp_path):
    results = tmp_path / "results"
    config = experiment(tmp_path, matrix={"threads": [1, 2]}, duration="0.5s")
    unknown = orchestrate("run", str(config), "--inventory", str(pairs_lab), "--results", str(results),
                          "--pairs", "p1,gen9")
    assert unknown.returncode == 2, unknown.stderr
    assert "gen9" in unknown.stderr and "p1, p2, p3" in unknown.stderr
    assert not results.exists() or not any(results.iterdir())  # nothing was made

    done = orchestrate("run", str(config), "--inventory", str(pairs_lab), "--results", str(results),
                       "--no-report", "--pairs", "p3,p1", "--serial", timeout=240)
    assert done.returncode == 0, done.stderr
    run_dir = only_run(results)
    frame = read_results(run_dir / "results.csv")
    # One after the other, in the inventory's order: every p1 row before every p3 row.
    assert list(frame["pair"]) == ["p1", "p1", "p3", "p3"], list(frame["pair"])
    assert not layout.pair_root(run_dir, "p2").exists()
    saved = yaml.safe_load((run_dir / "inventory.yml").read_text())
    assert list(saved["pairs"]) == ["p1", "p3"]  # --resume runs exactly these


def test_check_checks_every_pair_of_the_lab_at_once(pairs_lab, tmp_path):
    done = orchestrate("check", str(SMOKE), "--inventory", str(pairs_lab), "--json", timeout=240)
    doc = json.loads(done.stdout)
    assert done.returncode == doc["exit_status"] == 0, done.stderr
    assert doc["pairs"] == {p: {"problems": 0, "error": None} for p in PAIRS}
    assert {f["pair"] for f in doc["findings"]} == set(PAIRS)
    assert all(f"preflight: pair {p}" in done.stderr for p in PAIRS)
    assert not wait_until_none_of_ours(5)  # check starts nothing
