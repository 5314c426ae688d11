"""reproduces.json: what `reproduce` writes is what `runs` reads back; anything else is refused
as the untrusted file it is, naming it."""

from __future__ import annotations

import json

import pytest

from orchestrator.rows import origin
from orchestrator.rows.results import ResultsError

WRITTEN = origin.Origin("20261206T023809Z-labfull-87e3", "/srv/results/20261206T023809Z-labfull-87e3",
                        {"gen1": "gen1", "default": "new-a"}, "0.1.0", "05162aad8195e99f")


def test_what_is_written_reads_back(tmp_path):
    origin.write(tmp_path, WRITTEN)
    assert origin.read(tmp_path) == WRITTEN
    assert json.loads((tmp_path / "reproduces.json").read_text())["format"] == origin.FORMAT


def test_a_run_that_reproduces_none_has_none(tmp_path):
    assert origin.read(tmp_path) is None


@pytest.mark.parametrize("edit, said", [
    (lambda d: d.update(run_id="../../etc"), "run_id"),
    (lambda d: d.update(run_id=".."), "run_id"),
    (lambda d: d.update(path="/x\x1b[2J"), "path"),
    (lambda d: d.update(pairs={"gen 1": "a"}), "pairs"),
    (lambda d: d.update(pairs={}), "pairs"),
    (lambda d: d.update(agent_hash="not-a-hash"), "agent_hash"),
    (lambda d: d.update(format=2), "format 2"),
    (lambda d: d.pop("path"), "missing path"),
    (lambda d: d.update(extra=1), "unknown extra"),
])
def test_a_file_of_another_shape_is_refused_naming_it(tmp_path, edit, said):
    doc = WRITTEN.to_json()
    edit(doc)
    (tmp_path / "reproduces.json").write_text(json.dumps(doc))
    with pytest.raises(ResultsError, match=said) as caught:
        origin.read(tmp_path)
    assert str(tmp_path / "reproduces.json") in str(caught.value)


def test_garbage_and_symlinks_are_refused(tmp_path):
    (tmp_path / "reproduces.json").write_bytes(b"\xff\xfe{")
    with pytest.raises(ResultsError, match="not a record of a reproduced run"):
        origin.read(tmp_path)
    (tmp_path / "reproduces.json").unlink()
    (tmp_path / "elsewhere.json").write_text(json.dumps(WRITTEN.to_json()))
    (tmp_path / "reproduces.json").symlink_to(tmp_path / "elsewhere.json")
    with pytest.raises(ResultsError, match="not a regular file"):
        origin.read(tmp_path)


def test_nothing_is_written_that_the_reader_would_refuse(tmp_path):
    with pytest.raises(ValueError, match="run_id"):
        origin.write(tmp_path, origin.Origin("a/b", "/x", {"default": "default"}))
    assert not (tmp_path / "reproduces.json").exists()


def test_a_renamed_run_folder_is_named_as_it_is(tmp_path):
    renamed = origin.Origin("old lab run (gen8)", "/srv/old lab run (gen8)", {"default": "default"})
    origin.write(tmp_path, renamed)
    assert origin.read(tmp_path) == renamed
