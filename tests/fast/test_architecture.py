"""The package layout holds (docs/harness.md#package-layout): ``benchmark`` is split by stage,
each stage imports only the stages below it, no ``benchmark`` modules import each other in a
cycle, ``samplers`` and ``targets`` never import ``benchmark``, and the commands that only read
a store (``table``, ``compare``, ``--help``) never load torch.

The import graph is read from the source with :mod:`ast`: every ``import`` statement counts,
at module level, inside functions and under ``if TYPE_CHECKING`` alike, so an import moved into
a function to dodge a cycle is still seen. Each failure names the file, line and import.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("benchmark", "samplers", "targets")

#: Which areas of ``benchmark`` each area may import (besides itself). The stage order is
#: report -> run -> plan -> schema/store: a stage imports only what is below it, reporting
#: only the torch-free modules below it. The command line and the tools may import anything.
STAGE_RULES: dict[str, frozenset[str]] = {
    "schema": frozenset(),
    "store": frozenset({"schema"}),
    "metrics.info": frozenset(),
    "metrics": frozenset({"schema", "metrics.info", "fid"}),
    "fid": frozenset({"schema"}),
    "plan.plugins": frozenset(),
    "plan": frozenset({"schema", "store", "metrics.info", "plan.plugins"}),
    "run": frozenset({"schema", "store", "metrics.info", "metrics", "fid", "plan",
                      "plan.plugins"}),
    "report": frozenset({"schema", "store", "metrics.info", "plan.plugins"}),
}
ANYTHING = frozenset({"cli", "tools"})

#: Modules that must import without torch: what ``table``, ``compare`` and ``--help`` load.
TORCH_FREE = ("benchmark.cli", "benchmark.fid.cli", "benchmark.schema", "benchmark.store",
              "benchmark.metrics.info", "benchmark.plan.plugins", "benchmark.report.tables",
              "benchmark.report.compare", "benchmark.report.claims")


def area(module: str) -> str:
    """The area of a ``benchmark`` module: a key of :data:`STAGE_RULES` or of
    :data:`ANYTHING`."""
    if module in ("benchmark.cli", "benchmark.__main__", "benchmark.fid.cli"):
        return "cli"
    if module in ("benchmark.metrics.info", "benchmark.plan.plugins"):
        return module.removeprefix("benchmark.")
    parts = module.split(".")
    if len(parts) < 2:
        return "package"
    return parts[1]


@dataclass(frozen=True)
class Import:
    """One import statement's edge: ``source`` imports ``target`` at ``path:line``."""

    source: str
    target: str
    path: Path
    line: int
    module_level: bool  # executed when ``source`` is imported (not in a function or TYPE_CHECKING)

    def __str__(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line} imports {self.target}"


def module_files() -> dict[str, Path]:
    """Every module of the three packages: dotted name -> file."""
    modules = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join(parts)] = path
    return modules


MODULES = module_files()


def _resolve(name: str) -> str | None:
    """The deepest known module that ``name`` (a module or ``module.attribute``) names."""
    while name:
        if name in MODULES:
            return name
        name = name.rpartition(".")[0]
    return None


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _walk(node: ast.AST, module_level: bool) -> Iterator[tuple[ast.AST, bool]]:
    """Every import node under ``node``, with whether it runs when the module is imported."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.Import | ast.ImportFrom):
            yield child, module_level
        elif isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            yield from _walk(child, False)
        elif isinstance(child, ast.If) and _is_type_checking(child):
            for statement in child.body:
                yield from _walk(ast.Module(body=[statement], type_ignores=[]), False)
            for statement in child.orelse:
                yield from _walk(ast.Module(body=[statement], type_ignores=[]), module_level)
        else:
            yield from _walk(child, module_level)


def imports_of(module: str) -> list[Import]:
    """The imports of ``module``: first-party targets by module name, others by top package."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    edges = []
    for node, module_level in _walk(ast.parse(path.read_text(), str(path)), True):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            names = [f"{base}.{alias.name}" if _resolve(f"{base}.{alias.name}")
                     == f"{base}.{alias.name}" else base for alias in node.names]
        for name in dict.fromkeys(names):
            target = _resolve(name) or name.split(".")[0]
            edges.append(Import(module, target, path, node.lineno, module_level))
    return edges


GRAPH = {module: imports_of(module) for module in MODULES}


def test_the_graph_sees_the_packages():
    assert {"benchmark.cli", "benchmark.schema", "benchmark.store", "benchmark.plan.plan",
            "benchmark.run.runner", "benchmark.report.tables", "samplers", "targets"} <= set(GRAPH)
    assert any(edge.target == "benchmark.plan.plan" for edge in GRAPH["benchmark.cli"])


def test_package_init_files_import_nothing():
    # Importing benchmark.x.y runs benchmark/__init__.py and benchmark/x/__init__.py first, so
    # an import there would reach every module below it (and torch) from any submodule.
    offending = [str(edge) for module, edges in GRAPH.items()
                 if module.startswith("benchmark") and MODULES[module].name == "__init__.py"
                 for edge in edges if edge.target != "__future__"]
    assert not offending, "package __init__ files must hold a docstring only:\n" + "\n".join(
        offending)


def test_samplers_and_targets_never_import_benchmark():
    offending = [str(edge) for module, edges in GRAPH.items()
                 if not module.startswith("benchmark")
                 for edge in edges if edge.target.split(".")[0] == "benchmark"]
    assert not offending, "samplers and targets must not import benchmark:\n" + "\n".join(
        offending)


def test_stages_import_only_what_is_below_them():
    offending = []
    for module, edges in GRAPH.items():
        if not module.startswith("benchmark") or area(module) in ANYTHING:
            continue
        source = area(module)
        allowed = STAGE_RULES.get(source, frozenset())
        for edge in edges:
            if not edge.target.startswith("benchmark"):
                continue
            target = area(edge.target)
            if target != source and target not in allowed:
                offending.append(f"{edge} ({source} -> {target}; {source} may import "
                                 f"{', '.join(sorted(allowed)) or 'no other area'})")
    assert not offending, "imports against the stage order:\n" + "\n".join(offending)


def _cycle(graph: dict[str, list[Import]]) -> list[Import] | None:
    """One import cycle among ``graph``'s modules, as its edges in order, or None."""
    done: set[str] = set()
    stack: list[str] = []  # modules on the current path
    path: list[Import] = []  # path[i] leads from stack[i] to stack[i + 1]

    def visit(module: str) -> list[Import] | None:
        stack.append(module)
        for edge in graph[module]:
            if edge.target not in graph or edge.target == module:
                continue
            if edge.target in stack:
                return [*path[stack.index(edge.target):], edge]
            if edge.target in done:
                continue
            path.append(edge)
            found = visit(edge.target)
            if found:
                return found
            path.pop()
        stack.pop()
        done.add(module)
        return None

    for module in sorted(graph):
        if module not in done:
            found = visit(module)
            if found:
                return found
    return None


def test_no_import_cycles_among_benchmark_modules():
    graph = {module: edges for module, edges in GRAPH.items() if module.startswith("benchmark")}
    cycle = _cycle(graph)
    assert cycle is None, "import cycle:\n" + "\n".join(str(edge) for edge in cycle)


def test_the_cycle_finder_finds_a_cycle():
    here = Path(__file__)
    edges = {"a": [Import("a", "b", here, 1, True)], "b": [Import("b", "c", here, 2, False)],
             "c": [Import("c", "a", here, 3, True)]}
    assert [edge.target for edge in _cycle(edges)] == ["b", "c", "a"]
    assert _cycle({"a": [Import("a", "b", here, 1, True)], "b": []}) is None


def _parents(module: str) -> list[str]:
    """The packages Python imports before ``module``: ``a``, ``a.b`` for ``a.b.c``."""
    parts = module.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


@pytest.mark.parametrize("module", TORCH_FREE)
def test_store_readers_import_no_torch(module):
    """Importing ``module`` (its module-level imports, transitively, parent packages included)
    reaches no torch; the failure names the chain of imports that does."""
    chains: dict[str, list[str]] = {module: [module]}
    queue = [module]
    while queue:
        current = queue.pop(0)
        edges = [Import(current, parent, MODULES[current], 0, True)
                 for parent in _parents(current) if parent in MODULES]
        edges += [edge for edge in GRAPH.get(current, []) if edge.module_level]
        for edge in edges:
            if edge.target in chains:
                continue
            chains[edge.target] = [*chains[current], str(edge)]
            if edge.target.split(".")[0] == "torch":
                pytest.fail(f"{module} loads torch when imported: "
                            + " -> ".join(chains[edge.target]))
            if edge.target in GRAPH:
                queue.append(edge.target)


def _imported_modules(importtime: str) -> set[str]:
    """Module names of ``python -X importtime`` output (stderr)."""
    return {line.rsplit("|", 1)[1].strip() for line in importtime.splitlines()
            if line.startswith("import time:") and line.count("|") == 2}


@pytest.fixture(scope="module")
def tiny_store(tmp_path_factory) -> Path:
    store = tmp_path_factory.mktemp("store") / "ci-tiny"
    for part in ("cells", "plan", "history"):
        if (ROOT / "results" / "ci-tiny" / part).is_dir():
            shutil.copytree(ROOT / "results" / "ci-tiny" / part, store / part)
    return store


@pytest.mark.parametrize("command", ["table", "compare", "claim", "--help"])
def test_commands_that_read_a_store_start_without_torch(command, tiny_store):
    arguments = {"table": [str(tiny_store)], "compare": [str(tiny_store), str(tiny_store)],
                 "claim": [str(tiny_store), "dft_ns_tiny@1", "svgd@10"], "--help": []}[command]
    result = subprocess.run([sys.executable, "-X", "importtime", "-m", "benchmark", command,
                             *arguments], cwd=tiny_store.parent, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    modules = _imported_modules(result.stderr)
    assert "benchmark.cli" in modules  # the output was parsed
    loaded = sorted(name for name in modules
                    if name.split(".")[0] in ("torch", "matplotlib"))
    assert not loaded, f"`python -m benchmark {command}` imported {', '.join(loaded[:5])}"
    if command == "table":
        assert (tiny_store / "tables" / "ksd.md").exists()
