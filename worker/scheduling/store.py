"""The schedule in Redis: a sorted set of destination id -> next due time, plus policies.

Keys (see :class:`worker.store.keys.Keys`): ``schedule`` (zset), ``policy(id)`` (string,
the :class:`DestinationPolicy` JSON), ``policies`` (set of the ids that may be scheduled:
in the registry, enabled and not paused); sync also adds every enabled registry id to
``destinations`` (the ids the service knows, shown by ``rotator status``). Beat claims due
entries atomically with a lease; the rotation engine sets the real next due time with
:meth:`ScheduleStore.reschedule`.

A policy JSON is kept after its destination leaves the registry, so a rotation in flight
can finish; it only stops being in ``policies`` and on the schedule.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import redis
from pydantic import ValidationError

from config.registry import DestinationPolicy
from worker.scheduling.due import Rng, catchup_due, first_due
from worker.store.destinations import DestinationState
from worker.store.keys import Keys

__all__ = ["CLAIM_SCRIPT", "ScheduleStore", "SyncReport"]

_CHUNK = 1000
_T = TypeVar("_T")

# KEYS[1] schedule; ARGV: now, limit, lease-until. Each claimed id moves to the lease time,
# so a concurrent caller (or this one, next tick) cannot claim it again until the lease ends.
#: KEYS[1] a schedule; ARGV: now, limit, lease-until. Claimed ids move to the lease time.
CLAIM_SCRIPT = _CLAIM = """
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, id in ipairs(ids) do
  redis.call('ZADD', KEYS[1], ARGV[3], id)
end
return ids
"""

# KEYS[1] schedule, KEYS[2] policies; ARGV: due, id. Schedule only ids still in the registry.
_RESCHEDULE = """
if redis.call('SISMEMBER', KEYS[2], ARGV[2]) == 1 then
  redis.call('ZADD', KEYS[1], ARGV[1], ARGV[2])
  return 1
end
return 0
"""


@dataclass(frozen=True)
class SyncReport:
    """What :meth:`ScheduleStore.sync` changed (destination ids, sorted)."""

    added: tuple[str, ...] = ()
    updated: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    paused: tuple[str, ...] = ()
    #: Subset of ``updated`` whose due time was recomputed (interval, cron or window changed).
    rescheduled: tuple[str, ...] = ()
    unchanged: int = 0

    def __str__(self) -> str:
        return (
            f"added {len(self.added)}, updated {len(self.updated)} "
            f"({len(self.rescheduled)} rescheduled), removed {len(self.removed)}, "
            f"paused {len(self.paused)}, unchanged {self.unchanged}"
        )


class ScheduleStore:
    """Due times and policies of the registry's destinations, in Redis."""

    def __init__(self, redis_client: redis.Redis, keys: Keys) -> None:
        self._redis = redis_client
        self._keys = keys
        self._claim = redis_client.register_script(_CLAIM)
        self._reschedule = redis_client.register_script(_RESCHEDULE)

    def sync(
        self,
        policies: Sequence[DestinationPolicy],
        now: float,
        rng: Rng,
        *,
        catchup_seconds: float,
        last_rotated: Callable[[str], float | None] | None = None,
    ) -> SyncReport:
        """Make Redis match the registry's ``policies``; one MULTI/EXEC for all writes.

        New schedulable destinations get :func:`first_due`; scheduled ones keep their due
        time unless interval, cron or window changed. Ids that left the registry, or are now
        paused or disabled, leave the schedule and ``policies``; nothing else is deleted.
        A destination in ``policies`` but off the schedule (stopped by the rotation engine,
        e.g. needs attention) stays off until it is paused and unpaused, or rescheduled.
        """
        keys = self._keys
        old_ids = set(cast(set[str], self._redis.smembers(keys.policies)))
        ids = [p.destination_id for p in policies]
        old_json = self._pipelined(ids, lambda pipe, i: pipe.get(keys.policy(i)))
        old_due = self._pipelined(ids, lambda pipe, i: pipe.zscore(keys.schedule, i))

        added: list[str] = []
        updated: list[str] = []
        rescheduled: list[str] = []
        paused: list[str] = []
        unchanged = 0
        new_ids: set[str] = set()
        writes: list[tuple[str, str]] = []
        dues: dict[str, float] = {}
        for policy, raw, due in zip(policies, old_json, old_due, strict=True):
            ident = policy.destination_id
            text = policy.model_dump_json()
            if text != raw:
                writes.append((ident, text))
            if not policy.enabled:
                continue
            if policy.paused:
                paused.append(ident)
                continue
            new_ids.add(ident)
            if ident in old_ids and text == raw:
                unchanged += 1
                continue
            if ident in old_ids:
                updated.append(ident)
                if due is None or not _schedule_changed(raw, policy):
                    continue
                rescheduled.append(ident)
            else:
                added.append(ident)
            last = last_rotated(ident) if last_rotated is not None else None
            dues[ident] = first_due(
                policy, now, rng, last_rotated_at=last, catchup_seconds=catchup_seconds
            )
        removed = sorted(old_ids - new_ids)

        known = [p.destination_id for p in policies if p.enabled]  # paused included
        self._apply(writes, removed, sorted(new_ids - old_ids), dues, known)
        return SyncReport(
            added=tuple(sorted(added)),
            updated=tuple(sorted(updated)),
            removed=tuple(r for r in removed if r not in paused),
            paused=tuple(sorted(paused)),
            rescheduled=tuple(sorted(rescheduled)),
            unchanged=unchanged,
        )

    def _apply(
        self,
        writes: list[tuple[str, str]],
        removed: list[str],
        added: list[str],
        dues: dict[str, float],
        known: list[str],
    ) -> None:
        """Write one sync's changes in a single MULTI/EXEC."""
        keys = self._keys
        with self._redis.pipeline(transaction=True) as pipe:
            for ident, text in writes:
                pipe.set(keys.policy(ident), text)
            for chunk in _chunks(removed):
                pipe.zrem(keys.schedule, *chunk)
                pipe.srem(keys.policies, *chunk)
            for chunk in _chunks(added):
                pipe.sadd(keys.policies, *chunk)
            for chunk in _chunks(known):
                pipe.sadd(keys.destinations, *chunk)
            for chunk in _chunks(sorted(dues)):
                pipe.zadd(keys.schedule, {i: dues[i] for i in chunk})
            pipe.execute()

    def claim_due(self, now: float, limit: int, lease_seconds: float) -> list[str]:
        """Atomically take up to ``limit`` ids due by ``now``, leasing them until now + lease."""
        if limit <= 0:
            return []
        args: list[str | int] = [repr(float(now)), int(limit), repr(float(now + lease_seconds))]
        return list(cast(list[str], self._claim(keys=[self._keys.schedule], args=args)))

    def reschedule(self, destination_id: str, due: float) -> bool:
        """Set the due time, only if the destination is still in the registry; True if set."""
        result = self._reschedule(
            keys=[self._keys.schedule, self._keys.policies],
            args=[repr(float(due)), destination_id],
        )
        return bool(result)

    def unschedule(self, destination_id: str) -> None:
        """Take the destination off the schedule (its policy stays)."""
        self._redis.zrem(self._keys.schedule, destination_id)

    def due_of(self, destination_id: str) -> float | None:
        """The destination's due time, or None when it is not scheduled."""
        score = self._redis.zscore(self._keys.schedule, destination_id)
        return None if score is None else float(score)

    def policy(self, destination_id: str) -> DestinationPolicy | None:
        """The destination's last synced policy (also after it left the registry), or None."""
        raw = self._redis.get(self._keys.policy(destination_id))
        return None if raw is None else DestinationPolicy.model_validate_json(cast(str, raw))

    def policy_and_state(
        self, destination_id: str
    ) -> tuple[DestinationPolicy | None, DestinationState]:
        """:meth:`policy` and the destination's state (last rotation, flags), in one
        round trip: what a finished rotation's follow-up decides on."""
        with self._redis.pipeline(transaction=False) as pipe:
            pipe.get(self._keys.policy(destination_id))
            pipe.hgetall(self._keys.destination(destination_id))
            raw, state = pipe.execute()
        policy = None if raw is None else DestinationPolicy.model_validate_json(cast(str, raw))
        return policy, DestinationState.from_hash(state)

    def all_policies(self) -> list[DestinationPolicy]:
        """Policies of every schedulable destination (the ``policies`` set), sorted by id."""
        ids = sorted(cast(set[str], self._redis.smembers(self._keys.policies)))
        raws = self._pipelined(ids, lambda pipe, i: pipe.get(self._keys.policy(i)))
        return [DestinationPolicy.model_validate_json(r) for r in raws if r is not None]

    def upcoming(self, until: float, *, limit: int | None = None) -> list[tuple[str, float]]:
        """``(id, due)`` of every entry due by ``until``, earliest first."""
        rows = self._redis.zrangebyscore(
            self._keys.schedule,
            "-inf",
            repr(float(until)),
            start=None if limit is None else 0,
            num=limit,
            withscores=True,
        )
        return [(str(m), float(s)) for m, s in cast(list[tuple[str, float]], rows)]

    def spread_overdue(self, now: float, catchup_seconds: float, rng: Rng) -> int:
        """Re-score every entry due before ``now`` to ``now + uniform(0, catchup)``.

        Called once when beat starts, so a fleet that fell due during downtime is spread
        out instead of rotating in one burst. Windows are respected. Returns the count.
        """
        keys = self._keys
        overdue = cast(list[str], self._redis.zrangebyscore(keys.schedule, "-inf", f"({now!r}"))
        raws = self._pipelined(overdue, lambda pipe, i: pipe.get(keys.policy(i)))
        for chunk in _chunks(list(zip(overdue, raws, strict=True))):
            with self._redis.pipeline(transaction=False) as pipe:
                for ident, raw in chunk:
                    due = catchup_due(_load(raw), now, catchup_seconds, rng)
                    pipe.zadd(keys.schedule, {ident: due}, xx=True)
                pipe.execute()
        return len(overdue)

    def _pipelined(self, ids: Sequence[str], command: Callable[[Any, str], object]) -> list[Any]:
        """One read ``command`` per id, pipelined in chunks; results in id order."""
        out: list[Any] = []
        for chunk in _chunks(ids):
            with self._redis.pipeline(transaction=False) as pipe:
                for ident in chunk:
                    command(pipe, ident)
                out.extend(pipe.execute())
        return out


def _schedule_changed(raw: str | None, policy: DestinationPolicy) -> bool:
    old = _load(raw)
    return old is None or old.schedule_key() != policy.schedule_key()


def _load(raw: str | None) -> DestinationPolicy | None:
    if raw is None:
        return None
    try:
        return DestinationPolicy.model_validate_json(raw)
    except ValidationError:
        return None


def _chunks(items: Sequence[_T] | Iterable[_T], size: int = _CHUNK) -> Iterator[list[_T]]:
    batch: list[_T] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch
