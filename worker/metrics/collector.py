"""Prometheus metrics, read from Redis at every scrape (``rotator metrics``).

:class:`RedisCollector` turns the counters the workers write (:mod:`.recorder`), the
per-destination state (credential age and the age its policy allows, next due time, needs
attention), the claimed rotations (in progress, the oldest one not watching), the worker
heartbeats and the shared limiter's state into metric families.
"""

from __future__ import annotations

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

from config.registry import DestinationPolicy
from worker.events import TERMINAL_OUTCOMES
from worker.metrics.recorder import STEPS
from worker.store.destinations import StateField
from worker.store.keys import Keys
from worker.store.limiter import adaptive_key, allowed_share

__all__ = ["RedisCollector"]

_CHUNK = 500


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
            oldest = self._oldest_running([row[3] for row in destinations if row[3]])
            workers = sum(1 for _ in self._client.scan_iter(self._keys.worker("*"), count=1000))
            retirements = int(self._client.zcard(self._keys.retirement))
            adaptive = cast(dict[Any, Any], self._client.hgetall(adaptive_key(self._keys)))
        except redis.RedisError:
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from _counter_families(counters)
        yield from self._destination_families(destinations)
        for name, doc, value in (
            (
                "rotator_rotation_oldest_running_seconds",
                "Age of the oldest claimed rotation that is not watching (0: none).",
                oldest,
            ),
            ("rotator_workers_up", "Worker processes whose heartbeat is fresh.", workers),
        ):
            gauge = GaugeMetricFamily(name, doc)
            gauge.add_metric([], value)
            yield gauge
        pending = GaugeMetricFamily(
            "rotator_retirements_pending", "Old credentials waiting for their grace period."
        )
        pending.add_metric([], retirements)
        yield pending
        allowed = GaugeMetricFamily(
            "rotator_ratelimit_allowed_ratio",
            "Share of the configured Redox budget the shared limiter allows now (429s lower it).",
        )
        state = {_text(k): _text(v) for k, v in adaptive.items()}
        allowed.add_metric([], allowed_share(state, self._clock() * 1000))
        yield allowed

    def _counters(self) -> dict[str, str]:
        raw = cast(dict[Any, Any], self._client.hgetall(self._keys.metrics))
        return {_text(k): _text(v) for k, v in raw.items()}

    def _destinations(self) -> list[tuple[str, list[Any], Any, str | None, float | None]]:
        """Per destination: state fields, due time, active rotation, allowed credential age."""
        keys = self._keys
        members = cast(set[Any], self._client.smembers(keys.destinations))
        members |= cast(set[Any], self._client.smembers(keys.policies))
        ids = sorted(_text(m) for m in members)
        rows: list[tuple[str, list[Any], Any, str | None, float | None]] = []
        for chunk in _chunks(ids):
            with self._client.pipeline(False) as pipe:
                for ident in chunk:
                    pipe.hmget(
                        keys.destination(ident),
                        [StateField.CREDENTIAL_SINCE, StateField.NEEDS_ATTENTION],
                    )
                    pipe.zscore(keys.schedule, ident)
                    pipe.get(keys.active(ident))
                    pipe.get(keys.policy(ident))
                replies = pipe.execute()
            for n, ident in enumerate(chunk):
                state, due, active, policy = replies[4 * n : 4 * n + 4]
                active_id = _text(active) if active else None
                rows.append((ident, list(state), due, active_id, _max_age(policy)))
        return rows

    def _oldest_running(self, rotation_ids: list[str]) -> float:
        """Seconds since the oldest of these rotations was requested, watching ones aside."""
        if not rotation_ids:
            return 0.0
        with self._client.pipeline(False) as pipe:
            for rid in rotation_ids:
                pipe.hmget(self._keys.rotation(rid), ["status", "requested_at"])
            rows = pipe.execute()
        now = self._clock()
        ages = [
            now - float(_text(requested))
            for status, requested in rows
            if requested and _text(status or "") != "watching"
        ]
        return max(0.0, max(ages, default=0.0))

    def _destination_families(
        self, rows: Sequence[tuple[str, list[Any], Any, str | None, float | None]]
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
        max_age = GaugeMetricFamily(
            "rotator_credential_max_age_seconds",
            "The credential age the destination's policy allows (interval plus grace).",
            labels=["destination_id"],
        )
        attention = in_progress = 0
        for ident, (since, flagged), score, active, allowed in rows:
            if since:
                age.add_metric([ident], max(0.0, now - float(_text(since))))
            if score is not None:
                due.add_metric([ident], float(score))
            if allowed is not None:
                max_age.add_metric([ident], allowed)
            attention += 1 if flagged else 0
            in_progress += 1 if active else 0
        yield age
        yield max_age
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
    reverts = CounterMetricFamily(
        "rotator_watch_reverts",
        "Rotations the watch switched back because deliveries failed after the switch.",
    )
    reverts.add_metric([], float(counters.get("watch_reverts", 0)))
    yield reverts
    resumed = CounterMetricFamily(
        "rotator_rotations_resumed",
        "Rotations beat sent again: their worker stopped mid-run, or the broker lost the message.",
    )
    resumed.add_metric([], float(counters.get("rotations_resumed", 0)))
    yield resumed
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
    throttled = CounterMetricFamily(
        "rotator_ratelimit_throttled",
        "Redox 429s by what they did to the shared limit (limit, backoff, ignored).",
        labels=["action"],
    )
    for field, value in sorted(counters.items()):
        if field.startswith("ratelimit_throttled|"):
            throttled.add_metric([field.split("|", 1)[1]], float(value))
    yield throttled


def _max_age(raw: Any) -> float | None:
    """Interval plus grace of a stored policy (None for none, or a cron schedule)."""
    if not raw:
        return None
    try:
        policy = DestinationPolicy.model_validate_json(_text(raw))
    except ValueError:
        return None
    if policy.interval_seconds is None:
        return None
    return policy.interval_seconds + policy.grace_seconds


def _chunks(items: Sequence[str]) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), _CHUNK):
        yield items[start : start + _CHUNK]


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
