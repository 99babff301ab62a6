"""The delivery log: a bounded, in-memory list of log entries, searchable like Redox's.

Entries are kept oldest first, with a per-destination index, and searched newest first. The
opaque cursors of a paged search are remembered here (the oldest forgotten first), each bound
to the environment and filters it was issued for.
"""

from __future__ import annotations

import secrets
from collections import OrderedDict, deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

__all__ = ["MAX_LOGS", "Cursor", "LogEntry", "LogStore"]

MAX_LOGS = 100_000
MAX_CURSORS = 10_000

#: Filter field -> how to read it from a log view (timestamps are handled apart).
_PLAIN = ("status", "type", "dataModel", "eventType", "dataMode", "serviceRegion", "facilityCode")
_BOUNDS = {
    "createdAfter": ("createdAt", 1),
    "createdBefore": ("createdAt", -1),
    "updatedAfter": ("updatedAt", 1),
    "updatedBefore": ("updatedAt", -1),
}


@dataclass(frozen=True)
class LogEntry:
    """One log: its order number, environment and the view the search API returns."""

    seq: int
    environment_id: str
    view: dict[str, Any]

    @property
    def destination_id(self) -> str:
        """The destination the message went to."""
        dest_id: str = self.view["destination"]["id"]
        return dest_id


@dataclass(frozen=True)
class Cursor:
    """Where the next page of a search starts: logs older than ``before_seq``."""

    environment_id: str
    filters: tuple[tuple[str, str], ...]
    before_seq: int


def matches(view: dict[str, Any], filters: dict[str, str]) -> bool:
    """Whether a log view passes every filter (timestamp bounds are inclusive)."""
    for name, wanted in filters.items():
        if name == "destinationId":
            if view["destination"]["id"] != wanted:
                return False
        elif name == "sourceId":
            if view["source"]["id"] != wanted:
                return False
        elif name in _BOUNDS:
            field, sign = _BOUNDS[name]
            value = view[field]  # same fixed-width ISO form: string order is time order
            if (sign > 0 and value < wanted) or (sign < 0 and value > wanted):
                return False
        elif name in _PLAIN:
            if view.get(name) != wanted:
                return False
        else:
            raise KeyError(name)
    return True


class LogStore:
    """At most ``max_entries`` logs; only touched from the server's event loop."""

    def __init__(self, max_entries: int = MAX_LOGS) -> None:
        self.max_entries = max_entries
        self._entries: deque[LogEntry] = deque()
        self._by_destination: dict[str, deque[LogEntry]] = {}
        self._cursors: OrderedDict[str, Cursor] = OrderedDict()
        self._seq = 0

    def __len__(self) -> int:
        return len(self._entries)

    def add(self, environment_id: str, view: dict[str, Any]) -> LogEntry:
        """Append a log; drop the oldest beyond ``max_entries``."""
        self._seq += 1
        entry = LogEntry(self._seq, environment_id, view)
        self._entries.append(entry)
        self._by_destination.setdefault(entry.destination_id, deque()).append(entry)
        while len(self._entries) > self.max_entries:
            old = self._entries.popleft()
            index = self._by_destination[old.destination_id]
            index.popleft()
            if not index:
                del self._by_destination[old.destination_id]
        return entry

    def clear(self) -> None:
        """Forget every log and cursor (order numbers keep growing)."""
        self._entries.clear()
        self._by_destination.clear()
        self._cursors.clear()

    def _candidates(self, filters: dict[str, str]) -> deque[LogEntry]:
        dest_id = filters.get("destinationId")
        if dest_id is not None:
            return self._by_destination.get(dest_id) or deque()
        return self._entries

    def newest_first(self, environment_id: str, filters: dict[str, str]) -> Iterator[LogEntry]:
        """Matching logs of an environment, newest first."""
        for entry in reversed(self._candidates(filters)):
            if entry.environment_id == environment_id and matches(entry.view, filters):
                yield entry

    def search(
        self,
        environment_id: str,
        filters: dict[str, str],
        count: int,
        cursor: Cursor | None = None,
    ) -> tuple[list[dict[str, Any]], str | None]:
        """One page (newest first) and the cursor of the next page, None on the last one."""
        before = cursor.before_seq if cursor is not None else self._seq + 1
        page: list[LogEntry] = []
        more = False
        for entry in self.newest_first(environment_id, filters):
            if entry.seq >= before:
                continue
            if len(page) == count:
                more = True
                break
            page.append(entry)
        if not more or not page:
            return [e.view for e in page], None
        key = secrets.token_urlsafe(18)
        self._cursors[key] = Cursor(environment_id, tuple(sorted(filters.items())), page[-1].seq)
        while len(self._cursors) > MAX_CURSORS:
            self._cursors.popitem(last=False)
        return [e.view for e in page], key

    def cursor(self, key: str) -> Cursor | None:
        """A cursor this store issued (and has not forgotten), or None."""
        return self._cursors.get(key)

    def for_destination(self, destination_id: str) -> list[dict[str, Any]]:
        """Every kept log of one destination, oldest first (for tests and the demo)."""
        return [e.view for e in self._by_destination.get(destination_id, ())]
