"""Figure 8: a fleet rotation with the watch on, at the default watch and poll settings.

200 destinations in 10 environments, each an OAuth client of the sandbox's Okta-style IdP
with deliveries on, rotated at once through the shared rate limiter (the sandbox and the
service both at R requests per rolling W seconds, 50 ms latency). Every rotation issues,
rehearses, creates, re-reads, switches, and is then watched for
``ROTATOR_VERIFY__WATCH_SECONDS`` (900 s by default), looked at every
``ROTATOR_VERIFY__POLL_SECONDS`` (60 s): one log search per environment and poll for all its
watched rotations, and one list of the environment's destinations at the end of a window.

The service runs at its defaults but for the sandbox's IdP and rate limit (and beat's
1 s tick): the grace period too (24 h), so no old credential is retired during the run.
Two numbers, both counted by the sandbox: Redox calls per rotation (the rotation's own
calls, the searches and the end-of-window lists; tokens apart, and the DELETE each old
credential costs at retirement counted apart, +1 per rotation, as in figure 2), against
the goal of 6; and the time until the last destination was switched, over the bound
N x 5 / L (the five calls before a switch at exactly the rate limit), against 1.10. The
quick size (CI) watches for 8 s, polled every 2 s, and makes no claim on either number.
"""

from __future__ import annotations

import time
from collections import Counter
from datetime import datetime

from bench.harness import Driver, Figure, command_for, fmt_counts
from config.registry import DEFAULT_GRACE_SECONDS
from devstack.rig import Rig
from devstack.stack import idp_settings

__all__ = ["run"]

NAME = "watch"
GOAL_CALLS = 6.0
GOAL_RATIO = 1.10
CALLS_BEFORE_SWITCH = 5
LATENCY_MS = 50.0
REDOX = ("/platform/", "/v2/auth/token")
#: Counted apart: Redox's own token requests, and the retirement DELETE (+1 per rotation).
APART = ("token", "delete_credential")


def run(stack: Rig, quick: bool = False) -> Figure:
    """Rotate a fleet with the watch on; count every Redox call until the last watch ends."""
    count, envs, watch, poll = (20, 4, 8, 2) if quick else (200, 10, 900, 60)
    requests, window = 100, 5.0
    rate = requests / window
    stack.reset(latency_ms=LATENCY_MS, rate_limit=requests, window=window)
    stack.control.set_deliveries(interval_seconds=10.0)
    destinations: list[str] = []
    for _ in range(envs):
        environment = stack.control.add_environment()
        destinations += stack.control.seed(count // envs, idp="okta", environment_id=environment)
    stack.control.clear_journal()
    env = {
        **idp_settings(stack.control, "okta"),
        "ROTATOR_RATE_LIMIT__REQUESTS": str(requests),
        "ROTATOR_RATE_LIMIT__WINDOW_SECONDS": str(window),
        "ROTATOR_VERIFY__WATCH_SECONDS": str(watch),
        "ROTATOR_VERIFY__POLL_SECONDS": str(poll),
        "ROTATOR_SCHEDULER__TICK_SECONDS": "1",
        # The bench rig retires at once (grace 0); a user's old credentials wait a day.
        "ROTATOR_SCHEDULER__DEFAULT_GRACE_SECONDS": str(DEFAULT_GRACE_SECONDS),
    }
    stack.worker("watch", concurrency=16, pool="threads", env=env)
    stack.workers.append(stack.stack.start_beat(env=env))
    driver = Driver(stack.settings(**env))
    started = time.time()
    try:
        result = driver.run(destinations, timeout=watch + 600)
    finally:
        driver.close()
    switched = [e["time"] for e in stack.events() if e["type"] == "rotator.rotation.switched"]
    entries = [e for e in stack.control.journal()["entries"] if e["path"].startswith(REDOX)]
    kinds = Counter(e["kind"] for e in entries)
    platform = sum(v for k, v in kinds.items() if k not in APART)
    per_rotation = platform / count
    last_switch = max(_unix(t) for t in switched) if switched else float("inf")
    bound = count * CALLS_BEFORE_SWITCH / rate
    ratio = (last_switch - started) / bound
    throttled = sum(1 for e in entries if e["status"] == 429)
    succeeded = result.outcomes.get("succeeded", 0)
    passed = quick or (per_rotation <= GOAL_CALLS and ratio <= GOAL_RATIO and succeeded == count)
    failed_deliveries = sum(
        int(v.get("failed", 0)) for v in stack.control.delivery_stats()["destinations"].values()
    )
    details = [
        f"N={count} in {envs} environments, watch {watch} s polled every {poll} s, sandbox "
        f"{LATENCY_MS:.0f} ms latency, limit {requests} per rolling {window:g} s on both sides "
        f"(L={rate:g}/s)",
        f"Redox calls: {fmt_counts(sorted(kinds.items()))}",
        f"searches per environment: {kinds.get('search_logs', 0) / envs:.1f}; "
        f"end-of-window lists: {kinds.get('list_destinations', 0)}",
        f"last switch {last_switch - started:.1f} s after the first trigger; bound N x "
        f"{CALLS_BEFORE_SWITCH} / L = {bound:.1f} s",
        f"outcomes: {fmt_counts(sorted(result.outcomes.items()))}; 429s: {throttled}; failed "
        f"deliveries: {failed_deliveries}; run took {result.wall:.0f} s",
    ]
    return Figure(
        name=NAME,
        title=f"fleet of {count} in {envs} environments with the watch on",
        value=f"{per_rotation:.2f} Redox calls/rotation; switched at {ratio:.3f} x the bound",
        goal=f"<= {GOAL_CALLS:.0f} calls/rotation, switched at <= {GOAL_RATIO} x the bound",
        ratio=per_rotation / GOAL_CALLS,
        passed=passed,
        command=command_for(NAME, quick),
        details=details,
    )


def _unix(iso_time: str) -> float:
    return datetime.fromisoformat(iso_time.replace("Z", "+00:00")).timestamp()
