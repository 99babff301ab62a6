"""Figure 5: claiming due destinations from the schedule (pure Redis, no worker).

``ScheduleStore.claim_due`` (one Lua script: ZRANGEBYSCORE ... LIMIT, then a ZADD per id)
on a real redis-server. The registry is R destinations, D of them due; the claim takes all
D. Each timing is the median of several claims, the D entries being made due again between
runs (untimed). The baseline, measured in the same process on the same server, is one
ZCARD round trip. Goals: 1,000 due of 100,000 in <= 50 ms, and the time follows D, not R.
"""

from __future__ import annotations

import time

import redis

from bench.harness import Figure, command_for, median_seconds
from devstack.redis_server import RedisServer
from worker.scheduling.store import ScheduleStore
from worker.store.keys import Keys

__all__ = ["run"]

NAME = "scheduler"
GOAL_SECONDS = 0.050
#: t(R = largest) / t(R = smallest) at a fixed due count stays below this (O(log R)).
SIZE_GROWTH_LIMIT = 2.0
_CHUNK = 10_000


def _populate(client: redis.Redis, keys: Keys, registered: int, due: int, now: float) -> list[str]:
    """R ids on the schedule: the first ``due`` are due now, the rest within the next day."""
    client.delete(keys.schedule)
    ids = [f"dest-{n:07d}" for n in range(registered)]
    for start in range(0, registered, _CHUNK):
        chunk = ids[start : start + _CHUNK]
        scores = {
            ident: (now - 60 - n if start + n < due else now + 3600 + (start + n) % 86_400)
            for n, ident in enumerate(chunk)
        }
        client.zadd(keys.schedule, scores)
    return ids[:due]


def _claim_time(
    client: redis.Redis, keys: Keys, registered: int, due: int, repeat: int
) -> tuple[float, int]:
    now = time.time()
    due_ids = _populate(client, keys, registered, due, now)
    store = ScheduleStore(client, keys)
    claimed: list[int] = []

    def reset() -> None:
        for start in range(0, len(due_ids), _CHUNK):
            client.zadd(keys.schedule, {i: now - 60 for i in due_ids[start : start + _CHUNK]})

    def claim() -> None:
        claimed.append(len(store.claim_due(now, due, lease_seconds=600)))

    store.claim_due(now, 1, lease_seconds=0)  # load the script once, untimed
    seconds = median_seconds(claim, repeat, setup=reset)
    return seconds, min(claimed)


def run(quick: bool = False) -> Figure:
    """Measure the claim at several registry sizes and due counts."""
    sizes = [10_000, 20_000] if quick else [10_000, 100_000, 1_000_000]
    reference = 20_000 if quick else 100_000
    dues = [100, 1_000] if quick else [100, 1_000, 10_000]
    repeat = 3 if quick else 7
    keys = Keys("bench")
    with RedisServer(appendonly=False) as server:
        client = redis.Redis.from_url(server.url, decode_responses=True)
        try:
            baseline = median_seconds(lambda: client.zcard(keys.schedule), 200)
            by_size = {r: _claim_time(client, keys, r, 1_000, repeat) for r in sizes}
            by_due = {d: _claim_time(client, keys, reference, d, repeat) for d in dues}
        finally:
            client.close()
    headline, claimed = by_due[1_000]
    growth = by_size[sizes[-1]][0] / by_size[sizes[0]][0]
    due_growth = by_due[dues[-1]][0] / by_due[dues[0]][0]
    passed = (
        headline <= GOAL_SECONDS
        and claimed == 1_000
        and growth <= SIZE_GROWTH_LIMIT
        and due_growth > growth
    )
    details = [
        f"baseline (same process, same server): ZCARD round trip {baseline * 1e3:.3f} ms; "
        f"claim = {headline / baseline:.0f} x baseline",
        "1,000 due, by registry size: "
        + ", ".join(f"{r:,} -> {t * 1e3:.2f} ms" for r, (t, _) in by_size.items())
        + f"  (growth {growth:.2f} x, limit {SIZE_GROWTH_LIMIT} x)",
        f"{reference:,} registered, by due count: "
        + ", ".join(f"{d:,} -> {t * 1e3:.2f} ms" for d, (t, _) in by_due.items())
        + f"  (growth {due_growth:.1f} x)",
    ]
    return Figure(
        name=NAME,
        title=f"claim 1,000 due among {reference:,} registered (median of {repeat})",
        value=f"{headline * 1e3:.2f} ms",
        goal=f"<= {GOAL_SECONDS * 1e3:.0f} ms; grows with due count, not registry size",
        ratio=headline / GOAL_SECONDS,
        passed=passed,
        command=command_for(NAME, quick),
        details=details,
    )
