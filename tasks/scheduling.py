"""``enqueue_due``: beat runs it every few seconds to start the rotations that fell due.

Claiming is atomic in Redis (a Lua script with a lease), so two beat processes, or two
overlapping runs, never enqueue the same destination twice; the single-flight claim in
:func:`worker.trigger.request_rotation` is the second line of defence.
"""

from __future__ import annotations

import time
from typing import Any

from celery import Task, shared_task

from worker.celery_app import runtime_for
from worker.logging import get_logger
from worker.scheduling.store import ScheduleStore
from worker.trigger import request_rotation

__all__ = ["enqueue_due"]

log = get_logger(__name__)

#: A claimed entry comes back after this long if the rotation never reschedules it.
CLAIM_LEASE_SECONDS = 3600.0


@shared_task(bind=True, name="enqueue_due", acks_late=True, ignore_result=True)  # type: ignore[untyped-decorator]
def enqueue_due(self: Task) -> dict[str, Any]:
    """Claim the due destinations and trigger a rotation for each (paused and
    needs_attention destinations are skipped: they are not on the schedule)."""
    runtime = runtime_for(self.app)
    schedule = ScheduleStore(runtime.redis, runtime.keys)
    now = time.time()
    due = schedule.claim_due(now, runtime.settings.scheduler.batch_size, CLAIM_LEASE_SECONDS)
    started = already = skipped = 0
    for destination_id in due:
        state = runtime.store.destination_state(destination_id)
        if state.get("needs_attention") or state.get("paused"):
            schedule.unschedule(destination_id)
            skipped += 1
            continue
        claim = request_rotation(self.app, runtime.store, destination_id, trigger="schedule")
        if claim.created:
            started += 1
        else:
            already += 1
    if due:
        log.info("due rotations enqueued", started=started, in_progress=already, skipped=skipped)
    return {"claimed": len(due), "started": started, "inProgress": already, "skipped": skipped}
