"""Crashes: a worker process SIGKILLed after each step, and whole workers killed at random.

``crash-<step>``: workers started through :mod:`devstack.crash` make the pool process running
a rotation SIGKILL itself right after that step (once per rotation). Two prefork workers run
with the hook; Celery requeues the lost message (``task_reject_on_worker_lost``) and another
pool process, often on the other worker, finishes the rotation once the dead one's lease
expires. ``crash-worker``: whole threads workers (every rotation they hold) are SIGKILLed at
random moments and replaced; their unacked messages come back after the visibility timeout.
"""

from __future__ import annotations

import random
import time

from bench.chaos.harness import chaos_rig
from bench.chaos.invariants import Figures, check

__all__ = ["STEPS", "crash_after", "crash_worker"]

STEPS = ("read", "issue", "switch", "verify", "publish")


def crash_after(step: str, runs: int, size: str) -> Figures:
    """``runs`` rotations, each killed once right after ``step``; another process finishes."""
    figures = Figures(f"crash-{step}", size)
    started = time.monotonic()
    with chaos_rig() as chaos:
        dests = chaos.seed(runs)
        originals = chaos.originals()
        for name in ("a", "b"):
            chaos.worker(name, pool="prefork", concurrency=2, crash_after=step)
        ids = chaos.trigger(dests)
        chaos.wait_terminal(ids, timeout=60 + runs * 6, strict=False)
        crashes = len(chaos.redis.keys(f"{chaos.keys.prefix}:devstack:crashed:*"))
        figures.extra["crashes"] = crashes
        if crashes != runs:
            figures.fail(f"{crashes} crash(es) for {runs} rotations: the hook did not fire each")
        dead_workers = [w.name for w in chaos.workers if not w.alive]
        if dead_workers:
            figures.fail(f"worker(s) {dead_workers} died (only pool processes should)")
        records = [chaos.store().record(rid) for rid in ids]
        figures.extra["reruns"] = sum(1 for r in records if r is not None and r.attempt >= 2)
        check(chaos, figures, ids, originals)
    figures.seconds = time.monotonic() - started
    return figures


def crash_worker(kills: int, runs: int, size: str) -> Figures:
    """Whole workers SIGKILLed at random moments while ``runs`` rotations are under way."""
    figures = Figures("crash-worker", size)
    rng = random.Random(7)
    started = time.monotonic()
    # Slow replies keep rotations in flight when the kill comes.
    with chaos_rig() as chaos:
        dests = chaos.seed(runs)
        originals = chaos.originals()
        chaos.control.set_faults(latency_ms=400, latency_jitter_ms=200)
        live = [chaos.worker("k0", concurrency=4), chaos.worker("k1", concurrency=4)]
        ids = chaos.trigger(dests)
        for number in range(kills):
            time.sleep(rng.uniform(0.8, 2.0))
            victim = live.pop(rng.randrange(len(live)))
            victim.stop(kill=True)
            live.append(chaos.worker(f"r{number}", concurrency=4))
        chaos.control.set_faults()
        chaos.wait_terminal(ids, timeout=90 + runs, strict=False)
        figures.extra["kills"] = kills
        records = [chaos.store().record(rid) for rid in ids]
        figures.extra["reruns"] = sum(1 for r in records if r is not None and r.attempt >= 2)
        check(chaos, figures, ids, originals)
    figures.seconds = time.monotonic() - started
    return figures
