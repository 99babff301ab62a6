"""Result events: CloudEvents 1.0 JSON documents on the Redis Stream ``rotator:events``.

Each stream entry has one field, ``event``, holding one CloudEvents document::

    {"specversion": "1.0", "id": "...", "source": "redox-rotator", "type":
     "rotator.rotation.succeeded", "subject": "<destination id>", "time": "...Z",
     "datacontenttype": "application/json", "data": {"rotationId": ..., "destinationId": ...,
     "environmentId": ..., "oldCredentialId": ..., "newCredentialId": ..., "trigger": ...,
     "attempt": 1, "error": null | {"class": ..., "message": ...}}}

Only ids ever appear in ``data``; error messages are written by this service (see
:mod:`worker.errors`) and pass through the log redactor before they are published.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import redis

from worker.logging import redact_text
from worker.store.keys import Keys

__all__ = [
    "EVENT_FIELD",
    "SOURCE",
    "TERMINAL_OUTCOMES",
    "EventStream",
    "Outcome",
    "StreamEntry",
    "cloud_event",
    "error_data",
    "format_event",
]

#: Name of the single field of each stream entry.
EVENT_FIELD = "event"
SOURCE = "redox-rotator"


class Outcome(StrEnum):
    """The four outcomes that end a rotation; exactly one is published per rotation."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"
    ROLLED_BACK = "rolled_back"
    NEEDS_ATTENTION = "needs_attention"


#: The terminal outcomes as strings (event types are ``rotator.rotation.<outcome>``).
TERMINAL_OUTCOMES: tuple[str, ...] = tuple(o.value for o in Outcome)


def cloud_event(event_type: str, subject: str, data: dict[str, Any]) -> dict[str, Any]:
    """A CloudEvents 1.0 document (``event_type`` like ``rotator.rotation.succeeded``)."""
    return {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "source": SOURCE,
        "type": event_type,
        "subject": subject,
        "time": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "datacontenttype": "application/json",
        "data": data,
    }


def error_data(exc: BaseException | None) -> dict[str, str] | None:
    """The ``error`` member of event data: class name and a redacted one-line message."""
    if exc is None:
        return None
    message = " ".join(str(exc).split())[:500]
    return {"class": type(exc).__name__, "message": redact_text(message)}


@dataclass(frozen=True)
class StreamEntry:
    """One event read back from the stream, with its stream id."""

    stream_id: str
    event: dict[str, Any]


class EventStream:
    """Publish to and read from the event stream."""

    def __init__(self, client: redis.Redis, keys: Keys, *, maxlen: int = 100_000) -> None:
        self._client = client
        self._key = keys.events
        self._maxlen = maxlen

    @property
    def key(self) -> str:
        """The stream's Redis key."""
        return self._key

    def publish(self, event: dict[str, Any]) -> str:
        """Append one event (approximate MAXLEN trim); return its stream id."""
        stream_id = self._client.xadd(
            self._key,
            {EVENT_FIELD: json.dumps(event, separators=(",", ":"))},
            maxlen=self._maxlen,
            approximate=True,
        )
        return _text(stream_id)

    def read(self, since: str = "0-0", count: int = 1000) -> list[StreamEntry]:
        """Events after stream id ``since`` (exclusive), oldest first."""
        start = since if since in ("-", "0", "0-0") else f"({since}"
        start = "-" if start in ("0", "0-0") else start
        rows: Any = self._client.xrange(self._key, min=start, count=count)
        return [_entry(stream_id, fields) for stream_id, fields in rows or []]

    def follow(self, since: str = "$", block_ms: int = 1000) -> Iterator[StreamEntry | None]:
        """Yield new events as they arrive (``None`` on each idle ``block_ms``)."""
        last = since
        while True:
            reply: Any = self._client.xread({self._key: last}, block=block_ms, count=100)
            if not reply:
                yield None
                continue
            for _, rows in reply:
                for stream_id, fields in rows:
                    entry = _entry(stream_id, fields)
                    last = entry.stream_id
                    yield entry

    def last_id(self) -> str:
        """Stream id of the newest event, or ``0-0`` when the stream is empty."""
        rows: Any = self._client.xrevrange(self._key, count=1)
        return _text(rows[0][0]) if rows else "0-0"


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _entry(stream_id: Any, fields: dict[Any, Any]) -> StreamEntry:
    raw = fields.get(EVENT_FIELD) or fields.get(EVENT_FIELD.encode())
    try:
        event = json.loads(raw) if raw is not None else {}
    except ValueError:
        event = {"type": "unparseable", "raw_length": len(raw or "")}
    return StreamEntry(_text(stream_id), event)


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
    """One human-readable line for an event, in Rich markup (the CLI and the demo show it)."""
    event: dict[str, Any] = entry.event
    data: dict[str, Any] = event.get("data") or {}
    kind = str(event.get("type", "?")).removeprefix("rotator.")
    short = kind.rsplit(".", 1)[-1]
    colour = _COLOURS.get(short, "white")
    parts = [f"[dim]{event.get('time', '')}[/dim]", f"[{colour}]{kind:<34}[/{colour}]"]
    parts.append(f"dest={event.get('subject', '')}")
    if data.get("rotationId"):
        parts.append(f"rotation={data['rotationId']}")
    if data.get("kind") == "verification_token":
        parts.append("verification token")
    elif data.get("oldCredentialId") or data.get("newCredentialId"):
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
