"""Infrastructure chaos: Redis restarts, a Sentinel failover, two beats, trigger stampedes,
and the security checks."""

from __future__ import annotations

import contextlib
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import httpx
import redis

from bench.chaos.harness import chaos_rig, outcome_of
from bench.chaos.invariants import Figures, check
from devstack.redis_server import free_port
from devstack.rig import Rig
from devstack.sentinel import SentinelCluster
from devstack.stack import Child, LocalStack
from worker.events import TERMINAL_OUTCOMES
from worker.store.connection import open_redis
from worker.trigger import request_rotation

__all__ = [
    "SENTINEL_ENV",
    "concurrent_triggers",
    "redis_restart",
    "secured_stack",
    "sentinel_failover",
    "sentinel_rig",
    "two_beats",
]


def redis_restart(runs: int, size: str, *, outage_seconds: float = 2.0) -> Figures:
    """Restart redis-server (AOF on) while a fleet rotation runs: nothing lost, workers
    reconnect by themselves (the same processes finish the fleet). Beat runs, as in
    production: its reaper resends a rotation whose message the restart lost."""
    figures = Figures("redis-restart", size)
    started = time.monotonic()
    with chaos_rig() as chaos:
        dests = chaos.seed(runs)
        originals = chaos.originals()
        chaos.control.set_faults(latency_ms=150, latency_jitter_ms=100)
        workers = [chaos.worker("r1", concurrency=4), chaos.worker("r2", concurrency=4)]
        pids = [w.process.pid for w in workers]
        beat = chaos.stack.start_beat(env={"ROTATOR_SCHEDULER__TICK_SECONDS": "1"})
        ids = chaos.trigger(dests)
        deadline = time.monotonic() + 30
        while len(chaos.terminal_counts()) < max(1, runs // 4) and time.monotonic() < deadline:
            time.sleep(0.2)
        figures.extra["done_before_restart"] = len(chaos.terminal_counts())
        chaos.stack.redis.stop()
        time.sleep(outage_seconds)
        chaos.stack.redis.start()
        chaos.redis.connection_pool.disconnect()
        chaos.control.set_faults()
        chaos.wait_terminal(ids, timeout=60 + runs, strict=False)
        beat.stop()
        alive = [w.process.pid for w in workers if w.alive]
        figures.extra["workers_alive"] = f"{len(alive)}/{len(workers)}"
        if alive != pids:
            figures.fail("a worker died with the Redis restart (it should reconnect)")
        check(chaos, figures, ids, originals)
    figures.seconds = time.monotonic() - started
    return figures


#: sentinel-failover runs the service at its default settings but for these (the secret
#: source, the sandbox's Okta-style IdP, comes from the sandbox's env file).
SENTINEL_ENV = {
    # The switch ends a rotation: the delivery watch would need beat (it has its own tests).
    "ROTATOR_VERIFY__WATCH_SECONDS": "0",
}


@contextlib.contextmanager
def sentinel_rig(
    env: dict[str, str],
    *,
    password: str,
    sentinel_password: str,
    seed: int = 11,
    idp: str = "okta",
) -> Iterator[tuple[Rig, SentinelCluster]]:
    """A rig whose Redis is a Sentinel setup (primary, replica, three sentinels) instead of
    the stack's single redis-server: every child gets the ``sentinel://`` URL, and the rig's
    own readers go through :func:`open_redis` (they follow the failover too)."""
    with SentinelCluster(password=password, sentinel_password=sentinel_password) as cluster:
        stack = LocalStack(env=env)
        stack.env.update(cluster.env())  # instead of start_redis()
        try:  # as Rig.start does
            control = stack.start_sandbox("--idp", idp, seed=seed)
        except BaseException:
            stack.close()
            raise
        with Rig(stack, control, owns_stack=True, idp=idp) as rig:
            rig.redis.close()  # the unstarted single server's client
            rig.redis = open_redis(rig.settings())
            yield rig, cluster


def sentinel_failover(
    runs: int, size: str, *, kill_at: float = 0.25, env: dict[str, str] | None = None
) -> Figures:
    """Kill the Sentinel-watched primary (SIGKILL) once ``kill_at`` of a fleet rotation has
    ended: the sentinels promote the replica, every process follows through its own
    Sentinel client, and every rotation ends in exactly one terminal event. The service
    runs at its default settings plus :data:`SENTINEL_ENV` and ``env`` (CI size: the chaos
    suite's tight budgets, so that leases and redeliveries resolve in seconds)."""
    figures = Figures("sentinel-failover", size)
    started = time.monotonic()
    password, sentinel_password = "chaos-primary-pw-" + "5" * 10, "chaos-sentinel-pw-" + "6" * 10
    rig = sentinel_rig(
        {**SENTINEL_ENV, **(env or {})}, password=password, sentinel_password=sentinel_password
    )
    with rig as (chaos, cluster):
        dests = chaos.seed(runs)
        originals = chaos.originals()
        # Slow replies keep a fleet in flight when the primary dies.
        chaos.control.set_faults(latency_ms=150, latency_jitter_ms=100)
        settings = chaos.settings()
        figures.extra["settings"] = "chaos budgets" if env else "defaults"
        figures.extra["lock_ttl_s"] = settings.lock.ttl_seconds
        workers = [chaos.worker(n, concurrency=settings.celery.concurrency) for n in ("s1", "s2")]
        pids = [w.process.pid for w in workers]
        # Beat, as in production: its reaper resends a rotation whose task was lost (a
        # message or a finish the old primary acknowledged but never replicated).
        beat = chaos.stack.start_beat(env={"ROTATOR_SCHEDULER__TICK_SECONDS": "1"})
        probe = open_redis(settings)  # a service client, connected before the kill
        probe.ping()
        ids = chaos.trigger(dests)
        deadline = time.monotonic() + 60 + runs
        while len(chaos.terminal_counts()) < max(1, int(runs * kill_at)):
            if time.monotonic() > deadline:
                break
            time.sleep(0.1)
        figures.extra["done_before_kill"] = len(chaos.terminal_counts())
        killed_wall = time.time()
        killed = cluster.kill_primary()
        figures.extra["failover_s"] = round(cluster.wait_failover(), 1)
        figures.extra["writes_back_s"] = round(_writes_back(probe, killed), 1)
        probe.close()
        chaos.wait_terminal(ids, timeout=120 + runs * 2, strict=False)
        figures.extra["last_terminal_s"] = round(_last_terminal(chaos) - killed_wall, 1)
        records = [chaos.store().record(rid) for rid in ids]
        figures.extra["resumed"] = sum(1 for r in records if r is not None and r.attempt >= 2)
        beat.stop()
        alive = [w.process.pid for w in workers if w.alive]
        figures.extra["workers_alive"] = f"{len(alive)}/{len(workers)}"
        if alive != pids:
            figures.fail("a worker died with the failover (it should follow the new primary)")
        if any(p in text for text in chaos.logs() for p in (password, sentinel_password)):
            figures.fail("a Redis or sentinel password shows in a service log")
        check(chaos, figures, ids, originals)
        # Messages whose ack died with the old primary's connection: redelivered after the
        # visibility timeout, they find their rotation finished and publish nothing.
        figures.extra["unacked_left"] = chaos.redis.hlen("unacked")
    figures.seconds = time.monotonic() - started
    return figures


def _writes_back(client: redis.Redis, since: float, timeout: float = 120.0) -> float:
    """Seconds from ``since`` until a write through ``client`` succeeds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            client.set("chaos:failover-probe", str(time.time()))
            return time.monotonic() - since
        except redis.RedisError:
            time.sleep(0.05)
    raise AssertionError(f"no Redis write succeeded within {timeout}s of the kill")


def _last_terminal(chaos: Rig) -> float:
    """Unix time of the newest terminal event (its CloudEvents ``time``)."""
    times = [
        datetime.fromisoformat(str(e["time"]).replace("Z", "+00:00")).timestamp()
        for e in chaos.events()
        if outcome_of(e) in TERMINAL_OUTCOMES
    ]
    return max(times, default=time.time())


def _registry(path: Path, environment: str, dests: list[str]) -> Path:
    lines = ["[defaults]", 'interval = "60s"', 'grace = "0s"', ""]
    for dest in dests:
        lines += ["[[destinations]]", f'id = "{dest}"', f'environment = "{environment}"', ""]
    path.write_text("\n".join(lines))
    return path


def two_beats(runs: int, size: str, *, watch_seconds: float = 6.0) -> Figures:
    """Two beat processes and three workers: each due destination rotates exactly once."""
    figures = Figures("two-beats", size)
    started = time.monotonic()
    with chaos_rig(env={"ROTATOR_SCHEDULER__TICK_SECONDS": "1"}) as chaos:
        dests = chaos.seed(runs)
        originals = chaos.originals()
        environment = chaos.control.state()["environments"][0]["id"]
        registry = _registry(chaos.stack.dir / "registry.toml", environment, dests)
        env = {"ROTATOR_REGISTRY_PATH": str(registry)}
        for name in ("b1", "b2", "b3"):
            chaos.worker(name, concurrency=2, env=env)
        beats = [chaos.stack.start_beat(env=env), chaos.stack.start_beat(env=env)]
        # Make it due only after *both* synced (a sync spreads overdue entries over the
        # catch-up period, which would undo the "due now").
        deadline = time.monotonic() + 60
        while not all("registry synced" in b.log_path.read_text(errors="replace") for b in beats):
            if time.monotonic() > deadline or not all(b.alive for b in beats):
                figures.fail("the two beats did not both sync the registry")
                break
            time.sleep(0.2)
        chaos.redis.zadd(chaos.keys.schedule, dict.fromkeys(dests, time.time()))
        deadline = time.monotonic() + 60 + runs
        while time.monotonic() < deadline and len(chaos.terminal_counts()) < runs:
            time.sleep(0.5)
        time.sleep(watch_seconds)  # several more ticks of both beats: nothing may start again
        per_dest = Counter(
            e["data"]["destinationId"] for e in chaos.events() if outcome_of(e) == "started"
        )
        twice = {d: n for d, n in per_dest.items() if n > 1}
        never = [d for d in dests if d not in per_dest]
        figures.extra.update(double_rotations=len(twice), never_rotated=len(never))
        if twice:
            figures.fail(f"{len(twice)} destination(s) rotated more than once: {twice}")
        if never:
            figures.fail(f"{len(never)} due destination(s) never rotated")
        for beat in beats:
            beat.stop()
        ids = sorted({e["data"]["rotationId"] for e in chaos.events() if "rotationId" in e["data"]})
        check(chaos, figures, ids, originals)
    figures.seconds = time.monotonic() - started
    return figures


def concurrent_triggers(runs: int, size: str, *, callers: int = 100) -> Figures:
    """``callers`` simultaneous triggers per destination (threads released at once by a
    barrier, each claiming as ``rotator rotate`` does): one rotation per destination."""
    figures = Figures("concurrent-triggers", size)
    started = time.monotonic()
    with chaos_rig() as chaos:
        dests = chaos.seed(runs)
        originals = chaos.originals()
        # Replies take 0.3 s, so every trigger lands while the first rotation still runs (a
        # trigger after it ended rightly starts a new rotation).
        chaos.control.set_faults(latency_ms=300)
        chaos.worker("c1", concurrency=4)
        app, store = chaos.app(), chaos.store()
        claimed: list[str] = []
        lock = threading.Lock()
        for dest in dests:
            gate = threading.Barrier(callers)

            def call(dest: str = dest, gate: threading.Barrier = gate) -> None:
                gate.wait()
                claim = request_rotation(app, store, dest, trigger="operator")
                if claim.created:
                    with lock:
                        claimed.append(claim.rotation_id)

            threads = [threading.Thread(target=call) for _ in range(callers)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        chaos.settle(60)
        events = chaos.events()
        started_ids = {e["data"]["rotationId"] for e in events if outcome_of(e) == "started"}
        per_dest = Counter(e["data"]["destinationId"] for e in events if outcome_of(e) == "started")
        figures.extra.update(triggers=callers * runs, claims_created=len(claimed))
        many = {d: n for d, n in per_dest.items() if n != 1}
        if many or len(per_dest) != runs:
            figures.fail(f"rotations per destination not 1: {many or dict(per_dest)}")
        check(chaos, figures, sorted(started_ids | set(claimed)), originals)
    figures.seconds = time.monotonic() - started
    return figures


def secured_stack(runs: int, size: str) -> Figures:
    """Redis with a password end to end, Flower behind basic auth: no secret in Flower's API,
    no Redis password or private key in any output."""
    figures = Figures("secured-stack", size)
    started = time.monotonic()
    password = "chaos-redis-pw-" + "7" * 12
    with chaos_rig(redis_password=password) as chaos:
        dests = chaos.seed(runs)
        originals = chaos.originals()
        # One destination refuses the switch: a rollback is part of what Flower shows.
        chaos.control.set_faults(
            p503=0.2, permanent={dests[-1]: 403}, permanent_methods={dests[-1]: ["PATCH"]}
        )
        chaos.worker("f1", concurrency=2)
        port = free_port()
        flower: Child = chaos.stack.start_flower(port, "ops:flower-pw-123456")
        ids = chaos.trigger(dests)
        chaos.wait_terminal(ids, timeout=60 + runs * 2, strict=False)
        chaos.settle(30)
        base = f"http://127.0.0.1:{port}"
        unauth = httpx.get(f"{base}/api/tasks", timeout=10).status_code
        figures.extra["flower_without_auth"] = unauth
        if unauth != 401:
            figures.fail(f"Flower answered {unauth} without credentials (want 401)")
        pages = _flower_pages(base, ("ops", "flower-pw-123456"))
        figures.extra["flower_pages"] = len(pages)
        key_path = chaos.settings().redox.private_key_path
        key_lines = [
            line for line in (key_path.read_text().splitlines() if key_path else [])
            if line and not line.startswith("-----")
        ]  # fmt: skip
        outputs = [*chaos.logs(), *pages, flower.log_path.read_text(errors="replace")]
        blob = "\n".join(outputs)
        if password in blob:
            figures.fail("the Redis password shows in a log or in Flower's API")
        if any(line in blob for line in key_lines):
            figures.fail("the private key shows in a log or in Flower's API")
        allowed = frozenset({"succeeded", "rolled_back"})
        check(chaos, figures, ids, originals, allowed=allowed, extra_places={"flower": pages})
    figures.seconds = time.monotonic() - started
    return figures


def _flower_pages(base: str, auth: tuple[str, str]) -> list[str]:
    """Flower's API and pages as an operator sees them (tasks, each task, workers)."""
    pages: list[str] = []
    with httpx.Client(base_url=base, auth=auth, timeout=20) as client:
        tasks = client.get("/api/tasks")
        pages.append(tasks.text)
        for task_id in list(tasks.json())[:50]:
            pages.append(client.get(f"/api/task/info/{task_id}").text)
            pages.append(client.get(f"/task/{task_id}").text)
        for path in ("/api/workers", "/tasks", "/workers", "/broker"):
            pages.append(client.get(path).text)
    return pages
