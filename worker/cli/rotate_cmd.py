"""``rotator rotate``: trigger a rotation now (one destination, or the fleet with ``--all``)."""

from __future__ import annotations

import json
import time
from typing import Any

import typer

from worker.celery_app import create_app
from worker.cli.common import console, err_console, open_redis, settings_or_exit
from worker.errors import UsageError
from worker.events import TERMINAL_OUTCOMES, EventStream
from worker.store.keys import Keys
from worker.store.records import RotationStore
from worker.trigger import check_destination_id, describe, request_rotation

__all__ = ["register", "wait_for_outcome"]


def wait_for_outcome(
    events: EventStream, store: RotationStore, rotation_id: str, since: str, timeout: float
) -> dict[str, Any] | None:
    """Follow the stream from ``since`` until the rotation's terminal event (None on timeout)."""
    deadline = time.monotonic() + timeout
    for entry in events.follow(since=since, block_ms=500):
        if entry is not None:
            event = entry.event
            data = event.get("data") or {}
            if data.get("rotationId") == rotation_id:
                outcome = str(event.get("type", "")).rsplit(".", 1)[-1]
                if outcome in TERMINAL_OUTCOMES:
                    return event
        record = store.record(rotation_id)
        if record is not None and record.outcome and entry is None:
            return {
                "type": f"rotator.rotation.{record.outcome}",
                "data": {"rotationId": rotation_id},
            }
        if time.monotonic() > deadline:
            return None
    return None


def rotate(
    destination_id: str = typer.Argument(None, help="Redox destination id to rotate."),
    wait: bool = typer.Option(False, "--wait", help="Follow events until the rotation ends."),
    timeout: float = typer.Option(300.0, "--timeout", min=1, help="Seconds --wait waits."),
    json_output: bool = typer.Option(False, "--json", help="Print JSON."),
    reason: str = typer.Option("", "--reason", help="Why (recorded with the rotation)."),
    all_destinations: bool = typer.Option(False, "--all", help="Rotate every known destination."),
    environment: str = typer.Option(
        None, "--environment", help="With --all: only this environment."
    ),
    concurrency: int = typer.Option(
        20, "--concurrency", min=1, help="With --all: rotations in flight."
    ),
    yes: bool = typer.Option(False, "--yes", help="With --all: do not ask for confirmation."),
) -> None:
    """Rotate a destination's auth credential now; exit 0 on success, 1 on failure."""
    if all_destinations:
        if destination_id:
            raise UsageError("give either a DESTINATION_ID or --all, not both")
        from worker.cli.fleet import rotate_fleet

        raise typer.Exit(rotate_fleet(environment, concurrency, yes, reason, timeout, json_output))
    if environment is not None:
        raise UsageError("--environment only applies with --all")
    if not destination_id:
        raise UsageError("missing DESTINATION_ID (or use --all)")
    check_destination_id(destination_id)
    settings = settings_or_exit()
    client = open_redis(settings)
    keys = Keys(settings.key_prefix)
    store = RotationStore(
        client, keys, claim_ttl=settings.lock.claim_ttl_seconds,
        stream_maxlen=settings.events.stream_maxlen,
    )  # fmt: skip
    events = EventStream(client, keys, maxlen=settings.events.stream_maxlen)
    since = events.last_id()
    claim = request_rotation(
        create_app(settings), store, destination_id, trigger="operator", reason=reason
    )
    summary = describe(claim, destination_id)
    if not wait:
        _print_claim(summary, json_output)
        return
    if not json_output:
        _print_claim(summary, False)
    event = wait_for_outcome(events, store, claim.rotation_id, since, timeout)
    if event is None:
        summary["outcome"] = "timeout"
        _emit(summary, json_output, f"timed out after {timeout:g}s waiting for {claim.rotation_id}")
        raise typer.Exit(1)
    outcome = str(event.get("type", "")).rsplit(".", 1)[-1]
    data = event.get("data") or {}
    summary.update(
        outcome=outcome,
        oldCredentialId=data.get("oldCredentialId"),
        newCredentialId=data.get("newCredentialId"),
        error=data.get("error"),
    )
    error = data.get("error") or {}
    line = (
        f"{outcome}: {destination_id} now uses {data.get('newCredentialId')}"
        if outcome == "succeeded"
        else f"{outcome}: {error.get('class', '')} {error.get('message', '')}"
    )
    _emit(summary, json_output, line)
    raise typer.Exit(0 if outcome == "succeeded" else 1)


def _print_claim(summary: dict[str, Any], json_output: bool) -> None:
    if json_output:
        typer.echo(json.dumps(summary))
    elif summary["created"]:
        console.print(f"rotation {summary['rotationId']} queued for {summary['destinationId']}")
    else:
        console.print(
            f"rotation {summary['rotationId']} already in progress for {summary['destinationId']}"
        )


def _emit(summary: dict[str, Any], json_output: bool, line: str) -> None:
    if json_output:
        typer.echo(json.dumps(summary))
    elif summary.get("outcome") == "succeeded":
        console.print(f"[green]{line}[/green]")
    else:
        err_console.print(f"[red]{line}[/red]")


def register(app: typer.Typer) -> None:
    """Add ``rotate``."""
    app.command("rotate")(rotate)
