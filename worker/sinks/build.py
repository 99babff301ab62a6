"""Build a live secret sink from its spec (:mod:`config.secret_sinks`)."""

from __future__ import annotations

from functools import singledispatch
from urllib.parse import urlsplit

from config.errors import ConfigError
from config.secret_sinks import AwsSecretsManagerSpec
from config.settings import Settings
from worker.sinks.base import SecretSink

__all__ = ["build_sink"]


@singledispatch
def build_sink(spec: object, settings: Settings) -> SecretSink:
    """The live sink for ``spec`` (ConfigError when it cannot be used)."""
    raise ConfigError(f"unknown secret sink spec {type(spec).__name__}")


@build_sink.register
def _aws_secrets_manager(spec: AwsSecretsManagerSpec, settings: Settings) -> SecretSink:
    # Deferred: boto3 costs ~10 MB and 0.2 s per process; only AWS deployments pay it.
    from worker.sinks.aws_secrets_manager import AwsSecretsManagerSink

    endpoint = spec.endpoint_url
    if endpoint and urlsplit(endpoint).scheme != "https" and not settings.insecure_http_allowed:
        raise ConfigError(
            f"aws-secrets-manager endpoint_url: {endpoint} must use https "
            "(ROTATOR_ALLOW_INSECURE_HTTP=true only for a sandbox)"
        )
    return AwsSecretsManagerSink(
        spec.secret_id, region=spec.region, endpoint_url=endpoint, timeout=spec.timeout
    )
