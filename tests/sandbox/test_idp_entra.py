"""The fake Entra: Graph application passwords (§B1-B5) and the v2.0 token endpoint (§B7)."""

from __future__ import annotations

import base64
import hashlib
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from sandbox import SandboxThread

pytestmark = pytest.mark.integration

GRAPH_SCOPE = "https://graph.microsoft.com/.default"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


class Entra:
    """The management client's view of the sandbox tenant."""

    def __init__(self, sandbox: SandboxThread) -> None:
        creds = sandbox.control.idp_credentials()["entra"]
        self.tenant = creds["tenant_id"]
        self.client_id = creds["client_id"]
        self.client_secret = creds["client_secret"]
        self.graph = creds["graph_url"]
        self.token_url = f"{creds['login_url']}/{self.tenant}/oauth2/v2.0/token"

    def token(
        self, client_id: str, secret: str, scope: str = GRAPH_SCOPE, **extra: str
    ) -> httpx.Response:
        form = {
            "client_id": client_id,
            "client_secret": secret,
            "grant_type": "client_credentials",
            "scope": scope,
        }
        return httpx.post(self.token_url, data={**form, **extra})

    def graph_headers(self) -> dict[str, str]:
        reply = self.token(self.client_id, self.client_secret)
        assert reply.status_code == 200, reply.text
        return {"Authorization": f"Bearer {reply.json()['access_token']}"}

    def app_url(self, app_id: str, action: str = "") -> str:
        return f"{self.graph}/applications(appId='{app_id}')" + (f"/{action}" if action else "")


@pytest.fixture
def entra(idp: SandboxThread) -> Entra:
    return Entra(idp)


@pytest.fixture
def app(idp: SandboxThread) -> dict[str, Any]:
    """An application owned by the management client, with one password."""
    return idp.control.create_idp_app("entra", label="dest-app")


def _aad(reply: httpx.Response, status: int, code: int) -> dict[str, Any]:
    assert reply.status_code == status, reply.text
    body: dict[str, Any] = reply.json()
    assert body["error_codes"] == [code]
    assert body["error_description"].startswith(f"AADSTS{code}: ")
    assert {"timestamp", "trace_id", "correlation_id"} <= set(body)
    return body


def test_graph_token_and_get_application(entra: Entra, app: dict[str, Any]) -> None:
    reply = entra.token(entra.client_id, entra.client_secret)
    assert reply.status_code == 200
    body = reply.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == 3599
    headers = {"Authorization": f"Bearer {body['access_token']}"}
    found = httpx.get(
        entra.app_url(app["app_id"]),
        headers=headers,
        params={"$select": "id,appId,passwordCredentials"},
    )
    assert found.status_code == 200
    view = found.json()
    assert set(view) == {"@odata.context", "id", "appId", "passwordCredentials"}
    assert view["appId"] == app["app_id"] and view["id"] == app["object_id"]
    (password,) = view["passwordCredentials"]
    assert password["keyId"] == app["secret_id"] and password["secretText"] is None
    assert password["hint"] == app["client_secret"][:3]
    by_object = httpx.get(f"{entra.graph}/applications/{app['object_id']}", headers=headers)
    assert by_object.json()["appId"] == app["app_id"]
    listed = httpx.get(
        f"{entra.graph}/applications",
        headers=headers,
        params={"$filter": f"appId eq '{app['app_id']}'"},
    )
    assert [a["appId"] for a in listed.json()["value"]] == [app["app_id"]]
    bad_select = httpx.get(
        entra.app_url(app["app_id"]), headers=headers, params={"$select": "nope"}
    )
    assert (
        bad_select.status_code == 400 and bad_select.json()["error"]["code"] == "Request_BadRequest"
    )
    missing = httpx.get(entra.app_url(str(uuid.uuid4())), headers=headers)
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "Request_ResourceNotFound"
    assert "request-id" in missing.json()["error"]["innerError"]


def test_graph_needs_a_graph_token(entra: Entra, app: dict[str, Any]) -> None:
    assert httpx.get(entra.app_url(app["app_id"])).status_code == 401
    api_token = entra.token(
        app["app_id"], app["client_secret"], scope=f"api://{app['app_id']}/.default"
    )
    assert api_token.status_code == 200
    reply = httpx.get(
        entra.app_url(app["app_id"]),
        headers={"Authorization": f"Bearer {api_token.json()['access_token']}"},
    )
    assert reply.status_code == 401
    assert reply.json()["error"]["code"] == "InvalidAuthenticationToken"


def test_owner_check(entra: Entra, app: dict[str, Any], idp: SandboxThread) -> None:
    headers = entra.graph_headers()
    idp.control.set_entra_owners(app["app_id"], [])
    denied = httpx.post(entra.app_url(app["app_id"], "addPassword"), headers=headers, json={})
    assert denied.status_code == 403
    assert denied.json()["error"]["code"] == "Authorization_RequestDenied"
    assert httpx.get(entra.app_url(app["app_id"]), headers=headers).status_code == 403
    listed = httpx.get(
        f"{entra.graph}/applications",
        headers=headers,
        params={"$filter": f"appId eq '{app['app_id']}'"},
    )
    assert listed.json()["value"] == []
    idp.control.set_entra_management(roles=["Application.ReadWrite.All"])
    try:
        assert (
            httpx.post(
                entra.app_url(app["app_id"], "addPassword"), headers=headers, json={}
            ).status_code
            == 200
        )
    finally:
        idp.control.set_entra_management(roles=["Application.ReadWrite.OwnedBy"])
    idp.control.set_entra_owners(app["app_id"], [entra.client_id])
    assert httpx.get(entra.app_url(app["app_id"]), headers=headers).status_code == 200


def test_add_and_remove_password(entra: Entra, app: dict[str, Any]) -> None:
    headers = entra.graph_headers()
    added = httpx.post(
        f"{entra.graph}/applications/{app['object_id']}/addPassword",
        headers=headers,
        json={"passwordCredential": {"displayName": "rotation-1"}},
    )
    assert added.status_code == 200
    new = added.json()
    assert new["displayName"] == "rotation-1" and new["hint"] == new["secretText"][:3]
    assert 16 <= len(new["secretText"]) <= 64 and new["customKeyIdentifier"] is None
    uuid.UUID(new["keyId"])
    start = datetime.fromisoformat(new["startDateTime"].replace("Z", "+00:00")[:26] + "+00:00")
    end = datetime.fromisoformat(new["endDateTime"].replace("Z", "+00:00")[:26] + "+00:00")
    assert timedelta(days=729) < end - start < timedelta(days=731)
    assert (
        entra.token(
            app["app_id"], new["secretText"], scope=f"api://{app['app_id']}/.default"
        ).status_code
        == 200
    )
    listed = httpx.get(entra.app_url(app["app_id"]), headers=headers).json()["passwordCredentials"]
    assert {p["keyId"] for p in listed} == {app["secret_id"], new["keyId"]}
    assert all(p["secretText"] is None for p in listed)
    removed = httpx.post(
        entra.app_url(app["app_id"], "removePassword"),
        headers=headers,
        json={"keyId": app["secret_id"]},
    )
    assert removed.status_code == 204
    old = entra.token(app["app_id"], app["client_secret"], scope=f"api://{app['app_id']}/.default")
    _aad(old, 401, 7000215)
    again = httpx.post(
        entra.app_url(app["app_id"], "removePassword"),
        headers=headers,
        json={"keyId": app["secret_id"]},
    )
    assert again.status_code == 404
    bad = httpx.post(
        entra.app_url(app["app_id"], "removePassword"), headers=headers, json={"keyId": "nope"}
    )
    assert bad.status_code == 400
    extra = httpx.post(
        entra.app_url(app["app_id"], "addPassword"),
        headers=headers,
        json={"passwordCredential": {"secretText": "x"}},
    )
    assert extra.status_code == 400


def test_too_many_app_passwords(entra: Entra, app: dict[str, Any], idp: SandboxThread) -> None:
    headers = entra.graph_headers()
    url = entra.app_url(app["app_id"], "addPassword")
    assert httpx.post(url, headers=headers, json={}).status_code == 200
    refused = httpx.post(url, headers=headers, json={})
    assert refused.status_code == 400
    error = refused.json()["error"]
    assert error["code"] == "TooManyAppPasswords"
    assert (
        error["message"]
        == "Not allowed to add 3 passwords. You can only add a maximum of 2 passwords."
    )
    assert error["details"] == [{"target": "passwordCredentials", "code": "TooManyAppPasswords"}]
    idp.control.set_password_limit(3)
    assert httpx.post(url, headers=headers, json={}).status_code == 200


def test_token_errors(entra: Entra, app: dict[str, Any]) -> None:
    scope = f"api://{app['app_id']}/.default"
    wrong = _aad(entra.token(app["app_id"], "not-the-secret", scope=scope), 401, 7000215)
    assert wrong["error"] == "invalid_client"
    assert f"for a secret added to app '{app['app_id']}'" in wrong["error_description"]
    no_secret = httpx.post(
        entra.token_url,
        data={"client_id": app["app_id"], "grant_type": "client_credentials", "scope": scope},
    )
    _aad(no_secret, 401, 7000216)
    _aad(entra.token(str(uuid.uuid4()), "x", scope=scope), 400, 700016)
    _aad(
        entra.token(app["app_id"], app["client_secret"], scope=f"api://{app['app_id']}"),
        400,
        1002012,
    )
    _aad(
        entra.token(app["app_id"], app["client_secret"], scope="api://unknown/.default"),
        400,
        500011,
    )
    other_tenant = entra.token_url.replace(entra.tenant, str(uuid.uuid4()))
    _aad(httpx.post(other_tenant, data={"grant_type": "client_credentials"}), 400, 90002)
    basic = httpx.post(
        entra.token_url,
        data={"grant_type": "client_credentials", "scope": scope},
        auth=(app["app_id"], app["client_secret"]),
    )
    assert basic.status_code == 200


def test_expired_secret(entra: Entra, app: dict[str, Any]) -> None:
    headers = entra.graph_headers()
    past = datetime.now(UTC) - timedelta(days=10)
    body = {
        "passwordCredential": {
            "startDateTime": past.isoformat(),
            "endDateTime": (past + timedelta(days=1)).isoformat(),
        }
    }
    expired = httpx.post(
        entra.app_url(app["app_id"], "addPassword"), headers=headers, json=body
    ).json()
    reply = entra.token(
        app["app_id"], expired["secretText"], scope=f"api://{app['app_id']}/.default"
    )
    _aad(reply, 401, 7000222)


def test_propagation_delay(entra: Entra, app: dict[str, Any], idp: SandboxThread) -> None:
    idp.control.set_propagation_delay(0.6)
    headers = entra.graph_headers()  # the management secret was made before: no delay
    new = httpx.post(entra.app_url(app["app_id"], "addPassword"), headers=headers, json={}).json()
    started = time.monotonic()
    scope = f"api://{app['app_id']}/.default"
    _aad(entra.token(app["app_id"], new["secretText"], scope=scope), 401, 7000215)
    assert entra.token(app["app_id"], app["client_secret"], scope=scope).status_code == 200
    time.sleep(max(0.0, 0.65 - (time.monotonic() - started)))
    assert entra.token(app["app_id"], new["secretText"], scope=scope).status_code == 200


def _certificate() -> tuple[bytes, bytes, bytes]:
    """(cert PEM, private key PEM, DER) of a fresh self-signed RSA certificate."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "rotator-management")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return (
        cert.public_bytes(serialization.Encoding.PEM),
        key_pem,
        cert.public_bytes(serialization.Encoding.DER),
    )


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def test_certificate_client_assertion(
    entra: Entra, app: dict[str, Any], idp: SandboxThread
) -> None:
    cert_pem, key_pem, der = _certificate()
    registered = idp.control.set_entra_management(certificate_pem=cert_pem)
    x5t = _b64url(hashlib.sha1(der).digest())
    assert x5t in registered["certificate_thumbprints"]

    def assertion(
        audience: str, headers: dict[str, str], algorithm: str = "RS256", **claims: Any
    ) -> str:
        now = int(time.time())
        body = {
            "aud": audience,
            "iss": entra.client_id,
            "sub": entra.client_id,
            "jti": str(uuid.uuid4()),
            "nbf": now,
            "iat": now,
            "exp": now + 300,
        }
        return jwt.encode({**body, **claims}, key_pem, algorithm=algorithm, headers=headers)

    def request(signed: str) -> httpx.Response:
        form = {
            "client_id": entra.client_id,
            "grant_type": "client_credentials",
            "scope": GRAPH_SCOPE,
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": signed,
        }
        return httpx.post(entra.token_url, data=form)

    good = request(assertion(entra.token_url, {"x5t": x5t}))
    assert good.status_code == 200, good.text
    headers = {"Authorization": f"Bearer {good.json()['access_token']}"}
    assert httpx.get(entra.app_url(app["app_id"]), headers=headers).status_code == 200
    s256 = _b64url(hashlib.sha256(der).digest())
    assert request(assertion(entra.token_url, {"x5t#S256": s256}, "PS256")).status_code == 200
    _aad(
        request(assertion("https://login.microsoftonline.com/x/oauth2/v2.0/token", {"x5t": x5t})),
        401,
        700016,
    )
    _aad(request(assertion(entra.token_url, {"x5t": _b64url(b"0" * 20)})), 401, 700027)
    _aad(request(assertion(entra.token_url, {"x5t": x5t}, iss=app["app_id"])), 401, 700021)
    _aad(request(assertion(entra.token_url, {"x5t": x5t}, exp=int(time.time()) - 600)), 401, 700024)
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = jwt.encode(
        {
            "aud": entra.token_url,
            "iss": entra.client_id,
            "sub": entra.client_id,
            "jti": "j",
            "exp": int(time.time()) + 60,
        },
        other_key,
        algorithm="RS256",
        headers={"x5t": x5t},
    )
    _aad(request(forged), 401, 700027)


def test_graph_rate_limit_and_faults(entra: Entra, app: dict[str, Any], idp: SandboxThread) -> None:
    headers = entra.graph_headers()
    idp.control.set_idp_settings(management_rate_limit=1, management_rate_window_seconds=30)
    assert httpx.get(entra.app_url(app["app_id"]), headers=headers).status_code == 200
    limited = httpx.get(entra.app_url(app["app_id"]), headers=headers)
    assert limited.status_code == 429
    assert 1 <= int(limited.headers["Retry-After"]) <= 30
    assert limited.json()["error"]["code"] == "TooManyRequests"
    idp.control.reset_idp_settings()
    idp.control.set_idp_faults(token_p5xx=1.0)
    broken = entra.token(entra.client_id, entra.client_secret)
    assert broken.status_code in (500, 502, 503) and "error_codes" in broken.json()
    idp.control.set_idp_faults()
    idp.control.reject_tokens_for(app["app_id"])
    _aad(
        entra.token(app["app_id"], app["client_secret"], scope=f"api://{app['app_id']}/.default"),
        401,
        7000215,
    )
    kinds = {e["kind"] for e in idp.control.journal()["entries"]}
    assert {"entra_token", "entra_get_application"} <= kinds
