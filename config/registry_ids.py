"""What a Redox id looks like, matched whole wherever an id enters the service."""

from __future__ import annotations

import re

__all__ = ["is_redox_id"]

#: A Redox id (a UUID, or the like): letters and digits, then also ``-`` and ``_``; at most
#: 64. Always matched whole (``fullmatch``): an id is pasted into URL paths and lock keys.
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")


def is_redox_id(value: object) -> bool:
    """True when ``value`` is a whole Redox id; nothing before or after it."""
    return isinstance(value, str) and _ID.fullmatch(value) is not None
