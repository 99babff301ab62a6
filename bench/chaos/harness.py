"""The chaos stack: one LocalStack per scenario, plus the readers the invariants need.

Every scenario starts its own redis-server (AOF on) and sandbox, starts the product's
workers (and beat, Flower) as real child processes through :class:`devstack.stack.LocalStack`,
triggers rotations the way the CLI does, and reads the results back from Redis, the event
stream and the sandbox. Budgets are tight so that retries and redeliveries resolve in
seconds; the figures never depend on timings.
"""

from __future__ import annotations

import contextlib
import time
from types import TracebackType
from typing import Any

import redis
from celery import Celery

from config.settings import Settings
from devstack.stack import Child, LocalStack
from sandbox.client import SandboxControl
from worker.celery_app import create_app
from worker.events import TERMINAL_OUTCOMES, EventStream
from worker.retirement import RetirementQueue, retire_due
from worker.runtime import Runtime
from worker.store.keys import Keys
from worker.store.records import RotationStore
from worker.trigger import request_rotation

__all__ = ["BASE_ENV", "Chaos", "outcome_of"]

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
    "ROTATOR_LOG_LEVEL": "INFO",
}


def outcome_of(event: dict[str, Any]) -> str:
    """``succeeded`` for ``rotator.rotation.succeeded``."""
    return str(event.get("type", "")).rsplit(".", 1)[-1]


class Chaos:
    """A scenario's private stack and the readers its invariants use."""

    def __init__(
        self,
        *,
        sandbox_args: tuple[str, ...] = (),
        env: dict[str, str] | None = None,
        redis_password: str | None = None,
        seed: int = 11,
    ) -> None:
        self.stack = LocalStack(env={**BASE_ENV, **(env or {})}, redis_password=redis_password)
        self._sandbox_args = sandbox_args
        self._seed = seed
        self.keys = Keys()
        self.workers: list[Child] = []
        self._apps: list[Celery] = []
        self.redis: redis.Redis
        self.control: SandboxControl

    def __enter__(self) -> Chaos:
        try:
            self.stack.start_redis()
            self.control = self.stack.start_sandbox(*self._sandbox_args, seed=self._seed)
            self.redis = redis.Redis.from_url(self.stack.redis.url, decode_responses=True)
        except BaseException:
            self.stack.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for app in self._apps:
            app.close()
        with contextlib.suppress(Exception):
            self.control.close()
        with contextlib.suppress(Exception):
            self.redis.close()
        self.stack.close()

    # -- processes ----------------------------------------------------------------------

    def worker(
        self,
        name: str = "w1",
        *,
        concurrency: int = 2,
        pool: str = "threads",
        env: dict[str, str] | None = None,
        wait: bool = True,
        crash_after: str | None = None,
    ) -> Child:
        """Start a lean ``rotator worker`` for this scenario."""
        child = self.stack.start_worker(
            name, concurrency=concurrency, pool=pool, env=env, wait=wait, crash_after=crash_after
        )
        self.workers.append(child)
        return child

    def logs(self) -> list[str]:
        """Everything the service's processes (not the sandbox) wrote."""
        return [
            c.log_path.read_text(errors="replace")
            for c in self.stack.children
            if c.name != "sandbox"
        ]

    # -- service parts in this process --------------------------------------------------

    def settings(self, **env: str) -> Settings:
        """Settings as the stack's children see them (plus ``env``)."""
        return self.stack.settings(env)

    def app(self) -> Celery:
        """A Celery app in this process, configured like the workers."""
        app = create_app(self.settings())
        self._apps.append(app)
        return app

    def store(self) -> RotationStore:
        """The rotation store on this stack's Redis."""
        return RotationStore(self.redis, self.keys, claim_ttl=3600, stream_maxlen=1_000_000)

    def trigger(self, destinations: list[str], app: Celery | None = None) -> list[str]:
        """Claim and send one rotation per destination (as ``rotator rotate`` does)."""
        app = app or self.app()
        store = self.store()
        return [
            request_rotation(app, store, d, trigger="operator").rotation_id for d in destinations
        ]

    # -- readers ------------------------------------------------------------------------

    def events(self) -> list[dict[str, Any]]:
        """Every event on the stream, oldest first."""
        stream = EventStream(self.redis, self.keys)
        found: list[dict[str, Any]] = []
        since = "0-0"
        while True:
            batch = stream.read(since=since, count=10_000)
            if not batch:
                return found
            found += [entry.event for entry in batch]
            since = batch[-1].stream_id

    def terminal_counts(self) -> dict[str, list[str]]:
        """Rotation id -> its terminal outcomes, in stream order."""
        grouped: dict[str, list[str]] = {}
        for event in self.events():
            outcome = outcome_of(event)
            if outcome in TERMINAL_OUTCOMES:
                grouped.setdefault(event["data"]["rotationId"], []).append(outcome)
        return grouped

    def wait_terminal(self, rotation_ids: list[str], timeout: float) -> dict[str, str]:
        """Wait until every rotation has a terminal event (or the timeout); return those seen."""
        deadline = time.monotonic() + timeout
        while True:
            grouped = self.terminal_counts()
            done = {rid: grouped[rid][0] for rid in rotation_ids if rid in grouped}
            if len(done) == len(rotation_ids) or time.monotonic() > deadline:
                return done
            time.sleep(0.5)

    def settle(self, timeout: float = 60) -> bool:
        """Wait until no rotation is claimed or locked and no task message is queued or
        unacked (redeliveries and follow-ups done); True if that happened in time."""
        deadline = time.monotonic() + timeout
        prefix = self.keys.prefix
        while time.monotonic() < deadline:
            busy = (
                any(True for _ in self.redis.scan_iter(match=f"{prefix}:active:*", count=1000))
                or any(True for _ in self.redis.scan_iter(match=f"{prefix}:lock:*", count=1000))
                or self.redis.llen("rotations") > 0
                or self.redis.hlen("unacked") > 0
            )
            if not busy:
                return True
            time.sleep(0.5)
        return False

    def originals(self) -> dict[str, str]:
        """Destination id -> the credential it references now."""
        return {d["id"]: d["authCredential"] for d in self.control.state()["destinations"]}

    def retire_everything(self, rounds: int = 5) -> int:
        """Run retirement as if every grace period were over; return how many were retired."""
        runtime = Runtime.build(self.settings())
        queue = RetirementQueue(runtime.redis, runtime.keys)
        retired = 0
        try:
            for _ in range(rounds):
                if not queue.pending():
                    break
                report = retire_due(
                    queue,
                    runtime.redox,
                    runtime.events,
                    runtime.secret_source_for,
                    retry_seconds=1,
                    now=time.time() + 10 * 365 * 86400,
                )
                retired += report.retired
        finally:
            runtime.close()
        return retired
