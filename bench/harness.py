"""The small harness every figure uses: a shared local stack, a rotation driver, the report.

One :class:`devstack.rig.Rig` (redis-server with AOF and the sandbox as child processes)
serves every figure of a run (:func:`bench_rig`); each figure resets it (latency, rate
limit, an empty Redis and sandbox) and starts its own worker(s). :class:`Driver` triggers
rotations the way ``rotator rotate --all`` does (:func:`worker.trigger.request_rotation`,
``trigger="fleet"``) and follows their terminal events on the stream. Figures return a
:class:`Figure`: value, goal, ratio, PASS/FAIL and the command that reproduces it.
"""

from __future__ import annotations

import json
import os
import statistics
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import psutil
import redis

from config.settings import Settings
from devstack.rig import Rig
from worker.celery_app import create_app
from worker.events import TERMINAL_OUTCOMES
from worker.store.keys import Keys
from worker.store.records import RotationStore
from worker.trigger import request_rotation

__all__ = [
    "SERVICE_WORKERS",
    "Driver",
    "Figure",
    "RunResult",
    "bench_rig",
    "median_seconds",
    "tree_rss",
]

#: Budgets for the workers of every figure (the defaults, except what a figure sets).
WORKER_ENV = {
    # No registry in the benches: retire old credentials right away when a figure asks.
    "ROTATOR_SCHEDULER__DEFAULT_GRACE_SECONDS": "0",
    # The switch ends a rotation unless a figure watches (the watch needs beat).
    "ROTATOR_VERIFY__WATCH_SECONDS": "0",
}
#: Service-side limiter for the "no rate limit" figures: on (its Redis cost stays in the
#: figure), but far above anything a figure can reach.
UNLIMITED = {
    "ROTATOR_RATE_LIMIT__REQUESTS": "100000000",
    "ROTATOR_RATE_LIMIT__WINDOW_SECONDS": "60",
}
#: IdP management calls per minute for the figures that measure the service alone: far above
#: anything they reach. At the sandbox's default (Okta's usual 600/min, which the Okta adapter
#: paces itself to) more than ~150 rotations a minute would wait for the IdP's window.
IDP_UNLIMITED = 100_000_000
#: The worker setup the throughput figures run (pool, concurrency per process, processes):
#: the recommended production setting for this machine (see docs/performance.md).
SERVICE_WORKERS = (
    os.environ.get("BENCH_POOL", "threads"),
    int(os.environ.get("BENCH_CONCURRENCY", "16")),
    int(os.environ.get("BENCH_PROCESSES", "3")),
)
RETIRED_TYPE = "rotator.credential.retired"
TERMINAL_TYPES = {f"rotator.rotation.{o}": o for o in TERMINAL_OUTCOMES}


@dataclass
class Figure:
    """One benchmark figure: what was measured against its goal."""

    name: str
    title: str
    value: str
    goal: str
    ratio: float
    passed: bool
    command: str
    details: list[str] = field(default_factory=list)

    def render(self) -> str:
        """The figure as printed by ``python -m bench``."""
        verdict = "PASS" if self.passed else "FAIL"
        lines = [
            f"[{verdict}] {self.name}: {self.title}",
            f"    measured: {self.value}",
            f"    goal:     {self.goal}",
            f"    ratio:    {self.ratio:.3f}",
            *(f"    {line}" for line in self.details),
            f"    reproduce: {self.command}",
        ]
        return "\n".join(lines)

    def as_dict(self) -> dict[str, Any]:
        """JSON-able form (``--json``)."""
        return {
            "name": self.name,
            "title": self.title,
            "value": self.value,
            "goal": self.goal,
            "ratio": round(self.ratio, 4),
            "passed": self.passed,
            "command": self.command,
            "details": self.details,
        }


def command_for(name: str, quick: bool) -> str:
    """The command that reproduces one figure."""
    return f"python -m bench --only {name}" + (" --quick" if quick else "")


def bench_rig() -> Rig:
    """redis-server + sandbox shared by the figures of one run; each figure resets it and
    starts its own workers (:meth:`Rig.reset`, :meth:`Rig.worker`)."""
    return Rig.start(env=WORKER_ENV)


@dataclass
class RunResult:
    """What a driver run saw: wall time from the first trigger to the last terminal event."""

    wall: float
    outcomes: Counter[str]
    started: float
    finished: float

    @property
    def total(self) -> int:
        """Terminal events counted."""
        return sum(self.outcomes.values())


class Driver:
    """Triggers rotations from this process and follows their terminal events."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.redis = redis.Redis.from_url(settings.redis_dsn, decode_responses=True)
        self.keys = Keys(settings.key_prefix)
        self.store = RotationStore(
            self.redis,
            self.keys,
            claim_ttl=settings.lock.claim_ttl_seconds,
            stream_maxlen=settings.events.stream_maxlen,
        )
        self.app = create_app(settings)
        rows: Any = self.redis.xrevrange(self.keys.events, count=1)
        self._last = str(rows[0][0]) if rows else "0-0"
        #: Rotations whose old credential was retired (seen by :meth:`ended`).
        self.retired: set[str] = set()

    def trigger(self, destination_id: str) -> str:
        """Claim and send one rotation; return its id."""
        return request_rotation(self.app, self.store, destination_id, trigger="fleet").rotation_id

    def ended(self, block_ms: int = 200) -> list[tuple[str, str, str]]:
        """``(rotation id, destination id, outcome)`` of terminal events since the last call;
        the rotations whose old credential was retired meanwhile go to :attr:`retired`."""
        reply: Any = self.redis.xread({self.keys.events: self._last}, block=block_ms, count=2000)
        done: list[tuple[str, str, str]] = []
        for _, rows in reply or []:
            for stream_id, fields in rows:
                self._last = str(stream_id)
                event = json.loads(fields["event"])
                kind = event.get("type", "")
                outcome = TERMINAL_TYPES.get(kind)
                if outcome is not None:
                    data = event["data"]
                    done.append((data["rotationId"], data["destinationId"], outcome))
                elif kind == RETIRED_TYPE and event["data"].get("rotationId"):
                    self.retired.add(event["data"]["rotationId"])
        return done

    def run(
        self,
        destinations: list[str],
        *,
        total: int | None = None,
        in_flight: int | None = None,
        timeout: float = 600.0,
        every: Callable[[int], None] | None = None,
        retired_first: bool = False,
    ) -> RunResult:
        """Rotate every destination once; with ``total`` above their count, keep
        ``in_flight`` rotations going (default: half the destinations) until ``total``
        ended. A destination is rotated again only after it rested at the back of the
        queue (its previous task must have released its lease first) and, with
        ``retired_first``, after the old credential of its last successful rotation was
        retired, as in production where the grace period is short next to the rotation
        interval (its IdP app holds at most two secrets). ``every(n)`` is called after each
        batch of terminal events with the count so far."""
        want = total if total is not None else len(destinations)
        if total is None or total <= len(destinations):
            window = len(destinations)
        else:
            window = in_flight or max(1, len(destinations) // 2)
        idle = deque(destinations)
        retiring: dict[str, str] = {}  # rotation id -> destination id
        started = time.perf_counter()
        ours: set[str] = set()
        sent = 0
        outcomes: Counter[str] = Counter()
        finished = started
        deadline = time.monotonic() + timeout
        nudged = 0.0
        while sum(outcomes.values()) < want:
            while idle and sent < want and len(ours) < window:
                ours.add(self.trigger(idle.popleft()))
                sent += 1
            if time.monotonic() > deadline:
                raise TimeoutError(f"{sum(outcomes.values())} of {want} rotations ended in time")
            batch = self.ended()
            for rotation_id, destination_id, outcome in batch:
                if rotation_id not in ours:
                    continue
                ours.discard(rotation_id)
                outcomes[outcome] += 1
                finished = time.perf_counter()
                if retired_first and outcome == "succeeded":
                    retiring[rotation_id] = destination_id
                else:
                    idle.append(destination_id)
            for rotation_id in [r for r in retiring if r in self.retired]:
                idle.append(retiring.pop(rotation_id))
                self.retired.discard(rotation_id)
            if batch and every is not None:
                every(sum(outcomes.values()))
            starved = retiring and not idle and sent < want and len(ours) < window
            if starved and time.monotonic() - nudged > 0.5:
                self.app.send_task("retire_due")
                nudged = time.monotonic()
        return RunResult(finished - started, outcomes, started, finished)

    def retiring_every(self, count: int) -> Callable[[int], None]:
        """An ``every`` callback for :meth:`run` that sends ``retire_due`` each ``count``
        endings, counted from the last send: however the endings bunch up, the retirement
        queue never builds up, so the environment stays near its steady size (its
        destinations' credentials plus the few awaiting retirement), as in production
        where the grace period is short next to the rotation interval."""
        next_send = [count]

        def retire(done: int) -> None:
            if done >= next_send[0]:
                self.app.send_task("retire_due")
                next_send[0] = done + count

        return retire

    def retire_now(self, expected: int = 0, timeout: float = 60.0) -> None:
        """Wait for ``expected`` credentials to be queued for retirement (a rotation queues
        its old credential just after its final event), then send ``retire_due`` until the
        queue is empty."""
        deadline = time.monotonic() + timeout

        def queued() -> int:
            return int(self.redis.zcard(self.keys.retirement))

        if not wait_until(lambda: queued() >= expected, timeout):
            raise TimeoutError(f"{queued()} of {expected} old credentials queued for retirement")
        while int(self.redis.zcard(self.keys.retirement)):
            if time.monotonic() > deadline:
                raise TimeoutError("retirement queue did not drain")
            self.app.send_task("retire_due")
            wait_until(lambda: int(self.redis.zcard(self.keys.retirement)) == 0, 5.0)

    def close(self) -> None:
        """Close the Redis connection."""
        self.redis.close()


def wait_until(condition: Callable[[], bool], timeout: float, poll: float = 0.05) -> bool:
    """Poll ``condition`` until true or ``timeout``; return the last answer."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(poll)
    return True


def tree_rss(pid: int) -> int:
    """Resident bytes of a process and all its children."""
    root = psutil.Process(pid)
    total = 0
    for proc in [root, *root.children(recursive=True)]:
        try:
            total += proc.memory_info().rss
        except psutil.NoSuchProcess:
            continue
    return total


def median_seconds(
    run: Callable[[], object], repeat: int, setup: Callable[[], object] | None = None
) -> float:
    """Median wall time of ``run`` over ``repeat`` runs (``setup`` before each, untimed)."""
    times: list[float] = []
    for _ in range(repeat):
        if setup is not None:
            setup()
        t0 = time.perf_counter()
        run()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def fmt_counts(counts: Iterable[tuple[str, int]]) -> str:
    """``a=1, b=2`` for a details line."""
    return ", ".join(f"{k}={v}" for k, v in counts)
