"""Build a live secret source from its spec (:mod:`config.secret_sources`)."""

from __future__ import annotations

from functools import singledispatch
from urllib.parse import urlsplit

from pydantic import SecretStr

from config.errors import ConfigError
from config.secret_sources import (
    AwsIamSpec,
    CommandSpec,
    EntraSpec,
    GenerateSpec,
    HttpSpec,
    OktaSpec,
)
from config.settings import Settings
from worker.secrets.base import SecretSource
from worker.secrets.entra import EntraSource
from worker.secrets.generate import GenerateSource
from worker.secrets.hooks import CommandSource, HttpSource
from worker.secrets.okta import OktaSource

__all__ = ["build_source"]


def _secret(settings: Settings, value: SecretStr | None, env_name: str | None) -> SecretStr:
    """The env var the registry names, else the value from Settings."""
    if env_name:
        found = settings.env_secret(env_name)
        if not found.get_secret_value():
            raise ConfigError(f"environment variable {env_name} (named in the registry) is empty")
        return found
    return value or SecretStr("")


def _https(settings: Settings, url: str, name: str) -> str:
    if urlsplit(url).scheme != "https" and not settings.insecure_http_allowed:
        raise ConfigError(
            f"{name}: {url} must use https (ROTATOR_ALLOW_INSECURE_HTTP=true only for a sandbox)"
        )
    return url


@singledispatch
def build_source(spec: object, settings: Settings) -> SecretSource:
    """The live source for ``spec`` (ConfigError when it cannot be used)."""
    raise ConfigError(f"unknown secret source spec {type(spec).__name__}")


@build_source.register
def _okta(spec: OktaSpec, settings: Settings) -> SecretSource:
    return OktaSource(
        _https(settings, spec.org_url, "okta org_url"),
        _secret(settings, spec.api_token, spec.api_token_env),
        timeout=spec.timeout,
        allow_insecure_http=settings.insecure_http_allowed,
    )


@build_source.register
def _entra(spec: EntraSpec, settings: Settings) -> SecretSource:
    secret = None
    if spec.client_secret is not None or spec.client_secret_env:
        secret = _secret(settings, spec.client_secret, spec.client_secret_env)
    return EntraSource(
        spec.tenant_id,
        spec.client_id,
        client_secret=secret,
        certificate_path=spec.certificate_path,
        graph_url=_https(settings, spec.graph_url, "entra graph_url"),
        login_url=_https(settings, spec.login_url, "entra login_url"),
        revoke_preexisting=spec.revoke_preexisting,
        timeout=spec.timeout,
        allow_insecure_http=settings.insecure_http_allowed,
    )


@build_source.register
def _command(spec: CommandSpec, settings: Settings) -> SecretSource:
    return CommandSource(list(spec.command), spec.timeout)


@build_source.register
def _http(spec: HttpSpec, settings: Settings) -> SecretSource:
    return HttpSource(
        _https(settings, spec.url, "http secret source url"),
        _secret(settings, spec.token, spec.token_env),
        spec.timeout,
    )


@build_source.register
def _generate(spec: GenerateSpec, settings: Settings) -> SecretSource:
    return GenerateSource(spec.length)


@build_source.register
def _aws_iam(spec: AwsIamSpec, settings: Settings) -> SecretSource:
    # Deferred: boto3 costs ~10 MB and 0.2 s per process; only AWS deployments pay it.
    from worker.secrets.aws_iam import AwsIamSource

    return AwsIamSource(
        spec.region,
        user_name=spec.user_name,
        endpoint_url=spec.endpoint_url
        and _https(settings, spec.endpoint_url, "aws-iam endpoint_url"),
        sts_endpoint_url=spec.sts_endpoint_url
        and _https(settings, spec.sts_endpoint_url, "aws-iam sts_endpoint_url"),
        timeout=spec.timeout,
    )
