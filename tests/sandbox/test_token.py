"""POST /v2/auth/token: a valid assertion gets a token; every documented mistake is refused."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from urllib.parse import urlencode

import httpx
import pytest

from sandbox import KeyPair, SandboxConfig, SandboxThread, generate_keypair

from .conftest import ASSERTION_TYPE, assertion, token_form

pytestmark = pytest.mark.integration

KEY_NOT_FOUND = "Public key not found, check client_id, kid and Redox dashboard settings"


def _post(sandbox: SandboxThread, data: dict[str, str]) -> httpx.Response:
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    return httpx.post(sandbox.token_url, content=urlencode(data), headers=form)


def test_valid_assertion_gets_a_bearer_token(sandbox: SandboxThread, keypair: KeyPair) -> None:
    reply = _post(sandbox, token_form(assertion(keypair, sandbox.token_url)))
    assert reply.status_code == 200
    body = reply.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 300
    assert body["scope"] == "platform_access"
    assert len(body["access_token"]) > 20
    assert sandbox.control.state()["tokens_issued"] == 1


@pytest.mark.parametrize(
    ("change", "status", "description"),
    [
        ({"headers": {}}, 400, "JWT header kid property is required"),
        ({"headers": {"kid": "other-kid"}}, 401, KEY_NOT_FOUND),
        ({"iss": "someone-else", "sub": "someone-else"}, 401, KEY_NOT_FOUND),
        ({"aud": "https://api.redoxengine.com/v2/auth/token"}, 401, ""),
        ({"sub": "not-the-issuer"}, 401, ""),
        ({"exp": -60}, 401, ""),
        ({"iat": -400, "exp": 200}, 401, ""),
        ({"iat": 120}, 401, ""),
        ({"exp": 900}, 401, ""),
        ({"drop": ("jti",)}, 401, ""),
        ({"algorithm": "RS256"}, 401, ""),
    ],
    ids=[
        "no-kid",
        "wrong-kid",
        "wrong-iss",
        "wrong-aud",
        "sub-not-iss",
        "expired",
        "iat-too-old",
        "iat-in-future",
        "lifetime-too-long",
        "no-jti",
        "wrong-alg",
    ],
)
def test_bad_assertions_are_refused(
    sandbox: SandboxThread,
    keypair: KeyPair,
    change: dict[str, object],
    status: int,
    description: str,
) -> None:
    # Times are offsets from now, taken when the test runs (not when it was collected).
    now = int(time.time())
    change = {k: now + v if k in ("iat", "exp") else v for k, v in change.items()}  # type: ignore[operator]
    reply = _post(sandbox, token_form(assertion(keypair, sandbox.token_url, **change)))  # type: ignore[arg-type]
    assert reply.status_code == status
    assert reply.json()["error_description"] == description
    assert reply.json()["error_uri"] == ""
    assert sandbox.control.state()["tokens_issued"] == 0


def test_reused_jti_is_refused(sandbox: SandboxThread, keypair: KeyPair) -> None:
    jti = str(uuid.uuid4())
    first = _post(sandbox, token_form(assertion(keypair, sandbox.token_url, jti=jti)))
    second = _post(sandbox, token_form(assertion(keypair, sandbox.token_url, jti=jti)))
    assert first.status_code == 200
    assert second.status_code == 401
    assert second.json()["error_description"] == ""


def test_signature_from_another_key_is_refused(
    sandbox: SandboxThread, keypair: KeyPair, tmp_path: Path
) -> None:
    other = generate_keypair(tmp_path)
    forged = assertion(keypair, sandbox.token_url, key=other.private_key_path.read_bytes())
    reply = _post(sandbox, token_form(forged))
    assert reply.status_code == 401
    assert reply.json() == {"error": "invalid_client", "error_description": "", "error_uri": ""}


def test_json_body_is_refused(sandbox: SandboxThread, keypair: KeyPair) -> None:
    reply = httpx.post(sandbox.token_url, json=token_form(assertion(keypair, sandbox.token_url)))
    assert reply.status_code == 400
    assert reply.json() == {
        "error": "invalid_request",
        "error_description": "x-www-form-urlencoded content-type required",
        "error_uri": "",
    }


@pytest.mark.parametrize(
    ("form", "description"),
    [
        ({}, "Missing grant_type parameter"),
        ({"grant_type": "client_credentials"}, "Missing client assertion type"),
        (
            {"grant_type": "client_credentials", "client_assertion_type": "jwt"},
            "Invalid client assertion type",
        ),
        (
            {"grant_type": "client_credentials", "client_assertion_type": ASSERTION_TYPE},
            "Missing client assertion",
        ),
    ],
)
def test_missing_form_fields(
    sandbox: SandboxThread, form: dict[str, str], description: str
) -> None:
    reply = _post(sandbox, form)
    assert reply.status_code == 400
    assert reply.json()["error"] == "invalid_request"
    assert reply.json()["error_description"] == description


def test_no_public_key_configured_refuses_everything(keypair: KeyPair) -> None:
    with SandboxThread(SandboxConfig()) as bare:
        reply = _post(bare, token_form(assertion(keypair, bare.token_url)))
        assert reply.json()["error_description"] == KEY_NOT_FOUND
        bare.control.set_public_key(keypair.public_key_pem)
        assert _post(bare, token_form(assertion(keypair, bare.token_url))).status_code == 200
