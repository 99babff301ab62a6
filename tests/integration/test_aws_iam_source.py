"""The aws-iam secret source against moto's standalone server over real HTTP.

moto runs as a server (``ThreadedMotoServer`` on 127.0.0.1, a free port); the source talks
to it through boto3 as to AWS. By default moto accepts any signature, so the rehearsal
tests switch on its IAM auth enforcement (``/moto-api/reset-auth``): then STS really
checks that the access key exists and the request is signed with its secret, and the
service identity signs in with a moto IAM user allowed everything.

What moto cannot show: IAM's propagation delay (a new key works at once in moto; one test
flips enforcement off between two attempts to stand in for it), and an *Inactive* key
being refused (moto authenticates inactive keys).
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import boto3
import pytest
from pydantic import SecretStr

from config.secret_sources import AwsIamSpec
from config.settings import Settings
from tests.moto_aws import ALLOW_ALL, REGION, auth_off, clean_aws, enforced_auth
from worker.errors import (
    IdpLimitReached,
    IdpRejected,
    IdpUnavailable,
    RehearsalFailed,
    SecretSourceError,
)
from worker.secrets.aws_iam import AwsIamSource
from worker.secrets.base import IssuedSecret, IssueRequest, RevokeRequest
from worker.secrets.build import build_source

pytestmark = pytest.mark.integration


@pytest.fixture
def aws(moto_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    """Fake credentials in the environment (no profile, no files, no IMDS); a clean moto."""
    return clean_aws(moto_url, monkeypatch, tmp_path)


def iam(url: str) -> Any:
    """A plain boto3 IAM client on moto, for setting up and looking behind the source."""
    return boto3.client("iam", endpoint_url=url, region_name=REGION)


def new_user(url: str, keys: int = 1) -> tuple[str, list[dict[str, Any]]]:
    """An IAM user with ``keys`` access keys: (name, the keys with their secrets)."""
    name = f"redox-delivery-{uuid.uuid4().hex[:8]}"
    client = iam(url)
    client.create_user(UserName=name)
    return name, [client.create_access_key(UserName=name)["AccessKey"] for _ in range(keys)]


def listed(url: str, user: str) -> dict[str, str]:
    """Access key id -> status, as IAM lists them."""
    reply = iam(url).list_access_keys(UserName=user)["AccessKeyMetadata"]
    return {k["AccessKeyId"]: k["Status"] for k in reply}


def service_identity(url: str, monkeypatch: pytest.MonkeyPatch, policy: str = ALLOW_ALL) -> None:
    """The service signs in as a moto IAM user with ``policy`` (for enforced auth)."""
    client = iam(url)
    client.create_user(UserName="rotator")
    client.put_user_policy(UserName="rotator", PolicyName="policy", PolicyDocument=policy)
    key = client.create_access_key(UserName="rotator")["AccessKey"]
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", key["AccessKeyId"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", key["SecretAccessKey"])


def source(url: str, **options: Any) -> AwsIamSource:
    return AwsIamSource(REGION, endpoint_url=url, sts_endpoint_url=url, **options)


def issue_request(old_key: str | None) -> IssueRequest:
    return IssueRequest("d-1", str(uuid.uuid4()), "e-1", "AwsSigv4", client_id=old_key)


def revoke_request(
    secret_id: str | None, keep: tuple[str, ...] = (), client_id: str | None = None
) -> RevokeRequest:
    return RevokeRequest(
        "d-1",
        str(uuid.uuid4()),
        "e-1",
        "AwsSigv4",
        credential_id="cred-old",
        client_id=client_id,
        secret_id=secret_id,
        keep_secret_ids=keep,
    )


class FakeTime:
    """The rehearsal's clock and sleep: sleeping moves the clock, nothing waits."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += max(seconds, 0.5)


# -- issue ---------------------------------------------------------------------------------


def test_issue_creates_the_second_key_of_the_old_keys_user(aws: str) -> None:
    user, (old,) = new_user(aws)
    src = source(aws)  # no user_name: found from the old key's id
    issued = src.issue(issue_request(old["AccessKeyId"]))

    assert sorted(issued.values) == ["accessKey", "secretKey"]
    new_id = issued.values["accessKey"].get_secret_value()
    assert issued.secret_id == new_id != old["AccessKeyId"]
    assert listed(aws, user) == {old["AccessKeyId"]: "Active", new_id: "Active"}
    assert issued.values["secretKey"].get_secret_value() not in repr(issued)

    found = {s.id: s for s in src.existing(old["AccessKeyId"])}
    assert set(found) == {old["AccessKeyId"], new_id}
    assert found[new_id].status == "active" and found[new_id].created
    src.close()


def test_issue_with_a_configured_user(aws: str) -> None:
    user, _ = new_user(aws, keys=0)
    spec = AwsIamSpec(region=REGION, user_name=user, endpoint_url=aws, sts_endpoint_url=aws)
    src = build_source(spec, Settings(_env_file=None, allow_insecure_http=True))
    issued = src.issue(issue_request(None))
    assert list(listed(aws, user)) == [issued.secret_id]


def test_a_user_with_two_keys_needs_a_person(aws: str) -> None:
    user, keys = new_user(aws, keys=2)
    src = source(aws)
    with pytest.raises(IdpLimitReached) as refused:
        src.issue(issue_request(keys[0]["AccessKeyId"]))
    message = str(refused.value)
    assert "\n" not in message
    assert f"IAM user {user} already holds 2 access keys" in message
    assert all(k["AccessKeyId"] in message for k in keys)
    assert not any(k["SecretAccessKey"] in message for k in keys)
    assert len(listed(aws, user)) == 2  # nothing was created
    src.close()


def test_an_unknown_old_key_without_user_name_is_refused(aws: str) -> None:
    src = source(aws)
    with pytest.raises(IdpRejected, match="set user_name") as refused:
        src.issue(issue_request("AKIAIOSFODNN7EXAMPLE"))
    assert refused.value.code == "NoSuchEntity"
    with pytest.raises(SecretSourceError, match="no accessKey"):
        src.issue(issue_request(None))
    src.close()


def test_permission_errors_are_permanent(aws: str, monkeypatch: pytest.MonkeyPatch) -> None:
    user, (old,) = new_user(aws)
    read_only = json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": "iam:List*", "Resource": "*"}],
        }
    )
    service_identity(aws, monkeypatch, read_only)
    src = source(aws, user_name=user)
    with enforced_auth(aws), pytest.raises(IdpRejected) as refused:
        src.issue(issue_request(old["AccessKeyId"]))
    assert refused.value.code == "AccessDenied" and refused.value.status == 403
    assert "lacks this IAM permission" in str(refused.value)
    assert len(listed(aws, user)) == 1
    src.close()


def test_unreachable_iam_is_transient(aws: str) -> None:
    src = AwsIamSource(
        REGION, user_name="x", endpoint_url="http://127.0.0.1:9", timeout=2, max_attempts=1
    )
    with pytest.raises(IdpUnavailable, match="EndpointConnectionError"):
        src.issue(issue_request(None))
    src.close()


# -- revoke --------------------------------------------------------------------------------


def test_revoke_deactivates_then_deletes(aws: str, monkeypatch: pytest.MonkeyPatch) -> None:
    user, (old, new) = new_user(aws, keys=2)
    src = source(aws)
    assert src.revoke(revoke_request(old["AccessKeyId"], keep=(new["AccessKeyId"],))) == [
        old["AccessKeyId"]
    ]
    assert listed(aws, user) == {new["AccessKeyId"]: "Active"}
    # Already gone: success, with or without user_name.
    assert src.revoke(revoke_request(old["AccessKeyId"])) == [old["AccessKeyId"]]
    assert source(aws, user_name=user).revoke(revoke_request(old["AccessKeyId"])) == [
        old["AccessKeyId"]
    ]
    src.close()


def test_revoke_deactivates_before_it_deletes(aws: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """With DeleteAccessKey denied, the key is left Inactive: the deactivate came first."""
    user, (old, new) = new_user(aws, keys=2)
    no_delete = json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow", "Action": "*", "Resource": "*"},
                {"Effect": "Deny", "Action": "iam:DeleteAccessKey", "Resource": "*"},
            ],
        }
    )
    service_identity(aws, monkeypatch, no_delete)
    src = source(aws)
    with enforced_auth(aws), pytest.raises(IdpRejected) as refused:
        src.revoke(revoke_request(old["AccessKeyId"], keep=(new["AccessKeyId"],)))
    assert refused.value.code == "AccessDenied"
    assert "delete IAM access key" in str(refused.value)
    assert listed(aws, user) == {old["AccessKeyId"]: "Inactive", new["AccessKeyId"]: "Active"}
    src.close()


def test_revoke_never_touches_a_kept_key(aws: str) -> None:
    user, (old,) = new_user(aws)
    src = source(aws)
    assert src.revoke(revoke_request(old["AccessKeyId"], keep=(old["AccessKeyId"],))) == []
    assert listed(aws, user) == {old["AccessKeyId"]: "Active"}
    src.close()


def test_revoke_without_secret_id_takes_the_other_key_when_a_kept_one_is_active(
    aws: str,
) -> None:
    user, (old, new) = new_user(aws, keys=2)
    src = source(aws)  # the user is found from the kept key
    assert src.revoke(revoke_request(None, keep=(new["AccessKeyId"],))) == [old["AccessKeyId"]]
    assert listed(aws, user) == {new["AccessKeyId"]: "Active"}
    src.close()


def test_revoke_without_secret_id_does_nothing_unless_a_kept_key_is_active(aws: str) -> None:
    user, (old, new) = new_user(aws, keys=2)
    iam(aws).update_access_key(UserName=user, AccessKeyId=new["AccessKeyId"], Status="Inactive")
    src = source(aws, user_name=user)
    assert src.revoke(revoke_request(None, keep=(new["AccessKeyId"],))) == []
    assert src.revoke(revoke_request(None, keep=(), client_id=old["AccessKeyId"])) == []
    assert listed(aws, user) == {old["AccessKeyId"]: "Active", new["AccessKeyId"]: "Inactive"}
    src.close()


# -- rehearsal -----------------------------------------------------------------------------


def test_rehearsal_passes_with_the_new_key(aws: str, monkeypatch: pytest.MonkeyPatch) -> None:
    _, (old,) = new_user(aws)
    service_identity(aws, monkeypatch)
    scopes: list[str] = []

    def session(**kwargs: Any) -> Any:
        built = boto3.session.Session(**kwargs)
        built.events.register(
            "before-send.sts.GetCallerIdentity",
            lambda request, **_: scopes.append(request.headers["Authorization"].decode()),
        )
        return built

    src = source(aws, session_factory=session)
    with enforced_auth(aws):
        issued = src.issue(issue_request(old["AccessKeyId"]))
        src.rehearse(issued, {"awsRegion": "eu-west-2"}, budget_seconds=5)
    new_id = issued.values["accessKey"].get_secret_value()
    # Signed with the new key, in the credential's region.
    assert len(scopes) == 1
    assert f"Credential={new_id}/" in scopes[0] and "/eu-west-2/sts/aws4_request" in scopes[0]
    src.close()


def test_rehearsal_fails_for_a_deleted_key(aws: str, monkeypatch: pytest.MonkeyPatch) -> None:
    user, (old,) = new_user(aws)
    iam(aws).delete_access_key(UserName=user, AccessKeyId=old["AccessKeyId"])
    service_identity(aws, monkeypatch)
    time = FakeTime()
    src = source(aws, sleep=time.sleep, clock=time.clock)
    gone = IssuedSecret(
        {
            "accessKey": SecretStr(old["AccessKeyId"]),
            "secretKey": SecretStr(old["SecretAccessKey"]),
        },
        secret_id=old["AccessKeyId"],
    )
    with enforced_auth(aws), pytest.raises(RehearsalFailed) as failed:
        src.rehearse(gone, {}, budget_seconds=3)
    error = failed.value
    assert error.error == "InvalidClientTokenId" and error.status == 403
    assert "InvalidClientTokenId" in str(error) and old["AccessKeyId"] in str(error)
    assert old["SecretAccessKey"] not in str(error) + repr(error) + str(error.description)
    assert len(time.sleeps) >= 2  # retried while it could still be propagation
    src.close()


def test_rehearsal_fails_for_a_wrong_secret(aws: str, monkeypatch: pytest.MonkeyPatch) -> None:
    _, (old,) = new_user(aws)
    service_identity(aws, monkeypatch)
    time = FakeTime()
    src = source(aws, sleep=time.sleep, clock=time.clock)
    wrong = "w" * 40
    bad = IssuedSecret(
        {"accessKey": SecretStr(old["AccessKeyId"]), "secretKey": SecretStr(wrong)},
        secret_id=old["AccessKeyId"],
    )
    with enforced_auth(aws), pytest.raises(RehearsalFailed) as failed:
        src.rehearse(bad, {}, budget_seconds=2)
    assert failed.value.error == "SignatureDoesNotMatch"
    assert wrong not in str(failed.value) and old["SecretAccessKey"] not in str(failed.value)
    src.close()


def test_rehearsal_retries_until_the_key_works(aws: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """moto has no propagation delay: STS refuses the (unknown) key until, between two
    attempts, enforcement is switched off, standing in for IAM catching up."""
    service_identity(aws, monkeypatch)
    time = FakeTime()

    def sleep(seconds: float) -> None:
        time.sleep(seconds)
        if len(time.sleeps) == 2:
            auth_off(aws)

    src = source(aws, sleep=sleep, clock=time.clock)
    unknown = IssuedSecret(
        {"accessKey": SecretStr("AKIAZZZZZZZZZZZZZZZZ"), "secretKey": SecretStr("s" * 40)},
        secret_id="AKIAZZZZZZZZZZZZZZZZ",
    )
    with enforced_auth(aws):
        src.rehearse(unknown, {}, budget_seconds=60)
    assert len(time.sleeps) == 2
    src.close()


def test_rehearsal_without_key_fields_fails_at_once(aws: str) -> None:
    src = source(aws)
    with pytest.raises(RehearsalFailed, match="no accessKey/secretKey"):
        src.rehearse(IssuedSecret({"secretKey": SecretStr("x")}), {}, budget_seconds=1)
    src.close()
