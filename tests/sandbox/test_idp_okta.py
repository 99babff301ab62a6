"""The fake Okta: client-secret management API (§A1-A4) and the token endpoint (§A6)."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from sandbox import SandboxThread

pytestmark = pytest.mark.integration

BAD_SECRET = "The client secret supplied for a confidential client is invalid."


class Okta:
    """Management calls and token requests against the sandbox's Okta org."""

    def __init__(self, sandbox: SandboxThread) -> None:
        creds = sandbox.control.idp_credentials()["okta"]
        self.org = creds["org_url"]
        self.token_url = creds["token_url"]
        self.headers = {"Authorization": f"SSWS {creds['api_token']}"}

    def secrets_url(self, app_id: str, *rest: str) -> str:
        return "/".join([f"{self.org}/api/v1/apps/{app_id}/credentials/secrets", *rest])

    def create(self, app_id: str, body: Any = None) -> httpx.Response:
        return httpx.post(
            self.secrets_url(app_id), headers=self.headers, json={} if body is None else body
        )

    def lifecycle(self, app_id: str, secret_id: str, action: str) -> httpx.Response:
        url = self.secrets_url(app_id, secret_id, "lifecycle", action)
        return httpx.post(url, headers=self.headers)

    def delete(self, app_id: str, secret_id: str) -> httpx.Response:
        return httpx.delete(self.secrets_url(app_id, secret_id), headers=self.headers)

    def token(
        self,
        client_id: str,
        secret: str,
        *,
        basic: bool = True,
        scope: str | None = "redox.deliver",
    ) -> httpx.Response:
        form = {"grant_type": "client_credentials"}
        if scope is not None:
            form["scope"] = scope
        if basic:
            return httpx.post(self.token_url, data=form, auth=(client_id, secret))
        return httpx.post(
            self.token_url, data={**form, "client_id": client_id, "client_secret": secret}
        )


@pytest.fixture
def okta(idp: SandboxThread) -> Okta:
    return Okta(idp)


@pytest.fixture
def app(idp: SandboxThread) -> dict[str, Any]:
    """An Okta app with one ACTIVE secret (made through the control API)."""
    return idp.control.create_idp_app("okta", label="test-app")


def _cause(reply: httpx.Response) -> str:
    body = reply.json()
    assert body["errorCode"] == "E0000001" and body["errorLink"] == "E0000001"
    cause: str = body["errorCauses"][0]["errorSummary"]
    return cause


def test_management_needs_an_ssws_api_token(okta: Okta, app: dict[str, Any]) -> None:
    url = okta.secrets_url(app["app_id"])
    for headers in (
        {},
        {"Authorization": "SSWS wrong"},
        {"Authorization": f"Bearer {okta.headers['Authorization'][5:]}"},
    ):
        reply = httpx.get(url, headers=headers)
        assert reply.status_code == 401
        assert reply.json()["errorCode"] == "E0000011"
        assert reply.json()["errorSummary"] == "Invalid token provided"
    ok = httpx.get(url, headers=okta.headers)
    assert ok.status_code == 200
    assert {"x-rate-limit-limit", "x-rate-limit-remaining", "x-rate-limit-reset"} <= set(ok.headers)


def test_secret_objects_plaintext_only_on_create(okta: Okta, app: dict[str, Any]) -> None:
    listed = httpx.get(okta.secrets_url(app["app_id"]), headers=okta.headers).json()
    assert [s["id"] for s in listed] == [app["secret_id"]]
    first = listed[0]
    assert first["status"] == "ACTIVE"
    assert first["client_secret"] != app["client_secret"] and "......" in first["client_secret"]
    assert set(first["_links"]) == {"deactivate"}
    assert len(first["secret_hash"]) == 22
    created = okta.create(app["app_id"])
    assert created.status_code == 201
    body = created.json()
    assert body["id"].startswith("ocs") and len(body["id"]) == 20 and body["id"][3:].isalnum()
    assert len(body["client_secret"]) >= 32 and "......" not in body["client_secret"]
    again = httpx.get(okta.secrets_url(app["app_id"], body["id"]), headers=okta.headers).json()
    assert again["client_secret"] != body["client_secret"]
    assert again["created"].endswith("Z") and again["lastUpdated"] == again["created"]


def test_two_secret_objects_at_most(okta: Okta, app: dict[str, Any]) -> None:
    second = okta.create(app["app_id"], {"status": "INACTIVE"})
    assert second.status_code == 201 and second.json()["status"] == "INACTIVE"
    third = okta.create(app["app_id"])
    assert third.status_code == 400
    assert third.json()["errorSummary"] == "Api validation failed: OAuth2ClientSecretMediated"
    assert _cause(third) == "You've reached the maximum number of client secrets per client."
    assert okta.delete(app["app_id"], second.json()["id"]).status_code == 204
    assert okta.create(app["app_id"]).status_code == 201


def test_deactivate_then_delete_and_only_active_refusal(okta: Okta, app: dict[str, Any]) -> None:
    old = app["secret_id"]
    refused = okta.lifecycle(app["app_id"], old, "deactivate")
    assert refused.status_code == 400
    assert _cause(refused) == "You can't deactivate the only active client secret."
    new = okta.create(app["app_id"]).json()
    deleted = okta.delete(app["app_id"], old)
    assert deleted.status_code == 400
    assert _cause(deleted) == (
        "You can't delete an active client secret. Deactivate the secret before deleting it."
    )
    off = okta.lifecycle(app["app_id"], old, "deactivate")
    assert off.status_code == 200 and off.json()["status"] == "INACTIVE"
    assert set(off.json()["_links"]) == {"activate", "delete"}
    assert okta.token(app["client_id"], app["client_secret"]).status_code == 401
    assert okta.token(app["client_id"], new["client_secret"]).status_code == 200
    assert okta.delete(app["app_id"], old).status_code == 204
    assert okta.delete(app["app_id"], old).json()["errorCode"] == "E0000007"
    listed = httpx.get(okta.secrets_url(app["app_id"]), headers=okta.headers).json()
    assert [s["id"] for s in listed] == [new["id"]]


def test_unknown_app_and_secret_are_404(okta: Okta, app: dict[str, Any]) -> None:
    reply = httpx.get(okta.secrets_url("0oaNOPE"), headers=okta.headers)
    assert reply.status_code == 404
    assert reply.json()["errorSummary"] == "Not found: Resource not found: 0oaNOPE (AppInstance)"
    reply = okta.lifecycle(app["app_id"], "ocsMISSING", "activate")
    assert reply.status_code == 404
    assert reply.json()["errorCode"] == "E0000007"
    assert reply.json()["errorCauses"] == []


def test_create_body_is_strict(okta: Okta, app: dict[str, Any]) -> None:
    assert _cause(okta.create(app["app_id"], {"client_secret": "short"})).startswith(
        "client_secret: 'client_secret' must be at least '14'"
    )
    assert okta.create(app["app_id"], {"status": "ENABLED"}).status_code == 400
    assert okta.create(app["app_id"], {"name": "x"}).status_code == 400
    assert okta.create(app["app_id"], []).json()["errorCode"] == "E0000003"
    supplied = "my-own-secret-value-0123456789"
    made = okta.create(app["app_id"], {"client_secret": supplied})
    assert made.status_code == 201 and made.json()["client_secret"] == supplied
    assert okta.token(app["client_id"], supplied).status_code == 200


def test_token_basic_or_post_never_both(okta: Okta, app: dict[str, Any]) -> None:
    cid, secret = app["client_id"], app["client_secret"]
    basic = okta.token(cid, secret)
    assert basic.status_code == 200
    body = basic.json()
    assert set(body) == {"access_token", "token_type", "expires_in", "scope"}
    assert body["token_type"] == "Bearer" and body["expires_in"] == 3600
    assert body["scope"] == "redox.deliver"
    assert okta.token(cid, secret, basic=False).status_code == 200
    form = {"grant_type": "client_credentials", "scope": "redox.deliver", "client_id": cid}
    both = httpx.post(okta.token_url, data=form, auth=(cid, secret))
    assert both.status_code == 400
    assert both.json()["error"] == "invalid_request"
    assert both.json()["error_description"].startswith("Cannot supply multiple client credentials")
    wrong = okta.token(cid, secret + "x")
    assert wrong.status_code == 401
    assert wrong.json() == {"error": "invalid_client", "error_description": BAD_SECRET}
    none = httpx.post(
        okta.token_url, data={"grant_type": "client_credentials", "scope": "redox.deliver"}
    )
    assert none.status_code == 401 and none.json()["error"] == "invalid_client"


def test_token_scope_and_grant_rules(okta: Okta, app: dict[str, Any], idp: SandboxThread) -> None:
    cid, secret = app["client_id"], app["client_secret"]
    missing = okta.token(cid, secret, scope=None)
    assert missing.status_code == 400
    assert missing.json() == {
        "error": "invalid_scope",
        "error_description": "No scopes were requested.",
    }
    assert okta.token(cid, secret, scope="unknown.scope").json()["error"] == "invalid_scope"
    idp.control.create_idp_app("okta", label="other", scopes=["other.scope"], secret=False)
    assert okta.token(cid, secret, scope="other.scope").json()["error"] == "access_denied"
    grant = httpx.post(
        okta.token_url,
        data={"grant_type": "password", "scope": "redox.deliver"},
        auth=(cid, secret),
    )
    assert grant.status_code == 400 and grant.json()["error"] == "unsupported_grant_type"
    as_json = httpx.post(
        okta.token_url, json={"grant_type": "client_credentials"}, auth=(cid, secret)
    )
    assert as_json.status_code == 400 and as_json.json()["error"] == "invalid_request"
    other_server = okta.token_url.replace("/default/", "/aus123/")
    assert httpx.post(other_server, data={"scope": "x"}, auth=(cid, secret)).status_code == 404


def test_custom_client_id_differs_from_app_id(okta: Okta, idp: SandboxThread) -> None:
    made = idp.control.create_idp_app("okta", client_id="redox-webhook-client")
    assert made["app_id"].startswith("0oa") and made["client_id"] == "redox-webhook-client"
    assert okta.token("redox-webhook-client", made["client_secret"]).status_code == 200
    assert okta.token(made["app_id"], made["client_secret"]).status_code == 401


def test_propagation_delay(okta: Okta, app: dict[str, Any], idp: SandboxThread) -> None:
    idp.control.set_propagation_delay(0.6)
    new = okta.create(app["app_id"]).json()
    started = time.monotonic()
    early = okta.token(app["client_id"], new["client_secret"])
    assert early.status_code == 401
    assert early.json()["error_description"] == BAD_SECRET
    status = idp.control.idp_secret_status(app["client_id"], new["client_secret"])
    assert status["known"] and status["active"] and not status["usable"]
    assert okta.token(app["client_id"], app["client_secret"]).status_code == 200  # old one works
    time.sleep(max(0.0, 0.65 - (time.monotonic() - started)))
    assert okta.token(app["client_id"], new["client_secret"]).status_code == 200


def test_management_rate_limit_and_faults(
    okta: Okta, app: dict[str, Any], idp: SandboxThread
) -> None:
    idp.control.set_idp_settings(management_rate_limit=2, management_rate_window_seconds=30)
    url = okta.secrets_url(app["app_id"])
    first = httpx.get(url, headers=okta.headers)
    assert first.headers["x-rate-limit-limit"] == "2"
    assert first.headers["x-rate-limit-remaining"] == "1"
    assert httpx.get(url, headers=okta.headers).status_code == 200
    limited = httpx.get(url, headers=okta.headers)
    assert limited.status_code == 429
    assert limited.json()["errorCode"] == "E0000047"
    assert limited.headers["x-rate-limit-remaining"] == "0"
    assert int(limited.headers["x-rate-limit-reset"]) >= int(time.time())
    assert okta.token(app["client_id"], app["client_secret"]).status_code == 200  # not management
    idp.control.reset_idp_settings()
    idp.control.set_idp_faults(management_p5xx=1.0)
    broken = httpx.get(url, headers=okta.headers)
    assert broken.status_code in (500, 502, 503) and broken.json()["errorCode"] == "E0000009"
    idp.control.set_idp_faults(token_p429=1.0)
    assert httpx.get(url, headers=okta.headers).status_code == 200
    assert okta.token(app["client_id"], app["client_secret"]).status_code == 429
    idp.control.set_idp_faults()
    idp.control.reject_tokens_for(app["client_id"])
    assert okta.token(app["client_id"], app["client_secret"]).json()["error"] == "invalid_client"
    kinds = [e["kind"] for e in idp.control.journal()["entries"] if e["origin"] != "delivery"]
    assert kinds.count("okta_list_secrets") == 5 and "okta_token" in kinds
