"""Which destinations the service knows and what state each is in (for status and fleet).

A destination is *known* when it is in the registry (its policy was synced) or the service
rotated it before (the set ``rotator:destinations``). Its state comes from the hash
``rotator:destination:<id>``, the claim ``rotator:active:<id>`` and the schedule.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

import redis

from config.registry import DestinationPolicy
from worker.scheduling.store import ScheduleStore
from worker.store.keys import Keys

__all__ = ["OVERDUE_TICKS", "STATES", "DestinationView", "Inventory", "iso", "to_float"]

STATES = ("ok", "in_progress", "paused", "needs_attention", "overdue")
#: A due time this many ticks in the past means beat is not keeping up (or not running).
OVERDUE_TICKS = 3


@dataclass(frozen=True)
class DestinationView:
    """Everything ``status`` shows about one destination."""

    destination_id: str
    state: dict[str, str]
    policy: DestinationPolicy | None
    active: str | None
    due: float | None
    in_registry: bool

    @property
    def environment_id(self) -> str | None:
        """The environment (state hash first, then the registry)."""
        if self.state.get("environment_id"):
            return self.state["environment_id"]
        return self.policy.environment_id if self.policy is not None else None

    @property
    def paused(self) -> bool:
        """Paused with ``rotator pause`` or in the registry file (also: disabled)."""
        registry_paused = self.policy is not None and not self.policy.scheduled
        return bool(self.state.get("paused")) or registry_paused

    def credential_age(self, now: float) -> float | None:
        """Seconds since the current credential was put in place, if known."""
        since = to_float(self.state.get("credential_since"))
        return None if since is None else max(0.0, now - since)

    def status(self, now: float, tick: float) -> str:
        """One of :data:`STATES` (first match: in progress, needs attention, paused, overdue)."""
        if self.active:
            return "in_progress"
        if self.state.get("needs_attention"):
            return "needs_attention"
        if self.paused:
            return "paused"
        if self.due is not None and self.due < now - OVERDUE_TICKS * tick:
            return "overdue"
        age = self.credential_age(now)
        interval = self.policy.interval_seconds if self.policy else None
        if age is not None and interval is not None and age > interval and self.in_registry:
            return "overdue"
        return "ok"

    def as_json(self, now: float, tick: float) -> dict[str, Any]:
        """The ``--json`` form (times as ISO 8601 UTC, ages in seconds)."""
        s = self.state
        age = self.credential_age(now)
        return {
            "destinationId": self.destination_id,
            "name": self.policy.name if self.policy else None,
            "environmentId": self.environment_id,
            "state": self.status(now, tick),
            "inRegistry": self.in_registry,
            "credentialId": s.get("credential_id") or None,
            "credentialSince": iso(to_float(s.get("credential_since"))),
            "credentialAgeSeconds": None if age is None else round(age, 1),
            "lastRotation": {
                "rotationId": s.get("last_rotation_id") or None,
                "outcome": s.get("last_outcome") or None,
                "finishedAt": iso(to_float(s.get("last_finished_at"))),
                "error": s.get("last_error") or None,
            },
            "lastSuccessAt": iso(to_float(s.get("last_success_at"))),
            "activeRotationId": self.active,
            "nextDue": iso(self.due),
            "paused": self.paused,
            "needsAttention": bool(s.get("needs_attention")),
        }


class Inventory:
    """Reads destinations' state in pipelined batches (one round trip per 500 ids)."""

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self.redis = client
        self.keys = keys
        self.schedule = ScheduleStore(client, keys)

    def known_ids(self) -> list[str]:
        """Every known destination id (registry or rotated before), sorted."""
        ids = cast(set[str], self.redis.sunion([self.keys.destinations, self.keys.policies]))
        return sorted(ids)

    def is_known(self, destination_id: str) -> bool:
        """In the registry (policy synced, even if paused there) or rotated before."""
        return bool(
            self.redis.sismember(self.keys.destinations, destination_id)
            or self.redis.exists(self.keys.policy(destination_id))
        )

    def views(self, ids: list[str]) -> list[DestinationView]:
        """A view per id, in order."""
        out: list[DestinationView] = []
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            with self.redis.pipeline(transaction=False) as pipe:
                for ident in chunk:
                    pipe.hgetall(self.keys.destination(ident))
                    pipe.get(self.keys.policy(ident))
                    pipe.get(self.keys.active(ident))
                    pipe.zscore(self.keys.schedule, ident)
                    pipe.sismember(self.keys.policies, ident)
                rows = pipe.execute()
            for i, ident in enumerate(chunk):
                state, raw, active, due, member = rows[i * 5 : i * 5 + 5]
                policy = _policy(raw)
                in_registry = bool(member) or (policy is not None and not policy.scheduled)
                out.append(
                    DestinationView(
                        ident, dict(state), policy, active or None,
                        None if due is None else float(due), in_registry,
                    )
                )  # fmt: skip
        return out


def _policy(raw: str | None) -> DestinationPolicy | None:
    """A stored policy, or None when absent or unreadable (written by another version)."""
    try:
        return DestinationPolicy.model_validate_json(raw) if raw else None
    except ValueError:
        return None


def to_float(value: str | None) -> float | None:
    """A float from a state field, or None when empty or not a number."""
    try:
        return float(value) if value else None
    except ValueError:
        return None


def iso(ts: float | None) -> str | None:
    """Unix seconds as ISO 8601 UTC (``2026-01-02T03:04:05Z``), None stays None."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
