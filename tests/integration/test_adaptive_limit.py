"""A 429 slows every worker at once: the shared limiter adapts to Redox's real limit.

Real processes: redis-server, the sandbox over HTTP and two ``rotator worker`` processes.
The sandbox allows a third of the budget the service is configured with (Redox's real limit
below the documented one, or another tool on the same egress IP). Every setting is the
default except the budget and its window: a 5 s window instead of Redox's 300 s, so the run
takes seconds; the limiter's adaptive settings are expressed per window, so this is the
default behaviour time-compressed (the 0.25 s transit allowance is the one absolute term,
and it only makes the short window more conservative).
"""

from __future__ import annotations

import pytest

from devstack.rig import Rig
from worker.store.limiter import RateLimiter
from worker.trigger import request_rotation

pytestmark = pytest.mark.integration

#: What the sandbox allows (Redox's real limit) per rolling WINDOW seconds.
REAL_LIMIT = 60
WINDOW = 5.0
#: The configured budget: three times what Redox really allows.
BUDGET = 3 * REAL_LIMIT
DESTINATIONS = 40
#: The goal: at most this share of the requests Redox sees draw a 429.
MAX_429_SHARE = 0.10

#: The test rig's tight retry, lease and time-limit budgets put back to their defaults:
#: the proof is about the service as shipped, only the rate window is scaled down.
DEFAULTS = {
    "ROTATOR_RETRY__MAX_ATTEMPTS": "5",
    "ROTATOR_RETRY__MAX_SECONDS": "30",
    "ROTATOR_RETRY__BACKOFF_INITIAL": "0.5",
    "ROTATOR_RETRY__BACKOFF_MAX": "8",
    "ROTATOR_RETRY__TASK_BACKOFF_INITIAL": "5",
    "ROTATOR_RETRY__TASK_BACKOFF_MAX": "300",
    "ROTATOR_LOCK__TTL_SECONDS": "60",
    "ROTATOR_LOCK__RENEW_EVERY_SECONDS": "15",
    "ROTATOR_CELERY__SOFT_TIME_LIMIT": "240",
    "ROTATOR_CELERY__TIME_LIMIT": "300",
    "ROTATOR_CELERY__VISIBILITY_TIMEOUT": "3600",
}


@pytest.mark.timeout(180)
@pytest.mark.parametrize("retry_after", [False, True], ids=["limit-header", "retry-after"])
def test_a_429_slows_every_worker(rig: Rig, retry_after: bool) -> None:
    """With Redox at a third of the budget, <= 10 % of requests draw a 429, every rotation
    succeeds, and once the limiter has learnt the limit no worker draws another 429."""
    rig.control.set_faults(latency_ms=50)  # Redox answers in 50-300 ms; 429s come at once
    rig.control.set_rate_limit(REAL_LIMIT, WINDOW, send_retry_after=retry_after)
    dests = rig.seed(DESTINATIONS)
    rig.control.clear_journal()
    env = {
        **DEFAULTS,
        "ROTATOR_RATE_LIMIT__REQUESTS": str(BUDGET),
        "ROTATOR_RATE_LIMIT__WINDOW_SECONDS": str(WINDOW),
    }
    workers = [rig.worker(name, concurrency=8, env=env) for name in ("adapt-a", "adapt-b")]
    app, store = rig.app(), rig.store()
    ids = [request_rotation(app, store, d, trigger="fleet").rotation_id for d in dests]

    outcomes = rig.wait_terminal(ids, timeout=150, strict=False)

    journal = rig.journal()
    refused = [e for e in journal if e["status"] == 429]
    share = len(refused) / len(journal)
    detail = (
        f"{len(refused)} x 429 of {len(journal)} requests ({share:.1%}); "
        f"{sum(o == 'succeeded' for o in outcomes.values())}/{len(ids)} rotations succeeded"
    )
    print(detail)
    assert len(journal) > 2 * REAL_LIMIT, detail  # the budget really had to adapt
    assert share <= MAX_429_SHARE, detail
    assert len(outcomes) == len(ids) and set(outcomes.values()) == {"succeeded"}, detail
    # Every 429 came in the first burst, before the limit was known: the burst ends when
    # the requests already on their way when the first 429 was answered are answered.
    first = min(e["ts"] for e in refused) if refused else 0.0
    late = [e for e in refused if e["ts"] > first + 1.0]
    assert late == [], f"429s after the limit was learnt: {len(late)}; {detail}"
    for worker in workers:  # both processes rotated, and both obeyed the one limiter
        assert "rotation started" in worker.log_text()
    # The limit they obeyed: 80 % of what X-RateLimit-Limit said, held for 12 windows.
    shared = RateLimiter(rig.redis, rig.keys, requests=BUDGET, window_seconds=WINDOW)
    assert shared.allowed() == pytest.approx(0.8 * REAL_LIMIT, abs=0.5)
    rig.assert_one_terminal_each(ids)
