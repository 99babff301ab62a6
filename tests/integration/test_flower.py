"""Flower with basic auth against a real worker: the rotation is listed, readable, ids only.

Runs the functions of ``scripts/flower-check`` (the script CI can run on its own). The
API checks always run; the browser check skips with a reason where Chromium is absent.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from devstack.stack import LocalStack

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "flower-check"


def _load_script() -> ModuleType:
    loader = importlib.machinery.SourceFileLoader("flower_check", str(SCRIPT))
    spec = importlib.util.spec_from_loader("flower_check", loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["flower_check"] = module  # dataclasses look their module up there
    loader.exec_module(module)
    return module


check = _load_script()


@pytest.fixture(scope="module")
def flower_run() -> Iterator[tuple[LocalStack, Any]]:
    pytest.importorskip("flower", reason="Flower is not installed (pip install -e '.[flower]')")
    with LocalStack(env={"ROTATOR_VERIFY__WATCH_SECONDS": "0"}) as stack:
        yield stack, check.start(stack)


def test_flower_api_needs_auth_and_shows_ids_only(flower_run: tuple[LocalStack, Any]) -> None:
    _, run = flower_run
    task_id = check.check_api(run)
    assert task_id


def test_flower_api_check_catches_a_leak(flower_run: tuple[LocalStack, Any]) -> None:
    _, run = flower_run
    # A value Flower does show (the destination id), treated as a secret, must be reported.
    leaky = type(run)(**{**vars(run), "secret_values": [run.destination_id]})
    with pytest.raises(check.CheckFailed, match="secret values visible"):
        check.check_api(leaky)


@pytest.mark.browser
def test_flower_tasks_page_lists_the_rotation_in_chromium(
    flower_run: tuple[LocalStack, Any],
) -> None:
    chromium = check.find_chromium()
    if chromium is None:
        pytest.skip("no Chromium on PATH (apt-get install chromium, or set CHROMIUM)")
    _, run = flower_run
    task_id = check.check_api(run)
    screenshot = ROOT / "artifacts" / "flower-tasks.png"
    screenshot.unlink(missing_ok=True)
    check.check_browser(run, task_id, chromium, screenshot)
    assert screenshot.stat().st_size > 1000
