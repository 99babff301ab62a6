"""Resume rotations whose worker died: beat's ``resume-stalled`` job.

A killed worker's message comes back only after the broker's visibility timeout (an hour
by default), far too late for a rotation that may be half done. So every task run notes
in ``<prefix>:runs`` by when it must show life again (:meth:`RotationStore.expect_run`: its
lease TTL ahead, pushed on by each retry's countdown), and every tick beat looks at the
runs past that time:

* finished, or handed to the delivery watch (which has its own lease): forgotten;
* the destination's lease is held: the run is alive; look again when that lease would
  expire;
* no lease and nothing finished: the worker died. The rotation is sent again (with its id,
  so the new run resumes from the record) and looked at again one lease TTL later;
* claimed but never started (a trigger notes the claim with a start-by time one lease TTL
  ahead): if its message is still in the broker (queued, or reserved by a worker), it is
  only waiting; if the broker lost it (a Redis restart within its fsync second, a failover
  to a replica that had not caught up), it is sent again. A queue too long to search is a
  backlog: look again one lease TTL later.

So a rotation whose worker died resumes within the lease TTL plus one tick (about 65 s at
the defaults); the original message, when the broker finally redelivers it, finds the
outcome and does nothing. A run that is merely slow holds its lease (renewed by its
heartbeat) and is never sent twice; a duplicate that slips through (a lease lost to a
network split) is harmless: runs are serialised by the lease and resume from the record.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from celery import Celery

from worker.logging import get_logger
from worker.rotation.workflow import WATCHING
from worker.runtime import Runtime
from worker.store.broker import BrokerView
from worker.store.records import NOT_SENT, REQUESTED
from worker.trigger import ROTATE_TASK

__all__ = ["ResumeReport", "resume_stalled"]

log = get_logger(__name__)

#: Runs looked at per tick (the rest wait for the next tick).
BATCH = 500


@dataclass(frozen=True)
class ResumeReport:
    """What one pass did."""

    resumed: int = 0
    alive: int = 0
    forgotten: int = 0


def resume_stalled(app: Celery, runtime: Runtime, now: float | None = None) -> ResumeReport:
    """Re-send the rotations whose run stopped showing life (see the module docstring)."""
    moment = time.time() if now is None else now
    store = runtime.store
    due = store.stalled_runs(moment, BATCH)
    if not due:
        return ResumeReport()
    records = store.records(due)
    ttl = runtime.settings.lock.ttl_seconds
    resumed = alive = forgotten = 0
    with runtime.redis.pipeline(transaction=False) as pipe:
        for record in records:
            if record is not None:
                pipe.pttl(runtime.keys.lock(record.destination_id))
        lock_ms = iter(pipe.execute())
    broker = BrokerView(runtime.redis)
    for rotation_id, record in zip(due, records, strict=True):
        if record is None or record.outcome or record.get("status") in (WATCHING, NOT_SENT):
            store.forget_run(rotation_id)
            forgotten += 1
            continue
        remaining_ms = int(next(lock_ms))
        destination_id = record.destination_id
        if remaining_ms > 0 or remaining_ms == -1:  # held (-1: held without a TTL)
            store.expect_run(rotation_id, destination_id, moment + max(remaining_ms, 0) / 1000 + 1)
            alive += 1
            continue
        if record.get("status") == REQUESTED and broker.holds(rotation_id):
            store.expect_run(rotation_id, destination_id, moment + ttl)  # queued: waiting
            alive += 1
            continue
        app.send_task(ROTATE_TASK, args=[destination_id, rotation_id])
        store.expect_run(rotation_id, destination_id, moment + ttl)
        log.warning(
            "rotation resumed: its message was lost"
            if record.get("status") == REQUESTED
            else "rotation resumed: its worker stopped",
            rotation_id=rotation_id,
            destination_id=destination_id,
        )
        resumed += 1
    if runtime.metrics is not None and resumed:
        runtime.metrics.count("rotations_resumed", resumed)
    return ResumeReport(resumed, alive, forgotten)
