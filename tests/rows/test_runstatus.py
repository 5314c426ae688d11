"""status.json: written whole, read back checked as the untrusted file it is, and composed from a
run's pairs (run/status.py): where a run stopped, why, and what it measured."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from orchestrator.errors import HostError, PairsFailed, PreflightError
from orchestrator.rows import layout, runstatus
from orchestrator.rows.results import ResultsError
from orchestrator.rows.runstatus import Counts, RunStatus
from orchestrator.run import status
from orchestrator.run.interrupts import Interrupted
from orchestrator.run.pairs import PairOutcome

from ..conftest import ROOT

RUNS = ROOT / "tests" / "fixtures" / "runs"
PAIRS3 = RUNS / "pairs3"


def _stopped() -> RunStatus:
    return RunStatus("stopped", Counts(planned=4), "connect", "cannot reach:\nserver (198.18.255.253): timed out")


def test_a_status_round_trips_and_a_folder_without_one_has_none(tmp_path):
    assert runstatus.read(tmp_path) is None
    runstatus.write(tmp_path, _stopped())
    doc = json.loads((tmp_path / layout.STATUS).read_text())
    assert doc["measured"] is False and doc["stopped_at"] == "connect" and doc["state"] == "stopped"
    assert doc["cells"] == {"planned": 4, "ok": 0, "failed": 0, "degraded": 0}
    said = runstatus.read(tmp_path)
    assert (said.state, said.measured, said.stopped_at, said.reason) == ("stopped", False, "connect", _stopped().reason)
    assert "it stopped at connect: cannot reach" in said.why_nothing()
    assert [p.name for p in tmp_path.iterdir()] == [layout.STATUS]  # no temporary file left beside it


def _written(tmp_path: Path, **changes) -> Path:
    doc = _stopped().to_json()
    for key, value in changes.items():
        if value is KeyError:
            del doc[key]
        else:
            doc[key] = value
    (tmp_path / layout.STATUS).write_text(json.dumps(doc))
    return tmp_path


@pytest.mark.parametrize("changes, says", [
    ({"state": "exploded"}, "state"),
    ({"stopped_at": "the moon"}, "stopped_at"),
    ({"measured": True}, "measured"),  # no row counted, yet "measured"
    ({"measured": "false"}, "measured"),
    ({"reason": "\x1b]0;owned\x07 hello"}, "control characters"),
    ({"reason": "x" * (runstatus.MAX_REASON + 1)}, "reason"),
    ({"cells": {"planned": -1, "ok": 0, "failed": 0, "degraded": 0}}, "cells.planned"),
    ({"cells": {"planned": 1, "ok": True, "failed": 0, "degraded": 0}}, "cells.ok"),
    ({"cells": {"planned": 1, "ok": 0, "failed": 0}}, "missing degraded"),
    ({"format": 2}, "format 2"),
    ({"updated": "yesterday"}, "updated"),
    ({"extra": 1}, "unknown extra"),
    ({"reason": KeyError}, "missing reason"),
    ({"pairs": {"../etc": {}}}, "not a pair name"),
    ({"state": "finished"}, "stopped_at"),  # a stage without a stop
])
def test_a_status_of_another_shape_is_refused_naming_the_file(tmp_path, changes, says):
    with pytest.raises(ResultsError) as refused:
        runstatus.read(_written(tmp_path, **changes))
    assert str(tmp_path / layout.STATUS) in str(refused.value) and says in str(refused.value)


@pytest.mark.parametrize("content", [b"{not json", b"\xff\xfe", b"[]", b"null", b" " * (runstatus.MAX_BYTES + 1)])
def test_a_status_that_is_not_a_json_object_is_refused(tmp_path, content):
    (tmp_path / layout.STATUS).write_bytes(content)
    with pytest.raises(ResultsError, match="not a run status"):
        runstatus.read(tmp_path)


def test_a_status_that_is_a_symlink_or_a_folder_is_refused(tmp_path):
    elsewhere = _written(tmp_path) / layout.STATUS  # a well-formed status, but not the run's own file
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    os.symlink(elsewhere, run_dir / layout.STATUS)
    with pytest.raises(ResultsError, match="not a regular file"):
        runstatus.read(run_dir)
    (run_dir / layout.STATUS).unlink()
    (run_dir / layout.STATUS).mkdir()
    with pytest.raises(ResultsError, match="not a regular file"):
        runstatus.read(run_dir)


# ---------------------------------------------------------------- composed from the run's pairs


def _shape(run_dir: Path, pairs=("default",), cells=("c1", "c2")) -> status.RunShape:
    return status.RunShape(run_dir, list(cells), list(pairs))


def test_one_pair_stopped_at_preflight_measured_nothing(tmp_path):
    outcome = PairOutcome("default", stage="preflight")
    ended = status.ended(_shape(tmp_path), {"default": outcome}, stopped=PreflightError("preflight found problems:\n  server: perf: no"))
    assert (ended.state, ended.measured, ended.stopped_at) == ("stopped", False, "preflight")
    assert ended.reason.startswith("preflight found problems") and ended.pairs == {}
    assert ended.counts == Counts(planned=2)


def test_a_stop_before_any_pair_began_is_at_setup_and_a_signal_is_an_interrupt(tmp_path):
    ended = status.ended(_shape(tmp_path), {}, stopped=OSError("no"))
    assert (ended.state, ended.stopped_at) == ("stopped", "setup") and "a bug in orchestrate: OSError: no" in ended.reason
    import signal
    ended = status.ended(_shape(tmp_path), {"default": PairOutcome("default", stage="cells")}, stopped=Interrupted(signal.SIGTERM))
    assert (ended.state, ended.stopped_at, ended.reason) == ("interrupted", None, "SIGTERM")


def test_a_finished_run_counts_its_rows_by_pair_and_status(tmp_path):
    run_dir = Path(shutil.copytree(PAIRS3, tmp_path / "run"))
    from orchestrator.rows.results import read_results
    frame = read_results(run_dir / layout.RESULTS)
    pairs = list(dict.fromkeys(frame["pair"]))
    cells = list(dict.fromkeys(frame["cell_id"]))
    done = {name: PairOutcome(name, stage="done") for name in pairs}
    ended = status.ended(_shape(run_dir, pairs, cells), done)
    assert (ended.state, ended.measured, ended.stopped_at, ended.reason) == ("finished", True, None, None)
    assert ended.counts.rows == len(frame) and ended.counts.planned == len(cells) * len(pairs)
    assert ended.counts.ok == int((frame["status"] == "ok").sum())
    assert set(ended.pairs) == set(pairs) and all(p.state == "finished" for p in ended.pairs.values())
    first = ended.pairs[pairs[0]].counts
    assert first.rows == int((frame["pair"] == pairs[0]).sum())
    runstatus.write(run_dir, ended)
    assert runstatus.read(run_dir).to_json() == json.loads((run_dir / layout.STATUS).read_text())


def test_several_pairs_stopped_at_different_stages_name_each(tmp_path):
    a = PairOutcome("a", stage="connect", error=HostError("server", "timed out"))
    b = PairOutcome("b", stage="preflight", error=PreflightError("perf: no"))
    every = PairsFailed("every pair failed", [a.error, b.error], every=True)
    ended = status.ended(_shape(tmp_path, ("a", "b")), {"a": a, "b": b}, stopped=every)
    assert (ended.state, ended.stopped_at, ended.measured) == ("stopped", "pairs", False)
    assert (ended.pairs["a"].stopped_at, ended.pairs["b"].stopped_at) == ("connect", "preflight")
    assert ended.pairs["a"].reason == "server: timed out"
    # One pair stopped, the other finished (its rows are not here: it is partial), the run went on.
    ended = status.ended(_shape(tmp_path, ("a", "b")), {"a": a, "b": PairOutcome("b", stage="done")})
    assert (ended.state, ended.stopped_at, ended.reason) == ("stopped", "connect", "a: server: timed out")
    assert ended.pairs["b"].state == "partial"


def test_a_long_reason_with_escape_codes_is_written_so_that_it_reads_back(tmp_path):
    """A timed-out command's whole script in the error, three pairs of them, and a remote tool's
    escape codes: the file still reads, and says why the run stopped."""
    from orchestrator.rows.runstatus import MAX_REASON, Counts, RunStatus
    reason = "preflight: \x1b[31mcommand timed out\x1b[0m\r " + "x" * (3 * MAX_REASON)
    status = RunStatus("stopped", Counts(4), stopped_at="preflight", reason=reason)
    (tmp_path / layout.STATUS).write_text(json.dumps(status.to_json()))
    back = runstatus.read(tmp_path)
    assert back.stopped_at == "preflight" and back.reason.startswith("preflight:  [31mcommand timed out")
    assert len(back.reason) == MAX_REASON and back.reason.endswith("…")
