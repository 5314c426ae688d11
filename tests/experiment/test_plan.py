from collections import Counter

from orchestrator.experiment.config import load_experiment
from orchestrator.experiment.plan import Plan, expand

from ..conftest import ROOT


def full():
    return load_experiment(ROOT / "configs" / "full.yml")


def test_full_matrix_has_48_cells_times_repetitions():
    plan = expand(full(), seed=7)
    # and an iperf3 reference per size and thread count, with the one_copy cell at one field it pairs with
    assert len(plan.cells) == 48 * 3 + 16 * 3 + 16 * 3
    assert len({c.cell_id for c in plan.cells}) == 240
    per_cell = Counter((c.mode, c.fields, c.message_size, c.threads) for c in plan.cells)
    assert set(per_cell.values()) == {3}
    assert len([key for key in per_cell if key[0] == "iperf3"]) == 16


def test_shuffle_is_replayable_from_the_seed():
    assert expand(full(), seed=7) == expand(full(), seed=7)
    assert expand(full(), seed=7).cells != expand(full(), seed=8).cells


def test_listed_order_is_the_file_order(tmp_path):
    path = tmp_path / "x.yml"
    path.write_text("name: x\norder: listed\nrepetitions: 2\nmatrix:\n  mode: [two_copy, one_copy]\n  threads: [1, 4]\n")
    plan = expand(load_experiment(path), seed=1)
    assert [c.cell_id for c in plan.cells] == [
        "stream-two_copy-65536B-1t-r1", "stream-two_copy-65536B-4t-r1",
        "stream-one_copy-65536B-1t-r1", "stream-one_copy-65536B-4t-r1",
        "stream-two_copy-65536B-1t-r2", "stream-two_copy-65536B-4t-r2",
        "stream-one_copy-65536B-1t-r2", "stream-one_copy-65536B-4t-r2",
    ]


def test_extra_dimensions_name_the_cell(tmp_path):
    path = tmp_path / "x.yml"
    path.write_text("name: x\nmatrix:\n  nodelay: [true, false]\n")
    ids = {c.cell_id for c in expand(load_experiment(path), seed=1).cells}
    assert ids == {"stream-one_copy-65536B-1t-nodelay=true-r1", "stream-one_copy-65536B-1t-nodelay=false-r1"}


def test_plan_round_trips_through_json():
    plan = expand(full(), seed=99)
    assert Plan.from_json(plan.to_json()) == plan
