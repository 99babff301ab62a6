"""Counters the workers write to Redis, batched (read back by :mod:`.collector`).

Worker processes only increment fields of one Redis hash, ``<prefix>:metrics``::

    rotations|<outcome>                      terminal outcomes (once per rotation)
    watch_reverts                            rotations the watch switched back
    step_seconds_sum|<step>, ..._count|<step>  read / issue / rehearse / switch / rollback
    redox_calls|<kind>|<status>              Redox calls by kind and HTTP status ("error")
    ratelimit_wait_seconds_sum, ratelimit_wait_count   shared limiter waits
    ratelimit_throttled|<action>             429s by what they did to the shared limit

A pipeline at the end of a rotation run, at most four times a second per process, and at
least every second. Nothing is kept in process memory, so any number of worker processes
(and prefork children) need no multiprocess mode, and counters survive restarts.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterator

import redis

from worker.store.keys import Keys

__all__ = ["STEPS", "MetricsRecorder"]

#: Rotation steps whose durations are recorded.
STEPS = ("read", "issue", "rehearse", "switch", "rollback")


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

    def rotation_finished(self, outcome: str, error_class: str | None = None) -> None:
        """Count one terminal outcome (and a revert by the watch: ``DeliveriesFailing``)."""
        self.count(f"rotations|{outcome}")
        if error_class == "DeliveriesFailing":
            self.count("watch_reverts")

    def step_finished(self, step: str, seconds: float) -> None:
        """Add one step duration."""
        self.add(f"step_seconds_sum|{step}", seconds)
        self.count(f"step_seconds_count|{step}")

    def ratelimit_waited(self, seconds: float) -> None:
        """Add one rate-limiter acquire and the seconds it waited (often 0)."""
        if seconds > 0:
            self.add("ratelimit_wait_seconds_sum", seconds)
        self.count("ratelimit_wait_count")

    def ratelimit_throttled(self, action: str) -> None:
        """Count one 429 by what it did to the shared limit (``limit``: lowered to a share
        of X-RateLimit-Limit, ``backoff``: cut multiplicatively, ``ignored``: stale)."""
        self.count(f"ratelimit_throttled|{action}")

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
