"""Simulated deliveries: every enabled destination gets a message every ``interval_seconds``.

For each message the sandbox obtains an access token with the destination's *currently
attached* credential exactly as Redox would (:mod:`sandbox.oauth_request`), over real HTTP.
Tokens are cached per credential (id and version: a changed credential fetches anew [U]) until
shortly before they expire, so a revoked secret shows only once its cached token runs out
(``flush_tokens`` forgets them). Each message becomes a log entry (:mod:`sandbox.logs`) and
counts in per-destination stats. One message per destination is in flight at a time.

A destination with a token store attached (:mod:`sandbox.token_store`) has a receiver that
checks the ``verification-token`` header: once the token is obtained, the message succeeds
only if the destination's current ``verificationToken`` is one its receiver accepts (its
store's cached AWSCURRENT, or AWSPENDING when it accepts pending tokens).

Runs as an asyncio task in the server's event loop (started and stopped by the app's
lifespan); a failing delivery never stops the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import time
import uuid
from dataclasses import asdict, dataclass
from typing import Any

import httpx

from sandbox.logs import LogStore
from sandbox.oauth_request import DELIVERY_AGENT, TokenOutcome, request_token
from sandbox.state import Credential, Destination, SandboxState, iso_now
from sandbox.token_store import (
    INVALID_TOKEN,
    StoreSettings,
    TokenStore,
    TokenStoreUnavailable,
    check_token,
)

__all__ = ["DeliverySimulator", "DestinationStats"]

OAUTH = "OAuth_2.0_2-legged"
MAX_IN_FLIGHT = 64
#: The lifespan starts the loop before uvicorn listens: the first messages wait this long.
STARTUP_GRACE_SECONDS = 0.5
_SOURCE_NAMESPACE = uuid.UUID("8f6f2d1e-7c1b-4f55-9a53-3f6a1d0c5b21")
_MESSAGES = (("PatientAdmin", "Arrival"), ("Scheduling", "New"), ("Results", "New"))
log = logging.getLogger(__name__)


@dataclass
class DestinationStats:
    """Counters of one destination's deliveries."""

    succeeded: int = 0
    failed: int = 0
    consecutive_failures: int = 0
    last_status: str | None = None
    last_at: str | None = None
    last_credential_id: str | None = None
    last_error: dict[str, Any] | None = None


def _failure(error: str, description: str) -> TokenOutcome:
    """A failure found before any token request (status None: nothing was sent)."""
    return TokenOutcome(error={"status": None, "error": error, "error_description": description})


async def _received(dest: Destination, store: TokenStore, sent: TokenOutcome) -> TokenOutcome:
    """The receiver's answer to a message sent with the destination's current token."""
    presented = dest.verification_token  # read now: what the request carries
    try:
        tokens = await store.tokens()
    except TokenStoreUnavailable as exc:
        return TokenOutcome(
            error={
                "status": 503,
                "error": "token_store_unavailable",
                "error_description": f"the receiver could not read its token store: {exc}",
            }
        )
    if check_token(presented, tokens, accept_pending=store.settings.accept_pending):
        return sent
    return TokenOutcome(error=dict(INVALID_TOKEN))


class DeliverySimulator:
    """The delivery loop, its token cache and its counters."""

    def __init__(self, state: SandboxState, logs: LogStore, interval_seconds: float) -> None:
        self.state = state
        self.logs = logs
        self.interval_seconds = interval_seconds
        self.enabled: set[str] = set()
        self.stats: dict[str, DestinationStats] = {}
        #: Destination id -> its receiver's token store (none: the token is not checked).
        self.token_stores: dict[str, TokenStore] = {}
        self.last_failure: dict[str, Any] | None = None
        self._tokens: dict[tuple[str, int], tuple[str, float]] = {}
        self._fetching: dict[tuple[str, int], asyncio.Future[TokenOutcome]] = {}
        self._heap: list[tuple[float, str]] = []
        self._scheduled: set[str] = set()
        self._in_flight: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._generation = 0
        self._sent = 0
        self._wake: asyncio.Event | None = None
        self._loop_task: asyncio.Task[None] | None = None
        self._client: httpx.AsyncClient | None = None
        self._limit = asyncio.Semaphore(MAX_IN_FLIGHT)

    # --- lifecycle (inside the event loop) ------------------------------------------------

    async def start(self) -> None:
        """Start the loop task and the HTTP client."""
        self._client = httpx.AsyncClient(timeout=10.0, trust_env=False)
        self._wake = asyncio.Event()
        self._loop_task = asyncio.create_task(self._run(), name="sandbox-deliveries")

    async def stop(self) -> None:
        """Cancel the loop and every delivery in flight; close the client."""
        tasks = [t for t in (self._loop_task, *self._tasks) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._loop_task = None
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def reset(self) -> None:
        """Forget destinations, stats and tokens (deliveries in flight are not recorded)."""
        self._generation += 1
        self.enabled.clear()
        self.stats.clear()
        self.last_failure = None
        self.flush_tokens()
        self.token_stores.clear()
        self._heap.clear()
        self._scheduled.clear()

    # --- settings -------------------------------------------------------------------------

    def enable(self, destination_ids: list[str]) -> None:
        """Start delivering to these destinations (the first message goes at once)."""
        now = time.monotonic()
        for dest_id in destination_ids:
            self.enabled.add(dest_id)
            if dest_id not in self._scheduled:
                self._scheduled.add(dest_id)
                heapq.heappush(self._heap, (now, dest_id))
        self._poke()

    def disable(self, destination_ids: list[str]) -> None:
        """Stop delivering to these destinations."""
        self.enabled.difference_update(destination_ids)

    def set_interval(self, seconds: float) -> None:
        """Change the interval; pending messages move no later than one new interval."""
        self.interval_seconds = seconds
        latest = time.monotonic() + seconds
        self._heap = [(min(due, latest), dest_id) for due, dest_id in self._heap]
        heapq.heapify(self._heap)
        self._poke()

    def flush_tokens(self) -> int:
        """Forget every cached token; returns how many there were."""
        count = len(self._tokens)
        self._tokens.clear()
        return count

    def attach_store(self, dest_id: str, settings: StoreSettings) -> TokenStore:
        """Give the destination's receiver a token store (replacing any, with an empty cache)."""
        store = TokenStore(settings)
        self.token_stores[dest_id] = store
        return store

    def detach_store(self, dest_id: str) -> bool:
        """Stop checking the destination's token; False if it had no store."""
        return self.token_stores.pop(dest_id, None) is not None

    def _poke(self) -> None:
        if self._wake is not None:
            self._wake.set()

    # --- the loop -------------------------------------------------------------------------

    async def _run(self) -> None:
        assert self._wake is not None
        await asyncio.sleep(STARTUP_GRACE_SECONDS)
        while True:
            now = time.monotonic()
            while self._heap and self._heap[0][0] <= now:
                due, dest_id = heapq.heappop(self._heap)
                if dest_id not in self.enabled or dest_id not in self.state.destinations:
                    self._scheduled.discard(dest_id)
                    continue
                if dest_id not in self._in_flight:
                    self._in_flight.add(dest_id)
                    task = asyncio.create_task(self._deliver(dest_id, self._generation))
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)
                heapq.heappush(self._heap, (max(due + self.interval_seconds, now), dest_id))
            timeout = self._heap[0][0] - now if self._heap else None
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._wake.wait()

    async def _deliver(self, dest_id: str, generation: int) -> None:
        try:
            async with self._limit:
                await self.deliver_once(dest_id, generation)
        except Exception:  # a broken delivery must not stop the others
            log.exception("sandbox delivery to %s failed unexpectedly", dest_id)
        finally:
            self._in_flight.discard(dest_id)

    async def deliver_once(
        self, dest_id: str, generation: int | None = None
    ) -> dict[str, Any] | None:
        """Send one message to a destination; returns its log view (None if it went away)."""
        generation = self._generation if generation is None else generation
        dest = self.state.destinations.get(dest_id)
        if dest is None:
            return None
        created = iso_now()
        cred = self.state.credentials.get(dest.auth_credential or "")
        if cred is None:
            outcome = _failure("no_auth_credential", "the destination has no auth credential")
        elif cred.auth_strategy != OAUTH:
            outcome = _failure(
                "unsupported_auth_strategy", f"the sandbox delivers with {OAUTH} only"
            )
        else:
            outcome = await self._token(cred)
            store = self.token_stores.get(dest_id)
            if outcome.token is not None and store is not None:
                outcome = await _received(dest, store, outcome)
        if generation != self._generation or dest_id not in self.state.destinations:
            return None  # reset while in flight
        return self._record(dest_id, cred.id if cred else None, created, outcome)

    async def _token(self, cred: Credential) -> TokenOutcome:
        key = (cred.id, cred.version)
        cached = self._tokens.get(key)
        if cached is not None and cached[1] > time.monotonic():
            return TokenOutcome(token=cached[0])
        pending = self._fetching.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[TokenOutcome] = asyncio.get_running_loop().create_future()
        self._fetching[key] = future
        try:
            assert self._client is not None, "deliveries are not started"
            outcome = await request_token(
                self._client, dict(cred.fields), dict(cred.secrets), user_agent=DELIVERY_AGENT
            )
            if outcome.token is not None and outcome.lifetime is not None:
                for stale in [k for k in self._tokens if k[0] == cred.id]:
                    del self._tokens[stale]  # an older version of this credential
                margin = min(60.0, outcome.lifetime * 0.1)
                self._tokens[key] = (outcome.token, time.monotonic() + outcome.lifetime - margin)
            future.set_result(outcome)
            return outcome
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: waiters re-raise it, nobody logs "never retrieved"
            raise
        finally:
            del self._fetching[key]

    def _record(
        self, dest_id: str, cred_id: str | None, created: str, outcome: TokenOutcome
    ) -> dict[str, Any]:
        dest = self.state.destinations[dest_id]
        ok = outcome.token is not None
        status = "succeeded" if ok else "failed"
        finished = iso_now()
        latest: dict[str, Any] = {"id": str(uuid.uuid4()), "attemptAt": created, "status": status}
        if not ok:
            latest["error"] = outcome.error
        data_model, event_type = _MESSAGES[self._sent % len(_MESSAGES)]
        self._sent += 1
        source_id = str(uuid.uuid5(_SOURCE_NAMESPACE, dest.environment_id))
        view = {
            "id": str(uuid.uuid4()),
            "createdAt": created,
            "updatedAt": finished,
            "status": status,
            "type": "send",
            "dataModel": data_model,
            "eventType": event_type,
            "dataMode": "realtime",
            "serviceRegion": "US",
            "source": {"id": source_id, "name": "sandbox-ehr"},
            "destination": {"id": dest.id, "name": dest.name},
            "attempts": {"total": 1, "latest": latest},
        }
        self.logs.add(dest.environment_id, view)
        stats = self.stats.setdefault(dest_id, DestinationStats())
        stats.last_status, stats.last_at, stats.last_credential_id = status, finished, cred_id
        if ok:
            stats.succeeded += 1
            stats.consecutive_failures = 0
        else:
            stats.failed += 1
            stats.consecutive_failures += 1
            stats.last_error = {"at": finished, "credential_id": cred_id, **(outcome.error or {})}
            self.last_failure = {"destination_id": dest_id, **stats.last_error}
        return view

    # --- views ----------------------------------------------------------------------------

    def settings_view(self) -> dict[str, Any]:
        """Interval, enabled destinations and whether the loop runs."""
        return {
            "interval_seconds": self.interval_seconds,
            "enabled": sorted(self.enabled),
            "running": self._loop_task is not None and not self._loop_task.done(),
            "cached_tokens": len(self._tokens),
            "token_stores": sorted(self.token_stores),
        }

    def stats_view(self) -> dict[str, Any]:
        """Per-destination counters, totals and the most recent failure."""
        return {
            "interval_seconds": self.interval_seconds,
            "destinations": {d: asdict(s) for d, s in self.stats.items()},
            "totals": {
                "succeeded": sum(s.succeeded for s in self.stats.values()),
                "failed": sum(s.failed for s in self.stats.values()),
            },
            "last_failure": self.last_failure,
            "logs_kept": len(self.logs),
        }
