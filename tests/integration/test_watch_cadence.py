"""Beat's ``watch_due``: an environment's watched rotations share one look per poll."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest

from worker.runtime import Runtime
from worker.scheduling.beat import watch_due

pytestmark = pytest.mark.integration


class SentTasks:
    """Stands in for the Celery app: records what beat would send."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, list[Any]]] = []

    def send_task(self, name: str, args: list[Any]) -> None:
        self.sent.append((name, args))


def _watched(runtime: Runtime, environment_id: str, next_look: float) -> str:
    claim = runtime.store.claim(str(uuid.uuid4()), trigger="operator")
    record = runtime.store.record(claim.rotation_id)
    assert record is not None
    runtime.store.write(record, environment_id=environment_id, status="watching")
    runtime.watch.add(claim.rotation_id, next_look)
    return claim.rotation_id


def test_rotations_due_within_the_next_poll_come_along(runtime: Runtime) -> None:
    """Switches spread over a minute still cost one search per environment and poll."""
    poll = runtime.settings.verify.poll_seconds
    now = time.time()
    due = _watched(runtime, "env-a", now - 1)
    soon = _watched(runtime, "env-a", now + poll / 2)
    other_env = _watched(runtime, "env-b", now + poll / 3)
    later = _watched(runtime, "env-a", now + 2 * poll)
    app = SentTasks()

    watch_due(app, runtime)  # type: ignore[arg-type]

    sent = {args[0]: set(args[1]) for name, args in app.sent if name == "watch_environment"}
    assert sent == {"env-a": {due, soon}, "env-b": {other_env}}
    assert later not in {r for ids in sent.values() for r in ids}


def test_nothing_is_sent_while_nothing_is_due(runtime: Runtime) -> None:
    poll = runtime.settings.verify.poll_seconds
    _watched(runtime, "env-a", time.time() + poll / 2)
    app = SentTasks()
    watch_due(app, runtime)  # type: ignore[arg-type]
    assert app.sent == []
