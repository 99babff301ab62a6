"""The token rehearsal: Redox's token request (redox-api.md §8), retried within a budget.

An in-test token endpoint (httpx.MockTransport) answers from a script; time is a fake clock
that only moves when the rehearsal sleeps, so nothing really waits.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest
from pydantic import SecretStr
from structlog.testing import capture_logs

from worker.errors import ConfigError, RehearsalFailed
from worker.rehearsal import RehearsalResult, rehearse

URL = "https://idp.example.com/oauth2/default/v1/token"
SECRET = "n3w secret+with/odd:chars~"
TOKEN = "eyJhbGciOiJSUzI1NiJ9.access-token-value.sig"
OK = httpx.Response(200, json={"access_token": TOKEN, "token_type": "Bearer", "expires_in": 3600})
INVALID_CLIENT = httpx.Response(
    401,
    json={
        "error": "invalid_client",
        "error_description": "AADSTS7000215: Invalid client secret provided. Ensure the secret "
        "being sent in the request is the client secret value.\r\nTrace ID: 1234-abcd\r\n"
        "Correlation ID: 5678-efgh\r\nTimestamp: 2026-06-01 00:00:00Z",
        "error_codes": [7000215],
        "trace_id": "1234-abcd",
    },
)

Script = httpx.Response | Exception | Callable[[httpx.Request], httpx.Response]


class TokenEndpoint:
    """Answers with ``script`` in turn (the last entry repeats); records every request."""

    def __init__(self, *script: Script) -> None:
        self.script = list(script)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        step = self.script.pop(0) if len(self.script) > 1 else self.script[0]
        if isinstance(step, Exception):
            raise step
        if callable(step):
            return step(request)
        return httpx.Response(step.status_code, headers=step.headers, content=step.content)

    def form(self, index: int = 0) -> dict[str, str]:
        return dict(parse_qsl(self.requests[index].content.decode(), keep_blank_values=True))


class Clock:
    """Fake monotonic clock; ``sleep`` advances it and records the wait."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def fields(**changes: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "url": URL,
        "grantType": "client_credentials",
        "clientId": "client:one",
        "scopes": "webhook.write",
    }
    values.update(changes)
    return {k: v for k, v in values.items() if v is not None}


def run(
    endpoint: TokenEndpoint,
    credential: dict[str, Any] | None = None,
    *,
    secrets: dict[str, SecretStr] | None = None,
    budget: float = 60.0,
    clock: Clock | None = None,
    allow_insecure_http: bool = False,
) -> RehearsalResult:
    clock = clock or Clock()
    with httpx.Client(transport=httpx.MockTransport(endpoint)) as http:
        return rehearse(
            fields() if credential is None else credential,
            {"clientSecret": SecretStr(SECRET)} if secrets is None else secrets,
            budget_seconds=budget,
            allow_insecure_http=allow_insecure_http,
            http=http,
            sleep=clock.sleep,
            clock=clock,
        )


# -- the request -------------------------------------------------------------------------


def test_default_request_uses_basic_auth_with_form_encoded_id_and_secret() -> None:
    endpoint = TokenEndpoint(OK)
    result = run(endpoint)
    assert (result.attempts, result.seconds, result.status) == (1, 0.0, 200)
    request = endpoint.requests[0]
    assert (request.method, str(request.url)) == ("POST", URL)
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    expected = base64.b64encode(b"client%3Aone:n3w+secret%2Bwith%2Fodd%3Achars~").decode()
    assert request.headers["authorization"] == f"Basic {expected}"
    assert endpoint.form() == {"grant_type": "client_credentials", "scope": "webhook.write"}


@pytest.mark.parametrize("no_basic", ["true", "TRUE", True])
def test_no_basic_puts_id_and_secret_in_the_body(no_basic: Any) -> None:
    endpoint = TokenEndpoint(OK)
    run(endpoint, fields(noBasic=no_basic))
    assert "authorization" not in endpoint.requests[0].headers
    assert endpoint.form() == {
        "grant_type": "client_credentials",
        "client_id": "client:one",
        "client_secret": SECRET,
        "scope": "webhook.write",
    }


@pytest.mark.parametrize("no_basic", ["false", False, ""])
def test_no_basic_false_keeps_basic(no_basic: Any) -> None:
    endpoint = TokenEndpoint(OK)
    run(endpoint, fields(noBasic=no_basic))
    assert endpoint.requests[0].headers["authorization"].startswith("Basic ")
    assert "client_secret" not in endpoint.form()


def test_json_content_type_sends_a_json_body() -> None:
    endpoint = TokenEndpoint(OK)
    run(endpoint, fields(contentType="application/json", noBasic="true"))
    request = endpoint.requests[0]
    assert request.headers["content-type"] == "application/json"
    assert json.loads(request.content) == {
        "grant_type": "client_credentials",
        "client_id": "client:one",
        "client_secret": SECRET,
        "scope": "webhook.write",
    }


def test_custom_parameter_names_and_token_field() -> None:
    endpoint = TokenEndpoint(httpx.Response(200, json={"token": "t-1", "access_token": ""}))
    credential = fields(
        noBasic="true",
        grantTypeName="grantType",
        clientIdName="appId",
        clientSecretName="appSecret",
        accessTokenName="token",
    )
    assert run(endpoint, credential).attempts == 1
    assert endpoint.form() == {
        "grantType": "client_credentials",
        "appId": "client:one",
        "appSecret": SECRET,
        "scope": "webhook.write",
    }


def test_scope_audience_resource_and_custom_field() -> None:
    endpoint = TokenEndpoint(OK)
    credential = fields(
        audience="api://dest",
        resource="https://dest.example.com",
        customFieldName="tenant",
        customFieldValue="acme",
    )
    run(endpoint, credential)
    assert endpoint.form() == {
        "grant_type": "client_credentials",
        "scope": "webhook.write",
        "audience": "api://dest",
        "resource": "https://dest.example.com",
        "tenant": "acme",
    }


def test_custom_field_needs_both_name_and_value_and_empty_fields_are_unset() -> None:
    endpoint = TokenEndpoint(OK)
    run(endpoint, fields(customFieldName="tenant", scopes="", audience=None, resource=""))
    assert endpoint.form() == {"grant_type": "client_credentials"}


def test_password_grant_sends_username_and_password() -> None:
    endpoint = TokenEndpoint(OK)
    secrets = {"clientSecret": SecretStr(SECRET), "password": SecretStr("pw-secret")}
    run(endpoint, fields(grantType="password", username="svc", scopes=None), secrets=secrets)
    assert endpoint.form() == {"grant_type": "password", "username": "svc", "password": "pw-secret"}


def test_http_url_needs_permission() -> None:
    http_url = "http://127.0.0.1:8085/idp/okta/oauth2/default/v1/token"
    endpoint = TokenEndpoint(OK)
    with pytest.raises(ConfigError, match="ROTATOR_ALLOW_INSECURE_HTTP"):
        run(endpoint, fields(url=http_url))
    assert endpoint.requests == []
    assert run(endpoint, fields(url=http_url), allow_insecure_http=True).attempts == 1


def test_missing_secret_is_a_failed_rehearsal_without_a_request() -> None:
    endpoint = TokenEndpoint(OK)
    with pytest.raises(RehearsalFailed, match="no clientSecret"):
        run(endpoint, secrets={})
    assert endpoint.requests == []


# -- retries -----------------------------------------------------------------------------


def test_rejections_are_retried_until_the_new_secret_works() -> None:
    clock = Clock()
    endpoint = TokenEndpoint(INVALID_CLIENT, INVALID_CLIENT, INVALID_CLIENT, OK)
    result = run(endpoint, clock=clock)
    assert result.attempts == 4 and len(endpoint.requests) == 4
    assert len(clock.sleeps) == 3
    assert all(0 <= wait <= 2**n for n, wait in enumerate(clock.sleeps))
    assert result.seconds == pytest.approx(sum(clock.sleeps), abs=1e-3)


def test_transient_failures_are_retried() -> None:
    endpoint = TokenEndpoint(
        httpx.ConnectError("refused"),
        httpx.ReadTimeout("slow"),
        httpx.Response(503),
        httpx.Response(200, content=b"<html>not json</html>"),
        OK,
    )
    assert run(endpoint).attempts == 5


def test_retry_after_of_a_429_is_honoured() -> None:
    clock = Clock()
    endpoint = TokenEndpoint(httpx.Response(429, headers={"Retry-After": "7"}), OK)
    assert run(endpoint, clock=clock).attempts == 2
    assert clock.sleeps[0] >= 7.0


def test_failure_after_the_budget_carries_what_the_idp_answered() -> None:
    clock = Clock()
    endpoint = TokenEndpoint(INVALID_CLIENT)
    with pytest.raises(RehearsalFailed) as caught:
        run(endpoint, budget=45.0, clock=clock)
    error = caught.value
    assert (error.status, error.error) == (401, "invalid_client")
    assert error.description == (
        "AADSTS7000215: Invalid client secret provided. Ensure the secret being sent in the "
        "request is the client secret value."
    )
    message = str(error)
    assert "401 invalid_client: AADSTS7000215" in message
    assert f"{len(endpoint.requests)} attempt(s)" in message
    assert "Trace ID" not in message and "1234-abcd" not in message
    assert 45.0 <= clock.now <= 45.0 + 1e-6  # the whole budget, not more
    assert len(endpoint.requests) >= 4


@pytest.mark.parametrize(
    "body", [{"token_type": "Bearer"}, {"access_token": ""}, {"access_token": 42}, ["x"]]
)
def test_a_reply_without_a_token_is_a_failure(body: Any) -> None:
    endpoint = TokenEndpoint(httpx.Response(200, json=body))
    with pytest.raises(RehearsalFailed, match="has no access_token") as caught:
        run(endpoint, budget=5.0)
    assert caught.value.status == 200


def test_a_retry_after_beyond_the_budget_fails_at_once() -> None:
    clock = Clock()
    endpoint = TokenEndpoint(httpx.Response(429, headers={"Retry-After": "600"}))
    with pytest.raises(RehearsalFailed) as caught:
        run(endpoint, budget=30.0, clock=clock)
    assert caught.value.status == 429
    assert clock.sleeps == [] and len(endpoint.requests) == 1


def test_no_reply_at_all_is_reported_as_such() -> None:
    endpoint = TokenEndpoint(httpx.ConnectError("refused"))
    with pytest.raises(RehearsalFailed, match="no reply") as caught:
        run(endpoint, budget=3.0)
    assert caught.value.status is None


# -- secrecy -----------------------------------------------------------------------------


def test_no_secret_or_token_in_errors_results_or_logs() -> None:
    echo = httpx.Response(
        400,
        json={
            "error": f"invalid_client {SECRET}",
            "error_description": f"bad secret {SECRET} and client_secret={SECRET}",
        },
    )
    no_token_name = httpx.Response(200, json={"access_token": TOKEN, "note": TOKEN})
    credential = fields(noBasic="true", accessTokenName="token")
    with capture_logs() as logs:
        with pytest.raises(RehearsalFailed) as caught:
            run(TokenEndpoint(echo, no_token_name), credential, budget=20.0)
        result = run(TokenEndpoint(echo, OK))
    error = caught.value
    text = " ".join(
        [str(error), repr(error.error), repr(error.description), repr(result), repr(logs)]
    )
    assert logs
    for value in (SECRET, TOKEN, "access-token-value"):
        assert value not in text


def test_a_secret_with_runs_of_whitespace_is_still_scrubbed() -> None:
    secret = "tab\tand  two  spaces"
    echo = httpx.Response(401, json={"error": "invalid_client", "error_description": secret})
    with pytest.raises(RehearsalFailed) as caught:
        run(TokenEndpoint(echo), secrets={"clientSecret": SecretStr(secret)}, budget=1.0)
    assert "two spaces" not in str(caught.value) and "tab" not in str(caught.value)
