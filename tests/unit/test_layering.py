"""What each package may import, and that the production path reads no environment.

ARCHITECTURE.md draws the layers: ``config`` (settings, registry) at the bottom, then
``worker`` (the service) and ``tasks`` (its Celery shells); the tooling beside them
(``sandbox``: the fake Redox and IdPs; ``devstack``: the dev stack, demo, rig) may use the
service, never the other way round; ``sandbox`` stands alone, written from the vendors'
documentation, not from the service's clients.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TOOLING = {"sandbox", "devstack", "bench", "tests"}
#: package -> top-level packages of this repository it must never import.
FORBIDDEN = {
    "config": {"worker", "tasks"} | TOOLING,
    "worker": TOOLING,
    "tasks": TOOLING,
    "sandbox": {"worker", "tasks", "config", "devstack", "bench", "tests"},
}


def imported_packages(path: Path) -> set[tuple[int, str]]:
    """(line, top-level package) of every import statement in a file, nested ones too."""
    found: set[tuple[int, str]] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update((node.lineno, alias.name.split(".")[0]) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add((node.lineno, node.module.split(".")[0]))
    return found


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_imports_follow_the_layers(package: str) -> None:
    bad = [
        f"{path.relative_to(ROOT)}:{line} imports {name}"
        for path in sorted((ROOT / package).rglob("*.py"))
        for line, name in sorted(imported_packages(path))
        if name in FORBIDDEN[package]
    ]
    assert bad == []


def test_the_service_reads_no_environment_variable() -> None:
    """Settings (config/) is the one reader of the environment: no test switch can hide in
    the production path."""
    readers = [
        f"{path.relative_to(ROOT)}:{n}"
        for package in ("worker", "tasks")
        for path in sorted((ROOT / package).rglob("*.py"))
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if "os.environ" in line or "getenv(" in line
    ]
    assert readers == []


def test_the_rotator_command_reaches_the_tooling_only_lazily() -> None:
    """The forwarding commands name the tooling modules as strings, imported when run."""
    text = (ROOT / "worker" / "cli" / "tooling_cmd.py").read_text()
    assert '"sandbox.cli"' in text and '"devstack.demo.cli"' in text
    assert not {n for _, n in imported_packages(ROOT / "worker/cli/tooling_cmd.py")} & TOOLING
