"""Retirement of old credentials after the grace period (a sorted set, not a long ETA).

After a successful rotation the old credential gets a retirement job due at
``finished + grace``. ``retire_due`` (run by beat) claims due jobs atomically, checks that no
destination in the environment still references the credential (one list call per
environment per batch), deletes it, tells a revocable secret source, and publishes
``rotator.credential.retired``. A credential still in use is deferred and retried later
(``rotator.credential.retirement_deferred``; after ``MAX_DEFERRALS`` tries the job is dropped
with ``rotator.credential.retirement_abandoned``). Only credentials a rotation replaced are
ever queued, and only as the destination's ``retire`` policy allows (see
:mod:`worker.lifecycle`).
"""

from __future__ import annotations

import random
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import redis

from worker.errors import PermanentError, RedoxNotFound, RedoxRejected, TransientError
from worker.events import EventStream, cloud_event, error_data
from worker.logging import get_logger
from worker.redox.client import RedoxClient
from worker.secrets.base import RevokeRequest, SecretSource
from worker.store.credentials import CredentialLedger
from worker.store.keys import Keys

__all__ = ["RetirementQueue", "RetirementReport", "retire_due"]

log = get_logger(__name__)

_CLAIM = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, job in ipairs(due) do
  redis.call('ZADD', KEYS[1], tonumber(ARGV[3]), job)
end
return due
"""

#: Give up (needs a person) after this many deferrals; each is ``retire_retry_seconds`` apart.
MAX_DEFERRALS = 50


class RetirementQueue:
    """The retirement sorted set and its job hashes."""

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self._r = client
        self._keys = keys
        self._claim = client.register_script(_CLAIM)

    def schedule(self, credential_id: str, due: float, *, now: bool = False, **job: str) -> bool:
        """Queue ``credential_id`` for retirement at ``due``; a job already queued keeps its
        time, unless ``now`` (a leak response): then it is brought forward to ``due``."""
        with self._r.pipeline() as pipe:
            if now:
                pipe.zadd(self._keys.retirement, {credential_id: due}, lt=True)
                pipe.zadd(self._keys.retirement, {credential_id: due}, nx=True)
            else:
                pipe.zadd(self._keys.retirement, {credential_id: due}, nx=True)
            pipe.hsetnx(self._keys.retirement_job(credential_id), "credential_id", credential_id)
            for name, value in job.items():
                pipe.hsetnx(self._keys.retirement_job(credential_id), name, value)
            added = pipe.execute()[0]
        return bool(added)

    def claim_due(self, now: float, limit: int, lease_seconds: float) -> list[str]:
        """Atomically take up to ``limit`` due jobs, leasing them for ``lease_seconds``."""
        return [
            str(job)
            for job in self._claim(
                keys=[self._keys.retirement], args=[now, limit, now + lease_seconds]
            )
        ]

    def job(self, credential_id: str) -> dict[str, str]:
        """The job's fields."""
        return {
            str(k): str(v)
            for k, v in self._r.hgetall(self._keys.retirement_job(credential_id)).items()
        }

    def defer(self, credential_id: str, due: float) -> int:
        """Push the job back to ``due``; return how many times it was deferred."""
        self._r.zadd(self._keys.retirement, {credential_id: due})
        return int(self._r.hincrby(self._keys.retirement_job(credential_id), "deferrals", 1))

    def done(self, credential_id: str) -> None:
        """Remove the job."""
        with self._r.pipeline() as pipe:
            pipe.zrem(self._keys.retirement, credential_id)
            pipe.delete(self._keys.retirement_job(credential_id))
            pipe.execute()

    def next_due(self, now: float) -> str | None:
        """A job due by ``now``, if any (one bounded read; claims nothing)."""
        rows: Any = self._r.zrangebyscore(self._keys.retirement, "-inf", now, start=0, num=1)
        return str(rows[0]) if rows else None

    def pending(self) -> list[tuple[str, float]]:
        """Every queued job with its due time."""
        rows: Any = self._r.zrange(self._keys.retirement, 0, -1, withscores=True)
        return [(str(m), float(s)) for m, s in rows]


@dataclass
class RetirementReport:
    """What one ``retire_due`` pass did."""

    retired: int = 0
    deferred: int = 0
    failed: int = 0


def retire_due(
    queue: RetirementQueue,
    redox: RedoxClient,
    events: EventStream,
    source_for: Callable[[str], SecretSource],
    ledger: CredentialLedger,
    *,
    retry_seconds: float,
    limit: int = 200,
    now: float | None = None,
) -> RetirementReport:
    """Retire every due old credential that no destination uses any more, then revoke its
    secret at the IdP."""
    now = time.time() if now is None else now
    retirer = _Retirer(queue, redox, events, source_for, ledger, retry_seconds, now)
    by_env: dict[str, list[dict[str, str]]] = defaultdict(list)
    for credential_id in queue.claim_due(now, limit, lease_seconds=retry_seconds):
        job = queue.job(credential_id)
        by_env[job.get("environment_id", "")].append(job | {"credential_id": credential_id})
    for environment_id, jobs in by_env.items():
        try:
            in_use = {d.auth_credential for d in redox.list_destinations(environment_id)}
        except (TransientError, PermanentError) as exc:
            log.warning("retirement postponed: cannot list destinations", error=type(exc).__name__)
            for job in jobs:
                queue.defer(job["credential_id"], now + retry_seconds + random.uniform(0, 30))
            retirer.report.deferred += len(jobs)
            continue
        for job in jobs:
            retirer.retire(job, in_use)
    return retirer.report


@dataclass
class _Retirer:
    """One pass of retirement: delete, then revoke, then forget; defer what must wait."""

    queue: RetirementQueue
    redox: RedoxClient
    events: EventStream
    source_for: Callable[[str], SecretSource]
    ledger: CredentialLedger
    retry_seconds: float
    now: float
    report: RetirementReport = field(default_factory=RetirementReport)

    def retire(self, job: dict[str, str], in_use: set[str | None]) -> None:
        """Retire one credential (a deferral when a destination still uses it is normal)."""
        credential_id = job["credential_id"]
        data: dict[str, Any] = {
            "credentialId": credential_id,
            "environmentId": job.get("environment_id"),
            "destinationId": job.get("destination_id"),
            "rotationId": job.get("rotation_id"),
        }
        subject = job.get("destination_id") or credential_id
        if credential_id in in_use:
            self._defer(subject, data, "still referenced by a destination")
            return
        try:
            self.redox.delete_auth_credential(credential_id)
        except RedoxNotFound:
            pass  # already gone (or deleted by an earlier pass whose revoke must finish)
        except RedoxRejected as exc:
            data["error"] = error_data(exc)
            self._defer(subject, data, f"delete refused ({exc.status})")
            return
        except (TransientError, PermanentError) as exc:
            self._retry_later(credential_id, exc)
            return
        try:
            revoked = self._revoke(job)
        except TransientError as exc:  # the credential is gone; the secret goes next pass
            self._retry_later(credential_id, exc)
            return
        except PermanentError as exc:
            log.error("old secret NOT revoked at the IdP", credential_id=credential_id,
                      error=type(exc).__name__)  # fmt: skip
            data.update(secretRevoked=False, error=error_data(exc))
        else:
            data["revokedSecretIds"] = revoked
        info = self.ledger.get(credential_id)
        if info is not None:
            self.ledger.forget(info)
        self.queue.done(credential_id)
        self.report.retired += 1
        self.events.publish(cloud_event("rotator.credential.retired", subject, data))
        log.info("old credential retired", credential_id=credential_id)

    def _retry_later(self, credential_id: str, exc: BaseException) -> None:
        self.queue.defer(credential_id, self.now + self.retry_seconds)
        self.report.failed += 1
        log.warning(
            "retirement failed; will retry", credential_id=credential_id, error=type(exc).__name__
        )

    def _defer(self, subject: str, data: dict[str, Any], reason: str) -> None:
        """Try again later (event ``retirement_deferred``); after :data:`MAX_DEFERRALS`
        drop the job and say so (event ``retirement_abandoned``: a person decides)."""
        credential_id = data["credentialId"]
        deferrals = self.queue.defer(credential_id, self.now + self.retry_seconds)
        data.update(reason=reason, deferrals=deferrals)
        self.report.deferred += 1
        if deferrals >= MAX_DEFERRALS:
            self.queue.done(credential_id)
            self.events.publish(
                cloud_event("rotator.credential.retirement_abandoned", subject, data)
            )
            log.warning("retirement abandoned", credential_id=credential_id, reason=reason)
            return
        self.events.publish(cloud_event("rotator.credential.retirement_deferred", subject, data))

    def _revoke(self, job: dict[str, str]) -> list[str]:
        """Revoke the retired credential's secret: by the id recorded when this service
        issued it, else by the source's documented rule; live credentials' secrets are kept."""
        destination_id = job.get("destination_id", "")
        source = self.source_for(destination_id)
        if not source.manages_secrets:
            return []
        info = self.ledger.get(job["credential_id"])
        client_id = (info.client_id if info else "") or job.get("client_id") or None
        kind = (info.source_kind if info else "") or job.get("source_kind") or source.kind
        keep = (
            self.ledger.keep_secret_ids(kind, client_id, except_credential=job["credential_id"])
            if client_id
            else ()
        )
        return source.revoke(
            RevokeRequest(
                destination_id,
                job.get("rotation_id", ""),
                job.get("environment_id", ""),
                job.get("auth_strategy", ""),
                credential_id=job["credential_id"],
                client_id=client_id,
                secret_id=(info.secret_id if info else "") or None,
                keep_secret_ids=keep,
                reason="retired",
            )
        )
