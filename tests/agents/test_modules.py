"""The agent's modules form a DAG, and each header declares only its own module's exports.

Found from the compiler, not from reading the text: gcc's -aux-info names the header of every
function declaration a file sees, and nm on each object file names what it defines and what it
needs from the others. A cycle between modules, or a header declaring a function another .c
defines (as agent.h once did for control.c and timekeeper.c), fails here with the names."""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from orchestrator.remote import deploy
from tests.conftest import ROOT, require

pytestmark = pytest.mark.integration

AGENTS = ROOT / "agents"
# "/* /path/agents/control.h:6:NC */ extern void agent_fail (const char *, ...);": NC is a
# declaration, NF/OF a definition (a static inline in a header is one, and is its own).
AUX_DECLARATION = re.compile(r"^/\* (?P<file>[^:]+):\d+:NC \*/ extern .*?\b(?P<name>\w+) \(")
EXTERN_OBJECT = re.compile(r"^\s*extern\s+[^;(]*?\b(\w+)\s*(?:\[[^]]*\])?\s*;", re.MULTILINE)


@dataclass
class Modules:
    defines: dict[str, str] = field(default_factory=dict)  # global symbol -> module defining it
    needs: dict[str, set[str]] = field(default_factory=dict)  # module -> undefined symbols
    declared_in: dict[str, set[str]] = field(default_factory=dict)  # function -> headers declaring it

    def calls(self) -> dict[str, dict[str, set[str]]]:
        """module -> module it needs -> the symbols it needs from it."""
        graph: dict[str, dict[str, set[str]]] = {}
        for module, symbols in self.needs.items():
            for symbol in symbols:
                owner = self.defines.get(symbol)
                if owner is not None and owner != module:
                    graph.setdefault(module, {}).setdefault(owner, set()).add(symbol)
        return graph


def scan(tmp_path: Path) -> Modules:
    found = Modules()
    for source in sorted(AGENTS.glob("*.c")):
        obj, aux = tmp_path / f"{source.stem}.o", tmp_path / f"{source.stem}.aux"
        build = subprocess.run(
            ["gcc", "-std=gnu11", "-D_GNU_SOURCE", "-O2", f"-I{AGENTS}", "-aux-info", str(aux), "-c", "-o", str(obj), str(source)],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert build.returncode == 0, build.stderr
        for line in aux.read_text().splitlines():
            m = AUX_DECLARATION.match(line)
            if m and Path(m["file"]).parent == AGENTS:
                found.declared_in.setdefault(m["name"], set()).add(Path(m["file"]).name)
        symbols = subprocess.run(["nm", str(obj)], capture_output=True, text=True, check=True).stdout
        for line in symbols.splitlines():
            *_, kind, name = line.split()
            if kind == "U":
                found.needs.setdefault(source.stem, set()).add(name)
            elif kind in "TDBRC":
                found.defines[name] = source.stem
    return found


def find_cycle(graph: dict[str, dict[str, set[str]]]) -> list[str]:
    """One cycle as [a, b, ..., a], or [] when the graph is a DAG (depth-first, three colours)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, {})):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return []

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return []


@pytest.fixture(scope="module")
def modules(tmp_path_factory: pytest.TempPathFactory) -> Modules:
    require(shutil.which("gcc") is not None and shutil.which("nm") is not None, "gcc and nm are needed")
    return scan(tmp_path_factory.mktemp("modules"))


def test_find_cycle_finds_one() -> None:
    assert find_cycle({"a": {"b": set()}, "b": {"c": set()}, "c": {"a": set()}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b": set()}, "b": {"c": set()}, "c": {}}) == []


def test_the_modules_form_a_dag(modules: Modules) -> None:
    graph = modules.calls()
    assert {"main", "worker", "json", "timekeeper", "control"} <= set(graph) | {m for d in graph.values() for m in d}
    cycle = find_cycle(graph)
    detail = [f"{a} -> {b}: {', '.join(sorted(graph[a][b]))}" for a, b in zip(cycle, cycle[1:])]
    assert cycle == [], "the agent's modules call each other in a circle:\n" + "\n".join(detail)


def test_each_header_declares_only_its_own_modules_functions(modules: Modules) -> None:
    assert "agent_fail" in modules.declared_in and "json_write" in modules.declared_in
    wrong = sorted(
        f"{header} declares {name}, defined in {modules.defines.get(name, '(nowhere)')}.c"
        for name, headers in modules.declared_in.items()
        for header in headers
        if header != f"{modules.defines.get(name)}.h"
    )
    assert wrong == []


def test_every_exported_function_has_its_declaration_in_its_own_header(modules: Modules) -> None:
    """The other half: nothing a module exports is declared only in the file that uses it."""
    def in_own_header(name: str, module: str) -> bool:
        header = AGENTS / f"{module}.h"
        return f"{module}.h" in modules.declared_in.get(name, set()) or (
            header.exists() and name in EXTERN_OBJECT.findall(header.read_text()))  # an object: g_run

    missing = sorted(f"{module}.c exports {name}" for name, module in modules.defines.items()
                     if module != "main" and not in_own_header(name, module))  # fmt: skip
    assert missing == []


def test_agent_h_holds_types_and_constants_only(modules: Modules) -> None:
    text = (AGENTS / "agent.h").read_text()
    assert "struct thread_state {" in text
    assert not [name for name, headers in modules.declared_in.items() if "agent.h" in headers]
    assert EXTERN_OBJECT.findall(text) == []
    for header in AGENTS.glob("*.h"):
        for name in EXTERN_OBJECT.findall(header.read_text()):
            assert modules.defines.get(name) == header.stem, f"{header.name} declares {name}"


def test_every_included_header_is_shipped_and_hashed() -> None:
    """deploy pushes and hashes the agent's sources by name: a new header must be among them."""
    shipped = {p.name for p in deploy.source_files()}
    included = {name for source in AGENTS.glob("*.[ch]") for name in re.findall(r'#include "([^"]+)"', source.read_text())}
    assert {"control.h", "run.h", "agent.h"} <= included
    assert included - shipped == set()
    assert {p.name for p in AGENTS.glob("*.[ch]")} - shipped == set()
