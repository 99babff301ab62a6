"""Which destinations the service knows and what state each is in (status, fleet, metrics).

A destination is *known* when it is in the registry (its policy was synced) or the service
rotated it before (the set ``rotator:destinations``). Its view combines the typed state
(:class:`~worker.store.destinations.DestinationState`), the claim ``rotator:active:<id>``,
the schedule and its synced policy, read in pipelined batches.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, cast

import redis

from config.registry import DestinationPolicy
from worker.store.destinations import DestinationState
from worker.store.keys import Keys

__all__ = ["OVERDUE_TICKS", "DestinationStatus", "DestinationView", "Inventory", "iso"]

#: A due time this many ticks in the past means beat is not keeping up (or not running).
OVERDUE_TICKS = 3


class DestinationStatus(StrEnum):
    """What ``rotator status`` says of a destination (first match wins, in this order)."""

    IN_PROGRESS = "in_progress"
    NEEDS_ATTENTION = "needs_attention"
    PAUSED = "paused"
    OVERDUE = "overdue"
    OK = "ok"


@dataclass(frozen=True)
class DestinationView:
    """Everything ``status`` shows about one destination."""

    destination_id: str
    state: DestinationState
    policy: DestinationPolicy | None
    active: str | None
    due: float | None
    in_registry: bool
    #: When the active rotation's watch ends (None when it is not watching).
    watching_until: float | None = None

    @property
    def environment_id(self) -> str | None:
        """The environment (state first, then the registry)."""
        if self.state.environment_id:
            return self.state.environment_id
        return self.policy.environment_id if self.policy is not None else None

    @property
    def paused(self) -> bool:
        """Paused with ``rotator pause`` or in the registry file (also: disabled)."""
        registry_paused = self.policy is not None and not self.policy.scheduled
        return self.state.paused or registry_paused

    def credential_age(self, now: float) -> float | None:
        """Seconds since the current credential was put in place, if known."""
        since = self.state.credential_since
        return None if since is None else max(0.0, now - since)

    def status(self, now: float, tick: float) -> DestinationStatus:
        """The destination's :class:`DestinationStatus`."""
        if self.active:
            return DestinationStatus.IN_PROGRESS
        if self.state.needs_attention:
            return DestinationStatus.NEEDS_ATTENTION
        if self.paused:
            return DestinationStatus.PAUSED
        if self.due is not None and self.due < now - OVERDUE_TICKS * tick:
            return DestinationStatus.OVERDUE
        age = self.credential_age(now)
        interval = self.policy.interval_seconds if self.policy else None
        if age is not None and interval is not None and age > interval and self.in_registry:
            return DestinationStatus.OVERDUE
        return DestinationStatus.OK

    def as_json(self, now: float, tick: float) -> dict[str, Any]:
        """The ``--json`` form (times as ISO 8601 UTC, ages in seconds)."""
        s = self.state
        age = self.credential_age(now)
        return {
            "destinationId": self.destination_id,
            "name": self.policy.name if self.policy else None,
            "environmentId": self.environment_id,
            "state": self.status(now, tick).value,
            "inRegistry": self.in_registry,
            "credentialId": s.credential_id,
            "credentialSince": iso(s.credential_since),
            "credentialAgeSeconds": None if age is None else round(age, 1),
            "lastRotation": {
                "rotationId": s.last_rotation_id,
                "outcome": s.last_outcome.value if s.last_outcome else None,
                "finishedAt": iso(s.last_finished_at),
                "error": s.last_error,
            },
            "lastSuccessAt": iso(s.last_success_at),
            "activeRotationId": self.active,
            "watchingUntil": iso(self.watching_until),
            "nextDue": iso(self.due),
            "paused": self.paused,
            "needsAttention": s.needs_attention,
        }


class Inventory:
    """Reads destinations' views in pipelined batches (one round trip per 500 ids)."""

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self._redis = client
        self._keys = keys

    def known_ids(self) -> list[str]:
        """Every known destination id (registry or rotated before), sorted."""
        ids = cast(set[str], self._redis.sunion([self._keys.destinations, self._keys.policies]))
        return sorted(ids)

    def is_known(self, destination_id: str) -> bool:
        """In the registry (policy synced, even if paused there) or rotated before."""
        return bool(
            self._redis.sismember(self._keys.destinations, destination_id)
            or self._redis.exists(self._keys.policy(destination_id))
        )

    def views(self, ids: list[str]) -> list[DestinationView]:
        """A view per id, in order."""
        keys = self._keys
        out: list[DestinationView] = []
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            with self._redis.pipeline(transaction=False) as pipe:
                for ident in chunk:
                    pipe.hgetall(keys.destination(ident))
                    pipe.get(keys.policy(ident))
                    pipe.get(keys.active(ident))
                    pipe.zscore(keys.schedule, ident)
                    pipe.sismember(keys.policies, ident)
                rows = pipe.execute()
            for i, ident in enumerate(chunk):
                state, raw, active, due, member = rows[i * 5 : i * 5 + 5]
                policy = _policy(raw)
                in_registry = bool(member) or (policy is not None and not policy.scheduled)
                out.append(
                    DestinationView(
                        ident, DestinationState.from_hash(state), policy, active or None,
                        None if due is None else float(due), in_registry,
                    )
                )  # fmt: skip
        return self._with_watches(out)

    def _with_watches(self, views: list[DestinationView]) -> list[DestinationView]:
        """Fill ``watching_until`` from the active rotations' records (one round trip)."""
        active = [v for v in views if v.active]
        if not active:
            return views
        with self._redis.pipeline(transaction=False) as pipe:
            for view in active:
                pipe.hmget(self._keys.rotation(str(view.active)), ["status", "watch_until"])
            rows = pipe.execute()
        until = {
            v.destination_id: float(w)
            for v, (status, w) in zip(active, rows, strict=True)
            if status == "watching" and w
        }
        return [replace(v, watching_until=until.get(v.destination_id)) for v in views]


def _policy(raw: str | None) -> DestinationPolicy | None:
    """A stored policy, or None when absent or unreadable (written by another version)."""
    try:
        return DestinationPolicy.model_validate_json(raw) if raw else None
    except ValueError:
        return None


def iso(ts: float | None) -> str | None:
    """Unix seconds as ISO 8601 UTC (``2026-01-02T03:04:05Z``), None stays None."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
