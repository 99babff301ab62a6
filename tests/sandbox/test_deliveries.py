"""Simulated deliveries: token requests as Redox makes them, logs, stats, IdP seeding, holds."""

from __future__ import annotations

import threading
import time
from typing import Any

import httpx
import pytest

from sandbox import SandboxConfig, SandboxThread

from .conftest import env_id, wait_for

pytestmark = pytest.mark.integration

OKTA_BAD_SECRET = "The client secret supplied for a confidential client is invalid."
LOG_FIELDS = {
    "id",
    "createdAt",
    "updatedAt",
    "status",
    "type",
    "dataModel",
    "eventType",
    "dataMode",
    "serviceRegion",
    "source",
    "destination",
    "attempts",
}


def _stats(sandbox: SandboxThread, dest: str) -> dict[str, Any]:
    found: dict[str, Any] = sandbox.control.delivery_stats()["destinations"].get(dest, {})
    return {"succeeded": 0, "failed": 0, **found}


def _wait_counts(
    sandbox: SandboxThread, dest: str, *, succeeded: int = 0, failed: int = 0
) -> dict[str, Any]:
    def reached() -> bool:
        now = _stats(sandbox, dest)
        return bool(now["succeeded"] >= succeeded and now["failed"] >= failed)

    wait_for(reached, 5.0, f"{succeeded} succeeded / {failed} failed deliveries to {dest}")
    return _stats(sandbox, dest)


def _credential(api: httpx.Client, cred_id: str) -> dict[str, Any]:
    found: dict[str, Any] = api.get(f"/v1/authcredentials/{cred_id}").json()["payload"][
        "credential"
    ]
    return found


def test_seeded_okta_destination_delivers(idp: SandboxThread, api: httpx.Client) -> None:
    report = idp.control.seed_report(1, idp="okta")
    (dest,) = report["destination_ids"]
    (app,) = report["apps"]
    cred = _credential(api, report["credential_ids"][0])
    assert cred["url"] == f"{idp.url}/idp/okta/oauth2/default/v1/token"
    assert cred["clientId"] == app["client_id"] and cred["hasClientSecret"] is True
    assert cred["environmentId"] == env_id(idp, "Development")
    assert _wait_counts(idp, dest, succeeded=2)["failed"] == 0
    token_calls = [e for e in idp.control.journal()["entries"] if e["kind"] == "okta_token"]
    assert token_calls and all(
        e["origin"] == "delivery" and e["status"] == 200 for e in token_calls
    )
    secret = idp.control.secrets()[cred["id"]]["clientSecret"]
    assert idp.control.idp_secret_status(app["client_id"], secret)["usable"] is True


def test_switch_to_unknown_secret_fails_with_the_idp_error(
    idp: SandboxThread, api: httpx.Client
) -> None:
    report = idp.control.seed_report(1, idp="okta")
    (dest,) = report["destination_ids"]
    _wait_counts(idp, dest, succeeded=1)
    old = _credential(api, report["credential_ids"][0])
    body = {
        "name": "unknown-secret",
        "environmentId": old["environmentId"],
        "authStrategy": "OAuth_2.0_2-legged",
        "grantType": "client_credentials",
        "url": old["url"],
        "clientId": old["clientId"],
        "clientSecret": "a-secret-the-idp-never-issued",
        "scopes": "redox.deliver",
    }
    new_id = api.post("/v1/authcredentials", json=body).json()["payload"]["credential"]["id"]
    switched_at = api.patch(f"/v1/destinations/{dest}", json={"authCredential": new_id})
    assert switched_at.status_code == 200
    stats = _wait_counts(idp, dest, failed=2)
    assert stats["last_status"] == "failed" and stats["consecutive_failures"] >= 2
    error = stats["last_error"]
    assert error["status"] == 401 and error["error"] == "invalid_client"
    assert error["error_description"] == OKTA_BAD_SECRET and error["credential_id"] == new_id
    env = old["environmentId"]
    reply = api.post(
        f"/v1/environments/{env}/logs/search/metadata",
        json={"destinationId": dest, "status": "failed"},
    )
    assert reply.status_code == 200
    logs = reply.json()["payload"]["logs"]
    assert logs and all(log["status"] == "failed" for log in logs)
    latest = logs[0]["attempts"]["latest"]
    assert latest["status"] == "failed"
    assert latest["error"] == {
        "status": 401,
        "error": "invalid_client",
        "error_description": OKTA_BAD_SECRET,
    }
    ok = api.post(
        f"/v1/environments/{env}/logs/search/metadata",
        json={"destinationId": dest, "status": "succeeded"},
    )
    assert ok.json()["payload"]["logs"]
    assert idp.control.delivery_stats()["last_failure"]["destination_id"] == dest


def test_log_entry_shape(idp: SandboxThread, api: httpx.Client) -> None:
    (dest,) = idp.control.seed(1, idp="okta")
    _wait_counts(idp, dest, succeeded=1)
    log = idp.control.delivery_logs(dest)[0]
    assert set(log) == LOG_FIELDS
    assert log["type"] == "send" and log["status"] == "succeeded"
    assert log["destination"] == {"id": dest, "name": "dest-0001"}
    assert set(log["source"]) == {"id", "name"}
    assert log["attempts"]["total"] == 1 and set(log["attempts"]["latest"]) == {
        "id",
        "attemptAt",
        "status",
    }
    for stamp in (log["createdAt"], log["updatedAt"]):
        assert len(stamp) == 24 and stamp.endswith("Z") and stamp[19] == "."


def _frozen_logs(sandbox: SandboxThread, dest: str, at_least: int) -> None:
    """Wait for ``at_least`` deliveries, then stop them and let the last one land."""
    _wait_counts(sandbox, dest, succeeded=at_least)
    sandbox.control.set_deliveries(disable=[dest])
    before = -1
    while before != (now := _stats(sandbox, dest)["succeeded"]):
        before = now
        time.sleep(0.3)


def test_log_search_filters_and_paging(idp: SandboxThread, api: httpx.Client) -> None:
    (dest, other) = idp.control.seed(2, idp="okta")
    _frozen_logs(idp, dest, 5)
    idp.control.set_deliveries(disable=[other])
    env = env_id(idp, "Development")
    url = f"/v1/environments/{env}/logs/search/metadata"
    every = api.post(url, json={"destinationId": dest}).json()
    assert every["meta"]["page"]["pageType"] == "cursor" and every["meta"]["page"]["pageSize"] == 50
    assert "next" not in every["meta"]["page"]["links"]
    logs = every["payload"]["logs"]
    assert len(logs) == len(idp.control.delivery_logs(dest)) >= 5
    assert all(log["destination"]["id"] == dest for log in logs)
    stamps = [log["createdAt"] for log in logs]
    assert stamps == sorted(stamps, reverse=True)  # newest first

    paged: list[str] = []
    reply = api.post(url, params={"_count": 2}, json={"destinationId": dest}).json()
    while True:
        assert reply["meta"]["page"]["pageSize"] == 2 and len(reply["payload"]["logs"]) <= 2
        paged += [log["id"] for log in reply["payload"]["logs"]]
        nxt = reply["meta"]["page"]["links"].get("next")
        if nxt is None:
            break
        assert nxt.startswith(
            f"/v1/environments/{env}/logs/search/metadata?_cursor="
        ) and nxt.endswith("&_count=2")
        cursor = httpx.URL(nxt).params["_cursor"]
        reply = api.post(
            url, params={"_cursor": cursor, "_count": 2}, json={"destinationId": dest}
        ).json()
    assert paged == [log["id"] for log in logs]

    bound = logs[1]["createdAt"]
    recent = api.post(url, json={"destinationId": dest, "createdAfter": bound}).json()["payload"][
        "logs"
    ]
    assert {logs[0]["id"], logs[1]["id"]} <= {log["id"] for log in recent}
    assert all(log["createdAt"] >= bound for log in recent) and len(recent) < len(logs)
    older = api.post(url, json={"destinationId": dest, "createdBefore": bound}).json()["payload"][
        "logs"
    ]
    assert logs[1]["id"] in {log["id"] for log in older} and logs[0]["id"] not in {
        log["id"] for log in older
    }
    assert (
        api.post(url, json={"destinationId": dest, "status": "failed"}).json()["payload"]["logs"]
        == []
    )
    source = logs[0]["source"]["id"]
    both = api.post(url, json={"sourceId": source}).json()["payload"]["logs"]
    assert {log["destination"]["id"] for log in both} == {dest, other}
    staging = env_id(idp, "Staging")
    assert (
        api.post(f"/v1/environments/{staging}/logs/search/metadata", json={}).json()["payload"][
            "logs"
        ]
        == []
    )


def test_log_search_is_strict(idp: SandboxThread, api: httpx.Client) -> None:
    (dest,) = idp.control.seed(1, idp="okta")
    _frozen_logs(idp, dest, 3)
    env = env_id(idp, "Development")
    url = f"/v1/environments/{env}/logs/search/metadata"
    for body in (
        {"destination": dest},
        {"destinationId": [dest]},
        {"status": 1},
        {"status": "broken"},
        {"dataMode": "stream"},
        {"createdAfter": "2026-01-01T00:00:00Z"},
        {"createdAfter": "2026-13-01T00:00:00.000Z"},
        {"updatedBefore": "yesterday"},
        [dest],
    ):
        assert api.post(url, json=body).status_code == 400, body
    assert (
        api.post(url, content=b"{", headers={"Content-Type": "application/json"}).status_code == 400
    )
    for count in ("0", "51", "ten", "-1"):
        assert api.post(url, params={"_count": count}, json={}).status_code == 400, count
    assert api.post(url, params={"_cursor": "made-up"}, json={}).status_code == 400
    first = api.post(url, params={"_count": 1}, json={"destinationId": dest}).json()
    cursor = httpx.URL(first["meta"]["page"]["links"]["next"]).params["_cursor"]
    assert api.post(url, params={"_cursor": cursor, "_count": 1}, json={}).status_code == 400
    assert (
        api.post(
            url, params={"_cursor": cursor, "_count": 1}, json={"destinationId": dest}
        ).status_code
        == 200
    )
    assert api.post(url, params={"page": 2}, json={}).status_code == 400
    assert api.post("/v1/environments/nope/logs/search/metadata", json={}).status_code == 404
    assert httpx.post(f"{idp.base_url}{url}", json={}).status_code == 401
    assert idp.control.journal()["summary"]["by_kind"]["search_logs"] >= 15


def test_shared_seed_one_app_one_credential_one_token(idp: SandboxThread) -> None:
    report = idp.control.seed_report(3, idp="okta", shared=True)
    ids = report["destination_ids"]
    assert len(ids) == 3 and len(report["credential_ids"]) == 1
    (app,) = report["apps"]
    assert app["destination_ids"] == ids and app["credential_id"] == report["credential_ids"][0]
    state = idp.control.state()
    assert {d["authCredential"] for d in state["destinations"]} == set(report["credential_ids"])
    assert len(idp.control.idp_apps()["okta"]) == 1
    for dest in ids:
        _wait_counts(idp, dest, succeeded=2)
    delivery_tokens = [
        e
        for e in idp.control.journal()["entries"]
        if e["kind"] == "okta_token" and e["origin"] == "delivery"
    ]
    assert len(delivery_tokens) == 1  # cached per credential


def test_entra_deliveries_fail_once_the_password_is_removed(idp: SandboxThread) -> None:
    report = idp.control.seed_report(1, idp="entra")
    (dest,) = report["destination_ids"]
    (app,) = report["apps"]
    _wait_counts(idp, dest, succeeded=1)
    creds = idp.control.idp_credentials()["entra"]
    token = httpx.post(
        f"{creds['login_url']}/{creds['tenant_id']}/oauth2/v2.0/token",
        data={
            "client_id": creds["client_id"],
            "client_secret": creds["client_secret"],
            "grant_type": "client_credentials",
            "scope": "https://graph.microsoft.com/.default",
        },
    ).json()["access_token"]
    removed = httpx.post(
        f"{creds['graph_url']}/applications(appId='{app['app_id']}')/removePassword",
        headers={"Authorization": f"Bearer {token}"},
        json={"keyId": app["secret_id"]},
    )
    assert removed.status_code == 204
    before = _stats(idp, dest)["succeeded"]
    time.sleep(0.5)
    assert _stats(idp, dest)["succeeded"] > before  # the cached token still works
    idp.control.flush_delivery_tokens()
    error = _wait_counts(idp, dest, failed=1)["last_error"]
    assert error["status"] == 401 and error["error"] == "invalid_client"
    assert error["error_description"].startswith("AADSTS7000215: ")


def test_rejected_client_and_non_loopback_urls_fail(idp: SandboxThread) -> None:
    report = idp.control.seed_report(1, idp="okta")
    (dest,) = report["destination_ids"]
    _wait_counts(idp, dest, succeeded=1)
    idp.control.reject_tokens_for(report["apps"][0]["client_id"])
    assert idp.control.flush_delivery_tokens() == 1
    wait_for(lambda: idp.control.flush_delivery_tokens() == 0 and _stats(idp, dest)["failed"] > 0)
    assert _stats(idp, dest)["last_error"]["error"] == "invalid_client"
    (plain,) = idp.control.seed(1, deliveries=True)  # no IdP: https://auth.example.test
    error = _wait_counts(idp, plain, failed=1)["last_error"]
    assert error["status"] is None and error["error"] == "sandbox_refused"
    assert not any("example.test" in e["path"] for e in idp.control.journal()["entries"])


def test_delivery_controls(idp: SandboxThread) -> None:
    (dest,) = idp.control.seed(1, idp="okta")
    assert dest in idp.control.deliveries()["enabled"]
    idp.control.set_deliveries(disable=[dest])
    assert dest not in idp.control.deliveries()["enabled"]
    reply = httpx.patch(f"{idp.url}/_sandbox/deliveries", json={"enable": ["nope"]})
    assert reply.status_code == 404
    assert (
        httpx.patch(f"{idp.url}/_sandbox/deliveries", json={"interval_seconds": 0}).status_code
        == 400
    )
    assert (
        httpx.post(
            f"{idp.url}/_sandbox/seed",
            json={"count": 1, "idp": "okta", "environment_flag": "Staging"},
        ).status_code
        == 400
    )
    assert (
        httpx.post(f"{idp.url}/_sandbox/seed", json={"count": 1, "idp": "keycloak"}).status_code
        == 400
    )


def test_hold_freezes_creates_until_released(idp: SandboxThread) -> None:
    app = idp.control.create_idp_app("okta")
    creds = idp.control.idp_credentials()["okta"]
    headers = {"Authorization": f"SSWS {creds['api_token']}"}
    url = f"{creds['org_url']}/api/v1/apps/{app['app_id']}/credentials/secrets"
    idp.control.hold_idp(timeout_seconds=10)
    result: dict[str, httpx.Response] = {}
    worker = threading.Thread(
        target=lambda: result.update(reply=httpx.post(url, headers=headers, json={}, timeout=20))
    )
    worker.start()
    try:
        wait_for(lambda: idp.control.idp_hold()["waiting"] == 1, 5.0, "the create call to be held")
        time.sleep(0.2)
        assert worker.is_alive() and "reply" not in result
        assert httpx.get(url, headers=headers).status_code == 200  # the loop is not blocked
        assert len(httpx.get(url, headers=headers).json()) == 1
    finally:
        released = idp.control.release_idp()
        worker.join(10)
    assert released["released"] == 1
    assert result["reply"].status_code == 201
    (entry,) = [e for e in idp.control.journal()["entries"] if e["kind"] == "okta_create_secret"]
    assert entry["cause"] == "held" and entry["status"] == 201


def test_hold_times_out(idp: SandboxThread) -> None:
    app = idp.control.create_idp_app("entra")
    creds = idp.control.idp_credentials()["entra"]
    token = httpx.post(
        f"{creds['login_url']}/{creds['tenant_id']}/oauth2/v2.0/token",
        data={
            "client_id": creds["client_id"],
            "client_secret": creds["client_secret"],
            "grant_type": "client_credentials",
            "scope": "https://graph.microsoft.com/.default",
        },
    ).json()["access_token"]
    idp.control.hold_idp(timeout_seconds=0.4)
    started = time.monotonic()
    reply = httpx.post(
        f"{creds['graph_url']}/applications(appId='{app['app_id']}')/addPassword",
        headers={"Authorization": f"Bearer {token}"},
        json={},
    )
    assert reply.status_code == 200
    assert 0.35 <= time.monotonic() - started < 3


def test_config_seed_with_idp_and_clean_stop() -> None:
    config = SandboxConfig(seed=2, idp="entra", deliveries_every_seconds=0.1)
    server = SandboxThread(config).start()
    try:
        ids = [d["id"] for d in server.control.state()["destinations"]]
        assert len(ids) == 2
        creds = server.control.state()["credentials"]
        assert all(c["url"].startswith(f"{server.url}/idp/entra/login/") for c in creds)
        for dest in ids:
            _wait_counts(server, dest, succeeded=2)
    finally:
        started = time.monotonic()
        server.stop()
    assert time.monotonic() - started < 5
    assert server._thread is None
