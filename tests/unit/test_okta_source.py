"""OktaSource against an in-test Okta (httpx.MockTransport) built from the vendor docs.

The fake follows idp-api.md §A (Okta Management OpenAPI): list/create/get/deactivate/delete
of an app's client secrets, at most two secret objects, DELETE only when INACTIVE, E-code
error bodies and X-Rate-Limit-* headers. Faults are injected per request.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from email.utils import formatdate
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from structlog.testing import capture_logs

from worker.errors import (
    ConfigError,
    IdpLimitReached,
    IdpRejected,
    IdpUnavailable,
    SecretSourceError,
)
from worker.secrets.base import IssueRequest, RevokeRequest
from worker.secrets.idp_http import IdpRetry
from worker.secrets.okta import OktaSource

ORG = "https://example.okta.com"
TOKEN = "00aSSWS-api-token-value-XYZ"
APP = "0oa1appid"
NOW = 1_800_000_000.0
ISSUE = IssueRequest("d-1", "r-1", "e-1", "OAuth_2.0_2-legged", client_id=APP)

Reply = httpx.Response | Callable[[httpx.Request], httpx.Response]


def okta_error(status: int, code: str, summary: str, *causes: str) -> httpx.Response:
    body = {
        "errorCode": code,
        "errorSummary": summary,
        "errorLink": code,
        "errorId": "oaeXYZ",
        "errorCauses": [{"errorSummary": cause} for cause in causes],
    }
    return httpx.Response(status, json=body)


LIMIT_400 = okta_error(
    400,
    "E0000001",
    "Api validation failed: OAuth2ClientSecretMediated",
    "You've reached the maximum number of client secrets per client.",
)


class FakeOkta:
    """Okta's client-secret API for one org; ``faults`` answer matching requests first."""

    def __init__(self, *secrets: tuple[str, str], prefix: str = "") -> None:
        self.prefix = prefix
        self.secrets: dict[str, dict[str, str]] = {
            sid: {"id": sid, "status": status, "created": f"2026-01-0{n + 1}T00:00:00.000Z"}
            for n, (sid, status) in enumerate(secrets)
        }
        self.requests: list[httpx.Request] = []
        self.faults: list[tuple[str, str, Reply]] = []
        self.counter = 0
        self.rate_headers = {
            "X-Rate-Limit-Limit": "100",
            "X-Rate-Limit-Remaining": "99",
            "X-Rate-Limit-Reset": str(int(NOW) + 60),
        }

    def fault(self, method: str, pattern: str, reply: Reply, times: int = 1) -> None:
        self.faults += [(method, pattern, reply)] * times

    def calls(self, method: str | None = None) -> list[tuple[str, str]]:
        return [
            (r.method, r.url.path) for r in self.requests if method is None or r.method == method
        ]

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        for index, (method, pattern, reply) in enumerate(self.faults):
            if request.method == method and re.search(pattern, request.url.path):
                del self.faults[index]
                return reply(request) if callable(reply) else reply
        response = self.route(request)
        response.headers.update(self.rate_headers)
        return response

    def route(self, request: httpx.Request) -> httpx.Response:
        match = re.fullmatch(
            r"/api/v1/apps/([^/]+)/credentials/secrets(?:/([^/]+))?(/lifecycle/\w+)?",
            request.url.path.removeprefix(self.prefix),
        )
        if match is None or match.group(1) != APP:
            return okta_error(404, "E0000007", "Not found: Resource not found: app")
        sid, action = match.group(2), match.group(3)
        if sid is None and request.method == "GET":
            return httpx.Response(200, json=[self.public(s) for s in self.secrets.values()])
        if sid is None and request.method == "POST":
            if len(self.secrets) >= 2:
                return LIMIT_400
            self.counter += 1
            new = {"id": f"ocsNEW{self.counter}", "status": "ACTIVE", "created": "2026-06-01"}
            self.secrets[new["id"]] = new
            return httpx.Response(201, json={**new, "client_secret": f"PLAIN-{self.counter}"})
        secret = self.secrets.get(sid or "")
        if secret is None:
            return okta_error(404, "E0000007", f"Not found: Resource not found: {sid}")
        if action == "/lifecycle/deactivate":
            active = [s for s in self.secrets.values() if s["status"] == "ACTIVE"]
            if secret["status"] == "ACTIVE" and len(active) == 1:
                return okta_error(
                    400, "E0000001", "Api validation failed",
                    "You can't deactivate the only active client secret.",
                )  # fmt: skip
            secret["status"] = "INACTIVE"
            return httpx.Response(200, json=self.public(secret))
        if request.method == "DELETE":
            if secret["status"] == "ACTIVE":
                return okta_error(400, "E0000001", "Api validation failed", "can't delete active")
            del self.secrets[secret["id"]]
            return httpx.Response(204)
        return httpx.Response(200, json=self.public(secret))

    @staticmethod
    def public(secret: dict[str, str]) -> dict[str, Any]:
        return {**secret, "client_secret": "DRUFXGF9XbLn......a3x3P", "secret_hash": "h"}


def make(
    fake: FakeOkta, *, retry: IdpRetry | None = None, **kwargs: Any
) -> tuple[OktaSource, list[float]]:
    sleeps: list[float] = []
    source = OktaSource(
        ORG,
        SecretStr(TOKEN),
        transport=httpx.MockTransport(fake),
        retry=retry or IdpRetry(max_attempts=3, max_seconds=20, backoff_initial=0.01),
        sleep=sleeps.append,
        wall_clock=lambda: NOW,
        **kwargs,
    )
    return source, sleeps


def revoke_request(secret_id: str | None, keep: tuple[str, ...] = ()) -> RevokeRequest:
    return RevokeRequest("d-1", "r-1", "e-1", "OAuth_2.0_2-legged", "c-1", APP, secret_id, keep)


# -- list and issue ----------------------------------------------------------------------


def test_existing_lists_ids_and_status_with_the_documented_headers() -> None:
    fake = FakeOkta(("ocsA", "ACTIVE"), ("ocsB", "INACTIVE"))
    source, _ = make(fake)
    listed = source.existing(APP)
    assert [(s.id, s.status, s.created) for s in listed] == [
        ("ocsA", "active", "2026-01-01T00:00:00.000Z"),
        ("ocsB", "inactive", "2026-01-02T00:00:00.000Z"),
    ]
    request = fake.requests[0]
    assert (request.method, str(request.url)) == (
        "GET",
        f"{ORG}/api/v1/apps/{APP}/credentials/secrets",
    )
    assert request.headers["authorization"] == f"SSWS {TOKEN}"
    assert request.headers["accept"] == "application/json"
    assert request.headers["content-type"] == "application/json"
    assert "cookie" not in request.headers
    assert "DRUFXGF9" not in repr(listed)


def test_issue_posts_an_empty_object_and_takes_the_plaintext_from_the_create_reply() -> None:
    fake = FakeOkta(("ocsOLD", "ACTIVE"))
    source, _ = make(fake)
    issued = source.issue(ISSUE)
    assert issued.secret_id == "ocsNEW1"
    assert issued.values["clientSecret"].get_secret_value() == "PLAIN-1"
    assert "PLAIN-1" not in repr(issued)
    post = fake.requests[-1]
    assert (post.method, post.url.path) == ("POST", f"/api/v1/apps/{APP}/credentials/secrets")
    assert json.loads(post.content) == {}
    assert post.headers["content-type"] == "application/json"
    assert fake.calls() == [("GET", post.url.path), ("POST", post.url.path)]


def test_issue_refuses_a_third_secret_without_posting() -> None:
    fake = FakeOkta(("ocsA", "ACTIVE"), ("ocsB", "INACTIVE"))
    source, _ = make(fake)
    with pytest.raises(IdpLimitReached) as caught:
        source.issue(ISSUE)
    message = str(caught.value)
    assert "ocsA (active)" in message and "ocsB (inactive)" in message
    assert "grace period" in message and "rotator retire" in message
    assert "\n" not in message
    assert fake.calls("POST") == []


def test_limit_answered_by_okta_on_create_is_limit_reached() -> None:
    fake = FakeOkta(("ocsA", "ACTIVE"))
    fake.fault("POST", r"/secrets$", LIMIT_400)
    source, _ = make(fake)
    with pytest.raises(IdpLimitReached) as caught:
        source.issue(ISSUE)
    assert (caught.value.status, caught.value.code) == (400, "E0000001")
    assert "maximum number of client secrets" in str(caught.value)


@pytest.mark.parametrize(
    "reply",
    [httpx.Response(503), httpx.ReadTimeout("lost"), httpx.RemoteProtocolError("dropped")],
    ids=["503", "timeout", "dropped"],
)
def test_a_create_whose_reply_is_lost_is_not_retried(reply: Any) -> None:
    fake = FakeOkta(("ocsA", "ACTIVE"))

    def lost(request: httpx.Request) -> httpx.Response:
        if isinstance(reply, Exception):
            raise reply
        assert isinstance(reply, httpx.Response)
        return reply

    fake.fault("POST", r"/secrets$", lost)
    source, sleeps = make(fake)
    with pytest.raises(IdpUnavailable):
        source.issue(ISSUE)
    assert len(fake.calls("POST")) == 1
    assert sleeps == []


def test_a_create_answered_429_is_retried_after_the_reset() -> None:
    fake = FakeOkta(("ocsA", "ACTIVE"))
    limited = okta_error(429, "E0000047", "API call exceeded rate limit due to too many requests.")
    limited.headers.update({"X-Rate-Limit-Remaining": "0", "X-Rate-Limit-Reset": str(int(NOW) + 4)})
    fake.fault("POST", r"/secrets$", limited)
    source, sleeps = make(fake)
    assert source.issue(ISSUE).secret_id == "ocsNEW1"
    assert len(fake.calls("POST")) == 2
    assert 4.0 in sleeps


# -- error mapping -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "code"), [(401, "E0000011"), (403, "E0000006"), (404, "E0000007")]
)
def test_refusals_are_idp_rejected_with_okta_code(status: int, code: str) -> None:
    fake = FakeOkta()
    fake.fault("GET", r"/secrets$", okta_error(status, code, f"refused with SSWS {TOKEN}"))
    source, sleeps = make(fake)
    with pytest.raises(IdpRejected) as caught:
        source.existing(APP)
    assert not isinstance(caught.value, IdpLimitReached)
    assert (caught.value.status, caught.value.code) == (status, code)
    assert code in str(caught.value)
    assert TOKEN not in str(caught.value)
    assert len(fake.requests) == 1 and sleeps == []


def test_429_retry_after_comes_from_the_rate_limit_reset() -> None:
    fake = FakeOkta()
    okta_now = NOW - 1000  # Okta's clock (its Date header) is what the reset is measured on
    limited = okta_error(429, "E0000047", "API call exceeded rate limit due to too many requests.")
    limited.headers.update(
        {"X-Rate-Limit-Reset": str(int(okta_now) + 7), "Date": formatdate(okta_now, usegmt=True)}
    )
    fake.fault("GET", r"/secrets$", limited)
    source, _ = make(fake, retry=IdpRetry(max_attempts=1))
    with pytest.raises(IdpUnavailable) as caught:
        source.existing(APP)
    assert caught.value.status == 429
    assert caught.value.retry_after == pytest.approx(7.0)
    assert "E0000047" in str(caught.value)


def test_429_without_reset_uses_retry_after() -> None:
    fake = FakeOkta()
    limited = okta_error(429, "E0000047", "API call exceeded rate limit")
    limited.headers["Retry-After"] = "3"
    fake.fault("GET", r"/secrets$", limited)
    source, _ = make(fake, retry=IdpRetry(max_attempts=1))
    with pytest.raises(IdpUnavailable) as caught:
        source.existing(APP)
    assert caught.value.retry_after == pytest.approx(3.0)


def test_5xx_is_retried_with_backoff_then_unavailable() -> None:
    fake = FakeOkta()
    fake.fault("GET", r"/secrets$", httpx.Response(503), times=5)
    source, sleeps = make(fake)
    with pytest.raises(IdpUnavailable) as caught:
        source.existing(APP)
    assert caught.value.status == 503
    assert len(fake.requests) == 3
    assert len(sleeps) == 2 and all(0 <= s <= 4.0 for s in sleeps)


def test_5xx_then_success() -> None:
    fake = FakeOkta(("ocsA", "ACTIVE"))
    fake.fault("GET", r"/secrets$", httpx.Response(502))
    source, sleeps = make(fake)
    assert [s.id for s in source.existing(APP)] == ["ocsA"]
    assert len(sleeps) == 1


def test_no_remaining_calls_waits_for_the_reset_before_the_next_call() -> None:
    fake = FakeOkta(("ocsA", "ACTIVE"))
    fake.rate_headers.update(
        {"X-Rate-Limit-Remaining": "0", "X-Rate-Limit-Reset": str(int(NOW) + 2)}
    )
    source, sleeps = make(fake)
    source.existing(APP)
    assert sleeps == []
    source.existing(APP)
    assert sleeps == [pytest.approx(2.0)]


def test_a_reset_too_far_away_raises_instead_of_waiting() -> None:
    fake = FakeOkta(("ocsA", "ACTIVE"))
    fake.rate_headers.update(
        {"X-Rate-Limit-Remaining": "0", "X-Rate-Limit-Reset": str(int(NOW) + 100)}
    )
    source, sleeps = make(fake)
    source.existing(APP)
    with pytest.raises(IdpUnavailable) as caught:
        source.existing(APP)
    assert caught.value.retry_after == pytest.approx(100.0)
    assert len(fake.requests) == 1 and sleeps == []


def test_garbage_list_is_a_source_error() -> None:
    fake = FakeOkta()
    fake.fault("GET", r"/secrets$", httpx.Response(200, json={"not": "a list"}))
    source, _ = make(fake)
    with pytest.raises(SecretSourceError, match="not a list"):
        source.existing(APP)


# -- revoke ------------------------------------------------------------------------------


def test_revoke_deactivates_then_deletes_the_issued_secret() -> None:
    fake = FakeOkta(("ocsOLD", "ACTIVE"), ("ocsNEW", "ACTIVE"))
    source, _ = make(fake)
    assert source.revoke(revoke_request("ocsOLD", keep=("ocsNEW",))) == ["ocsOLD"]
    base = f"/api/v1/apps/{APP}/credentials/secrets/ocsOLD"
    assert fake.calls() == [
        ("GET", base),
        ("POST", f"{base}/lifecycle/deactivate"),
        ("DELETE", base),
    ]
    assert list(fake.secrets) == ["ocsNEW"]
    assert all(r.headers["authorization"] == f"SSWS {TOKEN}" for r in fake.requests)


def test_revoke_of_an_inactive_secret_just_deletes_it() -> None:
    fake = FakeOkta(("ocsOLD", "INACTIVE"), ("ocsNEW", "ACTIVE"))
    source, _ = make(fake)
    assert source.revoke(revoke_request("ocsOLD")) == ["ocsOLD"]
    assert [m for m, _ in fake.calls()] == ["GET", "DELETE"]


def test_revoke_of_a_gone_secret_is_success() -> None:
    fake = FakeOkta(("ocsNEW", "ACTIVE"))
    source, _ = make(fake)
    assert source.revoke(revoke_request("ocsGONE")) == ["ocsGONE"]
    assert [m for m, _ in fake.calls()] == ["GET"]


def test_delete_answered_404_is_success() -> None:
    fake = FakeOkta(("ocsOLD", "INACTIVE"), ("ocsNEW", "ACTIVE"))
    fake.fault("DELETE", r"/ocsOLD$", okta_error(404, "E0000007", "Not found"))
    source, _ = make(fake)
    assert source.revoke(revoke_request("ocsOLD")) == ["ocsOLD"]


def test_a_deactivate_whose_reply_was_lost_is_retried_and_the_secret_deleted() -> None:
    fake = FakeOkta(("ocsOLD", "ACTIVE"), ("ocsNEW", "ACTIVE"))

    def applied_then_lost(request: httpx.Request) -> httpx.Response:
        fake.secrets["ocsOLD"]["status"] = "INACTIVE"
        return httpx.Response(504)

    fake.fault("POST", r"/deactivate$", applied_then_lost)
    # Assumed: deactivating an INACTIVE secret is refused with a 400.
    fake.fault("POST", r"/deactivate$", okta_error(400, "E0000001", "already inactive"))
    source, _ = make(fake)
    assert source.revoke(revoke_request("ocsOLD")) == ["ocsOLD"]
    assert list(fake.secrets) == ["ocsNEW"]


def test_the_only_active_secret_is_not_deactivated() -> None:
    fake = FakeOkta(("ocsOLD", "ACTIVE"), ("ocsNEW", "INACTIVE"))
    source, _ = make(fake)
    with pytest.raises(IdpRejected, match="only active client secret") as caught:
        source.revoke(revoke_request("ocsOLD"))
    assert caught.value.code == "E0000001"
    assert fake.secrets["ocsOLD"]["status"] == "ACTIVE"
    assert fake.calls("DELETE") == []


def test_a_kept_secret_is_never_revoked() -> None:
    fake = FakeOkta(("ocsA", "ACTIVE"))
    source, _ = make(fake)
    assert source.revoke(revoke_request("ocsA", keep=("ocsA",))) == []
    assert fake.requests == []


def test_preexisting_revoke_takes_the_other_secret_when_a_kept_one_is_active() -> None:
    fake = FakeOkta(("ocsPRE", "ACTIVE"), ("ocsNEW", "ACTIVE"))
    source, _ = make(fake)
    assert source.revoke(revoke_request(None, keep=("ocsNEW",))) == ["ocsPRE"]
    assert list(fake.secrets) == ["ocsNEW"]
    assert fake.secrets["ocsNEW"]["status"] == "ACTIVE"
    touched = {path for method, path in fake.calls() if method != "GET"}
    assert all("ocsNEW" not in path for path in touched)


@pytest.mark.parametrize(
    ("secrets", "keep"),
    [
        ((("ocsPRE", "ACTIVE"), ("ocsNEW", "INACTIVE")), ("ocsNEW",)),
        ((("ocsPRE", "ACTIVE"), ("ocsNEW", "ACTIVE")), ()),
        ((("ocsPRE", "ACTIVE"),), ("ocsMISSING",)),
    ],
    ids=["kept-inactive", "nothing-kept", "kept-not-listed"],
)
def test_preexisting_revoke_does_nothing_without_an_active_kept_secret(
    secrets: tuple[tuple[str, str], ...], keep: tuple[str, ...]
) -> None:
    fake = FakeOkta(*secrets)
    source, _ = make(fake)
    with capture_logs() as logs:
        assert source.revoke(revoke_request(None, keep=keep)) == []
    assert [m for m, _ in fake.calls()] == ["GET"]
    assert any("no kept secret is active" in entry["event"] for entry in logs)


def test_revoke_without_client_id_is_a_source_error() -> None:
    source, _ = make(FakeOkta())
    request = RevokeRequest("d", "r", "e", "OAuth_2.0_2-legged", "c", None, "ocsA")
    with pytest.raises(SecretSourceError, match="no clientId"):
        source.revoke(request)


# -- configuration and secrecy -----------------------------------------------------------


def test_http_org_url_needs_permission() -> None:
    with pytest.raises(ConfigError) as caught:
        OktaSource("http://127.0.0.1:8085/idp/okta", SecretStr(TOKEN))
    assert "ROTATOR_SECRET_SOURCE__OKTA__ORG_URL" in str(caught.value)
    assert "ROTATOR_ALLOW_INSECURE_HTTP" in str(caught.value)
    fake = FakeOkta(("ocsA", "ACTIVE"), prefix="/idp/okta")
    source = OktaSource(
        "http://127.0.0.1:8085/idp/okta/",
        SecretStr(TOKEN),
        allow_insecure_http=True,
        transport=httpx.MockTransport(fake),
    )
    assert [s.id for s in source.existing(APP)] == ["ocsA"]
    assert str(fake.requests[0].url) == (
        "http://127.0.0.1:8085/idp/okta/api/v1/apps/0oa1appid/credentials/secrets"
    )


def test_empty_api_token_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="ROTATOR_SECRET_SOURCE__OKTA__API_TOKEN"):
        OktaSource(ORG, SecretStr(""))


def test_ids_cannot_escape_their_path_segment() -> None:
    fake = FakeOkta()
    source, _ = make(fake)
    source.revoke(revoke_request("../../users/00u1"))
    assert fake.requests[0].url.raw_path.endswith(b"/secrets/..%2F..%2Fusers%2F00u1")


def test_no_token_or_secret_value_in_logs() -> None:
    fake = FakeOkta(("ocsOLD", "ACTIVE"))
    fake.fault("GET", r"/secrets$", httpx.Response(503))
    source, _ = make(fake)
    with capture_logs() as logs:
        issued = source.issue(ISSUE)
        source.revoke(revoke_request("ocsOLD", keep=(issued.secret_id or "",)))
    text = repr(logs)
    assert logs and TOKEN not in text and "PLAIN-1" not in text


def test_secret_shaped_text_in_an_okta_error_is_redacted() -> None:
    fake = FakeOkta()
    summary = "Api validation failed: client_secret=leaked-value-123"
    fake.fault("GET", r"/secrets$", okta_error(400, "E0000001", summary, "password: hunter2"))
    source, _ = make(fake)
    with pytest.raises(IdpRejected) as caught:
        source.existing(APP)
    assert "E0000001" in str(caught.value) and "Api validation failed" in str(caught.value)
    assert "leaked-value-123" not in str(caught.value) and "hunter2" not in str(caught.value)
