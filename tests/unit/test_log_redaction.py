"""Log redaction: secret-shaped text and secret-named keys are masked, ids are kept."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
import structlog
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from worker.logging import REDACTED, configure_logging, get_logger, redact_secrets, redact_text

JWT = "eyJhbGciOiJSUzM4NCIsImtpZCI6ImsxIn0.eyJpc3MiOiJjbGllbnQtMSJ9.c2lnbmF0dXJlLWJ5dGVz"
TOKEN = "tok_4f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c"


def _fresh_pem() -> str:
    """A private key made for this run (no key material lives in the repository)."""
    key = ec.generate_private_key(ec.SECP384R1())
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


PEM = _fresh_pem()
PEM_BODY = PEM.splitlines()[1]
TRUNCATED_PEM = "\n".join(PEM.splitlines()[:2])
DEST = "6f1c2a9e-1111-4222-8333-944445555666"
CRED = "0b7e6d5c-aaaa-4bbb-8ccc-ddddeeeeffff"


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        (f"Authorization: Bearer {TOKEN}", TOKEN),
        (f"sent bearer {TOKEN} to redox", TOKEN),
        (f"assertion {JWT} refused", JWT),
        (f"key was {PEM} oops", PEM_BODY),
        (f"truncated {TRUNCATED_PEM}", PEM_BODY),
        ("grant_type=client_credentials&client_secret=hunter2hunter2&x=1", "hunter2hunter2"),
        ('{"clientSecret": "hunter2hunter2", "id": "c-1"}', "hunter2hunter2"),
        ("password=p4ssw0rd-value", "p4ssw0rd-value"),
        ("access_token: abcdef123456", "abcdef123456"),
        ("redis://:r3dis-pass@cache:6379/0", "r3dis-pass"),
        ("rediss://rotator:r3dis-pass@cache:6380/1", "r3dis-pass"),
        ("fetch https://svc:h77p-pass@vault.example/v1/secret", "h77p-pass"),
    ],
    ids=lambda value: value[:24],  # the PEMs are made per run: ids must not depend on them
)
def test_secret_shapes_are_masked(text: str, secret: str) -> None:
    masked = redact_text(text)
    assert secret not in masked
    assert REDACTED in masked


@pytest.mark.parametrize(
    "text",
    [
        f"rotated destination {DEST} to credential {CRED}",
        f"credential_id={CRED} destination_id={DEST}",
        "GET /v1/destinations/abc/authcredentials answered 503",
        "token endpoint answered 500",
        "https://api.redoxengine.com/v2/auth/token",
        "redis://cache:6379/0",
    ],
)
def test_ids_and_plain_text_are_kept(text: str) -> None:
    assert redact_text(text) == text


def test_processor_masks_secret_named_keys_and_keeps_ids() -> None:
    event: dict[str, Any] = {
        "event": "rotation done",
        "client_secret": "short",
        "password": "pw",
        "access_token": "abc",
        "Authorization": "Basic dXNlcjpwYXNz",
        "private_key": "k",
        "api_key": "k",
        "client_assertion": "k",
        "credential_id": CRED,
        "new_credential_id": CRED,
        "destination_id": DEST,
        "rotation_id": "r-1",
        "key_id": "kid-1",
        "client_id": "client-1",
        "token_url": "https://api.redoxengine.com/v2/auth/token",
        "tokens_issued": 3,
        "has_client_secret": True,
        "private_key_path": "/run/secrets/redox.pem",
        "nested": {"secretKey": "aws-secret", "id": DEST, "items": [{"password": "x"}]},
        "values": [f"Bearer {TOKEN}", "plain"],
        "error": ValueError(f"refused client_secret=hunter2hunter2 for {DEST}"),
    }
    out = redact_secrets(None, "info", event)
    for key in ("client_secret", "password", "access_token", "Authorization", "private_key"):
        assert out[key] == REDACTED, key
    for key in ("api_key", "client_assertion"):
        assert out[key] == REDACTED, key
    for key in (
        "credential_id",
        "new_credential_id",
        "destination_id",
        "rotation_id",
        "key_id",
        "client_id",
        "token_url",
        "tokens_issued",
        "has_client_secret",
        "private_key_path",
    ):
        assert out[key] == event[key], key
    assert out["nested"] == {"secretKey": REDACTED, "id": DEST, "items": [{"password": REDACTED}]}
    assert out["values"] == [REDACTED, "plain"]
    assert out["error"] == f"ValueError: refused client_secret={REDACTED} for {DEST}"


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """Put the logging setup back after a test that calls configure_logging."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    structlog.reset_defaults()
    root.handlers[:] = handlers
    root.setLevel(level)


def test_rendered_logs_carry_no_secret(
    restore_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    """End to end through configure_logging, called here so it writes to capsys' stderr."""
    configure_logging("json", "DEBUG")
    # Keep module loggers uncached so later tests can still capture_logs().
    structlog.configure(cache_logger_on_first_use=False)
    log = get_logger("tests.redaction")
    log.info("token fetched", access_token=TOKEN, destination_id=DEST)
    log.warning(f"redox said Bearer {TOKEN}", credential_id=CRED)
    log.error("bad key", detail=PEM, body={"clientSecret": "hunter2hunter2"})
    logging.getLogger("tests.stdlib").warning("connecting to redis://:r3dis-pass@cache:6379/0")
    try:
        raise RuntimeError(f"assertion {JWT} refused")
    except RuntimeError:
        log.exception("token request failed")
    err = capsys.readouterr().err
    lines = [json.loads(line) for line in err.splitlines()]
    assert len(lines) == 5
    for secret in (TOKEN, JWT, PEM_BODY, "hunter2", "r3dis-pass"):
        assert secret not in err
    assert lines[0]["destination_id"] == DEST
    assert lines[1]["credential_id"] == CRED
    assert "RuntimeError" in lines[4]["exception"]
