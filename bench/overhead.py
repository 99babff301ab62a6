"""Figure 4: the service's own overhead, rotations per second against Celery no-op tasks.

Zero-latency sandbox, no rate limit, the recommended worker setup. The baseline runs in the
same run on the same Redis and the same workers: Celery's built-in ``celery.accumulate``
task (it returns its argument) sent to the rotation queue with the options a rotation is
sent with (JSON, late ack, events on, no result), timed until the queue and the unacked
set are empty. Then D destinations are rotated in a closed loop (a destination is
triggered again as soon as its rotation ends) until R rotations ended, retiring old
credentials as it goes (each rotation's DELETE is part of its cost; ``retire_due`` is sent
every D/4 endings, so the environment's credential list, which every rotation reads, stays
near D). The figure is rotations/s over no-op tasks/s.
"""

from __future__ import annotations

import time

from bench.harness import IDP_UNLIMITED, SERVICE_WORKERS, UNLIMITED, Driver, Figure, command_for
from config.celery import ROTATION_QUEUE
from devstack.rig import Rig

__all__ = ["noop_rate", "rotation_rate", "run"]

NAME = "overhead"
GOAL = 0.25
NOOP_TASK = "celery.accumulate"


def noop_rate(driver: Driver, count: int, timeout: float = 120.0) -> float:
    """Send ``count`` no-op tasks; return tasks/s from the first send until all were acked."""
    client = driver.redis
    started = time.perf_counter()
    for n in range(count):
        driver.app.send_task(NOOP_TASK, args=[n], queue=ROTATION_QUEUE, ignore_result=True)
    deadline = time.monotonic() + timeout
    while int(client.llen(ROTATION_QUEUE)) or int(client.hlen("unacked")):
        if time.monotonic() > deadline:
            raise TimeoutError("no-op tasks did not drain")
        time.sleep(0.005)
    return count / (time.perf_counter() - started)


def rotation_rate(
    driver: Driver, destinations: list[str], total: int, retire_every: int
) -> tuple[float, int]:
    """Closed-loop rotations/s over ``destinations``; also the count that succeeded."""
    retire = driver.retiring_every(retire_every)
    result = driver.run(destinations, total=total, timeout=600, every=retire, retired_first=True)
    return result.total / result.wall, result.outcomes.get("succeeded", 0)


def run(stack: Rig, quick: bool = False) -> Figure:
    """No-op tasks, then rotations, on the same workers and Redis."""
    dests, total, noops = (20, 100, 300) if quick else (200, 2_000, 4_000)
    stack.reset(idp_rate_limit=IDP_UNLIMITED)
    destinations = stack.seed(dests, deliveries=False)
    pool, concurrency, processes = SERVICE_WORKERS
    for n in range(processes):
        stack.worker(f"overhead{n}", concurrency=concurrency, pool=pool, env=UNLIMITED)
    driver = Driver(stack.settings(**UNLIMITED))
    try:
        noop_rate(driver, min(200, noops))  # warm both paths up, untimed
        driver.run(destinations, timeout=120)
        driver.retire_now()
        noop = noop_rate(driver, noops)
        rate, succeeded = rotation_rate(
            driver, destinations, total, retire_every=max(5, dests // 4)
        )
    finally:
        driver.close()
    ratio = rate / noop
    passed = ratio >= GOAL and succeeded == total
    details = [
        f"baseline (same run, same Redis and workers): {noops} Celery no-op tasks -> "
        f"{noop:.0f} tasks/s",
        f"service: {total} rotations over {dests} destinations (closed loop, retiring as it "
        f"goes) -> {rate:.1f} rotations/s; succeeded {succeeded}",
        f"workers: {processes} x {pool}, concurrency {concurrency}; sandbox latency 0 ms",
    ]
    return Figure(
        name=NAME,
        title="rotations/s vs Celery no-op tasks/s (zero latency, no rate limit)",
        value=f"{ratio:.3f} ({rate:.1f} rotations/s vs {noop:.0f} no-op tasks/s)",
        goal=f">= {GOAL}",
        ratio=ratio / GOAL,
        passed=passed,
        command=command_for(NAME, quick),
        details=details,
    )
