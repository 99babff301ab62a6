"""Redox's log metadata search, read tolerantly (redox-api.md §8).

``POST /v1/environments/{environmentId}/logs/search/metadata?_count=N[&_cursor=C]`` with a
JSON body of single strings (``destinationId``, ``status``, ``createdAfter``, ...). The
reply's shape is not documented: the list is read from ``payload.logs``,
``payload.results`` or ``payload`` itself when it is a list; the next page's cursor from
the ``_cursor`` parameter of ``meta.page.links.next``, else ``meta.page.cursor`` /
``meta.page.nextCursor`` / ``payload.nextCursor``. Unknown fields are ignored; an entry
without an id, a time or a status is skipped (it cannot be counted), never fatal.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

from worker.errors import BadRedoxResponse

__all__ = [
    "PAGE_SIZE",
    "SEARCH_FIELDS",
    "LogEntry",
    "LogPage",
    "iso_ms",
    "parse_log_page",
    "parse_time",
]

#: Page size sent as ``_count`` (one version of the page says at most 50).
PAGE_SIZE = 50
#: Body fields the search documents (each a single string).
SEARCH_FIELDS = frozenset(
    {
        "destinationId", "sourceId", "status", "type", "createdAfter", "createdBefore",
        "updatedAfter", "updatedBefore", "dataModel", "eventType", "dataMode",
        "serviceRegion", "facilityCode",
    }
)  # fmt: skip


def iso_ms(ts: float) -> str:
    """Unix seconds as ``YYYY-MM-DDThh:mm:ss.sssZ`` (the search's timestamp format)."""
    moment = datetime.fromtimestamp(ts, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def parse_time(value: Any) -> float | None:
    """An ISO 8601 time (``Z`` or an offset) as unix seconds, or None."""
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


@dataclass(frozen=True)
class LogEntry:
    """What the watch needs of one log: which destination, when, and how it went."""

    id: str
    created_at: float
    status: str
    destination_id: str | None


@dataclass(frozen=True)
class LogPage:
    """One page of search results and the cursor of the next one (None on the last)."""

    entries: list[LogEntry]
    next_cursor: str | None
    skipped: int = 0


def _entry(item: Mapping[str, Any]) -> LogEntry | None:
    ident = item.get("id")
    created = parse_time(item.get("createdAt"))
    status = item.get("status")
    attempts = item.get("attempts")
    if not isinstance(status, str) and isinstance(attempts, Mapping):
        latest = attempts.get("latest")
        status = latest.get("status") if isinstance(latest, Mapping) else None
    destination = item.get("destination")
    dest_id = destination.get("id") if isinstance(destination, Mapping) else None
    dest_id = dest_id if isinstance(dest_id, str) else item.get("destinationId")
    if not isinstance(ident, str | int) or created is None or not isinstance(status, str):
        return None
    return LogEntry(str(ident), created, status, dest_id if isinstance(dest_id, str) else None)


def _cursor(meta: Any, payload: Any) -> str | None:
    page = meta.get("page") if isinstance(meta, Mapping) else None
    if isinstance(page, Mapping):
        links = page.get("links")
        nxt = links.get("next") if isinstance(links, Mapping) else None
        if isinstance(nxt, str) and nxt:
            found = parse_qs(urlsplit(nxt).query).get("_cursor")
            if found and found[0]:
                return found[0]
        for key in ("nextCursor", "cursor"):
            value = page.get(key)
            if isinstance(value, str) and value:
                return value
    if isinstance(payload, Mapping):
        value = payload.get("nextCursor")
        if isinstance(value, str) and value:
            return value
    return None


def parse_log_page(data: Any, what: str) -> LogPage:
    """The entries and next cursor of a search reply (BadRedoxResponse if it has no list)."""
    if not isinstance(data, Mapping):
        raise BadRedoxResponse(f"{what}: reply is not a JSON object")
    payload = data.get("payload")
    items: Any = payload
    if isinstance(payload, Mapping):
        items = next(
            (payload[k] for k in ("logs", "results") if isinstance(payload.get(k), list)), None
        )
    if not isinstance(items, list):
        raise BadRedoxResponse(f"{what}: no list of logs in payload.logs or payload.results")
    entries: list[LogEntry] = []
    skipped = 0
    for item in items:
        entry = _entry(item) if isinstance(item, Mapping) else None
        if entry is None:
            skipped += 1
        else:
            entries.append(entry)
    return LogPage(entries, _cursor(data.get("meta"), payload), skipped)
