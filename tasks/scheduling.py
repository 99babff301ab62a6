"""``enqueue_due``: beat runs it every tick to start the rotations that fell due.

Claiming is atomic in Redis (a Lua script that moves each claimed entry to a lease time),
so two beat processes, or two overlapping runs, never enqueue the same destination twice;
the single-flight claim in :func:`worker.trigger.request_rotation` is the second line of
defence. Cost is O(due): one bounded ``ZRANGEBYSCORE`` plus one state read per claimed id.
"""

from __future__ import annotations

import time
from typing import Any

from celery import Celery, Task, shared_task

from worker.celery_app import runtime_for
from worker.logging import get_logger
from worker.scheduling.store import ScheduleStore
from worker.store.records import RotationStore
from worker.trigger import request_rotation

__all__ = ["CLAIM_LEASE_SECONDS", "enqueue_due", "enqueue_due_once"]

log = get_logger(__name__)

#: A claimed entry comes back after this long if nothing reschedules it (the rotation's
#: follow-up sets the real next due time when it ends).
CLAIM_LEASE_SECONDS = 3600.0
#: A destination whose task could not be sent is tried again this much later.
SEND_RETRY_SECONDS = 30.0


def enqueue_due_once(
    app: Celery,
    schedule: ScheduleStore,
    store: RotationStore,
    *,
    batch_size: int,
    now: float | None = None,
    lease_seconds: float = CLAIM_LEASE_SECONDS,
) -> dict[str, int]:
    """Claim up to ``batch_size`` due destinations and trigger a rotation for each.

    Paused and needs_attention destinations are taken off the schedule instead (resume or
    retry puts them back). Returns counts: claimed, started, inProgress, skipped, errors.
    """
    now = time.time() if now is None else now
    due = schedule.claim_due(now, batch_size, lease_seconds)
    counts = {"claimed": len(due), "started": 0, "inProgress": 0, "skipped": 0, "errors": 0}
    for destination_id in due:
        state = store.destination_state(destination_id)
        if state.get("needs_attention") or state.get("paused"):
            schedule.unschedule(destination_id)
            counts["skipped"] += 1
            continue
        try:
            claim = request_rotation(app, store, destination_id, trigger="schedule")
        except Exception as exc:  # broker down, bad id: try this one again soon, go on
            schedule.reschedule(destination_id, now + SEND_RETRY_SECONDS)
            counts["errors"] += 1
            log.warning(
                "scheduled rotation not sent", destination_id=destination_id, error=repr(exc)
            )
            continue
        counts["started" if claim.created else "inProgress"] += 1
    if due:
        log.info("due rotations enqueued", **counts)
    return counts


@shared_task(bind=True, name="enqueue_due", acks_late=True, ignore_result=True)  # type: ignore[untyped-decorator]
def enqueue_due(self: Task) -> dict[str, Any]:
    """Claim the due destinations and trigger a rotation for each."""
    runtime = runtime_for(self.app)
    return enqueue_due_once(
        self.app,
        runtime.schedule,
        runtime.store,
        batch_size=runtime.settings.scheduler.batch_size,
    )
