"""The one test rig: a local stack and the readers every proof of the service uses.

The integration tests, the chaos suite and the benchmarks all run the product the same way:
a :class:`~devstack.stack.LocalStack` (a real redis-server with AOF and the sandbox over
HTTP), workers started as child processes, rotations triggered as ``rotator rotate`` does
(:func:`worker.trigger.request_rotation`), and results read back from Redis, the event
stream and the sandbox. :class:`Rig` is that, once.
"""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections import defaultdict
from types import TracebackType
from typing import Any

import redis
from celery import Celery

from config.settings import Settings
from devstack.stack import Child, LocalStack, idp_settings
from sandbox.client import SandboxControl
from worker.celery_app import create_app
from worker.events import TERMINAL_OUTCOMES, EventStream
from worker.retirement import retire_due
from worker.runtime import Runtime
from worker.store.keys import Keys
from worker.store.records import RotationStore
from worker.trigger import request_rotation

__all__ = ["Rig", "outcome_of"]

#: Where the sandbox serves Redox (the rest of its traffic is the IdPs and deliveries).
REDOX = "/platform/"
REDOX_TOKEN_PATH = "/v2/auth/token"


def outcome_of(event: dict[str, Any]) -> str:
    """``succeeded`` for ``rotator.rotation.succeeded``."""
    return str(event.get("type", "")).rsplit(".", 1)[-1]


class Rig:
    """A running stack (owned, or shared by a test session) and its readers."""

    def __init__(
        self,
        stack: LocalStack,
        control: SandboxControl,
        *,
        owns_stack: bool,
        idp: str | None = None,
    ) -> None:
        self.stack = stack
        #: The IdP new destinations are seeded with (``okta``, ``entra``; None: no IdP).
        self.idp = idp
        self.control = control
        self.redis = redis.Redis.from_url(stack.redis.url, decode_responses=True)
        self.keys = Keys()
        self.workers: list[Child] = []
        self._apps: list[Celery] = []
        self._owns_stack = owns_stack

    @classmethod
    def start(
        cls,
        *,
        env: dict[str, str] | None = None,
        sandbox_args: tuple[str, ...] = (),
        seed: int = 0,
        redis_password: str | None = None,
        idp: str | None = "okta",
    ) -> Rig:
        """Start redis-server and the sandbox (``seed`` destinations, each with an app at the
        sandbox's ``idp``, whose settings the service gets); no worker yet."""
        stack = LocalStack(env=env, redis_password=redis_password)
        args = (*sandbox_args, "--idp", idp) if idp else sandbox_args
        try:
            stack.start_redis()
            control = stack.start_sandbox(*args, seed=seed)
        except BaseException:
            stack.close()
            raise
        return cls(stack, control, owns_stack=True, idp=idp)

    def __enter__(self) -> Rig:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

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
        """Start a lean ``rotator worker`` (stopped by :meth:`stop_workers`)."""
        child = self.stack.start_worker(
            name, concurrency=concurrency, pool=pool, env=env, wait=wait, crash_after=crash_after
        )
        self.workers.append(child)
        return child

    def stop_workers(self, *, kill: bool = False) -> None:
        """Stop every worker this rig started."""
        for child in self.workers:
            child.stop(kill=kill)
            if child in self.stack.children:
                self.stack.children.remove(child)
        self.workers.clear()

    def logs(self) -> list[str]:
        """Everything the service's processes (not the sandbox) wrote."""
        return [c.log_text() for c in self.stack.children if c.name != "sandbox"]

    def reset(
        self,
        *,
        latency_ms: float = 0.0,
        rate_limit: int | None = None,
        window: float = 300.0,
        idp_rate_limit: int | None = None,
    ) -> None:
        """Stop the workers, empty Redis and the sandbox, set latency and the Redox rate
        limit; ``idp_rate_limit``: the IdPs' management calls allowed per minute (None: the
        sandbox's default, which shows Okta's usual 600 in its rate-limit headers)."""
        self.stop_workers(kill=True)
        self.redis.flushall()
        self.control.set_faults(latency_ms=latency_ms)
        self.control.set_rate_limit(rate_limit, window)
        self.control.reset()
        if idp_rate_limit is not None:
            self.control.set_idp_settings(
                management_rate_limit=idp_rate_limit, management_rate_window_seconds=60.0
            )

    def seed(self, count: int = 1, **options: Any) -> list[str]:
        """Fresh sandbox destinations (with an app at the rig's IdP unless ``idp`` is given;
        see :meth:`SandboxControl.seed`); their ids."""
        options.setdefault("idp", self.idp)
        return self.control.seed(count, **options)

    def rotator(
        self, *args: str, timeout: float = 120, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run the ``rotator`` CLI against the stack."""
        return self.stack.rotator(*args, timeout=timeout, env=env)

    def idp_env(self, kind: str, **verify: float) -> dict[str, str]:
        """Settings that point the service at the sandbox's ``okta`` or ``entra`` IdP
        (``verify``: ``watch_seconds``, ``poll_seconds``, ``rehearsal_seconds``)."""
        env = idp_settings(self.control, kind)
        env.update({f"ROTATOR_VERIFY__{k.upper()}": str(v) for k, v in verify.items()})
        return env

    # -- the service's parts in this process --------------------------------------------

    def settings(self, **env: str) -> Settings:
        """Settings exactly as the stack's children see them (plus ``env``)."""
        return self.stack.settings(env)

    def app(self) -> Celery:
        """A Celery app in this process, configured like the workers."""
        app = create_app(self.settings())
        self._apps.append(app)
        return app

    def store(self) -> RotationStore:
        """The rotation store on this stack's Redis."""
        return RotationStore(self.redis, self.keys, claim_ttl=3600, stream_maxlen=1_000_000)

    def trigger(
        self, destinations: list[str], *, app: Celery | None = None, trigger: str = "operator"
    ) -> list[str]:
        """Claim and send one rotation per destination; return the rotation ids."""
        app = app or self.app()
        store = self.store()
        return [request_rotation(app, store, d, trigger=trigger).rotation_id for d in destinations]

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

    def terminal_events(self) -> dict[str, list[dict[str, Any]]]:
        """Terminal events grouped by rotation id, in stream order."""
        grouped: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for event in self.events():
            if outcome_of(event) in TERMINAL_OUTCOMES:
                grouped[event["data"]["rotationId"]].append(event)
        return dict(grouped)

    def terminal_counts(self) -> dict[str, list[str]]:
        """Rotation id -> its terminal outcomes, in stream order."""
        return {rid: [outcome_of(e) for e in es] for rid, es in self.terminal_events().items()}

    def wait_terminal(
        self, rotation_ids: list[str], timeout: float = 60.0, *, strict: bool = True
    ) -> dict[str, str]:
        """Wait until each rotation has a terminal event; return rotation id -> outcome.
        ``strict``: fail (AssertionError with the workers' logs) on timeout; otherwise
        return the ones that ended."""
        deadline = time.monotonic() + timeout
        while True:
            grouped = self.terminal_counts()
            done = {rid: grouped[rid][0] for rid in rotation_ids if rid in grouped}
            if len(done) == len(rotation_ids):
                return done
            if time.monotonic() > deadline:
                if not strict:
                    return done
                missing = [rid for rid in rotation_ids if rid not in grouped]
                logs = "\n".join(w.log_text()[-3000:] for w in self.workers if w.alive)
                raise AssertionError(f"no terminal event for {missing}; worker logs:\n{logs}")
            time.sleep(0.2)

    def assert_one_terminal_each(self, rotation_ids: list[str] | None = None) -> None:
        """Invariant 8: every rotation on the stream has exactly one terminal event."""
        grouped = self.terminal_counts()
        started = {e["data"]["rotationId"] for e in self.events() if outcome_of(e) == "started"}
        for rid in [*(rotation_ids or []), *started]:
            assert len(grouped.get(rid, [])) == 1, f"{rid}: {grouped.get(rid)}"
        assert all(len(v) == 1 for v in grouped.values()), grouped

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

    def journal(self, *, everything: bool = False) -> list[dict[str, Any]]:
        """The sandbox's journal since the last reset: the Redox Platform API and token
        requests only, unless ``everything`` (the IdPs and the simulated deliveries too)."""
        entries: list[dict[str, Any]] = self.control.journal()["entries"]
        if everything:
            return entries
        return [e for e in entries if e["path"] == REDOX_TOKEN_PATH or e["path"].startswith(REDOX)]

    def credentials(self) -> dict[str, dict[str, Any]]:
        """Sandbox credentials by id."""
        return {c["id"]: c for c in self.control.state()["credentials"]}

    def destination(self, destination_id: str) -> dict[str, Any]:
        """The sandbox's view of one destination."""
        for dest in self.control.state()["destinations"]:
            if dest["id"] == destination_id:
                found: dict[str, Any] = dest
                return found
        raise AssertionError(f"no destination {destination_id}")

    def originals(self) -> dict[str, str]:
        """Destination id -> the credential it references now."""
        return {d["id"]: d["authCredential"] for d in self.control.state()["destinations"]}

    def retire_everything(self, rounds: int = 5) -> int:
        """Run retirement as if every grace period were over; return how many were retired."""
        runtime = Runtime.build(self.settings())
        retired = 0
        try:
            for _ in range(rounds):
                if not runtime.retirement.pending():
                    break
                report = retire_due(
                    runtime.retirement,
                    runtime.redox,
                    runtime.events,
                    runtime.sources.source_for,
                    runtime.ledger,
                    retry_seconds=1,
                    now=time.time() + 10 * 365 * 86400,
                )
                retired += report.retired
        finally:
            runtime.close()
        return retired

    def close(self) -> None:
        """Stop this rig's workers and close its clients (and the stack, if it owns it)."""
        self.stop_workers(kill=True)
        for app in self._apps:
            app.close()
        self._apps.clear()
        if self._owns_stack:
            with contextlib.suppress(Exception):
                self.control.close()
            self.redis.close()
            self.stack.close()
