"""No package cycle: the import graph between medsight's packages (and top-level modules) is acyclic, so
deploy/ and robustness/ are libraries under the task families, and config.py imports no robustness."""

from __future__ import annotations

import ast
from pathlib import Path

import medsight

PACKAGE = Path(medsight.__file__).parent


def _unit(module: str) -> str:
    """The package (or top-level module) a dotted medsight module belongs to: medsight.deploy.x -> deploy."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "medsight"


def _runtime_imports(tree: ast.AST) -> list[str]:
    """medsight modules imported at run time (imports under ``if TYPE_CHECKING:`` are for types only)."""
    typing_only = {
        id(n)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING"
        for n in ast.walk(node)
    }
    found = []
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("medsight"):
            found.append(node.module)
        elif isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.startswith("medsight")]
    return found


def import_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        source = _unit(".".join(("medsight", *path.relative_to(PACKAGE).with_suffix("").parts)))
        for module in _runtime_imports(ast.parse(path.read_text(encoding="utf-8"))):
            if _unit(module) != source:
                graph.setdefault(source, set()).add(_unit(module))
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a path [a, b, ..., a], or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt] if nxt in path else [node, nxt]
            if nxt not in state and (cycle := visit(nxt, [*path, nxt])):
                return cycle
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start, [start])):
            return cycle
    return None


def test_find_cycle_finds_one() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}}) is None


def test_packages_import_each_other_without_a_cycle() -> None:
    graph = import_graph()
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph) or [])
    assert "robustness" not in graph["config"]
    assert "tasks" not in graph["engine"] and "tasks" not in graph.get("deploy", set())
