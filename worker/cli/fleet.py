"""``rotator rotate --all``: rotate the whole fleet now (e.g. after a leak).

The fleet is every known destination (:class:`worker.cli.inventory.Inventory`): the ones in
the registry plus every destination the service rotated before, optionally only one
environment's. Paused destinations (``rotator pause`` or ``paused``/``enabled = false`` in the
registry) are skipped and listed as such: resume them first or rotate them one by one.
Destinations in ``needs_attention`` are included (a success clears the flag).

Each rotation goes through :func:`worker.trigger.request_rotation` (``trigger="fleet"``), at
most ``concurrency`` in flight; the terminal events on the stream end them. Individual
failures do not stop the run. Exit 0 when every rotation succeeded, else 1.
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from worker.celery_app import create_app
from worker.cli.common import console, err_console, open_redis, settings_or_exit
from worker.cli.inventory import Inventory
from worker.errors import UsageError
from worker.events import TERMINAL_OUTCOMES, EventStream, StreamEntry
from worker.store.keys import Keys
from worker.store.records import RotationStore
from worker.trigger import request_rotation

__all__ = ["FleetRun", "rotate_fleet"]

#: Without an event, in-flight records are polled this often (events can be trimmed).
_POLL_SECONDS = 2.0


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


def rotate_fleet(
    environment: str | None,
    concurrency: int,
    yes: bool,
    reason: str,
    timeout: float,
    json_output: bool,
) -> int:
    """Rotate every known (unpaused) destination; return the exit code (0 all succeeded)."""
    settings = settings_or_exit()
    client = open_redis(settings)
    keys = Keys(settings.key_prefix)
    inventory = Inventory(client, keys)
    views = inventory.views(inventory.known_ids())
    if environment is not None:
        views = [v for v in views if v.environment_id == environment]  # unknown env: left out
    skipped = [v.destination_id for v in views if v.paused]
    targets = [v.destination_id for v in views if not v.paused]
    if not targets:
        where = f" in environment {environment}" if environment else ""
        raise UsageError(f"no destination to rotate{where} ({len(skipped)} paused)")
    _confirm(targets, skipped, environment, yes)
    store = RotationStore(
        client, keys, claim_ttl=settings.lock.claim_ttl_seconds,
        stream_maxlen=settings.events.stream_maxlen,
    )  # fmt: skip
    events = EventStream(client, keys, maxlen=settings.events.stream_maxlen)
    run = FleetRun(list(reversed(targets)), concurrency, timeout)
    app = create_app(settings)
    reason = reason or "fleet rotation"
    with _progress(len(targets)) as advance:
        for entry in _drive(run, events, store):
            if entry is None:
                while run.pending and len(run.in_flight) < run.concurrency:
                    _start(run, app, store, run.pending.pop(), reason, advance)
                continue
            advance()
    summary = run.summary()
    failed = len(run.results) - summary["succeeded"]
    if json_output:
        document = {
            "total": len(targets),
            "summary": summary,
            "results": sorted(run.results, key=lambda r: r["destinationId"]),
            "skipped": [{"destinationId": d, "reason": "paused"} for d in skipped],
        }
        typer.echo(json.dumps(document))
    else:
        _print_summary(run, summary, skipped)
    return 1 if failed else 0


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
    run: FleetRun, app: Any, store: RotationStore, destination_id: str, reason: str,
    advance: Callable[[], None],
) -> None:  # fmt: skip
    try:
        claim = request_rotation(app, store, destination_id, trigger="fleet", reason=reason)
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


def _confirm(targets: list[str], skipped: list[str], environment: str | None, yes: bool) -> None:
    if yes:
        return
    where = f" in environment {environment}" if environment else ""
    if not sys.stdin.isatty():
        raise UsageError(
            f"refusing to rotate {len(targets)} destinations{where} without --yes "
            "(not an interactive terminal)"
        )
    extra = f" ({len(skipped)} paused ones skipped)" if skipped else ""
    if not typer.confirm(f"Rotate {len(targets)} destinations{where} now{extra}?"):
        raise typer.Exit(1)


@contextlib.contextmanager
def _progress(total: int) -> Iterator[Callable[[], None]]:
    """A Rich progress bar on stderr; yields a function that advances it by one."""
    bar = Progress(
        TextColumn("rotating"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=err_console, transient=False,
    )  # fmt: skip
    task = bar.add_task("fleet", total=total)
    with bar:
        yield lambda: bar.advance(task)


def _print_summary(run: FleetRun, summary: dict[str, int], skipped: list[str]) -> None:
    table = Table(title="Fleet rotation")
    table.add_column("outcome")
    table.add_column("destinations", justify="right")
    for outcome, count in summary.items():
        if count or outcome in TERMINAL_OUTCOMES:
            table.add_row(outcome, str(count))
    if skipped:
        table.add_row("skipped (paused)", str(len(skipped)))
    console.print(table)
    for result in sorted(run.results, key=lambda r: r["destinationId"]):
        if result["outcome"] != "succeeded":
            error = result.get("error") or {}
            err_console.print(
                f"[red]{result['outcome']}[/red] {result['destinationId']} "
                f"rotation={result['rotationId']} {error.get('class', '')}: "
                f"{error.get('message', '')}"
            )
