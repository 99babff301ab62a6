"""Prometheus metrics: counters written to Redis by the workers, read back on every scrape.

Worker processes only increment fields of one Redis hash, ``<prefix>:metrics``
(:class:`MetricsRecorder`, and the Redox call counter in :mod:`worker.runtime`)::

    rotations|<outcome>                      terminal outcomes (once per rotation)
    step_seconds_sum|<step>, ..._count|<step>  read / issue / switch / rollback durations
    redox_calls|<kind>|<status>              Redox calls by kind and HTTP status ("error")
    ratelimit_wait_seconds_sum, ratelimit_wait_count   shared limiter waits

:class:`RedisCollector` turns that hash and the per-destination state (credential age, next
due time, needs attention, claims in progress) into metric families each time Prometheus
scrapes ``rotator metrics``. Nothing is kept in process memory, so any number of worker
processes (and prefork children) need no multiprocess mode, and counters survive restarts.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, cast

import redis
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    Metric,
    SummaryMetricFamily,
)

from worker.events import TERMINAL_OUTCOMES
from worker.store.keys import Keys

__all__ = ["STEPS", "MetricsRecorder", "RedisCollector"]

#: Rotation steps whose durations are recorded.
STEPS = ("read", "issue", "switch", "rollback")
_CHUNK = 500


class MetricsRecorder:
    """Increments the counters in Redis; a Redis error never fails a rotation."""

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self._client = client
        self._key = keys.metrics

    def rotation_finished(self, outcome: str) -> None:
        """Count one terminal outcome."""
        with contextlib.suppress(redis.RedisError):
            self._client.hincrby(self._key, f"rotations|{outcome}", 1)

    def step_finished(self, step: str, seconds: float) -> None:
        """Add one step duration."""
        with contextlib.suppress(redis.RedisError), self._client.pipeline(False) as pipe:
            pipe.hincrbyfloat(self._key, f"step_seconds_sum|{step}", seconds)
            pipe.hincrby(self._key, f"step_seconds_count|{step}", 1)
            pipe.execute()

    def ratelimit_waited(self, seconds: float) -> None:
        """Add one rate-limiter acquire and the seconds it waited (often 0)."""
        with contextlib.suppress(redis.RedisError), self._client.pipeline(False) as pipe:
            if seconds > 0:
                pipe.hincrbyfloat(self._key, "ratelimit_wait_seconds_sum", seconds)
            pipe.hincrby(self._key, "ratelimit_wait_count", 1)
            pipe.execute()

    @contextlib.contextmanager
    def timed(self, step: str) -> Iterator[None]:
        """Record the duration of the block as ``step`` (also when it raises)."""
        started = time.monotonic()
        try:
            yield
        finally:
            self.step_finished(step, time.monotonic() - started)


class RedisCollector:
    """A prometheus_client collector reading everything from Redis at scrape time."""

    def __init__(
        self, client: redis.Redis, keys: Keys, *, clock: Callable[[], float] = time.time
    ) -> None:
        self._client = client
        self._keys = keys
        self._clock = clock

    def describe(self) -> list[Metric]:
        """Nothing up front: registering must not read Redis."""
        return []

    def collect(self) -> Iterator[Metric]:
        """The metric families, built from one read of Redis."""
        up = GaugeMetricFamily("rotator_redis_up", "1 when the last scrape could read Redis.")
        try:
            counters = self._counters()
            destinations = self._destinations()
            retirements = int(self._client.zcard(self._keys.retirement))
        except redis.RedisError:
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from _counter_families(counters)
        yield from self._destination_families(destinations)
        pending = GaugeMetricFamily(
            "rotator_retirements_pending", "Old credentials waiting for their grace period."
        )
        pending.add_metric([], retirements)
        yield pending

    def _counters(self) -> dict[str, str]:
        raw = cast(dict[Any, Any], self._client.hgetall(self._keys.metrics))
        return {_text(k): _text(v) for k, v in raw.items()}

    def _destinations(self) -> list[tuple[str, list[Any], Any, int]]:
        keys = self._keys
        members = cast(set[Any], self._client.smembers(keys.destinations))
        members |= cast(set[Any], self._client.smembers(keys.policies))
        ids = sorted(_text(m) for m in members)
        rows: list[tuple[str, list[Any], Any, int]] = []
        for chunk in _chunks(ids):
            with self._client.pipeline(False) as pipe:
                for ident in chunk:
                    pipe.hmget(keys.destination(ident), ["credential_since", "needs_attention"])
                    pipe.zscore(keys.schedule, ident)
                    pipe.exists(keys.active(ident))
                replies = pipe.execute()
            for n, ident in enumerate(chunk):
                state, due, active = replies[3 * n : 3 * n + 3]
                rows.append((ident, list(state), due, int(active)))
        return rows

    def _destination_families(
        self, rows: Sequence[tuple[str, list[Any], Any, int]]
    ) -> Iterator[Metric]:
        now = self._clock()
        age = GaugeMetricFamily(
            "rotator_credential_age_seconds",
            "Seconds since this service last put a new credential on the destination.",
            labels=["destination_id"],
        )
        due = GaugeMetricFamily(
            "rotator_next_rotation_timestamp_seconds",
            "Unix time the destination's next scheduled rotation is due.",
            labels=["destination_id"],
        )
        attention = in_progress = 0
        for ident, (since, flagged), score, active in rows:
            if since:
                age.add_metric([ident], max(0.0, now - float(_text(since))))
            if score is not None:
                due.add_metric([ident], float(score))
            attention += 1 if flagged else 0
            in_progress += active
        yield age
        yield due
        for name, doc, value in (
            ("rotator_destinations", "Destinations the service knows.", len(rows)),
            (
                "rotator_destinations_needing_attention",
                "Destinations in needs_attention (not scheduled until `rotator retry`).",
                attention,
            ),
            ("rotator_rotations_in_progress", "Rotations claimed and not finished.", in_progress),
        ):
            gauge = GaugeMetricFamily(name, doc)
            gauge.add_metric([], value)
            yield gauge


def _counter_families(counters: dict[str, str]) -> Iterator[Metric]:
    rotations = CounterMetricFamily(
        "rotator_rotations", "Rotations by terminal outcome.", labels=["outcome"]
    )
    for outcome in TERMINAL_OUTCOMES:
        rotations.add_metric([outcome], float(counters.get(f"rotations|{outcome}", 0)))
    yield rotations
    steps = SummaryMetricFamily(
        "rotator_rotation_step_duration_seconds",
        "Duration of rotation steps (read, issue, switch incl. verify, rollback).",
        labels=["step"],
    )
    for step in STEPS:
        steps.add_metric(
            [step],
            count_value=int(float(counters.get(f"step_seconds_count|{step}", 0))),
            sum_value=float(counters.get(f"step_seconds_sum|{step}", 0)),
        )
    yield steps
    calls = CounterMetricFamily(
        "rotator_redox_calls",
        "Redox API calls by call kind and HTTP status ('error' when no reply).",
        labels=["call", "status"],
    )
    for field, value in sorted(counters.items()):
        if field.startswith("redox_calls|"):
            _, call, status = field.split("|", 2)
            calls.add_metric([call, status], float(value))
    yield calls
    waits = SummaryMetricFamily(
        "rotator_ratelimit_wait_seconds",
        "Seconds each Redox call waited for a slot of the shared rate limiter.",
    )
    waits.add_metric(
        [],
        count_value=int(float(counters.get("ratelimit_wait_count", 0))),
        sum_value=float(counters.get("ratelimit_wait_seconds_sum", 0)),
    )
    yield waits


def _chunks(items: Sequence[str]) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), _CHUNK):
        yield items[start : start + _CHUNK]


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
