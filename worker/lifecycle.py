"""What happens after a rotation ends: the next due time and the old credential's retirement.

Runs after every terminal outcome and must be idempotent (a redelivered task runs it again):
the retirement job is added with NX, and the next due time is only set while the
destination still has a policy (a destination removed from the registry stays removed),
is not paused or in ``needs_attention``, and this rotation is still its latest one.

Which old credential is queued for retirement follows the policy's ``retire`` setting
(:data:`config.registry.RetirePolicy`); without a registry policy the default
(``rotated-away``) applies. No credential other than the one a rotation replaced is queued.
A rotation triggered with ``--retire-now`` retires at once, in the follow-up itself.
"""

from __future__ import annotations

import random
import time

from config.registry import DEFAULT_RETIRE, DestinationPolicy
from worker.events import Outcome
from worker.logging import get_logger
from worker.retirement import retire_due
from worker.runtime import Runtime
from worker.scheduling.due import next_due
from worker.store.records import TOKEN_KIND, RotationRecord, RotationStore

__all__ = ["attach_lifecycle", "follow_up", "may_retire", "retry_delay", "token_follow_up"]

log = get_logger(__name__)
_rng = random.SystemRandom()


def retry_delay(policy: DestinationPolicy) -> float:
    """Base delay before a failed or rolled-back scheduled rotation is tried again."""
    return min(3600.0, (policy.interval_seconds or 86400.0) / 10)


def follow_up(runtime: Runtime, record: RotationRecord) -> None:
    """Schedule the next rotation and queue the old credential's retirement, as the outcome says."""
    if record.kind == TOKEN_KIND:
        token_follow_up(runtime, record)
        return
    schedule = runtime.schedule
    destination_id = record.destination_id
    policy, state = schedule.policy_and_state(destination_id)
    outcome = record.outcome
    finished = float(record.get("finished_at") or time.time())
    latest = state.last_rotation_id in (None, record.rotation_id)
    if outcome == Outcome.NEEDS_ATTENTION or state.held:
        schedule.unschedule(destination_id)
    elif latest and policy is not None and policy.scheduled:
        if outcome == Outcome.SUCCEEDED:
            schedule.reschedule(destination_id, next_due(policy, finished, _rng))
        else:  # failed / rolled_back: try again after a backoff, not a full interval
            delay = retry_delay(policy) * _rng.uniform(0.5, 1.0)
            schedule.reschedule(destination_id, finished + delay)
    if outcome != Outcome.SUCCEEDED:
        return
    old = record.get("old_credential_id")
    if not old or old == record.get("new_credential_id"):
        return
    retire = policy.retire if policy is not None else DEFAULT_RETIRE
    if not may_retire(runtime.store, retire, old):
        log.info("old credential kept by the retire policy", credential_id=old, retire=retire)
        return
    retire_now = bool(record.get("retire_now"))
    grace = (
        policy.grace_seconds
        if policy is not None
        else runtime.settings.scheduler.default_grace_seconds
    )
    runtime.retirement.schedule(
        old,
        finished if retire_now else finished + grace,
        now=retire_now,
        environment_id=record.get("environment_id") or "",
        destination_id=destination_id,
        rotation_id=record.rotation_id,
        retire=retire,
        auth_strategy=record.get("auth_strategy") or "",
        client_id=record.get("client_id") or "",
        source_kind=record.get("secret_kind") or "",
    )
    if retire_now:  # leak response: the old credential and its secret go now, not later
        retire_due(
            runtime.retirement,
            runtime.redox,
            runtime.events,
            runtime.sources.source_for,
            runtime.ledger,
            retry_seconds=runtime.settings.scheduler.retire_retry_seconds,
        )


def token_follow_up(runtime: Runtime, record: RotationRecord) -> None:
    """A verification-token rotation ended: its own next due time (nothing to retire: the
    old token was replaced in place, and the store keeps it as the previous version)."""
    schedule = runtime.token_schedule
    destination_id = record.destination_id
    policy, state = runtime.schedule.policy_and_state(destination_id)
    interval = policy.token_interval_seconds if policy is not None else None
    finished = float(record.get("finished_at") or time.time())
    if record.outcome == Outcome.NEEDS_ATTENTION or state.held or interval is None:
        schedule.unschedule(destination_id)
    elif record.outcome == Outcome.SUCCEEDED:
        schedule.reschedule(destination_id, finished + interval)
    else:  # failed / rolled_back: try again after a backoff, not a full interval
        schedule.reschedule(destination_id, finished + min(3600.0, interval / 10))


def may_retire(store: RotationStore, retire: str, credential_id: str) -> bool:
    """Whether the policy ``retire`` allows deleting ``credential_id`` (a rotated-away one)."""
    if retire == "rotated-away":
        return True
    if retire == "created-only":
        return store.created_by_us(credential_id)
    return False


def attach_lifecycle(runtime: Runtime) -> None:
    """Wire :func:`follow_up` into the runtime's workflows."""
    runtime.after_rotation = lambda record: follow_up(runtime, record)
