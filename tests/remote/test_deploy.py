"""Where the agent comes from, decided on recorded host answers: a fake host that replies to the
commands deploy sends with what a real host printed, and records what it was asked to do. Then
the cache as this machine's sh checks it (no SSH): hits, misses, and agents that are refused."""

from __future__ import annotations

import hashlib
import io
import shutil
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pytest

from orchestrator.remote import deploy, workdir
from orchestrator.remote.deploy import Builder, Toolchain
from orchestrator.errors import HostError, PreflightError, UnsafeWorkdir
from orchestrator.remote.hosts import CommandResult
from orchestrator.experiment.inventory import HostSpec
from orchestrator.run.preflight import HostChecks, _check_compilers

DIGEST = deploy.source_hash()
HOME = "/home/bench"
WD = f"{HOME}/.cache/orchestrate"
BASE = f"{WD}/agents/{DIGEST}-x86_64"
VERSION = f"orchestrate-agent schema 1 source {DIGEST}"
SHA = "ab" * 32


def checked(paths: list[str], then: list[str]) -> str:
    """What workdir.py's script prints when every path passed, then what `then` printed."""
    return "\n".join([f"WORKDIR {WD}", f"OK {WD}", *(f"OK {WD}/{p}" for p in paths), workdir.THEN, *then]) + "\n"


def probe_output(*then: str) -> str:
    return checked(["agents"], ["@arch x86_64", *then])


def manifest(sha: str = SHA, where: str = "server") -> list[str]:
    return [f"@m sha256 {sha}", f"@m source {DIGEST}", f"@m where {where}", "@m compiler gcc 12.2.0", "@m static 0", "@m arch x86_64"]


@dataclass
class FakeHost:
    """The Host protocol, answering each command with the first responder that recognises it."""

    role: str
    responders: list[Callable[[str], str | None]]
    spec: HostSpec = field(default_factory=lambda: HostSpec(host="lab-a.example.org", user="bench"))
    commands: list[str] = field(default_factory=list)
    stdin: list[bytes] = field(default_factory=list)  # what each command was given to read

    @property
    def name(self) -> str:
        return f"{self.role} (fake)"

    def run(self, command: str, timeout: float, stdin: bytes | None = None) -> CommandResult:
        self.commands.append(command)
        if stdin:
            self.stdin.append(stdin)
        for responder in self.responders:
            out = responder(command)
            if out is not None:
                return CommandResult(command, 0, out, "")
        raise AssertionError(f"unexpected command: {command[:200]}")

    def start(self, command: str):
        raise AssertionError("deploy starts no long-running command")

    def push_dir(self, local: Path, remote: str, timeout: float) -> None:
        raise AssertionError("deploy sends files on a command's stdin, written by the login user")

    def fetch_dir(self, remote: str, local: Path, timeout: float) -> None:
        raise AssertionError("nothing is fetched from the target")

    def close(self) -> None:
        pass


def is_probe(command: str) -> bool:
    return workdir.THEN in command and '"@arch $m"' in command and "manifest && chmod 600" not in command


def is_install(command: str) -> bool:
    return workdir.THEN in command and "manifest && chmod 600" in command


def test_cache_hit_reuses_the_agent_after_one_round_trip():
    host = FakeHost("server", [lambda c: probe_output(f"@sha256 {SHA}", *manifest(), f"@version {VERSION}") if is_probe(c) else None])
    agent = deploy.deploy(host, 10)
    assert agent.path == f"{BASE}/bin/agent"
    assert agent.build == deploy.BuildRecord("cached", "gcc 12.2.0", False, SHA, "x86_64", origin="server")
    assert len(host.commands) == 1 and not host.stdin
    # The probe runs --version only when the binary's sha256, the sources and the architecture
    # are the manifest's.
    probe = host.commands[0]
    assert probe.index('[ "$(sed -n "s/^arch //p"') < probe.index('echo "@version')


def test_an_agent_built_for_another_architecture_is_rebuilt_not_run():
    # One workdir shared by an x86_64 and an aarch64 host: a manifest naming aarch64 in the
    # x86_64 folder (a left-over from the old layout) is never trusted.
    other = [line.replace("arch x86_64", "arch aarch64") for line in manifest()]
    host = FakeHost("server", [lambda c: probe_output(f"@sha256 {SHA}", *other, f"@version {VERSION}") if is_probe(c) else None,
                               *rebuild_responders()])
    agent = deploy.deploy(host, 10, [Builder("server", "cc", "gcc", False)])
    assert agent.build is not None and agent.build.where == "server"
    assert agent.path == f"{BASE}/bin/agent"


def test_an_agent_another_host_installed_first_is_reused():
    reused = [lambda c: checked(["agents", f"agents/{DIGEST}-x86_64"],
                                ["@built " + "cd" * 32, "@reused", f"@sha256 {SHA}", *manifest(where="client"), f"@version {VERSION}"])
              if is_install(c) else None]
    host = FakeHost("server", [lambda c: probe_output() if is_probe(c) else None, *reused])
    agent = deploy.deploy(host, 10, [Builder("server", "cc", "gcc", False)])
    assert agent.build == deploy.BuildRecord("cached", "gcc 12.2.0", False, SHA, "x86_64", origin="client")


def rebuild_responders(built_sha: str = "cd" * 32) -> list[Callable[[str], str | None]]:
    return [lambda c: checked(["agents", f"agents/{DIGEST}-x86_64"], [f"@built {built_sha}", f"@sha256 {built_sha}", f"@version {VERSION}"])
            if is_install(c) else None]


def test_cache_miss_builds_on_the_host_with_its_own_cc():
    host = FakeHost("server", [lambda c: probe_output() if is_probe(c) else None, *rebuild_responders()])
    agent = deploy.deploy(host, 10, [Builder("server", "/usr/bin/cc", "gcc 12.2.0", False)])
    assert agent.build == deploy.BuildRecord("server", "gcc 12.2.0", False, "cd" * 32, "x86_64")
    # Probe, then one round trip: sources in on stdin, built, installed, checked.
    assert len(host.commands) == 2
    (sources,) = host.stdin
    with tarfile.open(fileobj=io.BytesIO(sources)) as archive:
        assert {"main.c", "build.sh"} <= set(archive.getnames())
    assert f"CC=/usr/bin/cc sh src/build.sh bin {DIGEST}" in host.commands[1]
    assert f"agents/{DIGEST}-x86_64/tmp." in host.commands[1]
    assert "tar --no-same-owner" in host.commands[1]


def test_a_hash_mismatch_is_rebuilt_and_never_run():
    # The binary's sha256 differs from the manifest's: the probe did not run it (no @version),
    # and deploy builds afresh instead of trusting it.
    host = FakeHost("server", [lambda c: probe_output("@sha256 " + "ee" * 32, *manifest()) if is_probe(c) else None,
                               *rebuild_responders()])
    agent = deploy.deploy(host, 10, [Builder("server", "cc", "gcc", False)])
    assert agent.build is not None and agent.build.where == "server"
    assert any("build.sh" in c for c in host.commands)


def test_a_version_naming_other_sources_is_rebuilt():
    stale = VERSION.replace(DIGEST, "0" * 16)
    host = FakeHost("server", [lambda c: probe_output(f"@sha256 {SHA}", *manifest(), f"@version {stale}") if is_probe(c) else None,
                               *rebuild_responders()])
    assert deploy.deploy(host, 10, [Builder("server", "cc", "gcc", False)]).build.where == "server"


def test_an_unsafe_workdir_stops_before_anything_runs():
    refused = f"WORKDIR {WD}\nUNSAFE {WD} is owned by uid 65534, not by uid 1000 who runs the agents\n"
    host = FakeHost("server", [lambda c: refused if is_probe(c) else None])
    with pytest.raises(UnsafeWorkdir, match="owned by uid 65534"):
        deploy.deploy(host, 10)
    assert len(host.commands) == 1 and not host.stdin


def fake_controller_build(binary: bytes):
    def build(src: Path, out: Path, digest: str, builder: Builder, root, timeout: float) -> None:
        out.mkdir(parents=True)
        (out / "agent").write_bytes(binary)
    return build


def test_no_cc_on_the_host_pushes_a_static_agent_built_on_the_controller(monkeypatch):
    binary = b"\x7fELF static agent"
    monkeypatch.setattr(deploy, "_build_on_controller", fake_controller_build(binary))
    sha = hashlib.sha256(binary).hexdigest()
    host = FakeHost("server", [lambda c: probe_output() if is_probe(c) else None, *rebuild_responders(sha)])
    agent = deploy.deploy(host, 10, [Builder("controller", "/usr/bin/gcc", "gcc 12", True)])
    assert agent.build == deploy.BuildRecord("controller", "gcc 12", True, sha, "x86_64")
    assert host.stdin == [binary]
    install = next(c for c in host.commands if is_install(c))
    assert f"agents/{DIGEST}-x86_64/tmp." in install and "/bin/agent" in install
    assert f'[ "$have" = {sha} ]' in install  # the target checks what it received


def test_a_pushed_agent_whose_hash_changed_on_the_way_is_refused(monkeypatch):
    monkeypatch.setattr(deploy, "_build_on_controller", fake_controller_build(b"agent"))
    host = FakeHost("server", [
        lambda c: probe_output() if is_probe(c) else None,
        lambda c: checked([], ["@sha256 " + "00" * 32, "@error sha256 differs from what was pushed"]) if is_install(c) else None,
    ])
    with pytest.raises(PreflightError, match="sha256 differs"):
        deploy.deploy(host, 10, [Builder("controller", "gcc", "gcc 12", True)])


def test_no_compiler_anywhere_stops_with_the_options_named():
    host = FakeHost("server", [lambda c: probe_output() if is_probe(c) else None])
    with pytest.raises(PreflightError, match=r"install gcc \(or clang\) on this host, or gcc and libc6-dev"):
        deploy.deploy(host, 10, [])
    assert not host.stdin and not any("build.sh" in c for c in host.commands)


def test_plan_prefers_the_hosts_own_cc_then_the_controller_then_the_other_host():
    native = Toolchain("x86_64", "/usr/bin/cc", "gcc 12", True)
    bare = Toolchain("x86_64")
    plans = deploy.plan_builds({"server": bare, "client": native}, lambda arch: Toolchain(arch, "/usr/bin/gcc", "gcc 12", True))
    assert [b.where for b in plans["server"]] == ["controller", "client"]
    assert all(b.static for b in plans["server"])
    assert plans["client"] == [Builder("client", "/usr/bin/cc", "gcc 12", False)]
    # A compiler of another architecture, or without a static libc, is no help.
    plans = deploy.plan_builds({"server": Toolchain("aarch64"), "client": native}, lambda arch: None)
    assert plans["server"] == []
    plans = deploy.plan_builds({"server": bare, "client": Toolchain("x86_64", "/usr/bin/cc", "gcc", False)}, lambda arch: None)
    assert plans["server"] == []


def test_preflight_names_the_options_when_nothing_can_build():
    server, client = HostChecks("server", "server (a)"), HostChecks("client", "client (b)")
    server.toolchain, client.toolchain = Toolchain("aarch64"), Toolchain("x86_64", "/usr/bin/cc", "gcc 12", True)
    plans = _check_compilers([server, client], lambda arch: None)
    (finding,) = [f for f in server.findings if f.check == "compiler"]
    assert not finding.ok and plans["server"] == []
    assert "for aarch64" in finding.detail and "aarch64-linux-gnu-gcc" in finding.detail
    assert [f.ok for f in client.findings if f.check == "compiler"] == [True]
    # A cached agent for these sources lets the run go on; deploy checks it before use.
    server.findings.clear()
    server.cached_agent = True
    _check_compilers([server, client], lambda arch: None)
    assert [f.ok for f in server.findings if f.check == "compiler"] == [True]


def test_toolchain_probe_output_is_parsed():
    out = "@arch x86_64\n@cc /usr/bin/cc\n@ccversion cc (Debian 12.2.0-14) 12.2.0\n@ccstatic 1\n"
    assert deploy.parse_toolchain(out) == Toolchain("x86_64", "/usr/bin/cc", "cc (Debian 12.2.0-14) 12.2.0", True)
    assert deploy.parse_toolchain("@arch x86_64; rm -rf /\n") == Toolchain("")
    assert deploy.parse_toolchain("@arch aarch64\n") == Toolchain("aarch64")
    assert deploy.parse_toolchain("@arch x86_64\n@cc /opt/my cc\n").cc == "cc"


def test_workdir_output_parsing():
    found = workdir.parse("~/.cache/orchestrate", checked(["agents"], ["hello"]))
    assert found.ok and found.workdir == WD and found.present == {"agents"} and found.output == "hello\n"
    bad = workdir.parse("~/x", "WORKDIR /home/a b/x\n" + workdir.THEN + "\n")
    assert not bad.ok and "safe alphabet" in bad.describe()
    unfinished = workdir.parse("/w", "WORKDIR /w\nOK /w\n")
    assert not unfinished.ok


def test_a_failed_build_on_the_host_shows_the_compilers_words():
    host = FakeHost("server", [
        lambda c: probe_output() if is_probe(c) else None,
        lambda c: checked([], ["@error the build failed:", "@log main.c:1: error: boom"]) if is_install(c) else None,
    ])
    with pytest.raises(HostError, match="the build failed:\nmain.c:1: error: boom"):
        deploy.deploy(host, 10, [Builder("server", "cc", "gcc", False)])


@pytest.mark.parametrize("arch, gcc, packages", [
    ("aarch64", "aarch64-linux-gnu-gcc", "gcc-aarch64-linux-gnu libc6-dev-arm64-cross"),
    ("armv7l", "arm-linux-gnueabihf-gcc", "gcc-arm-linux-gnueabihf libc6-dev-armhf-cross"),
    ("ppc64le", "powerpc64le-linux-gnu-gcc", "gcc-powerpc64le-linux-gnu libc6-dev-ppc64el-cross"),
    ("x86_64", "x86_64-linux-gnu-gcc", "gcc-x86-64-linux-gnu libc6-dev-amd64-cross"),
    ("riscv64", "riscv64-linux-gnu-gcc", "gcc-riscv64-linux-gnu libc6-dev-riscv64-cross"),
    ("s390x", "s390x-linux-gnu-gcc", "gcc-s390x-linux-gnu libc6-dev-s390x-cross"),
    ("i686", "i686-linux-gnu-gcc", "gcc-i686-linux-gnu libc6-dev-i386-cross"),
])
def test_cross_compiler_advice_uses_debians_names(monkeypatch, arch, gcc, packages):
    # Seen from a controller of another architecture, so that only a cross compiler can help.
    monkeypatch.setattr(deploy.platform, "machine", lambda: "sparc64" if arch != "sparc64" else "x86_64")
    advice = deploy.no_builder_advice(arch)
    assert f"a cross compiler {gcc} with its static libc" in advice and f"apt-get install {packages}" in advice
    # and the controller looks for that compiler by that name
    asked = []
    monkeypatch.setattr(deploy.shutil, "which", lambda name: asked.append(name))
    assert deploy.controller_toolchain(arch) is None and asked == [gcc]


def test_an_architecture_without_a_known_cross_toolchain_says_so(monkeypatch):
    monkeypatch.setattr(deploy.platform, "machine", lambda: "x86_64")
    advice = deploy.no_builder_advice("m68k")
    assert "m68k-linux-gnu-gcc" not in advice and "knows no Debian cross toolchain" in advice


def test_a_build_takes_no_flags_from_the_users_environment(monkeypatch, tmp_path):
    """CFLAGS_EXTRA (or CPATH …) in the environment would change the binary but not its source
    hash, --version or manifest: deploy's builds never see them, on the controller or on a host."""
    from orchestrator.remote.hosts import LocalHost

    compiler = shutil.which("cc")
    if compiler is None:
        pytest.fail("`cc` is not installed (./bootstrap.sh test installs it)")
    monkeypatch.setenv("CFLAGS_EXTRA", "--no-such-flag-from-the-users-environment")
    monkeypatch.setenv("CPATH", str(tmp_path / "nowhere"))
    deploy._build_on_controller(tmp_path / "src", tmp_path / "bin", DIGEST, Builder("controller", compiler, "", True), None, 300)
    assert (tmp_path / "bin" / "agent").is_file()
    host = LocalHost("server", HostSpec(host="local", workdir=str(tmp_path / "work")))
    agent = deploy.deploy(host, 300, [Builder("server", compiler, "", False)])
    assert agent.build is not None and agent.build.where == "server" and Path(agent.path).is_file()


@pytest.mark.integration
@pytest.mark.parametrize("arch, gcc, qemu, machine", [("aarch64", "aarch64-linux-gnu-gcc", "qemu-aarch64-static", 183),
                                                      ("armv7l", "arm-linux-gnueabihf-gcc", "qemu-arm-static", 40)])
def test_a_static_agent_cross_built_on_the_controller_runs_on_that_architecture(tmp_path, arch, gcc, qemu, machine):
    """The controller path for a host of another architecture, for real: Debian's cross compiler
    is found by its name for that `uname -m`, builds a static agent, and qemu runs it."""
    import subprocess

    from ..conftest import require_tool

    if deploy.platform.machine() == arch:
        pytest.skip(f"the controller is {arch} itself: no cross build to test")
    require_tool(gcc)
    emulator = require_tool(qemu)
    toolchain = deploy.controller_toolchain(arch)
    assert toolchain is not None and toolchain.cc is not None and toolchain.cc.endswith(f"/{gcc}")
    (builder,) = deploy.plan_builds({"server": Toolchain(arch)}, lambda _: toolchain)["server"]
    assert (builder.where, builder.static) == ("controller", True)
    deploy._build_on_controller(tmp_path / "src", tmp_path / "bin", DIGEST, builder, None, 300)
    binary = tmp_path / "bin" / "agent"
    header = binary.read_bytes()[:20]
    assert header[:4] == b"\x7fELF" and int.from_bytes(header[18:20], "little") == machine  # e_machine
    version = subprocess.run([emulator, str(binary), "--version"], capture_output=True, text=True, timeout=60)
    assert version.returncode == 0 and version.stdout.strip() == f"orchestrate-agent schema 1 source {DIGEST}"


# ---------------------------------------------------------------- the cache, checked by sh on this machine


class CountingLocalHost:
    """This machine as a host (no SSH): deploy's scripts run for real in a workdir under tmp."""

    def __init__(self, workdir_path: Path) -> None:
        from orchestrator.remote.hosts import LocalHost

        self.inner = LocalHost("server", HostSpec(host="local", workdir=str(workdir_path)))
        self.role, self.commands = "server", []

    @property
    def spec(self) -> HostSpec:
        return self.inner.spec

    @spec.setter
    def spec(self, value: HostSpec) -> None:
        self.inner.spec = value

    @property
    def name(self) -> str:
        return self.inner.name

    def run(self, command: str, timeout: float, stdin: bytes | None = None) -> CommandResult:
        self.commands.append(command)
        return self.inner.run(command, timeout, stdin)


def plant_agent(tmp_path: Path, version: str = VERSION, **manifest_changes: str) -> tuple[CountingLocalHost, Path]:
    """An agent as an earlier deploy left it in the workdir: the binary (a script that notes
    each run) and its manifest. Returns the host and the file a run of the agent creates."""
    import os

    arch = os.uname().machine
    work = tmp_path / "work"
    folder = work / deploy.agent_folder(DIGEST, arch)
    (folder / "bin").mkdir(parents=True)
    for path in (work, work / "agents", folder, folder / "bin"):
        path.chmod(0o700)
    ran = folder / "ran"
    agent = folder / "bin" / "agent"
    agent.write_text(f"#!/bin/sh\ntouch {ran}\necho '{version}'\n")
    agent.chmod(0o700)
    fields = {"sha256": hashlib.sha256(agent.read_bytes()).hexdigest(), "source": DIGEST, "where": "server",
              "compiler": "gcc 12.2.0", "static": "0", "arch": arch, **manifest_changes}
    (folder / "bin" / "manifest").write_text("".join(f"{k} {v}\n" for k, v in fields.items()))
    (folder / "bin" / "manifest").chmod(0o600)
    return CountingLocalHost(work), ran


def test_a_cached_agent_whose_sha256_matches_is_used_after_one_round_trip(tmp_path):
    host, ran = plant_agent(tmp_path)
    agent = deploy.deploy(host, 30, [])  # no builder: only the cache can answer
    assert agent.build is not None and (agent.build.where, agent.build.origin) == ("cached", "server")
    assert agent.path == str(ran.parent / "bin" / "agent")
    assert agent.build.sha256 == hashlib.sha256(Path(agent.path).read_bytes()).hexdigest()
    assert len(host.commands) == 1 and ran.exists()  # its --version was run, to check it


@pytest.mark.parametrize("changes", [
    {"sha256": "0" * 64},  # the binary is not the one the manifest describes
    {"arch": "aarch64"},  # a manifest for another architecture in this folder
    {"source": "0" * 16},  # built from other sources
])
def test_a_cached_agent_that_does_not_match_its_manifest_is_never_run(tmp_path, changes):
    host, ran = plant_agent(tmp_path, **changes)
    with pytest.raises(PreflightError, match="install gcc"):  # a miss: it would be built, and nothing can build
        deploy.deploy(host, 30, [])
    assert not ran.exists()


def test_a_cached_agent_naming_other_sources_when_run_is_a_miss(tmp_path):
    host, ran = plant_agent(tmp_path, version=VERSION.replace(DIGEST, "1" * 16))
    with pytest.raises(PreflightError, match="install gcc"):
        deploy.deploy(host, 30, [])
    assert ran.exists()  # run for its --version (its sha256 matched), and refused for what it said


@pytest.mark.parametrize("swap, reason", [
    ("bin/agent", "is a symlink"),
    ("bin/manifest", "is a symlink"),
    ("bin", "is a symlink"),
])
def test_a_symlinked_agent_is_refused_and_never_run(tmp_path, swap, reason):
    host, ran = plant_agent(tmp_path)
    target = ran.parent / swap
    # The same valid files, reached through a symlink somebody else could repoint.
    elsewhere = tmp_path / "elsewhere"
    shutil.move(str(target), str(elsewhere))
    target.symlink_to(elsewhere)
    with pytest.raises(UnsafeWorkdir, match=f"{swap} {reason}"):
        deploy.deploy(host, 30, [])
    assert not ran.exists()


def test_a_cached_agent_another_account_could_change_is_refused(tmp_path):
    import os

    host, ran = plant_agent(tmp_path)
    agent = ran.parent / "bin" / "agent"
    agent.chmod(0o722)
    with pytest.raises(UnsafeWorkdir, match="bin/agent is writable by group or others"):
        deploy.deploy(host, 30, [])
    agent.chmod(0o700)
    if os.geteuid() == 0:  # only root can give the file away
        os.chown(agent, 65534, 65534)
        with pytest.raises(UnsafeWorkdir, match="bin/agent is owned by uid 65534"):
            deploy.deploy(host, 30, [])
    assert not ran.exists()
