"""The three floors of docs/architecture.md: app/ over engine/ over puzzles/, nothing imports upwards."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ABOVE = {"puzzles": ("engine", "app"), "engine": ("app",)}


def imported_packages(path: Path) -> set[str]:
    """The top-level package of every absolute import in a file (in functions too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize("floor", sorted(ABOVE))
def test_no_floor_imports_a_floor_above_it(floor: str) -> None:
    upward = {str(path.relative_to(ROOT)): sorted(imported_packages(path) & set(ABOVE[floor]))
              for path in sorted((ROOT / floor).rglob("*.py"))}
    assert {name: packages for name, packages in upward.items() if packages} == {}


def test_the_check_sees_an_import_inside_a_function(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from app import prompts\n    import engine.serving.runtime\n")
    assert imported_packages(module) == {"app", "engine"}
