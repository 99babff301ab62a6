"""What an operator does to a destination: pause, resume, retry (the CLI's service side).

Each write is one atomic step in Redis (:meth:`DestinationStates.pause`,
:meth:`DestinationStates.release`); ``retry`` then triggers a rotation through
:func:`worker.trigger.request_rotation` like every other trigger.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass

from celery import Celery

from worker.errors import UsageError
from worker.inventory import Inventory
from worker.runtime import Runtime
from worker.scheduling.due import first_due
from worker.store.destinations import StateField
from worker.store.records import Claim
from worker.trigger import check_destination_id, request_rotation

__all__ = ["Released", "pause", "require_known", "resume", "retry"]

#: A resumed or retried overdue destination rotates within this many seconds.
RESUME_SPREAD_SECONDS = 60.0


@dataclass(frozen=True)
class Released:
    """What ``resume`` / ``retry`` did to the schedule."""

    #: The next due time, when the destination went back on the schedule.
    due: float | None
    #: Still held by the other flag (resumed but needs attention).
    needs_attention: bool
    in_registry: bool


def require_known(runtime: Runtime, destination_id: str) -> None:
    """UsageError unless the id is valid and the service knows the destination."""
    check_destination_id(destination_id)
    if not Inventory(runtime.redis, runtime.keys).is_known(destination_id):
        raise UsageError(
            f"unknown destination {destination_id}: not in the registry and never rotated"
        )


def pause(runtime: Runtime, destination_id: str) -> str | None:
    """Stop scheduling the destination; return the rotation in progress, if any (it ends
    on its own: nothing is cancelled)."""
    require_known(runtime, destination_id)
    runtime.states.pause(destination_id, time.time())
    return runtime.store.active(destination_id)


def _due(runtime: Runtime, destination_id: str) -> float | None:
    """Where a released destination goes on the schedule (None: not in the registry)."""
    policy = runtime.schedule.policy(destination_id)
    if policy is None or not policy.scheduled:
        return None
    catchup = min(runtime.settings.scheduler.catchup_seconds, RESUME_SPREAD_SECONDS)
    return first_due(
        policy,
        time.time(),
        random.SystemRandom(),
        last_rotated_at=runtime.states.last_success_at(destination_id),
        catchup_seconds=catchup,
    )


def resume(runtime: Runtime, destination_id: str) -> Released:
    """Clear ``paused`` and schedule the destination again (an overdue one rotates within
    a minute) unless it needs attention."""
    require_known(runtime, destination_id)
    due = _due(runtime, destination_id)
    scheduled = runtime.states.release(destination_id, StateField.PAUSED, due=due)
    state = runtime.states.get(destination_id)
    return Released(due if scheduled else None, state.needs_attention, due is not None)


def retry(runtime: Runtime, app: Celery, destination_id: str) -> tuple[Claim, Released]:
    """Clear ``needs_attention``, schedule the destination again and rotate it now."""
    require_known(runtime, destination_id)
    due = _due(runtime, destination_id)
    scheduled = runtime.states.release(destination_id, StateField.NEEDS_ATTENTION, due=due)
    claim = request_rotation(
        app, runtime.store, destination_id, trigger="retry", reason="rotator retry"
    )
    state = runtime.states.get(destination_id)
    return claim, Released(due if scheduled else None, state.needs_attention, due is not None)
