"""``rotator rotate``: trigger a rotation now (one destination, or the fleet with ``--all``)."""

from __future__ import annotations

import json
from typing import Any

import typer

from worker.celery_app import create_app
from worker.cli.common import console, err_console, open_runtime, settings_or_exit
from worker.cli.fleet import rotate_fleet
from worker.errors import UsageError
from worker.sharing import sharing
from worker.trigger import check_destination_id, describe, request_rotation, wait_for_outcome

__all__ = ["register"]


def rotate(
    destination_id: str = typer.Argument(None, help="Redox destination id to rotate."),
    wait: bool = typer.Option(False, "--wait", help="Follow events until the rotation ends."),
    timeout: float = typer.Option(
        None, "--timeout", min=1, help="Seconds --wait waits (default: rehearsal + watch + 5 min)."
    ),
    retire_now: bool = typer.Option(
        False,
        "--retire-now",
        help="Retire the old credential and its IdP secret right after the watch (after a leak).",
    ),
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
    """Rotate a destination's auth credential now; exit 0 on success, 1 on failure.

    With --wait it returns at the terminal event: after the switch, deliveries are watched
    for ROTATOR_VERIFY__WATCH_SECONDS (15 min by default) before the rotation succeeds.
    """
    settings = settings_or_exit()
    if timeout is None:
        verify = settings.verify
        timeout = verify.rehearsal_seconds + verify.watch_seconds + 2 * verify.poll_seconds + 300
    if all_destinations:
        if destination_id:
            raise UsageError("give either a DESTINATION_ID or --all, not both")
        code = rotate_fleet(
            settings, environment, concurrency, yes, reason, timeout, json_output, retire_now
        )
        raise typer.Exit(code)
    if environment is not None:
        raise UsageError("--environment only applies with --all")
    if not destination_id:
        raise UsageError("missing DESTINATION_ID (or use --all)")
    check_destination_id(destination_id)
    runtime = open_runtime(settings)
    runtime.sources.source_for(destination_id)  # no secret source: exit 2, nothing sent
    store, events = runtime.store, runtime.events
    shared = sharing(runtime, destination_id) if not json_output else None  # before it moves
    since = events.last_id()
    claim = request_rotation(
        create_app(settings), store, destination_id, trigger="operator", reason=reason,
        retire_now=retire_now,
    )  # fmt: skip
    summary = describe(claim, destination_id)
    if shared is not None and shared.others:
        err_console.print(
            f"note: credential {shared.credential_id} is shared with {', '.join(shared.others)}: "
            "they keep it until their own rotation adopts the new one; it retires when none uses it"
        )
    if not wait:
        _print_claim(summary, json_output)
        return
    if not json_output:
        _print_claim(summary, False)

    def switched(event: dict[str, Any]) -> None:
        if not json_output:
            data = event.get("data") or {}
            console.print(
                f"switched to {data.get('newCredentialId')}; watching deliveries for "
                f"{settings.verify.watch_seconds:g}s"
            )

    event = wait_for_outcome(events, store, claim.rotation_id, since, timeout, on_switched=switched)
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
