"""The agent builds warning-free (-Wall -Wextra -Werror) with both gcc and clang."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ROOT, require

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("compiler", ["gcc", "clang"])
def test_builds_clean(compiler: str, tmp_path: Path) -> None:
    require(shutil.which(compiler) is not None, f"{compiler} is not installed")
    r = subprocess.run(["sh", str(ROOT / "agents" / "build.sh"), str(tmp_path)],
                       env={**os.environ, "CC": compiler}, capture_output=True, text=True)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""  # no warnings either, even those -Werror would not promote
    out = subprocess.run([str(tmp_path / "agent"), "server"], capture_output=True, text=True)
    assert out.returncode == 2


@pytest.mark.parametrize("compiler", ["gcc", "clang"])
def test_static_build_embeds_the_source_hash(compiler: str, tmp_path: Path) -> None:
    """What deploy pushes to a host without a compiler: a static binary whose --version names
    the sources it was built from."""
    require(shutil.which(compiler) is not None, f"{compiler} is not installed")
    r = subprocess.run(["sh", str(ROOT / "agents" / "build.sh"), str(tmp_path), "0123456789abcdef"],
                       env={**os.environ, "CC": compiler, "STATIC": "1"}, capture_output=True, text=True)  # fmt: skip
    assert r.returncode == 0, r.stderr
    # The compiler is silent; only the linker's note that static getaddrinfo would need NSS for
    # names remains, and the agent resolves numeric addresses only (AI_NUMERICHOST).
    warnings = [line for line in r.stderr.splitlines() if "warning" in line and "getaddrinfo" not in line]
    assert warnings == []
    program_headers = subprocess.run(["readelf", "-l", str(tmp_path / "agent")], capture_output=True, text=True).stdout
    assert "LOAD" in program_headers and "INTERP" not in program_headers  # no dynamic loader needed
    out = subprocess.run([str(tmp_path / "agent"), "--version"], capture_output=True, text=True)
    assert (out.returncode, out.stdout) == (0, "orchestrate-agent schema 1 source 0123456789abcdef\n")


def test_build_refuses_a_hash_that_is_not_hex(tmp_path: Path) -> None:
    r = subprocess.run(["sh", str(ROOT / "agents" / "build.sh"), str(tmp_path), "abc; touch x"], capture_output=True, text=True)
    assert r.returncode == 2 and "hex" in r.stderr
    assert not (tmp_path / "agent").exists()
