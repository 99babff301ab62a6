"""Rotations that keep deliveries flowing, end to end on real processes.

A real redis-server, real workers and beat, the sandbox over HTTP with its Okta- and
Entra-style IdPs and simulated deliveries: every rotation issues a second secret at the
destination's IdP, rehearses Redox's token request with it, switches, and is watched
(short windows here: ROTATOR_VERIFY__WATCH_SECONDS=6, POLL 1 s, so a test takes seconds;
the defaults are 900 s and 60 s). Deliveries are counted by the sandbox, not by us.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from devstack.readback import decoded_messages, dump_redis
from devstack.rig import Rig
from devstack.stack import Child
from worker.redox.logs import iso_ms

pytestmark = pytest.mark.integration

FAST = {"watch_seconds": 6, "poll_seconds": 1, "rehearsal_seconds": 40}
BEAT = {"ROTATOR_SCHEDULER__TICK_SECONDS": "1"}
#: The default task-run limits (the rig's are 8 s / 10 s / 20 s, shorter than a rehearsal).
DEFAULT_RUN_LIMITS = {
    "ROTATOR_CELERY__SOFT_TIME_LIMIT": "240",
    "ROTATOR_CELERY__TIME_LIMIT": "300",
    "ROTATOR_CELERY__VISIBILITY_TIMEOUT": "3600",
}


def start_service(
    rig: Rig, kind: str, *, extra: dict[str, str] | None = None, **verify: float
) -> dict[str, str]:
    """A worker and beat configured for the sandbox's ``kind`` IdP; their env."""
    env = {**rig.idp_env(kind, **{**FAST, **verify}), **BEAT, **(extra or {})}
    rig.worker(concurrency=4, env=env)
    beat: Child = rig.stack.start_beat(env=env)
    rig.workers.append(beat)  # stopped with the test's workers
    return env


def rotate(rig: Rig, env: dict[str, str], destination_id: str, *extra: str) -> dict[str, Any]:
    """``rotator rotate DEST --wait --json`` against the stack; its JSON summary."""
    result = rig.rotator("rotate", destination_id, "--wait", "--json", *extra, env=env)
    assert result.stdout.strip(), result.stderr
    summary: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    summary["exit"] = result.returncode
    return summary


def failed_deliveries(rig: Rig, destination_id: str) -> int:
    stats = rig.control.delivery_stats()["destinations"].get(destination_id, {})
    return int(stats.get("failed", 0))


def delivered(rig: Rig, destination_id: str) -> int:
    stats = rig.control.delivery_stats()["destinations"].get(destination_id, {})
    return int(stats.get("succeeded", 0))


def wait_deliveries(rig: Rig, destination_id: str, more_than: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while delivered(rig, destination_id) <= more_than:
        assert time.monotonic() < deadline, rig.control.delivery_stats()
        time.sleep(0.2)


def secrets_of(rig: Rig, client_id: str) -> list[dict[str, str]]:
    """The client's secrets at the sandbox IdP: ``{id, status}`` (Okta or Entra)."""
    app = rig.control.idp_app(client_id)
    if "secrets" in app:
        return [{"id": s["id"], "status": s["status"]} for s in app["secrets"]]
    return [{"id": p["keyId"], "status": "ACTIVE"} for p in app["passwords"]]


@pytest.mark.parametrize("kind", ["okta", "entra"])
def test_rotation_keeps_deliveries_flowing_and_retires_the_old_secret(rig: Rig, kind: str) -> None:
    rig.control.set_deliveries(interval_seconds=0.3)
    report = rig.control.seed_report(1, idp=kind)
    (dest,) = report["destination_ids"]
    (app,) = report["apps"]
    old_secret = app["secret_id"]
    # Entra: the app's password that predates the service is removed at retirement only
    # when the policy says so (an Entra app's passwords may serve other clients).
    extra = {"ROTATOR_SECRET_SOURCE__ENTRA__REVOKE_PREEXISTING": "true"} if kind == "entra" else {}
    env = {**start_service(rig, kind, extra=extra)}
    wait_deliveries(rig, dest, 2)

    first = rotate(rig, env, dest, "--retire-now")
    assert first["exit"] == 0 and first["outcome"] == "succeeded", first
    wait_deliveries(rig, dest, delivered(rig, dest) + 2)
    secrets = secrets_of(rig, app["client_id"])
    assert old_secret not in [s["id"] for s in secrets]  # revoked at retirement
    assert len(secrets) == 1 and secrets[0]["status"] == "ACTIVE"
    assert first["oldCredentialId"] not in rig.credentials()  # deleted

    second = rotate(rig, env, dest, "--retire-now")  # a second rotation: limit respected
    assert second["exit"] == 0 and second["outcome"] == "succeeded", second
    wait_deliveries(rig, dest, delivered(rig, dest) + 2)
    assert failed_deliveries(rig, dest) == 0
    assert len(secrets_of(rig, app["client_id"])) == 1
    mine = [e for e in rig.events() if e["data"].get("rotationId") == first["rotationId"]]
    assert [e["type"] for e in mine] == [
        "rotator.rotation.started",
        "rotator.rotation.switched",
        "rotator.rotation.succeeded",
        "rotator.credential.retired",
    ]
    assert mine[-1]["data"]["credentialId"] == first["oldCredentialId"]


def patches_of(rig: Rig, destination_id: str) -> list[dict[str, Any]]:
    return [
        e
        for e in rig.journal()
        if e["kind"] == "patch_destination" and e["path"].endswith(destination_id)
    ]


def test_a_rehearsal_the_idp_rejects_never_touches_the_destination(rig: Rig) -> None:
    report = rig.control.seed_report(1, idp="okta")
    (dest,) = report["destination_ids"]
    (app,) = report["apps"]
    env = start_service(rig, "okta", rehearsal_seconds=3)
    rig.control.reject_tokens_for(app["client_id"])  # the IdP refuses every token request

    result = rotate(rig, env, dest)

    assert result["exit"] == 1 and result["outcome"] == "rolled_back", result
    assert result["error"]["class"] == "RehearsalFailed"
    assert "invalid_client" in result["error"]["message"]
    assert patches_of(rig, dest) == []
    assert not [e for e in rig.journal() if e["kind"] == "create_credential"]
    assert [s["id"] for s in secrets_of(rig, app["client_id"])] == [app["secret_id"]]
    assert rig.destination(dest)["authCredential"] == report["credential_ids"][0]


def test_a_30_second_propagation_delay_is_ridden_out_at_the_default_rehearsal(rig: Rig) -> None:
    """ROTATOR_VERIFY__REHEARSAL_SECONDS at its default (120 s)."""
    report = rig.control.seed_report(1, idp="entra")
    (dest,) = report["destination_ids"]
    rig.control.set_propagation_delay(30)
    env = start_service(rig, "entra", rehearsal_seconds=120, extra=DEFAULT_RUN_LIMITS)
    try:
        result = rotate(rig, env, dest)
    finally:
        rig.control.set_propagation_delay(0)
    assert result["exit"] == 0 and result["outcome"] == "succeeded", result.get("error")
    assert failed_deliveries(rig, dest) == 0


def test_failing_deliveries_after_the_switch_are_reverted(rig: Rig) -> None:
    rig.control.set_deliveries(interval_seconds=0.3)
    report = rig.control.seed_report(1, idp="okta")
    (dest,) = report["destination_ids"]
    (app,) = report["apps"]
    env = start_service(rig, "okta", watch_seconds=30, poll_seconds=1)
    wait_deliveries(rig, dest, 1)
    claim = rig.rotator("rotate", dest, "--json", env=env)
    rotation_id = json.loads(claim.stdout)["rotationId"]
    switched = wait_for(lambda: _switched(rig, rotation_id), 60)
    # Someone deactivates the new secret at the IdP: the new credential stops working.
    new_secret = rig.redis.hget(rig.keys.rotation(rotation_id), "new_secret_id")
    assert isinstance(new_secret, str) and new_secret
    okta = rig.control.idp_credentials()["okta"]
    httpx.post(
        f"{okta['org_url']}/api/v1/apps/{app['app_id']}/credentials/secrets/{new_secret}"
        "/lifecycle/deactivate",
        headers={"Authorization": f"SSWS {okta['api_token']}"},
    ).raise_for_status()
    rig.control.flush_delivery_tokens()  # as if the tokens Redox holds expired now

    outcome = rig.wait_terminal([rotation_id])[rotation_id]

    assert outcome == "rolled_back"
    (terminal,) = rig.terminal_events()[rotation_id]
    assert terminal["data"]["error"]["class"] == "DeliveriesFailing"
    assert rig.destination(dest)["authCredential"] == report["credential_ids"][0]
    assert terminal["data"]["newCredentialId"] not in rig.credentials()
    assert [s["id"] for s in secrets_of(rig, app["client_id"])] == [app["secret_id"]]
    # Reverted at the first look after the first failure (one search, two if the failure
    # landed while a search was under way), never a window later.
    failures = [log for log in rig.control.delivery_logs(dest) if log["status"] == "failed"]
    first_failure = min(log["createdAt"] for log in failures)
    back = [e for e in patches_of(rig, dest) if e["ts"] > switched]
    searches = [
        e
        for e in rig.journal()
        if e["kind"] == "search_logs"
        and iso_ms(e["ts"]) > first_failure
        and e["ts"] < back[-1]["ts"]
    ]
    assert 1 <= len(searches) <= 2, searches
    before = delivered(rig, dest)
    wait_deliveries(rig, dest, before + 2)  # deliveries recover on the old credential


def test_a_worker_killed_during_the_watch_is_replaced_and_the_watch_ends_once(rig: Rig) -> None:
    report = rig.control.seed_report(1, idp="okta")
    (dest,) = report["destination_ids"]
    env = start_service(rig, "okta", watch_seconds=8)
    claim = rig.rotator("rotate", dest, "--json", env=env)
    rotation_id = json.loads(claim.stdout)["rotationId"]
    wait_for(lambda: _switched(rig, rotation_id), 60)
    victim = rig.workers[0]
    victim.stop(kill=True)
    rig.worker("replacement", concurrency=2, env=env)
    assert rig.wait_terminal([rotation_id]) == {rotation_id: "succeeded"}
    rig.assert_one_terminal_each([rotation_id])
    assert failed_deliveries(rig, dest) == 0


def test_no_secret_source_is_refused_before_any_redox_call(rig: Rig) -> None:
    (dest,) = rig.seed(1)
    rig.control.clear_journal()
    result = rig.rotator("rotate", dest, env={"ROTATOR_SECRET_SOURCE__KIND": ""})
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "ROTATOR_SECRET_SOURCE__KIND" in lines[0], result.stderr
    assert rig.journal() == []  # not even a token request
    assert rig.redis.get(rig.keys.active(dest)) is None


def _switched(rig: Rig, rotation_id: str) -> float | None:
    for entry in rig.events():
        if (
            entry["type"] == "rotator.rotation.switched"
            and entry["data"]["rotationId"] == rotation_id
        ):
            raw = rig.redis.hget(rig.keys.rotation(rotation_id), "switched_at")
            return float(raw) if raw else None
    return None


def wait_for(check: Callable[[], Any], timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s")


# -- drift: a change made by hand is never overwritten ---------------------------------------


def test_a_credential_attached_by_hand_before_the_switch_stands(rig: Rig) -> None:
    report = rig.control.seed_report(1, idp="okta")
    (dest,) = report["destination_ids"]
    (app,) = report["apps"]
    env = start_service(rig, "okta")
    rig.control.hold_idp(timeout_seconds=60)  # the rotation waits at the IdP, after its read
    claim = rig.rotator("rotate", dest, "--json", env=env)
    rotation_id = json.loads(claim.stdout)["rotationId"]
    wait_for(lambda: rig.redis.hget(rig.keys.rotation(rotation_id), "old_credential_id"), 30)
    by_hand = rig.control.drift(dest)  # an engineer attaches another credential meanwhile
    rig.control.release_idp()

    assert rig.wait_terminal([rotation_id]) == {rotation_id: "failed"}
    assert rig.destination(dest)["authCredential"] == by_hand
    assert patches_of(rig, dest) == []
    mine = [e for e in rig.events() if e["data"].get("rotationId") == rotation_id]
    assert [e["type"].rsplit(".", 1)[-1] for e in mine] == ["started", "drift_detected", "failed"]
    assert mine[-1]["data"]["error"]["class"] == "DriftDetected"
    assert by_hand in mine[-1]["data"]["error"]["message"]
    assert set(rig.credentials()) == {report["credential_ids"][0], by_hand}  # ours deleted
    assert [s["id"] for s in secrets_of(rig, app["client_id"])] == [app["secret_id"]]


def test_a_credential_attached_by_hand_during_the_watch_stands(rig: Rig) -> None:
    report = rig.control.seed_report(1, idp="okta")
    (dest,) = report["destination_ids"]
    (app,) = report["apps"]
    env = start_service(rig, "okta", watch_seconds=5)
    claim = rig.rotator("rotate", dest, "--json", env=env)
    rotation_id = json.loads(claim.stdout)["rotationId"]
    wait_for(lambda: _switched(rig, rotation_id), 60)
    by_hand = rig.control.drift(dest)

    assert rig.wait_terminal([rotation_id]) == {rotation_id: "failed"}
    assert rig.destination(dest)["authCredential"] == by_hand
    assert len(patches_of(rig, dest)) == 1  # the switch; nothing switched back over them
    (terminal,) = rig.terminal_events()[rotation_id]
    assert terminal["data"]["error"]["class"] == "DriftDetected"
    assert terminal["data"]["newCredentialId"] not in rig.credentials()
    assert by_hand in rig.credentials() and report["credential_ids"][0] in rig.credentials()
    assert [s["id"] for s in secrets_of(rig, app["client_id"])] == [app["secret_id"]]


# -- a credential shared by several destinations ---------------------------------------------


@pytest.mark.parametrize("kind", ["okta", "entra"])
def test_siblings_sharing_a_credential_both_rotate_and_it_retires_when_unused(
    rig: Rig, kind: str
) -> None:
    rig.control.set_deliveries(interval_seconds=0.3)
    report = rig.control.seed_report(2, idp=kind, shared=True)
    first, second = report["destination_ids"]
    (original,) = report["credential_ids"]
    (app,) = report["apps"]
    extra = {"ROTATOR_SECRET_SOURCE__ENTRA__REVOKE_PREEXISTING": "true"} if kind == "entra" else {}
    env = start_service(rig, kind, extra=extra)
    wait_deliveries(rig, first, 1)
    wait_deliveries(rig, second, 1)

    told = rig.rotator("rotate", first, "--retire-now", env=env)  # says who shares
    assert f"is shared with {second}" in told.stderr, told.stderr
    one_id = rig.redis.get(rig.keys.active(first))
    assert isinstance(one_id, str)
    rig.wait_terminal([one_id], timeout=120)
    one = {**rig.terminal_events()[one_id][0]["data"], "outcome": "succeeded"}
    assert rig.terminal_events()[one_id][0]["type"].endswith("succeeded"), one
    assert original in rig.credentials()  # still used by the second: deferred, not an error
    assert app["secret_id"] in [s["id"] for s in secrets_of(rig, app["client_id"])]
    deferred = [e for e in rig.events() if e["type"].endswith("retirement_deferred")]
    assert deferred and deferred[0]["data"]["credentialId"] == original

    two = rotate(rig, env, second, "--retire-now")
    assert two["outcome"] == "succeeded", two
    assert two["newCredentialId"] == one["newCredentialId"]  # adopted, no third secret

    wait_deliveries(rig, first, delivered(rig, first) + 2)
    wait_deliveries(rig, second, delivered(rig, second) + 2)
    assert failed_deliveries(rig, first) == 0 and failed_deliveries(rig, second) == 0
    assert original not in rig.credentials()
    assert app["secret_id"] not in [s["id"] for s in secrets_of(rig, app["client_id"])]
    used = {rig.destination(d)["authCredential"] for d in (first, second)}
    assert used == set(rig.credentials()) == {one["newCredentialId"]}
    assert len(secrets_of(rig, app["client_id"])) == 1
    shares = json.loads(rig.rotator("status", first, "--json", env=env).stdout)
    assert shares["sharesCredentialWith"] == [second]


def test_no_idp_secret_or_management_token_is_written_anywhere(rig: Rig, tmp_path: Path) -> None:
    """Invariant 5 with IdP-issued secrets: Redis (every key, Celery's queues and decoded
    message bodies), the event stream and every service log hold none of the secrets the
    IdPs issued, their access tokens, or the management credentials."""
    okta = rig.control.seed_report(2, idp="okta")
    entra = rig.control.seed_report(1, idp="entra")
    kinds = {d: "okta" for d in okta["destination_ids"]} | {
        d: "entra" for d in entra["destination_ids"]
    }
    environment = rig.destination(entra["destination_ids"][0])["environment"]["id"]
    lines = ["[defaults]", 'interval = "30d"', ""]
    for dest, kind in kinds.items():  # each destination's own IdP, from the registry file
        lines += ["[[destinations]]", f'id = "{dest}"', f'environment = "{environment}"',
                  f'secret_source = {{ kind = "{kind}" }}', ""]  # fmt: skip
    registry = tmp_path / "registry.toml"
    registry.write_text("\n".join(lines))
    env = {
        **rig.idp_env("entra", **FAST),
        **rig.idp_env("okta", **FAST),
        **BEAT,
        "ROTATOR_REGISTRY_PATH": str(registry),
    }
    rig.worker(concurrency=4, env=env)
    rig.workers.append(rig.stack.start_beat(env=env))
    rig.control.reject_tokens_for(okta["apps"][1]["client_id"])  # one rolls back
    outcomes = {d: rotate(rig, env, d)["outcome"] for d in kinds}
    assert sorted(outcomes.values()) == ["rolled_back", "succeeded", "succeeded"], outcomes

    dump = rig.control.secrets()
    secrets = {v for key, found in dump.items() if key.startswith("idp:") for v in _values(found)}
    assert len(secrets) >= 6  # issued secrets, API token, Graph secret, access tokens
    places = dump_redis(rig.redis)
    places["kombu message bodies"] = decoded_messages([t for v in places.values() for t in v])
    places["event stream"] = [json.dumps(e) for e in rig.events()]
    places["service logs"] = rig.logs()
    found = [(place, s[:4]) for place, texts in places.items() for s in secrets
             if s in "\n".join(texts)]  # fmt: skip
    assert found == []


def _values(found: Any) -> list[str]:
    if isinstance(found, dict):
        return [v for item in found.values() for v in _values(item)]
    if isinstance(found, list):
        return [v for item in found for v in _values(item)]
    return [found] if isinstance(found, str) and len(found) >= 8 else []
