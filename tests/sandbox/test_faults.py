"""Rate limit, injected faults, malformed bodies, and the journal that counts them."""

from __future__ import annotations

import json

import httpx
import pytest

from sandbox import FaultConfig, KeyPair, SandboxConfig, SandboxThread

from .conftest import get_token

pytestmark = pytest.mark.integration


def test_rate_limit_429_with_headers(sandbox: SandboxThread, api: httpx.Client) -> None:
    (dest,) = sandbox.control.seed(1)
    sandbox.control.set_rate_limit(3, window_seconds=60)
    statuses = [api.get(f"/v1/destinations/{dest}").status_code for _ in range(5)]
    assert statuses == [200, 200, 200, 429, 429]
    reply = api.get(f"/v1/destinations/{dest}")
    assert reply.headers["X-RateLimit-Limit"] == "3"
    assert "Retry-After" not in reply.headers
    assert reply.json()["errors"][0]["message"]

    sandbox.control.set_rate_limit(1, window_seconds=30, send_retry_after=True)
    assert api.get(f"/v1/destinations/{dest}").status_code == 200
    reply = api.get(f"/v1/destinations/{dest}")
    assert reply.status_code == 429
    assert 29 <= int(reply.headers["Retry-After"]) <= 30
    summary = sandbox.control.journal()["summary"]
    assert summary["by_status"]["429"] == 4
    assert summary["by_kind_status"]["get_destination:429"] == 4


def test_rate_limit_counts_token_requests(sandbox: SandboxThread, keypair: KeyPair) -> None:
    sandbox.control.set_rate_limit(1, window_seconds=60)
    get_token(sandbox, keypair)
    reply = httpx.get(f"{sandbox.base_url}/v1/authcredentials/strategies")
    assert reply.status_code == 429


def test_p503_always(sandbox: SandboxThread, api: httpx.Client) -> None:
    sandbox.control.set_faults(p503=1.0)
    reply = api.get("/v1/authcredentials/strategies")
    assert reply.status_code == 503
    assert reply.json() == {
        "meta": {"version": "1.0.0"},
        "errors": [{"message": "Service Unavailable"}],
    }
    assert sandbox.control.journal()["entries"][-1]["cause"] == "fault"


def test_html_errors(sandbox: SandboxThread, api: httpx.Client) -> None:
    sandbox.control.set_faults(p502=1.0, html_errors=True)
    reply = api.get("/v1/authcredentials/strategies")
    assert reply.status_code == 502
    assert reply.headers["content-type"].startswith("text/html")
    assert "<html>" in reply.text


def test_faults_skip_token_unless_asked(sandbox: SandboxThread, keypair: KeyPair) -> None:
    sandbox.control.set_faults(p500=1.0)
    get_token(sandbox, keypair)
    sandbox.control.patch_faults(faults_on_token=True)
    with pytest.raises(AssertionError):
        get_token(sandbox, keypair)


def test_hang_makes_the_client_time_out(sandbox: SandboxThread, api: httpx.Client) -> None:
    sandbox.control.set_faults(p_hang=1.0, hang_seconds=5)
    with pytest.raises(httpx.ReadTimeout):
        api.get("/v1/authcredentials/strategies", timeout=0.3)
    sandbox.control.set_faults(p_hang=1.0, hang_seconds=0.1)
    assert api.get("/v1/authcredentials/strategies").status_code == 504


def test_permanent_error_only_for_that_id_and_method(
    sandbox: SandboxThread, api: httpx.Client
) -> None:
    broken, fine = sandbox.control.seed(2)
    sandbox.control.set_faults(permanent={broken: 403}, permanent_methods={broken: ["PATCH"]})
    assert api.get(f"/v1/destinations/{broken}").status_code == 200
    assert api.patch(f"/v1/destinations/{broken}", json={"name": "n"}).status_code == 403
    assert api.patch(f"/v1/destinations/{fine}", json={"name": "n"}).status_code == 200
    sandbox.control.set_faults(permanent={broken: 404})
    assert api.get(f"/v1/destinations/{broken}").status_code == 404


@pytest.mark.parametrize("kind", ["non_json", "missing_payload", "wrong_types", "html"])
def test_malformed_replies(sandbox: SandboxThread, api: httpx.Client, kind: str) -> None:
    dest, other = sandbox.control.seed(2)
    sandbox.control.set_faults(malformed={dest: kind})
    assert api.get(f"/v1/destinations/{other}").json()["payload"]["destination"]["id"] == other
    reply = api.get(f"/v1/destinations/{dest}")
    assert reply.status_code == 200
    if kind in ("non_json", "html"):
        with pytest.raises(json.JSONDecodeError):
            reply.json()
    elif kind == "missing_payload":
        assert "payload" not in reply.json()
    else:
        assert not isinstance(reply.json()["payload"]["destination"]["id"], str)
    # errors stay errors: only 2xx replies are broken
    assert api.patch(f"/v1/destinations/{dest}", json={"bad": 1}).status_code == 400


def test_huge_reply(sandbox: SandboxThread, api: httpx.Client) -> None:
    (dest,) = sandbox.control.seed(1)
    sandbox.control.set_faults(malformed={dest: "huge"})
    assert len(api.get(f"/v1/destinations/{dest}").content) > 10 * 1024 * 1024


def test_latency(sandbox: SandboxThread, api: httpx.Client) -> None:
    sandbox.control.set_faults(latency_ms=150)
    reply = api.get("/v1/authcredentials/strategies")
    assert reply.elapsed.total_seconds() >= 0.15


def test_fault_config_validation(sandbox: SandboxThread) -> None:
    reply = httpx.put(f"{sandbox.url}/_sandbox/faults", json={"p500": 2})
    assert reply.status_code == 400
    reply = httpx.put(f"{sandbox.url}/_sandbox/faults", json={"nope": 1})
    assert "nope" in reply.json()["error"]
    with pytest.raises(ValueError, match="malformed"):
        FaultConfig(malformed={"x": "weird"})
    assert FaultConfig.from_dict(FaultConfig(p429=0.5).to_dict()) == FaultConfig(p429=0.5)


def test_random_faults_are_reproducible(keypair: KeyPair) -> None:
    runs = []
    for _ in range(2):
        config = SandboxConfig(
            public_key_pem=keypair.public_key_pem,
            faults=FaultConfig(p500=0.3, p503=0.3),
            random_seed=99,
        )
        with SandboxThread(config) as box:
            headers = {"Authorization": f"Bearer {get_token(box, keypair)}"}
            url = f"{box.base_url}/v1/authcredentials/strategies"
            runs.append([httpx.get(url, headers=headers).status_code for _ in range(20)])
    assert runs[0] == runs[1]
    assert {200, 500, 503} <= set(runs[0])
