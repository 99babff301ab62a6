"""Fuzz: whatever Redox sends back, parsing ends in a value or one BadRedoxResponse line.

Two layers: the payload helpers of :mod:`worker.redox.models` fed random JSON, and the whole
:class:`RedoxClient` fed random 2xx bodies (JSON, bytes, HTML) through an in-memory httpx
transport (the sandbox's malformed replies cover the same ground over real HTTP in
``test_malformed_rotation.py``). Anything other than BadRedoxResponse escaping is a bug: a
rotation would end in an unclassified error instead of a clean failure.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from config.settings import RedoxSettings, RetrySettings
from sandbox import generate_keypair
from worker.errors import BadRedoxResponse
from worker.redox.client import RedoxClient
from worker.redox.models import (
    AuthCredential,
    Destination,
    Environment,
    parse_payload,
    pick_list,
    pick_object,
    validate_model,
)

KEYS = st.sampled_from(
    ["id", "name", "payload", "authCredential", "environment", "credentials", "destinations",
     "destination", "organization", "authStrategy", "environmentId", "meta"]
) | st.text(max_size=6)  # fmt: skip
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS, inner, max_size=5),
    max_leaves=12,
)
MODELS = (Destination, AuthCredential, Environment)


@given(data=JSON)
def test_payload_helpers_raise_only_bad_redox_response(data: Any) -> None:
    """parse_payload, pick_object, pick_list and validate_model on any JSON value."""
    try:
        payload = parse_payload(data, "fuzz")
    except BadRedoxResponse as exc:
        assert "\n" not in str(exc)
        return
    for model in MODELS:
        try:
            obj = pick_object(payload, ("destination", "authCredential"), "fuzz")
            validate_model(model, obj, "fuzz")
        except BadRedoxResponse as exc:
            assert "\n" not in str(exc)
    try:
        for item in pick_list(payload, "credentials", "fuzz"):
            validate_model(AuthCredential, item, "fuzz")
    except BadRedoxResponse as exc:
        assert "\n" not in str(exc)


BODIES = (
    JSON.map(lambda v: json.dumps(v).encode())
    | JSON.map(lambda v: json.dumps({"meta": {}, "payload": v}).encode())
    | st.binary(max_size=64)
    | st.just(b"<html><body><h1>502 Bad Gateway</h1></body></html>")
    | st.just(b"")
)


@pytest.fixture(scope="module")
def redox_settings(tmp_path_factory: pytest.TempPathFactory) -> RedoxSettings:
    """Settings with a real key pair (the token is fetched from the fake transport)."""
    keys = generate_keypair(Path(tmp_path_factory.mktemp("keys")))
    return RedoxSettings(
        base_url="https://redox.invalid/platform",
        token_url="https://redox.invalid/v2/auth/token",
        client_id="fuzz",
        key_id="fuzz-kid",
        private_key_path=keys.private_key_path,
    )


Call = Callable[[RedoxClient], object]
CALLS: tuple[tuple[str, Call], ...] = (
    ("get_destination", lambda c: c.get_destination("d-1")),
    ("list_destinations", lambda c: c.list_destinations("e-1")),
    ("list_auth_credentials", lambda c: c.list_auth_credentials("e-1")),
    ("get_auth_credential", lambda c: c.get_auth_credential("c-1")),
    ("update_destination", lambda c: c.update_destination("d-1", auth_credential="c-2")),
    ("list_auth_strategies", lambda c: c.list_auth_strategies()),
)


@pytest.mark.parametrize("name", [name for name, _ in CALLS])
@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(body=BODIES, content_type=st.sampled_from(["application/json", "text/html", "text/plain"]))
def test_client_methods_raise_only_bad_redox_response(
    redox_settings: RedoxSettings, name: str, body: bytes, content_type: str
) -> None:
    """Each read/switch call given any 2xx body returns a model or raises BadRedoxResponse."""

    def reply(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/auth/token"):
            return httpx.Response(200, json={"access_token": "t0k", "expires_in": 300})
        return httpx.Response(200, content=body, headers={"content-type": content_type})

    call = dict(CALLS)[name]
    client = RedoxClient(
        redox_settings, RetrySettings(max_attempts=1), transport=httpx.MockTransport(reply)
    )
    try:
        call(client)
    except BadRedoxResponse as exc:
        assert "\n" not in str(exc) and len(str(exc)) < 400
    finally:
        client.close()


def test_cookies_set_by_a_reply_are_never_sent(redox_settings: RedoxSettings) -> None:
    """Nothing a reply sets (a cookie) rides along on later calls."""
    sent: list[str | None] = []

    def reply(request: httpx.Request) -> httpx.Response:
        sent.append(request.headers.get("cookie"))
        if request.url.path.endswith("/auth/token"):
            return httpx.Response(
                200,
                json={"access_token": "t0k", "expires_in": 300},
                headers={"set-cookie": "session=abc; Path=/"},
            )
        body = {"meta": {}, "payload": {"destination": {"id": "d-1", "authCredential": "c-1"}}}
        return httpx.Response(200, json=body, headers={"set-cookie": "track=1; Path=/"})

    client = RedoxClient(
        redox_settings, RetrySettings(max_attempts=1), transport=httpx.MockTransport(reply)
    )
    try:
        for _ in range(2):
            assert client.get_destination("d-1").auth_credential == "c-1"
    finally:
        client.close()
    assert len(sent) == 3 and sent == [None, None, None]
