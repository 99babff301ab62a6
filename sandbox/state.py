"""The sandbox's in-memory Redox: environments, destinations, credentials, tokens, seeding."""

from __future__ import annotations

import json
import random
import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sandbox.config import ENVIRONMENT_FLAGS, SandboxConfig
from sandbox.validation import SECRET_FIELDS, STRATEGIES, has_name

__all__ = ["Credential", "Destination", "Environment", "SandboxState", "iso_now"]

SEED_TOKEN_URL = "https://auth.example.test/oauth2/token"


def iso_now() -> str:
    """Current UTC time as ISO 8601 with milliseconds and ``Z``."""
    now = datetime.now(UTC)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


@dataclass
class Environment:
    """An environment of the organization."""

    id: str
    name: str
    flag: str


@dataclass
class Destination:
    """A destination; ``verification_token`` is stored but never served."""

    id: str
    name: str
    environment_id: str
    endpoint: str
    auth_credential: str | None = None
    verification_token: str | None = None


@dataclass
class Credential:
    """An auth credential; ``secrets`` holds the secret field values (never served)."""

    id: str
    organization: int
    name: str
    environment_id: str
    auth_strategy: str
    fields: dict[str, str | int] = field(default_factory=dict)
    secrets: dict[str, str] = field(default_factory=dict)
    created_at: str = field(default_factory=iso_now)
    updated_at: str = field(default_factory=iso_now)
    #: Bumped by every change; keys the cached JSON view.
    version: int = 0

    def apply(self, values: dict[str, str | int]) -> None:
        """Store validated strategy fields; omitted fields (secrets included) are kept."""
        for key, value in values.items():
            if key in SECRET_FIELDS:
                self.secrets[key] = str(value)
            else:
                self.fields[key] = value
        self.updated_at = iso_now()
        self.version += 1

    def rename(self, name: str) -> None:
        """Change the name (the cached view follows)."""
        self.name = name
        self.version += 1


class SandboxState:
    """Everything the fake Redox knows. Only touched from the server's event loop."""

    def __init__(self, config: SandboxConfig) -> None:
        self.config = config
        self._rng = random.Random(config.random_seed)  # ids only, faults have their own
        self.environments: dict[str, Environment] = {}
        self.destinations: dict[str, Destination] = {}
        self.credentials: dict[str, Credential] = {}
        self._json_views: dict[str, tuple[int, bytes]] = {}
        for flag in ENVIRONMENT_FLAGS:
            for number in range(config.environments.get(flag, 0)):
                self.add_environment(flag, number + 1)
        self.reset()

    # --- ids and environments -------------------------------------------------------------

    def new_id(self) -> str:
        """A uuid4 (reproducible when the config has a random_seed)."""
        if self.config.random_seed is None:
            return str(uuid.uuid4())
        return str(uuid.UUID(int=self._rng.getrandbits(128), version=4))

    def new_secret(self) -> str:
        """A random secret value (reproducible when the config has a random_seed)."""
        if self.config.random_seed is None:
            return secrets.token_urlsafe(32)
        return "%064x" % self._rng.getrandbits(256)  # noqa: UP031

    def add_environment(self, flag: str, number: int = 1) -> Environment:
        """Create an environment named after its flag (``Staging 2`` for the second)."""
        name = flag if number == 1 else f"{flag} {number}"
        env = Environment(id=self.new_id(), name=name, flag=flag)
        self.environments[env.id] = env
        return env

    def environment_for_flag(self, flag: str | None) -> Environment:
        """First environment with ``flag`` (created if missing); None means the first one."""
        for env in self.environments.values():
            if flag is None or env.flag == flag:
                return env
        if flag not in ENVIRONMENT_FLAGS:
            raise ValueError(f"environment_flag must be one of {', '.join(ENVIRONMENT_FLAGS)}")
        return self.add_environment(flag)

    def https_only(self, environment_id: str) -> bool:
        """Staging and Production need HTTPS URLs."""
        return self.environments[environment_id].flag != "Development"

    # --- lifecycle ------------------------------------------------------------------------

    def reset(self) -> None:
        """Forget destinations, credentials and tokens; keep environments, keys and config."""
        self.destinations.clear()
        self.credentials.clear()
        self._json_views.clear()
        self.tokens: dict[str, float] = {}
        self.seen_jtis: dict[str, float] = {}
        self.tokens_issued = 0

    def seed(
        self,
        count: int,
        environment_flag: str | None = None,
        *,
        values_for: Callable[[str], dict[str, str | int]] | None = None,
        shared: bool = False,
        environment_id: str | None = None,
    ) -> list[str]:
        """Create ``count`` destinations with OAuth credentials; return their ids.

        Each destination gets its own credential, or with ``shared`` all of them reference
        one. ``values_for(name)`` gives the credential's fields (default: a credential for
        :data:`SEED_TOKEN_URL` that no IdP knows).
        """
        if environment_id is not None:
            if environment_id not in self.environments:
                raise ValueError(f"no environment {environment_id}")
            env = self.environments[environment_id]
        else:
            env = self.environment_for_flag(environment_flag)
        make_values = values_for or self._seed_values
        ids: list[str] = []
        start = len(self.destinations) + 1
        cred: Credential | None = None
        for number in range(start, start + count):
            name = f"dest-{number:04d}"
            if cred is None or not shared:
                cred = self.create_credential(
                    environment_id=env.id,
                    name=f"{name}-shared-oauth" if shared else f"{name}-oauth",
                    strategy="OAuth_2.0_2-legged",
                    values=make_values(name),
                )
            dest = Destination(
                id=self.new_id(),
                name=name,
                environment_id=env.id,
                endpoint=f"https://hooks.example.test/{name}",
                auth_credential=cred.id,
                verification_token=self.new_secret(),
            )
            self.destinations[dest.id] = dest
            ids.append(dest.id)
        return ids

    def add_fillers(self, count: int, environment_id: str | None = None) -> Environment:
        """Add ``count`` OAuth credentials named ``filler-NNNNN`` (numbered on from the
        fillers already there) that no destination uses, in one call: a large environment
        without a request per credential. Default environment: the first one."""
        if environment_id is not None and environment_id not in self.environments:
            raise KeyError(environment_id)
        env = (
            self.environments[environment_id]
            if environment_id is not None
            else self.environment_for_flag(None)
        )
        start = 1 + sum(1 for c in self.credentials.values() if c.name.startswith("filler-"))
        stamp = iso_now()  # one timestamp for the batch (half the cost otherwise)
        for number in range(start, start + count):
            name = f"filler-{number:05d}"
            cred = Credential(
                id=self.new_id(),
                organization=self.config.organization_id,
                name=name,
                environment_id=env.id,
                auth_strategy="OAuth_2.0_2-legged",
                created_at=stamp,
                updated_at=stamp,
                version=1,
            )
            for key, value in self._seed_values(name).items():
                if key in SECRET_FIELDS:
                    cred.secrets[key] = str(value)
                else:
                    cred.fields[key] = value
            self.credentials[cred.id] = cred
        return env

    def _seed_values(self, name: str) -> dict[str, str | int]:
        return {
            "grantType": "client_credentials",
            "url": SEED_TOKEN_URL,
            "grantTypeName": "grant_type",
            "clientIdName": "client_id",
            "clientSecretName": "client_secret",
            "clientId": f"{name}-client",
            "clientSecret": self.new_secret(),
            "scopes": "webhook.write",
        }

    def create_credential(
        self,
        *,
        environment_id: str,
        name: str,
        strategy: str,
        values: dict[str, str | int],
    ) -> Credential:
        """Store a new credential from already validated values."""
        cred = Credential(
            id=self.new_id(),
            organization=self.config.organization_id,
            name=name,
            environment_id=environment_id,
            auth_strategy=strategy,
        )
        cred.apply(values)
        cred.updated_at = cred.created_at
        self.credentials[cred.id] = cred
        return cred

    def users_of(self, credential_id: str) -> list[str]:
        """Ids of the destinations that reference ``credential_id``."""
        return [d.id for d in self.destinations.values() if d.auth_credential == credential_id]

    def drift(self, destination_id: str, credential_id: str | None) -> str:
        """Point a destination at another credential, skipping every rule (a dashboard edit)."""
        dest = self.destinations[destination_id]
        if credential_id is None:
            cred = self.create_credential(
                environment_id=dest.environment_id,
                name=f"dashboard-edit-{secrets.token_hex(4)}",
                strategy="OAuth_2.0_2-legged",
                values={
                    "grantType": "client_credentials",
                    "url": SEED_TOKEN_URL,
                    "clientId": "dashboard-client",
                    "clientSecret": self.new_secret(),
                },
            )
            credential_id = cred.id
        dest.auth_credential = credential_id
        return credential_id

    # --- views ----------------------------------------------------------------------------

    def environment_view(self, env: Environment) -> dict[str, Any]:
        """Environment as GET /v1/organizations/{id}/environments shows it."""
        return {
            "id": env.id,
            "name": env.name,
            "environmentFlag": env.flag,
            "organization": {"id": self.config.organization_id},
        }

    def destination_view(self, dest: Destination) -> dict[str, Any]:
        """Destination as the Platform API shows it (no verificationToken)."""
        env = self.environments[dest.environment_id]
        return {
            "id": dest.id,
            "name": dest.name,
            "authCredential": dest.auth_credential,
            "endpoint": dest.endpoint,
            "environment": {"id": env.id, "environmentFlag": env.flag},
            "setupState": None,
        }

    def credential_view(self, cred: Credential) -> dict[str, Any]:
        """Credential without secret values: ``has<Field>`` booleans stand in for them."""
        view: dict[str, Any] = {
            "id": cred.id,
            "organization": cred.organization,
            "name": cred.name,
            "environmentId": cred.environment_id,
            "authStrategy": cred.auth_strategy,
        }
        view.update(cred.fields)
        for name in STRATEGIES[cred.auth_strategy]:
            if name in SECRET_FIELDS:
                view[has_name(name)] = bool(cred.secrets.get(name))
        view["createdAt"] = cred.created_at
        view["updatedAt"] = cred.updated_at
        return view

    def credential_json(self, cred: Credential) -> bytes:
        """:meth:`credential_view` as compact JSON, cached until the credential changes (a
        list reply repeats every credential of the environment, so it is built from these)."""
        cached = self._json_views.get(cred.id)
        if cached is None or cached[0] != cred.version:
            view = self.credential_view(cred)
            text = json.dumps(view, ensure_ascii=False, separators=(",", ":"))
            cached = (cred.version, text.encode())
            self._json_views[cred.id] = cached
        return cached[1]

    def environment_credentials_json(self, environment_id: str) -> bytes:
        """The JSON array of the environment's credentials (as :meth:`credential_view`)."""
        parts = [
            self.credential_json(c)
            for c in self.credentials.values()
            if c.environment_id == environment_id
        ]
        return b"[" + b",".join(parts) + b"]"

    def delete_credential(self, credential_id: str) -> None:
        """Forget a credential (callers check it is unused)."""
        del self.credentials[credential_id]
        self._json_views.pop(credential_id, None)

    def snapshot(self) -> dict[str, Any]:
        """Everything except secret values (GET /_sandbox/state)."""
        return {
            "organization_id": self.config.organization_id,
            "environments": [self.environment_view(e) for e in self.environments.values()],
            "destinations": [self.destination_view(d) for d in self.destinations.values()],
            "credentials": [self.credential_view(c) for c in self.credentials.values()],
            "tokens_issued": self.tokens_issued,
        }

    def secret_values(self) -> dict[str, dict[str, str]]:
        """Every stored secret: credential id -> fields, destination id -> verificationToken."""
        found = {c.id: dict(c.secrets) for c in self.credentials.values() if c.secrets}
        for dest in self.destinations.values():
            if dest.verification_token:
                found[dest.id] = {"verificationToken": dest.verification_token}
        return found
