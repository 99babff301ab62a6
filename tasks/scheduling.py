"""``enqueue_due``: claim the rotations that fell due and send them (a thin shell).

Beat runs the same function in its own process every tick (no message per tick, see
:mod:`worker.scheduling.beat`); the task exists for a manual nudge from Flower's API.
"""

from __future__ import annotations

from typing import Any

from celery import Task, shared_task

from worker.celery_app import runtime_for
from worker.scheduling.enqueue import enqueue_due_once

__all__ = ["enqueue_due"]


@shared_task(bind=True, name="enqueue_due", acks_late=True, ignore_result=True)  # type: ignore[untyped-decorator]
def enqueue_due(self: Task) -> dict[str, Any]:
    """Claim the due destinations and trigger a rotation for each."""
    runtime = runtime_for(self.app)
    return enqueue_due_once(self.app, runtime, batch_size=runtime.settings.scheduler.batch_size)
