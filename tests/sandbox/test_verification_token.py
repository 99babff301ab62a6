"""The destination's verificationToken and the receiver that checks it against a token store.

The store is an AWS Secrets Manager secret on moto's standalone server (real HTTP); the
sandbox's receiver reads its AWSCURRENT / AWSPENDING values and caches them, and a delivery
succeeds only if the destination's current token is one of the values it accepts.
"""

from __future__ import annotations

import json
import secrets
import socket
import time
import uuid
from typing import Any

import boto3
import httpx
import pytest

from sandbox import SandboxThread

from .conftest import wait_for

pytestmark = pytest.mark.integration

REGION = "us-east-1"
INVALID = {
    "status": 401,
    "error": "invalid_verification_token",
    "error_description": "the receiver does not accept the destination's verification token",
}


class Secret:
    """One secret on moto, driven like the rotation drives it (stage labels)."""

    def __init__(self, url: str, value: str) -> None:
        self.url = url
        self.name = f"redox/dest-{uuid.uuid4().hex[:8]}/verification-token"
        self.client: Any = boto3.client(
            "secretsmanager",
            endpoint_url=url,
            region_name=REGION,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        self.current: str = self.client.create_secret(Name=self.name, SecretString=value)[
            "VersionId"
        ]

    def write_pending(self, value: str) -> str:
        reply = self.client.put_secret_value(
            SecretId=self.name, SecretString=value, VersionStages=["AWSPENDING"]
        )
        version: str = reply["VersionId"]
        return version

    def promote(self, version: str) -> None:
        self.client.update_secret_version_stage(
            SecretId=self.name,
            VersionStage="AWSCURRENT",
            MoveToVersionId=version,
            RemoveFromVersionId=self.current,
        )
        self.drop_pending(version)
        self.current = version

    def drop_pending(self, version: str) -> None:
        self.client.update_secret_version_stage(
            SecretId=self.name, VersionStage="AWSPENDING", RemoveFromVersionId=version
        )


def _token() -> str:
    return secrets.token_urlsafe(32)


def _stats(sandbox: SandboxThread, dest: str) -> dict[str, Any]:
    found: dict[str, Any] = sandbox.control.delivery_stats()["destinations"].get(dest, {})
    return {"succeeded": 0, "failed": 0, **found}


def _more(sandbox: SandboxThread, dest: str, status: str, count: int = 2) -> dict[str, Any]:
    """Wait for ``count`` more deliveries with ``status`` ("succeeded" or "failed")."""
    target = _stats(sandbox, dest)[status] + count
    wait_for(lambda: _stats(sandbox, dest)[status] >= target, 6.0, f"{count} more {status}")
    return _stats(sandbox, dest)


def _patch(api: httpx.Client, dest: str, token: str) -> None:
    reply = api.patch(f"/v1/destinations/{dest}", json={"verificationToken": token})
    assert reply.status_code == 200, reply.text
    assert token not in reply.text


def _okta_destination(sandbox: SandboxThread, api: httpx.Client, token: str) -> str:
    (dest,) = sandbox.control.seed(1, idp="okta")
    _patch(api, dest, token)
    return dest


def _attach(sandbox: SandboxThread, dest: str, secret: Secret, **options: Any) -> dict[str, Any]:
    return sandbox.control.set_token_store(
        dest, endpoint_url=secret.url, secret_id=secret.name, region=REGION, **options
    )


def _reads(sandbox: SandboxThread, dest: str) -> int:
    view = sandbox.control.token_store(dest)
    assert view is not None
    reads: int = view["reads"]
    return reads


def _has_pending(sandbox: SandboxThread, dest: str) -> bool:
    view = sandbox.control.token_store(dest)
    assert view is not None
    return bool(view["has_pending"])


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def _assert_no_leak(sandbox: SandboxThread, api: httpx.Client, *values: str) -> None:
    """No token value in any reply a client or an operator can see."""
    control = sandbox.control
    seen: list[Any] = [
        control.state(),
        control.delivery_stats(),
        control.deliveries(),
        control.journal(),
    ]
    for dest in control.state()["destinations"]:
        env = dest["environment"]["id"]
        seen.append(control.token_store(dest["id"]))
        seen.append(control.delivery_logs(dest["id"]))
        seen.append(api.get(f"/v1/destinations/{dest['id']}").json())
        seen.append(api.get(f"/v1/environments/{env}/destinations").json())
        for status in ("succeeded", "failed"):
            search = {"destinationId": dest["id"], "status": status}
            reply = api.post(f"/v1/environments/{env}/logs/search/metadata", json=search)
            assert reply.status_code == 200
            seen.append(reply.json())
    text = json.dumps(seen)
    for value in values:
        assert value not in text


# -- the token on the Platform API ---------------------------------------------------------


def test_patch_stores_the_token_and_never_echoes_it(
    sandbox: SandboxThread, api: httpx.Client
) -> None:
    dest, other = sandbox.control.seed(2, "Development")
    cred = sandbox.control.state()["destinations"][1]["authCredential"]
    token = _token()
    reply = api.patch(
        f"/v1/destinations/{dest}", json={"verificationToken": token, "authCredential": cred}
    )
    assert reply.status_code == 200
    assert "verificationToken" not in reply.json()["payload"]["destination"]
    assert reply.json()["payload"]["destination"]["authCredential"] == cred
    assert sandbox.control.secrets()[dest] == {"verificationToken": token}
    seeded = sandbox.control.secrets()[other]["verificationToken"]
    assert seeded and seeded != token  # seeding gives each destination its own token
    for bad in (42, None, True, ["x"], {"v": "x"}, "", "x" * 1025, "line\nbreak", " padded"):
        refused = api.patch(f"/v1/destinations/{dest}", json={"verificationToken": bad})
        assert refused.status_code == 400, bad
        assert "verificationToken" in refused.text
        if isinstance(bad, str) and bad:
            assert bad.strip() not in refused.text
    assert sandbox.control.secrets()[dest] == {"verificationToken": token}
    assert api.patch(f"/v1/destinations/{dest}", json={"verificationToken": "x" * 1024}).is_success
    unknown = api.patch(f"/v1/destinations/{dest}", json={"verification_token": "abc"})
    assert unknown.status_code == 400 and "verification_token" in unknown.text
    _assert_no_leak(sandbox, api, token, seeded, "x" * 1024)


# -- the control API -----------------------------------------------------------------------


def test_token_store_control(sandbox: SandboxThread, moto_url: str) -> None:
    (dest,) = sandbox.control.seed(1)
    url = f"{sandbox.url}/_sandbox/destinations/{dest}/token-store"
    assert sandbox.control.token_store(dest) is None
    assert sandbox.control.clear_token_store(dest) is False
    missing = httpx.put(
        f"{sandbox.url}/_sandbox/destinations/nope/token-store",
        json={"endpoint_url": moto_url, "secret_id": "s"},
    )
    assert missing.status_code == 404 and set(missing.json()) == {"error"}
    good = {"endpoint_url": moto_url, "secret_id": "s"}
    for change in (
        {"endpoint_url": "https://secretsmanager.us-east-1.amazonaws.com"},
        {"endpoint_url": "ftp://127.0.0.1:1"},
        {"endpoint_url": 5},
        {"secret_id": ""},
        {"secret_id": None},
        {"region": "Mars"},
        {"refresh_seconds": -1},
        {"refresh_seconds": "5"},
        {"refresh_seconds": True},
        {"refresh_seconds": 1e9},
        {"accept_pending": "yes"},
        {"password": "x"},
    ):
        reply = httpx.put(url, json={**good, **change})
        assert reply.status_code == 400, change
        assert set(reply.json()) == {"error"}
    for raw in (b"", b"{", b"[]", b'{"refresh_seconds": NaN}'):
        assert httpx.put(url, content=raw).status_code == 400
    view = sandbox.control.set_token_store(
        dest, endpoint_url=moto_url, secret_id="s", refresh_seconds=0, accept_pending=False
    )
    assert view["secret_id"] == "s" and view["refresh_seconds"] == 0.0
    assert view["region"] == REGION and view["accept_pending"] is False
    assert view["reads"] == 0 and view["cached"] is False
    assert sandbox.control.deliveries()["token_stores"] == [dest]
    assert sandbox.control.clear_token_store(dest) is True
    assert sandbox.control.token_store(dest) is None
    sandbox.control.set_token_store(dest, endpoint_url=moto_url, secret_id="s")
    sandbox.control.reset()
    assert sandbox.control.deliveries()["token_stores"] == []


# -- deliveries ----------------------------------------------------------------------------


def test_deliveries_succeed_while_the_token_is_awscurrent(
    idp: SandboxThread, api: httpx.Client, moto_url: str
) -> None:
    token = _token()
    secret = Secret(moto_url, token)
    dest = _okta_destination(idp, api, token)
    (plain,) = idp.control.seed(1, idp="okta")  # no store: not checked, as before
    _attach(idp, dest, secret, refresh_seconds=5)
    stats = _more(idp, dest, "succeeded", 3)
    assert stats["failed"] == 0
    view = idp.control.token_store(dest)
    assert view is not None and view["reads"] == 1 and view["read_failures"] == 0
    assert view["has_current"] is True and view["has_pending"] is False
    assert _more(idp, plain, "succeeded")["failed"] == 0
    _assert_no_leak(idp, api, token)


def test_token_patched_before_the_store_has_it_fails(
    idp: SandboxThread, api: httpx.Client, moto_url: str
) -> None:
    old, new = _token(), _token()
    secret = Secret(moto_url, old)
    dest = _okta_destination(idp, api, old)
    _attach(idp, dest, secret, refresh_seconds=0.2)
    _more(idp, dest, "succeeded")
    _patch(api, dest, new)
    stats = _more(idp, dest, "failed")
    assert stats["last_status"] == "failed"
    error = stats["last_error"]
    assert {k: error[k] for k in INVALID} == INVALID
    env = idp.control.state()["destinations"][0]["environment"]["id"]
    search = {"destinationId": dest, "status": "failed"}
    logs = api.post(f"/v1/environments/{env}/logs/search/metadata", json=search).json()
    assert logs["payload"]["logs"][0]["attempts"]["latest"]["error"] == INVALID
    _patch(api, dest, old)  # the revert
    _more(idp, dest, "succeeded")
    assert _stats(idp, dest)["consecutive_failures"] == 0
    _assert_no_leak(idp, api, old, new)


def test_rotation_through_awspending_has_no_failed_delivery(
    idp: SandboxThread, api: httpx.Client, moto_url: str
) -> None:
    old, new = _token(), _token()
    secret = Secret(moto_url, old)
    dest = _okta_destination(idp, api, old)
    _attach(idp, dest, secret, refresh_seconds=0.5, accept_pending=True)
    _more(idp, dest, "succeeded")
    version = secret.write_pending(new)
    wait_for(lambda: _has_pending(idp, dest), 5.0, "the hand-over (the receiver reads it)")
    _patch(api, dest, new)
    _more(idp, dest, "succeeded", 3)
    secret.promote(version)
    wait_for(lambda: not _has_pending(idp, dest), 5.0, "the receiver to see the promotion")
    stats = _more(idp, dest, "succeeded")
    assert stats["failed"] == 0
    _assert_no_leak(idp, api, old, new)


def test_receiver_without_pending_fails_the_new_token_until_reverted(
    idp: SandboxThread, api: httpx.Client, moto_url: str
) -> None:
    old, new = _token(), _token()
    secret = Secret(moto_url, old)
    dest = _okta_destination(idp, api, old)
    _attach(idp, dest, secret, refresh_seconds=0.2, accept_pending=False)
    _more(idp, dest, "succeeded")
    version = secret.write_pending(new)
    time.sleep(0.5)  # past the receiver's refresh: it has read the store again
    _patch(api, dest, new)
    error = _more(idp, dest, "failed")["last_error"]
    assert error["error"] == "invalid_verification_token"
    view = idp.control.token_store(dest)
    assert view is not None and view["has_pending"] is False  # not even read
    _patch(api, dest, old)  # the watch reverts: old token back, AWSPENDING removed
    secret.drop_pending(version)
    assert _more(idp, dest, "succeeded")["consecutive_failures"] == 0
    _assert_no_leak(idp, api, old, new)


def test_a_store_change_is_seen_only_after_refresh_seconds(
    idp: SandboxThread, api: httpx.Client, moto_url: str
) -> None:
    refresh = 2.0
    old, new = _token(), _token()
    secret = Secret(moto_url, old)
    dest = _okta_destination(idp, api, old)
    _attach(idp, dest, secret, refresh_seconds=refresh)
    _more(idp, dest, "succeeded")
    view = idp.control.token_store(dest)
    assert view is not None and view["reads"] == 1
    age = view["cache_age_seconds"]
    changed_at = time.monotonic()
    secret.write_pending(new)
    _patch(api, dest, new)  # no hand-over wait: the receiver has not read AWSPENDING yet
    _more(idp, dest, "failed")
    assert _reads(idp, dest) == 1  # still the cached read
    _more(idp, dest, "succeeded", 1)
    waited = time.monotonic() - changed_at
    assert waited >= refresh - age - 0.1
    assert _reads(idp, dest) == 2
    _assert_no_leak(idp, api, old, new)


def test_an_unreadable_store_is_a_distinct_failure(
    idp: SandboxThread, api: httpx.Client, moto_url: str
) -> None:
    token = _token()
    secret = Secret(moto_url, token)
    dest = _okta_destination(idp, api, token)
    down = f"http://127.0.0.1:{_free_port()}"
    idp.control.set_token_store(dest, endpoint_url=down, secret_id=secret.name, refresh_seconds=0)
    error = _more(idp, dest, "failed")["last_error"]
    assert error["status"] == 503 and error["error"] == "token_store_unavailable"
    view = idp.control.token_store(dest)
    assert view is not None and view["read_failures"] >= 2 and view["cached"] is False
    assert "EndpointConnectionError" in view["last_read_error"]
    _attach(idp, dest, secret, refresh_seconds=0)
    _more(idp, dest, "succeeded")
    idp.control.set_token_store(dest, endpoint_url=moto_url, secret_id="no-such-secret")
    error = _more(idp, dest, "failed")["last_error"]
    assert error["error"] == "token_store_unavailable"
    assert "AWSCURRENT" in error["error_description"]
    assert idp.control.clear_token_store(dest) is True
    _more(idp, dest, "succeeded")  # unchecked again
    _assert_no_leak(idp, api, token)
