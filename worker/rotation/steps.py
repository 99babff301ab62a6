"""The Redox side of a rotation: read, the old credential, create, re-read, switch, undo.

Each step first looks at what Redox actually has, then acts, then records what it did in
the rotation record, so a redelivered task resumes where the last one stopped. Writes to
Redox are fenced: right before each one, the lease is checked and the record's markers are
written in the same atomic step (:meth:`Fence.write_fenced`). Calls per rotation on the
happy path: GET destination, GET old credential, POST credential, GET destination again
right before the switch (drift), PATCH destination.
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
from worker.secrets.base import IssuedSecret
from worker.signals import step_done
from worker.store.credentials import CredentialInfo, CredentialLedger
from worker.store.lease import Fence
from worker.store.records import RotationRecord, RotationStore

__all__ = ["OldCredential", "RotationSteps", "StrategyCatalog", "credential_name"]

log = get_logger(__name__)


def credential_name(destination_name: str | None, destination_id: str, rotation_id: str) -> str:
    """The new credential's name: ``<destination name>-rot-<first 8 of rotation id>``."""
    base = (destination_name or destination_id[:8]).strip() or destination_id[:8]
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


@dataclass(frozen=True)
class OldCredential:
    """The credential being replaced: its strategy, the fields a clone may carry, and the
    non-secret values it has (the new credential starts as a copy of them)."""

    credential: AuthCredential
    strategy: str
    allowed: tuple[str, ...]
    values: dict[str, Any]

    @property
    def client_id(self) -> str | None:
        """The OAuth client (or AWS access key) the credential authenticates as."""
        value = self.values.get("clientId") or self.values.get("accessKey")
        return value if isinstance(value, str) and value else None


@dataclass
class RotationSteps:
    """The Redox side of one rotation; the workflow decides what runs when."""

    redox: RedoxClient
    store: RotationStore
    retry: RetrySettings
    catalog: StrategyCatalog
    ledger: CredentialLedger

    def read(self, record: RotationRecord, fence: Fence) -> tuple[Destination, str, str]:
        """GET the destination; return it with the environment id and the old credential id.

        The first run records the old credential (fenced) before anything else happens, so
        a later run of the same rotation notices a dashboard edit made in between. Raises
        DriftDetected when the destination uses neither our old nor our new credential.
        """
        destination = self.redox.get_destination(record.destination_id)
        environment_id = destination.environment_id or record.get("environment_id")
        if not environment_id:
            raise BadRedoxResponse(f"destination {destination.id} has no environment id")
        current = destination.auth_credential
        old = record.get("old_credential_id")
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
        else:
            self._no_drift(record, current)
        step_done("read", record.rotation_id)
        return destination, environment_id, old

    def _no_drift(self, record: RotationRecord, current: str | None) -> None:
        old, new = record.get("old_credential_id"), record.get("new_credential_id")
        if current not in (old, new):
            raise DriftDetected(
                f"destination {record.destination_id} now uses credential {current}, "
                f"expected {old} (before the rotation) or {new} (made by it)",
                found=current,
            )

    def old_credential(self, old_id: str) -> OldCredential:
        """GET the credential being replaced (by id, whatever the environment's size)."""
        credential = self.redox.get_auth_credential(old_id)
        strategy = credential.auth_strategy
        if not strategy:
            raise BadRedoxResponse(f"credential {old_id} has no authStrategy")
        allowed = self.catalog.fields(strategy)
        return OldCredential(credential, strategy, allowed, credential.strategy_values(allowed))

    def adopt(self, record: RotationRecord, old_id: str, fence: Fence) -> str | None:
        """The credential a sibling's rotation already made to replace ``old_id`` (same
        OAuth client), recorded as this rotation's new credential; None when there is none.
        It was rehearsed when it was made; the switch is watched for this destination."""
        successor = self.ledger.successor(old_id)
        if successor is None:
            return None
        try:
            found = self.redox.get_auth_credential(successor)
        except RedoxNotFound:
            return None
        info = self.ledger.get(found.id)
        self.store.write_fenced(
            record,
            fence,
            new_credential_id=found.id,
            adopted="1",
            new_secret_id=info.secret_id if info else "",
            step="create",
        )
        log.info("sibling's new credential adopted", credential_id=found.id, replaces=old_id)
        return found.id

    def create(
        self,
        record: RotationRecord,
        old: OldCredential,
        issued: IssuedSecret,
        source_kind: str,
        fence: Fence,
    ) -> str:
        """POST the new credential (the old one's values plus the new secret), once; a retry
        finds it by its unique name. Recorded with the IdP secret it holds."""
        rid = record.rotation_id
        environment_id = record.get("environment_id") or ""
        name = credential_name(record.get("destination_name"), record.destination_id, rid)
        values = dict(old.values)
        values.update(
            {k: v.get_secret_value() for k, v in issued.values.items() if k not in SECRET_FIELDS}
        )
        credential = NewCredential(
            name=name,
            environment_id=environment_id,
            auth_strategy=old.strategy,
            organization=old.credential.organization,
            values=values,
            secrets={k: v for k, v in issued.values.items() if k in SECRET_FIELDS},
        )
        # The name first: a later run finds the credential by it if the reply is lost.
        self.store.write_fenced(record, fence, new_credential_name=name, step="create")
        created = self._create_once(credential, old.allowed + ENVELOPE_FIELDS, fence)
        self.store.write_new_credential(record, created.id)
        self.ledger.record(
            CredentialInfo(
                created.id,
                environment_id=environment_id,
                client_id=old.client_id or "",
                source_kind=source_kind,
                secret_id=issued.secret_id or "",
                replaces=old.credential.id,
                rotation_id=rid,
                destination_id=record.destination_id,
            )
        )
        step_done("create", rid)
        return created.id

    def _create_once(
        self, credential: NewCredential, allowed: tuple[str, ...], fence: Fence
    ) -> AuthCredential:
        """POST the credential; on a transient error, look it up by name before trying again.
        The caller has just checked the fence; later attempts check it again."""
        first = True

        def attempt() -> AuthCredential:
            nonlocal first
            if not first:
                found = self._named(credential.environment_id, credential.name)
                if found is not None:
                    return found
                fence.check()
            first = False
            return self.redox.create_auth_credential(credential, allowed)

        return call_with_retry(self.retry, "create_credential", attempt)

    def _named(self, environment_id: str, name: str) -> AuthCredential | None:
        """The credential called ``name`` (a lost create reply; lists the environment)."""
        found = self.redox.list_auth_credentials(
            environment_id, where=lambda item: item.get("name") == name
        )
        return found[0] if found else None

    def reread(self, record: RotationRecord) -> None:
        """Right before the switch: the destination must still be on the old (or already on
        the new) credential, else DriftDetected and nothing is switched over the change."""
        self._no_drift(record, self.redox.get_destination(record.destination_id).auth_credential)

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
        record.note(step="verify")  # written with the next write
        step_done("verify", rid)

    def switch_back(self, record: RotationRecord, fence: Fence) -> list[str]:
        """Put the old credential back if the destination is on ours (re-read first: a
        destination someone else moved is DriftDetected, never switched over their change).
        Returns what was done."""
        old, new = record.get("old_credential_id"), record.get("new_credential_id")
        try:
            current = self.redox.get_destination(record.destination_id).auth_credential
        except RedoxNotFound:
            return ["destination gone"]
        if current == new and old and new:
            fence.check()
            self.redox.update_destination(record.destination_id, auth_credential=old)
            return [f"switched back to {old}"]
        if current != old:
            raise DriftDetected(
                f"destination {record.destination_id} now uses credential {current}, "
                f"expected {new} (made by this rotation) or {old} (before it)",
                found=current,
            )
        return []

    def new_credential(self, record: RotationRecord) -> str | None:
        """The credential this rotation made: recorded, or found by name when the create
        reply was lost (then recorded); None when none was made."""
        new = record.get("new_credential_id")
        if new:
            return new
        name, environment_id = record.get("new_credential_name"), record.get("environment_id")
        if not name or not environment_id:
            return None  # the create was never attempted
        found = self._named(environment_id, name)
        if found is None:
            return None
        self.store.write(record, new_credential_id=found.id)
        return found.id

    def recover_created(self, record: RotationRecord, source_kind: str) -> str | None:
        """The credential this rotation made, when an earlier run created it but its reply
        (or the record of it) was lost: found by its unique name and recorded as
        :meth:`create` records it, with the IdP secret id that run recorded."""
        if record.get("new_credential_id") or not record.get("new_credential_name"):
            return record.get("new_credential_id")
        found = self.new_credential(record)
        if found is None:
            return None
        self.store.write_new_credential(record, found)
        if self.ledger.get(found) is None and not record.get("adopted"):
            self.ledger.record(
                CredentialInfo(
                    found,
                    environment_id=record.get("environment_id") or "",
                    client_id=record.get("client_id") or "",
                    source_kind=source_kind,
                    secret_id=record.get("new_secret_id") or "",
                    replaces=record.get("old_credential_id") or "",
                    rotation_id=record.rotation_id,
                    destination_id=record.destination_id,
                )
            )
        log.info("credential made by an earlier run recovered by name", credential_id=found)
        return found

    def discard_new(self, record: RotationRecord, fence: Fence) -> list[str]:
        """Delete the credential this rotation made, unless it was adopted from a sibling or
        a destination uses it (Redox refuses: it is kept, retirement takes it later)."""
        new = self.new_credential(record)
        if not new or record.get("adopted"):
            return []
        fence.check()
        try:
            self.redox.delete_auth_credential(new)
        except RedoxNotFound:
            done = f"{new} already gone"
        except RedoxRejected as exc:
            log.warning("new credential kept: delete refused", credential_id=new, status=exc.status)
            return [f"kept {new}: delete refused ({exc.status})"]
        else:
            done = f"deleted {new}"
        info = self.ledger.get(new)
        if info is not None:
            self.ledger.forget(info)
        record.note(new_credential_deleted="1")
        return [done]
