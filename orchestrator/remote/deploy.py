"""Getting a verified agent onto each host.

In order: an agent this host already has for these exact sources (its sha256 matches the
manifest we wrote beside it, and its --version names the source hash); else built on the host
with its own `cc`; else, on a host without a compiler, built as a static binary for its
architecture on the controller or on the other host, and pushed. Whatever the origin, the
target checks the binary's sha256 and runs its --version before the run uses it. Everything
happens inside a workdir that workdir.py has checked is ours alone.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import platform
import re
import secrets
import shutil
import subprocess
import tarfile
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

from ..experiment import shipped
from . import workdir
from ..errors import HostError, OrchestrateError, PreflightError, UnsafeWorkdir
from .hosts import Host
from ..processes import shell_quote

log = logging.getLogger(__name__)

_SOURCE_PATTERNS = (".c", ".h")
_BUILD_SCRIPT = "build.sh"
_ARCH = re.compile(r"^[A-Za-z0-9_]{1,32}$")
_COMPILER_PATH = re.compile(r"^/[A-Za-z0-9_./+-]{1,254}$")  # else plain `cc`, found on the PATH
VERSION_PREFIX = "orchestrate-agent"
BUILD_TIMEOUT_FLOOR = 120.0  # a static link on a slow host takes a while; never less than this


@dataclass(frozen=True)
class BuildRecord:
    """Where and how the agent a host runs was made: saved in the host facts."""

    where: str  # "server", "client", "controller", or "cached" (then `origin` says where it was built)
    compiler: str
    static: bool
    sha256: str
    arch: str = ""
    origin: str = ""

    def to_json(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v != ""}


@dataclass(frozen=True)
class Agent:
    """A verified agent on one host."""

    source_hash: str
    path: str
    build: BuildRecord | None = None


# ---------------------------------------------------------------------------- sources


def source_files(root=None) -> list:
    """The agent's sources (file-like Traversables), sorted by name."""
    root = shipped.agent_sources() if root is None else root
    try:
        files = sorted((p for p in root.iterdir() if p.name.endswith(_SOURCE_PATTERNS) or p.name == _BUILD_SCRIPT),
                       key=lambda p: p.name)
    except OSError:
        files = []
    if not any(p.name.endswith(".c") for p in files):
        raise OrchestrateError(f"no agent sources found in {root}")
    return files


def source_hash(root=None) -> str:
    digest = hashlib.sha256()
    for path in source_files(root):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def _stage_sources(folder: Path, root) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for path in source_files(root):
        (folder / path.name).write_bytes(path.read_bytes())


# ---------------------------------------------------------------------------- toolchains

# Read-only: the host's architecture and its `cc`, if any, and whether that cc can link
# statically (glibc's libc.a, from libc6-dev on Debian, is where -print-file-name finds it).
TOOLCHAIN_PROBE = (
    'echo "@arch $(uname -m)"; '
    'if command -v cc >/dev/null 2>&1; then echo "@cc $(command -v cc)"; '
    'echo "@ccversion $(cc --version 2>/dev/null | head -n 1)"; '
    'l=$(cc -print-file-name=libc.a 2>/dev/null); case $l in /*) [ -e "$l" ] && echo "@ccstatic 1";; esac; fi'
)


@dataclass(frozen=True)
class Toolchain:
    arch: str
    cc: str | None = None
    version: str = ""
    static: bool = False


def parse_toolchain(stdout: str) -> Toolchain:
    values: dict[str, str] = {}
    for line in stdout.splitlines():
        if line.startswith("@"):
            key, _, value = line[1:].partition(" ")
            values.setdefault(key, value.strip())
    arch = values.get("arch", "")
    cc = values.get("cc", "")
    return Toolchain(
        arch=arch if _ARCH.match(arch) else "",
        cc=(cc if _COMPILER_PATH.match(cc) else "cc") if cc else None,
        version=_one_line(values.get("ccversion", "")),
        static=values.get("ccstatic") == "1",
    )


def _one_line(text: str) -> str:
    return " ".join(text.split())[:200]


@dataclass(frozen=True)
class Cross:
    """How Debian names the cross toolchain for one `uname -m`: the GNU triplet (its gcc is
    `<triplet>-gcc`, in package `gcc-<triplet>` with `_` spelled `-`, as package names have no
    `_`) and the Debian architecture (the static libc is in `libc6-dev-<debian>-cross`)."""

    triplet: str
    debian: str

    @property
    def gcc(self) -> str:
        return f"{self.triplet}-gcc"

    @property
    def packages(self) -> str:
        return f"gcc-{self.triplet.replace('_', '-')} libc6-dev-{self.debian}-cross"


# `uname -m` -> Debian's cross toolchain; `uname -m` names differ from both GNU's and Debian's.
CROSS: dict[str, Cross] = {
    "x86_64": Cross("x86_64-linux-gnu", "amd64"),
    "aarch64": Cross("aarch64-linux-gnu", "arm64"),
    "armv7l": Cross("arm-linux-gnueabihf", "armhf"),
    "armv6l": Cross("arm-linux-gnueabihf", "armhf"),  # Raspbian-style armhf; Debian's armhf needs v7
    "armv5tel": Cross("arm-linux-gnueabi", "armel"),
    "i686": Cross("i686-linux-gnu", "i386"),
    "i586": Cross("i686-linux-gnu", "i386"),
    "i386": Cross("i686-linux-gnu", "i386"),
    "ppc64le": Cross("powerpc64le-linux-gnu", "ppc64el"),
    "ppc64": Cross("powerpc64-linux-gnu", "ppc64"),
    "riscv64": Cross("riscv64-linux-gnu", "riscv64"),
    "s390x": Cross("s390x-linux-gnu", "s390x"),
    "mips64": Cross("mips64-linux-gnuabi64", "mips64"),
    "mips64el": Cross("mips64el-linux-gnuabi64", "mips64el"),
    "loongarch64": Cross("loongarch64-linux-gnu", "loong64"),
    "sparc64": Cross("sparc64-linux-gnu", "sparc64"),
}


def cross_for(arch: str) -> Cross | None:
    return CROSS.get(arch)


def controller_toolchain(arch: str) -> Toolchain | None:
    """A compiler on this machine that can link a static binary for `arch`: the native one when
    the architectures agree, else Debian's cross compiler for it (CROSS)."""
    if not _ARCH.match(arch):
        return None
    cross = cross_for(arch)
    names = (["cc", "gcc", "clang"] if platform.machine() == arch else []) + ([cross.gcc] if cross else [])
    for name in names:
        path = shutil.which(name)
        if not path:
            continue
        try:
            libc = subprocess.run([path, "-print-file-name=libc.a"], capture_output=True, text=True, timeout=30).stdout.strip()
            version = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30).stdout
        except (OSError, subprocess.TimeoutExpired):
            continue
        if os.path.isabs(libc) and os.path.exists(libc):
            return Toolchain(arch, path, _one_line(version.splitlines()[0] if version else name), True)
    return None


@dataclass(frozen=True)
class Builder:
    """One way to get an agent for a host: `where` builds it with `compiler`."""

    where: str  # the target's own role (a native build), the other role, or "controller"
    compiler: str
    version: str
    static: bool


def plan_builds(toolchains: dict[str, Toolchain],
                controller: Callable[[str], Toolchain | None] = controller_toolchain) -> dict[str, list[Builder]]:
    """For each role, the builders to try in order: its own cc; else a static build on the
    controller, then on the other host (same architecture, static libc there)."""
    plans: dict[str, list[Builder]] = {}
    for role, tc in toolchains.items():
        if tc.cc:
            plans[role] = [Builder(role, tc.cc, tc.version, False)]
            continue
        options: list[Builder] = []
        here = controller(tc.arch) if tc.arch else None
        if here and here.cc:
            options.append(Builder("controller", here.cc, here.version, True))
        for other, otc in toolchains.items():
            if other != role and otc.cc and otc.static and otc.arch == tc.arch:
                options.append(Builder(other, otc.cc, otc.version, True))
        plans[role] = options
    return plans


def no_builder_advice(arch: str) -> str:
    arch = arch or "this architecture"
    cross = cross_for(arch)
    if arch == platform.machine():
        controller = "gcc and libc6-dev (a static libc) on the controller"
    elif cross:
        controller = (f"a cross compiler {cross.gcc} with its static libc on the controller "
                      f"(Debian: apt-get install {cross.packages})")
    else:
        controller = (f"a cross compiler for {arch} with its static libc on the controller "
                      "(orchestrate knows no Debian cross toolchain for it; a gcc and libc.a on the other host "
                      "of the same architecture also work)")
    return f"no compiler can build the agent for {arch}: install gcc (or clang) on this host, or {controller}"


# ---------------------------------------------------------------------------- deploy


def _sha256_sh(path: str) -> str:
    return f'{{ sha256sum {path} 2>/dev/null || shasum -a 256 {path}; }} | cut -d" " -f1'


SHA_OF_B = _sha256_sh('"$b/agent"')
SHA_OF_A = _sha256_sh('"$a"')


def _manifest_tail(digest: str, where: str, compiler: str, static: bool, arch: str) -> str:
    """The manifest's lines after `sha256 <hex>`, which the target fills in itself."""
    fields = {"source": digest, "where": where, "compiler": _one_line(compiler), "static": "1" if static else "0", "arch": arch}
    return "".join(f"{k} {v}\n" for k, v in fields.items())


def _values(lines: Iterable[str], prefix: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for line in lines:
        if line.startswith(prefix):
            key, _, value = line[len(prefix):].partition(" ")
            found.setdefault(key, value.strip())
    return found


def agent_folder(digest: str, arch: str) -> str:
    """The agent's folder under the workdir: per source hash AND architecture, because one
    workdir may be shared by hosts of two architectures (an NFS home)."""
    return f"agents/{digest}-{arch}"


# The host's architecture, checked in sh before it names any path (it is part of the folder name).
ARCH_SH = ('m=$(uname -m); case $m in ""|*[!A-Za-z0-9_]*) echo "@error uname -m gave no plain architecture"; exit 0;; esac; '
           'echo "@arch $m"; ')
# Unique per host and attempt: two hosts sharing a workdir never build into one folder.
STALE_MINUTES = 60


def _token() -> str:
    return secrets.token_hex(6)


def _valid_sh(folder: str, digest: str) -> str:
    """sh: true when `folder` holds an agent whose sha256 is its manifest's, and whose manifest
    names these sources and this host's architecture ($m)."""
    a, mf = f"{folder}/agent", f"{folder}/manifest"
    return (f'{{ [ -f {a} ] && [ ! -L {a} ] && [ -f {mf} ] && [ ! -L {mf} ] && '
            f'[ "$({_sha256_sh(a)})" = "$(sed -n "s/^sha256 //p" {mf})" ] && '
            f'[ "$(sed -n "s/^arch //p" {mf})" = "$m" ] && [ "$(sed -n "s/^source //p" {mf})" = {shell_quote(digest)} ]; }}')


def _version_ok(version: str, digest: str) -> bool:
    words = version.split()
    return bool(words) and words[0] == VERSION_PREFIX and f"source {digest}" in version


def deploy(host: Host, timeout: float, builders: Sequence[Builder] | None = None,
           others: dict[str, Host] | None = None, root=None) -> Agent:
    """Make sure `host` has a verified agent built from these sources; return where it is.

    `builders` come from plan_builds (default: the host's own cc); `others` holds the hosts a
    builder may name."""
    digest = source_hash(root)
    if builders is None:
        builders = [Builder(host.role, "cc", "", False)]
    # One round trip: the host's architecture (part of the folder's name), every path checked
    # (workdir.py's `own`, inside the same script), old abandoned build folders dropped, and
    # the cached binary's sha256; its --version runs only if that sha256 and the manifest's
    # architecture are the ones we recorded.
    base_sh = f'"agents/"{shell_quote(digest)}"-$m"'
    probe, _ = workdir.check(
        host, timeout, dirs=["agents"],
        then=(
            ARCH_SH + f"base={base_sh}; "
            'own "$wd/$base" d 1; own "$wd/$base/bin" d 0; own "$wd/$base/bin/agent" f 0; own "$wd/$base/bin/manifest" f 0; '
            '[ "$safe" = 1 ] || exit 0; '
            f'find "$base" -mindepth 1 -maxdepth 1 -name "tmp.*" -mmin +{STALE_MINUTES} -exec rm -rf {{}} + 2>/dev/null; '
            'b="$base/bin"; '
            'if [ -f "$b/agent" ] && [ -f "$b/manifest" ]; then '
            f'have=$({SHA_OF_B}); echo "@sha256 $have"; sed "s/^/@m /" "$b/manifest"; '
            f'if {_valid_sh(chr(34) + "$b" + chr(34), digest)}; then echo "@version $("$b/agent" --version 2>&1 | head -n 1)"; fi; fi'
        ),
    )
    probe.raise_unless_ok(host.name)
    lines = probe.output.splitlines()
    _raise_if_unsafe(host, probe, lines)
    wd = probe.workdir
    seen = _values(lines, "@")
    manifest = _values(lines, "@m ")
    arch = seen.get("arch", "")
    if seen.get("error") or not _ARCH.match(arch):
        raise HostError(host.name, seen.get("error") or "the host did not report its architecture")
    base = agent_folder(digest, arch)
    agent_path = f"{wd}/{base}/bin/agent"
    if (seen.get("sha256") and seen.get("sha256") == manifest.get("sha256") and manifest.get("arch") == arch
            and _version_ok(seen.get("version", ""), digest)):
        record = BuildRecord("cached", manifest.get("compiler", ""), manifest.get("static") == "1", seen["sha256"],
                             arch, origin=manifest.get("where", ""))
        return Agent(digest, agent_path, record)

    if not builders:
        raise PreflightError(f"{host.name}: {no_builder_advice(arch)}")
    if builders[0].where == host.role:  # the host's own compiler: its failure is the answer
        return Agent(digest, agent_path, _build_on_target(host, wd, base, digest, builders[0], arch, timeout, root))
    failures = []
    for builder in builders:
        try:
            record = _build_elsewhere_and_push(host, wd, base, digest, builder, arch, others or {}, timeout, root)
            return Agent(digest, agent_path, record)
        except UnsafeWorkdir:
            raise
        except OrchestrateError as exc:
            log.info("%s: building the agent on the %s failed: %s", host.name, builder.where, exc)
            failures.append(f"on the {builder.where} ({builder.compiler}): {exc}")
    raise PreflightError(f"{host.name}: the agent could not be built anywhere for {arch or 'this host'}:\n  "
                         + "\n  ".join(failures) + f"\n{no_builder_advice(arch)}")


def _raise_if_unsafe(host: Host, found: workdir.WorkdirCheck, lines: list[str]) -> None:
    """Paths checked inside the caller's own commands (after the marker) report like the rest."""
    problems = [line[len("UNSAFE "):] for line in lines if line.startswith("UNSAFE ")]
    if problems:
        found.problems.extend(problems)
        found.raise_unless_ok(host.name)


def _sources_tar(root) -> bytes:
    """The sources as a tar stream, owned by nobody in particular: the host's tar, told
    --no-same-owner, makes them the login user's (push_dir would keep this machine's uid)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for path in source_files(root):
            data = path.read_bytes()
            info = tarfile.TarInfo(path.name)
            info.size, info.mode = len(data), 0o600
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _unpack_sources_sh(folder: str) -> str:
    return f"rm -rf {shell_quote(folder)} && mkdir {shell_quote(folder)} && tar --no-same-owner -C {shell_quote(folder)} -xf - && "


# What a build must not take from the user's environment: build.sh honours CC, CFLAGS_EXTRA and
# STATIC, and gcc reads the others; each would change the binary but not the source hash,
# --version or manifest. Deploy sets CC and STATIC itself, and the rest not at all.
_BUILD_ENV_DROP = ("CC", "CFLAGS_EXTRA", "STATIC", "CPATH", "C_INCLUDE_PATH", "LIBRARY_PATH",
                   "GCC_EXEC_PREFIX", "COMPILER_PATH")
# The same on a host (a login's profile may set them, and this machine's environment reaches a
# local host's shell).
_BUILD_ENV_SH = "unset " + " ".join(_BUILD_ENV_DROP) + "; "


def _build_on_target(host: Host, wd: str, base: str, digest: str, builder: Builder, arch: str,
                     timeout: float, root) -> BuildRecord:
    """Sources in on stdin, built, installed and checked: one round trip, in a build folder of
    this attempt's own (a workdir shared with another host sees two builds at once)."""
    tmp = f"{base}/tmp.{_token()}"
    build = (
        f"( {_BUILD_ENV_SH}mkdir {shell_quote(tmp)} && cd {shell_quote(tmp)} && " + _unpack_sources_sh("src")
        + f"CC={shell_quote(builder.compiler)} sh src/build.sh bin {shell_quote(digest)} > build.log 2>&1 )"
        f" || {{ echo '@error the build failed:'; tail -n 30 {shell_quote(tmp)}/build.log | sed 's/^/@log /'; rm -rf {shell_quote(tmp)}; exit 0; }}\n"
    )
    return _install(host, base, tmp, digest, builder, arch, max(timeout, BUILD_TIMEOUT_FLOOR), "", build, _sources_tar(root))


def _build_elsewhere_and_push(host: Host, wd: str, base: str, digest: str, builder: Builder, arch: str,
                              others: dict[str, Host], timeout: float, root) -> BuildRecord:
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / "bin"
        if builder.where == "controller":
            _build_on_controller(Path(scratch) / "src", out, digest, builder, root, timeout)
        else:
            _build_static_on(others[builder.where], out, base, digest, builder, root, timeout)
        binary = out / "agent"
        if not binary.is_file():
            raise OrchestrateError(f"the {builder.where} build left no agent binary")
        data = binary.read_bytes()
    expected = hashlib.sha256(data).hexdigest()
    # The binary goes in on stdin, written by the login user, and is checked in the same round trip.
    tmp = f"{base}/tmp.{_token()}"
    receive = (f"mkdir {shell_quote(tmp)} {shell_quote(tmp)}/bin && cat > {shell_quote(tmp)}/bin/agent"
               f" || {{ echo '@error could not write the agent'; rm -rf {shell_quote(tmp)}; exit 0; }}\n")
    return _install(host, base, tmp, digest, builder, arch, timeout, expected, receive, data)


def _build_env(compiler: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _BUILD_ENV_DROP}
    return {**env, "CC": compiler, "STATIC": "1"}


def _build_on_controller(src: Path, out: Path, digest: str, builder: Builder, root, timeout: float) -> None:
    _stage_sources(src, root)
    try:
        done = subprocess.run(["sh", str(src / _BUILD_SCRIPT), str(out), digest], capture_output=True, text=True,
                              env=_build_env(builder.compiler),
                              timeout=max(timeout, BUILD_TIMEOUT_FLOOR))
    except subprocess.TimeoutExpired:
        raise OrchestrateError("the static build on the controller timed out") from None
    log.info("controller rc=%s: CC=%s STATIC=1 sh build.sh %s %s", done.returncode, builder.compiler, out, digest)
    if done.returncode != 0:
        raise OrchestrateError(f"static build failed: {' '.join((done.stderr or done.stdout).split())[-600:]}")


def _build_static_on(builder_host: Host, out: Path, base: str, digest: str, builder: Builder, root, timeout: float) -> None:
    """A static build in the other host's own (checked) workdir, in a folder of this attempt's
    own, fetched back here, then removed."""
    folder = f"{base}/tmp.{_token()}"
    found, _ = workdir.check(
        builder_host, max(timeout, BUILD_TIMEOUT_FLOOR), dirs=["agents", base, folder],
        then=(f"{_BUILD_ENV_SH}cd {shell_quote(folder)} && " + _unpack_sources_sh("src")
              + f"CC={shell_quote(builder.compiler)} STATIC=1 sh src/build.sh bin {shell_quote(digest)} > build.log 2>&1"
              " && echo @built || tail -n 30 build.log"),
        stdin=_sources_tar(root),
    )
    found.raise_unless_ok(builder_host.name)
    try:
        if "@built" not in found.output.splitlines():
            raise HostError(builder_host.name, f"static build failed: {' '.join(found.output.split())[-600:]}")
        builder_host.fetch_dir(f"{found.workdir}/{folder}/bin", out, timeout)
    finally:
        try:
            workdir.check(builder_host, timeout, dirs=["agents", base], then=f"rm -rf {shell_quote(folder)}")
        except OrchestrateError as exc:  # left for the next deploy's stale-folder sweep
            log.info("%s: could not remove %s: %s", builder_host.name, folder, exc)


def _install(host: Host, base: str, tmp: str, digest: str, builder: Builder, arch: str, timeout: float,
             expected_sha: str, first: str, stdin: bytes) -> BuildRecord:
    """On the target, in one round trip inside the checked workdir: `first` (which makes
    <tmp>/bin/agent from stdin), then its sha256 checked (against `expected_sha` when we pushed
    it) and the manifest written beside it; then <tmp>/bin renamed to bin/ in one step. If
    another host sharing this workdir got there first with a valid agent for this architecture,
    that one is kept. Finally the agent in bin/ is checked and its --version run."""
    staged = f"{tmp}/bin"
    lines = _manifest_tail(digest, builder.where, builder.version or builder.compiler, builder.static, arch)
    final = f"{base}/bin"
    valid = _valid_sh(shell_quote(final), digest)
    then = (
        f"m={shell_quote(arch)}; " + first
        + f"a={shell_quote(staged)}/agent; [ -f \"$a\" ] && [ ! -L \"$a\" ] || {{ echo '@error no agent binary'; rm -rf {shell_quote(tmp)}; exit 0; }}; "
        f"chmod 700 \"$a\" && have=$({SHA_OF_A}); echo \"@built $have\"; "
        + (f"[ \"$have\" = {shell_quote(expected_sha)} ] || {{ echo '@error sha256 differs from what was pushed'; rm -rf {shell_quote(tmp)}; exit 0; }}; " if expected_sha else "")
        + f"{{ printf 'sha256 %s\\n' \"$have\"; printf %s {shell_quote(lines)}; }} > {shell_quote(staged)}/manifest && chmod 600 {shell_quote(staged)}/manifest"
        # rename(2) onto a missing or empty folder, never into one (mv -T); a non-empty bin/ is
        # another host's or a stale one: kept if valid, else moved aside and replaced.
        f" && if mv -T {shell_quote(staged)} {shell_quote(final)} 2>/dev/null; then :; elif {valid}; then echo @reused; else"
        f" mv -T {shell_quote(final)} {shell_quote(tmp)}/old 2>/dev/null; if mv -T {shell_quote(staged)} {shell_quote(final)} 2>/dev/null; then :;"
        f" elif {valid}; then echo @reused; else echo '@error could not put the agent in place'; rm -rf {shell_quote(tmp)}; exit 0; fi; fi; "
        f"rm -rf {shell_quote(tmp)}; a={shell_quote(final)}/agent; "
        f"if {valid}; then echo \"@sha256 $({SHA_OF_A})\"; sed 's/^/@m /' {shell_quote(final)}/manifest; "
        f"echo \"@version $(\"$a\" --version 2>&1 | head -n 1)\"; else echo '@error the installed agent does not match its manifest'; fi"
    )
    found, _ = workdir.check(host, timeout, dirs=["agents", base], then=then, stdin=stdin)
    found.raise_unless_ok(host.name)
    out = found.output.splitlines()
    seen = _values(out, "@")
    if seen.get("error"):
        detail = "\n".join(line[len("@log "):] for line in out if line.startswith("@log "))
        raise HostError(host.name, f"agent from the {builder.where}: {seen['error']}"
                                   + (f"\n{detail}" if detail else f" (sha256 {seen.get('sha256') or seen.get('built', '?')})"))
    if not _version_ok(seen.get("version", ""), digest):
        raise HostError(host.name, f"the agent from the {builder.where} does not start as expected: "
                                   f"{seen.get('version') or 'no output'} (want {VERSION_PREFIX} … source {digest})")
    if "reused" in seen:
        manifest = _values(out, "@m ")
        log.info("%s: another host sharing this workdir installed the agent first; reusing it", host.name)
        return BuildRecord("cached", manifest.get("compiler", ""), manifest.get("static") == "1", seen["sha256"],
                           arch, origin=manifest.get("where", ""))
    return BuildRecord(builder.where, builder.version or builder.compiler, builder.static, seen["sha256"], arch)
