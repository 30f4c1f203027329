"""The house matches its plan: every room in docs/architecture.md exists, every package is a
room there, twin/ keeps no modules of its own, and each room says what it is for."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import tomllib

from tests.helpers import ROOT

ARCHITECTURE = ROOT / "docs" / "architecture.md"
TOP_LEVEL: tuple[str, ...] = tuple(
    tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["importlinter"][
        "root_packages"
    ]
)
"""The top-level packages, as the import contracts name them."""


def _rooms_in_table() -> set[str]:
    text = ARCHITECTURE.read_text(encoding="utf-8")
    table = text.split("## The rooms", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"^\| `([a-z_/]+)/` \|", table, flags=re.M))


def _rooms_in_tree() -> set[str]:
    rooms = {name for name in TOP_LEVEL if name != "twin"}
    rooms |= {f"twin/{p.parent.name}" for p in (ROOT / "twin").glob("*/__init__.py")}
    return rooms


def test_every_room_in_the_table_exists_and_every_package_is_in_the_table() -> None:
    assert _rooms_in_table() == _rooms_in_tree()


def test_every_package_is_under_the_import_contracts() -> None:
    packages = {p.parent.name for p in ROOT.glob("*/__init__.py") if p.parent.name != "tests"}
    assert packages - {"benchmarks"} == set(TOP_LEVEL)


def test_twin_keeps_no_modules_of_its_own() -> None:
    modules = {p.name for p in (ROOT / "twin").glob("*.py")}
    assert modules == {"__init__.py", "__main__.py"}


def test_every_room_says_what_it_is_for() -> None:
    for room in _rooms_in_tree():
        init = ROOT / room / "__init__.py"
        docstring = ast.get_docstring(ast.parse(init.read_text(encoding="utf-8")))
        assert docstring and len(docstring) > 40, f"{init} has no docstring saying its job"


def test_the_import_contracts_hold() -> None:
    """`lint-imports` (the layers in pyproject.toml) passes on the tree as it is."""
    lint = ROOT / ".venv" / "bin" / "lint-imports"
    command = [str(lint)] if lint.exists() else [sys.executable, "-m", "importlinter.cli"]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout[-3000:]
    assert "0 broken" in result.stdout
