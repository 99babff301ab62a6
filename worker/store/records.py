"""Rotation records and the single-flight claim, in Redis.

A rotation record is a hash of ids and step markers (never a secret). Lua scripts make the
invariants atomic:

* ``claim``: one rotation per destination; a second trigger gets the running rotation's id;
* ``publish_once``: an event guarded by a record flag;
* ``start``: count the run, mark it running and publish ``started`` once, in one step;
* ``finish``: the terminal outcome, its event, the release of the claim and the
  destination's state, all at once; a redelivered task finds the outcome and publishes
  nothing (exactly one terminal event per rotation).

A task run reads its record once (:meth:`RotationStore.snapshot`, with the claim and the
policy in the same round trip) and keeps that copy current as it writes: fields it learns
between writes are noted on the copy and go out with the next write, so a rotation costs
a handful of round trips rather than one per marker.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import redis

from worker.errors import LockLost
from worker.store.keys import Keys

if TYPE_CHECKING:
    from worker.store.lease import Fence

__all__ = [
    "CREDENTIAL_KIND",
    "KINDS",
    "NOT_SENT",
    "REQUESTED",
    "TOKEN_KIND",
    "Claim",
    "RotationRecord",
    "RotationStore",
    "RunSnapshot",
]

#: The two kinds of rotation: the auth credential, and the destination's verification token.
CREDENTIAL_KIND = "auth_credential"
TOKEN_KIND = "verification_token"
KINDS = (CREDENTIAL_KIND, TOKEN_KIND)
#: Record statuses before a task run: claimed (its message sent), and never sent.
REQUESTED = "requested"
NOT_SENT = "not_sent"

# KEYS: active, record, destinations, runs. ARGV: rotation id, claim ttl, destination id,
# start-by time, record fields... A new claim is also a run that must start by then (a
# message lost by the broker is found by beat's reaper).
_CLAIM = """
local current = redis.call('GET', KEYS[1])
if current then
  return {0, current}
end
redis.call('SET', KEYS[1], ARGV[1], 'EX', tonumber(ARGV[2]))
redis.call('HSET', KEYS[2], unpack(ARGV, 5))
redis.call('SADD', KEYS[3], ARGV[3])
redis.call('ZADD', KEYS[4], tonumber(ARGV[4]), ARGV[1])
return {1, ARGV[1]}
"""

# KEYS: record, stream. ARGV: flag field, event json, maxlen.
_PUBLISH_ONCE = """
if redis.call('HSETNX', KEYS[1], ARGV[1], '1') == 0 then
  return 0
end
redis.call('XADD', KEYS[2], 'MAXLEN', '~', tonumber(ARGV[3]), '*', 'event', ARGV[2])
return 1
"""

# KEYS: record, stream. ARGV: flag field, event json, maxlen, then record fields.
_START = """
local attempt = redis.call('HINCRBY', KEYS[1], 'attempt', 1)
if #ARGV > 3 then
  redis.call('HSET', KEYS[1], unpack(ARGV, 4))
end
if redis.call('HSETNX', KEYS[1], ARGV[1], '1') == 1 then
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', tonumber(ARGV[3]), '*', 'event', ARGV[2])
end
return attempt
"""

# KEYS: runs, active. ARGV: rotation id, look-again time, claim ttl. The claim's TTL is
# refreshed only while the destination's claim is still this rotation's.
_EXPECT = """
redis.call('ZADD', KEYS[1], tonumber(ARGV[2]), ARGV[1])
if redis.call('GET', KEYS[2]) == ARGV[1] then
  redis.call('EXPIRE', KEYS[2], tonumber(ARGV[3]))
end
return 1
"""

# KEYS: record, active, stream, destination state, history, runs, then the fence's keys.
# ARGV: rotation id, outcome, event json, maxlen, record ttl, n record fields, n fence keys,
#       the values the fence keys must hold, record fields..., then destination fields.
# Returns 1 when written, 0 when already finished, -1 when the fence no longer holds.
_FINISH = """
local nfence = tonumber(ARGV[7])
for i = 1, nfence do
  if redis.call('GET', KEYS[6 + i]) ~= ARGV[7 + i] then return -1 end
end
if redis.call('HEXISTS', KEYS[1], 'outcome') == 1 then
  return 0
end
local n = tonumber(ARGV[6])
local first = 8 + nfence
local record = {}
for i = first, first + n - 1 do record[#record + 1] = ARGV[i] end
redis.call('HSET', KEYS[1], 'outcome', ARGV[2], 'status', ARGV[2], unpack(record))
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[5]))
redis.call('XADD', KEYS[3], 'MAXLEN', '~', tonumber(ARGV[4]), '*', 'event', ARGV[3])
if redis.call('GET', KEYS[2]) == ARGV[1] then
  redis.call('DEL', KEYS[2])
end
local dest = {}
for i = first + n, #ARGV do dest[#dest + 1] = ARGV[i] end
if #dest > 0 then
  redis.call('HSET', KEYS[4], unpack(dest))
end
redis.call('LPUSH', KEYS[5], ARGV[1])
redis.call('LTRIM', KEYS[5], 0, 49)
redis.call('ZREM', KEYS[6], ARGV[1])
return 1
"""

# KEYS: record. ARGV: field, value, ... Written only while the record has no outcome.
_VERDICT = """
if redis.call('EXISTS', KEYS[1]) == 0 or redis.call('HEXISTS', KEYS[1], 'outcome') == 1 then
  return 0
end
redis.call('HSET', KEYS[1], unpack(ARGV))
return 1
"""

#: How long a new claim waits for a replica's acknowledgement (Sentinel deployments).
REPLICA_WAIT_MS = 500

#: Finished records are kept this long for `rotator status` and audits.
RECORD_TTL_SECONDS = 90 * 24 * 3600


@dataclass(frozen=True)
class RunSnapshot:
    """What a task run reads once, right after taking the lease."""

    record: RotationRecord | None
    active: str | None
    policy_json: str | None


@dataclass(frozen=True)
class Claim:
    """Result of a trigger: the rotation id and whether this call created it."""

    rotation_id: str
    created: bool


@dataclass
class RotationRecord:
    """A task run's copy of a rotation record.

    ``pending`` holds fields noted during the run (:meth:`note`) that the next write of the
    record sends along; the store's writes keep ``fields`` equal to what Redis holds plus
    what is pending.
    """

    fields: dict[str, str]
    pending: dict[str, str] = field(default_factory=dict)

    def note(self, **values: str) -> None:
        """Remember ``values`` now; they are written with the record's next write."""
        self.fields.update(values)
        self.pending.update(values)

    def take_pending(self) -> dict[str, str]:
        """The noted fields not written yet (and forget them)."""
        pending, self.pending = self.pending, {}
        return pending

    def get(self, name: str) -> str | None:
        """A field, or None when unset or empty."""
        value = self.fields.get(name)
        return value or None

    @property
    def rotation_id(self) -> str:
        """The rotation id."""
        return self.fields["rotation_id"]

    @property
    def destination_id(self) -> str:
        """The destination being rotated."""
        return self.fields["destination_id"]

    @property
    def outcome(self) -> str | None:
        """The terminal outcome, once there is one."""
        return self.get("outcome")

    @property
    def kind(self) -> str:
        """What the rotation replaces: ``auth_credential`` or ``verification_token``."""
        return self.fields.get("kind") or CREDENTIAL_KIND

    @property
    def attempt(self) -> int:
        """How many task runs this rotation has had."""
        return int(self.fields.get("attempt") or 0)


def new_rotation_id() -> str:
    """A fresh rotation id (a UUID; its first 8 hex digits name the new credential)."""
    return str(uuid.uuid4())


class RotationStore:
    """Rotation records, the single-flight claim and terminal publication."""

    def __init__(
        self,
        client: redis.Redis,
        keys: Keys,
        *,
        claim_ttl: float,
        stream_maxlen: int,
        start_within: float = 60.0,
        replicated: bool = False,
    ) -> None:
        self._r = client
        self._keys = keys
        self._claim_ttl = int(claim_ttl)
        self._start_within = start_within
        self._replicated = replicated
        self._maxlen = stream_maxlen
        self._claim = client.register_script(_CLAIM)
        self._publish_once = client.register_script(_PUBLISH_ONCE)
        self._finish = client.register_script(_FINISH)
        self._start = client.register_script(_START)
        self._verdict = client.register_script(_VERDICT)
        self._expect = client.register_script(_EXPECT)

    def claim(
        self,
        destination_id: str,
        *,
        trigger: str,
        reason: str = "",
        rotation_id: str | None = None,
        retire_now: bool = False,
        kind: str = CREDENTIAL_KIND,
    ) -> Claim:
        """Claim a rotation of ``destination_id``, or return the one already in progress.
        ``retire_now``: retire the old credential and its secret right after the watch
        (leak response) instead of after the grace period. A new claim must start within
        ``start_within`` seconds or beat's reaper looks for its message; with ``replicated``
        (Sentinel) it returns once a replica has it, or after :data:`REPLICA_WAIT_MS`."""
        rid = rotation_id or new_rotation_id()
        fields = {
            "rotation_id": rid,
            "destination_id": destination_id,
            "trigger": trigger,
            "reason": reason[:200],
            "status": REQUESTED,
            "requested_at": repr(time.time()),
            "attempt": "0",
            "retire_now": "1" if retire_now else "",
            "kind": kind,
        }
        flat: list[str] = [item for pair in fields.items() for item in pair]
        created, current = self._claim(
            keys=[
                self._keys.active(destination_id),
                self._keys.rotation(rid),
                self._keys.destinations,
                self._keys.runs,
            ],
            args=[
                rid,
                self._claim_ttl,
                destination_id,
                repr(time.time() + self._start_within),
                *flat,
            ],
        )
        if int(created) and self._replicated:
            # Behind Sentinel: let a replica have the claim before its message exists, so a
            # failover right after a trigger cannot keep the message and lose the claim (a
            # lost message is the reaper's). Availability first: go on after the timeout.
            self._r.wait(1, REPLICA_WAIT_MS)
        return Claim(_text(current), bool(int(created)))

    def release_claim(self, destination_id: str, rotation_id: str) -> None:
        """Drop a claim whose task could not be sent (only if it is still ours)."""
        key = self._keys.active(destination_id)
        with self._r.pipeline() as pipe:
            pipe.watch(key)  # type: ignore[no-untyped-call]
            if _text(pipe.get(key) or "") == rotation_id:
                pipe.multi()
                pipe.delete(key)
                pipe.hset(self._keys.rotation(rotation_id), "status", NOT_SENT)
                pipe.zrem(self._keys.runs, rotation_id)
                pipe.execute()

    def active(self, destination_id: str) -> str | None:
        """Id of the rotation claimed for the destination, if any."""
        value = self._r.get(self._keys.active(destination_id))
        return _text(value) if value is not None else None

    def record(self, rotation_id: str) -> RotationRecord | None:
        """The rotation record, or None if it does not exist (or expired)."""
        raw = self._r.hgetall(self._keys.rotation(rotation_id))
        if not raw:
            return None
        return RotationRecord({_text(k): _text(v) for k, v in raw.items()})

    def records(self, rotation_ids: Sequence[str]) -> list[RotationRecord | None]:
        """The records of ``rotation_ids`` in order (None where missing), one round trip."""
        with self._r.pipeline(transaction=False) as pipe:
            for rid in rotation_ids:
                pipe.hgetall(self._keys.rotation(rid))
            rows = pipe.execute()
        return [
            RotationRecord({_text(k): _text(v) for k, v in raw.items()}) if raw else None
            for raw in rows
        ]

    def note_verdict(
        self,
        rotation_id: str,
        *,
        verdict: str,
        failures_after: int,
        failures_before: int,
        found_credential: str,
    ) -> None:
        """The watch's verdict on a rotation (written by the watch, read by the rotation's
        next run under its lease; only while it is still unfinished)."""
        self._verdict(
            keys=[self._keys.rotation(rotation_id)],
            args=[
                "watch_verdict", verdict,
                "watch_failures_after", str(failures_after),
                "watch_failures_before", str(failures_before),
                "watch_found_credential", found_credential,
            ],
        )  # fmt: skip

    def snapshot(self, rotation_id: str, destination_id: str) -> RunSnapshot:
        """The record, the destination's claim and its policy JSON, in one round trip."""
        with self._r.pipeline(transaction=False) as pipe:
            pipe.hgetall(self._keys.rotation(rotation_id))
            pipe.get(self._keys.active(destination_id))
            pipe.get(self._keys.policy(destination_id))
            raw, active, policy = pipe.execute()
        record = RotationRecord({_text(k): _text(v) for k, v in raw.items()}) if raw else None
        return RunSnapshot(
            record,
            _text(active) if active is not None else None,
            _text(policy) if policy is not None else None,
        )

    def start(self, record: RotationRecord, event: dict[str, Any], **fields: str) -> int:
        """Count one more run, write ``fields`` (and anything noted) and publish ``event``
        unless this rotation already published its ``started`` event; return the run's
        number (1-based). One round trip."""
        mapping = {**record.take_pending(), **fields}
        attempt = int(
            self._start(
                keys=[self._keys.rotation(record.rotation_id), self._keys.events],
                args=[
                    "started_published",
                    json.dumps(event, separators=(",", ":")),
                    self._maxlen,
                    *[item for pair in mapping.items() for item in pair],
                ],
            )
        )
        record.fields.update(mapping, attempt=str(attempt), started_published="1")
        return attempt

    def expect_run(self, rotation_id: str, destination_id: str, by: float) -> None:
        """Note that rotation ``rotation_id`` runs (or has a retry scheduled) and must show
        life by ``by`` (unix time); refresh its claim's TTL while the claim is its own."""
        self._expect(
            keys=[self._keys.runs, self._keys.active(destination_id)],
            args=[rotation_id, repr(by), int(self._claim_ttl)],
        )

    def stalled_runs(self, now: float, limit: int) -> list[str]:
        """Rotation ids whose run should have shown life by ``now``."""
        found = self._r.zrangebyscore(self._keys.runs, "-inf", repr(now), start=0, num=limit)
        return [_text(v) for v in found]

    def forget_run(self, rotation_id: str) -> None:
        """Stop watching a rotation's runs (finished, or handed to the delivery watch)."""
        self._r.zrem(self._keys.runs, rotation_id)

    def write(self, record: RotationRecord, **fields: str) -> None:
        """Write ``fields`` and anything noted on ``record`` (never pass a secret here)."""
        mapping: dict[Any, Any] = {**record.take_pending(), **fields}
        if mapping:
            self._r.hset(self._keys.rotation(record.rotation_id), mapping=mapping)
            record.fields.update(mapping)

    def write_new_credential(self, record: RotationRecord, credential_id: str) -> None:
        """Record the credential this rotation made, and that this service made it, at once."""
        mapping: dict[Any, Any] = {
            **record.take_pending(),
            "new_credential_id": credential_id,
            "step": "issue",
        }
        with self._r.pipeline(transaction=True) as pipe:
            pipe.hset(self._keys.rotation(record.rotation_id), mapping=mapping)
            pipe.hset(self._keys.created_credentials, credential_id, record.rotation_id)
            pipe.execute()
        record.fields.update(mapping)

    def write_fenced(self, record: RotationRecord, fence: Fence, **fields: str) -> None:
        """:meth:`write`, in the same atomic step as the lease check (LockLost, and nothing
        written, when the lease is gone)."""
        mapping = {**record.take_pending(), **fields}
        fence.write_fenced(self._keys.rotation(record.rotation_id), mapping)
        record.fields.update(mapping)

    def publish_once(self, rotation_id: str, flag: str, event: dict[str, Any]) -> bool:
        """Publish ``event`` unless the record's ``flag`` is already set; True if published."""
        done = self._publish_once(
            keys=[self._keys.rotation(rotation_id), self._keys.events],
            args=[flag, json.dumps(event, separators=(",", ":")), self._maxlen],
        )
        return bool(int(done))

    def finish(
        self,
        record: RotationRecord,
        outcome: str,
        event: dict[str, Any],
        *,
        record_fields: dict[str, str],
        destination_fields: dict[str, str],
        fence: Fence | None,
    ) -> bool:
        """Atomically set the terminal outcome, publish its event, release the claim and
        update the destination's state, in the same step as the ``fence`` check (LockLost,
        and nothing written, when the lease is gone). False (and nothing written) if
        already finished."""
        rid = record.rotation_id
        dest = record.destination_id
        fence_keys, fence_values = fence.proof() if fence is not None else ([], [])
        record_flat = [item for pair in record_fields.items() for item in pair]
        dest_flat = [item for pair in destination_fields.items() for item in pair]
        done = int(
            self._finish(
                keys=[
                    self._keys.rotation(rid),
                    self._keys.active(dest),
                    self._keys.events,
                    self._keys.destination(dest),
                    self._keys.history(dest),
                    self._keys.runs,
                    *fence_keys,
                ],
                args=[
                    rid,
                    outcome,
                    json.dumps(event, separators=(",", ":")),
                    self._maxlen,
                    RECORD_TTL_SECONDS,
                    len(record_flat),
                    len(fence_keys),
                    *fence_values,
                    *record_flat,
                    *dest_flat,
                ],
            )
        )
        if done < 0:
            raise LockLost("single-flight lease taken over before the terminal write")
        return bool(done)

    def history(self, destination_id: str, limit: int = 10) -> list[str]:
        """Recent rotation ids of the destination, newest first."""
        return [_text(v) for v in self._r.lrange(self._keys.history(destination_id), 0, limit - 1)]

    def created_by_us(self, credential_id: str) -> bool:
        """True if this service created the credential."""
        return bool(self._r.hexists(self._keys.created_credentials, credential_id))


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
