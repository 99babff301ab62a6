"""The aws-iam secret-source spec and the aws-secrets-manager sink spec: validation, Settings,
the registry file, and building the live parts (no AWS call is made here)."""

from __future__ import annotations

import subprocess
import sys

import pytest
from pydantic import ValidationError

from config.errors import ConfigError
from config.registry import parse_registry
from config.secret_sinks import AwsSecretsManagerSpec
from config.secret_sources import (
    KINDS,
    AwsIamSpec,
    SecretSourceSettings,
    merged_spec,
    spec_problems,
)
from config.settings import Settings
from worker.secrets.aws_iam import AwsIamSource
from worker.secrets.build import build_source
from worker.sinks.aws_secrets_manager import AwsSecretsManagerSink, version_id_for
from worker.sinks.build import build_sink

ARN = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:redox/verification-AbCdEf"
DEST = "7f0c2a9e-1b3d-4c5e-8f6a-0b1c2d3e4f5a"
ENV = "5c1f3a4e-9b2d-4e7a-8f10-2a6b3c4d5e6f"


@pytest.fixture(autouse=True)
def _fake_aws(monkeypatch: pytest.MonkeyPatch) -> None:
    """Building a boto3 client resolves credentials: give it fake ones, no files, no IMDS."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.delenv("AWS_PROFILE", raising=False)


# -- aws-iam source spec -----------------------------------------------------------------


def test_aws_iam_is_a_kind_with_its_own_settings_group(monkeypatch: pytest.MonkeyPatch) -> None:
    assert "aws-iam" in KINDS
    monkeypatch.setenv("ROTATOR_SECRET_SOURCE__KIND", "aws-iam")
    monkeypatch.setenv("ROTATOR_SECRET_SOURCE__AWS_IAM__REGION", "eu-west-1")
    monkeypatch.setenv("ROTATOR_SECRET_SOURCE__AWS_IAM__USER_NAME", "redox-delivery")
    spec = Settings(_env_file=None).secret_source.selected()
    assert spec == AwsIamSpec(region="eu-west-1", user_name="redox-delivery")


def test_aws_iam_without_region_names_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROTATOR_SECRET_SOURCE__KIND", "aws-iam")
    with pytest.raises(ValidationError, match="ROTATOR_SECRET_SOURCE__AWS_IAM__REGION is not set"):
        Settings(_env_file=None)
    assert spec_problems(AwsIamSpec(), "ROTATOR_SECRET_SOURCE") == [
        "ROTATOR_SECRET_SOURCE__AWS_IAM__REGION is not set (kind aws-iam)"
    ]
    assert spec_problems(AwsIamSpec(region="us-east-1"), "ROTATOR_SECRET_SOURCE") == []


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"region": "moon-1"}, "must be an AWS region"),
        ({"region": "us-east-1", "user_name": "has space"}, "IAM user name"),
        ({"region": "us-east-1", "endpoint_url": "localhost:5000"}, "absolute https URL"),
        ({"region": "us-east-1", "secret_key": "x"}, "Extra inputs are not permitted"),
    ],
)
def test_aws_iam_spec_refuses(fields: dict[str, str], reason: str) -> None:
    with pytest.raises(ValidationError, match=reason):
        AwsIamSpec.model_validate({"kind": "aws-iam", **fields})


def test_aws_iam_in_the_registry_over_settings() -> None:
    registry = parse_registry(
        f"""
[[destinations]]
id = "{DEST}"
environment = "{ENV}"
interval = "30d"
secret_source = {{ kind = "aws-iam", user_name = "redox-acme" }}
"""
    )
    named = registry.secret_source(DEST)
    assert isinstance(named, AwsIamSpec)
    settings = SecretSourceSettings(aws_iam=AwsIamSpec(region="eu-central-1"))
    merged = merged_spec(settings, named)
    assert merged == AwsIamSpec(region="eu-central-1", user_name="redox-acme")


def test_registry_names_a_bad_aws_iam_field() -> None:
    with pytest.raises(ConfigError, match=r"secret_source\.user_name"):
        parse_registry(
            f"""
[[destinations]]
id = "{DEST}"
environment = "{ENV}"
interval = "30d"
secret_source = {{ kind = "aws-iam", user_name = "no spaces allowed" }}
"""
        )


def test_build_aws_iam_source_needs_https_endpoints() -> None:
    spec = AwsIamSpec(region="us-east-1", endpoint_url="http://127.0.0.1:5000")
    with pytest.raises(ConfigError, match=r"aws-iam endpoint_url.*must use https"):
        build_source(spec, Settings(_env_file=None))
    source = build_source(spec, Settings(_env_file=None, allow_insecure_http=True))
    assert isinstance(source, AwsIamSource) and source.kind == "aws-iam"
    assert source.manages_secrets
    source.close()
    plain = build_source(AwsIamSpec(region="us-east-1"), Settings(_env_file=None))
    assert isinstance(plain, AwsIamSource)
    plain.close()


# -- aws-secrets-manager sink spec -------------------------------------------------------


def test_sink_spec_takes_the_region_from_an_arn() -> None:
    assert AwsSecretsManagerSpec(secret_id=ARN).region == "eu-west-1"
    spec = AwsSecretsManagerSpec(secret_id="redox/verification", region="us-east-2")
    assert spec.kind == "aws-secrets-manager" and spec.endpoint_url is None


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"secret_id": "redox/verification"}, "region: required when secret_id is a name"),
        ({"secret_id": ARN, "region": "us-east-1"}, "differs from the ARN's region eu-west-1"),
        ({"secret_id": "arn:aws:s3:::bucket"}, "not a Secrets Manager secret ARN"),
        ({"secret_id": "has space", "region": "us-east-1"}, "a secret name has"),
        ({"secret_id": "x", "region": "us-east-1", "value": "s3cret"}, "Extra inputs"),
        ({"secret_id": "x", "region": "us-east-1", "timeout": 0}, "duration"),
    ],
)
def test_sink_spec_refuses(fields: dict[str, object], reason: str) -> None:
    with pytest.raises(ValidationError, match=reason):
        AwsSecretsManagerSpec.model_validate(fields)


def test_build_sink_needs_https_endpoint() -> None:
    spec = AwsSecretsManagerSpec(secret_id=ARN, endpoint_url="http://127.0.0.1:5000")
    with pytest.raises(ConfigError, match=r"endpoint_url.*must use https"):
        build_sink(spec, Settings(_env_file=None))
    sink = build_sink(spec, Settings(_env_file=None, allow_insecure_http=True))
    assert isinstance(sink, AwsSecretsManagerSink) and sink.secret_id == ARN
    sink.close()


def test_version_id_is_the_rotation_id_when_aws_accepts_it() -> None:
    rotation = "0b7e2c9a-5d1f-4f43-9a0e-7c3b2d1e0f9a"
    assert version_id_for(rotation) == rotation
    derived = version_id_for("r-1")
    assert derived == version_id_for("r-1") != version_id_for("r-2")
    assert 32 <= len(derived) <= 64
    with pytest.raises(ValueError, match="rotation id"):
        version_id_for("")


def test_boto3_is_loaded_only_when_an_aws_part_is_built() -> None:
    """Every process imports the catalog; only AWS deployments pay for boto3."""
    code = (
        "import sys, worker.secrets.catalog, worker.sinks.build, worker.runtime\n"
        "print(sorted(m for m in ('boto3', 'botocore') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
