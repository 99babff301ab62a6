"""What a secret source is: the Protocol every kind implements, and the values it passes.

A *secret source* issues the new secret a rotation puts into a Redox auth credential, and
revokes secrets when their credential retires (or when a rotation rolls back). For an OAuth
destination the source is the destination's own IdP (Okta, Microsoft Entra): the new secret
is a *second* client secret of the same OAuth client, so old and new are valid at once.

Rules every implementation keeps:

* Secret values leave a source only as :class:`pydantic.SecretStr`, inside
  :class:`IssuedSecret`; ids (the IdP's id of a secret) are not secret and may be recorded.
* Errors are from :mod:`worker.errors`: :class:`~worker.errors.IdpUnavailable` (transient:
  timeouts, 5xx, 429) or :class:`~worker.errors.IdpRejected` /
  :class:`~worker.errors.IdpLimitReached` (permanent). Messages are written by the source
  and never quote a secret, a token or a whole response body.
* :meth:`SecretSource.revoke` is idempotent: a secret that is already gone is success.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Protocol

from pydantic import SecretStr

__all__ = [
    "IdpSecret",
    "IssueRequest",
    "IssuedSecret",
    "RevokeRequest",
    "SecretSource",
]


@dataclass(frozen=True)
class IdpSecret:
    """One secret as the IdP lists it: its id and state, never its value."""

    id: str
    #: ``active`` or ``inactive`` (Okta's lifecycle; Entra passwords are always active).
    status: Literal["active", "inactive"] = "active"
    #: When the IdP says it was created / starts to be valid (ISO 8601), if it says.
    created: str | None = None
    #: Entra's displayName, if any.
    display_name: str | None = None


@dataclass(frozen=True)
class IssueRequest:
    """What a source is told when a rotation needs a new secret (ids only)."""

    destination_id: str
    rotation_id: str
    environment_id: str
    #: The Redox auth strategy of the credential being replaced (``OAuth_2.0_2-legged``...).
    auth_strategy: str
    #: The OAuth client the credential authenticates as (its ``clientId``), if it has one.
    client_id: str | None = None
    #: The client's secrets as the caller listed them just before the issue (None: not
    #: listed); a source that must check its limit uses them instead of listing again.
    existing: tuple[IdpSecret, ...] | None = None


@dataclass(frozen=True)
class IssuedSecret:
    """A newly issued secret: Redox field name -> value, and the IdP's id for it."""

    values: dict[str, SecretStr]
    #: The IdP's id of the new secret (Okta ``ocs…``, Entra ``keyId``); None when the
    #: source has no ids (``generate``).
    secret_id: str | None = None

    def __repr__(self) -> str:
        return f"IssuedSecret(fields={sorted(self.values)}, secret_id={self.secret_id!r})"


@dataclass(frozen=True)
class RevokeRequest:
    """What a source is told when a secret must stop working."""

    destination_id: str
    rotation_id: str
    environment_id: str
    auth_strategy: str
    #: The Redox credential that held the secret (retired, or unused after a rollback).
    credential_id: str | None
    client_id: str | None
    #: The IdP's id of the secret to revoke, when this service issued it. None for a
    #: credential that predates the service: the source applies the rule it documents.
    secret_id: str | None
    #: Secrets other live credentials still hold: never revoked, whatever the rule says.
    keep_secret_ids: tuple[str, ...] = field(default_factory=tuple)
    reason: Literal["retired", "rolled_back", "abandoned"] = "retired"


class SecretSource(Protocol):
    """Issues new secrets and revokes old ones for one kind of source."""

    #: ``okta``, ``entra``, ``command``, ``http`` or ``generate``.
    kind: str
    #: False for sources whose secrets live only in Redox (nothing to revoke or list).
    manages_secrets: bool

    def existing(self, client_id: str) -> list[IdpSecret]:
        """The client's secrets as the IdP lists them ([] when the source cannot list)."""
        ...

    def issue(self, request: IssueRequest) -> IssuedSecret:
        """Issue one new secret; the ones the client already has stay valid."""
        ...

    def revoke(self, request: RevokeRequest) -> list[str]:
        """Make secrets stop working; return the ids revoked (already gone counts as done)."""
        ...
