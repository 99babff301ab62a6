"""Per-process runtime: the one place that turns Settings into live parts.

Every process builds one :class:`Runtime` from its Settings and passes it down: a worker
(after the fork, so each child has its own pooled ``httpx.Client`` and Redis connections),
beat, and each CLI command. Nothing here touches the network until a part is used.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import httpx
from redis import Redis

from config.settings import Settings
from worker.events import EventStream
from worker.logging import get_logger
from worker.metrics import MetricsRecorder
from worker.redox.client import RedoxClient
from worker.rehearsal import REQUEST_TIMEOUT as REHEARSAL_TIMEOUT
from worker.retirement import RetirementQueue
from worker.rotation.outcomes import AfterRotation, Finisher
from worker.rotation.secret_steps import SecretSteps
from worker.rotation.steps import RotationSteps, StrategyCatalog
from worker.rotation.token_steps import TokenSteps
from worker.rotation.workflow import RotationWorkflow
from worker.scheduling.store import ScheduleStore
from worker.scheduling.token_schedule import TokenSchedule
from worker.secrets.catalog import SourceCatalog
from worker.secrets.idp_http import build_http_client
from worker.store.connection import open_redis
from worker.store.credentials import CredentialLedger
from worker.store.destinations import DestinationStates
from worker.store.keys import Keys
from worker.store.limiter import RateLimiter
from worker.store.records import RotationStore
from worker.watch.store import WatchStore

__all__ = ["Runtime"]

log = get_logger(__name__)


@dataclass
class Runtime:
    """Live parts built from Settings: Redis, the Redox client, stores, limiter, events."""

    settings: Settings
    redis: Redis
    keys: Keys
    store: RotationStore
    events: EventStream
    limiter: RateLimiter | None
    redox: RedoxClient
    metrics: MetricsRecorder
    after_rotation: AfterRotation | None = None

    @classmethod
    def build(cls, settings: Settings, client: Redis | None = None) -> Runtime:
        """Build every part from ``settings`` (no network call happens here); ``client``
        replaces the Redis client :func:`~worker.store.connection.open_redis` would open."""
        client = client if client is not None else open_redis(settings)
        keys = Keys(settings.key_prefix)
        metrics = MetricsRecorder(client, keys)
        limiter = None
        if settings.rate_limit.enabled:
            limiter = RateLimiter(
                client,
                keys,
                requests=settings.rate_limit.requests,
                window_seconds=settings.rate_limit.window_seconds,
                max_wait_seconds=settings.rate_limit.max_wait_seconds,
                # A 429 without Retry-After pauses every worker, never longer than a backoff.
                default_pause_seconds=min(2.0, settings.retry.backoff_max),
                limit_share=settings.rate_limit.limit_share,
                redox_window_seconds=settings.rate_limit.redox_window_seconds,
                learned_limit_windows=settings.rate_limit.learned_limit_windows,
                backoff_factor=settings.rate_limit.backoff_factor,
                recovery_share=settings.rate_limit.recovery_share,
                burst_share=settings.rate_limit.burst_share,
                min_share=settings.rate_limit.min_share,
                on_wait=metrics.ratelimit_waited,
                on_throttled=metrics.ratelimit_throttled,
            )
        redox = RedoxClient(
            settings.redox, settings.retry, pacer=limiter, observer=metrics.redox_call
        )
        store = RotationStore(
            client,
            keys,
            claim_ttl=settings.lock.claim_ttl_seconds,
            stream_maxlen=settings.events.stream_maxlen,
            start_within=settings.lock.ttl_seconds,
            replicated=settings.sentinel_target is not None,
        )
        events = EventStream(client, keys, maxlen=settings.events.stream_maxlen)
        return cls(settings, client, keys, store, events, limiter, redox, metrics)

    def workflow(self) -> RotationWorkflow:
        """A rotation workflow wired to this runtime."""
        steps = RotationSteps(
            redox=self.redox,
            store=self.store,
            retry=self.settings.retry,
            catalog=self.catalog,
            ledger=self.ledger,
        )
        secrets = SecretSteps(
            self.store, self.ledger, self.redis, self.keys, self.settings, self.rehearsal_http
        )
        finisher = Finisher(self.store, self.after_rotation, self.metrics)
        return RotationWorkflow(
            steps=steps,
            secrets=secrets,
            store=self.store,
            source_for=self.sources.source_for,
            verify=self.settings.verify,
            watch=self.watch,
            finisher=finisher,
            tokens=TokenSteps(self.redox, self.store, self.sources),
            metrics=self.metrics,
        )

    @cached_property
    def rehearsal_http(self) -> httpx.Client:
        """The client every rehearsal of this process is sent with (no cookies, no
        redirects; connections to an IdP are kept for the next rehearsal)."""
        return build_http_client(REHEARSAL_TIMEOUT, None)

    @cached_property
    def schedule(self) -> ScheduleStore:
        """Due times and synced policies."""
        return ScheduleStore(self.redis, self.keys)

    @cached_property
    def token_schedule(self) -> TokenSchedule:
        """Due times of verification-token rotations."""
        return TokenSchedule(self.redis, self.keys)

    @cached_property
    def states(self) -> DestinationStates:
        """Per-destination state (credential in place, last rotation, flags)."""
        return DestinationStates(self.redis, self.keys)

    @cached_property
    def ledger(self) -> CredentialLedger:
        """The credentials this service made: their IdP secret ids and lineage."""
        return CredentialLedger(self.redis, self.keys)

    @cached_property
    def watch(self) -> WatchStore:
        """Which rotations are being watched after their switch."""
        return WatchStore(self.redis, self.keys)

    @cached_property
    def retirement(self) -> RetirementQueue:
        """Old credentials waiting for their grace period to end."""
        return RetirementQueue(self.redis, self.keys)

    @cached_property
    def catalog(self) -> StrategyCatalog:
        """Strategy field catalog (one per process: unknown strategies are fetched once)."""
        return StrategyCatalog(self.redox)

    @cached_property
    def sources(self) -> SourceCatalog:
        """Each destination's secret source (registry file, else Settings)."""
        return SourceCatalog(self.settings)

    def close(self) -> None:
        """Write pending metrics; close the Redox and Redis connections."""
        self.metrics.flush()
        if "rehearsal_http" in self.__dict__:
            self.rehearsal_http.close()
        self.redox.close()
        self.redis.close()
