"""The packages split by concern keep their imports flowing one way (issue 9.3).

`vmrpc.sockets` and `vmrpc.linux` are split into one module per concern, each
importing only modules below it (the layers are drawn in ``sockets/dispatch.py`` and
docs/design.md). A module-level import cycle among them would make that order a lie
(and, with mixins, an import error waiting for the right import order), so this test
reads every module's top-level imports and looks for one.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import vmrpc

PACKAGE_DIR = Path(vmrpc.__file__).resolve().parent


def imports_within(package: str) -> dict[str, set[str]]:
    """Module -> the modules of ``package`` it imports at module level."""
    directory = PACKAGE_DIR / package.removeprefix("vmrpc.").replace(".", "/")
    modules = {p.stem for p in directory.glob("*.py") if p.stem != "__init__"}
    graph: dict[str, set[str]] = {}
    for name in modules:
        tree = ast.parse((directory / f"{name}.py").read_text())
        found: set[str] = set()
        for node in tree.body:  # module level only: lazy imports cannot cycle at import
            if isinstance(node, ast.ImportFrom) and node.module:
                if node.module == package:
                    found |= {a.name for a in node.names if a.name in modules}
                elif node.module.startswith(package + "."):
                    found.add(node.module.removeprefix(package + ".").split(".")[0])
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.startswith(package + "."):
                        found.add(alias.name.removeprefix(package + ".").split(".")[0])
        graph[name] = found - {name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph`` as a path (first == last), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                return [*path[path.index(target) :], target]
            if target not in state and (cycle := visit(target)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


@pytest.mark.parametrize("package", ["vmrpc.sockets", "vmrpc.linux"])
def test_no_import_cycle_within_the_package(package: str) -> None:
    graph = imports_within(package)
    assert len(graph) > 5, graph  # the package was found and read
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph) or [])


def test_the_sockets_layers_are_those_drawn_in_dispatch() -> None:
    """Each layer of the socket module imports only layers below it."""
    layers = [
        {"module"},
        {"control", "connect", "options", "poll", "dataplane"},
        {"waiting"},
        {"audit"},
        {"table"},
        {"dispatch"},
        {"dns", "socks5", "proto", "policy", "fdbudget", "optnames"},
    ]
    rank = {name: i for i, layer in enumerate(layers) for name in layer}
    graph = imports_within("vmrpc.sockets")
    assert set(graph) == set(rank), "a module is missing from the drawing"
    upward = [f"{a} -> {b}" for a, targets in graph.items() for b in targets if rank[b] <= rank[a]]
    # Leaves (the last layer) may use one another (dns uses policy's canonicalize).
    upward = [e for e in upward if not {*e.split(" -> ")} <= layers[-1]]
    assert not upward, upward


def test_find_cycle_finds_one() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a"}}) is None
