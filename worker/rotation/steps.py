"""The rotation's Redox steps: read, issue, switch, verify, and the rollback.

Each step first looks at what Redox actually has, then acts, then records what it did in
the rotation record, so a redelivered task resumes where the last one stopped. Writes to
Redox are fenced: right before each one, the lease is checked and the record's markers are
written in the same atomic step (:meth:`Fence.write_fenced`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from config.settings import RetrySettings
from worker.errors import (
    BadRedoxResponse,
    DriftDetected,
    PermanentError,
    RedoxNotFound,
    RedoxRejected,
    VerificationFailed,
)
from worker.logging import get_logger
from worker.redox.client import RedoxClient
from worker.redox.models import (
    ENVELOPE_FIELDS,
    SECRET_FIELDS,
    STRATEGY_FIELDS,
    AuthCredential,
    Destination,
    NewCredential,
)
from worker.redox.retry import call_with_retry
from worker.rotation.secrets import SecretRequest, SecretSource
from worker.signals import step_done
from worker.store.lease import Fence
from worker.store.records import RotationRecord, RotationStore

__all__ = ["RotationSteps", "StrategyCatalog", "credential_name"]

log = get_logger(__name__)


def credential_name(destination: Destination, rotation_id: str) -> str:
    """The new credential's name: ``<destination name>-rot-<first 8 of rotation id>``."""
    base = (destination.name or destination.id[:8]).strip() or destination.id[:8]
    return f"{base[:80]}-rot-{rotation_id.replace('-', '')[:8]}"


@dataclass
class StrategyCatalog:
    """Documented fields per auth strategy; unknown strategies are asked of Redox once."""

    redox: RedoxClient
    _fetched: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def fields(self, strategy: str) -> tuple[str, ...]:
        """Strategy fields Redox documents for ``strategy`` (PermanentError if none)."""
        if strategy in STRATEGY_FIELDS:
            return STRATEGY_FIELDS[strategy]
        if strategy not in self._fetched:
            self._fetched.update(self.redox.list_auth_strategies())
        if strategy not in self._fetched:
            raise PermanentError(f"Redox does not list auth strategy {strategy!r}")
        return self._fetched[strategy]


@dataclass
class RotationSteps:
    """The Redox side of one rotation; the workflow decides what runs when."""

    redox: RedoxClient
    store: RotationStore
    retry: RetrySettings
    catalog: StrategyCatalog

    def read(self, record: RotationRecord, fence: Fence) -> tuple[Destination, str, str]:
        """GET the destination; return it with the environment id and the old credential id.

        The first run records the old credential (fenced) before anything else happens, so
        a later run of the same rotation notices a dashboard edit made in between. Raises
        DriftDetected when the destination uses neither our old nor our new credential.
        """
        rid = record.rotation_id
        destination = self.redox.get_destination(record.destination_id)
        environment_id = destination.environment_id or record.get("environment_id")
        if not environment_id:
            raise BadRedoxResponse(f"destination {destination.id} has no environment id")
        current = destination.auth_credential
        old = record.get("old_credential_id")
        new = record.get("new_credential_id")
        if old is None:
            if current is None:
                raise PermanentError(
                    f"destination {destination.id} has no auth credential; nothing to rotate"
                )
            old = current
            self.store.write_fenced(
                record,
                fence,
                old_credential_id=old,
                environment_id=environment_id,
                destination_name=(destination.name or "")[:120],
                step="read",
            )
        elif current not in (old, new):
            raise DriftDetected(
                f"destination {destination.id} now uses credential {current}, "
                f"expected {old} (ours before) or {new} (ours after)"
            )
        step_done("read", rid)
        return destination, environment_id, old

    def issue(
        self,
        record: RotationRecord,
        destination: Destination,
        environment_id: str,
        old_id: str,
        source: SecretSource,
        fence: Fence,
    ) -> str:
        """Find the credential this rotation already made, or make it; return its id."""
        rid = record.rotation_id
        name = credential_name(destination, rid)
        known_new = record.get("new_credential_id")
        wanted = {known_new, old_id}
        credentials = self.redox.list_auth_credentials(
            environment_id, where=lambda item: item.get("id") in wanted or item.get("name") == name
        )
        mine = _find_own(credentials, name, known_new)
        if mine is not None:
            self.store.write_new_credential(record, mine.id)
            return mine.id
        old = next((c for c in credentials if c.id == old_id), None)
        if old is None or not old.auth_strategy:
            old = self.redox.get_auth_credential(old_id)
        strategy = old.auth_strategy
        if not strategy:
            raise BadRedoxResponse(f"credential {old_id} has no authStrategy")
        allowed = self.catalog.fields(strategy)
        values: dict[str, Any] = old.strategy_values(allowed)
        new_values = source.issue(
            SecretRequest(record.destination_id, rid, environment_id, strategy)
        )
        secrets = {k: v for k, v in new_values.items() if k in SECRET_FIELDS}
        values.update(
            {k: v.get_secret_value() for k, v in new_values.items() if k not in SECRET_FIELDS}
        )
        credential = NewCredential(
            name=name,
            environment_id=environment_id,
            auth_strategy=strategy,
            organization=old.organization,
            values=values,
            secrets=secrets,
        )
        # The name first: a later run finds the credential by it if the reply is lost.
        self.store.write_fenced(record, fence, new_credential_name=name)
        created = self._create_once(credential, allowed + ENVELOPE_FIELDS, environment_id, fence)
        self.store.write_new_credential(record, created.id)
        step_done("issue", rid)
        return created.id

    def _create_once(
        self,
        credential: NewCredential,
        allowed: tuple[str, ...],
        environment_id: str,
        fence: Fence,
    ) -> AuthCredential:
        """POST the credential; on a transient error, look it up by name before trying again.
        The caller has just checked the fence; later attempts check it again."""
        first = True

        def attempt() -> AuthCredential:
            nonlocal first
            if not first:
                existing = self.redox.list_auth_credentials(environment_id)
                found = _find_own(existing, credential.name, None)
                if found is not None:
                    return found
                fence.check()
            first = False
            return self.redox.create_auth_credential(credential, allowed)

        return call_with_retry(self.retry, "create_credential", attempt)

    def switch_and_verify(self, record: RotationRecord, new_id: str, fence: Fence) -> None:
        """PATCH the destination to ``new_id`` and check Redox shows it (VerificationFailed)."""
        rid = record.rotation_id
        self.store.write_fenced(record, fence, step="switch")
        updated = self.redox.update_destination(record.destination_id, auth_credential=new_id)
        step_done("switch", rid)
        shown = updated.auth_credential
        if shown is None:
            shown = self.redox.get_destination(record.destination_id).auth_credential
        if shown != new_id:
            raise VerificationFailed(
                f"destination {record.destination_id} shows credential {shown} after the "
                f"switch, expected {new_id}"
            )
        record.note(step="verify")  # written with the terminal outcome
        step_done("verify", rid)

    def roll_back(self, record: RotationRecord, fence: Fence) -> list[str]:
        """Put the old credential back and delete the unused new one; return what was done."""
        done: list[str] = []
        old = record.get("old_credential_id")
        new = record.get("new_credential_id") or self._made_but_unrecorded(record)
        if not new:
            return done
        current: str | None
        try:
            current = self.redox.get_destination(record.destination_id).auth_credential
        except RedoxNotFound:
            current = None
        if current == new and old:
            fence.check()
            self.redox.update_destination(record.destination_id, auth_credential=old)
            done.append(f"switched back to {old}")
            current = old
        if current != new:
            fence.check()
            try:
                self.redox.delete_auth_credential(new)
                done.append(f"deleted {new}")
            except RedoxNotFound:
                done.append(f"{new} already gone")
            except RedoxRejected as exc:
                log.warning(
                    "new credential kept: delete refused", credential_id=new, status=exc.status
                )
                done.append(f"kept {new}: delete refused ({exc.status})")
        self.store.write(record, rollback=("; ".join(done) or "nothing to undo")[:300])
        return done

    def _made_but_unrecorded(self, record: RotationRecord) -> str | None:
        """A credential the create made although its reply was unusable (found by name)."""
        name = record.get("new_credential_name")
        environment_id = record.get("environment_id")
        if not name or not environment_id:
            return None  # the create was never attempted
        found = self.redox.list_auth_credentials(
            environment_id, where=lambda item: item.get("name") == name
        )
        if not found:
            return None
        self.store.write(record, new_credential_id=found[0].id)
        return found[0].id


def _find_own(
    credentials: list[AuthCredential], name: str, known_id: str | None
) -> AuthCredential | None:
    """The credential this rotation made: by recorded id, else by its unique name."""
    if known_id:
        for credential in credentials:
            if credential.id == known_id:
                return credential
    named = [c for c in credentials if c.name == name]
    return named[0] if named else None
