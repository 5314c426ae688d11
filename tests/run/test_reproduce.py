"""`orchestrate reproduce`: bad input is refused with exit status 2, naming what is wrong, and
measures nothing; --dry-run says what will run and what differs, on real recorded runs."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import pytest

from orchestrator.cli import main
from orchestrator.remote.deploy import source_hash
from orchestrator.run import reproduce, runner
from orchestrator.version import __version__

from ..conftest import ROOT

RUNS = ROOT / "tests" / "fixtures" / "runs"
LAB_RUN = "20261206T023809Z-labfull-87e3"  # a real run over the namespace lab (one pair)
PAIRS_RUN = "pairs3"  # a real run on three pairs, gen1 to gen3


def cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def copy_run(tmp_path: Path, name: str) -> Path:
    return Path(shutil.copytree(RUNS / name, tmp_path / name))


def local_inventory(tmp_path: Path, pairs: tuple[str, ...] = ()) -> Path:
    def pair(n: str) -> str:
        return f"{{server: {{host: local, workdir: {tmp_path}/w/{n}s}}, client: {{host: local, workdir: {tmp_path}/w/{n}c}}}}"

    path = tmp_path / "new.yml"
    if pairs:
        path.write_text("concurrent: false\npairs:\n" + "".join(f"  {n}: {pair(n)}\n" for n in pairs))
    else:
        path.write_text(f"server: {{host: local, workdir: {tmp_path}/w/s}}\nclient: {{host: local, workdir: {tmp_path}/w/c}}\n")
    return path


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(folder.rglob("*"))}


def refused(tmp_path: Path, run_dir: Path, *extra: str, inventory: Path | None = None) -> str:
    """Runs reproduce, which must exit 2 having written nothing anywhere; its error message."""
    inventory = inventory or local_inventory(tmp_path)
    before = snapshot(run_dir) if run_dir.is_dir() else {}
    code, _, err = cli("reproduce", str(run_dir), "--inventory", str(inventory), "--results", str(tmp_path / "results"),
                       *extra)
    assert code == 2, err
    assert "Traceback" not in err and "unexpected error" not in err
    assert not (tmp_path / "results").exists()  # no new run folder, not even results/
    assert not (tmp_path / "w").exists()  # no host workdir: no host was contacted
    if run_dir.is_dir():
        assert snapshot(run_dir) == before  # the original is untouched
    return " ".join(err.split())


def test_a_folder_that_is_not_a_run(tmp_path):
    folder = tmp_path / "notarun"
    folder.mkdir()
    (folder / "notes.txt").write_text("hello\n")
    message = refused(tmp_path, folder)
    assert f"{folder}: not a run folder: it has no plan.json and no config.yml and no inventory.yml" in message
    assert "no such run folder" in refused(tmp_path, tmp_path / "missing")


def test_a_run_of_an_older_plan_format_cannot_be_replayed(tmp_path):
    run_dir = copy_run(tmp_path, LAB_RUN)
    plan = json.loads((run_dir / "plan.json").read_text())
    plan["format_version"] = 0  # as an older orchestrate would have written it
    (run_dir / "plan.json").write_text(json.dumps(plan))
    message = refused(tmp_path, run_dir)
    assert f"{run_dir}: cannot be replayed:" in message and "format version 0, written by an older orchestrate" in message


def test_a_run_whose_results_are_of_an_older_format_cannot_be_replayed(tmp_path):
    run_dir = copy_run(tmp_path, LAB_RUN)
    lines = (run_dir / "results.csv").read_text().splitlines()
    at = lines[0].split(",").index("format_version")
    rows = [line.split(",") for line in lines[1:]]
    for row in rows:
        row[at] = "0"
    (run_dir / "results.csv").write_text("\n".join([lines[0], *(",".join(r) for r in rows)]) + "\n")
    message = refused(tmp_path, run_dir)
    assert "cannot be replayed:" in message and "results.csv: format version 0" in message


def test_a_run_that_measured_nothing_has_nothing_to_compare_with(tmp_path):
    run_dir = copy_run(tmp_path, LAB_RUN)
    header = (run_dir / "results.csv").read_text().splitlines()[0]
    (run_dir / "results.csv").write_text(header + "\n")  # every row dropped, as --retry-failed leaves it before it measures
    message = refused(tmp_path, run_dir)
    assert f"{run_dir}: this run measured nothing" in message and f"orchestrate run --resume {run_dir}" in message


def test_an_inventory_lacking_a_pair_the_run_used(tmp_path):
    run_dir = copy_run(tmp_path, PAIRS_RUN)
    inventory = local_inventory(tmp_path, ("gen1", "gen2"))
    message = refused(tmp_path, run_dir, inventory=inventory)
    assert f"{inventory}: lacks pair gen3, which run {PAIRS_RUN} used; it has gen1, gen2" in message
    # Named with --pairs, the pairs the inventory has are reproduced (shown by a dry run).
    code, out, err = cli("reproduce", str(run_dir), "--inventory", str(inventory), "--pairs", "gen1,gen2", "--dry-run",
                         "--results", str(tmp_path / "results"))
    assert code == 0, err
    assert "gen1 server:" in out and "gen2 client:" in out and "gen3" not in out
    assert "on each of 2 pairs" in out
    # A pair the run never had is named too.
    assert "run pairs3 has no pair named gen9; it ran on gen1, gen2, gen3" in refused(tmp_path, run_dir, "--pairs", "gen9",
                                                                                    inventory=inventory)


def test_a_run_that_is_still_going(tmp_path):
    run_dir = copy_run(tmp_path, LAB_RUN)
    lock = runner.RunLock(run_dir).take()  # as the run holding its folder does
    try:
        message = refused(tmp_path, run_dir)
    finally:
        lock.release()
    assert f"{run_dir}: the run is still going (another orchestrate (pid " in message
    # Once it has ended, the same command goes ahead (here, as a dry run).
    code, _, err = cli("reproduce", str(run_dir), "--inventory", str(local_inventory(tmp_path)), "--dry-run",
                       "--results", str(tmp_path / "results"))
    assert code == 0, err


def test_the_lock_is_only_looked_at(tmp_path):
    run_dir = copy_run(tmp_path, LAB_RUN)
    assert runner.RunLock(run_dir).held_by() is None
    assert not (run_dir / "run.lock").exists()  # not created by looking


def test_dry_run_says_what_will_run_and_what_differs(tmp_path):
    run_dir = copy_run(tmp_path, LAB_RUN)
    inventory = local_inventory(tmp_path)
    code, out, err = cli("reproduce", str(run_dir), "--inventory", str(inventory), "--dry-run",
                         "--results", str(tmp_path / "results"))
    assert code == 0, err
    assert "server: root@198.19.3.2:22, data address 198.18.0.1  ->  local, data address 127.0.0.1" in out
    assert "client: root@198.19.4.2:22, data address 198.18.0.2  ->  local, data address 127.0.0.1" in out
    assert f"orchestrate version: {__version__} (the same)" in out
    recorded = json.loads((run_dir / "hosts" / "server.json").read_text())["agent_hash"]
    assert recorded != source_hash()  # the agent's sources changed since this run was recorded
    assert f"agent source hash: {recorded}  ->  {source_hash()}" in out
    plan = json.loads((run_dir / "plan.json").read_text())
    assert f"plan: {len(plan['cells'])} cells, order shuffled, seed {plan['seed']} (the original's, in its order)" in out
    listed = [line.split()[1] for line in out.splitlines() if line.strip()[:1].isdigit()]
    assert listed == [c["cell_id"] for c in plan["cells"]]  # the original's order, cell by cell
    assert "no host was contacted" in err
    assert not (tmp_path / "results").exists()

    code, out, _ = cli("reproduce", str(run_dir), "--inventory", str(inventory), "--dry-run", "--json",
                       "--results", str(tmp_path / "results"))
    doc = json.loads(out)
    assert doc["original"] == {"run_id": LAB_RUN, "path": str(run_dir)} and doc["pairs"] == {"default": "default"}
    assert doc["versions"]["agent source hash"] == {"original": recorded, "now": source_hash(), "same": False}
    assert [h["same"] for h in doc["hosts"]] == [False, False]


def test_one_pair_goes_to_the_one_pair_of_the_new_inventory_whatever_its_name(tmp_path):
    original = reproduce.open_original(RUNS / LAB_RUN)
    from orchestrator.experiment.inventory import load_inventory

    plan = reproduce.plan(original, load_inventory(local_inventory(tmp_path, ("gen9",))))
    assert plan.pairs == {"default": "gen9"}
    (one,) = reproduce.comparisons(plan.origin(), tmp_path / "new")
    assert (one.pair, one.out_dir) == ("default:gen9", tmp_path / "new" / "compare")
    assert plan.origin().run_id == LAB_RUN and plan.origin().pairs == {"default": "gen9"}


def test_a_run_on_several_pairs_is_reproduced_and_compared_pair_by_pair(tmp_path):
    from orchestrator.experiment.inventory import load_inventory

    original = reproduce.open_original(RUNS / PAIRS_RUN)
    plan = reproduce.plan(original, load_inventory(local_inventory(tmp_path, ("gen3", "gen1", "gen2"))))
    assert plan.pairs == {"gen1": "gen1", "gen2": "gen2", "gen3": "gen3"}  # the run's order
    assert list(plan.inventory.pairs) == ["gen1", "gen2", "gen3"]
    new = tmp_path / "new"
    assert [(c.pair, c.out_dir) for c in reproduce.comparisons(plan.origin(), new)] == \
        [(f"{n}:{n}", new / "compare" / n) for n in ("gen1", "gen2", "gen3")]
    # One of its pairs, on an inventory of one pair: compared as that pair of the original.
    one = reproduce.plan(original, load_inventory(local_inventory(tmp_path)), only=("gen2",))
    assert one.pairs == {"gen2": "default"}
    assert [(c.pair, c.out_dir) for c in reproduce.comparisons(one.origin(), new)] == [("gen2:default", new / "compare")]


@pytest.mark.integration
def test_a_reproduced_run_names_its_original_and_is_compared(tmp_path):
    """On loopback: a real (tiny) run reproduced in one command, its folder naming the original,
    its plan the original's, its comparison written inside it; `runs` shows both."""
    from ..conftest import require_tool

    require_tool("cc")
    require_tool("perf")
    config = tmp_path / "tiny.yml"
    config.write_text("name: tiny\nmatrix: {mode: [one_copy, two_copy]}\nmessage_size: 16KiB\nthreads: 1\n"
                      "repetitions: 1\nduration: 0.6s\nwarmup: 0.1s\ninterval: 0.25s\norder: shuffled\n"
                      "perf: {enabled: false}\n")
    results = tmp_path / "results"
    inventory = local_inventory(tmp_path)
    code, _, err = cli("run", str(config), "--inventory", str(inventory), "--results", str(results), "--no-report")
    assert code == 0, err
    (original,) = results.iterdir()
    code, out, err = cli("reproduce", str(original), "--inventory", str(inventory), "--results", str(results),
                         "--no-report", "--json")
    assert code == 0, err
    doc = json.loads(out)
    new = Path(doc["run_dir"])
    assert new.parent == results and new != original
    assert json.loads((new / "reproduces.json").read_text())["run_id"] == original.name
    assert json.loads((new / "plan.json").read_text()) == json.loads((original / "plan.json").read_text())
    (compared,) = doc["comparisons"]
    assert compared["compare_md"] == str(new / "compare" / "compare.md") and Path(compared["compare_md"]).is_file()
    assert sum(compared["verdicts"].values()) == 2  # both cells' throughput
    # A --resume of the reproduced run (nothing left to measure here) writes its comparison again.
    shutil.rmtree(new / "compare")
    code, out, err = cli("run", "--resume", str(new), "--no-report", "--json")
    assert code == 0, err
    assert (new / "compare" / "compare.md").is_file() and json.loads(out)["comparisons"][0]["pair"] == "default"
    code, out, _ = cli("runs", str(results), "--json")
    assert {r["run_id"]: r["reproduces"] for r in json.loads(out)["runs"]} == {original.name: None, new.name: original.name}
    # The original moved away: the measured run stands, and the missing comparison is said, not a failure.
    original.rename(tmp_path / "moved")
    shutil.rmtree(new / "compare")
    code, out, err = cli("run", "--resume", str(new), "--no-report", "--json")
    assert code == 0, err
    assert f"no comparison: the original run is no longer in {original}" in " ".join(err.split())
    assert not (new / "compare").exists() and "comparisons" not in json.loads(out)


def test_the_new_run_keeps_the_saved_plan_even_where_todays_expansion_differs(tmp_path):
    """The original's plan.json is what runs, cell for cell, whatever today's expansion of its config."""
    from orchestrator.experiment.plan import Plan

    original = reproduce.open_original(RUNS / LAB_RUN)
    saved = Plan(original.plan.seed, tuple(reversed(original.plan.cells)))
    from orchestrator.experiment.inventory import load_inventory

    state = runner.create_run(original.experiment, load_inventory(local_inventory(tmp_path)), tmp_path / "results", plan=saved)
    state.lock.release()
    written = json.loads((state.run_dir / "plan.json").read_text())
    assert [c["cell_id"] for c in written["cells"]] == [c.cell_id for c in saved.cells]
    assert written["seed"] == saved.seed and state.experiment.seed == saved.seed
