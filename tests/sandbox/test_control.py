"""The /_sandbox control endpoints: journal, seed, reset, drift, state, health."""

from __future__ import annotations

import httpx
import pytest

from sandbox import SandboxThread

from .conftest import env_id

pytestmark = pytest.mark.integration


def test_journal_counts_by_kind_and_status(sandbox: SandboxThread, api: httpx.Client) -> None:
    (dest,) = sandbox.control.seed(1)
    mark = sandbox.control.journal()["next"]
    api.get(f"/v1/destinations/{dest}")
    api.patch(f"/v1/destinations/{dest}", json={"name": "renamed"})
    api.get("/v1/authcredentials/missing")
    view = sandbox.control.journal(since=mark)
    assert [e["kind"] for e in view["entries"]] == [
        "get_destination",
        "patch_destination",
        "get_credential",
    ]
    assert view["summary"]["by_status"] == {"200": 2, "404": 1}
    full = sandbox.control.journal()["summary"]["by_kind"]
    assert full["token"] == 1
    sandbox.control.clear_journal()
    assert sandbox.control.journal()["entries"] == []
    assert sandbox.control.journal()["next"] >= 4


def test_seed_reset_and_state(sandbox: SandboxThread) -> None:
    ids = sandbox.control.seed(3, "Staging")
    state = sandbox.control.state()
    names = [d["name"] for d in state["destinations"]]
    assert names == ["dest-0001", "dest-0002", "dest-0003"]
    assert [d["id"] for d in state["destinations"]] == ids
    staging = env_id(sandbox, "Staging")
    assert all(d["environment"]["id"] == staging for d in state["destinations"])
    creds = {c["id"]: c for c in state["credentials"]}
    for dest in state["destinations"]:
        cred = creds[dest["authCredential"]]
        assert cred["url"] == "https://auth.example.test/oauth2/token"
        assert cred["grantType"] == "client_credentials"
        assert cred["hasClientSecret"] is True
    dumped = sandbox.control.secrets()
    assert len([k for k in dumped if not k.startswith("idp:")]) == 6
    assert set(dumped) - {k for k in dumped if not k.startswith("idp:")} == {
        "idp:client-secrets",
        "idp:okta-api-tokens",
        "idp:entra-management",
        "idp:access-tokens",
    }
    sandbox.control.reset()
    state = sandbox.control.state()
    assert state["destinations"] == [] and state["credentials"] == []
    assert len(state["environments"]) == 3


def test_drift_points_at_a_foreign_credential(sandbox: SandboxThread, api: httpx.Client) -> None:
    (dest,) = sandbox.control.seed(1)
    before = api.get(f"/v1/destinations/{dest}").json()["payload"]["destination"]
    new = sandbox.control.drift(dest)
    after = api.get(f"/v1/destinations/{dest}").json()["payload"]["destination"]
    assert new != before["authCredential"]
    assert after["authCredential"] == new
    assert sandbox.control.drift(dest, "made-up-id") == "made-up-id"
    assert (
        httpx.post(f"{sandbox.url}/_sandbox/drift", json={"destination_id": "x"}).status_code == 404
    )


def test_health_and_no_auth_on_control(sandbox: SandboxThread) -> None:
    assert sandbox.control.health()
    assert httpx.get(f"{sandbox.url}/_sandbox/state").status_code == 200
    assert sandbox.control.journal()["entries"] == []  # control traffic is not journaled
