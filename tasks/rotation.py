"""``rotate_destination``: the one task per rotation (IDs in, workflow call out).

Arguments are ids only: ``(destination_id, rotation_id)``. Called without a rotation id
(for example through Flower's ``/api/task/async-apply/rotate_destination``) it claims one
through the same single-flight guard as the CLI, so it can never start a second rotation.
"""

from __future__ import annotations

import random
import time
from typing import Any

import redis
from celery import Task, shared_task
from celery.exceptions import SoftTimeLimitExceeded

from worker.celery_app import runtime_for
from worker.errors import LockLost, TransientError, UsageError
from worker.guard import guarded_run
from worker.logging import bind_rotation, get_logger
from worker.rotation.workflow import WATCHING
from worker.runtime import Runtime
from worker.store.lease import Lease
from worker.trigger import ROTATE_TASK, check_destination_id

__all__ = ["retry_countdown", "rotate_destination"]

log = get_logger(__name__)


#: How long a run waits for a destination's lease before parking itself with a countdown:
#: covers the moment between a finished rotation's claim release and its lease release.
LEASE_WAIT_SECONDS = 3.0
#: The longest a rate limit's "come back after" is honoured for one task retry.
MAX_RETRY_AFTER = 900.0


def retry_countdown(attempt: int, initial: float, maximum: float) -> float:
    """Full-jitter exponential countdown for the next task run (at least one second)."""
    return max(1.0, random.uniform(0, min(maximum, initial * 2 ** max(attempt - 1, 0))))


@shared_task(bind=True, name=ROTATE_TASK, acks_late=True, max_retries=None)  # type: ignore[untyped-decorator]
def rotate_destination(
    self: Task, destination_id: str, rotation_id: str | None = None
) -> dict[str, Any]:
    """Run (or resume) rotation ``rotation_id`` of ``destination_id``."""
    runtime = runtime_for(self.app)
    try:
        return _rotate(self, runtime, destination_id, rotation_id)
    except redis.RedisError as exc:
        # Redis (broker and store) went away mid-run. Failing now would ack the message and
        # strand the claimed rotation: wait for Redis, then retry (the steps resume from the
        # record). If it stays down, the retry cannot be sent either and the unacked message
        # comes back after the visibility timeout.
        log.warning("redis unavailable; rotation will be retried", error=type(exc).__name__)
        _wait_for_redis(runtime, runtime.settings.celery.soft_time_limit / 2)
        raise self.retry(
            args=[destination_id, rotation_id], countdown=1.0, max_retries=None
        ) from None


def _wait_for_redis(runtime: Runtime, seconds: float) -> bool:
    """Poll Redis until it answers (True) or ``seconds`` pass (False)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if runtime.redis.ping():
                return True
        except redis.RedisError:
            pass
        time.sleep(0.5)
    return False


def _rotate(
    task: Task, runtime: Runtime, destination_id: str, rotation_id: str | None
) -> dict[str, Any]:
    store = runtime.store
    try:  # sent by hand (Flower's API): ids are pasted into URL paths and lock keys
        check_destination_id(destination_id)
    except UsageError as exc:
        log.warning("task refused", error=str(exc))
        return _result(rotation_id or "", str(destination_id), "refused")
    if rotation_id is None:
        claim = store.claim(destination_id, trigger="api", reason="task sent without a rotation id")
        if not claim.created:
            return _result(claim.rotation_id, destination_id, "already_in_progress")
        rotation_id = claim.rotation_id
    record = store.record(rotation_id)
    if record is None or record.destination_id != destination_id:
        log.warning("task ignored: no such rotation", rotation_id=rotation_id)
        return _result(rotation_id, destination_id, "unknown_rotation")
    with bind_rotation(rotation_id, destination_id):  # every log line of the run
        lease = Lease(
            runtime.redis,
            runtime.keys,
            destination_id,
            ttl=runtime.settings.lock.ttl_seconds,
            renew_every=runtime.settings.lock.renew_every_seconds,
        )
        ttl = runtime.settings.lock.ttl_seconds
        if not lease.acquire(wait=LEASE_WAIT_SECONDS):
            # Another run of this destination is alive, or a killed one's lease has not expired
            # yet: come back when it would expire (a live holder renews it, so we wait again).
            countdown = min(max(lease.remaining(), 0.5), ttl) + random.uniform(0, min(5.0, ttl / 4))
            store.expect_run(rotation_id, destination_id, time.time() + countdown + ttl)
            # Always name the rotation: a bare send (no rotation id) that claimed one must
            # come back as that rotation, not claim again and find "already in progress".
            raise task.retry(
                args=[destination_id, rotation_id], countdown=countdown, max_retries=None
            )
        # If this worker dies, beat sends the rotation again once the lease has expired.
        store.expect_run(rotation_id, destination_id, time.time() + ttl + 1)
        try:
            return _run(task, runtime, lease, destination_id, rotation_id, record.attempt)
        finally:
            lease.release()


def _run(
    task: Task, runtime: Runtime, lease: Lease, destination_id: str, rotation_id: str, runs: int
) -> dict[str, Any]:
    policy = runtime.settings.retry
    final = runs + 1 > policy.task_max_retries
    try:
        # The run's own deadline and lease, seen by every call it makes (worker.guard):
        # enforced on every pool, the default threads pool included.
        with guarded_run(runtime.settings.celery.soft_time_limit, lease):
            outcome = runtime.workflow().run(
                rotation_id, destination_id, lease, final_attempt=final
            )
    except LockLost:
        return _result(rotation_id, destination_id, "lease_lost")
    except (TransientError, SoftTimeLimitExceeded) as exc:
        countdown = retry_countdown(runs + 1, policy.task_backoff_initial, policy.task_backoff_max)
        # A rate limit says when to come back (Retry-After, Okta's reset): sooner is wasted.
        retry_after = getattr(exc, "retry_after", None)
        if retry_after is not None:
            countdown = max(countdown, min(retry_after, MAX_RETRY_AFTER) + random.uniform(0, 2))
        runtime.store.expect_run(
            rotation_id, destination_id, time.time() + countdown + runtime.settings.lock.ttl_seconds
        )
        log.warning(
            "rotation retry scheduled",
            rotation_id=rotation_id,
            destination_id=destination_id,
            countdown=round(countdown, 1),
            error=type(exc).__name__,
        )
        raise task.retry(
            args=[destination_id, rotation_id], countdown=countdown, max_retries=None
        ) from None
    if outcome == WATCHING:  # the delivery watch has its own lease from here on
        runtime.store.forget_run(rotation_id)
    return _result(rotation_id, destination_id, outcome)


def _result(rotation_id: str, destination_id: str, outcome: str | None) -> dict[str, Any]:
    return {"rotationId": rotation_id, "destinationId": destination_id, "outcome": outcome}
