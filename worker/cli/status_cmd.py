"""``rotator status``, ``plan``, ``pause``, ``resume`` and ``retry``: the operator's views.

Which destinations exist and their state: :mod:`worker.cli.inventory`.
"""

from __future__ import annotations

import json
import random
import time
from typing import Any

import typer
from rich.table import Table

from config.durations import format_duration
from config.settings import Settings
from worker.celery_app import create_app
from worker.cli.common import console, open_redis, settings_or_exit
from worker.cli.inventory import STATES, DestinationView, Inventory, iso, to_float
from worker.errors import UsageError
from worker.retirement import RetirementQueue
from worker.scheduling.due import first_due
from worker.scheduling.plan import forecast
from worker.scheduling.store import ScheduleStore
from worker.store.keys import Keys
from worker.store.records import RotationStore
from worker.trigger import check_destination_id, request_rotation

__all__ = ["register"]

#: A resumed or retried overdue destination rotates within this many seconds.
RESUME_SPREAD_SECONDS = 60.0
_COLOURS = {"ok": "green", "in_progress": "cyan", "paused": "yellow",
            "needs_attention": "bold red", "overdue": "red"}  # fmt: skip


def status(
    destination_id: str = typer.Argument(None, help="Only this destination."),
    json_output: bool = typer.Option(False, "--json", help="Print JSON (see below)."),
) -> None:
    """Show every known destination: environment, credential age, last rotation, next due,
    state (ok / in_progress / paused / needs_attention / overdue) and counts per state.

    --json prints {"generatedAt", "destinations": [{destinationId, name, environmentId,
    state, inRegistry, credentialId, credentialSince, credentialAgeSeconds, lastRotation:
    {rotationId, outcome, finishedAt, error}, lastSuccessAt, activeRotationId, nextDue,
    paused, needsAttention}], "summary": {<state>: count, "total": n}}.
    """
    settings = settings_or_exit()
    inventory = Inventory(open_redis(settings), Keys(settings.key_prefix))
    if destination_id is not None:
        _require_known(inventory, destination_id)
        ids = [destination_id]
    else:
        ids = inventory.known_ids()
    now, tick = time.time(), settings.scheduler.tick_seconds
    views = inventory.views(ids)
    summary = {name: 0 for name in STATES}
    for view in views:
        summary[view.status(now, tick)] += 1
    if json_output:
        document = {
            "generatedAt": iso(now),
            "destinations": [v.as_json(now, tick) for v in views],
            "summary": {**summary, "total": len(views)},
        }
        typer.echo(json.dumps(document))
        return
    if not views:
        console.print("no destinations known yet (sync a registry or rotate one)")
        return
    console.print(_status_table(views, now, tick))
    counts = ", ".join(f"{n} {name.replace('_', ' ')}" for name, n in summary.items() if n)
    console.print(f"{len(views)} destinations: {counts}")


def _status_table(views: list[DestinationView], now: float, tick: float) -> Table:
    table = Table(title="Destinations")
    table.add_column("destination", no_wrap=True, min_width=36)
    for name in ("environment", "credential age", "last rotation", "next due", "state"):
        table.add_column(name)
    for view in views:
        s = view.state
        age = view.credential_age(now)
        last = "never"
        if s.get("last_outcome"):
            finished = to_float(s.get("last_finished_at"))
            ago = f"{format_duration(now - finished)} ago" if finished else "?"
            last = f"{s['last_outcome']} {ago}\n{s.get('last_rotation_id', '')}"
        due = "not scheduled"
        if view.due is not None:
            delta = view.due - now
            due = f"in {format_duration(delta)}" if delta >= 0 else f"{format_duration(-delta)} ago"
        state = view.status(now, tick)
        colour = _COLOURS[state]
        name = view.policy.name if view.policy and view.policy.name else ""
        table.add_row(
            view.destination_id + (f"\n[dim]{name}[/dim]" if name else ""),
            view.environment_id or "?",
            "unknown" if age is None else format_duration(age),
            last,
            due,
            f"[{colour}]{state.replace('_', ' ')}[/{colour}]",
        )
    return table


def plan(
    hours: float = typer.Option(24.0, "--hours", min=0.01, help="Forecast horizon in hours."),
    json_output: bool = typer.Option(False, "--json", help="Print JSON (see below)."),
) -> None:
    """Dry run: what will rotate in the next HOURS and how many Redox calls that costs
    against the rate budget (ROTATOR_RATE_LIMIT__REQUESTS per __WINDOW_SECONDS).

    Rotations cost 4 calls, retirements 1 DELETE plus one list per environment and batch.
    --json prints {"now", "until", "hours", "rotations", "destinations", "overdue",
    "retirements", "redoxCalls": {rotations, deletes, lists, total}, "budget": {requests,
    windowSeconds, horizonCapacity, share, peakWindowStart, peakWindowCalls, peakShare,
    withinBudget}, "upcoming": [{destinationId, due}]} (times in unix seconds).
    """
    settings = settings_or_exit()
    client = open_redis(settings)
    keys = Keys(settings.key_prefix)
    schedule = ScheduleStore(client, keys)
    now = time.time()
    until = now + hours * 3600.0
    due = schedule.upcoming(until)
    policies = {p.destination_id: p for p in schedule.all_policies()}
    queue = RetirementQueue(client, keys)
    pending = [
        (cred, when, queue.job(cred).get("environment_id", ""))
        for cred, when in queue.pending()
        if when <= until
    ]
    from worker.cli.service_cmd import retire_every

    result = forecast(
        due, policies, pending, now=now, hours=hours,
        budget_requests=settings.rate_limit.requests,
        budget_window=settings.rate_limit.window_seconds,
        retire_every=retire_every(settings.scheduler.tick_seconds),
    )  # fmt: skip
    document = result.as_json()
    if json_output:
        typer.echo(json.dumps(document))
        return
    _print_plan(document, hours)


def _print_plan(doc: dict[str, Any], hours: float) -> None:
    budget, calls = doc["budget"], doc["redoxCalls"]
    console.print(
        f"next {hours:g}h: {doc['rotations']} rotations of {doc['destinations']} destinations "
        f"({doc['overdue']} overdue now), {doc['retirements']} retirements"
    )
    console.print(
        f"Redox calls: {calls['total']} ({calls['rotations']} for rotations, {calls['deletes']} "
        f"deletes, {calls['lists']} lists); budget {budget['requests']} per "
        f"{format_duration(budget['windowSeconds'])} = {budget['horizonCapacity']:g} over the "
        f"horizon ({(budget['share'] or 0) * 100:.1f} %)"
    )
    verdict = "[green]within budget[/green]" if budget["withinBudget"] else "[red]OVER[/red]"
    console.print(
        f"busiest window: {budget['peakWindowCalls']} calls from "
        f"{iso(budget['peakWindowStart'])}: {verdict}"
    )
    upcoming = doc["upcoming"]
    if upcoming:
        table = Table(title=f"Next rotations (first {min(20, len(upcoming))} of {len(upcoming)})")
        table.add_column("destination", no_wrap=True)
        table.add_column("due (UTC)")
        for row in upcoming[:20]:
            table.add_row(row["destinationId"], iso(row["due"]) or "")
        console.print(table)


def pause(destination_id: str = typer.Argument(..., help="Destination to pause.")) -> None:
    """Stop scheduling a destination (a rotation in progress finishes; nothing is lost)."""
    _, inventory, store = _open(destination_id)
    store.set_destination_state(destination_id, paused=repr(time.time()))
    inventory.schedule.unschedule(destination_id)
    active = store.active(destination_id)
    extra = f" (rotation {active} in progress finishes first)" if active else ""
    console.print(f"paused {destination_id}: it will not be scheduled{extra}")


def resume(destination_id: str = typer.Argument(..., help="Destination to resume.")) -> None:
    """Schedule a paused destination again (an overdue one rotates within a minute)."""
    settings, inventory, store = _open(destination_id)
    store.clear_destination_flag(destination_id, "paused")
    state = store.destination_state(destination_id)
    if state.get("needs_attention"):
        console.print(f"resumed {destination_id}, but it needs attention: use `rotator retry`")
        return
    due = _reschedule(settings, inventory, store, destination_id)
    console.print(f"resumed {destination_id}: {_due_text(inventory, destination_id, due)}")


def retry(
    destination_id: str = typer.Argument(..., help="Destination to retry."),
    json_output: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Clear needs_attention, schedule the destination again and rotate it now."""
    settings, inventory, store = _open(destination_id)
    store.clear_destination_flag(destination_id, "needs_attention")
    due = _reschedule(settings, inventory, store, destination_id)
    claim = request_rotation(
        create_app(settings), store, destination_id, trigger="retry", reason="rotator retry"
    )
    if json_output:
        typer.echo(json.dumps({"destinationId": destination_id, "rotationId": claim.rotation_id,
                               "created": claim.created, "nextDue": iso(due)}))  # fmt: skip
        return
    verb = "queued" if claim.created else "already in progress"
    console.print(f"rotation {claim.rotation_id} {verb} for {destination_id}")


def _open(destination_id: str) -> tuple[Settings, Inventory, RotationStore]:
    check_destination_id(destination_id)
    settings = settings_or_exit()
    inventory = Inventory(open_redis(settings), Keys(settings.key_prefix))
    _require_known(inventory, destination_id)
    store = RotationStore(
        inventory.redis, inventory.keys, claim_ttl=settings.lock.claim_ttl_seconds,
        stream_maxlen=settings.events.stream_maxlen,
    )  # fmt: skip
    return settings, inventory, store


def _require_known(inventory: Inventory, destination_id: str) -> None:
    check_destination_id(destination_id)
    if not inventory.is_known(destination_id):
        raise UsageError(
            f"unknown destination {destination_id}: not in the registry and never rotated"
        )


def _reschedule(
    settings: Settings, inventory: Inventory, store: RotationStore, destination_id: str
) -> float | None:
    """Put a registry destination back on the schedule; its due time, or None."""
    policy = inventory.schedule.policy(destination_id)
    state = store.destination_state(destination_id)
    if policy is None or not policy.scheduled or state.get("paused"):
        return None
    last = to_float(state.get("last_success_at"))
    catchup = min(settings.scheduler.catchup_seconds, RESUME_SPREAD_SECONDS)
    due = first_due(
        policy, time.time(), random.SystemRandom(), last_rotated_at=last, catchup_seconds=catchup
    )
    return due if inventory.schedule.reschedule(destination_id, due) else None


def _due_text(inventory: Inventory, destination_id: str, due: float | None) -> str:
    if due is not None:
        return f"next rotation due {iso(due)}"
    policy = inventory.schedule.policy(destination_id)
    if policy is None:
        return "not in the registry, so not scheduled (rotate it with `rotator rotate`)"
    return "still paused or disabled in the registry file, so not scheduled"


def register(app: typer.Typer) -> None:
    """Add ``status``, ``plan``, ``pause``, ``resume`` and ``retry``."""
    app.command("status")(status)
    app.command("plan")(plan)
    app.command("pause")(pause)
    app.command("resume")(resume)
    app.command("retry")(retry)
