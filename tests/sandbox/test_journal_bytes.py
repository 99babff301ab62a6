"""The journal's body bytes per request, and filler credentials (``POST /_sandbox/credentials``)."""

from __future__ import annotations

import httpx
import pytest

from sandbox import SandboxThread

from .conftest import env_id

pytestmark = pytest.mark.integration


def _entries(sandbox: SandboxThread, since: int) -> list[dict[str, object]]:
    entries: list[dict[str, object]] = sandbox.control.journal(since=since)["entries"]
    return entries


def test_journal_records_body_bytes_per_request(sandbox: SandboxThread, api: httpx.Client) -> None:
    (dest,) = sandbox.control.seed(1)
    mark = sandbox.control.journal()["next"]
    got = api.get(f"/v1/destinations/{dest}")
    patch = api.build_request("PATCH", f"/v1/destinations/{dest}", json={"name": "renamed"})
    patched = api.send(patch)
    missing = api.get("/v1/authcredentials/missing")
    assert (got.status_code, patched.status_code, missing.status_code) == (200, 200, 404)
    entries = _entries(sandbox, mark)
    assert [(e["kind"], e["request_bytes"], e["response_bytes"]) for e in entries] == [
        ("get_destination", 0, len(got.content)),
        ("patch_destination", len(patch.content), len(patched.content)),
        ("get_credential", 0, len(missing.content)),
    ]
    assert len(patch.content) > 0 and len(got.content) > 100

    summary = sandbox.control.journal(since=mark)["summary"]
    assert summary["request_bytes"] == len(patch.content)
    assert summary["response_bytes"] == len(got.content) + len(patched.content) + len(
        missing.content
    )
    assert summary["bytes_by_kind"] == {
        "get_destination": {"request": 0, "response": len(got.content)},
        "patch_destination": {"request": len(patch.content), "response": len(patched.content)},
        "get_credential": {"request": 0, "response": len(missing.content)},
    }
    # The token request of the `api` fixture: a form body in, a JSON token out.
    (token,) = [e for e in _entries(sandbox, 0) if e["kind"] == "token"]
    assert isinstance(token["request_bytes"], int) and token["request_bytes"] > 500
    assert isinstance(token["response_bytes"], int) and token["response_bytes"] > 100


def test_idp_entries_carry_no_byte_counts(sandbox: SandboxThread) -> None:
    mark = sandbox.control.journal()["next"]
    httpx.get(f"{sandbox.url}/idp/okta/api/v1/apps/nope/credentials/secrets", timeout=10)
    view = sandbox.control.journal(since=mark)
    (entry,) = view["entries"]
    assert entry["kind"] == "okta_list_secrets"
    assert (entry["request_bytes"], entry["response_bytes"]) == (None, None)  # not measured
    summary = view["summary"]
    assert (summary["request_bytes"], summary["response_bytes"]) == (0, 0)
    assert summary["bytes_by_kind"] == {}


def test_bytes_are_what_was_sent_on_faults_and_limits(
    sandbox: SandboxThread, api: httpx.Client
) -> None:
    (dest,) = sandbox.control.seed(1)
    # A malformed reply: the bytes of the broken body that went out, not of the original.
    sandbox.control.patch_faults(malformed={dest: "non_json"})
    mark = sandbox.control.journal()["next"]
    broken = api.get(f"/v1/destinations/{dest}")
    (entry,) = _entries(sandbox, mark)
    assert entry["cause"] == "malformed" and entry["response_bytes"] == len(broken.content)
    sandbox.control.set_faults()
    # A 429 answered before the body was read still counts the body the client sent.
    sandbox.control.set_rate_limit(1, 300)
    body = {"name": "x" * 1000}
    first = api.get(f"/v1/destinations/{dest}")
    mark = sandbox.control.journal()["next"]
    limited = api.send(api.build_request("PATCH", f"/v1/destinations/{dest}", json=body))
    assert (first.status_code, limited.status_code) == (200, 429)
    (entry,) = _entries(sandbox, mark)
    assert entry["cause"] == "ratelimit"
    assert entry["request_bytes"] == len(limited.request.content) > 1000
    assert entry["response_bytes"] == len(limited.content)


def test_fillers_fill_an_environment_without_destinations(
    sandbox: SandboxThread, api: httpx.Client
) -> None:
    staging = env_id(sandbox, "Staging")
    (dest,) = sandbox.control.seed(1, "Staging")
    mark = sandbox.control.journal()["next"]
    report = sandbox.control.add_credentials(9_999, environment_id=staging)
    assert report == {"environment_id": staging, "created": 9_999, "credentials": 10_000}
    more = sandbox.control.add_credentials(2, environment_id=staging)
    assert more["credentials"] == 10_002
    assert sandbox.control.journal(since=mark)["entries"] == []  # control traffic: not journaled

    listed = api.get(f"/v1/environments/{staging}/authcredentials")
    assert listed.status_code == 200
    credentials = listed.json()["payload"]["credentials"]
    fillers = [c for c in credentials if c["name"].startswith("filler-")]
    assert len(credentials) == 10_002 and len(fillers) == 10_001
    assert [c["name"] for c in fillers[:2]] == ["filler-00001", "filler-00002"]
    assert fillers[-1]["name"] == "filler-10001"
    first = fillers[0]
    assert first["authStrategy"] == "OAuth_2.0_2-legged" and first["hasClientSecret"] is True
    assert first["environmentId"] == staging and first["clientId"] == "filler-00001-client"
    assert len({c["id"] for c in credentials}) == len(credentials)
    # The list is what grows: ~5 MB for this environment, all of it journaled.
    (entry,) = [e for e in _entries(sandbox, mark) if e["kind"] == "list_credentials"]
    assert entry["response_bytes"] == len(listed.content) > 4 * 1024 * 1024

    # No destination uses a filler, so one can be deleted; the seeded one is untouched.
    assert api.delete(f"/v1/authcredentials/{first['id']}").status_code in (200, 204)
    state = sandbox.control.state()
    assert [d["id"] for d in state["destinations"]] == [dest]


def test_fillers_default_environment_and_bad_requests(sandbox: SandboxThread) -> None:
    control = sandbox.control
    first_env = control.state()["environments"][0]["id"]
    assert control.add_credentials(3) == {
        "environment_id": first_env,
        "created": 3,
        "credentials": 3,
    }
    for body, status in [
        ({"count": -1}, 400),
        ({"count": "5"}, 400),
        ({"count": True}, 400),
        ({}, 400),
        ({"count": 1, "environment_id": 7}, 400),
        ({"count": 1, "shared": True}, 400),
        ({"count": 1, "environment_id": "no-such-environment"}, 404),
    ]:
        reply = httpx.post(f"{sandbox.url}/_sandbox/credentials", json=body)
        assert reply.status_code == status, body
    assert len(control.state()["credentials"]) == 3
