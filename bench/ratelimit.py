"""Figures 1 and 7: the shared rate limiter at Redox's limit, and below it.

Figure 1, a fleet rotation at the rate-limit bound, without a single 429. The sandbox
answers every request after 50 ms and allows R requests per rolling W seconds
(L = R / W per second); the service's shared limiter is set to the same R and W. N
destinations are triggered at once (``trigger="fleet"``). The bound is the time the calls
need at exactly L: N x 5 / L (five calls a rotation). The figure is wall time (first
trigger to last terminal event) over that bound, and the sandbox's count of 429 answers.
A rolling window lets the first R requests through at once, so the run can beat
N x 5 / L; the steady rate after the first window is printed too.

Figure 7, a fleet against a Redox whose real limit is below the configured budget (another
tool on the same egress IP, or a lower limit than documented). The service is configured
with B requests per W seconds, the sandbox allows only B / k (k = 2, 3, 4; k = 3 is the
goal) and answers 429 with ``X-RateLimit-Limit`` as Redox does. The figure is the share of
requests that drew a 429 and whether every rotation succeeded; the curve is the limit the
shared limiter allowed, window by window, next to what the sandbox accepted and refused.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from bench.harness import SERVICE_WORKERS, Driver, Figure, RunResult, command_for, fmt_counts
from devstack.rig import Rig
from worker.store.limiter import RateLimiter, adaptive_key

__all__ = ["run", "run_adaptive"]

NAME = "ratelimit"
GOAL_RATIO = 1.10
CALLS_PER_ROTATION = 5
#: Redox's traffic in the sandbox's journal (the rest is the IdP and deliveries).
REDOX = ("/platform/", "/v2/auth/token")
LATENCY_MS = 50.0


def run(stack: Rig, quick: bool = False) -> Figure:
    """Rotate N destinations against a rate-limited sandbox with the limiter set alike."""
    count, requests, window = (10, 20, 2.0) if quick else (200, 100, 5.0)
    rate = requests / window
    stack.reset(latency_ms=LATENCY_MS, rate_limit=requests, window=window)
    destinations = stack.seed(count, deliveries=False)
    stack.control.clear_journal()
    env = {
        "ROTATOR_RATE_LIMIT__REQUESTS": str(requests),
        "ROTATOR_RATE_LIMIT__WINDOW_SECONDS": str(window),
    }
    stack.worker("ratelimit", concurrency=16, pool="threads", env=env)
    driver = Driver(stack.settings(**env))
    try:
        result = driver.run(destinations, timeout=60 + 20 * count * CALLS_PER_ROTATION / rate)
    finally:
        driver.close()
    entries = [e for e in stack.control.journal()["entries"] if e["path"].startswith(REDOX)]
    summary = {
        "by_kind": dict(Counter(e["kind"] for e in entries)),
        "by_status": dict(Counter(str(e["status"]) for e in entries)),
    }
    statuses: dict[str, int] = summary["by_status"]
    throttled = statuses.get("429", 0)
    calls = len(entries)
    bound = count * CALLS_PER_ROTATION / rate
    ratio = result.wall / bound
    stamps = sorted(e["ts"] for e in entries)
    first = stamps[0] if stamps else 0.0
    later = [t for t in stamps if t > first + window]
    steady = (len(later) - 1) / (later[-1] - later[0]) if len(later) > 1 else 0.0
    passed = ratio <= GOAL_RATIO and throttled == 0 and result.outcomes.get("succeeded", 0) == count
    details = [
        f"N={count}, sandbox {LATENCY_MS:.0f} ms latency, limit {requests} per rolling "
        f"{window:g} s on both sides (L={rate:g}/s); bound N x {CALLS_PER_ROTATION} / L = "
        f"{bound:.1f} s",
        f"sandbox saw {calls} requests ({fmt_counts(sorted(summary['by_kind'].items()))})",
        f"statuses: {fmt_counts(sorted(statuses.items()))}",
        f"steady rate after the first window: {steady:.2f}/s = {steady / rate:.3f} x L",
        f"outcomes: {fmt_counts(sorted(result.outcomes.items()))}",
    ]
    return Figure(
        name=NAME,
        title=f"fleet of {count} at the rate-limit bound (L={rate:g}/s)",
        value=f"{result.wall:.1f} s wall, {throttled} x 429",
        goal=f"wall / (N x {CALLS_PER_ROTATION} / L) <= {GOAL_RATIO}, 0 x 429",
        ratio=ratio,
        passed=passed,
        command=command_for(NAME, quick),
        details=details,
    )


ADAPTIVE_NAME = "adaptive"
#: At most this share of the requests Redox sees may draw a 429 (real limit = budget / 3).
GOAL_429_SHARE = 0.10
GOAL_DIVISOR = 3


@dataclass
class AdaptivePoint:
    """One run of figure 7: the sandbox at ``budget / divisor``."""

    divisor: int
    real: int
    result: RunResult
    entries: list[dict[str, Any]]
    #: (unix time, requests per window the shared limiter allowed then), sampled.
    allowed: list[tuple[float, float]] = field(default_factory=list)

    @property
    def refused(self) -> int:
        """Requests that drew a 429."""
        return sum(1 for e in self.entries if e["status"] == 429)

    @property
    def share(self) -> float:
        """Share of the requests the sandbox saw that drew a 429."""
        return self.refused / len(self.entries) if self.entries else 0.0


class _AllowedSampler:
    """Samples the shared limiter's allowed limit from this process while a run goes."""

    def __init__(self, limiter: RateLimiter, every: float = 0.25) -> None:
        self.samples: list[tuple[float, float]] = []
        self._limiter = limiter
        self._every = every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="allowed-sampler", daemon=True)

    def __enter__(self) -> _AllowedSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.samples.append((time.time(), self._limiter.allowed()))
            self._stop.wait(self._every)


def run_adaptive(stack: Rig, quick: bool = False) -> Figure:
    """Rotate N destinations against a sandbox at budget / k, for a few k, on one set of
    workers configured with the budget."""
    count, budget, window = (12, 60, 2.0) if quick else (40, 180, 10.0)
    divisors = (GOAL_DIVISOR,) if quick else (2, GOAL_DIVISOR, 4)
    stack.reset(latency_ms=LATENCY_MS, rate_limit=budget, window=window)
    env = {
        "ROTATOR_RATE_LIMIT__REQUESTS": str(budget),
        "ROTATOR_RATE_LIMIT__WINDOW_SECONDS": str(window),
    }
    pool, concurrency, processes = SERVICE_WORKERS
    for n in range(processes):
        stack.worker(f"adaptive-{n}", concurrency=concurrency, pool=pool, env=env)
    driver = Driver(stack.settings(**env))
    probe = RateLimiter(stack.redis, stack.keys, requests=budget, window_seconds=window)
    points: list[AdaptivePoint] = []
    try:
        for divisor in divisors:
            real = budget // divisor
            # A fresh start for every point: the sandbox's window and the shared limiter's
            # log and learnt limit (the workers stay up; they keep only their token).
            stack.control.set_rate_limit(real, window)
            keys = stack.keys
            stack.redis.delete(keys.ratelimit, keys.ratelimit_penalty, adaptive_key(keys))
            destinations = stack.seed(count, deliveries=False)
            stack.control.clear_journal()
            timeout = 60 + 3 * count * CALLS_PER_ROTATION * window / real
            with _AllowedSampler(probe) as sampler:
                result = driver.run(destinations, timeout=timeout)
            entries = [e for e in stack.control.journal()["entries"] if e["path"].startswith(REDOX)]
            points.append(AdaptivePoint(divisor, real, result, entries, sampler.samples))
    finally:
        driver.close()
    goal = next(p for p in points if p.divisor == GOAL_DIVISOR)
    succeeded = all(p.result.outcomes.get("succeeded", 0) == count for p in points)
    bound = count * CALLS_PER_ROTATION * window / goal.real
    details = [
        f"N={count}, sandbox {LATENCY_MS:.0f} ms latency, service budget {budget} per rolling "
        f"{window:g} s, sandbox at budget / k; {processes} worker processes x {pool} x "
        f"{concurrency}; 429s carry X-RateLimit-Limit (no Retry-After, as documented)",
        "k: 429s of requests, wall = x (N x 5 at the sandbox's limit) | outcomes",
        *(
            f"  {p.divisor} ({p.real} per {window:g} s): {p.refused} of {len(p.entries)} "
            f"({p.share:.1%}), {p.result.wall:.1f} s = "
            f"{p.result.wall * p.real / (count * CALLS_PER_ROTATION * window):.2f} x | "
            f"{fmt_counts(sorted(p.result.outcomes.items()))}"
            for p in points
        ),
        f"curve at k = {GOAL_DIVISOR}, per {window:g} s window from the first request:",
        *_curve(goal, window),
    ]
    return Figure(
        name=ADAPTIVE_NAME,
        title=f"fleet of {count}, Redox's real limit at 1/{GOAL_DIVISOR} of the budget",
        value=f"{goal.refused} x 429 of {len(goal.entries)} requests ({goal.share:.1%}), "
        f"{goal.result.wall:.1f} s wall = {goal.result.wall / bound:.2f} x bound",
        goal=f"<= {GOAL_429_SHARE:.0%} of requests draw a 429, every rotation succeeds",
        ratio=goal.share / GOAL_429_SHARE,
        passed=goal.share <= GOAL_429_SHARE and succeeded,
        command=command_for(ADAPTIVE_NAME, quick),
        details=details,
    )


def _curve(point: AdaptivePoint, window: float) -> list[str]:
    """Accepted, 429 and the allowed limit (highest -> lowest sampled) per window of a run."""
    if not point.entries:
        return ["  no requests"]
    first = min(e["ts"] for e in point.entries)
    last = max(e["ts"] for e in point.entries)
    rows = ["  window   accepted   429   allowed per window (sampled every 0.25 s)"]
    for n in range(int((last - first) // window) + 1):
        start, end = first + n * window, first + (n + 1) * window
        inside = [e for e in point.entries if start <= e["ts"] < end]
        refused = sum(1 for e in inside if e["status"] == 429)
        allowed = [a for t, a in point.allowed if start <= t < end]
        shown = "-"
        if allowed:
            high, low = max(allowed), min(allowed)
            shown = f"{low:.0f}" if round(high) == round(low) else f"{high:.0f} -> {low:.0f}"
        rows.append(f"  {n * window:5.0f} s {len(inside) - refused:10d} {refused:5d}   {shown:>7}")
    return rows
