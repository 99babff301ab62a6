""".ci/run and scripts/: valid bash that runs the README commands and fails when no test ran."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = [ROOT / ".ci" / "run", ROOT / "scripts" / "check", ROOT / "scripts" / "test"]
BASH = shutil.which("bash")

pytestmark = pytest.mark.skipif(BASH is None, reason="bash is not installed")


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_script_is_valid_strict_bash(script: Path) -> None:
    assert BASH
    result = subprocess.run(
        [BASH, "-n", str(script)], capture_output=True, text=True, timeout=30, check=False
    )
    assert result.returncode == 0, result.stderr
    text = script.read_text(encoding="utf-8")
    assert text.startswith("#!/usr/bin/env bash\n")
    assert "set -euo pipefail" in text or "set -uo pipefail" in text


def test_ci_runs_the_readme_commands_and_the_checks() -> None:
    text = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "python3 -m venv .venv" in text
    assert '\nif ! pip install -e ".[dev]" ' in text
    assert "bash scripts/check" in text
    assert " pytest 2>&1 | tee " in text
    # pytest exit 5 (nothing collected) and a run where nothing passed both fail CI.
    assert "5)" in text
    assert "no passed test" in text


def test_check_runs_ruff_lint_format_and_mypy() -> None:
    text = (ROOT / "scripts" / "check").read_text(encoding="utf-8")
    assert 'ruff" check .' in text
    assert 'ruff" format --check .' in text
    assert 'mypy"' in text


def test_scripts_test_passes_arguments_to_pytest(tmp_path: Path) -> None:
    # A stand-in repository whose .venv/bin/pytest echoes its arguments.
    repo = tmp_path / "repo"
    (repo / "scripts").mkdir(parents=True)
    shutil.copy(ROOT / "scripts" / "test", repo / "scripts" / "test")
    fake = repo / ".venv" / "bin"
    fake.mkdir(parents=True)
    (fake / "python").write_text("#!/bin/sh\n")
    (fake / "python").chmod(0o755)
    (fake / "pytest").write_text('#!/bin/sh\necho "pytest $*"\n')
    (fake / "pytest").chmod(0o755)
    assert BASH
    result = subprocess.run(
        [BASH, str(repo / "scripts" / "test"), "tests/ops", "-q", "-k", "a b"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "pytest tests/ops -q -k a b"
