"""Secret sources: where a rotation gets the new secret (behind one Protocol).

* ``generate`` (default): cryptographically random, ``length`` characters (URL-safe).
* ``command``: runs an executable as ``CMD... issue <destination_id> <rotation_id>`` and reads
  JSON from stdout: ``{"secret": "..."}`` or ``{"secrets": {"clientSecret": "..."}}``;
  retirement runs ``CMD... revoke <destination_id> <rotation_id> <credential_id>``.
* ``http``: POSTs ``{"action": "issue", "destinationId", "rotationId", ...}`` with a bearer
  token and reads the same JSON from the reply; ``"action": "revoke"`` on retirement.

Secret values leave this module only as :class:`pydantic.SecretStr`; every error message is
written here and never quotes what the source printed beyond one redacted stderr line.
"""

from __future__ import annotations

import json
import secrets
import subprocess
from dataclasses import dataclass
from typing import Any, Protocol

import httpx
from pydantic import SecretStr

from worker.errors import SecretSourceError
from worker.logging import redact_text
from worker.redox.models import SECRET_FIELDS

__all__ = [
    "CommandSource",
    "GenerateSource",
    "HttpSource",
    "SecretRequest",
    "SecretSource",
    "build_secret_source",
    "primary_secret_field",
]

#: The field a single new secret goes into, per strategy.
_PRIMARY = {
    "OAuth_2.0_2-legged": "clientSecret",
    "SMART_Backend": "clientSecret",
    "AwsSigv4": "secretKey",
}
#: Non-secret fields a source may also replace (an AWS key pair changes both halves).
_ROTATABLE_EXTRA = frozenset({"accessKey", "clientId", "username"})


@dataclass(frozen=True)
class SecretRequest:
    """What a source is told: ids and the strategy, never an existing secret."""

    destination_id: str
    rotation_id: str
    environment_id: str
    auth_strategy: str
    credential_id: str | None = None


class SecretSource(Protocol):
    """Issues new secrets (and optionally revokes retired ones)."""

    kind: str
    supports_revoke: bool

    def issue(self, request: SecretRequest) -> dict[str, SecretStr]:
        """New credential field values (secret ones at least), keyed by Redox field name."""
        ...

    def revoke(self, request: SecretRequest) -> None:
        """Tell the source a credential was retired (no-op when unsupported)."""
        ...


def primary_secret_field(auth_strategy: str) -> str:
    """The field a single secret fills for this strategy (SecretSourceError if unknown)."""
    try:
        return _PRIMARY[auth_strategy]
    except KeyError:
        raise SecretSourceError(
            f"no default secret field for strategy {auth_strategy!r}: use a command or http "
            "source that names its fields"
        ) from None


class GenerateSource:
    """Random secrets from :mod:`secrets`; nothing to revoke."""

    kind = "generate"
    supports_revoke = False

    def __init__(self, length: int = 48) -> None:
        self._length = length

    def issue(self, request: SecretRequest) -> dict[str, SecretStr]:
        """One random URL-safe secret of ``length`` characters in the primary field."""
        field = primary_secret_field(request.auth_strategy)
        value = secrets.token_urlsafe(self._length)[: self._length]
        return {field: SecretStr(value)}

    def revoke(self, request: SecretRequest) -> None:
        """Nothing to do: generated secrets live only in Redox."""


def _parse_reply(raw: str | bytes, request: SecretRequest, origin: str) -> dict[str, SecretStr]:
    try:
        data = json.loads(raw)
    except ValueError:
        raise SecretSourceError(f"{origin} did not print JSON") from None
    if not isinstance(data, dict):
        raise SecretSourceError(f"{origin} printed JSON that is not an object")
    if isinstance(data.get("secret"), str):
        values: dict[str, Any] = {primary_secret_field(request.auth_strategy): data["secret"]}
    elif isinstance(data.get("secrets"), dict):
        values = data["secrets"]
    else:
        raise SecretSourceError(f"{origin} JSON has neither 'secret' nor 'secrets'")
    allowed = SECRET_FIELDS | _ROTATABLE_EXTRA
    result: dict[str, SecretStr] = {}
    for name, value in values.items():
        if name not in allowed:
            raise SecretSourceError(f"{origin} returned field {name!r}, not a rotatable field")
        if not isinstance(value, str) or not value.strip():
            raise SecretSourceError(f"{origin} returned an empty or non-string {name!r}")
        result[name] = SecretStr(value)
    if not result.keys() & SECRET_FIELDS:
        raise SecretSourceError(f"{origin} returned no secret field")
    return result


class CommandSource:
    """Runs a configured executable; see the module docstring for the protocol."""

    kind = "command"
    supports_revoke = True

    def __init__(self, command: list[str], timeout: float = 20.0) -> None:
        if not command:
            raise SecretSourceError("command secret source has an empty command")
        self._command = list(command)
        self._timeout = timeout

    def _run(self, args: list[str]) -> str:
        name = self._command[0]
        try:
            done = subprocess.run(
                [*self._command, *args],
                capture_output=True,
                timeout=self._timeout,
                check=False,
                stdin=subprocess.DEVNULL,
            )
        except FileNotFoundError:
            raise SecretSourceError(f"secret command {name!r} not found") from None
        except PermissionError:
            raise SecretSourceError(f"secret command {name!r} is not executable") from None
        except subprocess.TimeoutExpired:
            raise SecretSourceError(
                f"secret command {name!r} timed out after {self._timeout:g}s"
            ) from None
        if done.returncode != 0:
            lines = done.stderr.decode(errors="replace").strip().splitlines()
            last = redact_text(lines[-1])[:200] if lines else "no stderr"
            raise SecretSourceError(f"secret command {name!r} exited {done.returncode}: {last}")
        return done.stdout.decode(errors="replace")

    def issue(self, request: SecretRequest) -> dict[str, SecretStr]:
        """Run ``CMD issue <destination_id> <rotation_id>`` and parse its JSON."""
        out = self._run(["issue", request.destination_id, request.rotation_id])
        return _parse_reply(out, request, f"secret command {self._command[0]!r}")

    def revoke(self, request: SecretRequest) -> None:
        """Run ``CMD revoke <destination_id> <rotation_id> <credential_id>``."""
        self._run(
            ["revoke", request.destination_id, request.rotation_id, request.credential_id or ""]
        )


class HttpSource:
    """POSTs to a configured URL with a bearer token; see the module docstring."""

    kind = "http"
    supports_revoke = True

    def __init__(
        self,
        url: str,
        token: SecretStr,
        timeout: float = 20.0,
        *,
        client: httpx.Client | None = None,
    ) -> None:
        self._url = url
        self._token = token
        self._timeout = timeout
        #: Pooled per process (the Runtime caches sources); tests pass a MockTransport client.
        self._client = client if client is not None else httpx.Client(follow_redirects=False)

    def _post(self, body: dict[str, Any]) -> bytes:
        headers = {"Authorization": f"Bearer {self._token.get_secret_value()}"}
        try:
            reply = self._client.post(self._url, json=body, headers=headers, timeout=self._timeout)
        except httpx.TimeoutException:
            raise SecretSourceError(f"secret service timed out after {self._timeout:g}s") from None
        except httpx.HTTPError as exc:
            raise SecretSourceError(f"secret service unreachable: {type(exc).__name__}") from None
        if reply.status_code >= 300:
            raise SecretSourceError(f"secret service answered {reply.status_code}")
        return reply.content

    def issue(self, request: SecretRequest) -> dict[str, SecretStr]:
        """POST an ``issue`` request and parse the JSON reply."""
        raw = self._post(
            {
                "action": "issue",
                "destinationId": request.destination_id,
                "rotationId": request.rotation_id,
                "environmentId": request.environment_id,
                "authStrategy": request.auth_strategy,
            }
        )
        return _parse_reply(raw, request, "secret service")

    def revoke(self, request: SecretRequest) -> None:
        """POST a ``revoke`` request for a retired credential."""
        self._post(
            {
                "action": "revoke",
                "destinationId": request.destination_id,
                "rotationId": request.rotation_id,
                "credentialId": request.credential_id,
            }
        )


def build_secret_source(spec: dict[str, Any]) -> SecretSource:
    """A source from a plain spec: ``kind`` plus ``length`` / ``command`` / ``url``, ``token``,
    ``timeout`` (seconds)."""
    kind = spec.get("kind", "generate")
    timeout = float(spec.get("timeout") or spec.get("timeout_seconds") or 20.0)
    if kind == "generate":
        return GenerateSource(int(spec.get("length") or 48))
    if kind == "command":
        return CommandSource(list(spec.get("command") or []), timeout)
    if kind == "http":
        token = spec.get("token") or SecretStr("")
        return HttpSource(
            str(spec["url"]),
            token if isinstance(token, SecretStr) else SecretStr(str(token)),
            timeout,
        )
    raise SecretSourceError(f"unknown secret source kind {kind!r}")
