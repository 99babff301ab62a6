"""Which rotations are being watched, and when each is next looked at (a sorted set).

``<prefix>:watch`` maps rotation id -> unix time of its next look. Beat claims the due ones
atomically (each claimed entry moves to a lease time, so two beats or two overlapping ticks
never look twice) and sends one ``watch_environment`` task per environment. A rotation
leaves the set when its verdict is given; its record carries everything else
(``switched_at``, ``watch_until``, ``environment_id``, ``destination_id``).
"""

from __future__ import annotations

from typing import Any, cast

import redis

from worker.store.keys import Keys

__all__ = ["WatchStore"]

# KEYS[1] watch zset; ARGV: now, limit, lease-until.
_CLAIM = """
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, id in ipairs(ids) do
  redis.call('ZADD', KEYS[1], ARGV[3], id)
end
return ids
"""


class WatchStore:
    """The watch set."""

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self._r = client
        self._key = keys.watch
        self._claim = client.register_script(_CLAIM)

    def add(self, rotation_id: str, next_look: float) -> None:
        """Watch a rotation, first looked at ``next_look`` (kept if already watched)."""
        self._r.zadd(self._key, {rotation_id: next_look}, nx=True)

    def next_look(self, rotation_id: str, when: float) -> None:
        """Look at a watched rotation again at ``when`` (only if it is still watched)."""
        self._r.zadd(self._key, {rotation_id: when}, xx=True)

    def done(self, *rotation_ids: str) -> None:
        """Stop watching these rotations."""
        if rotation_ids:
            self._r.zrem(self._key, *rotation_ids)

    def claim_due(self, now: float, limit: int, lease_seconds: float) -> list[str]:
        """Atomically take up to ``limit`` rotations due for a look by ``now``, leasing them
        until ``now + lease_seconds`` (a lost look comes back then)."""
        rows: Any = self._claim(
            keys=[self._key], args=[repr(float(now)), int(limit), repr(now + lease_seconds)]
        )
        return [str(r) for r in cast(list[Any], rows)]

    def any_due(self, now: float) -> bool:
        """Whether a watched rotation is due for a look."""
        return bool(self._r.zrangebyscore(self._key, "-inf", repr(float(now)), start=0, num=1))

    def watched(self) -> list[tuple[str, float]]:
        """Every watched rotation with its next look."""
        rows: Any = self._r.zrange(self._key, 0, -1, withscores=True)
        return [(str(m), float(s)) for m, s in rows]
