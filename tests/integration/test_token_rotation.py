"""Verification-token rotation end to end: the receiver's store is AWS Secrets Manager
(moto's server over real HTTP), the receiver is the sandbox's, which accepts the store's
AWSCURRENT and AWSPENDING tokens and refreshes its copy every second; Redox is the sandbox.
Short windows here (hand-over 3 s, watch 6 s, poll 1 s; the defaults are 60 s, 900 s, 60 s).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import boto3
import pytest

from devstack.readback import decoded_messages, dump_redis
from devstack.rig import Rig, outcome_of
from tests.integration.test_idp_rotation import delivered, failed_deliveries, wait_deliveries

pytestmark = pytest.mark.integration

REGION = "us-east-1"
AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_EC2_METADATA_DISABLED": "true",
}
WATCH = {
    "ROTATOR_VERIFY__WATCH_SECONDS": "6",
    "ROTATOR_VERIFY__POLL_SECONDS": "1",
    "ROTATOR_SCHEDULER__TICK_SECONDS": "1",
}


def secrets_manager(url: str) -> Any:
    return boto3.client(
        "secretsmanager",
        endpoint_url=url,
        region_name=REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def token_of(rig: Rig, destination_id: str) -> str:
    """The token Redox (the sandbox) sends to the destination now."""
    return str(rig.control.secrets()[destination_id]["verificationToken"])


def labelled(url: str, secret: str) -> dict[str, str]:
    """Staging label -> value, for the labels the rotation cares about."""
    client = secrets_manager(url)
    found = {}
    for label in ("AWSCURRENT", "AWSPENDING", "AWSPREVIOUS"):
        try:
            reply = client.get_secret_value(SecretId=secret, VersionStage=label)
        except client.exceptions.ResourceNotFoundException:
            continue
        found[label] = reply["SecretString"]
    return found


def receiver(rig: Rig, url: str, destination_id: str, *, accept_pending: bool = True) -> str:
    """A store holding the destination's current token, read by its sandbox receiver."""
    secret = f"receivers/{destination_id}/verification-token"
    secrets_manager(url).create_secret(Name=secret, SecretString=token_of(rig, destination_id))
    rig.control.set_token_store(
        destination_id,
        endpoint_url=url,
        secret_id=secret,
        region=REGION,
        refresh_seconds=1.0,
        accept_pending=accept_pending,
    )
    return secret


def service(
    rig: Rig,
    tmp_path: Path,
    url: str,
    stores: dict[str, str],
    *,
    crash_after: str | None = None,
    **extra: str,
) -> dict[str, str]:
    """Registry with each destination's token policy; a worker (prefork, killing its pool
    process once after ``crash_after``, if given) and beat; their env."""
    lines = ["[defaults]", 'interval = "30d"', ""]
    for dest, secret in stores.items():
        environment = rig.destination(dest)["environment"]["id"]
        lines += [
            "[[destinations]]", f'id = "{dest}"', f'environment = "{environment}"',
            "[destinations.verification_token]", 'handover = "3s"',
            f'sink = {{ kind = "aws-secrets-manager", secret_id = "{secret}", '
            f'region = "{REGION}", endpoint_url = "{url}" }}', "",
        ]  # fmt: skip
    registry = tmp_path / "registry.toml"
    registry.write_text("\n".join(lines))
    env = {**AWS_ENV, **WATCH, "ROTATOR_REGISTRY_PATH": str(registry), **extra}
    if crash_after is None:
        rig.worker(concurrency=4, env=env)
    else:
        rig.worker(pool="prefork", concurrency=1, env=env, crash_after=crash_after)
    rig.workers.append(rig.stack.start_beat(env=env))
    return env


def rotate_token(rig: Rig, env: dict[str, str], destination_id: str) -> dict[str, Any]:
    result = rig.rotator(
        "rotate", destination_id, "--verification-token", "--wait", "--json", env=env
    )
    assert result.stdout.strip(), result.stderr
    summary: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    summary["exit"] = result.returncode
    return summary


def test_a_token_rotation_keeps_every_delivery_and_promotes_the_new_token(
    rig: Rig, tmp_path: Path, moto_url: str
) -> None:
    rig.control.set_deliveries(interval_seconds=0.3)
    (dest,) = rig.seed(1)
    old = token_of(rig, dest)
    secret = receiver(rig, moto_url, dest)
    env = service(rig, tmp_path, moto_url, {dest: secret})
    wait_deliveries(rig, dest, 2)

    done = rotate_token(rig, env, dest)
    assert done["exit"] == 0 and done["outcome"] == "succeeded", done
    assert done["kind"] == "verification_token"
    new = token_of(rig, dest)
    assert new != old and len(new) >= 64
    assert labelled(moto_url, secret) == {"AWSCURRENT": new, "AWSPREVIOUS": old}
    wait_deliveries(rig, dest, delivered(rig, dest) + 2)
    assert failed_deliveries(rig, dest) == 0
    mine = [e for e in rig.events() if e["data"].get("rotationId") == done["rotationId"]]
    assert [outcome_of(e) for e in mine] == ["started", "switched", "succeeded"]
    assert {e["data"]["kind"] for e in mine} == {"verification_token"}
    assert all(e["data"]["newCredentialId"] is None for e in mine)
    credential = rig.destination(dest)["authCredential"]
    assert credential == rig.originals()[dest]  # the credential was not touched
    patches = [e for e in rig.journal() if e["kind"] == "patch_destination"]
    assert len(patches) == 1
    # The tokens never left the task: not in Redis, messages, events, logs.
    places = dump_redis(rig.redis)
    places["kombu message bodies"] = decoded_messages([t for v in places.values() for t in v])
    places["event stream"] = [json.dumps(e) for e in rig.events()]
    places["service logs"] = rig.logs()
    leaks = [(p, t[:6]) for p, texts in places.items() for t in (old, new) if t in "\n".join(texts)]
    assert leaks == []


def test_a_receiver_that_never_takes_the_pending_token_is_reverted(
    rig: Rig, tmp_path: Path, moto_url: str
) -> None:
    rig.control.set_deliveries(interval_seconds=0.3)
    (dest,) = rig.seed(1)
    old = token_of(rig, dest)
    secret = receiver(rig, moto_url, dest, accept_pending=False)
    env = service(rig, tmp_path, moto_url, {dest: secret})
    wait_deliveries(rig, dest, 2)

    done = rotate_token(rig, env, dest)
    assert done["exit"] == 1 and done["outcome"] == "rolled_back", done
    assert done["error"]["class"] == "DeliveriesFailing"
    assert token_of(rig, dest) == old  # Redox sends the old token again
    assert labelled(moto_url, secret) == {"AWSCURRENT": old}  # the pending one withdrawn
    failed = failed_deliveries(rig, dest)
    assert failed > 0  # the watch saw them
    wait_deliveries(rig, dest, delivered(rig, dest) + 2)
    assert failed_deliveries(rig, dest) == failed  # and they stopped with the revert


def test_a_crash_between_publish_and_switch_resumes_with_the_same_token(
    rig: Rig, tmp_path: Path, moto_url: str
) -> None:
    rig.control.set_deliveries(interval_seconds=0.3)
    (dest,) = rig.seed(1)
    secret = receiver(rig, moto_url, dest)
    env = service(rig, tmp_path, moto_url, {dest: secret}, crash_after="issue")
    claim = rig.rotator("rotate", dest, "--verification-token", "--json", env=env)
    rotation_id = json.loads(claim.stdout)["rotationId"]
    outcome = rig.wait_terminal([rotation_id], timeout=90)
    assert outcome == {rotation_id: "succeeded"}
    assert rig.redis.keys(f"rotator:devstack:crashed:{rotation_id}:issue")
    versions = secrets_manager(moto_url).list_secret_version_ids(
        SecretId=secret, IncludeDeprecated=True
    )["Versions"]
    assert len(versions) == 2  # the original and this rotation's: no second publish
    assert labelled(moto_url, secret)["AWSCURRENT"] == token_of(rig, dest)
    assert failed_deliveries(rig, dest) == 0


def test_one_rotation_per_destination_whatever_its_kind(
    rig: Rig, tmp_path: Path, moto_url: str
) -> None:
    (dest,) = rig.seed(1)
    secret = receiver(rig, moto_url, dest)
    env = service(rig, tmp_path, moto_url, {dest: secret})
    first = rig.rotator("rotate", dest, "--json", env=env)  # the credential, watched 6 s
    credential_rotation = json.loads(first.stdout)["rotationId"]
    second = rig.rotator("rotate", dest, "--verification-token", "--json", env=env)
    assert json.loads(second.stdout) == {
        "rotationId": credential_rotation, "destinationId": dest, "created": False
    }  # fmt: skip
    assert rig.wait_terminal([credential_rotation]) == {credential_rotation: "succeeded"}
    after = rotate_token(rig, env, dest)  # the destination is free again
    assert after["outcome"] == "succeeded", after


def test_no_token_policy_is_refused_before_anything(rig: Rig) -> None:
    (dest,) = rig.seed(1)
    result = rig.rotator("rotate", dest, "--verification-token")
    assert result.returncode == 2, result.stderr
    assert "no verification_token policy" in result.stderr
    assert rig.journal() == []
