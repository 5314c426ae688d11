from pathlib import Path

import pytest

from orchestrator.experiment.config import CELL_KEYS, load_experiment
from orchestrator.errors import ConfigError
from orchestrator.experiment.inventory import load_inventory

from ..conftest import ROOT

BAD = sorted((ROOT / "tests" / "fixtures" / "bad").glob("exp-*.yml"))


def expected_message(path: Path) -> str:
    first = path.read_bytes().split(b"\n")[0].decode()  # the rest may be anything, even not UTF-8
    assert first.startswith("# expect: ")
    return first.removeprefix("# expect: ")


@pytest.mark.parametrize("name", ["full.yml", "quick.yml", "smoke.yml"])
def test_shipped_configs_validate(name):
    experiment = load_experiment(ROOT / "configs" / name)
    assert experiment.name


def test_full_config_is_the_lab_study():
    experiment = load_experiment(ROOT / "configs" / "full.yml")
    assert experiment.dimension("mode") == ["two_copy", "one_copy", "zero_copy"]
    assert experiment.dimension("message_size") == [1024, 4096, 16384, 65536]
    assert experiment.dimension("threads") == [1, 2, 4, 8]
    assert experiment.dimension("workload") == ["stream"]
    assert experiment.repetitions == 3
    assert (experiment.duration, experiment.warmup) == (10.0, 2.0)
    assert "LLC-load-misses" in experiment.perf.events
    assert experiment.perf.scope == "process"
    assert experiment.reference == "iperf3"


def test_resolved_config_records_every_default_and_the_seed():
    experiment = load_experiment(ROOT / "configs" / "full.yml")
    resolved = experiment.resolved(seed=1234)
    assert resolved["seed"] == 1234
    for key in CELL_KEYS:
        assert (key in resolved) != (key in resolved["matrix"])
    assert resolved["nodelay"] is True
    assert resolved["timeouts"]["connect"] == 10.0


@pytest.mark.parametrize("path", BAD, ids=[p.name for p in BAD])
def test_bad_experiment_names_file_and_key(path):
    with pytest.raises(ConfigError) as caught:
        load_experiment(path)
    message = str(caught.value)
    assert str(path) in message
    assert expected_message(path) in message


def test_unknown_key_lists_allowed_keys(tmp_path):
    path = tmp_path / "x.yml"
    path.write_text("name: x\nmatrix:\n  mode: [one_copy]\nperf:\n  event: [cycles]\n")
    with pytest.raises(ConfigError, match=r"perf\.event: unknown key; allowed here: enabled, events, scope"):
        load_experiment(path)


def test_sizes_accept_units_and_plain_bytes(tmp_path):
    path = tmp_path / "x.yml"
    path.write_text("name: x\nmatrix:\n  message_size: [1024, 4KiB, 64K, 1MiB]\n")
    assert load_experiment(path).dimension("message_size") == [1024, 4096, 65536, 1 << 20]


def test_any_cell_key_can_be_a_dimension(tmp_path):
    path = tmp_path / "x.yml"
    path.write_text("name: x\nmatrix:\n  nodelay: [true, false]\n  fields: [1, 8]\n  sender: [server, client]\n  sndbuf: [0, 1MiB]\n")
    experiment = load_experiment(path)
    assert experiment.dimension("nodelay") == [True, False]
    assert experiment.dimension("sndbuf") == [0, 1 << 20]


def test_missing_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_experiment(tmp_path / "nope.yml")


def test_shipped_inventory_is_local_loopback():
    inventory = load_inventory(ROOT / "inventory.yml")
    assert inventory.server.is_local and inventory.client.is_local
    assert inventory.server.data_address == "127.0.0.1"


def test_resolved_config_loads_back_as_the_same_experiment():
    from orchestrator.experiment.config import experiment_from_resolved

    experiment = load_experiment(ROOT / "configs" / "full.yml")
    again = experiment_from_resolved(experiment.resolved(seed=5), ROOT / "x")
    assert again.model_copy(update={"seed": None}) == experiment
    assert again.seed == 5


def test_receive_zerocopy_with_rr_is_refused_before_any_cell():
    from orchestrator.experiment.config import Experiment

    with pytest.raises(ValueError, match="does not apply to the rr"):
        Experiment.model_validate({"name": "x", "matrix": {"workload": ["stream", "rr"], "receive": ["copy", "zerocopy"]}})
    ok = Experiment.model_validate({"name": "x", "matrix": {"receive": ["copy", "zerocopy"]}})
    assert ok.dimension("receive") == ["copy", "zerocopy"]


def test_registered_buffers_with_a_mode_other_than_io_uring_zc_exit_2_naming_the_modes(tmp_path):
    from orchestrator.errors import ConfigError, ExitStatus

    path = tmp_path / "x.yml"
    path.write_text("name: x\nmatrix:\n  mode: [one_copy, io_uring, io_uring_zc]\n  uring_buffers: [plain, registered]\n")
    with pytest.raises(ConfigError) as refused:
        load_experiment(path)
    assert refused.value.exit_code == ExitStatus.BAD_ARGUMENT == 2
    assert "uring_buffers: registered applies to mode io_uring_zc only" in str(refused.value)
    assert "not for one_copy, io_uring" in str(refused.value)
    path.write_text("name: x\nmatrix:\n  mode: [io_uring_zc]\n  uring_buffers: [plain, registered]\n")
    assert load_experiment(path).dimension("uring_buffers") == ["plain", "registered"]
