"""Figure 6: worker memory over many rotations (zero latency, no rate limit).

The recommended worker setup rotates D destinations in a closed loop until R rotations
ended, retiring old credentials as it goes (``retire_due`` every D/4 endings, so the
environment's credential list stays near its steady size). The resident memory of every
worker process (and its pool children) is sampled after a warm-up of W rotations per
worker process (the baseline, same processes, same run: each process fills its own pools
and allocator arenas) and at the end; the figure is the growth between the two. The
growth since the first 1,000 rotations of the whole run is printed too.
"""

from __future__ import annotations

from bench.harness import (
    IDP_UNLIMITED,
    SERVICE_WORKERS,
    UNLIMITED,
    Driver,
    Figure,
    command_for,
    tree_rss,
)
from devstack.rig import Rig

__all__ = ["run"]

NAME = "memory"
GOAL = 0.05


def run(stack: Rig, quick: bool = False) -> Figure:
    """Sample worker RSS after the warm-up and after R rotations."""
    dests, total, per_process = (20, 300, 100) if quick else (200, 10_000, 1_000)
    stack.reset(idp_rate_limit=IDP_UNLIMITED)
    destinations = stack.seed(dests, deliveries=False)
    pool, concurrency, processes = SERVICE_WORKERS
    warmup = min(per_process * processes, total // 3)
    workers = [
        stack.worker(f"memory{n}", concurrency=concurrency, pool=pool, env=UNLIMITED)
        for n in range(processes)
    ]

    def rss() -> int:
        return sum(tree_rss(w.process.pid) for w in workers)

    samples: list[tuple[int, int]] = []
    marks = {per_process, warmup, *range(0, total + 1, max(total // 10, 1))}
    driver = Driver(stack.settings(**UNLIMITED))
    retire = driver.retiring_every(max(5, dests // 4))

    def every(done: int) -> None:
        retire(done)
        if done >= min(marks, default=total + 1):
            marks.difference_update(m for m in list(marks) if m <= done)
            samples.append((done, rss()))

    try:
        result = driver.run(
            destinations, total=total, timeout=1200, every=every, retired_first=True
        )
    finally:
        driver.close()
    samples.append((result.total, rss()))
    base_done, base = next((d, r) for d, r in samples if d >= warmup)
    end_done, end = samples[-1]
    growth = end / base - 1
    early_done, early = next((d, r) for d, r in samples if d >= per_process)
    succeeded = result.outcomes.get("succeeded", 0)
    passed = growth <= GOAL and succeeded == total
    details = [
        f"baseline: RSS after {base_done} rotations (warm-up) = {base / 2**20:.1f} MiB",
        f"since {early_done} rotations of the whole run: {(end / early - 1) * 100:+.1f} %",
        f"end: RSS after {end_done} rotations = {end / 2**20:.1f} MiB; succeeded {succeeded}",
        "outcomes: " + ", ".join(f"{k} {v}" for k, v in sorted(result.outcomes.items())),
        "samples (rotations: MiB): " + ", ".join(f"{d}: {r / 2**20:.1f}" for d, r in samples),
        f"{total / result.wall:.1f} rotations/s; workers: {processes} x {pool}, "
        f"concurrency {concurrency}",
    ]
    return Figure(
        name=NAME,
        title=f"worker RSS growth over {total:,} rotations",
        value=f"{growth * 100:+.1f} % ({base / 2**20:.1f} -> {end / 2**20:.1f} MiB)",
        goal=f"<= {GOAL * 100:.0f} % after a warm-up of {per_process:,} rotations per process",
        ratio=max(growth, 0.0) / GOAL,
        passed=passed,
        command=command_for(NAME, quick),
        details=details,
    )
