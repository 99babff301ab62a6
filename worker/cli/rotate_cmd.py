"""``rotator rotate``: trigger a rotation now (one destination, or the fleet with ``--all``)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import typer

from config.settings import Settings
from worker.celery_app import create_app
from worker.cli.common import console, err_console, open_runtime, settings_or_exit
from worker.cli.fleet import rotate_fleet
from worker.errors import UsageError
from worker.sharing import sharing
from worker.store.records import CREDENTIAL_KIND, TOKEN_KIND
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
    verification_token: bool = typer.Option(
        False,
        "--verification-token",
        help="Rotate the destination's verification token (through its receiver's store) "
        "instead of its auth credential.",
    ),
) -> None:
    """Rotate a destination's auth credential (or, with --verification-token, its
    verification token) now; exit 0 on success, 1 on failure.

    With --wait it returns at the terminal event: after the switch, deliveries are watched
    for ROTATOR_VERIFY__WATCH_SECONDS (15 min by default) before the rotation succeeds.
    """
    settings = settings_or_exit()
    if timeout is None:
        verify = settings.verify
        timeout = verify.rehearsal_seconds + verify.watch_seconds + 2 * verify.poll_seconds + 300
    if verification_token and (all_destinations or retire_now):
        raise UsageError("--verification-token rotates one destination; no --all or --retire-now")
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
    kind = TOKEN_KIND if verification_token else CREDENTIAL_KIND
    request = _Request(destination_id, kind, reason, retire_now, json_output)
    code = _rotate_one(settings, request, timeout if wait else None)
    raise typer.Exit(code)


@dataclass(frozen=True)
class _Request:
    destination_id: str
    kind: str
    reason: str
    retire_now: bool
    json_output: bool


def _rotate_one(settings: Settings, request: _Request, timeout: float | None) -> int:
    """Trigger the rotation; with a ``timeout``, follow it to its end. The exit code."""
    destination_id, json_output = request.destination_id, request.json_output
    runtime = open_runtime(settings)
    shared = None
    if request.kind == TOKEN_KIND:
        runtime.sources.token_policy(destination_id)  # no receiver's store: exit 2
    else:
        runtime.sources.source_for(destination_id)  # no secret source: exit 2, nothing sent
        shared = sharing(runtime, destination_id) if not json_output else None  # before it moves
    store, events = runtime.store, runtime.events
    since = events.last_id()
    claim = request_rotation(
        create_app(settings), store, destination_id, trigger="operator", reason=request.reason,
        retire_now=request.retire_now, kind=request.kind,
    )  # fmt: skip
    summary = describe(claim, destination_id)
    if shared is not None and shared.others:
        err_console.print(
            f"note: credential {shared.credential_id} is shared with {', '.join(shared.others)}: "
            "they keep it until their own rotation adopts the new one; it retires when none uses it"
        )
    if timeout is None or not json_output:
        _print_claim(summary, json_output)
    if timeout is None:
        return 0
    token = request.kind == TOKEN_KIND

    def switched(event: dict[str, Any]) -> None:
        if not json_output:
            new = event.get("data", {}).get("newCredentialId")
            what = "the new verification token" if token else new
            console.print(
                f"switched to {what}; watching deliveries for {settings.verify.watch_seconds:g}s"
            )

    event = wait_for_outcome(events, store, claim.rotation_id, since, timeout, on_switched=switched)
    if event is None:
        summary["outcome"] = "timeout"
        _emit(summary, json_output, f"timed out after {timeout:g}s waiting for {claim.rotation_id}")
        return 1
    outcome = str(event.get("type", "")).rsplit(".", 1)[-1]
    data = event.get("data") or {}
    summary.update(
        outcome=outcome,
        oldCredentialId=data.get("oldCredentialId"),
        newCredentialId=data.get("newCredentialId"),
        error=data.get("error"),
    )
    if token:
        summary["kind"] = TOKEN_KIND
    error = data.get("error") or {}
    if outcome != "succeeded":
        line = f"{outcome}: {error.get('class', '')} {error.get('message', '')}"
    elif token:
        line = f"{outcome}: {destination_id} has a new verification token (current in its store)"
    else:
        line = f"{outcome}: {destination_id} now uses {data.get('newCredentialId')}"
    _emit(summary, json_output, line)
    return 0 if outcome == "succeeded" else 1


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
