"""What happens after a rotation ends: the next due time and the old credential's retirement.

Runs after every terminal outcome and must be idempotent (a redelivered task runs it again):
the retirement job is added with NX, and the next due time is only set while the
destination still has a policy (a destination removed from the registry stays removed).
"""

from __future__ import annotations

import random
import time

from worker.logging import get_logger
from worker.retirement import RetirementQueue
from worker.runtime import Runtime
from worker.scheduling.due import next_due
from worker.scheduling.store import ScheduleStore
from worker.store.records import RotationRecord

__all__ = ["attach_lifecycle", "follow_up"]

log = get_logger(__name__)
_rng = random.SystemRandom()


def follow_up(runtime: Runtime, record: RotationRecord) -> None:
    """Schedule the next rotation and queue the old credential's retirement, as the outcome says."""
    schedule = ScheduleStore(runtime.redis, runtime.keys)
    policy = schedule.policy(record.destination_id)
    outcome = record.outcome
    finished = float(record.get("finished_at") or time.time())
    if outcome == "needs_attention":
        schedule.unschedule(record.destination_id)
        return
    if policy is not None and policy.enabled and not policy.paused:
        if outcome == "succeeded":
            schedule.reschedule(record.destination_id, next_due(policy, finished, _rng))
        else:  # failed / rolled_back: try again after a backoff, not a full interval
            retry_in = min(3600.0, (policy.interval_seconds or 86400.0) / 10)
            schedule.reschedule(record.destination_id, finished + retry_in * _rng.uniform(0.5, 1))
    if outcome != "succeeded":
        return
    old = record.get("old_credential_id")
    if not old or old == record.get("new_credential_id"):
        return
    if policy is not None and not _may_retire(runtime, policy.retire_foreign, old):
        log.info("old credential kept: not created by this service", credential_id=old)
        return
    grace = (
        policy.grace_seconds
        if policy is not None
        else runtime.settings.scheduler.default_grace_seconds
    )
    RetirementQueue(runtime.redis, runtime.keys).schedule(
        old,
        finished + grace,
        environment_id=record.get("environment_id") or "",
        destination_id=record.destination_id,
        rotation_id=record.rotation_id,
    )


def _may_retire(runtime: Runtime, retire_foreign: bool, credential_id: str) -> bool:
    return retire_foreign or runtime.store.created_by_us(credential_id)


def attach_lifecycle(runtime: Runtime) -> None:
    """Wire :func:`follow_up` into the runtime's workflows."""
    runtime.after_rotation = lambda record: follow_up(runtime, record)
