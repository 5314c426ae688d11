"""The cell dimensions are stated once (orchestrator/experiment/dimensions.py); the places that cannot be
made from them (pydantic fields, the plan's dataclass) must agree with them, and the readers of
results.csv require and type them from that one source."""

import csv
import dataclasses
from pathlib import Path

import pytest

from orchestrator.experiment import config, dimensions, plan
from orchestrator.rows.results import SCHEMA_COLUMNS, order_columns, read_results
from orchestrator.errors import OrchestrateError

RUNS = Path(__file__).parents[1] / "fixtures" / "runs"
SYNTHETIC = ("20261120T101500Z-lab-hw-a1b2", "20261124T180000Z-lab-hw2-c3d4", "20261125T090000Z-vm-e5f6")
PANDAS_DTYPE = {int: "Int64", str: "string", bool: "boolean"}


def test_the_experiment_and_the_plan_name_the_same_dimensions_in_the_same_order():
    assert tuple(config.Matrix.model_fields) == dimensions.CELL_KEYS
    top_level = [k for k in config.Experiment.model_fields if k in dimensions.CELL_KEYS]
    assert tuple(top_level) == dimensions.CELL_KEYS
    fields = [f.name for f in dataclasses.fields(plan.Cell)]
    assert fields == [*dimensions.CELL_KEYS, "repetition", "varied"]


def test_results_csv_begins_with_the_identity_columns():
    assert SCHEMA_COLUMNS[: len(dimensions.IDENTITY_COLUMNS)] == dimensions.IDENTITY_COLUMNS
    assert dimensions.IDENTITY_COLUMNS[:2] == ("run_id", "cell_id")
    assert set(dimensions.REQUIRED_COLUMNS) - {"status"} <= set(dimensions.IDENTITY_COLUMNS)


@pytest.mark.parametrize("run", SYNTHETIC)
def test_fixture_generator_writes_the_schema_of_the_package(run):
    with open(RUNS / run / "results.csv", newline="") as handle:
        header = next(csv.reader(handle))
    assert header[: len(SCHEMA_COLUMNS)] == list(SCHEMA_COLUMNS)
    assert header == order_columns(header)


def test_the_reader_types_every_identity_column_as_declared():
    frame = read_results(RUNS / SYNTHETIC[0] / "results.csv")
    assert len(frame) > 0
    for name, kind in dimensions.IDENTITY_TYPES.items():
        assert str(frame[name].dtype) == PANDAS_DTYPE[kind], name


@pytest.mark.parametrize("missing", dimensions.REQUIRED_COLUMNS)
def test_the_analysis_reader_refuses_a_file_without_a_required_column(tmp_path, missing):
    source = RUNS / SYNTHETIC[2] / "results.csv"
    with open(source, newline="") as handle:
        rows = list(csv.DictReader(handle))
    kept = [c for c in rows[0] if c != missing]
    path = tmp_path / "results.csv"
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=kept, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    with pytest.raises(OrchestrateError, match=f"missing column\\(s\\) {missing}"):
        read_results(path)
    # The same file with the column is read.
    assert len(read_results(source)) == len(rows)
