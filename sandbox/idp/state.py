"""Everything the fake IdPs know: apps, secrets, management credentials, issued tokens.

Only touched from the server's event loop. Ids and secret values are reproducible when the
sandbox config has a ``random_seed``.
"""

from __future__ import annotations

import random
import secrets
import string
import time
import uuid
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sandbox.idp.model import (
    ACTIVE,
    EntraApp,
    EntraPassword,
    OktaApp,
    OktaSecret,
    okta_time,
)
from sandbox.idp.settings import Hold, IdpFaults, IdpSettings

__all__ = ["GRAPH_RESOURCE", "IdpState", "IssuedToken"]

GRAPH_RESOURCE = "https://graph.microsoft.com"
MANAGEMENT_ROLE = "Application.ReadWrite.OwnedBy"
_ALNUM = string.ascii_letters + string.digits
_ENTRA_CHARS = _ALNUM + "~.-_"
#: Issued access tokens remembered for the leak-scan dump (oldest dropped first).
_TOKEN_HISTORY = 20_000


@dataclass(frozen=True)
class IssuedToken:
    """An access token an IdP handed out: who got it, for what, until when (epoch seconds)."""

    idp: str
    client_id: str
    audience: str
    expires_at: float


class IdpState:
    """The Okta org and the Entra tenant of the sandbox, with their settings and faults."""

    def __init__(self, *, random_seed: int | None, propagation_delay_seconds: float = 0.0) -> None:
        self._rng: random.Random = (
            # A stream of its own: ids here never repeat the Redox state's seeded ids.
            random.Random(f"idp-{random_seed}")
            if random_seed is not None
            else secrets.SystemRandom()
        )
        self.settings = IdpSettings(propagation_delay_seconds=propagation_delay_seconds)
        self.faults = IdpFaults()
        self.hold = Hold()
        self.okta_api_tokens = ["00" + self._chars(_ALNUM + "-_", 40)]
        self.entra_tenant_id = self.guid()
        self.okta_apps: dict[str, OktaApp] = {}
        self.entra_apps: dict[str, EntraApp] = {}
        self.tokens: dict[str, IssuedToken] = {}
        #: Every client secret value ever issued (secret id / keyId -> value); kept on reset.
        self.issued_secrets: dict[str, str] = {}
        self.issued_tokens: deque[str] = deque(maxlen=_TOKEN_HISTORY)
        self.management = self.create_entra_app("rotator-management", owners=set())
        self.management.roles.add(MANAGEMENT_ROLE)
        self.management_secret = self.add_password(self.management, "management", delay=0).value

    # --- generators -----------------------------------------------------------------------

    def _chars(self, alphabet: str, length: int) -> str:
        return "".join(self._rng.choice(alphabet) for _ in range(length))

    def guid(self) -> str:
        """A lower-case GUID."""
        return str(uuid.UUID(int=self._rng.getrandbits(128), version=4))

    def okta_id(self, prefix: str) -> str:
        """An Okta id: a 3-character prefix (``0oa``, ``ocs``) and 17 alphanumerics."""
        return prefix + self._chars(_ALNUM, 17)

    def okta_secret_value(self) -> str:
        """A generated Okta client secret (64 characters of ``[A-Za-z0-9_-]``)."""
        return self._chars(_ALNUM + "-_", 64)

    def entra_secret_value(self) -> str:
        """A generated Entra secret in today's 40-character form (``abc8Q~…``) [U]."""
        return self._chars(_ALNUM, 3) + "8Q~" + self._chars(_ENTRA_CHARS, 34)

    def token_value(self) -> str:
        """An opaque access token."""
        return "sbx." + self._chars(_ALNUM + "-_", 48)

    # --- lifecycle ------------------------------------------------------------------------

    def reset(self) -> None:
        """Forget apps and tokens; keep the management credentials, settings and faults."""
        self.okta_apps.clear()
        self.entra_apps = {self.management.app_id: self.management}
        self.tokens.clear()

    def management_credentials(self, base_url: str) -> dict[str, Any]:
        """What ``rotator`` needs to manage both IdPs (GET /_sandbox/idp/credentials)."""
        return {
            "okta": {
                "org_url": f"{base_url}/idp/okta",
                "api_token": self.okta_api_tokens[0],
                "api_tokens": list(self.okta_api_tokens),
                "token_url": f"{base_url}/idp/okta/oauth2/default/v1/token",
            },
            "entra": {
                "tenant_id": self.entra_tenant_id,
                "client_id": self.management.app_id,
                "client_secret": self.management_secret,
                "graph_url": f"{base_url}/idp/entra/graph/v1.0",
                "login_url": f"{base_url}/idp/entra/login",
                "token_url": f"{base_url}/idp/entra/login/{self.entra_tenant_id}/oauth2/v2.0/token",
                "roles": sorted(self.management.roles),
                "certificate_thumbprints": [c.x5t for c in self.management.certificates],
            },
        }

    # --- Okta -----------------------------------------------------------------------------

    def create_okta_app(
        self, label: str, *, client_id: str | None = None, scopes: list[str] | None = None
    ) -> OktaApp:
        """A new app with no secret; ``client_id`` defaults to the app id (§A5)."""
        app_id = self.okta_id("0oa")
        app = OktaApp(
            id=app_id,
            client_id=client_id or app_id,
            label=label,
            scopes=list(scopes if scopes is not None else ["redox.deliver"]),
        )
        self.okta_apps[app.id] = app
        return app

    def okta_app_by_client(self, client_id: str) -> OktaApp | None:
        """The app whose client id is ``client_id``."""
        return next((a for a in self.okta_apps.values() if a.client_id == client_id), None)

    def add_okta_secret(
        self,
        app: OktaApp,
        *,
        value: str | None = None,
        status: str = ACTIVE,
        delay: float | None = None,
    ) -> OktaSecret:
        """Append a secret (callers check the two-secret rule); usable after the delay."""
        wait = self.settings.propagation_delay_seconds if delay is None else delay
        now = okta_time()
        secret = OktaSecret(
            id=self.okta_id("ocs"),
            value=value if value is not None else self.okta_secret_value(),
            status=status,
            created=now,
            last_updated=now,
            usable_at=time.monotonic() + wait,
        )
        app.secrets.append(secret)
        self.issued_secrets[secret.id] = secret.value
        return secret

    def okta_scopes(self) -> set[str]:
        """Scopes the ``default`` authorization server knows: every scope granted to an app."""
        return {scope for app in self.okta_apps.values() for scope in app.scopes}

    # --- Entra ----------------------------------------------------------------------------

    def create_entra_app(self, display_name: str, *, owners: set[str] | None = None) -> EntraApp:
        """A new application; owned by the management client unless ``owners`` is given."""
        app = EntraApp(
            id=self.guid(),
            app_id=self.guid(),
            display_name=display_name,
            created=datetime.now(UTC),
            owners=set(owners) if owners is not None else {self.management.app_id},
        )
        self.entra_apps[app.app_id] = app
        return app

    def entra_app(self, key: str) -> EntraApp | None:
        """An application by appId or by object id."""
        found = self.entra_apps.get(key.lower())
        if found is not None:
            return found
        return next((a for a in self.entra_apps.values() if a.id == key.lower()), None)

    def add_password(
        self,
        app: EntraApp,
        display_name: str | None,
        *,
        start: datetime | None = None,
        end: datetime | None = None,
        delay: float | None = None,
    ) -> EntraPassword:
        """Append a password (callers check the limit); start now, end start + 2 years (§B2)."""
        begin = start or datetime.now(UTC)
        wait = self.settings.propagation_delay_seconds if delay is None else delay
        password = EntraPassword(
            key_id=self.guid(),
            value=self.entra_secret_value(),
            display_name=display_name,
            start=begin,
            end=end or begin + timedelta(days=730),
            usable_at=time.monotonic() + wait,
        )
        app.passwords.append(password)
        self.issued_secrets[password.key_id] = password.value
        return password

    # --- tokens ---------------------------------------------------------------------------

    def issue_token(self, idp: str, client_id: str, audience: str, ttl: int) -> str:
        """Store and return a new access token."""
        now = time.time()
        if len(self.tokens) > 1000:
            for old, issued in list(self.tokens.items()):
                if issued.expires_at <= now:
                    del self.tokens[old]
        token = self.token_value()
        self.tokens[token] = IssuedToken(idp, client_id, audience, now + ttl)
        self.issued_tokens.append(token)
        return token

    def valid_token(self, token: str) -> IssuedToken | None:
        """The record of an unexpired token, or None."""
        issued = self.tokens.get(token)
        if issued is None or issued.expires_at <= time.time():
            return None
        return issued

    # --- views ----------------------------------------------------------------------------

    def apps_view(self) -> dict[str, list[dict[str, Any]]]:
        """Every app with its secrets' ids, statuses and times (never values)."""
        now = time.monotonic()
        okta = [
            {
                "app_id": app.id,
                "client_id": app.client_id,
                "label": app.label,
                "scopes": list(app.scopes),
                "secrets": [
                    {
                        "id": s.id,
                        "status": s.status,
                        "created": s.created,
                        "lastUpdated": s.last_updated,
                        "propagated": s.usable_at <= now,
                    }
                    for s in app.secrets
                ],
            }
            for app in self.okta_apps.values()
        ]
        entra = [
            {
                "app_id": app.app_id,
                "object_id": app.id,
                "display_name": app.display_name,
                "owners": sorted(app.owners),
                "roles": sorted(app.roles),
                "management": app is self.management,
                "passwords": [
                    {**p.view(), "propagated": p.usable_at <= now} for p in app.passwords
                ],
                "certificates": [c.view() for c in app.certificates],
            }
            for app in self.entra_apps.values()
        ]
        return {"okta": okta, "entra": entra}

    def secret_status(self, client_id: str, value: str) -> dict[str, Any]:
        """Whether ``value`` is a secret of ``client_id``'s app and would authenticate now."""
        now = time.monotonic()
        okta = self.okta_app_by_client(client_id)
        if okta is not None:
            for s in okta.secrets:
                if s.value == value:
                    active = s.status == ACTIVE
                    usable = active and s.usable_at <= now
                    return {
                        "idp": "okta",
                        "known": True,
                        "secret_id": s.id,
                        "active": active,
                        "status": s.status,
                        "usable": usable,
                    }
            return {"idp": "okta", "known": False, "active": False, "usable": False}
        entra = self.entra_app(client_id)
        if entra is not None:
            moment = datetime.now(UTC)
            for p in entra.passwords:
                if p.value == value:
                    active = p.start <= moment < p.end
                    return {
                        "idp": "entra",
                        "known": True,
                        "secret_id": p.key_id,
                        "active": active,
                        "usable": active and p.usable_at <= now,
                    }
            return {"idp": "entra", "known": False, "active": False, "usable": False}
        raise KeyError(client_id)

    def secret_values(self) -> dict[str, dict[str, str]]:
        """For the leak-scan dump: secrets, API tokens, management secret, access tokens."""
        return {
            "idp:client-secrets": dict(self.issued_secrets),
            "idp:okta-api-tokens": {str(i): t for i, t in enumerate(self.okta_api_tokens)},
            "idp:entra-management": {"clientSecret": self.management_secret},
            "idp:access-tokens": {str(i): t for i, t in enumerate(self.issued_tokens)},
        }
