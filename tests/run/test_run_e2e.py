"""`orchestrate run configs/smoke.yml` end to end: real agents, real perf, on this machine and
over a real sshd on loopback."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from orchestrator.rows import intervals
from orchestrator.cli import main
from orchestrator.rows.results import read_results

from ..conftest import ROOT, require_tool
from ..sshd import start_sshd

pytestmark = pytest.mark.integration

MODES = {"two_copy", "one_copy", "zero_copy", "sendfile"}


def run_smoke(tmp_path: Path, inventory: Path) -> Path:
    require_tool("cc")
    require_tool("perf")
    results = tmp_path / "results"
    code = main(["run", str(ROOT / "configs" / "smoke.yml"), "--inventory", str(inventory), "--results", str(results)])
    (run_dir,) = results.iterdir()
    assert code == 0, (run_dir / "results.csv").read_text()
    return run_dir


def check_smoke_run(run_dir: Path) -> pd.DataFrame:
    frame = read_results(run_dir / "results.csv")
    assert len(frame) == 8
    assert set(frame["mode"]) == MODES and set(frame["workload"]) == {"stream", "rr"}
    assert (frame["status"] == "ok").all(), frame[["cell_id", "error"]]
    assert frame["cell_id"].is_unique
    assert (frame["bytes_sent"] == frame["bytes_received"]).all()

    stream = frame[frame["workload"] == "stream"]
    assert (stream["throughput_gbps"] > 0).all()
    assert (stream["window_bytes"] > 0).all()

    zero = frame[frame["mode"] == "zero_copy"]
    # Loopback: the kernel copies every MSG_ZEROCOPY send, and we must say so.
    assert (zero["zerocopy_copied_fraction"] == 1.0).all()
    assert frame[frame["mode"] != "zero_copy"]["zerocopy_copied_fraction"].isna().all()

    rr = frame[frame["workload"] == "rr"]
    assert (rr["transactions"] > 0).all()
    assert (rr["latency_p50_us"] > 0).all() and (rr["latency_p99_us"] >= rr["latency_p50_us"]).all()
    assert stream["latency_p50_us"].isna().all()

    # Software counters are counted on this VM; hardware ones are missing, never 0.
    facts = json.loads((run_dir / "hosts" / "server.json").read_text())
    assert (frame["server_task_clock"] > 0).all() and (frame["client_context_switches"] >= 0).all()
    for event, supported in facts["perf_events_supported"].items():
        column = "server_" + event.lower().replace("-", "_")
        if not supported:
            assert column not in frame or frame[column].isna().all()

    for cell_id in frame["cell_id"]:
        folder = run_dir / "cells" / cell_id
        for name in ("server.json", "client.json", "server.perf.csv", "client.perf.csv", "cell.json"):
            assert (folder / name).stat().st_size > 0, f"{cell_id}/{name}"
    for name in ("config.yml", "inventory.yml", "plan.json", "run.log", "hosts/server.json", "hosts/client.json"):
        assert (run_dir / name).stat().st_size > 0
    assert "perf stat" in (run_dir / "run.log").read_text()
    check_intervals(run_dir, frame)
    return frame


def check_intervals(run_dir: Path, frame: pd.DataFrame) -> None:
    """intervals.csv, appended as cells finished: one read_csv, every cell, the window's bytes
    to the byte, and the same rows as the report would build from the raw files."""
    written = (run_dir / "intervals.csv").read_bytes()
    series = pd.read_csv(run_dir / "intervals.csv")
    assert set(series["cell_id"]) == set(frame["cell_id"])
    per_cell = series.groupby("cell_id")["bytes"].sum()
    for _, row in frame.iterrows():
        assert per_cell[row["cell_id"]] == row["window_bytes"] > 0, row["cell_id"]
    assert (series["length_s"] > 0).all() and (series["throughput_gbps"] >= 0).all()
    intervals.rebuild(run_dir, frame)
    assert (run_dir / "intervals.csv").read_bytes() == written


def test_smoke_on_the_local_inventory(tmp_path):
    inventory = tmp_path / "inventory.yml"
    inventory.write_text(yaml.safe_dump({
        "server": {"host": "local", "workdir": str(tmp_path / "work")},
        "client": {"host": "local", "workdir": str(tmp_path / "work")},
    }))
    run_dir = run_smoke(tmp_path, inventory)
    check_smoke_run(run_dir)
    assert (run_dir / "report.md").exists()


def test_smoke_over_real_ssh(tmp_path):
    sshd = start_sshd(tmp_path / "sshd")
    try:
        inventory = tmp_path / "inventory.yml"
        inventory.write_text(yaml.safe_dump({
            "server": sshd.inventory_entry(str(tmp_path / "server-work")),
            "client": sshd.inventory_entry(str(tmp_path / "client-work")),
        }))
        run_dir = run_smoke(tmp_path, inventory)
        check_smoke_run(run_dir)
        saved = yaml.safe_load((run_dir / "inventory.yml").read_text())
        assert saved["server"]["port"] == sshd.port
        # Each role built its own agent in its own workdir, over SSH.
        assert list((tmp_path / "server-work" / "agents").iterdir())
        assert list((tmp_path / "client-work" / "agents").iterdir())
    finally:
        sshd.stop()


def test_system_wide_perf_scope_counts_the_whole_host(tmp_path):
    """perf.scope: system runs `perf stat -a` around each agent, so softirq receive work that
    no process is charged for is counted too: its task-clock spans every CPU."""
    require_tool("perf")
    config = tmp_path / "system.yml"
    config.write_text(yaml.safe_dump({
        "name": "system-scope", "matrix": {"mode": ["one_copy"]}, "message_size": "64KiB",
        "duration": "0.5s", "warmup": "0.1s", "perf": {"scope": "system", "events": ["task-clock", "context-switches"]},
    }))
    inventory = tmp_path / "inventory.yml"
    inventory.write_text(yaml.safe_dump({
        "server": {"host": "local", "workdir": str(tmp_path / "work")},
        "client": {"host": "local", "workdir": str(tmp_path / "work")},
    }))
    results = tmp_path / "results"
    assert main(["run", str(config), "--inventory", str(inventory), "--results", str(results)]) == 0
    (run_dir,) = results.iterdir()
    frame = read_results(run_dir / "results.csv")
    row = frame.iloc[0]
    assert row["perf_scope"] == "system"
    command = json.loads((run_dir / "cells" / row["cell_id"] / "cell.json").read_text())["commands"]["server"]
    assert " -a -- " in command
    # System-wide task-clock is summed over all CPUs: more CPU time than the agent alone used.
    assert row["server_task_clock"] / 1000 > row["server_cpu_s"]
    # Both roles on one machine: the report warns that summing the sides counts it twice.
    assert "count the machine twice" in " ".join((run_dir / "report.md").read_text().split())


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _two_cells_on_loopback(tmp_path: Path, name: str) -> tuple[Path, Path]:
    """An experiment of two short cells (windows the stall rule can judge) and a local inventory."""
    config = tmp_path / "two.yml"
    config.write_text(yaml.safe_dump({
        "name": name, "matrix": {"mode": ["one_copy", "two_copy"]}, "message_size": "16KiB", "port": free_port(),
        "duration": "0.6s", "warmup": "0.1s", "interval": "0.1s", "perf": {"enabled": False},
    }))
    inventory = tmp_path / "inventory.yml"
    inventory.write_text(yaml.safe_dump({
        "server": {"host": "local", "workdir": str(tmp_path / "work")},
        "client": {"host": "local", "workdir": str(tmp_path / "work")},
    }))
    return config, inventory


def test_run_json_prints_one_document_and_quiet_nothing_else(tmp_path, capsys):
    require_tool("cc")
    config, inventory = _two_cells_on_loopback(tmp_path, "json")
    code = main(["run", str(config), "--inventory", str(inventory), "--results", str(tmp_path / "results"), "--json", "-q"])
    captured = capsys.readouterr()
    doc = json.loads(captured.out)
    assert code == doc["exit_status"] == 0, doc
    (run_dir,) = (tmp_path / "results").iterdir()
    assert doc["run_dir"] == str(run_dir) and doc["run_id"] == run_dir.name
    assert doc["cells"] == {"planned": 2, "run": 2, "skipped": 0, "failed": 0} and doc["failures"] == []
    assert sorted(r["mode"] for r in doc["summary"]) == ["one_copy", "two_copy"]
    assert all(r["throughput_gbps_mean"] > 0 for r in doc["summary"])
    assert Path(doc["report"]["html"]).exists()
    assert captured.err == ""


def test_a_real_run_on_loopback_records_that_it_measured_and_its_counts(tmp_path):
    """status.json of a run that measured: finished, its rows counted by status, as results.csv has them."""
    require_tool("cc")
    config, inventory = _two_cells_on_loopback(tmp_path, "status")
    code = main(["run", str(config), "--inventory", str(inventory), "--results", str(tmp_path / "results"),
                 "--no-report", "-q"])
    (run_dir,) = (tmp_path / "results").iterdir()
    assert code == 0
    said = json.loads((run_dir / "status.json").read_text())
    frame = read_results(run_dir / "results.csv")
    assert said["state"] == "finished" and said["measured"] is True and said["stopped_at"] is None, said
    assert said["cells"] == {"planned": 2, "ok": int((frame["status"] == "ok").sum()),
                             "failed": int((frame["status"] == "failed").sum()),
                             "degraded": int((frame["status"] == "degraded").sum())}
    assert said["cells"]["ok"] + said["cells"]["failed"] + said["cells"]["degraded"] == 2
    assert "pairs" not in said  # one pair: the run's own figures are the pair's
