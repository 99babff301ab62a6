"""Platform API under /platform: auth, strict bodies, credential rules, secrets never served."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from sandbox import KeyPair, SandboxConfig, SandboxThread

from .conftest import env_id, get_token

pytestmark = pytest.mark.integration

OAUTH = "OAuth_2.0_2-legged"


def _oauth_body(environment_id: str, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "organization": 1001,
        "name": "acme-oauth-2026-06",
        "environmentId": environment_id,
        "authStrategy": OAUTH,
        "grantType": "client_credentials",
        "url": "https://auth.example.com/oauth2/token",
        "clientId": "redox-client",
        "clientSecret": "s3cret-value-that-must-never-come-back",
        "defaultExpirationSeconds": 3600,
    }
    body.update(extra)
    return body


def _error(reply: httpx.Response) -> str:
    message: str = reply.json()["errors"][0]["message"]
    return message


def test_no_or_unknown_token_is_401(sandbox: SandboxThread) -> None:
    sandbox.control.seed(1)
    url = f"{sandbox.base_url}/v1/authcredentials/strategies"
    assert httpx.get(url).status_code == 401
    reply = httpx.get(url, headers={"Authorization": "Bearer nope"})
    assert reply.status_code == 401
    assert reply.json() == {"errors": [{"message": "Unauthorized"}]}


def test_expired_token_is_401(keypair: KeyPair) -> None:
    config = SandboxConfig(public_key_pem=keypair.public_key_pem, token_ttl_seconds=1)
    with SandboxThread(config) as short:
        token = get_token(short, keypair)
        url = f"{short.base_url}/v1/authcredentials/strategies"
        headers = {"Authorization": f"Bearer {token}"}
        assert httpx.get(url, headers=headers).status_code == 200
        time.sleep(1.1)
        assert httpx.get(url, headers=headers).status_code == 401


def test_one_token_serves_many_calls(sandbox: SandboxThread, api: httpx.Client) -> None:
    (dest,) = sandbox.control.seed(1)
    for _ in range(5):
        assert api.get(f"/v1/destinations/{dest}").status_code == 200
    assert sandbox.control.state()["tokens_issued"] == 1


def test_environments_and_destinations(sandbox: SandboxThread, api: httpx.Client) -> None:
    ids = sandbox.control.seed(2)
    envs = api.get("/v1/organizations/1001/environments").json()["payload"]["environments"]
    assert {e["environmentFlag"] for e in envs} == {"Development", "Staging", "Production"}
    assert all(e["organization"] == {"id": 1001} for e in envs)
    dev = env_id(sandbox, "Development")
    listed = api.get(f"/v1/environments/{dev}/destinations").json()["payload"]["destinations"]
    assert [d["id"] for d in listed] == ids
    one = api.get(f"/v1/destinations/{ids[0]}").json()["payload"]["destination"]
    assert set(one) == {"id", "name", "authCredential", "endpoint", "environment", "setupState"}
    assert one["environment"] == {"id": dev, "environmentFlag": "Development"}
    assert api.get("/v1/destinations/unknown").status_code == 404
    assert api.put(f"/v1/destinations/{ids[0]}", json={}).status_code == 405
    assert api.get("/v1/nothing/here").status_code == 404


def test_patch_destination_rules(sandbox: SandboxThread, api: httpx.Client) -> None:
    (dest,) = sandbox.control.seed(1)
    prod = env_id(sandbox, "Production")
    (prod_dest,) = sandbox.control.seed(1, "Production")
    foreign = api.post("/v1/authcredentials", json=_oauth_body(prod)).json()["payload"]
    foreign_id = foreign["credential"]["id"]

    reply = api.patch(f"/v1/destinations/{dest}", json={"authCredential": foreign_id, "x": 1})
    assert reply.status_code == 400
    assert "x" in _error(reply)
    assert api.patch(f"/v1/destinations/{dest}", json={"name": 5}).status_code == 400
    reply = api.patch(f"/v1/destinations/{dest}", json={"authCredential": foreign_id})
    assert reply.status_code == 422
    reply = api.patch(f"/v1/destinations/{prod_dest}", json={"endpoint": "http://x.test/hook"})
    assert reply.status_code == 400
    reply = api.patch(
        f"/v1/destinations/{dest}", content=b'{"name": "x"}', headers={"Content-Type": "text/plain"}
    )
    assert reply.status_code == 415
    reply = api.patch(
        f"/v1/destinations/{dest}", content=b"{", headers={"Content-Type": "application/json"}
    )
    assert reply.status_code == 400

    reply = api.patch(f"/v1/destinations/{prod_dest}", json={"authCredential": foreign_id})
    assert reply.status_code == 200
    assert reply.json()["payload"]["destination"]["authCredential"] == foreign_id
    reply = api.patch(f"/v1/destinations/{dest}", json={"verificationToken": "tok-123-secret"})
    assert reply.status_code == 200
    assert "tok-123-secret" not in reply.text
    assert sandbox.control.secrets()[dest] == {"verificationToken": "tok-123-secret"}


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"unknownField": "x"}, "unknownField"),
        ({"hasClientSecret": True}, "hasClientSecret"),
        ({"id": "abc"}, "id"),
        ({"createdAt": "2026-01-01T00:00:00.000Z"}, "createdAt"),
        ({"accessKey": "AKIA"}, "accessKey"),
        ({"name": ""}, "name"),
        ({"grantType": "password"}, "grantType"),
        ({"url": "http://auth.example.com/token"}, "url"),
        ({"clientId": 42}, "clientId"),
        ({"organization": 7}, "organization"),
        ({"authStrategy": "Basic"}, "authStrategy"),
    ],
)
def test_create_credential_refuses_bad_bodies(
    sandbox: SandboxThread, api: httpx.Client, change: dict[str, Any], needle: str
) -> None:
    body = _oauth_body(env_id(sandbox, "Staging"), **change)
    reply = api.post("/v1/authcredentials", json=body)
    assert reply.status_code == 400, reply.text
    assert needle in _error(reply)
    assert sandbox.control.state()["credentials"] == []


@pytest.mark.parametrize("missing", ["name", "environmentId", "authStrategy", "grantType", "url"])
def test_create_credential_requires(
    sandbox: SandboxThread, api: httpx.Client, missing: str
) -> None:
    body = _oauth_body(env_id(sandbox, "Development"))
    del body[missing]
    reply = api.post("/v1/authcredentials", json=body)
    assert reply.status_code == 400
    assert missing in _error(reply)


def test_credential_lifecycle_never_shows_secrets(
    sandbox: SandboxThread, api: httpx.Client
) -> None:
    dev = env_id(sandbox, "Development")
    (dest,) = sandbox.control.seed(1)
    secret = "s3cret-value-that-must-never-come-back"
    replies = [api.post("/v1/authcredentials", json=_oauth_body(dev, url="http://dev.test/t"))]
    assert replies[0].status_code == 201
    cred = replies[0].json()["payload"]["credential"]
    assert cred["hasClientSecret"] is True and cred["hasPassword"] is False
    assert cred["createdAt"].endswith("Z") and len(cred["createdAt"]) == 24
    assert "clientSecret" not in cred
    cid = cred["id"]
    replies.append(api.get(f"/v1/authcredentials/{cid}"))
    replies.append(api.get(f"/v1/environments/{dev}/authcredentials"))
    patched = api.patch(
        f"/v1/authcredentials/{cid}",
        json={"grantType": "client_credentials", "url": "https://a.test/t", "scopes": "x"},
    )
    replies.append(patched)
    assert patched.status_code == 200
    assert patched.json()["payload"]["credential"]["hasClientSecret"] is True  # kept
    assert api.patch(f"/v1/authcredentials/{cid}", json={"scopes": "y"}).status_code == 400
    replies.append(api.patch(f"/v1/destinations/{dest}", json={"authCredential": cid}))
    replies.append(api.get(f"/v1/destinations/{dest}"))
    for reply in replies:
        assert secret not in reply.text
    assert sandbox.control.secrets()[cid] == {"clientSecret": secret}
    assert secret not in httpx.get(f"{sandbox.url}/_sandbox/state").text

    in_use = api.delete(f"/v1/authcredentials/{cid}")
    assert in_use.status_code == 409
    old = api.get(f"/v1/destinations/{dest}").json()["payload"]["destination"]
    assert old["authCredential"] == cid
    unused = api.post("/v1/authcredentials", json=_oauth_body(dev)).json()["payload"]
    unused_id = unused["credential"]["id"]
    reply = api.delete(f"/v1/authcredentials/{unused_id}")
    assert reply.status_code == 200
    message = f"Auth credential id [{unused_id}] was successfully deleted."
    assert reply.json() == {"meta": "1.0.0", "payload": {"message": message}}
    assert api.delete(f"/v1/authcredentials/{unused_id}").status_code == 404


def test_duplicate_names_are_allowed(sandbox: SandboxThread, api: httpx.Client) -> None:
    dev = env_id(sandbox, "Development")
    for _ in range(2):
        assert api.post("/v1/authcredentials", json=_oauth_body(dev)).status_code == 201
    assert len(sandbox.control.state()["credentials"]) == 2


def test_strategies_and_aws_secret_flags(sandbox: SandboxThread, api: httpx.Client) -> None:
    strategies = api.get("/v1/authcredentials/strategies").json()["payload"]["strategies"]
    assert set(strategies) == {"AwsSigv4", "GoogleWIF", OAUTH, "SMART_Backend"}
    assert strategies["SMART_Backend"] == strategies[OAUTH]
    body = {
        "name": "aws",
        "environmentId": env_id(sandbox, "Production"),
        "authStrategy": "AwsSigv4",
        "accessKey": "AKIAEXAMPLE",
        "secretKey": "aws-secret",
        "awsRegion": "us-east-1",
    }
    cred = api.post("/v1/authcredentials", json=body).json()["payload"]["credential"]
    assert cred["accessKey"] == "AKIAEXAMPLE"
    assert cred["hasSecretKey"] is True and cred["hasSessionToken"] is False
    assert "secretKey" not in cred


def test_credential_list_follows_every_change(sandbox: SandboxThread, api: httpx.Client) -> None:
    """The list is built from cached JSON views: a PATCH, a rename or a delete must show."""
    dev = env_id(sandbox, "Development")
    prod = env_id(sandbox, "Production")
    url = f"/v1/environments/{dev}/authcredentials"
    first = api.post("/v1/authcredentials", json=_oauth_body(dev)).json()["payload"]["credential"]
    api.post("/v1/authcredentials", json=_oauth_body(prod))  # another environment's
    assert [c["id"] for c in api.get(url).json()["payload"]["credentials"]] == [first["id"]]
    second = api.post("/v1/authcredentials", json=_oauth_body(dev, name="second")).json()
    second_id = second["payload"]["credential"]["id"]
    patch = {"name": "renamed", "grantType": "client_credentials", "url": "https://b.test/t"}
    assert api.patch(f"/v1/authcredentials/{first['id']}", json=patch).status_code == 200
    reply = api.get(url)
    assert reply.headers["content-type"] == "application/json"
    listed = reply.json()
    assert listed["meta"] == {"version": "1.0.0"}
    by_id = {c["id"]: c for c in listed["payload"]["credentials"]}
    assert set(by_id) == {first["id"], second_id}
    assert by_id[first["id"]]["name"] == "renamed"
    assert by_id[first["id"]]["url"] == "https://b.test/t"
    assert (
        by_id[first["id"]]
        == api.get(f"/v1/authcredentials/{first['id']}").json()["payload"]["credential"]
    )
    assert api.delete(f"/v1/authcredentials/{second_id}").status_code == 200
    assert [c["id"] for c in api.get(url).json()["payload"]["credentials"]] == [first["id"]]
