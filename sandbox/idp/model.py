"""What the fake IdPs store: Okta apps and client secrets, Entra applications, passwords, certs.

Shapes follow ``idp-api.md`` (§A2 Okta secret object, §B2 Entra passwordCredential). Plain
data with small helpers; the rules live in the route modules.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

__all__ = [
    "EntraApp",
    "EntraCertificate",
    "EntraPassword",
    "OktaApp",
    "OktaSecret",
    "graph_time",
    "load_certificate",
    "okta_time",
]

ACTIVE = "ACTIVE"
INACTIVE = "INACTIVE"


def okta_time(moment: datetime | None = None) -> str:
    """Okta's timestamp form: ``2023-04-06T21:32:33.000Z``."""
    now = moment or datetime.now(UTC)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


def graph_time(moment: datetime) -> str:
    """Graph's timestamp form with 7 fractional digits: ``2019-09-09T19:50:29.3086381Z``."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond:06d}0Z"


@dataclass
class OktaSecret:
    """One client secret object of an Okta app (§A2)."""

    id: str
    value: str
    status: str
    created: str
    last_updated: str
    #: time.monotonic() from which the token endpoint accepts it (propagation delay).
    usable_at: float

    @property
    def secret_hash(self) -> str:
        """22 base64url characters; Okta's algorithm is undocumented (a SHA-256 prefix here)."""
        digest = hashlib.sha256(self.value.encode()).digest()[:16]
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")

    @property
    def masked(self) -> str:
        """The value as the current spec's examples show it outside create (``DRUF......a3x3P``)."""
        return f"{self.value[:12]}......{self.value[-5:]}"


@dataclass
class OktaApp:
    """An Okta OAuth service app: id ``0oa…``, a client id (the app id by default), scopes."""

    id: str
    client_id: str
    label: str
    scopes: list[str]
    secrets: list[OktaSecret] = field(default_factory=list)
    created: str = field(default_factory=okta_time)

    def secret(self, secret_id: str) -> OktaSecret | None:
        """The secret with ``secret_id``, if the app has it."""
        return next((s for s in self.secrets if s.id == secret_id), None)

    def active_secrets(self) -> list[OktaSecret]:
        """Secrets with status ACTIVE."""
        return [s for s in self.secrets if s.status == ACTIVE]


@dataclass
class EntraPassword:
    """A passwordCredential of an Entra application (§B2)."""

    key_id: str
    value: str
    display_name: str | None
    start: datetime
    end: datetime
    usable_at: float

    @property
    def hint(self) -> str:
        """The first three characters of the value."""
        return self.value[:3]

    def view(self, *, with_secret: bool = False) -> dict[str, object]:
        """As Graph shows it; ``secretText`` only in the addPassword reply."""
        return {
            "customKeyIdentifier": None,
            "displayName": self.display_name,
            "endDateTime": graph_time(self.end),
            "hint": self.hint,
            "keyId": self.key_id,
            "secretText": self.value if with_secret else None,
            "startDateTime": graph_time(self.start),
        }


@dataclass
class EntraCertificate:
    """A keyCredential (X.509 certificate) a client can sign client assertions with."""

    key_id: str
    display_name: str
    public_key: PublicKeyTypes
    x5t: str
    x5t_s256: str
    start: datetime
    end: datetime

    def view(self) -> dict[str, object]:
        """As Graph lists keyCredentials (the key itself is never returned)."""
        raw = base64.urlsafe_b64decode(self.x5t + "=" * (-len(self.x5t) % 4))
        return {
            "customKeyIdentifier": raw.hex().upper(),
            "displayName": self.display_name,
            "endDateTime": graph_time(self.end),
            "key": None,
            "keyId": self.key_id,
            "startDateTime": graph_time(self.start),
            "type": "AsymmetricX509Cert",
            "usage": "Verify",
        }


@dataclass
class EntraApp:
    """An application registration (and its service principal, folded in).

    ``owners`` holds the appIds of service principals that own it; ``roles`` the Graph
    application permissions its own service principal holds.
    """

    id: str
    app_id: str
    display_name: str
    created: datetime
    owners: set[str] = field(default_factory=set)
    roles: set[str] = field(default_factory=set)
    passwords: list[EntraPassword] = field(default_factory=list)
    certificates: list[EntraCertificate] = field(default_factory=list)
    sign_in_audience: str = "AzureADMyOrg"

    @property
    def identifier_uri(self) -> str:
        """``api://{appId}``, the resource its own API tokens are for."""
        return f"api://{self.app_id}"

    def password(self, key_id: str) -> EntraPassword | None:
        """The password with ``key_id`` (compared case-insensitively, as GUIDs are)."""
        return next((p for p in self.passwords if p.key_id == key_id.lower()), None)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def load_certificate(pem: bytes, *, key_id: str, display_name: str) -> EntraCertificate:
    """Parse a PEM X.509 certificate into a keyCredential (ValueError if it is not one)."""
    cert = x509.load_pem_x509_certificate(pem)
    der = cert.public_bytes(serialization.Encoding.DER)
    return EntraCertificate(
        key_id=key_id,
        display_name=display_name,
        public_key=cert.public_key(),
        x5t=_b64url(hashlib.sha1(der).digest()),  # noqa: S324 - the x5t header is defined as SHA-1
        x5t_s256=_b64url(hashlib.sha256(der).digest()),
        start=cert.not_valid_before_utc,
        end=cert.not_valid_after_utc,
    )
