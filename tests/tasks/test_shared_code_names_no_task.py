"""Shared code reaches a task family only through the registry and the contract: no module outside
``medsight/tasks/`` imports a family's modules or compares against a family's name, and the engine
imports nothing from ``medsight.tasks``."""

from __future__ import annotations

import ast
from pathlib import Path

import medsight
from medsight.task_registry import task_names

PACKAGE = Path(medsight.__file__).parent
# a family's own modules in the shared packages (its transform preset): they may name their family's plan
FAMILY_MODULES = {"transforms/segmentation.py", "transforms/classification.py"}


def shared_modules() -> list[Path]:
    return [
        p
        for p in sorted(PACKAGE.rglob("*.py"))
        if "tasks" not in p.relative_to(PACKAGE).parts and str(p.relative_to(PACKAGE)) not in FAMILY_MODULES
    ]


def imported_modules(tree: ast.AST) -> list[str]:
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.append(node.module)
        elif isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
    return names


def test_no_shared_module_names_a_task() -> None:
    families = set(task_names())
    found = []
    for path in shared_modules():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for module in imported_modules(tree):
            parts = module.split(".")
            if parts[:2] == ["medsight", "tasks"] and len(parts) > 2 and parts[2] in families:
                found.append(f"{path.relative_to(PACKAGE)} imports {module}")
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in families:
                found.append(f"{path.relative_to(PACKAGE)}:{node.lineno} names {node.value!r}")
    assert not found, "\n".join(found)


def test_the_engine_imports_nothing_from_tasks() -> None:
    for path in sorted((PACKAGE / "engine").rglob("*.py")):
        modules = imported_modules(ast.parse(path.read_text(encoding="utf-8")))
        assert not [m for m in modules if m.startswith("medsight.tasks")], path.name
