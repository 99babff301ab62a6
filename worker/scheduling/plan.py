"""Forecast for ``rotator plan``: what rotates in the next hours and what it costs in Redox calls.

Pure arithmetic over the schedule, the policies and the retirement queue (all passed in), so
it is exact in tests. Cost model (see ARCHITECTURE.md): a rotation makes 4 Redox calls (GET
destination, list credentials, POST credential, PATCH destination); a retirement makes one
DELETE, and each retirement batch lists its environment's destinations once (a batch = the
jobs of one environment that fall due in the same ``retire_every`` slot). Access tokens (one
per process per few minutes) are left out.

A destination rotates again inside the horizon when its interval is short: the forecast
repeats interval policies every ``0.95 * interval`` (the mean of the jitter) and cron
policies at each fire time, and adds each rotation's retirement ``grace`` later.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from config.registry import DestinationPolicy
from worker.retirement import RetirementQueue
from worker.scheduling.due import EARLIEST_FRACTION, cron_fire_after
from worker.scheduling.store import ScheduleStore

__all__ = [
    "CALLS_PER_RETIREMENT",
    "CALLS_PER_ROTATION",
    "Forecast",
    "forecast",
    "plan_from_store",
]

#: GET destination, GET old credential, POST credential, GET destination, PATCH (the watch
#: adds its log searches per environment, shared by the rotations watched there).
CALLS_PER_ROTATION = 5
CALLS_PER_RETIREMENT = 1
#: Stop repeating one destination after this many rotations (a 60 s interval over a week).
MAX_REPEATS = 20_000
_MEAN_FRACTION = (EARLIEST_FRACTION + 1.0) / 2


@dataclass
class Forecast:
    """What ``rotator plan`` prints (see :meth:`as_json`)."""

    now: float
    until: float
    rotations: list[tuple[float, str]] = field(default_factory=list)
    retirements: list[tuple[float, str]] = field(default_factory=list)
    list_calls: int = 0
    budget_requests: int = 0
    budget_window: float = 300.0

    @property
    def redox_calls(self) -> int:
        """Every Redox call forecast inside the horizon."""
        return (
            CALLS_PER_ROTATION * len(self.rotations)
            + CALLS_PER_RETIREMENT * len(self.retirements)
            + self.list_calls
        )

    @property
    def capacity(self) -> float:
        """Calls the rate budget allows over the whole horizon."""
        return self.budget_requests * (self.until - self.now) / self.budget_window

    def peak_window(self) -> tuple[float, int]:
        """(start, calls) of the busiest budget window, windows aligned at ``now``."""
        per: Counter[int] = Counter()
        for when, _ in self.rotations:
            per[self._slot(when)] += CALLS_PER_ROTATION
        for when, _ in self.retirements:
            per[self._slot(when)] += CALLS_PER_RETIREMENT
        if not per:
            return self.now, 0
        slot, calls = max(per.items(), key=lambda item: (item[1], -item[0]))
        return self.now + slot * self.budget_window, calls

    def _slot(self, when: float) -> int:
        return max(0, math.floor((when - self.now) / self.budget_window))

    def as_json(self) -> dict[str, Any]:
        """The ``--json`` document (times as unix seconds, floats rounded)."""
        peak_start, peak_calls = self.peak_window()
        capacity = self.capacity
        first: dict[str, float] = {}
        for when, ident in self.rotations:
            first.setdefault(ident, when)
        return {
            "now": round(self.now, 3),
            "until": round(self.until, 3),
            "hours": round((self.until - self.now) / 3600, 3),
            "rotations": len(self.rotations),
            "destinations": len(first),
            "overdue": sum(1 for when in first.values() if when < self.now),
            "retirements": len(self.retirements),
            "redoxCalls": {
                "rotations": CALLS_PER_ROTATION * len(self.rotations),
                "deletes": CALLS_PER_RETIREMENT * len(self.retirements),
                "lists": self.list_calls,
                "total": self.redox_calls,
            },
            "budget": {
                "requests": self.budget_requests,
                "windowSeconds": self.budget_window,
                "horizonCapacity": round(capacity, 1),
                "share": round(self.redox_calls / capacity, 4) if capacity else None,
                "peakWindowStart": round(peak_start, 3),
                "peakWindowCalls": peak_calls,
                "peakShare": round(peak_calls / self.budget_requests, 4)
                if self.budget_requests
                else None,
                "withinBudget": peak_calls <= self.budget_requests,
            },
            "upcoming": [
                {"destinationId": ident, "due": round(when, 3)}
                for ident, when in sorted(first.items(), key=lambda item: (item[1], item[0]))
            ],
        }


def forecast(
    due: Sequence[tuple[str, float]],
    policies: Mapping[str, DestinationPolicy],
    pending_retirements: Sequence[tuple[str, float, str]],
    *,
    now: float,
    hours: float,
    budget_requests: int,
    budget_window: float,
    retire_every: float,
) -> Forecast:
    """Forecast the ``hours`` after ``now``.

    ``due``: ``(destination id, due time)`` from the schedule (those due by the horizon);
    ``policies``: by destination id (a destination without one rotates once);
    ``pending_retirements``: ``(credential id, due time, environment id)`` already queued.
    """
    until = now + hours * 3600.0
    result = Forecast(now, until, budget_requests=budget_requests, budget_window=budget_window)
    retire_jobs: list[tuple[float, str, str]] = [
        (max(when, now), cred, env) for cred, when, env in pending_retirements if when <= until
    ]
    for ident, first in due:
        policy = policies.get(ident)
        for when in _occurrences(policy, first, until):
            result.rotations.append((when, ident))
            if policy is not None and policy.retire != "never":
                retired = max(when, now) + policy.grace_seconds
                if retired <= until:
                    retire_jobs.append((retired, f"{ident}@{when:.0f}", policy.environment_id))
    result.rotations.sort()
    result.retirements = sorted((when, cred) for when, cred, _ in retire_jobs)
    slots = {
        (env, math.floor((when - now) / max(retire_every, 1.0))) for when, _, env in retire_jobs
    }
    result.list_calls = len(slots)
    return result


def _occurrences(policy: DestinationPolicy | None, first: float, until: float) -> list[float]:
    """Due times of one destination from ``first`` up to ``until``."""
    if first > until:
        return []
    times = [first]
    if policy is None:
        return times
    if policy.interval_seconds is not None:
        step = policy.interval_seconds * _MEAN_FRACTION
        when = first + step
        while when <= until and len(times) < MAX_REPEATS:
            times.append(when)
            when += step
    elif policy.cron is not None:
        when = cron_fire_after(policy.cron, first)
        while when <= until and len(times) < MAX_REPEATS:
            times.append(when)
            when = cron_fire_after(policy.cron, when)
    return times


def plan_from_store(
    schedule: ScheduleStore,
    retirement: RetirementQueue,
    *,
    now: float,
    hours: float,
    budget_requests: int,
    budget_window: float,
    retire_every: float,
) -> Forecast:
    """:func:`forecast` over what Redis holds now: the schedule, the synced policies and
    the retirement queue."""
    until = now + hours * 3600.0
    due = schedule.upcoming(until)
    policies = {p.destination_id: p for p in schedule.all_policies()}
    pending = [
        (credential, when, retirement.job(credential).get("environment_id", ""))
        for credential, when in retirement.pending()
        if when <= until
    ]
    return forecast(
        due, policies, pending, now=now, hours=hours,
        budget_requests=budget_requests, budget_window=budget_window, retire_every=retire_every,
    )  # fmt: skip
