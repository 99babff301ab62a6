"""The IdP side of a rotation: issue the second secret, rehearse it, revoke what is not kept.

The new secret's value lives only in the task run that issued it: it goes into the
rehearsal and then into the new Redox credential, and is never stored. So a run that
resumes a rotation whose secret was issued but not yet put into a credential (the value
is lost) first revokes that secret (by its recorded id, or by the IdP's list compared
with the one taken before the issue), then issues another: a rotation never leaves a
second secret of its own behind, and never exceeds a two-secret limit.

Secrets of one OAuth client are issued one rotation at a time (a Redis lock per client):
a sibling destination sharing the client waits, then adopts the credential just made
(:mod:`worker.store.credentials`) instead of minting a third secret.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any, Literal, Protocol, runtime_checkable

import httpx
import redis
from redis.exceptions import LockError

from config.settings import Settings
from worker import guard
from worker.errors import SecretSourceError, TransientError
from worker.logging import get_logger
from worker.rehearsal import rehearse
from worker.secrets.base import IssuedSecret, IssueRequest, RevokeRequest, SecretSource
from worker.signals import step_done
from worker.store.credentials import CredentialLedger
from worker.store.keys import Keys
from worker.store.lease import Fence
from worker.store.records import RotationRecord, RotationStore

__all__ = ["SecretSteps", "SelfRehearsing", "SiblingBusy"]

log = get_logger(__name__)

#: Strategies whose rehearsal is Redox's OAuth token request (redox-api.md §8).
OAUTH_STRATEGIES = frozenset({"OAuth_2.0_2-legged"})
#: The share of what is left of a run a rehearsal may take (the rest is for the undo).
RUN_SHARE = 0.75


class SiblingBusy(TransientError):
    """Another rotation is issuing a secret for the same OAuth client: try again shortly."""


@runtime_checkable
class SelfRehearsing(Protocol):
    """A source that rehearses its own kind of secret (e.g. an AWS key signs an STS call)."""

    def rehearse(
        self, issued: IssuedSecret, fields: Mapping[str, Any], *, budget_seconds: float
    ) -> None:
        """Raise RehearsalFailed unless the new secret works."""
        ...


@dataclass
class SecretSteps:
    """Issue, rehearse and revoke, with the markers that make them resumable."""

    store: RotationStore
    ledger: CredentialLedger
    redis: redis.Redis
    keys: Keys
    settings: Settings
    #: The client rehearsals are sent with (one per process: building one costs ~50 ms of
    #: CPU, mostly loading the CA bundle); None: one per rehearsal.
    rehearsal_http: httpx.Client | None = None

    @contextmanager
    def client_turn(
        self, source: SecretSource, client_id: str | None, rotation_id: str
    ) -> Iterator[None]:
        """Hold the client's issue lock (SiblingBusy when another rotation holds it). The
        lock's token is the rotation id, so a run resuming a rotation whose earlier run died
        holding it takes it back at once (the destination's lease already makes that run
        the only one)."""
        if not client_id or not source.manages_secrets:
            yield
            return
        ttl = self.settings.verify.rehearsal_seconds + 180
        name = self.keys.client_lock(source.kind, client_id)
        lock = self.redis.lock(name, timeout=ttl, blocking_timeout=10)
        if self.redis.get(name) == rotation_id:
            lock.local.token = rotation_id.encode()
            lock.reacquire()
        elif not lock.acquire(token=rotation_id):
            raise SiblingBusy(f"another rotation is issuing a secret for client {client_id}")
        try:
            yield
        finally:
            try:
                lock.release()
            except LockError:
                log.warning("client lock expired before release", client_id=client_id)

    def _request(self, record: RotationRecord, strategy: str, client_id: str | None) -> Any:
        return IssueRequest(
            record.destination_id,
            record.rotation_id,
            record.get("environment_id") or "",
            strategy,
            client_id,
        )

    def _revoke(
        self,
        record: RotationRecord,
        source: SecretSource,
        secret_id: str | None,
        reason: Literal["retired", "rolled_back", "abandoned"],
    ) -> list[str]:
        client_id = record.get("client_id")
        keep = self.ledger.keep_secret_ids(source.kind, client_id) if client_id else ()
        return source.revoke(
            RevokeRequest(
                record.destination_id,
                record.rotation_id,
                record.get("environment_id") or "",
                record.get("auth_strategy") or "",
                credential_id=record.get("new_credential_id"),
                client_id=client_id,
                secret_id=secret_id,
                keep_secret_ids=tuple(k for k in keep if k != secret_id),
                reason=reason,
            )
        )

    def _revoke_issued(
        self,
        record: RotationRecord,
        source: SecretSource,
        reason: Literal["rolled_back", "abandoned"],
    ) -> list[str]:
        """Revoke the secret this rotation issued: by its recorded id, else (a crash between
        the IdP's reply and recording its id) every secret the IdP lists now that it did
        not list before the issue and no live credential holds; a hook, which cannot list,
        is asked to revoke what it issued for the rotation."""
        if not source.manages_secrets:
            return []
        secret_id = record.get("new_secret_id")
        if secret_id:
            return self._revoke(record, source, secret_id, reason)
        before = set(json.loads(record.get("idp_pre_ids") or "[]"))
        client_id = record.get("client_id") or ""
        keep = set(self.ledger.keep_secret_ids(source.kind, client_id)) if client_id else set()
        listed = source.existing(client_id) if client_id else []
        revoked: list[str] = []
        for found in listed:
            if found.id not in before and found.id not in keep:
                revoked += self._revoke(record, source, found.id, reason)
        if not listed:
            revoked += self._revoke(record, source, None, reason)
        return revoked

    def abandon_lost(self, record: RotationRecord, source: SecretSource, fence: Fence) -> None:
        """Revoke a secret an earlier run issued but never put into a credential."""
        if not record.get("idp_issue_started") or record.get("new_credential_id"):
            return
        revoked = self._revoke_issued(record, source, "abandoned")
        log.warning("secret issued by an earlier run revoked (its value is never kept)",
                    revoked=revoked)  # fmt: skip
        self.store.write_fenced(record, fence, idp_issue_started="", new_secret_id="")

    def issue(
        self,
        record: RotationRecord,
        source: SecretSource,
        strategy: str,
        client_id: str | None,
        fence: Fence,
    ) -> IssuedSecret:
        """Issue the new secret at the IdP (the old one stays valid); record its id."""
        self.abandon_lost(record, source, fence)
        listed = tuple(source.existing(client_id)) if client_id else ()
        self.store.write_fenced(
            record,
            fence,
            idp_issue_started="1",
            idp_pre_ids=json.dumps([s.id for s in listed]),
            secret_kind=source.kind,
            client_id=client_id or "",
            auth_strategy=strategy,
            step="issue",
        )
        request = self._request(record, strategy, client_id)
        try:
            issued = source.issue(replace(request, existing=listed) if client_id else request)
        except SecretSourceError as exc:
            if exc.nothing_issued:  # proven: the undo has nothing to revoke
                self.store.write_fenced(record, fence, idp_issue_started="")
            raise
        self.store.write_fenced(record, fence, new_secret_id=issued.secret_id or "")
        step_done("issue", record.rotation_id)
        return issued

    def rehearse(
        self,
        record: RotationRecord,
        source: SecretSource,
        strategy: str,
        fields: Mapping[str, Any],
        issued: IssuedSecret,
    ) -> None:
        """Make the request Redox will make with the new secret (RehearsalFailed if the IdP
        does not take it within the rehearsal budget)."""
        budget = self._rehearsal_budget()
        if isinstance(source, SelfRehearsing):
            source.rehearse(issued, fields, budget_seconds=budget)
        elif strategy in OAUTH_STRATEGIES:
            values = {**fields, **{k: v.get_secret_value() for k, v in issued.values.items()
                                   if k not in ("clientSecret", "password")}}  # fmt: skip
            secrets = {k: v for k, v in issued.values.items() if k in ("clientSecret", "password")}
            result = rehearse(
                values,
                secrets,
                budget_seconds=budget,
                allow_insecure_http=self.settings.insecure_http_allowed,
                http=self.rehearsal_http,
            )
            log.info("rehearsal passed", attempts=result.attempts, seconds=round(result.seconds, 1))
        else:
            log.info("no rehearsal for this strategy", strategy=strategy)
        record.note(step="rehearse")
        step_done("rehearse", record.rotation_id)

    def _rehearsal_budget(self) -> float:
        """``ROTATOR_VERIFY__REHEARSAL_SECONDS``, cut to three quarters of what is left of the
        run (the rest undoes what was made): a rehearsal the IdP keeps refusing ends as a
        clean ``RehearsalFailed`` inside the run, never as the run's time-out."""
        budget = self.settings.verify.rehearsal_seconds
        run = guard.current()
        if run is not None and budget > run.remaining() * RUN_SHARE:
            cut = max(0.0, run.remaining() * RUN_SHARE)
            log.warning("rehearsal budget cut to fit the run", budget_seconds=round(cut, 1),
                        setting=budget)  # fmt: skip
            budget = cut
        return budget

    def revoke_new(self, record: RotationRecord, source: SecretSource) -> list[str]:
        """Revoke the secret this rotation issued (a rollback); [] when there is none. An
        adopted credential's secret belongs to the sibling's rotation and is kept."""
        if record.get("adopted") or not record.get("idp_issue_started"):
            return []
        return self._revoke_issued(record, source, "rolled_back")
