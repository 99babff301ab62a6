"""EntraSource against an in-test Entra + Graph (httpx.MockTransport) built from the docs.

The fake follows idp-api.md §B: the v2.0 client-credentials token endpoint (client secret or
certificate assertion), ``GET /applications(appId='…')``, ``addPassword`` (200 with
``secretText``) and ``removePassword`` (204), Graph error bodies ``{"error":{code,message}}``.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import re
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import httpx
import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from pydantic import SecretStr
from structlog.testing import capture_logs

from worker.errors import ConfigError, IdpLimitReached, IdpRejected, IdpUnavailable
from worker.secrets.base import IssueRequest, RevokeRequest
from worker.secrets.entra import EntraSource
from worker.secrets.idp_http import IdpRetry

TENANT = "tenant-1"
ROTATOR = "11111111-rotator"
ROTATOR_SECRET = "rotator~secret.value_123"
APP = "22222222-2222-2222-2222-222222222222"
GRAPH = "https://graph.microsoft.com/v1.0"
TOKEN_URL = f"https://login.microsoftonline.com/{TENANT}/oauth2/v2.0/token"
APP_PATH = f"/v1.0/applications(appId='{APP}')"
ISSUE = IssueRequest("d-1", "r-1", "e-1", "OAuth_2.0_2-legged", client_id=APP)

Reply = httpx.Response | Callable[[httpx.Request], httpx.Response]


def graph_error(status: int, code: str, message: str, **extra: Any) -> httpx.Response:
    body = {"error": {"code": code, "message": message, "innerError": {"request-id": "x"}}}
    body["error"].update(extra)
    return httpx.Response(status, json=body)


class FakeEntra:
    """Token endpoint and the Graph application calls for one tenant."""

    def __init__(self, *passwords: tuple[str, str]) -> None:
        self.passwords = [
            {"keyId": key, "startDateTime": start, "displayName": f"p-{key}", "secretText": None}
            for key, start in passwords
        ]
        self.requests: list[httpx.Request] = []
        self.token_forms: list[dict[str, str]] = []
        self.faults: list[tuple[str, str, Reply]] = []
        self.issued_tokens = 0
        self.valid_token: str | None = None

    def fault(self, method: str, pattern: str, reply: Reply, times: int = 1) -> None:
        self.faults += [(method, pattern, reply)] * times

    def graph_calls(self) -> list[httpx.Request]:
        return [r for r in self.requests if r.url.host == "graph.microsoft.com"]

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.url.path.endswith("/oauth2/v2.0/token"):
            self.token_forms.append(dict(parse_qsl(request.content.decode())))
        for index, (method, pattern, reply) in enumerate(self.faults):
            if request.method == method and re.search(pattern, request.url.path):
                del self.faults[index]
                return reply(request) if callable(reply) else reply
        if request.url.path == f"/{TENANT}/oauth2/v2.0/token":
            self.issued_tokens += 1
            self.valid_token = f"graph-token-{self.issued_tokens}"
            return httpx.Response(
                200,
                json={"token_type": "Bearer", "expires_in": 3599, "access_token": self.valid_token},
            )
        if request.headers.get("authorization") != f"Bearer {self.valid_token}":
            return graph_error(401, "InvalidAuthenticationToken", "Access token is invalid.")
        path = request.url.path
        if request.method == "GET" and path == APP_PATH:
            return httpx.Response(
                200, json={"id": "obj-1", "appId": APP, "passwordCredentials": self.passwords}
            )
        if request.method == "POST" and path == f"{APP_PATH}/addPassword":
            new = {
                "keyId": f"key-new-{len(self.passwords)}",
                "startDateTime": "2026-06-01T00:00:00Z",
                "displayName": json.loads(request.content)["passwordCredential"]["displayName"],
                "hint": "new",
                "secretText": "NEW~secret~text~value",
            }
            self.passwords.append({**new, "secretText": None})
            return httpx.Response(200, json=new)
        if request.method == "POST" and path == f"{APP_PATH}/removePassword":
            key = json.loads(request.content)["keyId"]
            if not any(p["keyId"] == key for p in self.passwords):
                return graph_error(400, "Request_BadRequest", "No password with this keyId.")
            self.passwords = [p for p in self.passwords if p["keyId"] != key]
            return httpx.Response(204)
        return graph_error(404, "Request_ResourceNotFound", "Resource does not exist.")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make(
    fake: FakeEntra, *, retry: IdpRetry | None = None, clock: Clock | None = None, **kwargs: Any
) -> tuple[EntraSource, list[float]]:
    sleeps: list[float] = []
    options: dict[str, Any] = {"client_secret": SecretStr(ROTATOR_SECRET)}
    options.update(kwargs)
    source = EntraSource(
        TENANT,
        ROTATOR,
        transport=httpx.MockTransport(fake),
        retry=retry or IdpRetry(max_attempts=3, max_seconds=20, backoff_initial=0.01),
        sleep=sleeps.append,
        clock=clock or Clock(),
        **options,
    )
    return source, sleeps


def revoke_request(secret_id: str | None, keep: tuple[str, ...] = ()) -> RevokeRequest:
    return RevokeRequest("d-1", "r-1", "e-1", "OAuth_2.0_2-legged", "c-1", APP, secret_id, keep)


# -- token -------------------------------------------------------------------------------


def test_token_request_with_a_client_secret_sends_the_documented_form() -> None:
    fake = FakeEntra()
    source, _ = make(fake)
    source.existing(APP)
    token_request = fake.requests[0]
    assert (token_request.method, str(token_request.url)) == ("POST", TOKEN_URL)
    assert token_request.headers["content-type"] == "application/x-www-form-urlencoded"
    assert fake.token_forms == [
        {
            "client_id": ROTATOR,
            "client_secret": ROTATOR_SECRET,
            "grant_type": "client_credentials",
            "scope": "https://graph.microsoft.com/.default",
        }
    ]


def test_graph_token_is_cached_until_shortly_before_expiry() -> None:
    fake = FakeEntra()
    clock = Clock()
    source, _ = make(fake, clock=clock)
    source.existing(APP)
    source.existing(APP)
    assert fake.issued_tokens == 1
    clock.now += 3599 - 300 - 1
    source.existing(APP)
    assert fake.issued_tokens == 1
    clock.now += 2
    source.existing(APP)
    assert fake.issued_tokens == 2
    assert fake.graph_calls()[-1].headers["authorization"] == "Bearer graph-token-2"


def test_concurrent_calls_share_one_token_request() -> None:
    fake = FakeEntra()
    started = threading.Event()

    def slow_token(request: httpx.Request) -> httpx.Response:
        started.wait(timeout=2)
        fake.issued_tokens += 1
        fake.valid_token = "graph-token-shared"
        return httpx.Response(200, json={"access_token": fake.valid_token, "expires_in": 3599})

    fake.fault("POST", r"/token$", slow_token)
    source, _ = make(fake)
    with ThreadPoolExecutor(max_workers=6) as pool:
        futures = [pool.submit(source.existing, APP) for _ in range(6)]
        started.set()
        assert [f.result(timeout=10) for f in futures] == [[]] * 6
    assert fake.issued_tokens == 1 and len(fake.token_forms) == 1


def test_a_graph_401_drops_the_token_and_retries_once() -> None:
    fake = FakeEntra(("k1", "2025-01-01T00:00:00Z"))
    source, _ = make(fake)
    source.existing(APP)
    fake.valid_token = "rotated-by-entra"  # the cached token stops working
    fake.fault("POST", r"/token$", lambda r: httpx.Response(
        200, json={"access_token": "rotated-by-entra", "expires_in": 3599}))  # fmt: skip
    assert [p.id for p in source.existing(APP)] == ["k1"]
    auth = [r.headers["authorization"] for r in fake.graph_calls()]
    assert auth == ["Bearer graph-token-1", "Bearer graph-token-1", "Bearer rotated-by-entra"]


def test_a_second_graph_401_is_rejected() -> None:
    fake = FakeEntra()
    unauthorized = graph_error(401, "InvalidAuthenticationToken", "Access token is invalid.")
    fake.fault("GET", r"applications", unauthorized, times=2)
    source, sleeps = make(fake)
    with pytest.raises(IdpRejected) as caught:
        source.existing(APP)
    assert (caught.value.status, caught.value.code) == (401, "InvalidAuthenticationToken")
    assert fake.issued_tokens == 2 and sleeps == []


def test_token_endpoint_refusal_keeps_the_aadsts_sentence_only() -> None:
    fake = FakeEntra()
    description = (
        "AADSTS7000215: Invalid client secret provided. Ensure the secret being sent in the "
        "request is the client secret value, not the client secret ID, for a secret added to "
        f"app '{ROTATOR}'.\r\nTrace ID: 0000aaaa-11bb\r\nCorrelation ID: aaaa0000-bb11\r\n"
        "Timestamp: 2026-06-01 00:00:00Z"
    )
    body = {
        "error": "invalid_client",
        "error_description": description,
        "error_codes": [7000215],
        "trace_id": "0000aaaa-11bb",
        "correlation_id": "aaaa0000-bb11",
    }
    fake.fault("POST", r"/token$", httpx.Response(401, json=body))
    source, _ = make(fake)
    with pytest.raises(IdpRejected) as caught:
        source.existing(APP)
    message = str(caught.value)
    assert (caught.value.status, caught.value.code) == (401, "AADSTS7000215")
    assert (
        "invalid_client" in message and "AADSTS7000215: Invalid client secret provided." in message
    )
    assert "Trace ID" not in message and "aaaa0000" not in message
    assert ROTATOR_SECRET not in message


def test_token_endpoint_5xx_is_retried() -> None:
    fake = FakeEntra()
    fake.fault("POST", r"/token$", httpx.Response(503))
    source, sleeps = make(fake)
    assert source.existing(APP) == []
    assert fake.issued_tokens == 1 and len(sleeps) == 1


# -- certificate assertion ---------------------------------------------------------------


def write_certificate(
    tmp_path: Path, filename: str = "rotator.pem"
) -> tuple[Path, x509.Certificate, rsa.RSAPrivateKey]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "redox-rotator test")])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    path = tmp_path / filename
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        + certificate.public_bytes(serialization.Encoding.PEM)
    )
    return path, certificate, key


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def test_certificate_assertion_header_and_claims(tmp_path: Path) -> None:
    path, certificate, key = write_certificate(tmp_path)
    fake = FakeEntra()
    source, _ = make(fake, client_secret=None, certificate_path=path)
    source.existing(APP)
    form = fake.token_forms[0]
    assert set(form) == {
        "client_id", "scope", "grant_type", "client_assertion_type", "client_assertion"
    }  # fmt: skip
    assert form["client_assertion_type"] == (
        "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
    )
    assertion = form["client_assertion"]
    header = jwt.get_unverified_header(assertion)
    der = certificate.public_bytes(serialization.Encoding.DER)
    assert header["alg"] == "RS256" and header["typ"] == "JWT"
    assert header["x5t#S256"] == b64url(certificate.fingerprint(hashes.SHA256()))
    assert header["x5t"] == b64url(certificate.fingerprint(hashes.SHA1()))
    assert len(der) > 0
    claims = jwt.decode(assertion, key.public_key(), algorithms=["RS256"], audience=TOKEN_URL)
    assert claims["iss"] == claims["sub"] == ROTATOR
    assert claims["jti"]
    assert claims["nbf"] <= claims["iat"] < claims["exp"] <= claims["iat"] + 600
    # A fresh assertion (new jti) for every token request.
    source._invalidate("graph-token-1")
    source.existing(APP)
    second = jwt.decode(
        fake.token_forms[1]["client_assertion"], key.public_key(), algorithms=["RS256"],
        audience=TOKEN_URL,
    )  # fmt: skip
    assert second["jti"] != claims["jti"]


def test_certificate_file_problems_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="CERTIFICATE_PATH: cannot read"):
        EntraSource(TENANT, ROTATOR, certificate_path=tmp_path / "missing.pem")
    first, _, _ = write_certificate(tmp_path, "first.pem")
    second, _, _ = write_certificate(tmp_path, "second.pem")
    marker = b"-----BEGIN CERTIFICATE-----"
    only_key = tmp_path / "key.pem"
    only_key.write_bytes(first.read_bytes().split(marker)[0])
    with pytest.raises(ConfigError, match="ROTATOR_SECRET_SOURCE__ENTRA__CERTIFICATE_PATH"):
        EntraSource(TENANT, ROTATOR, certificate_path=only_key)
    mismatched = tmp_path / "mismatched.pem"
    mismatched.write_bytes(only_key.read_bytes() + marker + second.read_bytes().split(marker)[1])
    with pytest.raises(ConfigError, match="matches its private key"):
        EntraSource(TENANT, ROTATOR, certificate_path=mismatched)
    EntraSource(TENANT, ROTATOR, certificate_path=first)


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"client_secret": SecretStr("")},
        {"client_secret": SecretStr("s"), "certificate_path": Path("x")},
    ],
    ids=["neither", "empty-secret", "both"],
)
def test_exactly_one_of_secret_and_certificate(options: dict[str, Any]) -> None:
    with pytest.raises(ConfigError) as caught:
        EntraSource(TENANT, ROTATOR, **options)
    assert "ROTATOR_SECRET_SOURCE__ENTRA__CLIENT_SECRET" in str(caught.value)
    assert "ROTATOR_SECRET_SOURCE__ENTRA__CERTIFICATE_PATH" in str(caught.value)


@pytest.mark.parametrize("setting", ["graph_url", "login_url"])
def test_http_urls_need_permission(setting: str) -> None:
    url = "http://127.0.0.1:8085/idp/entra"
    with pytest.raises(ConfigError) as caught:
        EntraSource(TENANT, ROTATOR, client_secret=SecretStr("s"), **{setting: url})  # type: ignore[arg-type]
    assert f"ROTATOR_SECRET_SOURCE__ENTRA__{setting.upper()}" in str(caught.value)
    assert "ROTATOR_ALLOW_INSECURE_HTTP" in str(caught.value)
    EntraSource(
        TENANT,
        ROTATOR,
        client_secret=SecretStr("s"),
        allow_insecure_http=True,
        **{setting: url},  # type: ignore[arg-type]
    )


# -- list, issue -------------------------------------------------------------------------


def test_existing_requests_the_selected_fields_with_the_graph_token() -> None:
    fake = FakeEntra(("k1", "2025-01-01T00:00:00.1234567Z"))
    source, _ = make(fake)
    listed = source.existing(APP)
    assert [(p.id, p.status, p.created, p.display_name) for p in listed] == [
        ("k1", "active", "2025-01-01T00:00:00.1234567Z", "p-k1")
    ]
    request = fake.graph_calls()[0]
    assert (
        str(request.url)
        == f"{GRAPH}/applications(appId='{APP}')?$select=id,appId,passwordCredentials"
    )
    assert request.headers["authorization"] == "Bearer graph-token-1"


def test_issue_adds_a_password_with_documented_fields_only() -> None:
    fake = FakeEntra(("k1", "2025-01-01T00:00:00Z"))
    source, _ = make(fake)
    issued = source.issue(ISSUE)
    assert issued.secret_id == "key-new-1"
    assert issued.values["clientSecret"].get_secret_value() == "NEW~secret~text~value"
    assert "NEW~secret" not in repr(issued)
    post = fake.graph_calls()[-1]
    assert (post.method, post.url.path) == ("POST", f"{APP_PATH}/addPassword")
    assert post.headers["content-type"] == "application/json"
    assert json.loads(post.content) == {"passwordCredential": {"displayName": "redox-rotator r-1"}}


def test_too_many_passwords_is_limit_reached_and_not_retried() -> None:
    fake = FakeEntra()
    fake.fault("POST", r"/addPassword$", graph_error(
        400, "TooManyAppPasswords", "Not allowed to add 3 passwords.",
        details=[{"target": "passwordCredentials", "code": "TooManyAppPasswords"}],
    ))  # fmt: skip
    source, _ = make(fake)
    with pytest.raises(IdpLimitReached) as caught:
        source.issue(ISSUE)
    assert caught.value.code == "TooManyAppPasswords"
    assert "rotator retire" in str(caught.value)
    assert len([r for r in fake.graph_calls() if r.method == "POST"]) == 1


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (403, "Authorization_RequestDenied"),
        (404, "Request_ResourceNotFound"),
        (400, "Request_BadRequest"),
    ],
)
def test_graph_refusals_are_rejected_with_the_graph_code(status: int, code: str) -> None:
    fake = FakeEntra()
    fake.fault("GET", r"applications", graph_error(status, code, "Insufficient privileges."))
    source, sleeps = make(fake)
    with pytest.raises(IdpRejected) as caught:
        source.existing(APP)
    assert (caught.value.status, caught.value.code) == (status, code)
    assert code in str(caught.value) and sleeps == []
    if status == 403:
        assert "Application.ReadWrite.OwnedBy" in str(caught.value)


def test_throttling_carries_retry_after_and_is_honoured() -> None:
    fake = FakeEntra()
    throttled = graph_error(429, "TooManyRequests", "Too many requests.")
    throttled.headers["Retry-After"] = "12"
    fake.fault("GET", r"applications", throttled)
    source, _ = make(fake, retry=IdpRetry(max_attempts=1))
    with pytest.raises(IdpUnavailable) as caught:
        source.existing(APP)
    assert (caught.value.status, caught.value.retry_after) == (429, 12.0)
    fake.fault("GET", r"applications", throttled)
    source, sleeps = make(fake)
    assert source.existing(APP) == []
    assert sleeps == [12.0]


def test_5xx_is_retried_then_unavailable_and_add_password_is_not_retried() -> None:
    fake = FakeEntra()
    fake.fault("GET", r"applications", httpx.Response(503), times=5)
    source, sleeps = make(fake)
    with pytest.raises(IdpUnavailable) as caught:
        source.existing(APP)
    assert caught.value.status == 503
    assert len(fake.graph_calls()) == 3 and len(sleeps) == 2
    fake.faults.clear()
    fake.fault("POST", r"/addPassword$", httpx.Response(502))
    with pytest.raises(IdpUnavailable):
        source.issue(ISSUE)
    assert len([r for r in fake.graph_calls() if r.url.path.endswith("/addPassword")]) == 1


# -- revoke ------------------------------------------------------------------------------


def test_revoke_removes_the_issued_password() -> None:
    fake = FakeEntra(("k-old", "2025-01-01T00:00:00Z"), ("k-new", "2026-01-01T00:00:00Z"))
    source, _ = make(fake)
    assert source.revoke(revoke_request("k-old", keep=("k-new",))) == ["k-old"]
    post = fake.graph_calls()[-1]
    assert (post.method, post.url.path) == ("POST", f"{APP_PATH}/removePassword")
    assert json.loads(post.content) == {"keyId": "k-old"}
    assert [p["keyId"] for p in fake.passwords] == ["k-new"]


@pytest.mark.parametrize("status", [400, 404])
def test_revoke_of_an_unknown_key_is_success(status: int) -> None:
    fake = FakeEntra(("k-new", "2026-01-01T00:00:00Z"))
    fake.fault("POST", r"/removePassword$", graph_error(status, "Request_BadRequest", "no key"))
    source, _ = make(fake)
    assert source.revoke(revoke_request("k-gone")) == ["k-gone"]


def test_a_refused_remove_of_a_listed_key_is_rejected() -> None:
    fake = FakeEntra(("k-old", "2025-01-01T00:00:00Z"))
    fake.fault("POST", r"/removePassword$", graph_error(400, "Request_BadRequest", "policy"))
    source, _ = make(fake)
    with pytest.raises(IdpRejected, match="policy"):
        source.revoke(revoke_request("k-old"))
    assert [p["keyId"] for p in fake.passwords] == ["k-old"]


def test_a_kept_password_is_never_removed() -> None:
    fake = FakeEntra(("k1", "2025-01-01T00:00:00Z"))
    source, _ = make(fake)
    assert source.revoke(revoke_request("k1", keep=("k1",))) == []
    assert fake.requests == []


def test_preexisting_passwords_stay_unless_revoke_preexisting() -> None:
    fake = FakeEntra(("k-pre", "2024-01-01T00:00:00Z"), ("k-new", "2026-01-01T00:00:00Z"))
    source, _ = make(fake)
    with capture_logs() as logs:
        assert source.revoke(revoke_request(None, keep=("k-new",))) == []
    assert fake.requests == []
    assert any("revoke_preexisting is off" in entry["event"] for entry in logs)


def test_revoke_preexisting_removes_only_passwords_older_than_the_oldest_kept() -> None:
    fake = FakeEntra(
        ("k-pre", "2024-01-01T00:00:00Z"),
        ("k-keep-a", "2025-06-01T00:00:00.1234567Z"),
        ("k-other", "2025-09-01T00:00:00Z"),  # newer than a kept one: maybe another client's
        ("k-keep-b", "2026-01-01T00:00:00Z"),
        ("k-undated", "not a date"),
    )
    source, _ = make(fake, revoke_preexisting=True)
    assert source.revoke(revoke_request(None, keep=("k-keep-a", "k-keep-b"))) == ["k-pre"]
    assert [p["keyId"] for p in fake.passwords] == ["k-keep-a", "k-other", "k-keep-b", "k-undated"]


def test_revoke_preexisting_without_a_kept_password_removes_nothing() -> None:
    fake = FakeEntra(("k-pre", "2024-01-01T00:00:00Z"))
    source, _ = make(fake, revoke_preexisting=True)
    assert source.revoke(revoke_request(None, keep=("k-missing",))) == []
    assert [r.method for r in fake.graph_calls()] == ["GET"]


def test_no_token_or_secret_in_logs_or_errors() -> None:
    fake = FakeEntra(("k-old", "2025-01-01T00:00:00Z"))
    echo = f"echo Bearer graph-token-1 {ROTATOR_SECRET}"
    fake.fault("GET", r"applications", graph_error(403, "Authorization_RequestDenied", echo))
    source, _ = make(fake)
    with capture_logs() as logs:
        with pytest.raises(IdpRejected) as caught:
            source.existing(APP)
        issued = source.issue(ISSUE)
        source.revoke(revoke_request("k-old", keep=(issued.secret_id or "",)))
    text = repr(logs) + str(caught.value)
    assert logs
    for value in ("graph-token-1", ROTATOR_SECRET, "NEW~secret~text~value"):
        assert value not in text
