"""Start the rotations that fell due: claim them atomically and send one task each.

Claiming is atomic in Redis (a Lua script that moves each claimed entry to a lease time),
so two beat processes, or two overlapping runs, never enqueue the same destination twice;
the single-flight claim in :func:`worker.trigger.request_rotation` is the second line of
defence. Cost is O(due): one bounded ``ZRANGEBYSCORE`` plus one pipelined state read.
"""

from __future__ import annotations

import time

from celery import Celery

from worker.logging import get_logger
from worker.runtime import Runtime
from worker.scheduling.token_schedule import BUSY_RETRY_SECONDS
from worker.secrets.catalog import no_source_reason
from worker.store.records import TOKEN_KIND
from worker.trigger import request_rotation

__all__ = ["CLAIM_LEASE_SECONDS", "SEND_RETRY_SECONDS", "enqueue_due_once", "enqueue_due_tokens"]

log = get_logger(__name__)

#: A claimed entry comes back after this long if nothing reschedules it (the rotation's
#: follow-up sets the real next due time when it ends).
CLAIM_LEASE_SECONDS = 3600.0
#: A destination whose task could not be sent is tried again this much later.
SEND_RETRY_SECONDS = 30.0


def enqueue_due_once(
    app: Celery,
    runtime: Runtime,
    *,
    batch_size: int,
    now: float | None = None,
    lease_seconds: float = CLAIM_LEASE_SECONDS,
) -> dict[str, int]:
    """Claim up to ``batch_size`` due destinations and trigger a rotation for each.

    Paused and needs_attention destinations are taken off the schedule instead (resume or
    retry puts them back); a destination without a secret source is put in needs_attention
    with the reason, before any Redox call. Returns counts: claimed, started, inProgress,
    skipped, errors.
    """
    now = time.time() if now is None else now
    schedule = runtime.schedule
    due = schedule.claim_due(now, batch_size, lease_seconds)
    counts = {"claimed": len(due), "started": 0, "inProgress": 0, "skipped": 0, "errors": 0}
    for destination_id, state in zip(due, runtime.states.get_many(due), strict=True):
        if state.held:
            schedule.unschedule(destination_id)
            counts["skipped"] += 1
            continue
        if runtime.sources.spec_for(destination_id) is None:  # no unsafe default
            runtime.states.hold_for_attention(destination_id, now, no_source_reason(destination_id))
            counts["skipped"] += 1
            log.warning("no secret source: needs attention", destination_id=destination_id)
            continue
        try:
            claim = request_rotation(app, runtime.store, destination_id, trigger="schedule")
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


def enqueue_due_tokens(app: Celery, runtime: Runtime, now: float | None = None) -> int:
    """Trigger a verification-token rotation for each due destination; return how many
    started (a destination busy with a rotation of the other kind comes back soon)."""
    moment = time.time() if now is None else now
    schedule = runtime.token_schedule
    started = 0
    due = schedule.claim_due(moment, runtime.settings.scheduler.batch_size)
    for destination_id, state in zip(due, runtime.states.get_many(due), strict=True):
        if state.held:
            schedule.unschedule(destination_id)
            continue
        try:
            claim = request_rotation(
                app, runtime.store, destination_id, trigger="schedule", kind=TOKEN_KIND
            )
        except Exception as exc:  # broker down: try again soon
            schedule.reschedule(destination_id, moment + BUSY_RETRY_SECONDS)
            log.warning("token rotation not sent", destination_id=destination_id, error=repr(exc))
            continue
        if claim.created:
            started += 1
        else:  # a rotation of the other kind is running: come back after it
            schedule.reschedule(destination_id, moment + BUSY_RETRY_SECONDS)
    if due:
        log.info("due token rotations enqueued", claimed=len(due), started=started)
    return started
