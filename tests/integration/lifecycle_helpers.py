"""Helpers shared by the scheduling / retirement / fleet / status integration tests."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from devstack.stack import LocalStack
from sandbox.client import SandboxControl

#: Fast, small settings for every stack these tests start.
FAST_ENV = {
    "ROTATOR_RATE_LIMIT__ENABLED": "false",
    "ROTATOR_RETRY__MAX_ATTEMPTS": "2",
    "ROTATOR_RETRY__BACKOFF_INITIAL": "0.05",
    "ROTATOR_RETRY__BACKOFF_MAX": "0.2",
    "ROTATOR_RETRY__TASK_MAX_RETRIES": "1",
    "ROTATOR_RETRY__TASK_BACKOFF_INITIAL": "1",
    "ROTATOR_RETRY__TASK_BACKOFF_MAX": "2",
    "ROTATOR_VERIFY__WATCH_SECONDS": "0",
}


def write_registry(
    path: Path,
    environment_id: str,
    ids: list[str],
    *,
    interval: str = "30d",
    grace: str = "24h",
    extra: dict[str, str] | None = None,
) -> Path:
    """A registry file with one entry per id (``extra``: id -> extra TOML lines)."""
    lines = ["[defaults]", f'interval = "{interval}"', f'grace = "{grace}"', ""]
    for ident in ids:
        lines += ["[[destinations]]", f'id = "{ident}"', f'environment = "{environment_id}"']
        if extra and ident in extra:
            lines.append(extra[ident])
        lines.append("")
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def start_stack(tmp_path: Path, seed: int, env: dict[str, str] | None = None) -> LocalStack:
    """redis-server + sandbox (``seed`` destinations), not yet a worker."""
    stack = LocalStack(tmp_path / "stack", env={**FAST_ENV, **(env or {})})
    stack.start_redis()
    stack.start_sandbox("--idp", "okta", seed=seed)
    return stack


@pytest.fixture
def stack_factory(tmp_path: Path) -> Iterator[Callable[..., LocalStack]]:
    """Start a stack (closed at the end of the test)."""
    stacks: list[LocalStack] = []

    def make(seed: int, env: dict[str, str] | None = None) -> LocalStack:
        stack = start_stack(tmp_path, seed, env)
        stacks.append(stack)
        return stack

    yield make
    for stack in stacks:
        stack.close()


def control(stack: LocalStack) -> SandboxControl:
    """A control client for the stack's sandbox."""
    return SandboxControl(stack.sandbox_url)


def sandbox_ids(ctl: SandboxControl) -> tuple[str, list[str]]:
    """(environment id, destination ids in seed order)."""
    state = ctl.state()
    return state["environments"][0]["id"], [d["id"] for d in state["destinations"]]


def current_credentials(ctl: SandboxControl) -> dict[str, str]:
    """Destination id -> the credential id it uses now."""
    return {d["id"]: d["authCredential"] for d in ctl.state()["destinations"]}


def credential_ids(ctl: SandboxControl) -> set[str]:
    """Every credential that exists in the sandbox."""
    return {c["id"] for c in ctl.state()["credentials"]}


def run_json(stack: LocalStack, *args: str, code: int = 0) -> Any:
    """Run the CLI, check the exit code, parse stdout as JSON."""
    result = stack.rotator(*args)
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr[-2000:])
    return json.loads(result.stdout)


def events(stack: LocalStack) -> list[dict[str, Any]]:
    """Every event on the stream."""
    result = stack.rotator("events", "--json", "--limit", "100000")
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]


def wait_until(check: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll ``check`` until it returns something truthy (fails the test on timeout)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.3)
    pytest.fail(f"timed out after {timeout}s waiting for {what}")


def completed(result: subprocess.CompletedProcess[str]) -> str:
    """Exit code and output, for assertion messages."""
    out, err = result.stdout[-1500:], result.stderr[-1500:]
    return f"exit {result.returncode}\nstdout: {out}\nstderr: {err}"
