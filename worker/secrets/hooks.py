"""``command`` and ``http``: secret sources for any other IdP, through a small protocol.

Issue::

    CMD issue <destination id> <rotation id>              (command)
    POST <url> {"action": "issue", ...request...}         (http, bearer token)

The request (JSON on the command's stdin, or the POST body) carries ``destinationId``,
``rotationId``, ``environmentId``, ``authStrategy`` and ``clientId``. The reply (stdout, or
the response body) is JSON: ``{"secret": "<value>", "secretId": "<id at the IdP>"}``, or
``{"secrets": {"clientSecret": "...", "clientId": "..."}, "secretId": "..."}`` to set
several credential fields (AWS key pairs). ``secretId`` is optional but needed to revoke
exactly that secret later.

Revoke::

    CMD revoke <destination id> <rotation id> <credential id or -> <secret id or ->
    POST <url> {"action": "revoke", ...request...}

with ``credentialId``, ``secretId`` (null for a credential that predates the service:
the hook applies its own rule), ``keepSecretIds`` (never revoke these) and ``reason``
(``retired``, ``rolled_back``, or ``abandoned``: a rotation whose new secret was issued but
never recorded; revoke what was issued for ``rotationId``). Revoke must be idempotent.
A retried rotation that lost its new secret's value (it is never stored) revokes the
recorded secret before asking for another, so a rotation never leaves two behind.

Values leave this module only as :class:`pydantic.SecretStr`; error messages never quote
what the hook printed beyond one redacted stderr line.
"""

from __future__ import annotations

import json
import subprocess
from typing import Any

import httpx
from pydantic import SecretStr

from worker.errors import SecretSourceError
from worker.logging import redact_text
from worker.redox.models import SECRET_FIELDS
from worker.secrets.base import IdpSecret, IssuedSecret, IssueRequest, RevokeRequest
from worker.secrets.generate import primary_secret_field

__all__ = ["CommandSource", "HttpSource", "parse_reply"]

#: Non-secret fields a hook may also replace (an AWS key pair changes both halves).
ROTATABLE_EXTRA = frozenset({"accessKey", "clientId", "username"})


def _issue_body(request: IssueRequest) -> dict[str, Any]:
    return {
        "action": "issue",
        "destinationId": request.destination_id,
        "rotationId": request.rotation_id,
        "environmentId": request.environment_id,
        "authStrategy": request.auth_strategy,
        "clientId": request.client_id,
    }


def _revoke_body(request: RevokeRequest) -> dict[str, Any]:
    return {
        "action": "revoke",
        "destinationId": request.destination_id,
        "rotationId": request.rotation_id,
        "environmentId": request.environment_id,
        "authStrategy": request.auth_strategy,
        "clientId": request.client_id,
        "credentialId": request.credential_id,
        "secretId": request.secret_id,
        "keepSecretIds": list(request.keep_secret_ids),
        "reason": request.reason,
    }


def parse_reply(raw: str | bytes, auth_strategy: str, origin: str) -> IssuedSecret:
    """The hook's JSON reply as an :class:`IssuedSecret` (SecretSourceError if unusable)."""
    try:
        data = json.loads(raw)
    except ValueError:
        raise SecretSourceError(f"{origin} did not print JSON") from None
    if not isinstance(data, dict):
        raise SecretSourceError(f"{origin} printed JSON that is not an object")
    if isinstance(data.get("secret"), str):
        values: dict[str, Any] = {primary_secret_field(auth_strategy): data["secret"]}
    elif isinstance(data.get("secrets"), dict):
        values = data["secrets"]
    else:
        raise SecretSourceError(f"{origin} JSON has neither 'secret' nor 'secrets'")
    allowed = SECRET_FIELDS | ROTATABLE_EXTRA
    result: dict[str, SecretStr] = {}
    for name, value in values.items():
        if name not in allowed:
            raise SecretSourceError(f"{origin} returned field {name!r}, not a rotatable field")
        if not isinstance(value, str) or not value.strip():
            raise SecretSourceError(f"{origin} returned an empty or non-string {name!r}")
        result[name] = SecretStr(value)
    if not result.keys() & SECRET_FIELDS:
        raise SecretSourceError(f"{origin} returned no secret field")
    secret_id = data.get("secretId")
    if secret_id is not None and not (isinstance(secret_id, str) and 0 < len(secret_id) <= 200):
        raise SecretSourceError(f"{origin} returned a secretId that is not a short string")
    return IssuedSecret(result, secret_id=secret_id)


class CommandSource:
    """Runs a configured executable (see the module docstring for the protocol)."""

    kind = "command"
    manages_secrets = True

    def __init__(self, command: list[str], timeout: float = 20.0) -> None:
        if not command:
            raise SecretSourceError("command secret source has an empty command")
        self._command = list(command)
        self._timeout = timeout

    def _run(self, args: list[str], body: dict[str, Any]) -> str:
        name = self._command[0]
        try:
            done = subprocess.run(
                [*self._command, *args],
                input=json.dumps(body).encode(),
                capture_output=True,
                timeout=self._timeout,
                check=False,
            )
        except FileNotFoundError:
            raise SecretSourceError(
                f"secret command {name!r} not found", nothing_issued=True
            ) from None
        except PermissionError:
            raise SecretSourceError(
                f"secret command {name!r} is not executable", nothing_issued=True
            ) from None
        except subprocess.TimeoutExpired:
            raise SecretSourceError(
                f"secret command {name!r} timed out after {self._timeout:g}s"
            ) from None
        if done.returncode != 0:
            lines = done.stderr.decode(errors="replace").strip().splitlines()
            last = redact_text(lines[-1])[:200] if lines else "no stderr"
            raise SecretSourceError(  # the contract: non-zero means nothing was issued
                f"secret command {name!r} exited {done.returncode}: {last}", nothing_issued=True
            )
        return done.stdout.decode(errors="replace")

    def existing(self, client_id: str) -> list[IdpSecret]:
        """A command cannot list secrets."""
        return []

    def issue(self, request: IssueRequest) -> IssuedSecret:
        """Run ``CMD issue <destination id> <rotation id>`` and parse its JSON."""
        out = self._run(
            ["issue", request.destination_id, request.rotation_id], _issue_body(request)
        )
        return parse_reply(out, request.auth_strategy, f"secret command {self._command[0]!r}")

    def revoke(self, request: RevokeRequest) -> list[str]:
        """Run ``CMD revoke <destination> <rotation> <credential or -> <secret id or ->``."""
        args = [
            "revoke",
            request.destination_id,
            request.rotation_id,
            request.credential_id or "-",
            request.secret_id or "-",
        ]
        self._run(args, _revoke_body(request))
        return [request.secret_id] if request.secret_id else []


class HttpSource:
    """POSTs the protocol's JSON to a configured URL with a bearer token."""

    kind = "http"
    manages_secrets = True

    def __init__(
        self,
        url: str,
        token: SecretStr,
        timeout: float = 10.0,
        *,
        client: httpx.Client | None = None,
    ) -> None:
        self._url = url
        self._token = token
        self._timeout = timeout
        #: Pooled per process (sources are cached); tests pass a MockTransport client.
        self._client = client if client is not None else httpx.Client(follow_redirects=False)

    def _post(self, body: dict[str, Any]) -> bytes:
        headers = {"Authorization": f"Bearer {self._token.get_secret_value()}"}
        try:
            reply = self._client.post(self._url, json=body, headers=headers, timeout=self._timeout)
        except httpx.TimeoutException:
            raise SecretSourceError(f"secret service timed out after {self._timeout:g}s") from None
        except httpx.ConnectError as exc:
            raise SecretSourceError(
                f"secret service unreachable: {type(exc).__name__}", nothing_issued=True
            ) from None
        except httpx.HTTPError as exc:  # the request may have arrived
            raise SecretSourceError(f"secret service failed: {type(exc).__name__}") from None
        if reply.status_code >= 300:  # the contract: an error answer means nothing issued
            raise SecretSourceError(
                f"secret service answered {reply.status_code}", nothing_issued=True
            )
        return reply.content

    def existing(self, client_id: str) -> list[IdpSecret]:
        """The protocol has no listing."""
        return []

    def issue(self, request: IssueRequest) -> IssuedSecret:
        """POST an ``issue`` request and parse the JSON reply."""
        raw = self._post(_issue_body(request))
        return parse_reply(raw, request.auth_strategy, "secret service")

    def revoke(self, request: RevokeRequest) -> list[str]:
        """POST a ``revoke`` request."""
        self._post(_revoke_body(request))
        return [request.secret_id] if request.secret_id else []
