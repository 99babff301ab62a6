"""Per-destination state in Redis: one typed owner for the hash ``<prefix>:destination:<id>``.

The hash holds what an operator asks about a destination: the credential in place and
since when, the last rotation and its outcome, and the two flags that stop scheduling
(``paused``, ``needs_attention``; each holds the unix time it was set). Everything that
reads or writes it goes through :class:`DestinationState` and :class:`DestinationStates`;
field names are the :class:`StateField` members, outcomes the :class:`Outcome` members.
The terminal write itself happens inside the rotation store's ``finish`` Lua step, with the
fields :func:`finished_fields` computes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from enum import StrEnum
from typing import Any

import redis

from worker.events import TERMINAL_OUTCOMES, Outcome
from worker.store.keys import Keys

__all__ = ["DestinationState", "DestinationStates", "StateField", "finished_fields"]

# KEYS: state hash, schedule zset, policies set. ARGV: due ('' = none), id, flags to clear...
# Clears the flags; then, when nothing holds the destination any more and it is still in
# the registry, puts it on the schedule at ``due``. Returns 1 if scheduled, else 0.
_RELEASE = """
redis.call('HDEL', KEYS[1], unpack(ARGV, 3))
local paused = redis.call('HGET', KEYS[1], 'paused')
local attention = redis.call('HGET', KEYS[1], 'needs_attention')
local held = (paused and paused ~= '') or (attention and attention ~= '')
if held or ARGV[1] == '' or redis.call('SISMEMBER', KEYS[3], ARGV[2]) == 0 then
  return 0
end
redis.call('ZADD', KEYS[2], ARGV[1], ARGV[2])
return 1
"""


class StateField(StrEnum):
    """Field names of the destination state hash."""

    LAST_ROTATION_ID = "last_rotation_id"
    LAST_OUTCOME = "last_outcome"
    LAST_FINISHED_AT = "last_finished_at"
    LAST_ERROR = "last_error"
    ENVIRONMENT_ID = "environment_id"
    CREDENTIAL_ID = "credential_id"
    CREDENTIAL_SINCE = "credential_since"
    LAST_SUCCESS_AT = "last_success_at"
    NEEDS_ATTENTION = "needs_attention"
    PAUSED = "paused"
    TOKEN_SINCE = "token_since"


def _float(value: Any) -> float | None:
    try:
        return float(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def _text(value: Any) -> str | None:
    if value in (None, ""):
        return None
    return value.decode() if isinstance(value, bytes) else str(value)


@dataclass(frozen=True)
class DestinationState:
    """One destination's state as stored (every field None when unknown)."""

    last_rotation_id: str | None = None
    last_outcome: Outcome | None = None
    last_finished_at: float | None = None
    last_error: str | None = None
    environment_id: str | None = None
    credential_id: str | None = None
    credential_since: float | None = None
    last_success_at: float | None = None
    #: When the destination was put in ``needs_attention`` (None: it is not).
    needs_attention_since: float | None = None
    #: When ``rotator pause`` paused it (None: not paused by an operator).
    paused_since: float | None = None
    #: When this service last put a new verification token in place.
    token_since: float | None = None

    @classmethod
    def from_hash(cls, raw: Mapping[Any, Any]) -> DestinationState:
        """Parse the hash as Redis returns it (bytes or text; unreadable values are None)."""
        data = {_text(k): v for k, v in raw.items()}
        outcome = _text(data.get(StateField.LAST_OUTCOME))
        return cls(
            last_rotation_id=_text(data.get(StateField.LAST_ROTATION_ID)),
            last_outcome=Outcome(outcome) if outcome in TERMINAL_OUTCOMES else None,
            last_finished_at=_float(data.get(StateField.LAST_FINISHED_AT)),
            last_error=_text(data.get(StateField.LAST_ERROR)),
            environment_id=_text(data.get(StateField.ENVIRONMENT_ID)),
            credential_id=_text(data.get(StateField.CREDENTIAL_ID)),
            credential_since=_float(data.get(StateField.CREDENTIAL_SINCE)),
            last_success_at=_float(data.get(StateField.LAST_SUCCESS_AT)),
            needs_attention_since=_float(data.get(StateField.NEEDS_ATTENTION)),
            paused_since=_float(data.get(StateField.PAUSED)),
            token_since=_float(data.get(StateField.TOKEN_SINCE)),
        )

    @property
    def needs_attention(self) -> bool:
        """A rotation gave up: scheduling stops until ``rotator retry``."""
        return self.needs_attention_since is not None

    @property
    def paused(self) -> bool:
        """Paused by ``rotator pause``."""
        return self.paused_since is not None

    @property
    def held(self) -> bool:
        """Scheduling is stopped for it (paused or needs attention)."""
        return self.paused or self.needs_attention

    def is_empty(self) -> bool:
        """Nothing is known about the destination."""
        return all(getattr(self, f.name) is None for f in fields(self))


def finished_fields(
    outcome: Outcome,
    *,
    rotation_id: str,
    environment_id: str | None,
    new_credential_id: str | None,
    finished_at: str,
    error: str | None,
    token: bool = False,
) -> dict[str, str]:
    """The state fields a rotation's terminal outcome writes (with the outcome, atomically);
    a verification-token rotation (``token``) leaves the credential's fields alone."""
    values: dict[str, str] = {
        StateField.LAST_ROTATION_ID: rotation_id,
        StateField.LAST_OUTCOME: outcome.value,
        StateField.LAST_FINISHED_AT: finished_at,
        StateField.ENVIRONMENT_ID: environment_id or "",
    }
    if outcome is Outcome.SUCCEEDED and token:
        values.update(
            {
                StateField.TOKEN_SINCE: finished_at,
                StateField.NEEDS_ATTENTION: "",
                StateField.LAST_ERROR: "",
            }
        )
    elif outcome is Outcome.SUCCEEDED:
        values.update(
            {
                StateField.CREDENTIAL_ID: new_credential_id or "",
                StateField.CREDENTIAL_SINCE: finished_at,
                StateField.LAST_SUCCESS_AT: finished_at,
                StateField.NEEDS_ATTENTION: "",
                StateField.LAST_ERROR: "",
            }
        )
    else:
        values[StateField.LAST_ERROR] = (error or "")[:300]
        if outcome is Outcome.NEEDS_ATTENTION:
            values[StateField.NEEDS_ATTENTION] = finished_at
    return {str(k): v for k, v in values.items()}


class DestinationStates:
    """Reads and writes destination state hashes; flag changes are atomic with the schedule."""

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self._r = client
        self._keys = keys
        self._release = client.register_script(_RELEASE)

    def get(self, destination_id: str) -> DestinationState:
        """The destination's state (all None when nothing is stored)."""
        return DestinationState.from_hash(self._r.hgetall(self._keys.destination(destination_id)))

    def get_many(self, ids: Sequence[str]) -> list[DestinationState]:
        """States of ``ids``, in order, pipelined (one round trip per 500)."""
        out: list[DestinationState] = []
        for start in range(0, len(ids), 500):
            with self._r.pipeline(transaction=False) as pipe:
                for ident in ids[start : start + 500]:
                    pipe.hgetall(self._keys.destination(ident))
                out.extend(DestinationState.from_hash(raw) for raw in pipe.execute())
        return out

    def last_success_at(self, destination_id: str) -> float | None:
        """When the destination last rotated successfully, or None."""
        raw = self._r.hget(self._keys.destination(destination_id), StateField.LAST_SUCCESS_AT)
        return _float(raw)

    def pause(self, destination_id: str, now: float) -> None:
        """Set ``paused`` and take the destination off the schedule, in one MULTI."""
        with self._r.pipeline(transaction=True) as pipe:
            pipe.hset(self._keys.destination(destination_id), StateField.PAUSED, repr(now))
            pipe.sadd(self._keys.destinations, destination_id)
            pipe.zrem(self._keys.schedule, destination_id)
            pipe.execute()

    def hold_for_attention(self, destination_id: str, now: float, reason: str) -> None:
        """Set ``needs_attention`` with ``reason`` and unschedule, in one MULTI (a rotation
        refused before it started, e.g. no secret source)."""
        with self._r.pipeline(transaction=True) as pipe:
            pipe.hset(
                self._keys.destination(destination_id),
                mapping={
                    StateField.NEEDS_ATTENTION: repr(now),
                    StateField.LAST_ERROR: reason[:300],
                },
            )
            pipe.sadd(self._keys.destinations, destination_id)
            pipe.zrem(self._keys.schedule, destination_id)
            pipe.execute()

    def release(self, destination_id: str, *flags: StateField, due: float | None) -> bool:
        """Clear ``flags`` and, if nothing else holds the destination and it is in the
        registry, schedule it at ``due``; one atomic step. True when it was scheduled."""
        scheduled = self._release(
            keys=[
                self._keys.destination(destination_id),
                self._keys.schedule,
                self._keys.policies,
            ],
            args=["" if due is None else repr(float(due)), destination_id, *map(str, flags)],
        )
        return bool(int(scheduled))
