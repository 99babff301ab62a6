"""``rotator events``: read (or follow) the result-event stream."""

from __future__ import annotations

import json

import typer

from worker.cli.common import console, open_runtime, settings_or_exit
from worker.errors import UsageError
from worker.events import StreamEntry, format_event

__all__ = ["register"]


def events(
    follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing new events."),
    json_output: bool = typer.Option(False, "--json", help="One CloudEvents JSON per line."),
    since: str = typer.Option("0-0", "--since", help="Stream id to start after."),
    limit: int = typer.Option(1000, "--limit", min=1, help="Most events to print (not with -f)."),
) -> None:
    """Show the result events (CloudEvents) in the Redis Stream ``rotator:events``."""
    _check_stream_id(since)
    stream = open_runtime(settings_or_exit()).events

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
    head, _, tail = value.partition("-")
    if not head.isdigit() or (tail and not tail.isdigit()):
        raise UsageError(f"invalid --since {value!r} (a stream id such as 1700000000000-0)")


def register(app: typer.Typer) -> None:
    """Add ``events``."""
    app.command("events")(events)
