"""``rotator events``: read (or follow) the result-event stream."""

from __future__ import annotations

import json
from typing import Any

import typer

from worker.cli.common import console, open_redis, settings_or_exit
from worker.events import EventStream, StreamEntry
from worker.store.keys import Keys

__all__ = ["format_event", "register"]

_COLOURS = {
    "succeeded": "green",
    "started": "cyan",
    "failed": "red",
    "rolled_back": "yellow",
    "needs_attention": "bold red",
    "drift_detected": "magenta",
    "retired": "blue",
}


def format_event(entry: StreamEntry) -> str:
    """One human-readable line for an event (Rich markup)."""
    event: dict[str, Any] = entry.event
    data: dict[str, Any] = event.get("data") or {}
    kind = str(event.get("type", "?")).removeprefix("rotator.")
    short = kind.rsplit(".", 1)[-1]
    colour = _COLOURS.get(short, "white")
    parts = [f"[dim]{event.get('time', '')}[/dim]", f"[{colour}]{kind:<34}[/{colour}]"]
    parts.append(f"dest={event.get('subject', '')}")
    if data.get("rotationId"):
        parts.append(f"rotation={data['rotationId']}")
    if data.get("oldCredentialId") or data.get("newCredentialId"):
        parts.append(f"{data.get('oldCredentialId')} -> {data.get('newCredentialId')}")
    if data.get("credentialId"):
        parts.append(f"credential={data['credentialId']}")
    if data.get("trigger"):
        parts.append(f"trigger={data['trigger']}")
    if data.get("attempt"):
        parts.append(f"attempt={data['attempt']}")
    error = data.get("error")
    if isinstance(error, dict):
        parts.append(f"error={error.get('class')}: {error.get('message')}")
    return "  ".join(str(p) for p in parts)


def events(
    follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing new events."),
    json_output: bool = typer.Option(False, "--json", help="One CloudEvents JSON per line."),
    since: str = typer.Option("0-0", "--since", help="Stream id to start after."),
    limit: int = typer.Option(1000, "--limit", min=1, help="Most events to print (not with -f)."),
) -> None:
    """Show the result events (CloudEvents) in the Redis Stream ``rotator:events``."""
    settings = settings_or_exit()
    keys = Keys(settings.key_prefix)
    stream = EventStream(open_redis(settings), keys, maxlen=settings.events.stream_maxlen)
    _check_stream_id(since)

    def show(entry: StreamEntry) -> None:
        if json_output:
            typer.echo(json.dumps({"streamId": entry.stream_id, **entry.event}))
        else:
            console.print(format_event(entry), highlight=False, soft_wrap=True)

    if not follow:
        for entry in stream.read(since=since, count=limit):
            show(entry)
        return
    start = since if since != "0-0" else "0-0"
    for followed in stream.follow(since=start, block_ms=1000):
        if followed is not None:
            show(followed)


def _check_stream_id(value: str) -> None:
    from worker.errors import UsageError

    head, _, tail = value.partition("-")
    if not head.isdigit() or (tail and not tail.isdigit()):
        raise UsageError(f"invalid --since {value!r} (a stream id such as 1700000000000-0)")


def register(app: typer.Typer) -> None:
    """Add ``events``."""
    app.command("events")(events)
