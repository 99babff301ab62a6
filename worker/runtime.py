"""Per-process runtime: the one place that turns Settings into live parts.

A worker process builds one :class:`Runtime` (after the fork, so each child has its own
pooled ``httpx.Client`` and Redis connections) and every task uses it.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import redis
from pydantic import SecretStr

from config.settings import Settings
from worker.events import EventStream
from worker.logging import get_logger
from worker.metrics import MetricsRecorder
from worker.redox.client import RedoxClient
from worker.retirement import RetirementQueue
from worker.rotation.secrets import SecretSource, build_secret_source
from worker.rotation.steps import RotationSteps, StrategyCatalog
from worker.rotation.workflow import AfterRotation, RotationWorkflow
from worker.scheduling.store import ScheduleStore
from worker.store.keys import Keys
from worker.store.limiter import RateLimiter
from worker.store.records import RotationStore

__all__ = ["Runtime", "open_redis_client"]

log = get_logger(__name__)


def open_redis_client(settings: Settings) -> redis.Redis:
    """The service's Redis client (decoded strings, keepalive, retry on timeout)."""
    return redis.Redis.from_url(
        settings.redis_dsn,
        decode_responses=True,
        socket_connect_timeout=5,
        socket_timeout=30,
        socket_keepalive=True,
        health_check_interval=30,
        retry_on_timeout=True,
    )


@dataclass
class Runtime:
    """Live parts built from Settings: Redis, the Redox client, stores, limiter, events."""

    settings: Settings
    redis: redis.Redis
    keys: Keys
    store: RotationStore
    events: EventStream
    limiter: RateLimiter | None
    redox: RedoxClient
    after_rotation: AfterRotation | None = None
    metrics: MetricsRecorder | None = None
    _sources: dict[str, SecretSource] = field(default_factory=dict)

    @classmethod
    def build(cls, settings: Settings) -> Runtime:
        """Build every part from ``settings`` (no network call happens here)."""
        client = open_redis_client(settings)
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
                on_wait=metrics.ratelimit_waited,
            )
        redox = RedoxClient(
            settings.redox, settings.retry, pacer=limiter, observer=metrics.redox_call
        )
        store = RotationStore(
            client,
            keys,
            claim_ttl=settings.lock.claim_ttl_seconds,
            stream_maxlen=settings.events.stream_maxlen,
        )
        events = EventStream(client, keys, maxlen=settings.events.stream_maxlen)
        runtime = cls(settings, client, keys, store, events, limiter, redox, metrics=metrics)
        return runtime

    def workflow(self) -> RotationWorkflow:
        """A rotation workflow wired to this runtime."""
        steps = RotationSteps(
            redox=self.redox,
            store=self.store,
            retry=self.settings.retry,
            catalog=self.catalog,
        )
        return RotationWorkflow(
            steps=steps,
            store=self.store,
            source_for_policy=self.secret_source_in,
            after_rotation=self.after_rotation,
            metrics=self.metrics,
        )

    @cached_property
    def schedule(self) -> ScheduleStore:
        """Due times and synced policies."""
        return ScheduleStore(self.redis, self.keys)

    @cached_property
    def retirement(self) -> RetirementQueue:
        """Old credentials waiting for their grace period to end."""
        return RetirementQueue(self.redis, self.keys)

    @cached_property
    def catalog(self) -> StrategyCatalog:
        """Strategy field catalog (one per process: unknown strategies are fetched once)."""
        return StrategyCatalog(self.redox)

    def secret_source_for(self, destination_id: str) -> SecretSource:
        """The destination's secret source: its registry policy, else the settings default."""
        raw = self.redis.get(self.keys.policy(destination_id))
        return self.secret_source_in(str(raw) if raw else None)

    def secret_source_in(self, policy_json: str | None) -> SecretSource:
        """The secret source a registry policy (JSON, None: no policy) names, else the
        settings default; one instance per distinct spec and process."""
        spec = _policy_source_spec(policy_json)
        if spec is None:
            default = self.settings.secret_source
            spec = {
                "kind": default.kind,
                "length": default.length,
                "command": default.command,
                "url": default.url,
                "token": default.token,
                "timeout": default.timeout_seconds,
            }
        cache_key = json.dumps(
            {k: v for k, v in spec.items() if k != "token"}, sort_keys=True, default=str
        )
        if cache_key not in self._sources:
            self._sources[cache_key] = build_secret_source(spec)
        return self._sources[cache_key]

    def close(self) -> None:
        """Write pending metrics; close the Redox and Redis connections."""
        if self.metrics is not None:
            self.metrics.flush()
        self.redox.close()
        self.redis.close()


def _policy_source_spec(policy_json: str | None) -> dict[str, Any] | None:
    if not policy_json:
        return None
    try:
        policy = json.loads(policy_json)
    except ValueError:
        return None
    spec = policy.get("secret_source") if isinstance(policy, dict) else None
    if not isinstance(spec, dict):
        return None
    spec = dict(spec)
    token_env = spec.pop("token_env", None)
    if token_env:
        spec["token"] = SecretStr(os.environ.get(str(token_env), ""))
    return spec
