"""Prometheus metrics: counters written to Redis by the workers, read back on every scrape.

Worker processes only increment fields of one Redis hash, ``<prefix>:metrics``
(:class:`MetricsRecorder`, batched: a pipeline at the end of a rotation run, at most four
times a second per process, and at least every second)::

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
import os
import threading
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
    """Increments the counters in Redis; a Redis error never fails a rotation.

    Increments are added up in memory and written in one pipeline by :meth:`flush`: a
    rotation run ends with :meth:`flush_if_due` (a lone rotation shows up at once; under
    load, runs share a pipeline at most every ``min_interval`` seconds), and a daemon thread
    flushes whatever is pending every ``flush_seconds`` (so calls made outside a rotation,
    e.g. retirement, show up too).
    """

    def __init__(
        self,
        client: redis.Redis,
        keys: Keys,
        *,
        flush_seconds: float = 1.0,
        min_interval: float = 0.25,
    ) -> None:
        self._client = client
        self._key = keys.metrics
        self._flush_seconds = flush_seconds
        self._min_interval = min_interval
        self._last_flush = 0.0
        self._lock = threading.Lock()
        self._ints: dict[str, int] = {}
        self._floats: dict[str, float] = {}
        self._flusher: threading.Thread | None = None
        self._pid = os.getpid()

    def count(self, name: str, amount: int = 1) -> None:
        """Add ``amount`` to the integer counter ``name`` (written at the next flush)."""
        with self._lock:
            self._ints[name] = self._ints.get(name, 0) + amount
            self._ensure_flusher()

    def add(self, name: str, amount: float) -> None:
        """Add ``amount`` to the float counter ``name`` (written at the next flush)."""
        with self._lock:
            self._floats[name] = self._floats.get(name, 0.0) + amount
            self._ensure_flusher()

    def flush_if_due(self) -> None:
        """:meth:`flush`, unless another flush ran less than ``min_interval`` ago."""
        if time.monotonic() - self._last_flush >= self._min_interval:
            self.flush()

    def flush(self) -> None:
        """Write every pending increment in one pipeline (dropped if Redis fails)."""
        with self._lock:
            ints, floats = self._ints, self._floats
            self._ints, self._floats = {}, {}
            self._last_flush = time.monotonic()
        if not ints and not floats:
            return
        with contextlib.suppress(redis.RedisError), self._client.pipeline(False) as pipe:
            for name, amount in ints.items():
                pipe.hincrby(self._key, name, amount)
            for name, value in floats.items():
                pipe.hincrbyfloat(self._key, name, value)
            pipe.execute()

    def rotation_finished(self, outcome: str) -> None:
        """Count one terminal outcome."""
        self.count(f"rotations|{outcome}")

    def step_finished(self, step: str, seconds: float) -> None:
        """Add one step duration."""
        self.add(f"step_seconds_sum|{step}", seconds)
        self.count(f"step_seconds_count|{step}")

    def ratelimit_waited(self, seconds: float) -> None:
        """Add one rate-limiter acquire and the seconds it waited (often 0)."""
        if seconds > 0:
            self.add("ratelimit_wait_seconds_sum", seconds)
        self.count("ratelimit_wait_count")

    def redox_call(self, kind: str, status: int | None, seconds: float) -> None:
        """Count one Redox call by kind and HTTP status (``error`` when no reply)."""
        self.count(f"redox_calls|{kind}|{status or 'error'}")

    @contextlib.contextmanager
    def timed(self, step: str) -> Iterator[None]:
        """Record the duration of the block as ``step`` (also when it raises)."""
        started = time.monotonic()
        try:
            yield
        finally:
            self.step_finished(step, time.monotonic() - started)

    def _ensure_flusher(self) -> None:
        """Start the background flusher in this process (again after a fork)."""
        if self._flusher is not None and self._pid == os.getpid():
            return
        self._pid = os.getpid()
        self._flusher = threading.Thread(
            target=self._flush_forever, name="metrics-flush", daemon=True
        )
        self._flusher.start()

    def _flush_forever(self) -> None:
        while True:
            time.sleep(self._flush_seconds)
            self.flush()


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
