"""Logs: JSON lines of a rotation carry its ids, and no secret ever reaches a log."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from typing import Any

import pytest

from devstack.stack import Child, LocalStack
from worker.logging import REDACTED, redact_secrets

pytestmark = pytest.mark.integration

OUR_LOGGERS = ("worker.", "tasks.")


def _json_lines(text: str) -> list[dict[str, Any]]:
    lines = []
    for raw in text.splitlines():
        if raw.startswith("{"):
            try:
                lines.append(json.loads(raw))
            except ValueError:
                continue
    return lines


def _task_lines(lines: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Lines between each rotate_destination 'received' and its end, per task run."""
    runs: list[list[dict[str, Any]]] = []
    current: list[dict[str, Any]] | None = None
    for line in lines:
        event = str(line.get("event", ""))
        if event.startswith("Task rotate_destination[") and event.endswith("received"):
            current = []
            runs.append(current)
        elif event.startswith("Task rotate_destination[") and current is not None:
            current = None
        elif current is not None:
            current.append(line)
    return runs


@pytest.fixture(scope="module")
def stack() -> Iterator[LocalStack]:
    with LocalStack(
        env={"ROTATOR_LOG_FORMAT": "json", "ROTATOR_VERIFY__WATCH_SECONDS": "0"}
    ) as local:
        yield local


def test_rotation_log_lines_carry_ids_and_no_secret(stack: LocalStack) -> None:
    stack.start_redis()
    control = stack.start_sandbox("--idp", "okta", seed=2)
    ok, refused = (str(d["id"]) for d in control.state()["destinations"])
    control.patch_faults(permanent={refused: 403}, permanent_methods={refused: ["PATCH"]})
    worker: Child = stack.start_worker("log1", concurrency=1)
    assert stack.rotator("rotate", ok, "--wait").returncode == 0
    assert stack.rotator("rotate", refused, "--wait").returncode == 1
    stack.wait_for_log(worker, "rotation finished", timeout=30)

    text = worker.log_text()
    runs = _task_lines(_json_lines(text))
    assert len(runs) == 2, text[-2000:]
    ours = [
        line for run in runs for line in run if str(line.get("logger", "")).startswith(OUR_LOGGERS)
    ]
    events = {str(line["event"]) for line in ours}
    assert {"rotation started", "rotation finished"} <= events
    assert any(line.get("level") == "warning" for line in ours), "the refused run logs a warning"
    missing = [
        line for line in ours if not line.get("rotation_id") or not line.get("destination_id")
    ]
    assert missing == []
    assert {line["destination_id"] for line in ours} == {ok, refused}

    secret_values = [
        value
        for group in control.secrets().values()
        for value in (group.values() if isinstance(group, dict) else [group])
        if isinstance(value, str) and len(value) >= 8
    ]
    assert secret_values, "the sandbox holds secrets to look for"
    leaked = [value[:6] for value in secret_values if value in text]
    assert leaked == []


def test_redactor_masks_secret_shaped_values() -> None:
    event = redact_secrets(
        None,
        "info",
        {
            "event": "calling redox with Authorization: Bearer abcdefghijklmnop123",
            "password": "hunter2hunter2",
            "detail": "client_secret=s3cr3t-value-123&x=1",
            "jwt": "eyJhbGciOiJSUzM4NCJ9.eyJpc3MiOiJ4In0.c2lnbmF0dXJl",
            "credential_id": "3193163f-2bdf-4483-bd4a-2cd7f0b8dd62",
        },
    )
    flat = json.dumps(event)
    for secret in ("abcdefghijklmnop123", "hunter2hunter2", "s3cr3t-value-123", "eyJpc3MiOiJ4In0"):
        assert secret not in flat
    assert event["password"] == REDACTED
    assert event["credential_id"] == "3193163f-2bdf-4483-bd4a-2cd7f0b8dd62"  # ids stay readable


def test_configured_logger_redacts_a_secret_logged_by_mistake() -> None:
    script = textwrap.dedent(
        """
        from worker.logging import bind_rotation, configure_logging, get_logger
        configure_logging("json", "INFO")
        log = get_logger("worker.example")
        with bind_rotation("rot-1", "dest-1"):
            log.info("oops", reply='{"access_token": "tok-abcdef-123456"}', secret="plain-s3cret")
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    lines = _json_lines(result.stderr)
    assert len(lines) == 1, result.stderr
    line = lines[0]
    assert line["rotation_id"] == "rot-1" and line["destination_id"] == "dest-1"
    assert "tok-abcdef-123456" not in result.stderr
    assert "plain-s3cret" not in result.stderr


def test_console_format_is_readable_not_json() -> None:
    script = textwrap.dedent(
        """
        from worker.logging import configure_logging, get_logger
        configure_logging("console", "INFO")
        get_logger("worker.example").info("hello operator", destination_id="d-1")
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    assert "hello operator" in result.stderr
    assert "destination_id=d-1" in result.stderr
    assert _json_lines(result.stderr) == []
