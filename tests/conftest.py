"""Shared test set-up. Under CI=true a test that would skip for a missing prerequisite fails:
a skip in CI hides a broken feature."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require(condition: bool, reason: str) -> None:
    """Skip locally when a prerequisite is missing; fail in CI."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"prerequisite missing in CI: {reason}")
    pytest.skip(reason)


def require_tool(name: str) -> str:
    path = shutil.which(name)
    require(path is not None, f"`{name}` is not installed (./bootstrap.sh test installs it)")
    return path  # type: ignore[return-value]


def require_root() -> None:
    require(os.geteuid() == 0, "needs root")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if IN_CI and report.skipped and call.when in ("setup", "call") and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"skipped in CI, which counts as a failure: {report.longrepr}"


@pytest.fixture(scope="session")
def built_agent(tmp_path_factory) -> Path:
    """The agent built once per session with agents/build.sh, as a host would build it."""
    out = tmp_path_factory.mktemp("agent-bin")
    subprocess.run(["sh", str(ROOT / "agents" / "build.sh"), str(out)], check=True)
    return out / "agent"
