"""`orchestrate run` leaves a status.json that says what the run came to: a run stopped at connect
or preflight says it measured nothing, and why (run.log too); `report` on it says so, exit 2."""

from __future__ import annotations

import io
import json
from pathlib import Path

import yaml

from orchestrator.cli import main
from orchestrator.errors import ExitStatus, PreflightError
from orchestrator.rows import layout

# Nobody answers in 198.18.0.0/15 (RFC 2544's benchmarking range): the connect fails or times out.
UNREACHABLE = "198.18.255.253"


def _tiny(tmp_path: Path) -> Path:
    config = tmp_path / "tiny.yml"
    config.write_text(yaml.safe_dump({
        "name": "tiny", "matrix": {"workload": ["stream"], "mode": ["two_copy"]}, "message_size": "16KiB",
        "threads": 1, "duration": "0.3s", "warmup": "0.1s", "interval": "0.1s", "perf": {"enabled": False},
        "timeouts": {"connect": "1s"},
    }))
    return config


def _run(tmp_path: Path, inventory: dict, *extra: str) -> tuple[int, Path, str]:
    tmp_path.mkdir(exist_ok=True)
    path = tmp_path / "inventory.yml"
    path.write_text(yaml.safe_dump(inventory))
    stdout, stderr = io.StringIO(), io.StringIO()
    code = main(["run", str(_tiny(tmp_path)), "--inventory", str(path), "--results", str(tmp_path / "results"), *extra],
                stdout=stdout, stderr=stderr)
    (run_dir,) = (tmp_path / "results").iterdir()
    return code, run_dir, stderr.getvalue()


def _status(run_dir: Path) -> dict:
    return json.loads((run_dir / layout.STATUS).read_text())


def test_a_server_nobody_answers_leaves_a_status_that_never_measured_and_why(tmp_path):
    code, run_dir, stderr = _run(tmp_path, {
        "server": {"host": UNREACHABLE, "data_address": "198.18.0.1"},
        "client": {"host": "local", "workdir": str(tmp_path / "work")},
    })
    assert code == ExitStatus.HOST_FAILED, stderr
    said = _status(run_dir)
    assert said["measured"] is False and said["state"] == "stopped" and said["stopped_at"] == "connect", said
    assert UNREACHABLE in said["reason"] and said["reason"] in stderr  # the error the user was shown
    assert said["cells"] == {"planned": 1, "ok": 0, "failed": 0, "degraded": 0}
    log = (run_dir / layout.RUN_LOG).read_text()
    assert "stopped at connect, nothing measured" in log and UNREACHABLE in log  # run.log is not empty

    stdout, stderr = io.StringIO(), io.StringIO()
    assert main(["report", str(run_dir)], stdout=stdout, stderr=stderr) == ExitStatus.BAD_ARGUMENT
    said = stderr.getvalue()
    assert "this run measured nothing" in said and "it stopped at connect" in said and UNREACHABLE in said, said
    assert f"orchestrate run --resume {run_dir}" in said and "no results.csv" not in said
    assert not (run_dir / layout.REPORT_MD).exists()


def test_a_run_stopped_by_preflight_says_so_and_a_bug_is_named_as_one(tmp_path, monkeypatch):
    from orchestrator.run import runner

    def problems(*args, **kwargs):
        raise PreflightError("preflight found problems:\n  server: perf: not installed")

    monkeypatch.setattr(runner, "run_preflight", problems)
    local = {"server": {"host": "local", "workdir": str(tmp_path / "work")},
             "client": {"host": "local", "workdir": str(tmp_path / "work")}}
    code, run_dir, stderr = _run(tmp_path, local)
    assert code == ExitStatus.HOST_FAILED, stderr
    said = _status(run_dir)
    assert (said["measured"], said["stopped_at"]) == (False, "preflight")
    assert said["reason"] == "preflight found problems:\n  server: perf: not installed"

    def broken(*args, **kwargs):
        raise RuntimeError("a bug in the code")

    monkeypatch.setattr(runner, "run_preflight", broken)
    code, run_dir, stderr = _run(tmp_path / "again", local)
    assert code == ExitStatus.INTERNAL_ERROR
    said = _status(run_dir)
    assert (said["measured"], said["stopped_at"]) == (False, "preflight")
    assert said["reason"] == "unexpected error, a bug in orchestrate: RuntimeError: a bug in the code"


def test_report_of_a_run_without_rows_or_status_still_says_what_is_missing(tmp_path):
    """A folder from before status.json (or one killed before it was written): as before."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    stderr = io.StringIO()
    assert main(["report", str(run_dir)], stdout=io.StringIO(), stderr=stderr) != ExitStatus.OK
    assert "no results.csv" in stderr.getvalue()
