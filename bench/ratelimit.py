"""Figure 1: a fleet rotation at the rate-limit bound, without a single 429.

The sandbox answers every request after 50 ms and allows R requests per rolling W seconds
(L = R / W per second); the service's shared limiter is set to the same R and W. N
destinations are triggered at once (``trigger="fleet"``). The bound is the time the calls
need at exactly L: N x 4 / L. The figure is wall time (first trigger to last terminal event)
over that bound, and the sandbox's count of 429 answers. A rolling window lets the first
R requests through at once, so the run can beat N x 4 / L; the steady rate after the first
window is printed too.
"""

from __future__ import annotations

from bench.harness import BenchStack, Driver, Figure, command_for, fmt_counts

__all__ = ["run"]

NAME = "ratelimit"
GOAL_RATIO = 1.10
CALLS_PER_ROTATION = 4
LATENCY_MS = 50.0


def run(stack: BenchStack, quick: bool = False) -> Figure:
    """Rotate N destinations against a rate-limited sandbox with the limiter set alike."""
    count, requests, window = (10, 20, 2.0) if quick else (200, 100, 5.0)
    rate = requests / window
    stack.prepare(latency_ms=LATENCY_MS, rate_limit=requests, window=window)
    destinations = stack.control.seed(count)
    stack.control.clear_journal()
    env = {
        "ROTATOR_RATE_LIMIT__REQUESTS": str(requests),
        "ROTATOR_RATE_LIMIT__WINDOW_SECONDS": str(window),
    }
    stack.start_worker("ratelimit", concurrency=16, pool="threads", env=env)
    driver = Driver(stack.settings(env))
    try:
        result = driver.run(destinations, timeout=60 + 20 * count * CALLS_PER_ROTATION / rate)
    finally:
        driver.close()
    journal = stack.journal()
    summary = journal["summary"]
    statuses: dict[str, int] = summary["by_status"]
    throttled = statuses.get("429", 0)
    calls = summary["total"]
    bound = count * CALLS_PER_ROTATION / rate
    ratio = result.wall / bound
    stamps = sorted(e["ts"] for e in journal["entries"])
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
