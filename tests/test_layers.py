"""The package's layering: the import-linter contracts in pyproject.toml hold (the stages' layers,
no SSH below the run, the lab apart, only the CLI prints), lab imports only leaf modules, and the
CLI loads no analysis library until a command needs one."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

from .conftest import ROOT, require

HEAVY = ("pandas", "matplotlib", "scipy")


def test_import_contracts_hold():
    beside = Path(sys.executable).parent / "lint-imports"
    tool = str(beside) if beside.exists() else shutil.which("lint-imports")
    require(tool is not None, "`lint-imports` is not installed (pip install -e '.[test]' installs import-linter)")
    done = subprocess.run([tool, "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "4 kept, 0 broken" in done.stdout, done.stdout  # every contract was read and checked


def _lab_modules(graph) -> set[str]:
    return {"orchestrator.lab", *graph.find_descendants("orchestrator.lab")}


def test_lab_imports_only_leaf_modules():
    """The rule behind the lab contract, for every module of the lab package, including ones
    added after it was written: from outside the package, only modules that import nothing."""
    require(importlib.util.find_spec("grimp") is not None, "grimp (installed with import-linter) is missing")
    import grimp

    graph = grimp.build_graph("orchestrator", cache_dir=None)  # no cache folder left in the repository
    lab = _lab_modules(graph)
    imported = {m for module in lab for m in graph.find_modules_directly_imported_by(module)} - lab
    assert "orchestrator.errors" in imported and len(lab) > 1  # the graph is the real one
    for module in imported:
        inner = graph.find_modules_directly_imported_by(module)
        assert not inner, f"lab imports {module}, which imports {sorted(inner)} from the package"


def test_the_cli_and_lab_load_no_analysis_library():
    """`orchestrate --help`, `lab` and `check` answer quickly because pandas, matplotlib and
    scipy load only where a command needs them."""
    probe = ("import sys, orchestrator.cli, orchestrator.lab; orchestrator.cli.build_parser(); "
             f"print(' '.join(m for m in {HEAVY!r} if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "", f"loaded on import: {done.stdout}"
    # The probe can fail: the report module loads pandas and scipy, and matplotlib with the first
    # figure drawn (a report whose figures are drawn already never loads it).
    done = subprocess.run([sys.executable, "-c", probe.replace("orchestrator.lab", "orchestrator.report.write")],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.stdout.split() == [m for m in HEAVY if m != "matplotlib"], done.stderr
    drawn = probe.replace("orchestrator.lab;", "orchestrator.report.plots; orchestrator.report.plots.new_figure();")
    done = subprocess.run([sys.executable, "-c", drawn], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert "matplotlib" in done.stdout.split(), done.stderr


def test_help_and_lab_load_neither_pydantic_nor_shtab():
    """`--help` and `lab` need neither the config models nor the completion generator; each
    cost a tenth of a second of import here."""
    probe = ("import sys, orchestrator.cli, orchestrator.lab; orchestrator.cli.build_parser(); "
             "print(' '.join(m for m in ('pydantic', 'shtab') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == "", (done.stdout, done.stderr)
    # The probe can fail: loading an experiment does import pydantic.
    done = subprocess.run([sys.executable, "-c", probe.replace("orchestrator.lab", "orchestrator.experiment.config")],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.stdout.split() == ["pydantic"], done.stderr
