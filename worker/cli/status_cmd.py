"""``rotator status``, ``plan``, ``pause``, ``resume`` and ``retry``: the operator's views.

The CLI parses and prints; which destinations exist and their state come from
:mod:`worker.inventory`, the writes from :mod:`worker.operations`.
"""

from __future__ import annotations

import json
import time
from typing import Any

import typer
from rich.table import Table

from config.durations import format_duration
from worker import operations
from worker.celery_app import create_app
from worker.cli.common import console, open_runtime, settings_or_exit
from worker.inventory import DestinationStatus, DestinationView, Inventory, iso
from worker.scheduling.beat import retire_every
from worker.scheduling.plan import plan_from_store
from worker.sharing import sharing

__all__ = ["register"]

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
    {rotationId, outcome, finishedAt, error}, lastSuccessAt, activeRotationId,
    watchingUntil, nextDue, paused, needsAttention}], "summary": {<state>: count, "total": n}};
    for one DESTINATION it also has "sharesCredentialWith" (asked of Redox when the Redox
    settings are there: the other destinations on the same credential).
    """
    settings = settings_or_exit()
    runtime = open_runtime(settings)
    inventory = Inventory(runtime.redis, runtime.keys)
    if destination_id is not None:
        operations.require_known(runtime, destination_id)
        ids = [destination_id]
    else:
        ids = inventory.known_ids()
    now, tick = time.time(), settings.scheduler.tick_seconds
    views = inventory.views(ids)
    summary = {status.value: 0 for status in DestinationStatus}
    for view in views:
        summary[view.status(now, tick)] += 1
    shared = sharing(runtime, destination_id) if destination_id is not None else None
    if json_output:
        document: dict[str, Any] = {
            "generatedAt": iso(now),
            "destinations": [v.as_json(now, tick) for v in views],
            "summary": {**summary, "total": len(views)},
        }
        if destination_id is not None:
            document["sharesCredentialWith"] = shared.others if shared else None
        typer.echo(json.dumps(document))
        return
    if not views:
        console.print("no destinations known yet (sync a registry or rotate one)")
        return
    console.print(_status_table(views, now, tick))
    counts = ", ".join(f"{n} {name.replace('_', ' ')}" for name, n in summary.items() if n)
    console.print(f"{len(views)} destinations: {counts}")
    if shared is not None:
        others = ", ".join(shared.others) or "no other destination"
        console.print(f"credential {shared.credential_id} is shared with: {others}")


def _status_table(views: list[DestinationView], now: float, tick: float) -> Table:
    table = Table(title="Destinations")
    table.add_column("destination", no_wrap=True, min_width=36)
    for name in ("environment", "credential age", "last rotation", "next due", "state"):
        table.add_column(name)
    for view in views:
        s = view.state
        age = view.credential_age(now)
        last = "never"
        if s.last_outcome:
            finished = s.last_finished_at
            ago = f"{format_duration(now - finished)} ago" if finished else "?"
            last = f"{s.last_outcome.value} {ago}\n{s.last_rotation_id or ''}"
        due = "not scheduled"
        if view.due is not None:
            delta = view.due - now
            due = f"in {format_duration(delta)}" if delta >= 0 else f"{format_duration(-delta)} ago"
        state = view.status(now, tick).value
        colour = _COLOURS[state]
        shown = state.replace("_", " ")
        if view.watching_until is not None:
            shown = f"watching until {iso(view.watching_until)}"
        name = view.policy.name if view.policy and view.policy.name else ""
        table.add_row(
            view.destination_id + (f"\n[dim]{name}[/dim]" if name else ""),
            view.environment_id or "?",
            "unknown" if age is None else format_duration(age),
            last,
            due,
            f"[{colour}]{shown}[/{colour}]",
        )
    return table


def plan(
    hours: float = typer.Option(24.0, "--hours", min=0.01, help="Forecast horizon in hours."),
    json_output: bool = typer.Option(False, "--json", help="Print JSON (see below)."),
) -> None:
    """Dry run: what will rotate in the next HOURS and how many Redox calls that costs
    against the rate budget (ROTATOR_RATE_LIMIT__REQUESTS per __WINDOW_SECONDS).

    Rotations cost 5 calls (plus the watch's log searches, per environment), retirements
    1 DELETE plus one list per environment and batch.
    --json prints {"now", "until", "hours", "rotations", "destinations", "overdue",
    "retirements", "redoxCalls": {rotations, deletes, lists, total}, "budget": {requests,
    windowSeconds, horizonCapacity, share, peakWindowStart, peakWindowCalls, peakShare,
    withinBudget}, "upcoming": [{destinationId, due}]} (times in unix seconds).
    """
    settings = settings_or_exit()
    runtime = open_runtime(settings)
    result = plan_from_store(
        runtime.schedule, runtime.retirement, now=time.time(), hours=hours,
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
    active = operations.pause(open_runtime(settings_or_exit()), destination_id)
    extra = f" (rotation {active} in progress finishes first)" if active else ""
    console.print(f"paused {destination_id}: it will not be scheduled{extra}")


def resume(destination_id: str = typer.Argument(..., help="Destination to resume.")) -> None:
    """Schedule a paused destination again (an overdue one rotates within a minute)."""
    released = operations.resume(open_runtime(settings_or_exit()), destination_id)
    if released.needs_attention:
        console.print(f"resumed {destination_id}, but it needs attention: use `rotator retry`")
        return
    console.print(f"resumed {destination_id}: {_due_text(released)}")


def retry(
    destination_id: str = typer.Argument(..., help="Destination to retry."),
    json_output: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Clear needs_attention, schedule the destination again and rotate it now."""
    settings = settings_or_exit()
    claim, released = operations.retry(open_runtime(settings), create_app(settings), destination_id)
    if json_output:
        document = {
            "destinationId": destination_id,
            "rotationId": claim.rotation_id,
            "created": claim.created,
            "nextDue": iso(released.due),
        }
        typer.echo(json.dumps(document))
        return
    verb = "queued" if claim.created else "already in progress"
    console.print(f"rotation {claim.rotation_id} {verb} for {destination_id}")


def _due_text(released: operations.Released) -> str:
    if released.due is not None:
        return f"next rotation due {iso(released.due)}"
    if not released.in_registry:
        return "not in the registry, so not scheduled (rotate it with `rotator rotate`)"
    return "still paused or disabled in the registry file, so not scheduled"


def register(app: typer.Typer) -> None:
    """Add ``status``, ``plan``, ``pause``, ``resume`` and ``retry``."""
    app.command("status")(status)
    app.command("plan")(plan)
    app.command("pause")(pause)
    app.command("resume")(resume)
    app.command("retry")(retry)
