"""One classification of HTTP statuses, used by the Redox client and the token provider.

Design invariant 4: timeouts, connection errors, 429 and 408/500/502/503/504 are transient
(retried with backoff); 401 after one token refresh, 403, 404, 409, 422, any other 4xx and
any other 5xx are permanent (never retried).
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["TRANSIENT_STATUSES", "StatusClass", "classify_status"]

#: Replies that may succeed when tried again later.
TRANSIENT_STATUSES = frozenset({408, 500, 502, 503, 504})


class StatusClass(StrEnum):
    """What a reply's status means for the caller."""

    OK = "ok"
    RATE_LIMITED = "rate_limited"
    TRANSIENT = "transient"
    AUTH = "auth"
    NOT_FOUND = "not_found"
    REJECTED = "rejected"
    UNEXPECTED = "unexpected"


def classify_status(status: int) -> StatusClass:
    """The :class:`StatusClass` of an HTTP status."""
    if 200 <= status < 300:
        return StatusClass.OK
    if status == 429:
        return StatusClass.RATE_LIMITED
    if status in TRANSIENT_STATUSES:
        return StatusClass.TRANSIENT
    if status == 401:
        return StatusClass.AUTH
    if status == 404:
        return StatusClass.NOT_FOUND
    if 400 <= status < 600:
        return StatusClass.REJECTED
    return StatusClass.UNEXPECTED
