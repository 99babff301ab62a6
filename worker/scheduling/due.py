"""Due-time arithmetic: when a destination should rotate next. Pure functions.

The clock (``now``) and the randomness (``rng``) are passed in, so tests are exact.
Jitter spreads a fleet: an interval policy rotates between 90 % and 100 % of its interval
(never later than the policy asks), a cron policy up to ``min(10 % of its period, 1h)``
after the fire time. When a policy has a daily UTC window, every result lies inside it:
the time is drawn uniformly from the part of the allowed range that is inside a window
occurrence, or, when the range misses every occurrence, from the next occurrence after it.
"""

from __future__ import annotations

import math
from typing import Protocol

from croniter import croniter

from config.durations import in_window
from config.registry import DestinationPolicy

__all__ = [
    "CRON_JITTER_CAP_SECONDS",
    "Rng",
    "catchup_due",
    "cron_fire_after",
    "first_due",
    "fit_window",
    "next_due",
]

DAY = 86400.0
#: A cron policy starts at most this long after its fire time.
CRON_JITTER_CAP_SECONDS = 3600.0
#: Interval jitter: rotate between this fraction of the interval and all of it.
EARLIEST_FRACTION = 0.9

Window = tuple[int, int]


class Rng(Protocol):
    """The part of :class:`random.Random` this module uses."""

    def uniform(self, a: float, b: float) -> float:
        """A float in ``[a, b]``."""
        ...


def first_due(
    policy: DestinationPolicy,
    now: float,
    rng: Rng,
    *,
    last_rotated_at: float | None,
    catchup_seconds: float,
) -> float:
    """Due time of a destination that just joined the schedule (or whose policy changed).

    No history: uniform in ``[now, now + interval]`` (cron: next fire + jitter). Overdue
    (``last + interval`` already past): ``now + uniform(0, catchup_seconds)``. Otherwise
    in ``[last + 0.9 * interval, last + interval]``, never before ``now``.
    """
    if last_rotated_at is None:
        if policy.cron is not None:
            return _cron_due(policy.cron, now, policy.window, rng)
        return _pick(now, now + _interval(policy), policy.window, rng)
    if policy.cron is not None:
        if cron_fire_after(policy.cron, last_rotated_at) <= now:
            return catchup_due(policy, now, catchup_seconds, rng)
        return _cron_due(policy.cron, last_rotated_at, policy.window, rng)
    interval = _interval(policy)
    latest = last_rotated_at + interval
    if latest <= now:
        return catchup_due(policy, now, catchup_seconds, rng)
    earliest = max(now, last_rotated_at + EARLIEST_FRACTION * interval)
    return _pick(earliest, latest, policy.window, rng)


def next_due(policy: DestinationPolicy, rotated_at: float, rng: Rng) -> float:
    """Due time after a rotation finished at ``rotated_at``.

    Interval: uniform in ``[rotated_at + 0.9 * interval, rotated_at + interval]``.
    Cron: the next fire after ``rotated_at`` plus ``uniform(0, min(10% of period, 1h))``.
    """
    if policy.cron is not None:
        return _cron_due(policy.cron, rotated_at, policy.window, rng)
    interval = _interval(policy)
    return _pick(
        rotated_at + EARLIEST_FRACTION * interval, rotated_at + interval, policy.window, rng
    )


def catchup_due(policy: DestinationPolicy | None, now: float, catchup: float, rng: Rng) -> float:
    """Due time of an overdue destination: ``now + uniform(0, catchup)``, inside its window."""
    window = policy.window if policy is not None else None
    return _pick(now, now + max(0.0, catchup), window, rng)


def fit_window(ts: float, window: Window | None, rng: Rng) -> float:
    """``ts`` if it lies inside the daily UTC ``window``, else a uniform time in the next one."""
    if window is None or in_window(ts, window):
        return ts
    start, end = _next_occurrence(ts, window)
    return _uniform(start, end, rng)


def cron_fire_after(cron: str, ts: float) -> float:
    """The first fire time of the UTC ``cron`` expression strictly after ``ts``."""
    return float(croniter(cron, ts).get_next(float))


def _cron_due(cron: str, after: float, window: Window | None, rng: Rng) -> float:
    it = croniter(cron, after)
    fire = float(it.get_next(float))
    period = float(it.get_next(float)) - fire
    jitter = min(0.1 * period, CRON_JITTER_CAP_SECONDS)
    return _pick(fire, fire + jitter, window, rng)


def _interval(policy: DestinationPolicy) -> float:
    if policy.interval_seconds is None:
        raise ValueError(f"policy of {policy.destination_id} has neither interval nor cron")
    return policy.interval_seconds


def _pick(lo: float, hi: float, window: Window | None, rng: Rng) -> float:
    """Uniform over ``[lo, hi]`` restricted to the window (or the next occurrence after lo)."""
    if window is None:
        return rng.uniform(lo, hi)
    segments = _occurrences(lo, hi, window)
    total = sum(end - start for start, end in segments)
    if total <= 0:
        if in_window(lo, window):  # a zero-length range sitting inside the window
            return lo
        return fit_window(lo, window, rng)
    target = rng.uniform(0.0, total)
    for start, end in segments:
        length = end - start
        if target <= length:
            return min(start + target, math.nextafter(end, start))
        target -= length
    start, end = segments[-1]
    return math.nextafter(end, start)


def _occurrences(lo: float, hi: float, window: Window) -> list[tuple[float, float]]:
    """The parts of ``[lo, hi]`` inside the window, in time order."""
    out: list[tuple[float, float]] = []
    day = math.floor(lo / DAY) - 1
    while day * DAY <= hi:
        start, end = _occurrence(day, window)
        low, high = max(start, lo), min(end, hi)
        if high > low:
            out.append((low, high))
        day += 1
    return out


def _occurrence(day: int, window: Window) -> tuple[float, float]:
    """The occurrence of ``window`` that starts on UTC day number ``day``."""
    start_min, end_min = window
    start = day * DAY + start_min * 60.0
    end = day * DAY + end_min * 60.0
    if end_min <= start_min:
        end += DAY
    return start, end


def _next_occurrence(ts: float, window: Window) -> tuple[float, float]:
    """The first window occurrence that starts after ``ts``."""
    day = math.floor(ts / DAY)
    start, end = _occurrence(day, window)
    if start <= ts:
        start, end = _occurrence(day + 1, window)
    return start, end


def _uniform(start: float, end: float, rng: Rng) -> float:
    return min(rng.uniform(start, end), math.nextafter(end, start))
