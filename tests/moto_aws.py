"""The AWS side of the tests: a clean moto (IAM, STS, Secrets Manager over real HTTP) with
fake credentials in the environment, and moto's signature and IAM-policy checks on demand."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

__all__ = ["ALLOW_ALL", "REGION", "auth_off", "clean_aws", "enforced_auth"]

REGION = "us-east-1"
#: An IAM policy that allows everything (moto checks policies only inside enforced_auth).
ALLOW_ALL = json.dumps(
    {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
)
#: What could point boto3 at real credentials or another endpoint.
_AMBIENT = (
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_ENDPOINT_URL",
)


def clean_aws(moto_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    """Fake credentials in the environment (no profile, no files, no IMDS); moto reset."""
    for name in _AMBIENT:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    httpx.post(f"{moto_url}/moto-api/reset").raise_for_status()
    return moto_url


def auth_off(url: str) -> None:
    """moto stops checking signatures and IAM policies."""
    httpx.post(f"{url}/moto-api/reset-auth", content=b"inf").raise_for_status()


@contextmanager
def enforced_auth(url: str) -> Iterator[None]:
    """moto checks signatures and IAM policies while inside (off again afterwards)."""
    httpx.post(f"{url}/moto-api/reset-auth", content=b"0").raise_for_status()
    try:
        yield
    finally:
        auth_off(url)
