"""The AWS Secrets Manager sink against moto's standalone server over real HTTP.

moto runs as a server (``ThreadedMotoServer`` on 127.0.0.1, a free port) and the sink talks
to it through boto3 like to AWS, with fake credentials from the environment. Its IAM auth
enforcement (``/moto-api/reset-auth``) is switched on for the access-denied case. Throttling
and 5xx are answered by a small local HTTP server speaking Secrets Manager's JSON protocol,
since moto does not throttle.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import boto3
import pytest
from pydantic import SecretStr

from config.secret_sinks import AwsSecretsManagerSpec
from config.settings import Settings
from tests.moto_aws import ALLOW_ALL, REGION, clean_aws, enforced_auth
from worker.errors import SinkRejected, SinkUnavailable
from worker.sinks.aws_secrets_manager import AwsSecretsManagerSink
from worker.sinks.build import build_sink

pytestmark = pytest.mark.integration


@pytest.fixture
def aws(moto_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    """Fake credentials in the environment (no profile, no files, no IMDS); a clean moto."""
    return clean_aws(moto_url, monkeypatch, tmp_path)


def admin(url: str, service: str) -> Any:
    """A plain boto3 client on moto, for setting up and looking behind the sink's back."""
    return boto3.client(service, endpoint_url=url, region_name=REGION)


def new_secret(url: str, value: str = "old-token") -> tuple[str, str]:
    """A secret holding ``value`` as AWSCURRENT: (name, its first version id)."""
    name = f"redox/dest-{uuid.uuid4().hex[:8]}/verification-token"
    reply = admin(url, "secretsmanager").create_secret(Name=name, SecretString=value)
    return name, reply["VersionId"]


def stages(url: str, name: str) -> dict[str, list[str]]:
    """Versions that carry a label (what AWS lists), and their labels."""
    raw = admin(url, "secretsmanager").describe_secret(SecretId=name)["VersionIdsToStages"]
    return {version: sorted(labels) for version, labels in raw.items() if labels}


def all_versions(url: str, name: str) -> list[str]:
    client = admin(url, "secretsmanager")
    reply = client.list_secret_version_ids(SecretId=name, IncludeDeprecated=True)
    return sorted(v["VersionId"] for v in reply["Versions"])


def sink(url: str, name: str, **options: Any) -> AwsSecretsManagerSink:
    return AwsSecretsManagerSink(name, region=REGION, endpoint_url=url, **options)


def rotation() -> str:
    return str(uuid.uuid4())


# -- staging labels ----------------------------------------------------------------------


def test_publish_then_promote_moves_the_labels(aws: str) -> None:
    name, old = new_secret(aws)
    target = sink(aws, name)
    rid = rotation()

    version = target.publish_pending(SecretStr("new-token"), rotation_id=rid)
    assert version == rid
    assert stages(aws, name) == {old: ["AWSCURRENT"], rid: ["AWSPENDING"]}
    assert target.current() == SecretStr("old-token")
    assert target.pending() == SecretStr("new-token")

    target.promote(rid)
    assert stages(aws, name) == {old: ["AWSPREVIOUS"], rid: ["AWSCURRENT"]}
    assert target.current() == SecretStr("new-token")
    assert target.pending() is None
    previous = admin(aws, "secretsmanager").get_secret_value(
        SecretId=name, VersionStage="AWSPREVIOUS"
    )
    assert previous["SecretString"] == "old-token"

    target.promote(rid)  # a redelivered step changes nothing
    assert stages(aws, name) == {old: ["AWSPREVIOUS"], rid: ["AWSCURRENT"]}
    target.close()


def test_discard_takes_the_pending_label_off(aws: str) -> None:
    name, old = new_secret(aws)
    target = sink(aws, name)
    rid = rotation()
    target.publish_pending(SecretStr("new-token"), rotation_id=rid)

    target.discard(rid)
    assert stages(aws, name) == {old: ["AWSCURRENT"]}
    assert target.pending() is None
    assert target.current() == SecretStr("old-token")
    target.discard(rid)  # again: nothing to do
    target.discard(rotation())  # never published: nothing to do

    with pytest.raises(SinkRejected, match="is not pending") as refused:
        target.promote(rid)
    assert refused.value.code == "NotPending"
    assert stages(aws, name) == {old: ["AWSCURRENT"]}
    target.close()


def test_discard_after_promote_restores_the_previous_value(aws: str) -> None:
    name, old = new_secret(aws)
    target = sink(aws, name)
    rid = rotation()
    target.publish_pending(SecretStr("new-token"), rotation_id=rid)
    target.promote(rid)

    target.discard(rid)
    assert stages(aws, name) == {old: ["AWSCURRENT"]}
    assert target.current() == SecretStr("old-token")
    target.close()


def test_publish_again_with_the_same_rotation_makes_no_second_version(aws: str) -> None:
    name, old = new_secret(aws)
    target = sink(aws, name)
    rid = rotation()
    first = target.publish_pending(SecretStr("new-token"), rotation_id=rid)
    again = target.publish_pending(SecretStr("new-token"), rotation_id=rid)  # crash + resume
    assert first == again == rid
    assert all_versions(aws, name) == sorted([old, rid])
    assert stages(aws, name) == {old: ["AWSCURRENT"], rid: ["AWSPENDING"]}

    with pytest.raises(SinkRejected, match="already holds a different value") as refused:
        target.publish_pending(SecretStr("another-token"), rotation_id=rid)
    assert refused.value.code == "ResourceExistsException"
    assert "another-token" not in str(refused.value) and "new-token" not in str(refused.value)
    assert target.pending() == SecretStr("new-token")
    assert all_versions(aws, name) == sorted([old, rid])
    target.close()


def test_a_later_rotation_takes_the_pending_label_from_an_abandoned_one(aws: str) -> None:
    name, old = new_secret(aws)
    target = sink(aws, name)
    abandoned, later = rotation(), rotation()
    target.publish_pending(SecretStr("abandoned-token"), rotation_id=abandoned)
    target.publish_pending(SecretStr("later-token"), rotation_id=later)
    assert stages(aws, name) == {old: ["AWSCURRENT"], later: ["AWSPENDING"]}
    with pytest.raises(SinkRejected, match="is not pending"):
        target.promote(abandoned)
    target.promote(later)
    assert target.current() == SecretStr("later-token")
    target.close()


def test_a_rotation_id_aws_would_refuse_maps_to_a_stable_version(aws: str) -> None:
    name, old = new_secret(aws)
    target = sink(aws, name)
    version = target.publish_pending(SecretStr("new-token"), rotation_id="r-1")
    assert version != "r-1" and target.publish_pending(SecretStr("new-token"), rotation_id="r-1")
    assert stages(aws, name) == {old: ["AWSCURRENT"], version: ["AWSPENDING"]}
    target.promote("r-1")
    assert target.current() == SecretStr("new-token")
    target.close()


def test_built_from_a_spec_with_an_arn(aws: str) -> None:
    name, old = new_secret(aws)
    arn = admin(aws, "secretsmanager").describe_secret(SecretId=name)["ARN"]
    spec = AwsSecretsManagerSpec(secret_id=arn, endpoint_url=aws)
    assert spec.region == REGION
    target = build_sink(spec, Settings(_env_file=None, allow_insecure_http=True))
    rid = rotation()
    target.publish_pending(SecretStr("new-token"), rotation_id=rid)
    target.promote(rid)
    assert stages(aws, name) == {old: ["AWSPREVIOUS"], rid: ["AWSCURRENT"]}


# -- errors --------------------------------------------------------------------------------


def test_no_such_secret_is_permanent(aws: str) -> None:
    target = sink(aws, "redox/does-not-exist")
    with pytest.raises(SinkRejected, match="ResourceNotFoundException") as refused:
        target.publish_pending(SecretStr("new-token"), rotation_id=rotation())
    assert refused.value.code == "ResourceNotFoundException"
    assert refused.value.status in (400, 404)  # AWS answers 400, moto 404
    assert "new-token" not in str(refused.value)
    with pytest.raises(SinkRejected, match="ResourceNotFoundException"):
        target.promote(rotation())
    target.close()


def test_access_denied_is_permanent(aws: str, monkeypatch: pytest.MonkeyPatch) -> None:
    name, _ = new_secret(aws)
    iam = admin(aws, "iam")
    iam.create_user(UserName="reader")  # no policy at all
    key = iam.create_access_key(UserName="reader")["AccessKey"]
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", key["AccessKeyId"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", key["SecretAccessKey"])
    target = sink(aws, name)
    with enforced_auth(aws), pytest.raises(SinkRejected) as refused:
        target.publish_pending(SecretStr("new-token"), rotation_id=rotation())
    # AWS answers a JSON AccessDeniedException; moto's auth layer an XML AccessDenied, which
    # botocore cannot parse for a JSON service: the sink still reads the code out of it.
    assert refused.value.code in ("AccessDeniedException", "AccessDenied")
    assert refused.value.status == 403
    assert "<" not in str(refused.value)  # no raw body in the message
    assert "new-token" not in str(refused.value)
    assert key["SecretAccessKey"] not in str(refused.value)
    target.close()


def test_allowed_identity_works_with_auth_enforced(
    aws: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sink signs with the default chain's credentials, and moto checks them."""
    name, old = new_secret(aws)
    iam = admin(aws, "iam")
    iam.create_user(UserName="rotator")
    iam.put_user_policy(UserName="rotator", PolicyName="all", PolicyDocument=ALLOW_ALL)
    key = iam.create_access_key(UserName="rotator")["AccessKey"]
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", key["AccessKeyId"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", key["SecretAccessKey"])
    target = sink(aws, name)
    rid = rotation()
    with enforced_auth(aws):
        target.publish_pending(SecretStr("new-token"), rotation_id=rid)
        target.promote(rid)
    assert stages(aws, name) == {old: ["AWSPREVIOUS"], rid: ["AWSCURRENT"]}
    target.close()


def test_no_credentials_is_permanent(aws: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    target = sink(aws, "redox/anything")
    with pytest.raises(SinkRejected, match="no usable AWS credentials") as refused:
        target.current()
    assert refused.value.code == "NoCredentialsError"
    target.close()


def test_unreachable_endpoint_is_transient(aws: str) -> None:
    with ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler) as closed:
        port = closed.server_address[1]  # bound, then closed: nothing listens there
    target = sink(f"http://127.0.0.1:{port}", "redox/anything", max_attempts=1, timeout=2)
    with pytest.raises(SinkUnavailable, match="EndpointConnectionError") as failed:
        target.publish_pending(SecretStr("new-token"), rotation_id=rotation())
    assert "new-token" not in str(failed.value)
    target.close()


@contextmanager
def answering(status: int, error: str) -> Iterator[tuple[str, list[str]]]:
    """A local server answering every Secrets Manager call with ``status`` and ``error``."""
    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            self.rfile.read(length)
            seen.append(self.headers.get("X-Amz-Target", ""))
            body = json.dumps({"__type": error, "message": "slow down, try later"}).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/x-amz-json-1.1")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(
    ("status", "error"),
    [(400, "ThrottlingException"), (500, "InternalServiceError"), (503, "ServiceUnavailable")],
)
def test_throttling_and_5xx_are_transient(aws: str, status: int, error: str) -> None:
    with answering(status, error) as (url, seen):
        target = sink(url, "redox/anything", max_attempts=2)
        with pytest.raises(SinkUnavailable) as failed:
            target.publish_pending(SecretStr("new-token"), rotation_id=rotation())
        target.close()
    assert failed.value.code == error and failed.value.status == status
    assert f"{status} {error}" in str(failed.value)
    assert "new-token" not in str(failed.value)
    # botocore's standard retry mode tried twice (max_attempts) before giving up.
    assert seen == ["secretsmanager.GetSecretValue"] * 2
