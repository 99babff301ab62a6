"""Shared rig for the rotation integration tests.

One LocalStack per session (a real redis-server with AOF and the sandbox over HTTP); each
test gets a clean Redis (FLUSHALL), an empty sandbox without faults or rate limit, and
starts its own worker(s), which are stopped when the test ends. Tests never share state:
they seed their own destinations and flush everything first.
"""

from __future__ import annotations

import subprocess
import time
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from celery import Celery

from config.settings import Settings
from devstack.stack import Child, LocalStack
from sandbox.client import SandboxControl
from worker.celery_app import create_app
from worker.events import TERMINAL_OUTCOMES, EventStream
from worker.store.keys import Keys
from worker.store.records import RotationStore

#: Tight budgets so failures and redeliveries resolve in seconds (never asserted as timings).
BASE_ENV = {
    "ROTATOR_RETRY__MAX_ATTEMPTS": "5",
    "ROTATOR_RETRY__MAX_SECONDS": "5",
    "ROTATOR_RETRY__BACKOFF_INITIAL": "0.05",
    "ROTATOR_RETRY__BACKOFF_MAX": "0.3",
    "ROTATOR_RETRY__TASK_BACKOFF_INITIAL": "0.2",
    "ROTATOR_RETRY__TASK_BACKOFF_MAX": "1",
    "ROTATOR_LOCK__TTL_SECONDS": "4",
    "ROTATOR_LOCK__RENEW_EVERY_SECONDS": "1",
    "ROTATOR_CELERY__SOFT_TIME_LIMIT": "8",
    "ROTATOR_CELERY__TIME_LIMIT": "10",
    "ROTATOR_CELERY__VISIBILITY_TIMEOUT": "20",
    "ROTATOR_LOG_LEVEL": "INFO",
}
WAIT = 60.0


@pytest.fixture(scope="session")
def stack() -> Iterator[LocalStack]:
    """redis-server + sandbox for the whole session (workers are per test)."""
    with LocalStack(env=BASE_ENV) as local:
        local.start_redis()
        local.start_sandbox(seed=7)
        yield local


class Rig:
    """One test's view of the stack: clean state, its workers, and readers for assertions."""

    def __init__(self, stack: LocalStack) -> None:
        self.stack = stack
        self.control = SandboxControl(stack.sandbox_url)
        self.redis = redis.Redis.from_url(stack.redis.url, decode_responses=True)
        self.keys = Keys()
        self.workers: list[Child] = []
        self._apps: list[Celery] = []

    # -- setup --------------------------------------------------------------------------

    def clean(self) -> None:
        """Empty Redis and the sandbox; clear faults and the sandbox rate limit."""
        self.redis.flushall()
        self.control.set_faults()
        self.control.set_rate_limit(None)
        self.control.reset()

    def worker(
        self,
        name: str = "w1",
        *,
        concurrency: int = 2,
        pool: str = "threads",
        env: dict[str, str] | None = None,
        crash_after: str | None = None,
    ) -> Child:
        """Start a worker for this test (stopped at teardown)."""
        child = self.stack.start_worker(
            name, concurrency=concurrency, pool=pool, env=env, crash_after=crash_after
        )
        self.workers.append(child)
        return child

    def seed(self, count: int = 1) -> list[str]:
        """Fresh sandbox destinations, each with its own OAuth credential."""
        return self.control.seed(count)

    def settings(self, **env: str) -> Settings:
        """Settings as the stack's children see them (plus ``env``)."""
        return self.stack.settings(env)

    def app(self) -> Celery:
        """A Celery app in this process, configured like the workers."""
        app = create_app(self.settings())
        self._apps.append(app)
        return app

    def store(self) -> RotationStore:
        """The rotation store on this test's Redis."""
        return RotationStore(self.redis, self.keys, claim_ttl=3600, stream_maxlen=100_000)

    def rotator(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """Run the CLI against the stack."""
        return self.stack.rotator(*args, timeout=timeout)

    # -- reading ------------------------------------------------------------------------

    def events(self) -> list[dict[str, Any]]:
        """Every event on the stream, oldest first."""
        return [e.event for e in EventStream(self.redis, self.keys).read(count=100_000)]

    def terminal_events(self) -> dict[str, list[dict[str, Any]]]:
        """Terminal events grouped by rotation id."""
        grouped: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for event in self.events():
            if outcome_of(event) in TERMINAL_OUTCOMES:
                grouped[event["data"]["rotationId"]].append(event)
        return dict(grouped)

    def wait_terminal(self, rotation_ids: list[str], timeout: float = WAIT) -> dict[str, str]:
        """Wait until each rotation has a terminal event; return rotation id -> outcome."""
        deadline = time.monotonic() + timeout
        while True:
            grouped = self.terminal_events()
            if all(rid in grouped for rid in rotation_ids):
                return {rid: outcome_of(grouped[rid][0]) for rid in rotation_ids}
            if time.monotonic() > deadline:
                missing = [rid for rid in rotation_ids if rid not in grouped]
                logs = "\n".join(w.log_text()[-3000:] for w in self.workers if w.alive)
                raise AssertionError(f"no terminal event for {missing}; worker logs:\n{logs}")
            time.sleep(0.2)

    def assert_one_terminal_each(self, rotation_ids: list[str] | None = None) -> None:
        """Invariant 8: every rotation on the stream has exactly one terminal event."""
        grouped = self.terminal_events()
        started = {e["data"]["rotationId"] for e in self.events() if outcome_of(e) == "started"}
        for rid in rotation_ids or []:
            assert len(grouped.get(rid, [])) == 1, f"{rid}: {grouped.get(rid)}"
        for rid in started:
            assert len(grouped.get(rid, [])) == 1, f"{rid}: {grouped.get(rid)}"
        assert all(len(v) == 1 for v in grouped.values()), grouped

    def journal(self) -> list[dict[str, Any]]:
        """Every sandbox journal entry since the test's reset."""
        entries: list[dict[str, Any]] = self.control.journal()["entries"]
        return entries

    def credentials(self) -> dict[str, dict[str, Any]]:
        """Sandbox credentials by id."""
        return {c["id"]: c for c in self.control.state()["credentials"]}

    def destination(self, destination_id: str) -> dict[str, Any]:
        """The sandbox's view of one destination."""
        for dest in self.control.state()["destinations"]:
            if dest["id"] == destination_id:
                return dest  # type: ignore[no-any-return]
        raise AssertionError(f"no destination {destination_id}")

    def close(self) -> None:
        """Stop this test's workers and close clients."""
        for child in self.workers:
            child.stop(kill=True)
            if child in self.stack.children:
                self.stack.children.remove(child)
        for app in self._apps:
            app.close()
        self.control.close()
        self.redis.close()


def outcome_of(event: dict[str, Any]) -> str:
    """``succeeded`` for ``rotator.rotation.succeeded``."""
    return str(event.get("type", "")).rsplit(".", 1)[-1]


@pytest.fixture
def rig(stack: LocalStack) -> Iterator[Rig]:
    """A clean stack for one test; its workers stop afterwards."""
    state = Rig(stack)
    state.clean()
    try:
        yield state
        state.assert_one_terminal_each()
    finally:
        state.close()


# -- secret scanning ---------------------------------------------------------------------
