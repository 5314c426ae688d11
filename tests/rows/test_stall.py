"""The stall rules on recorded agent documents: a gap in the progress samples wherever it falls,
a window too short to judge, and documents from before the samples were recorded."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from orchestrator.rows import stall
from orchestrator.rows.agentjson import AgentOutputError, load_agent_json, parse_agent_json
from orchestrator.rows.results import MeasurementChecks, measurement_doubts

AGENT = Path(__file__).parents[1] / "fixtures" / "agent"
CALM = AGENT / "stream_progress_client_receive.json"  # 1 s window, one 1 s interval, 10 samples
STOPPED = AGENT / "stream_progress_stopped_client_receive.json"  # the sender stopped 0.5 s
OLD_ONE_INTERVAL = AGENT / "stream_one_copy_hostcounters_client_receive.json"  # no samples, one interval
OLD = AGENT / "stream_one_copy_client_receive.json"  # no samples, four 0.5 s intervals
CHECKS = MeasurementChecks(duration=1.0)


def _doc(path: Path) -> dict:
    return json.loads(path.read_text())


def _parse(doc: dict):
    return parse_agent_json(json.dumps(doc))


def _dark(doc: dict, first: int, count: int) -> dict:
    """Samples first..first+count-1 moved nothing; their bytes arrive in the sample after them
    (as after an outage), so every sum in the document still holds."""
    doc = copy.deepcopy(doc)
    samples = doc["progress"]["samples"]
    for i in range(first, first + count):
        samples[first + count]["bytes"] += samples[i]["bytes"]
        samples[i]["bytes"] = 0
    return doc


def test_recorded_samples_sum_to_the_window_and_an_undisturbed_run_has_no_stall():
    calm = load_agent_json(CALM)
    assert calm.progress is not None and calm.progress.step_s == pytest.approx(0.1)
    assert len(calm.progress.samples) == 10 and len(calm.threads_detail[0].intervals) == 1
    # The rate sank to a fifth for half of this window (a loaded machine): not a stall.
    assert stall.doubts(calm, 0.1) == []
    assert measurement_doubts(calm, CHECKS) == []


def test_a_recorded_stopped_sender_is_a_gap_with_its_length_and_place():
    found = stall.doubts(load_agent_json(STOPPED), 0.1)
    assert found == ["stalled 0.4 s (1% of the usual rate from 0.30 s to 0.70 s)"]


def test_a_gap_is_seen_wherever_it_falls():
    """Four dark samples (0.4 s) at every place a whole gap fits in the 10-sample window."""
    doc = _doc(CALM)
    ends = [s["t"] for s in doc["progress"]["samples"]]
    for first in range(0, 10 - 4):
        found = stall.doubts(_parse(_dark(doc, first, 4)), 0.1)
        start = ends[first - 1] if first else 0.0
        assert found == [f"stalled {ends[first + 3] - start:.1f} s (no bytes from {start:.2f} s to "
                         f"{ends[first + 3]:.2f} s)"], first


def test_one_or_two_dark_samples_are_not_a_stall():
    doc = _doc(CALM)
    assert stall.doubts(_parse(_dark(doc, 3, 1)), 0.1) == []
    assert stall.doubts(_parse(_dark(doc, 3, 2)), 0.1) == []
    assert stall.doubts(_parse(_dark(doc, 3, 3)), 0.1)[0].startswith("stalled 0.3 s (no bytes")


def test_a_gap_over_most_of_the_window_is_still_seen():
    """Seven dark samples of ten: the median is 0, the mean is not."""
    found = stall.doubts(_parse(_dark(_doc(CALM), 1, 7)), 0.1)
    assert len(found) == 1 and found[0].startswith("stalled 0.7 s (no bytes from 0.10 s")


def test_a_window_too_short_to_judge_says_so():
    doc = _doc(CALM)
    samples = doc["progress"]["samples"]
    # The same bytes in four samples: as few as a window of under half a second has.
    merged = [{"t": samples[i + 2]["t"], "bytes": sum(s["bytes"] for s in samples[i:i + 3])} for i in (0, 3, 6)]
    doc["progress"]["samples"] = [*merged, samples[9]]
    doubts = measurement_doubts(_parse(doc), CHECKS)
    assert doubts == ["window too short to judge stalls (4 progress samples of 0.1 s, 5 needed)"]


def test_an_older_agent_keeps_the_interval_rule_and_says_when_it_cannot_judge():
    """Documents recorded before the samples: the verdicts they had, and a one-interval window is
    said to be unjudged, never a silent ok."""
    old = load_agent_json(OLD)
    assert old.progress is None
    assert stall.doubts(old, 0.1) == []
    one = load_agent_json(OLD_ONE_INTERVAL)
    assert stall.doubts(one, 0.1) == ["window too short to judge stalls (1 judged interval(s), and no progress "
                                      "samples: an agent from before they were recorded)"]


def test_samples_that_do_not_sum_to_the_window_are_refused():
    doc = _doc(STOPPED)
    doc["progress"]["samples"][4]["bytes"] += 1
    with pytest.raises(AgentOutputError, match=r"'progress.samples' sums to"):
        _parse(doc)
    doc = _doc(STOPPED)
    doc["progress"]["samples"][4]["t"] = 0.05
    with pytest.raises(AgentOutputError, match=r"progress.samples\[4\].t' goes back in time"):
        _parse(doc)
    doc = _doc(STOPPED)
    doc["progress"]["samples"][4]["bytes"] = 1.0
    with pytest.raises(AgentOutputError, match=r"'progress.samples\[4\].bytes': Input should be a valid integer"):
        _parse(doc)
