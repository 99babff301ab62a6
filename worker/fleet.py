"""Fleet rotation (``rotator rotate --all``): rotate every known destination now.

The fleet is every known destination (:class:`worker.inventory.Inventory`): the ones in the
registry plus every destination the service rotated before, optionally only one
environment's. Paused destinations (``rotator pause`` or ``paused``/``enabled = false`` in the
registry) are skipped and listed as such: resume them first or rotate them one by one.
Destinations in ``needs_attention`` are included (a success clears the flag).

Each rotation goes through :func:`worker.trigger.request_rotation` (``trigger="fleet"``), at
most ``concurrency`` in flight; the terminal events on the stream end them. Individual
failures do not stop the run.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from celery import Celery

from worker.errors import UsageError
from worker.events import TERMINAL_OUTCOMES, EventStream, StreamEntry
from worker.inventory import Inventory
from worker.runtime import Runtime
from worker.store.records import RotationStore
from worker.trigger import request_rotation

__all__ = ["FleetPlan", "FleetRun", "plan_fleet", "run_fleet"]

#: Without an event, in-flight records are polled this often (events can be trimmed).
_POLL_SECONDS = 2.0


@dataclass(frozen=True)
class FleetPlan:
    """Which destinations a fleet rotation rotates, and which it skips (paused)."""

    targets: list[str]
    skipped: list[str]
    environment: str | None


def plan_fleet(runtime: Runtime, environment: str | None) -> FleetPlan:
    """Every known unpaused destination (of ``environment``); UsageError when none."""
    inventory = Inventory(runtime.redis, runtime.keys)
    views = inventory.views(inventory.known_ids())
    if environment is not None:
        views = [v for v in views if v.environment_id == environment]  # unknown env: left out
    skipped = [v.destination_id for v in views if v.paused]
    targets = [v.destination_id for v in views if not v.paused]
    if not targets:
        where = f" in environment {environment}" if environment else ""
        raise UsageError(f"no destination to rotate{where} ({len(skipped)} paused)")
    return FleetPlan(targets, skipped, environment)


@dataclass
class FleetRun:
    """State of one fleet rotation: what is pending, in flight and done."""

    pending: list[str]
    concurrency: int
    timeout: float
    in_flight: dict[str, tuple[str, float]] = field(default_factory=dict)  # rid -> (dest, t0)
    results: list[dict[str, Any]] = field(default_factory=list)

    def finish(self, rotation_id: str, outcome: str, error: Any = None) -> bool:
        """Record a terminal outcome of an in-flight rotation; False if it is not ours."""
        entry = self.in_flight.pop(rotation_id, None)
        if entry is None:
            return False
        self.results.append(
            {"destinationId": entry[0], "rotationId": rotation_id, "outcome": outcome,
             "error": error}
        )  # fmt: skip
        return True

    def summary(self) -> dict[str, int]:
        """Count per outcome (the four terminal outcomes always present)."""
        counts: Counter[str] = Counter({name: 0 for name in TERMINAL_OUTCOMES})
        counts.update(r["outcome"] for r in self.results)
        return dict(counts)


def run_fleet(
    runtime: Runtime,
    app: Celery,
    plan: FleetPlan,
    *,
    concurrency: int,
    timeout: float,
    reason: str,
    advance: Callable[[], None],
    retire_now: bool = False,
) -> FleetRun:
    """Rotate ``plan.targets``, ``concurrency`` at a time; ``advance()`` once per ending."""
    run = FleetRun(list(reversed(plan.targets)), concurrency, timeout)
    store = runtime.store
    for entry in _drive(run, runtime.events, store):
        if entry is None:
            while run.pending and len(run.in_flight) < run.concurrency:
                _start(run, app, store, run.pending.pop(), reason, advance, retire_now)
            continue
        advance()
    return run


def _drive(run: FleetRun, events: EventStream, store: RotationStore) -> Iterator[object]:
    """Yield None when more rotations may start, and an entry each time one ends."""
    since = events.last_id()
    yield None
    last_poll = time.monotonic()
    follow = events.follow(since=since, block_ms=500)
    while run.in_flight or run.pending:
        entry = next(follow)
        if entry is not None and _end_from_event(run, entry):
            yield entry
        if entry is None or time.monotonic() - last_poll > _POLL_SECONDS:
            last_poll = time.monotonic()
            yield from _poll(run, store)
        yield None


def _end_from_event(run: FleetRun, entry: StreamEntry) -> bool:
    data = entry.event.get("data") or {}
    outcome = str(entry.event.get("type", "")).rsplit(".", 1)[-1]
    if outcome not in TERMINAL_OUTCOMES:
        return False
    return run.finish(str(data.get("rotationId")), outcome, data.get("error"))


def _poll(run: FleetRun, store: RotationStore) -> Iterator[object]:
    """End rotations whose record has an outcome (event missed) or that timed out."""
    now = time.monotonic()
    for rotation_id, (_, started) in list(run.in_flight.items()):
        record = store.record(rotation_id)
        if record is not None and record.outcome:
            error = None
            if record.get("error_class"):
                error = {"class": record.get("error_class"), "message": record.get("error_message")}
            run.finish(rotation_id, record.outcome, error)
            yield rotation_id
        elif now - started > run.timeout:
            message = f"no outcome after {run.timeout:g}s"
            run.finish(rotation_id, "timeout", {"class": "Timeout", "message": message})
            yield rotation_id


def _start(
    run: FleetRun, app: Celery, store: RotationStore, destination_id: str, reason: str,
    advance: Callable[[], None], retire_now: bool,
) -> None:  # fmt: skip
    try:
        claim = request_rotation(
            app, store, destination_id, trigger="fleet", reason=reason, retire_now=retire_now
        )
    except Exception as exc:  # e.g. the broker refused the message: count it, go on
        error = {"class": type(exc).__name__, "message": str(exc)[:200]}
        run.results.append(
            {"destinationId": destination_id, "rotationId": None, "outcome": "error",
             "error": error}
        )  # fmt: skip
        advance()
        return
    # An already running rotation (claim.created False) is followed the same way.
    run.in_flight[claim.rotation_id] = (destination_id, time.monotonic())
