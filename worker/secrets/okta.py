"""Okta as a secret source: a second client secret of the same OAuth app, then the old one retired.

Okta's application client-secret API (idp-api.md §A): ``GET``/``POST
{org}/api/v1/apps/{appId}/credentials/secrets``, ``POST …/secrets/{id}/lifecycle/deactivate``
and ``DELETE …/secrets/{id}`` (INACTIVE secrets only), authenticated with
``Authorization: SSWS <api token>`` (scopes ``okta.apps.read`` / ``okta.apps.manage``).
The app id is the credential's ``clientId`` (Okta's default: they are equal).

Rules this module keeps:

* An app holds at most **two** secret objects, ACTIVE and INACTIVE alike: :meth:`issue`
  lists first and refuses a third with :class:`~worker.errors.IdpLimitReached`.
* The plaintext is read only from the 201 create reply (lists show it masked or not at all);
  the create is never retried after a lost reply (it cannot be told apart from a new secret),
  only after a 429, which Okta did not act on.
* Revoking deactivates, then deletes; a secret that is already gone (404) is success. Nothing
  in ``keep_secret_ids`` is ever touched, and the last active secret is never deactivated.
* Rate limits: a 429 carries ``retry_after`` from ``X-Rate-Limit-Reset`` (epoch seconds,
  measured against the reply's ``Date``) or ``Retry-After``; when ``X-Rate-Limit-Remaining``
  reaches 0 the next call waits for the reset (at most ``max_rate_wait`` seconds, else it
  raises IdpUnavailable so the task is retried later).
* Messages carry Okta's ``errorCode`` and a short, redacted summary; never the API token,
  a secret value or a body.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from email.utils import parsedate_to_datetime
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
    IdpRetry,
    Reply,
    RetryPolicy,
    build_http_client,
    call_with_retry,
    is_transient_status,
    path_segment,
    require_client_id,
    require_https,
    send,
    short,
)

__all__ = ["OktaSource"]

log = get_logger(__name__)

#: Okta allows this many secret objects (ACTIVE + INACTIVE) per app.
MAX_SECRETS = 2
_LIMIT_CAUSE = "maximum number of client secrets"
_HINTS = {
    401: "the API token is invalid or expired (ROTATOR_SECRET_SOURCE__OKTA__API_TOKEN)",
    403: "the API token's admin lacks okta.apps.manage on this app",
    404: "no such app or secret",
}


class OktaSource:
    """Issues and revokes client secrets of Okta OAuth apps (``SecretSource``)."""

    kind = "okta"
    manages_secrets = True

    def __init__(
        self,
        org_url: str,
        api_token: SecretStr,
        *,
        timeout: float = 10.0,
        allow_insecure_http: bool = False,
        transport: httpx.BaseTransport | None = None,
        retry: RetryPolicy | None = None,
        max_rate_wait: float = 10.0,
        sleep: Callable[[float], None] = time.sleep,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._base = require_https(
            org_url,
            setting="ROTATOR_SECRET_SOURCE__OKTA__ORG_URL",
            allow_insecure_http=allow_insecure_http,
        )
        if not api_token.get_secret_value():
            raise ConfigError("ROTATOR_SECRET_SOURCE__OKTA__API_TOKEN is not set")
        self._token = api_token
        self._retry: RetryPolicy = retry or IdpRetry()
        self._max_rate_wait = max_rate_wait
        self._sleep = sleep
        self._wall = wall_clock
        self._http = build_http_client(timeout, transport)
        self._rate_lock = threading.Lock()
        #: Wall-clock time before which no call is sent (Okta said 0 calls remain).
        self._resume_at = 0.0

    def close(self) -> None:
        """Close pooled connections."""
        self._http.close()

    # -- SecretSource -------------------------------------------------------------------

    def existing(self, client_id: str) -> list[IdpSecret]:
        """The app's secrets (ids, status, created), never their values."""
        app = require_client_id(client_id, "Okta")
        what = f"list Okta secrets of {app}"
        reply = self._retried("GET", self._secrets_url(app), what)
        assert reply is not None
        items = reply.json()
        if not isinstance(items, list):
            raise SecretSourceError(f"{what}: reply is not a list of secrets")
        return [_idp_secret(item, what) for item in items]

    def issue(self, request: IssueRequest) -> IssuedSecret:
        """Create a second secret (Okta generates it); IdpLimitReached if two exist."""
        app = require_client_id(request.client_id, "Okta")
        current = self.existing(app) if request.existing is None else list(request.existing)
        if len(current) >= MAX_SECRETS:
            held = ", ".join(f"{s.id} ({s.status})" for s in current)
            raise IdpLimitReached(
                f"Okta app {app} already holds {len(current)} client secrets ({held}), the "
                "most Okta allows; one is probably an old credential's, in its grace period "
                "(retire it: `rotator retire`) or kept by the retire policy (delete it in Okta)"
            )
        what = f"create Okta secret for {app}"
        reply = call_with_retry(
            self._retry,
            what,
            lambda: self._checked("POST", self._secrets_url(app), what, json_body={}),
            retry_if=lambda exc: exc.status == 429,
            sleep=self._sleep,
        )
        assert reply is not None
        data = reply.json()
        if not isinstance(data, dict):
            raise SecretSourceError(f"{what}: reply is not a secret object")
        secret_id, value = data.get("id"), data.get("client_secret")
        if not isinstance(secret_id, str) or not secret_id:
            raise SecretSourceError(f"{what}: reply has no secret id")
        if not isinstance(value, str) or not value:
            raise SecretSourceError(f"{what}: reply has no client_secret value")
        log.info("okta client secret created", app_id=app, secret_id=secret_id)
        return IssuedSecret({"clientSecret": SecretStr(value)}, secret_id=secret_id)

    def revoke(self, request: RevokeRequest) -> list[str]:
        """Deactivate and delete secrets; return the ids now gone.

        With ``secret_id``: that secret (unless it is in ``keep_secret_ids``). With
        ``secret_id=None`` (a credential older than this service): every secret of the app
        *not* in ``keep_secret_ids``, and only when at least one kept secret is ACTIVE,
        so the app is never left without an active secret; otherwise nothing is revoked.
        Okta itself refuses to deactivate an app's only active secret (IdpRejected).
        """
        app = require_client_id(request.client_id, "Okta")
        keep = set(request.keep_secret_ids)
        if request.secret_id is not None:
            if request.secret_id in keep:
                log.warning("okta revoke skipped: secret is kept", secret_id=request.secret_id)
                return []
            self._retire(app, request.secret_id, None)
            return [request.secret_id]
        secrets = self.existing(app)
        if not any(s.id in keep and s.status == "active" for s in secrets):
            log.warning(
                "okta revoke skipped: no kept secret is active",
                app_id=app,
                kept=sorted(keep),
                listed=[s.id for s in secrets],
            )
            return []
        revoked: list[str] = []
        for secret in secrets:
            if secret.id not in keep:
                self._retire(app, secret.id, secret.status)
                revoked.append(secret.id)
        return revoked

    # -- steps --------------------------------------------------------------------------

    def _retire(self, app: str, secret_id: str, status: str | None) -> None:
        """Deactivate (if active) then delete one secret; already gone is done."""
        url = f"{self._secrets_url(app)}/{path_segment(secret_id)}"
        if status is None:
            status = self._status(url, secret_id)
            if status is None:
                log.info("okta secret already gone", app_id=app, secret_id=secret_id)
                return
        if status == "active":
            what = f"deactivate Okta secret {secret_id}"
            try:
                if self._retried("POST", f"{url}/lifecycle/deactivate", what, gone_ok=True) is None:
                    return
            except IdpRejected as exc:
                # A retried deactivate may meet a secret the lost first try already
                # deactivated; anything else (e.g. "the only active secret") stands.
                if exc.status != 400 or isinstance(exc, IdpLimitReached):
                    raise
                now = self._status(url, secret_id)
                if now is None:
                    return
                if now != "inactive":
                    raise
        self._retried("DELETE", url, f"delete Okta secret {secret_id}", gone_ok=True)
        log.info("okta client secret revoked", app_id=app, secret_id=secret_id)

    def _status(self, url: str, secret_id: str) -> str | None:
        what = f"get Okta secret {secret_id}"
        reply = self._retried("GET", url, what, gone_ok=True)
        return None if reply is None else _idp_secret(reply.json(), what).status

    # -- transport ----------------------------------------------------------------------

    def _secrets_url(self, app: str) -> str:
        return f"{self._base}/api/v1/apps/{path_segment(app)}/credentials/secrets"

    def _retried(self, method: str, url: str, what: str, *, gone_ok: bool = False) -> Reply | None:
        return call_with_retry(
            self._retry,
            what,
            lambda: self._checked(method, url, what, gone_ok=gone_ok),
            sleep=self._sleep,
        )

    def _checked(
        self,
        method: str,
        url: str,
        what: str,
        *,
        json_body: Any = None,
        gone_ok: bool = False,
    ) -> Reply | None:
        """One exchange; 2xx -> the reply, 404 with ``gone_ok`` -> None, else an error."""
        self._pace(what)
        headers = {
            "Authorization": f"SSWS {self._token.get_secret_value()}",
            "Content-Type": "application/json",
        }
        reply = send(
            self._http,
            method,
            url,
            what=what,
            headers=headers,
            json_body=json_body,
            write=method != "GET",
        )
        self._note_rate(reply)
        if 200 <= reply.status < 300:
            return reply
        if reply.status == 404 and gone_ok:
            return None
        raise self._error(what, reply)

    def _error(self, what: str, reply: Reply) -> Exception:
        status = reply.status
        data = reply.json()
        code: str | None = None
        texts: list[str] = []
        if isinstance(data, dict):
            code = data.get("errorCode") if isinstance(data.get("errorCode"), str) else None
            if isinstance(data.get("errorSummary"), str):
                texts.append(data["errorSummary"])
            causes = data.get("errorCauses")
            if isinstance(causes, list):
                texts += [
                    c["errorSummary"]
                    for c in causes
                    if isinstance(c, dict) and isinstance(c.get("errorSummary"), str)
                ]
        reason = short("; ".join(texts), scrub=[self._token.get_secret_value()])
        label = f"{status} {code}" if code else str(status)
        if status == 429:
            retry_after = self._until_reset(reply.headers)
            if retry_after is None:
                retry_after = retry_after_seconds(reply.headers.get("retry-after"))
            return IdpUnavailable(
                f"{what}: Okta rate limit ({label})", status=429, retry_after=retry_after
            )
        if is_transient_status(status):
            retry_after = retry_after_seconds(reply.headers.get("retry-after"))
            return IdpUnavailable(
                f"{what}: Okta answered {status}", status=status, retry_after=retry_after
            )
        if status == 400 and any(_LIMIT_CAUSE in text.lower() for text in texts):
            return IdpLimitReached(
                f"{what}: Okta refused a third client secret ({label}): {reason}",
                status=status,
                code=code,
            )
        if 400 <= status < 500:
            hint = _HINTS.get(status)
            detail = "; ".join(part for part in (reason, hint) if part)
            return IdpRejected(
                f"{what}: Okta answered {label}: {detail or 'no details'}",
                status=status,
                code=code,
            )
        return SecretSourceError(f"{what}: unexpected status {status}")

    # -- rate limits --------------------------------------------------------------------

    def _pace(self, what: str) -> None:
        with self._rate_lock:
            wait = self._resume_at - self._wall()
        if wait <= 0:
            return
        if wait > self._max_rate_wait:
            raise IdpUnavailable(
                f"{what}: Okta rate limit exhausted until its reset", status=429, retry_after=wait
            )
        log.info("okta rate limit: waiting for reset", wait_seconds=round(wait, 3))
        self._sleep(wait)

    def _note_rate(self, reply: Reply) -> None:
        remaining = reply.headers.get("x-rate-limit-remaining")
        if remaining is None or not remaining.strip().isdigit():
            return
        resume_at = 0.0
        if int(remaining) == 0:
            until = self._until_reset(reply.headers)
            resume_at = self._wall() + (until if until is not None else 1.0)
        with self._rate_lock:
            self._resume_at = resume_at

    def _until_reset(self, headers: httpx.Headers) -> float | None:
        """Seconds until ``X-Rate-Limit-Reset``, measured against the reply's ``Date``."""
        try:
            reset = float(headers.get("x-rate-limit-reset", ""))
        except ValueError:
            return None
        now = self._wall()
        date = headers.get("date")
        if date:
            with contextlib.suppress(TypeError, ValueError, IndexError):
                now = parsedate_to_datetime(date).timestamp()
        return max(0.0, min(reset - now, 3600.0))


def _idp_secret(item: Any, what: str) -> IdpSecret:
    if not isinstance(item, dict) or not isinstance(item.get("id"), str) or not item["id"]:
        raise SecretSourceError(f"{what}: a secret in the reply has no id")
    status = item.get("status")
    created = item.get("created")
    return IdpSecret(
        id=item["id"],
        status="active" if isinstance(status, str) and status.upper() == "ACTIVE" else "inactive",
        created=created if isinstance(created, str) else None,
    )
