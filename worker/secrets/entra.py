"""Microsoft Entra ID as a secret source: application passwords added and removed via Graph.

Calls (idp-api.md §B): ``GET {graph}/applications(appId='{clientId}')?$select=…`` to list
``passwordCredentials``, ``POST …/addPassword`` (the value is in that reply only) and
``POST …/removePassword`` with ``{"keyId"}`` (204). Graph is called with a token from the
client-credentials grant at ``{login}/{tenant}/oauth2/v2.0/token`` (scope
``https://graph.microsoft.com/.default``), authenticated with a client secret or a
certificate client assertion (RS256, ``x5t`` and ``x5t#S256`` thumbprints). MSAL is not used:
it refuses http authorities, which a local sandbox needs (idp-api.md §D).

**Permissions:** the rotator's service principal needs the Graph *application* permission
``Application.ReadWrite.OwnedBy`` and must be an **owner** of every target app registration
(or, broader, ``Application.ReadWrite.All``).

Rules this module keeps:

* The Graph token is cached (thread-safe) until shortly before ``expires_in``; a 401 from
  Graph drops it and the call is tried once more with a fresh one. The lock is held for one
  token exchange at most, never across a retry wait.
* ``addPassword`` sends documented fields only (``displayName``) and is never retried after
  a lost reply (it would add a second password), only after a 429.
* Pre-existing passwords are left alone unless ``revoke_preexisting`` is set: an Entra app's
  passwords may serve other clients than Redox.
* Messages carry Graph's error ``code`` or the ``AADSTSnnnn`` code and sentence, never a
  token, a secret, an assertion or a body (trace and correlation ids are dropped).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from pydantic import SecretStr

from worker.errors import (
    ConfigError,
    IdpLimitReached,
    IdpRejected,
    IdpUnavailable,
    SecretSourceError,
)
from worker.logging import get_logger
from worker.redox.retry import retry_after_seconds
from worker.secrets.base import IdpSecret, IssuedSecret, IssueRequest, RevokeRequest
from worker.secrets.idp_http import (
    CertificateAssertion,
    IdpRetry,
    Reply,
    RetryPolicy,
    build_http_client,
    call_with_retry,
    is_transient_status,
    oauth_error,
    path_segment,
    require_client_id,
    require_https,
    send,
    short,
)

__all__ = ["EntraSource"]

log = get_logger(__name__)

GRAPH_SCOPE = "https://graph.microsoft.com/.default"
DEFAULT_TOKEN_LIFETIME = 3599.0
_ENV = "ROTATOR_SECRET_SOURCE__ENTRA__"
_HINTS = {
    401: "Graph refused the token even after a refresh",
    403: "the service principal needs Application.ReadWrite.OwnedBy and must own the app "
    "(or Application.ReadWrite.All)",
    404: "no application with this appId, or the service principal cannot see it",
}


class EntraSource:
    """Adds and removes passwords of Entra app registrations (``SecretSource``)."""

    kind = "entra"
    manages_secrets = True

    def __init__(
        self,
        tenant_id: str,
        client_id: str,
        *,
        client_secret: SecretStr | None = None,
        certificate_path: Path | None = None,
        graph_url: str = "https://graph.microsoft.com/v1.0",
        login_url: str = "https://login.microsoftonline.com",
        graph_scope: str = GRAPH_SCOPE,
        revoke_preexisting: bool = False,
        timeout: float = 10.0,
        allow_insecure_http: bool = False,
        transport: httpx.BaseTransport | None = None,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not tenant_id:
            raise ConfigError(f"{_ENV}TENANT_ID is not set")
        if not client_id:
            raise ConfigError(f"{_ENV}CLIENT_ID is not set")
        has_secret = client_secret is not None and bool(client_secret.get_secret_value())
        if has_secret == (certificate_path is not None):
            raise ConfigError(f"set exactly one of {_ENV}CLIENT_SECRET and {_ENV}CERTIFICATE_PATH")
        self._graph_base = require_https(
            graph_url, setting=f"{_ENV}GRAPH_URL", allow_insecure_http=allow_insecure_http
        )
        login = require_https(
            login_url, setting=f"{_ENV}LOGIN_URL", allow_insecure_http=allow_insecure_http
        )
        self._token_url = f"{login}/{path_segment(tenant_id)}/oauth2/v2.0/token"
        self._client_id = client_id
        self._secret = client_secret if has_secret else None
        self._certificate: CertificateAssertion | None = None
        if certificate_path is not None:
            setting = f"{_ENV}CERTIFICATE_PATH"
            self._certificate = CertificateAssertion.load(certificate_path, setting=setting)
        self._scope = graph_scope
        self._revoke_preexisting = revoke_preexisting
        self._retry: RetryPolicy = retry or IdpRetry()
        self._sleep = sleep
        self._clock = clock
        self._http = build_http_client(timeout, transport)
        self._lock = threading.Lock()
        self._token: str | None = None
        self._expires_at = 0.0

    def close(self) -> None:
        """Close pooled connections."""
        self._http.close()

    # -- SecretSource -------------------------------------------------------------------

    def existing(self, client_id: str) -> list[IdpSecret]:
        """The app's passwords (keyId, startDateTime, displayName), never their values."""
        app = require_client_id(client_id, "Entra")
        what = f"list Entra passwords of {app}"
        path = f"{_app_path(app)}?$select=id,appId,passwordCredentials"
        data = self._retried("GET", path, what).json()
        creds = data.get("passwordCredentials", []) if isinstance(data, dict) else None
        if not isinstance(creds, list):
            raise SecretSourceError(f"{what}: reply has no passwordCredentials list")
        return [
            IdpSecret(
                id=item["keyId"],
                created=_text(item.get("startDateTime")),
                display_name=_text(item.get("displayName")),
            )
            for item in creds
            if isinstance(item, dict) and isinstance(item.get("keyId"), str) and item["keyId"]
        ]

    def issue(self, request: IssueRequest) -> IssuedSecret:
        """``addPassword`` named ``redox-rotator <rotation id>``; the value from its reply."""
        app = require_client_id(request.client_id, "Entra")
        what = f"add Entra password to {app}"
        call_with_retry(self._retry, "Entra token request", self._graph_token, sleep=self._sleep)
        body = {"passwordCredential": {"displayName": f"redox-rotator {request.rotation_id}"}}
        reply = call_with_retry(
            self._retry,
            what,
            lambda: self._graph("POST", f"{_app_path(app)}/addPassword", what, json_body=body),
            retry_if=lambda exc: exc.status == 429,
            sleep=self._sleep,
        )
        data = reply.json()
        key_id = data.get("keyId") if isinstance(data, dict) else None
        value = data.get("secretText") if isinstance(data, dict) else None
        if not isinstance(key_id, str) or not key_id:
            raise SecretSourceError(f"{what}: reply has no keyId")
        if not isinstance(value, str) or not value:
            raise SecretSourceError(f"{what}: reply has no secretText")
        log.info("entra password added", app_id=app, secret_id=key_id)
        return IssuedSecret({"clientSecret": SecretStr(value)}, secret_id=key_id)

    def revoke(self, request: RevokeRequest) -> list[str]:
        """Remove passwords; return the keyIds now gone.

        With ``secret_id``: that password (unless kept). With ``secret_id=None`` (a
        credential older than this service): nothing, unless ``revoke_preexisting`` is set;
        then every password not in ``keep_secret_ids`` whose ``startDateTime`` is before
        the oldest kept password's (passwords without a readable start are left alone).
        """
        app = require_client_id(request.client_id, "Entra")
        keep = set(request.keep_secret_ids)
        if request.secret_id is not None:
            if request.secret_id in keep:
                log.warning("entra revoke skipped: password is kept", secret_id=request.secret_id)
                return []
            self._remove(app, request.secret_id)
            return [request.secret_id]
        if not self._revoke_preexisting:
            log.info("entra pre-existing passwords left in place (revoke_preexisting is off)")
            return []
        passwords = self.existing(app)
        kept = [
            start
            for password in passwords
            if password.id in keep and (start := _parse_time(password.created)) is not None
        ]
        if not kept:
            log.warning("entra revoke skipped: no kept password with a start date", app_id=app)
            return []
        oldest = min(kept)
        revoked: list[str] = []
        for password in passwords:
            start = _parse_time(password.created)
            if password.id not in keep and start is not None and start < oldest:
                self._remove(app, password.id)
                revoked.append(password.id)
        return revoked

    def _remove(self, app: str, key_id: str) -> None:
        """``removePassword``; a 400/404 whose keyId the app no longer lists is done."""
        what = f"remove Entra password {key_id} from {app}"
        try:
            path = f"{_app_path(app)}/removePassword"
            self._retried("POST", path, what, json_body={"keyId": key_id})
        except IdpRejected as exc:
            if isinstance(exc, IdpLimitReached) or exc.status not in (400, 404):
                raise
            try:
                listed = self.existing(app)
            except IdpRejected as missing:
                if missing.status != 404:
                    raise
                listed = []
            if any(p.id == key_id for p in listed):
                raise
            log.info("entra password already gone", app_id=app, secret_id=key_id)
            return
        log.info("entra password removed", app_id=app, secret_id=key_id)

    # -- Graph --------------------------------------------------------------------------

    def _retried(self, method: str, path: str, what: str, *, json_body: Any = None) -> Reply:
        return call_with_retry(
            self._retry,
            what,
            lambda: self._graph(method, path, what, json_body=json_body),
            sleep=self._sleep,
        )

    def _graph(self, method: str, path: str, what: str, *, json_body: Any = None) -> Reply:
        """One Graph call: at most two exchanges (a 401 refreshes the token once)."""
        headers = {"Content-Type": "application/json"} if json_body is not None else {}
        for refreshed in (False, True):
            token = self._graph_token()
            headers["Authorization"] = f"Bearer {token}"
            url = self._graph_base + path
            reply = send(
                self._http,
                method,
                url,
                what=what,
                headers=headers,
                json_body=json_body,
                write=method != "GET",
            )
            if reply.status == 401 and not refreshed:
                self._invalidate(token)
                continue
            if 200 <= reply.status < 300:
                return reply
            secret = self._secret.get_secret_value() if self._secret is not None else ""
            raise _graph_error(what, reply, scrub=[token, secret])
        raise AssertionError("unreachable")  # pragma: no cover

    # -- token --------------------------------------------------------------------------

    def _graph_token(self) -> str:
        """The cached Graph token, or one fresh token exchange (under the lock)."""
        with self._lock:
            if self._token is None or self._clock() >= self._expires_at:
                token, lifetime = self._fetch_token()
                margin = min(300.0, lifetime / 2)
                self._token, self._expires_at = token, self._clock() + lifetime - margin
            return self._token

    def _invalidate(self, token: str) -> None:
        with self._lock:
            if self._token == token:
                self._token = None

    def _fetch_token(self) -> tuple[str, float]:
        what = "Entra token request"
        form = {"client_id": self._client_id, "scope": self._scope}
        if self._secret is not None:
            form["client_secret"] = self._secret.get_secret_value()
        else:
            form["client_assertion_type"] = CertificateAssertion.TYPE
            assert self._certificate is not None
            form["client_assertion"] = self._certificate.sign(self._client_id, self._token_url)
        form["grant_type"] = "client_credentials"
        reply = send(self._http, "POST", self._token_url, what=what, form=form)
        if reply.status == 429:
            retry_after = retry_after_seconds(reply.headers.get("retry-after"))
            raise IdpUnavailable(f"{what}: throttled (429)", status=429, retry_after=retry_after)
        if is_transient_status(reply.status):
            raise IdpUnavailable(f"{what}: Entra answered {reply.status}", status=reply.status)
        data = reply.json()
        if not 200 <= reply.status < 300:
            secrets = [form.get("client_secret", ""), form.get("client_assertion", "")]
            error, description, code = oauth_error(data, scrub=secrets)
            label = f"{reply.status} {error}" if error else str(reply.status)
            raise IdpRejected(
                f"{what} refused ({label}): {description or 'no description'}",
                status=reply.status,
                code=code or error,
            )
        token = data.get("access_token") if isinstance(data, dict) else None
        if not isinstance(token, str) or not token:
            raise SecretSourceError(f"{what}: reply has no access_token")
        lifetime = data.get("expires_in", DEFAULT_TOKEN_LIFETIME)
        try:
            seconds = float(lifetime)
        except (TypeError, ValueError):
            seconds = DEFAULT_TOKEN_LIFETIME
        seconds = seconds if 0 < seconds < 86_400 else DEFAULT_TOKEN_LIFETIME
        log.info("entra graph token fetched", expires_in=seconds)
        return token, seconds


def _graph_error(what: str, reply: Reply, *, scrub: list[str]) -> Exception:
    status = reply.status
    data = reply.json()
    error = data.get("error") if isinstance(data, dict) else None
    code = message = None
    codes: set[str] = set()
    if isinstance(error, dict):
        code = error.get("code") if isinstance(error.get("code"), str) else None
        message = error.get("message") if isinstance(error.get("message"), str) else None
        details = error.get("details")
        if isinstance(details, list):
            codes = {d["code"] for d in details if isinstance(d, dict) and _text(d.get("code"))}
    reason = short(message or "", scrub=scrub)
    label = f"{status} {code}" if code else str(status)
    if status == 429:
        retry_after = retry_after_seconds(reply.headers.get("retry-after"))
        return IdpUnavailable(
            f"{what}: Graph throttled ({label})", status=429, retry_after=retry_after
        )
    if is_transient_status(status):
        retry_after = retry_after_seconds(reply.headers.get("retry-after"))
        return IdpUnavailable(
            f"{what}: Graph answered {status}", status=status, retry_after=retry_after
        )
    if "TooManyAppPasswords" in {code, *codes}:
        return IdpLimitReached(
            f"{what}: the app holds as many passwords as Entra allows (TooManyAppPasswords); "
            "retire the previous rotation's old one (`rotator retire`) or remove one in Entra",
            status=status,
            code="TooManyAppPasswords",
        )
    if 400 <= status < 500:
        detail = "; ".join(part for part in (reason, _HINTS.get(status)) if part)
        return IdpRejected(
            f"{what}: Graph answered {label}: {detail or 'no details'}", status=status, code=code
        )
    return SecretSourceError(f"{what}: unexpected status {status}")


def _app_path(app_id: str) -> str:
    """``/applications(appId='…')`` with the id as an escaped OData string literal."""
    return f"/applications(appId='{path_segment(app_id.replace(chr(39), chr(39) * 2))}')"


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)
