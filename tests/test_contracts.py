"""The machine-checked contracts of pyproject.toml, run with the suite so CI fails when one breaks.

* ``lint-imports`` checks the import contracts (``[tool.importlinter]``): the layers, a framework-free
  core, frameworks only under ``mixq.backends``, backend packages only through the registry, no cycles.
* a grimp walk names every import cycle as a chain of ``module:line`` steps (import-linter's cycle
  contract says which imports would break the cycles, not the chains).
* ``mypy`` checks the types (``[tool.mypy]``; strict for the core, the solvers and the registry).
* the linter itself is shown to catch deliberately broken imports in a copy of the package.

Both tools run in a subprocess from the project root with ``PYTHONPATH=src``, so they check this tree
and not an installed copy.
"""

from __future__ import annotations

import itertools
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
PYPROJECT = ROOT / "pyproject.toml"

# import-linter as its console script does it, whatever the interpreter's scripts directory is.
LINT_IMPORTS = "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())"


def run_tool(code: Sequence[str], pythonpath: Path, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(pythonpath)}
    return subprocess.run([sys.executable, *code], cwd=cwd, env=env, capture_output=True, text=True, timeout=600, check=False)


def lint_imports(pythonpath: Path = SRC, contracts: Iterable[str] = (), cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    pytest.importorskip("importlinter", reason='the import contracts need import-linter: pip install -e ".[test]"')
    args = ["-c", LINT_IMPORTS, str(PYPROJECT), "--no-cache", "--no-logo"]
    for contract in contracts:
        args += ["--contract", contract]
    return run_tool(args, pythonpath, cwd)


def broken_section(output: str) -> str:
    """import-linter's report from the list of broken contracts on (the summary before it repeats it)."""
    start = output.find("Broken contracts")
    return output[start:] if start >= 0 else output


def squeeze(report: str) -> str:
    """The report without its blank lines."""
    return "\n".join(line for line in report.splitlines() if line.strip())


def test_import_contracts_hold() -> None:
    result = lint_imports()
    if result.returncode != 0:
        pytest.fail("an import contract of pyproject.toml [tool.importlinter] is broken:\n"
                    + squeeze(broken_section(result.stdout)) + result.stderr, pytrace=False)


# -- cycles, with their chains ------------------------------------------------------------------------

def strongly_connected(edges: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """Tarjan's components of more than one node (or with a self-loop), each sorted, in sorted order."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for successor in edges.get(node, ()):
            if successor not in index:
                visit(successor)
                low[node] = min(low[node], low[successor])
            elif successor in on_stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1 or node in edges.get(node, ()):
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return sorted(found)


def ring(edges: Mapping[str, Iterable[str]], component: Sequence[str]) -> list[str]:
    """The shortest cycle through ``component[0]`` inside the component: ``[a, b, ..., a]``."""
    start, inside = component[0], set(component)
    previous: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for successor in sorted(set(edges.get(node, ())) & inside):
                if successor == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(previous[path[-1]])
                    return [*reversed(path), start]
                if successor not in previous:
                    previous[successor] = node
                    following.append(successor)
        frontier = following
    return list(component)


def import_cycles(package: str = "mixq") -> list[str]:
    """Every cycle among modules and among sibling packages, imports inside functions included.

    Each is reported as a ring ``a -> b -> a`` and, per step, the imports (``module -> module (l.N)``)
    that make it.
    """
    grimp = pytest.importorskip("grimp", reason='the cycle check needs grimp (import-linter): pip install -e ".[test]"')
    graph = grimp.build_graph(package, include_external_packages=False, cache_dir=None)
    modules = sorted(graph.modules)
    imports = {m: sorted(graph.find_modules_directly_imported_by(m)) for m in modules}

    def evidence(pairs: Iterable[tuple[str, str]]) -> str:
        return "; ".join(
            f"{importer} -> {imported} ("
            + ", ".join(f"l.{d['line_number']}" for d in graph.get_import_details(importer=importer, imported=imported))
            + ")"
            for importer, imported in sorted(pairs)
        )

    def report(title: str, edges: Mapping[str, Iterable[str]], unit: dict[str, str]) -> list[str]:
        found = []
        for component in strongly_connected(edges):
            cycle = ring(edges, component)
            steps = [
                f"    {a} -> {b}: " + evidence((m, i) for m in modules if unit.get(m) == a
                                               for i in imports[m] if unit.get(i) == b)
                for a, b in itertools.pairwise(cycle)
            ]
            rest = sorted(set(component) - set(cycle))
            also = f" (and {', '.join(rest)} on other cycles through them)" if rest else ""
            found.append(f"{title}: {' -> '.join(cycle)}{also}\n" + "\n".join(steps))
        return found

    cycles = report("modules", imports, {m: m for m in modules})
    for parent in (m for m in modules if graph.find_children(m)):
        depth = parent.count(".") + 2
        children = graph.find_children(parent)
        unit = {m: ".".join(m.split(".")[:depth]) for m in modules if ".".join(m.split(".")[:depth]) in children}
        edges: dict[str, set[str]] = {child: set() for child in children}
        for module, child in unit.items():
            edges[child] |= {unit[i] for i in imports[module] if i in unit and unit[i] != child}
        cycles += report(f"packages in {parent}", edges, unit)
    return cycles


def test_strongly_connected_finds_each_cycle_once() -> None:
    edges = {"a": ["b"], "b": ["c", "a"], "c": [], "d": ["d"], "e": ["f"], "f": ["g"], "g": ["e", "f"]}
    assert strongly_connected(edges) == [["a", "b"], ["d"], ["e", "f", "g"]]
    assert ring(edges, ["e", "f", "g"]) == ["e", "f", "g", "e"]
    assert ring(edges, ["d"]) == ["d", "d"]


def test_no_import_cycles() -> None:
    cycles = import_cycles()
    if cycles:
        pytest.fail("import cycles (imports inside functions count):\n" + "\n".join(cycles), pytrace=False)


# -- types --------------------------------------------------------------------------------------------

def test_types_check() -> None:
    pytest.importorskip("mypy", reason='the type check needs mypy: pip install -e ".[test]"')
    # The cache in the project's .mypy_cache (mypy's default) keeps a re-run to a few seconds.
    result = run_tool(["-m", "mypy", "--config-file", str(PYPROJECT), "--cache-dir", str(ROOT / ".mypy_cache")],
                      SRC)
    if result.returncode != 0:
        pytest.fail("mypy (pyproject.toml [tool.mypy]) reports:\n" + result.stdout + result.stderr, pytrace=False)


# -- the linter catches a broken import ----------------------------------------------------------------

def package_copy(tmp_path: Path) -> Path:
    """A copy of ``src/mixq`` under ``tmp_path/src`` (returned), to break on purpose."""
    shutil.copytree(SRC / "mixq", tmp_path / "src" / "mixq", ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path / "src"


BROKEN_IMPORTS = {
    "core-framework-free": ("core/precision.py", "import torch", "mixq.core.precision -> torch"),
    "layers": ("core/graph.py", "from mixq.api import search", "mixq.core.graph -> mixq.api"),
    "backends-through-registry": ("report/analysis.py", "from mixq.backends.torch.trace import capture",
                                  "mixq.report.analysis -> mixq.backends.torch.trace"),
    "frameworks-in-backends": ("plan.py", "import onnx", "mixq.plan -> onnx"),
}


@pytest.mark.parametrize("contract", sorted(BROKEN_IMPORTS))
def test_linter_catches_a_broken_import(tmp_path: Path, contract: str) -> None:
    module, line, violation = BROKEN_IMPORTS[contract]
    src = package_copy(tmp_path)
    before = lint_imports(src, [contract], cwd=tmp_path)
    assert violation not in before.stdout, before.stdout

    path = src / "mixq" / module
    text = path.read_text()
    path.write_text(text.replace("from __future__ import annotations\n",
                                 f"from __future__ import annotations\n\n{line}\n", 1))
    after = lint_imports(src, [contract], cwd=tmp_path)

    assert after.returncode == 1, after.stdout + after.stderr
    report = broken_section(after.stdout)
    name = re.search(r'^id = "' + re.escape(contract) + r'"\nname = "([^"]+)"', PYPROJECT.read_text(), re.MULTILINE)
    assert name is not None, f"no contract {contract!r} in pyproject.toml"
    assert " ".join(name.group(1).split())[:40] in " ".join(report.split()), report
    assert violation in report, report
