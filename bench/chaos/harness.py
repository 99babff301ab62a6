"""The chaos stack: one :class:`devstack.rig.Rig` per scenario, with tight budgets.

Every scenario starts its own redis-server (AOF on) and sandbox, starts the product's
workers (and beat, Flower) as real child processes, triggers rotations the way the CLI
does, and reads the results back from Redis, the event stream and the sandbox. Budgets are
tight so that retries and redeliveries resolve in seconds; the figures never depend on
timings.
"""

from __future__ import annotations

from devstack.rig import Rig, outcome_of

__all__ = ["BASE_ENV", "chaos_rig", "outcome_of"]

#: Tight budgets (same spirit as the integration rig); scenarios override what they test.
BASE_ENV = {
    "ROTATOR_RETRY__MAX_ATTEMPTS": "5",
    "ROTATOR_RETRY__MAX_SECONDS": "8",
    "ROTATOR_RETRY__BACKOFF_INITIAL": "0.05",
    "ROTATOR_RETRY__BACKOFF_MAX": "0.5",
    "ROTATOR_RETRY__TASK_MAX_RETRIES": "20",
    "ROTATOR_RETRY__TASK_BACKOFF_INITIAL": "0.5",
    "ROTATOR_RETRY__TASK_BACKOFF_MAX": "3",
    "ROTATOR_LOCK__TTL_SECONDS": "4",
    "ROTATOR_LOCK__RENEW_EVERY_SECONDS": "1",
    "ROTATOR_CELERY__SOFT_TIME_LIMIT": "8",
    "ROTATOR_CELERY__TIME_LIMIT": "10",
    "ROTATOR_CELERY__VISIBILITY_TIMEOUT": "20",
    # The sandbox has no rate limit unless a scenario sets one; keep our pacer out of the way.
    "ROTATOR_RATE_LIMIT__REQUESTS": "1000000",
    # The switch ends a rotation (no watch: it would need beat; the watch has its own tests).
    "ROTATOR_VERIFY__WATCH_SECONDS": "0",
    "ROTATOR_LOG_LEVEL": "INFO",
}


def chaos_rig(
    *,
    sandbox_args: tuple[str, ...] = (),
    env: dict[str, str] | None = None,
    redis_password: str | None = None,
    seed: int = 11,
) -> Rig:
    """A scenario's private stack (its own redis-server and sandbox) with the chaos budgets."""
    return Rig.start(
        env={**BASE_ENV, **(env or {})},
        sandbox_args=sandbox_args,
        seed=seed,
        redis_password=redis_password,
    )
