"""The project's import graph: no cycles, no back edges between packages or layers.

Every import counts, also those inside functions and ``TYPE_CHECKING`` blocks:
a lazy import still couples two modules, it only hides the cost.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

PACKAGES = (
    "inventory",
    "testbed",
    "strategies",
    "instrumentation",
    "analysis",
    "workloads",
)

# Which top-level packages each may import (besides itself). Data flows
# inventory -> testbed -> instrumentation -> analysis; strategies and
# workloads are what the measured Flower app runs.
ALLOWED_PACKAGE_EDGES: Mapping[str, frozenset[str]] = {
    "testbed": frozenset(PACKAGES),
    "analysis": frozenset({"instrumentation", "inventory"}),
    "instrumentation": frozenset({"inventory"}),
    "strategies": frozenset({"workloads", "instrumentation"}),
    "workloads": frozenset(),
    "inventory": frozenset(),
}

# testbed's subpackages, highest first: a module may import its own layer and
# the layers below it, never one above.
TESTBED_LAYERS = (
    "cli",
    "campaign",
    "lab",
    "emulation",
    "transport",
    "commands",
    "launch",
)

# Packages whose modules must stay under MAX_MODULE_LINES (issue 14).
LINE_LIMITED_PACKAGES = ("inventory", "testbed", "analysis")
MAX_MODULE_LINES = 650

Graph = Mapping[str, frozenset[str]]


def module_name(root: Path, path: Path) -> str:
    """``testbed/lab/check.py`` -> ``testbed.lab.check``; a package is its folder."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _absolute(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    """The absolute module an ``ImportFrom`` names, relative levels resolved."""
    if node.level == 0:
        return node.module or ""
    base = module.split(".")
    if not is_package:
        base.pop()
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _imported(tree: ast.AST, module: str, is_package: bool) -> Iterable[str]:
    """Every module name an import in ``tree`` could mean, innermost first."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            source = _absolute(module, is_package, node)
            for alias in node.names:
                yield f"{source}.{alias.name}"
            yield source


def _owner(name: str, modules: frozenset[str]) -> str | None:
    """The project module ``name`` is, or lives in (``a.b.func`` -> ``a.b``)."""
    parts = name.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in modules:
            return candidate
        parts.pop()
    return None


def import_graph(root: Path, packages: Iterable[str]) -> dict[str, frozenset[str]]:
    """Module -> the project modules it imports, read with ``ast``."""
    files = {
        module_name(root, p): p
        for package in packages
        for p in sorted((root / package).rglob("*.py"))
    }
    modules = frozenset(files)
    graph: dict[str, frozenset[str]] = {}
    for module, path in files.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        is_package = path.name == "__init__.py"
        targets = set()
        for name in _imported(tree, module, is_package):
            owner = _owner(name, modules)
            if owner is not None and owner != module:
                targets.add(owner)
        graph[module] = frozenset(targets)
    return graph


def cycles(graph: Graph) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def package_back_edges(
    graph: Graph, allowed: Mapping[str, frozenset[str]]
) -> list[tuple[str, str]]:
    """Imports from one top-level package into one it may not import."""
    bad = []
    for source, targets in sorted(graph.items()):
        top = source.split(".")[0]
        for target in sorted(targets):
            other = target.split(".")[0]
            if other != top and other not in allowed.get(top, frozenset()):
                bad.append((source, target))
    return bad


def layer_back_edges(
    graph: Graph, package: str, layers: tuple[str, ...]
) -> list[tuple[str, str]]:
    """Imports inside ``package`` from a lower layer into a higher one; a module
    directly in ``package`` (or in no layer) counts as the lowest layer."""

    def rank(module: str) -> int:
        parts = module.split(".")
        if parts[0] != package or len(parts) < 2 or parts[1] not in layers:
            return len(layers)
        return layers.index(parts[1])

    bad = []
    for source, targets in sorted(graph.items()):
        if source.split(".")[0] != package:
            continue
        for target in sorted(targets):
            if target.split(".")[0] == package and rank(target) < rank(source):
                bad.append((source, target))
    return bad


@pytest.fixture(scope="module")
def graph() -> dict[str, frozenset[str]]:
    return import_graph(REPO, PACKAGES)


def test_the_graph_sees_the_project(graph: Graph) -> None:
    # A checker that reads nothing would pass everything.
    assert len(graph) > 50
    assert "testbed.campaign.model" in graph
    assert any(t.startswith("testbed.transport") for t in graph["testbed.lab.check"])


def test_no_import_cycles(graph: Graph) -> None:
    assert cycles(graph) == []


def test_packages_import_downstream_only(graph: Graph) -> None:
    assert package_back_edges(graph, ALLOWED_PACKAGE_EDGES) == []


def test_the_table_keeps_the_issue_rules() -> None:
    # Loosening ALLOWED_PACKAGE_EDGES must not quietly allow these (STYLE.md).
    into_testbed = [p for p, a in ALLOWED_PACKAGE_EDGES.items() if "testbed" in a]
    assert into_testbed == ["testbed"]
    assert not {"testbed", "analysis"} & ALLOWED_PACKAGE_EDGES["strategies"]
    assert not ALLOWED_PACKAGE_EDGES["inventory"] | ALLOWED_PACKAGE_EDGES["workloads"]


def test_testbed_layers_import_downward_only(graph: Graph) -> None:
    assert layer_back_edges(graph, "testbed", TESTBED_LAYERS) == []


def test_testbed_modules_all_sit_in_a_layer(graph: Graph) -> None:
    loose = [
        m
        for m in graph
        if m.startswith("testbed.") and m.split(".")[1] not in TESTBED_LAYERS
    ]
    assert loose == []


def test_checker_reports_a_cycle_and_back_edges(tmp_path: Path) -> None:
    # Prepare: a tiny project with a cycle (a <-> b, one import in a function,
    # one relative under TYPE_CHECKING), a package back edge (low -> top) and a
    # layer back edge (top.low.x -> top.high.y).
    files = {
        "top/__init__.py": "",
        "top/high/__init__.py": "",
        "top/high/y.py": "from top.low import x\n",
        "top/low/__init__.py": "",
        "top/low/x.py": "import top.high.y\n",
        "top/low/a.py": "def f():\n    from top.low.b import g\n",
        "top/low/b.py": (
            "from typing import TYPE_CHECKING\n"
            "if TYPE_CHECKING:\n    from .a import f\n"
        ),
        "low/__init__.py": "",
        "low/m.py": "from top.low.a import f\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)

    # Execute
    graph = import_graph(tmp_path, ("top", "low"))

    # Assert
    assert sorted(cycles(graph)) == [
        ["top.high.y", "top.low.x"],
        ["top.low.a", "top.low.b"],
    ]
    allowed = {"top": frozenset({"low"}), "low": frozenset()}
    assert package_back_edges(graph, allowed) == [("low.m", "top.low.a")]
    assert layer_back_edges(graph, "top", ("high", "low")) == [
        ("top.low.x", "top.high.y")
    ]


def test_checker_passes_a_clean_graph() -> None:
    graph = {"p.high.a": frozenset({"p.low.b"}), "p.low.b": frozenset()}
    assert cycles(graph) == []
    assert layer_back_edges(graph, "p", ("high", "low")) == []


def module_lengths(root: Path, packages: Iterable[str]) -> dict[str, int]:
    """Lines of every module in ``packages``."""
    return {
        str(p.relative_to(root)): len(p.read_text().splitlines())
        for package in packages
        for p in sorted((root / package).rglob("*.py"))
    }


def test_no_module_over_the_line_limit() -> None:
    lengths = module_lengths(REPO, LINE_LIMITED_PACKAGES)
    assert lengths, "no modules found: the check would pass vacuously"
    too_long = {p: n for p, n in lengths.items() if n > MAX_MODULE_LINES}
    assert too_long == {}
