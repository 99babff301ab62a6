"""The token rehearsal: Redox's own token request, made with the new secret before the switch.

Before a destination is pointed at a new ``OAuth_2.0_2-legged`` credential, :func:`rehearse`
makes exactly the request Redox will make with it (redox-api.md §8):

* ``POST <url>`` with ``Content-Type: <contentType>`` (default
  ``application/x-www-form-urlencoded``; a JSON body when the type is JSON);
* ``<grantTypeName|grant_type>=<grantType>``;
* HTTP Basic ``clientId:clientSecret`` (each form-urlencoded first, RFC 6749 §2.3.1) unless
  ``noBasic`` is true, then ``<clientIdName|client_id>`` / ``<clientSecretName|client_secret>``
  in the body;
* ``scope``, ``audience``, ``resource`` when set, ``<customFieldName>=<customFieldValue>`` when
  both are set, ``username``/``password`` for the ``password`` grant.

It passes when a 2xx JSON reply carries a non-empty ``<accessTokenName|access_token>``. A new
IdP secret can take a while to work (Entra replicates it: tens of seconds, up to minutes),
so rejections and transient failures alike are retried, exponential backoff with full
jitter (a 429's Retry-After honoured), until ``budget_seconds`` is spent; then
:class:`~worker.errors.RehearsalFailed` carries what the IdP answered last: status, OAuth
``error`` and a short, redacted ``error_description`` (never a secret or a token).

The access token received is dropped at once: never returned, logged or stored.
"""

from __future__ import annotations

import base64
import json
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote_plus, urlencode, urlsplit

import httpx
from pydantic import SecretStr

from worker.errors import IdpUnavailable, RehearsalFailed, SecretSourceError
from worker.logging import get_logger
from worker.redox.retry import retry_after_seconds
from worker.secrets.idp_http import (
    build_http_client,
    oauth_error,
    require_https,
    send,
    short,
)

__all__ = ["RehearsalResult", "rehearse"]

log = get_logger(__name__)

FORM = "application/x-www-form-urlencoded"
#: Backoff between attempts: full jitter over initial * 2**n, capped.
BACKOFF_INITIAL = 1.0
BACKOFF_MAX = 15.0
REQUEST_TIMEOUT = 10.0


@dataclass(frozen=True)
class RehearsalResult:
    """A rehearsal that got a token: how many requests it took and how long (no token)."""

    attempts: int
    seconds: float
    status: int


@dataclass(frozen=True)
class _Outcome:
    """One attempt as the IdP answered it (already shortened and redacted)."""

    ok: bool
    status: int | None = None
    error: str | None = None
    description: str | None = None
    retry_after: float | None = None


@dataclass(frozen=True, repr=False)
class _Request:
    url: str
    headers: dict[str, str]
    content: bytes
    token_name: str
    #: Values that must never appear in a message (secret, password, custom field value).
    scrub: tuple[str, ...]


def rehearse(
    fields: Mapping[str, Any],
    secrets: Mapping[str, SecretStr],
    *,
    budget_seconds: float,
    allow_insecure_http: bool,
    http: httpx.Client | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> RehearsalResult:
    """Make Redox's token request with the new credential until a token comes back or
    ``budget_seconds`` is spent (RehearsalFailed); ConfigError for a non-https URL."""
    request = _build(fields, secrets, allow_insecure_http=allow_insecure_http)
    client = http if http is not None else build_http_client(REQUEST_TIMEOUT, None)
    where = _where(request.url)
    started = clock()
    attempts = 0
    try:
        while True:
            attempts += 1
            remaining = budget_seconds - (clock() - started)
            outcome = _attempt(client, request, timeout=min(REQUEST_TIMEOUT, max(remaining, 1.0)))
            elapsed = clock() - started
            if outcome.ok:
                assert outcome.status is not None
                log.info("token rehearsal passed", url=where, attempts=attempts)
                return RehearsalResult(attempts, round(elapsed, 3), outcome.status)
            remaining = budget_seconds - elapsed
            wait = random.uniform(0, min(BACKOFF_MAX, BACKOFF_INITIAL * 2 ** (attempts - 1)))
            if outcome.retry_after is not None:
                wait = max(wait, outcome.retry_after)
            if remaining <= 0 or (outcome.retry_after or 0.0) > remaining:
                raise _failed(where, attempts, elapsed, outcome)
            wait = min(wait, remaining)
            log.info(
                "token rehearsal attempt failed",
                url=where,
                attempt=attempts,
                status=outcome.status,
                error=outcome.error,
                description=outcome.description,
                wait_seconds=round(wait, 3),
            )
            sleep(wait)
    finally:
        if http is None:
            client.close()


def _build(
    fields: Mapping[str, Any], secrets: Mapping[str, SecretStr], *, allow_insecure_http: bool
) -> _Request:
    """The request Redox would send for this credential (redox-api.md §8)."""

    def text(name: str) -> str | None:
        value = secrets.get(name) or fields.get(name)
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        if value is None or isinstance(value, dict | list):
            return None
        if isinstance(value, bool):
            value = "true" if value else "false"
        return str(value) or None

    url = text("url")
    if url is None:
        raise RehearsalFailed("token rehearsal: the credential has no url")
    require_https(url, setting="the credential's url", allow_insecure_http=allow_insecure_http)
    grant, client_id, secret = text("grantType"), text("clientId"), text("clientSecret")
    if grant is None or client_id is None or secret is None:
        missing = [n for n, v in (("grantType", grant), ("clientId", client_id),
                                  ("clientSecret", secret)) if v is None]  # fmt: skip
        raise RehearsalFailed(f"token rehearsal: the credential has no {', '.join(missing)}")
    content_type = text("contentType") or FORM
    headers = {"Content-Type": content_type}
    body: dict[str, str] = {text("grantTypeName") or "grant_type": grant}
    if (text("noBasic") or "").strip().lower() == "true":
        body[text("clientIdName") or "client_id"] = client_id
        body[text("clientSecretName") or "client_secret"] = secret
    else:
        pair = f"{quote_plus(client_id, safe='')}:{quote_plus(secret, safe='')}"
        headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode("ascii")
    for field, param in (("scopes", "scope"), ("audience", "audience"), ("resource", "resource")):
        if (value := text(field)) is not None:
            body[param] = value
    custom_name, custom_value = text("customFieldName"), text("customFieldValue")
    if custom_name and custom_value:
        body[custom_name] = custom_value
    password = None
    if grant == "password":
        username, password = text("username"), text("password")
        body.update({k: v for k, v in (("username", username), ("password", password)) if v})
    if "json" in content_type.lower():
        content = json.dumps(body).encode()
    else:
        content = urlencode(body).encode()
    scrub = tuple(v for v in (secret, password, custom_value) if v)
    return _Request(url, headers, content, text("accessTokenName") or "access_token", scrub)


def _attempt(client: httpx.Client, request: _Request, *, timeout: float) -> _Outcome:
    """One token request; the token, if any, is only checked for presence."""
    try:
        reply = send(
            client,
            "POST",
            request.url,
            what="token rehearsal",
            headers=request.headers,
            content=request.content,
            timeout=timeout,
        )
    except (IdpUnavailable, SecretSourceError) as exc:
        return _Outcome(ok=False, description=short(exc, scrub=request.scrub))
    data = reply.json()
    if 200 <= reply.status < 300:
        token = data.get(request.token_name) if isinstance(data, dict) else None
        has_token = isinstance(token, str) and bool(token)
        del token, data
        if has_token:
            return _Outcome(ok=True, status=reply.status)
        kind = "JSON" if reply.body.lstrip()[:1] in (b"{", b"[") else "not JSON"
        return _Outcome(
            ok=False, status=reply.status, description=f"reply ({kind}) has no {request.token_name}"
        )
    error, description, _ = oauth_error(data, scrub=request.scrub)
    retry_after = None
    if reply.status == 429:
        retry_after = retry_after_seconds(reply.headers.get("retry-after"))
    return _Outcome(
        ok=False,
        status=reply.status,
        error=error,
        description=description,
        retry_after=retry_after,
    )


def _failed(where: str, attempts: int, elapsed: float, last: _Outcome) -> RehearsalFailed:
    answer = str(last.status) if last.status is not None else "no reply"
    if last.error:
        answer += f" {last.error}"
    if last.description:
        answer += f": {last.description}"
    log.warning(
        "token rehearsal failed",
        url=where,
        attempts=attempts,
        status=last.status,
        error=last.error,
        description=last.description,
    )
    return RehearsalFailed(
        f"the token request rehearsed at {where} got no access token in {attempts} attempt(s), "
        f"{elapsed:.1f}s; the IdP last answered {answer}",
        status=last.status,
        error=last.error,
        description=last.description,
    )


def _where(url: str) -> str:
    """Scheme, host and path of the token URL (no userinfo, no query)."""
    parts = urlsplit(url)
    try:
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        port = ""
    return f"{parts.scheme}://{parts.hostname or ''}{port}{parts.path}"
