"""The verification tokens' own schedule, beside the credentials' one.

A destination whose registry entry has ``[destinations.verification_token]`` with an
``interval`` is in the sorted set ``<prefix>:token-schedule`` (destination id -> next due
time). Beat claims due entries each tick (the same atomic claim as the credential
schedule: two beats never start one twice; see ``enqueue_due_tokens`` in
:mod:`worker.scheduling.enqueue`) and triggers a ``verification_token`` rotation;
its follow-up sets the next due time (one interval after a success, a backoff after a
failure). A destination's two kinds never run at once: they share its single-flight claim,
so a token rotation that finds a credential rotation running waits for the next tick.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import cast

import redis

from config.registry import DestinationPolicy
from worker.scheduling.store import CLAIM_SCRIPT
from worker.store.keys import Keys

__all__ = ["BUSY_RETRY_SECONDS", "TokenSchedule"]

#: A claimed entry comes back after this long unless the follow-up reschedules it.
CLAIM_LEASE_SECONDS = 3600.0
#: A due token rotation whose destination is busy (or whose send failed) is tried again.
BUSY_RETRY_SECONDS = 60.0


class TokenSchedule:
    """Due times of verification-token rotations."""

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self._r = client
        self._key = keys.token_schedule
        self._claim = client.register_script(CLAIM_SCRIPT)

    def sync(
        self,
        policies: Sequence[DestinationPolicy],
        now: float,
        rng: random.Random,
        last_rotated: Callable[[str], float | None],
    ) -> int:
        """Match the schedule to the registry: destinations with a token interval stay or
        join (due one interval after their last token rotation, or spread over the first
        interval), the others leave. Returns how many joined."""
        wanted = {
            p.destination_id: p.token_interval_seconds
            for p in policies
            if p.token_interval_seconds is not None and p.scheduled
        }
        present = {_text(m) for m in cast(list[bytes | str], self._r.zrange(self._key, 0, -1))}
        gone = present - set(wanted)
        joined = {}
        for destination_id, interval in wanted.items():
            if destination_id in present or interval is None:
                continue
            last = last_rotated(destination_id)
            joined[destination_id] = (
                last + interval if last is not None else now + rng.uniform(0, interval)
            )
        with self._r.pipeline() as pipe:
            if gone:
                pipe.zrem(self._key, *gone)
            if joined:
                pipe.zadd(self._key, joined)
            pipe.execute()
        return len(joined)

    def claim_due(self, now: float, limit: int) -> list[str]:
        """Atomically take up to ``limit`` due destinations (moved to a lease time)."""
        args: list[str | int] = [repr(now), limit, repr(now + CLAIM_LEASE_SECONDS)]
        found = cast(list[bytes | str], self._claim(keys=[self._key], args=args))
        return [_text(v) for v in found]

    def reschedule(self, destination_id: str, due: float) -> None:
        """Set the next due time, if the destination is still on this schedule."""
        self._r.zadd(self._key, {destination_id: due}, xx=True)

    def unschedule(self, destination_id: str) -> None:
        """Take the destination off (paused, needs attention)."""
        self._r.zrem(self._key, destination_id)

    def due_of(self, destination_id: str) -> float | None:
        """The next due time, or None when not scheduled."""
        score = self._r.zscore(self._key, destination_id)
        return None if score is None else float(score)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
