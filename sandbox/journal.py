"""What reached the sandbox: one entry per token, platform or IdP request, with kind and status.

IdP requests made by the sandbox's own simulated deliveries carry ``origin="delivery"``.
Token and platform entries also carry the bytes of the request body received and of the
response body sent (``request_bytes``, ``response_bytes``); the summary totals them by kind.
Entries whose bytes were not measured (the IdPs') have ``None`` there and count in no total.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["Journal", "JournalEntry", "classify"]

_ID = r"[^/]+"
_OKTA_SECRETS = rf"/idp/okta/api/v1/apps/{_ID}/credentials/secrets"
_GRAPH_APP = r"/idp/entra/graph/v1\.0/applications(?:\(appId='[^'/]+'\)|/[^/]+)"
_KINDS: list[tuple[str, re.Pattern[str], str]] = [
    (m, re.compile(p), k)
    for m, p, k in [
        ("POST", r"/v2/auth/token", "token"),
        ("GET", rf"/platform/v1/organizations/{_ID}/environments", "list_environments"),
        ("GET", rf"/platform/v1/environments/{_ID}/destinations", "list_destinations"),
        ("GET", rf"/platform/v1/environments/{_ID}/authcredentials", "list_credentials"),
        ("GET", rf"/platform/v1/destinations/{_ID}", "get_destination"),
        ("PATCH", rf"/platform/v1/destinations/{_ID}", "patch_destination"),
        ("GET", r"/platform/v1/authcredentials/strategies", "list_strategies"),
        ("POST", r"/platform/v1/authcredentials", "create_credential"),
        ("GET", rf"/platform/v1/authcredentials/{_ID}", "get_credential"),
        ("PATCH", rf"/platform/v1/authcredentials/{_ID}", "patch_credential"),
        ("DELETE", rf"/platform/v1/authcredentials/{_ID}", "delete_credential"),
        ("POST", rf"/platform/v1/environments/{_ID}/logs/search/metadata", "search_logs"),
        ("POST", rf"/idp/okta/oauth2/{_ID}/v1/token", "okta_token"),
        ("GET", _OKTA_SECRETS, "okta_list_secrets"),
        ("POST", _OKTA_SECRETS, "okta_create_secret"),
        ("GET", rf"{_OKTA_SECRETS}/{_ID}", "okta_get_secret"),
        ("DELETE", rf"{_OKTA_SECRETS}/{_ID}", "okta_delete_secret"),
        ("POST", rf"{_OKTA_SECRETS}/{_ID}/lifecycle/activate", "okta_activate_secret"),
        ("POST", rf"{_OKTA_SECRETS}/{_ID}/lifecycle/deactivate", "okta_deactivate_secret"),
        ("POST", rf"/idp/entra/login/{_ID}/oauth2/v2\.0/token", "entra_token"),
        ("GET", r"/idp/entra/graph/v1\.0/applications", "entra_list_applications"),
        ("GET", _GRAPH_APP, "entra_get_application"),
        ("POST", rf"{_GRAPH_APP}/addPassword", "entra_add_password"),
        ("POST", rf"{_GRAPH_APP}/removePassword", "entra_remove_password"),
    ]
]

#: Status recorded when the client went away before the sandbox answered (as nginx does).
CLIENT_CLOSED = 499


def classify(method: str, path: str) -> str:
    """Name of the operation a request is, e.g. ``patch_destination``; ``other`` if unknown."""
    trimmed = path.rstrip("/") or "/"
    for want, pattern, kind in _KINDS:
        if method == want and pattern.fullmatch(trimmed):
            return kind
    return "other"


@dataclass(frozen=True)
class JournalEntry:
    """One request as the sandbox answered it."""

    ts: float
    method: str
    path: str
    status: int
    kind: str
    #: Why a non-routed answer was given: "ratelimit", "fault", "hang", "malformed", "auth";
    #: "held" for an IdP create call that waited on a hold; else "".
    cause: str = ""
    #: "delivery" for the sandbox's own delivery token requests, else "".
    origin: str = ""
    #: Bytes of the request body (as received; its Content-Length if the body was not read).
    #: None when not measured.
    request_bytes: int | None = None
    #: Bytes of the response body sent, as they went out (after any malforming). None when
    #: not measured.
    response_bytes: int | None = None


class Journal:
    """Append-only list of entries; readers page through it with ``since``."""

    def __init__(self) -> None:
        self._entries: list[JournalEntry] = []
        self._offset = 0  # index of _entries[0]; grows when cleared
        self._clears = 0

    @property
    def epoch(self) -> int:
        """Changes with every :meth:`clear` (pass it to :meth:`record` as ``since_epoch``)."""
        return self._clears

    def record(
        self,
        method: str,
        path: str,
        status: int,
        cause: str = "",
        origin: str = "",
        *,
        since_epoch: int | None = None,
        request_bytes: int | None = None,
        response_bytes: int | None = None,
    ) -> None:
        """Append one entry; dropped if the journal was cleared since ``since_epoch``."""
        if since_epoch is not None and since_epoch != self.epoch:
            return
        self._entries.append(
            JournalEntry(
                time.time(),
                method,
                path,
                status,
                classify(method, path),
                cause,
                origin,
                request_bytes,
                response_bytes,
            )
        )

    def clear(self) -> None:
        """Drop every entry; indexes keep growing so old ``since`` values stay meaningful."""
        self._offset += len(self._entries)
        self._clears += 1
        self._entries.clear()

    def view(self, since: int = 0) -> dict[str, Any]:
        """Entries from index ``since`` on, ``next`` index, counts by kind and status, and
        body bytes (request and response totals, and both by kind; measured entries only)."""
        start = max(since - self._offset, 0)
        entries = self._entries[start:]
        by_kind = Counter(e.kind for e in entries)
        by_status = Counter(str(e.status) for e in entries)
        by_kind_status = Counter(f"{e.kind}:{e.status}" for e in entries)
        bytes_by_kind: dict[str, dict[str, int]] = {}
        for e in entries:
            if e.request_bytes is None and e.response_bytes is None:
                continue
            totals = bytes_by_kind.setdefault(e.kind, {"request": 0, "response": 0})
            totals["request"] += e.request_bytes or 0
            totals["response"] += e.response_bytes or 0
        return {
            "since": self._offset + start,
            "next": self._offset + len(self._entries),
            "entries": [asdict(e) for e in entries],
            "summary": {
                "total": len(entries),
                "by_kind": dict(by_kind),
                "by_status": dict(by_status),
                "by_kind_status": dict(by_kind_status),
                "request_bytes": sum(t["request"] for t in bytes_by_kind.values()),
                "response_bytes": sum(t["response"] for t in bytes_by_kind.values()),
                "bytes_by_kind": bytes_by_kind,
            },
        }
