"""Pushing the agent sources to a host and building them there with the host's own compiler.

Builds are keyed by a hash of the sources, so a host that already has this exact agent is
not rebuilt, and every result records which agent produced it.
"""

from __future__ import annotations

import hashlib
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .errors import HostError, OrchestrateError
from .hosts import Host, q

AGENT_SOURCES = Path(__file__).resolve().parent.parent / "agents"
_SOURCE_PATTERNS = ("*.c", "*.h", "build.sh")


@dataclass(frozen=True)
class Agent:
    """A built agent on one host."""

    source_hash: str
    path: str


def source_files(root: Path = AGENT_SOURCES) -> list[Path]:
    files = sorted({p for pattern in _SOURCE_PATTERNS for p in root.glob(pattern)})
    if not any(p.suffix == ".c" for p in files):
        raise OrchestrateError(f"no agent sources found in {root}")
    return files


def source_hash(root: Path = AGENT_SOURCES) -> str:
    digest = hashlib.sha256()
    for path in source_files(root):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def deploy(host: Host, timeout: float, root: Path = AGENT_SOURCES) -> Agent:
    """Make sure `host` has a working agent built from these sources; return where it is."""
    digest = source_hash(root)
    base = f"{host.spec.workdir}/agents/{digest}"
    agent = Agent(digest, f"{base}/bin/agent")
    probe = host.run(f"test -x {q(agent.path)} && {q(agent.path)} --version", timeout)
    if probe.ok and re.search(r"orchestrate-agent", probe.stdout):
        return agent
    with tempfile.TemporaryDirectory() as staging:
        for path in source_files(root):
            (Path(staging) / path.name).write_bytes(path.read_bytes())
        host.push_dir(Path(staging), f"{base}/src", timeout)
    # Build into a scratch folder and rename, so an interrupted build never looks finished.
    build = host.run(
        f"cd {q(base)} && rm -rf bin.tmp && sh src/build.sh bin.tmp > build.log 2>&1"
        f" && rm -rf bin && mv bin.tmp bin || {{ tail -n 30 build.log; exit 1; }}",
        timeout,
    )
    if not build.ok:
        raise HostError(host.name, f"agent build failed:\n{build.stdout.strip()}{build.stderr.strip()}")
    check = host.run(f"{q(agent.path)} --version", timeout)
    if not check.ok or "orchestrate-agent" not in check.stdout:
        raise HostError(host.name, f"the built agent does not start: {check.stderr.strip() or check.stdout.strip()}")
    return agent
