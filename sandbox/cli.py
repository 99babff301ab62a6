"""``rotator sandbox``: serve the local Redox fake and print the settings that point at it.

The ``rotator`` command forwards ``rotator sandbox ARGS`` here (:func:`main`), importing this
module only then, so a production install without the ``sandbox`` extra never loads it.
"""

from __future__ import annotations

import dataclasses
import errno
import socket
import sys
import tempfile
from pathlib import Path
from typing import Annotated, Any

import click
import typer

from sandbox import FaultConfig, SandboxConfig, create_app, generate_keypair, run_sandbox
from sandbox.runtime import shown_host
from sandbox.server import runtime_for


class UsageError(click.UsageError):
    """Bad input to ``rotator sandbox``: one line on stderr and exit 2 (the fake stands
    alone, so it raises click's usage error rather than the service's)."""


__all__ = ["env_lines", "idp_env_lines", "main", "sandbox"]

_SHOWN_IDS = 5
#: Config field names in validation messages -> the flag a person typed.
_FLAG_NAMES = {
    "rate_limit_window_seconds": "--rate-window",
    "rate_limit_requests": "--rate-limit",
    "token_ttl_seconds": "--token-ttl",
    "port must": "--port must",
    "seed must": "--seed must",
    "deliveries_every_seconds": "--deliveries-every",
    "idp_propagation_delay_seconds": "--idp-delay",
}


def env_lines(url: str, *, client_id: str, key_id: str, private_key_path: Path | None) -> list[str]:
    """``NAME=value`` pairs (without ``export``) that point the worker at the sandbox."""
    lines = [
        f"ROTATOR_REDOX__BASE_URL={url}/platform",
        f"ROTATOR_REDOX__TOKEN_URL={url}/v2/auth/token",
        f"ROTATOR_REDOX__CLIENT_ID={client_id}",
        f"ROTATOR_REDOX__KEY_ID={key_id}",
    ]
    if private_key_path is not None:
        lines.append(f"ROTATOR_REDOX__PRIVATE_KEY_PATH={private_key_path}")
    lines.append("ROTATOR_REDOX__ALLOW_INSECURE_HTTP=true")
    return lines


def idp_env_lines(idp: str, credentials: dict[str, Any]) -> list[str]:
    """``NAME=value`` pairs pointing the service's secret source at the sandbox's IdP."""
    if idp == "okta":
        okta = credentials["okta"]
        lines = [
            "ROTATOR_SECRET_SOURCE__KIND=okta",
            f"ROTATOR_SECRET_SOURCE__OKTA__ORG_URL={okta['org_url']}",
            f"ROTATOR_SECRET_SOURCE__OKTA__API_TOKEN={okta['api_token']}",
        ]
    else:
        entra = credentials["entra"]
        lines = [
            "ROTATOR_SECRET_SOURCE__KIND=entra",
            f"ROTATOR_SECRET_SOURCE__ENTRA__TENANT_ID={entra['tenant_id']}",
            f"ROTATOR_SECRET_SOURCE__ENTRA__CLIENT_ID={entra['client_id']}",
            f"ROTATOR_SECRET_SOURCE__ENTRA__CLIENT_SECRET={entra['client_secret']}",
            f"ROTATOR_SECRET_SOURCE__ENTRA__GRAPH_URL={entra['graph_url']}",
            f"ROTATOR_SECRET_SOURCE__ENTRA__LOGIN_URL={entra['login_url']}",
        ]
    lines.append("ROTATOR_ALLOW_INSECURE_HTTP=true")
    return lines


def _check_port_free(host: str, port: int) -> None:
    if port == 0:
        return
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise UsageError(f"port {port} on {host} is already in use") from exc
            raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror}") from exc


def _probability(name: str, value: float) -> float:
    if not 0.0 <= value <= 1.0:
        raise UsageError(f"{name} must be between 0 and 1, got {value}")
    return value


def _build_config(
    *,
    host: str,
    port: int,
    seed: int,
    faults: FaultConfig,
    rate_limit: int | None,
    rate_window: float,
    retry_after: bool,
    token_ttl: int,
    key_id: str,
    client_id: str,
    random_seed: int | None,
    idp: str | None = None,
    deliveries_every: float = 2.0,
    idp_delay: float = 0.0,
) -> SandboxConfig:
    try:
        return SandboxConfig(
            host=host,
            port=port,
            client_id=client_id,
            key_id=key_id,
            seed=seed,
            token_ttl_seconds=token_ttl,
            rate_limit_requests=rate_limit,
            rate_limit_window_seconds=rate_window,
            send_retry_after=retry_after,
            faults=faults,
            random_seed=random_seed,
            log_level="info",
            idp=idp,
            deliveries_every_seconds=deliveries_every,
            idp_propagation_delay_seconds=idp_delay,
        )
    except ValueError as exc:
        message = str(exc)
        for name, flag in _FLAG_NAMES.items():
            message = message.replace(name, flag)
        raise UsageError(message) from exc


def sandbox(
    *,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8085,
    seed: Annotated[
        int, typer.Option(help="Destinations (each with an OAuth credential) to create.")
    ] = 0,
    latency_ms: Annotated[
        float, typer.Option("--latency-ms", help="Added latency per request.")
    ] = 0.0,
    fail_rate: Annotated[
        float, typer.Option(help="Share of 500/502/503 answers (split evenly).")
    ] = 0.0,
    p429: Annotated[float, typer.Option("--p429", help="Share of injected 429 answers.")] = 0.0,
    hang_rate: Annotated[float, typer.Option(help="Share of requests held open, then 504.")] = 0.0,
    rate_limit: Annotated[
        int | None, typer.Option(help="Requests allowed per rolling window.")
    ] = None,
    rate_window: Annotated[float, typer.Option(help="Rate limit window in seconds.")] = 300.0,
    retry_after: Annotated[
        bool, typer.Option("--retry-after", help="Send Retry-After on 429.")
    ] = False,
    token_ttl: Annotated[int, typer.Option(help="Access token lifetime in seconds.")] = 300,
    key_dir: Annotated[
        Path | None, typer.Option(help="Where to write a generated key pair.")
    ] = None,
    public_key: Annotated[
        Path | None, typer.Option(help="PEM public key to accept instead.")
    ] = None,
    key_id: Annotated[str, typer.Option(help="JWT kid to accept.")] = "sandbox-kid",
    client_id: Annotated[str, typer.Option(help="JWT iss/sub to accept.")] = "sandbox-client",
    random_seed: Annotated[
        int | None, typer.Option(help="Seed for reproducible faults and ids.")
    ] = None,
    env_file: Annotated[
        Path | None, typer.Option(help="Also write the settings to this .env file.")
    ] = None,
    idp: Annotated[
        str,
        typer.Option(help="Seed destinations with apps at this fake IdP: okta, entra or none."),
    ] = "none",
    deliveries_every: Annotated[
        float, typer.Option(help="Seconds between simulated deliveries to each destination.")
    ] = 2.0,
    idp_delay: Annotated[
        float, typer.Option(help="Seconds a new IdP secret is refused at the token endpoint.")
    ] = 0.0,
) -> None:
    """Serve a local, strict fake of the Redox Platform API (Ctrl-C to stop)."""
    if idp not in ("okta", "entra", "none"):
        raise UsageError(f"--idp must be okta, entra or none, got {idp}")
    if idp != "none" and seed and port == 0:
        raise UsageError("--idp with --seed needs a fixed --port (the seeded URLs name it)")
    config = _build_config(
        host=host,
        port=port,
        seed=seed,
        faults=_faults(latency_ms, fail_rate, p429, hang_rate),
        rate_limit=rate_limit,
        rate_window=rate_window,
        retry_after=retry_after,
        token_ttl=token_ttl,
        key_id=key_id,
        client_id=client_id,
        random_seed=random_seed,
        idp=None if idp == "none" else idp,
        deliveries_every=deliveries_every,
        idp_delay=idp_delay,
    )
    _check_port_free(host, port)
    private_key_path: Path | None = None
    if public_key is not None:
        try:
            pem = public_key.read_bytes()
        except OSError as exc:
            raise UsageError(f"cannot read --public-key {public_key}: {exc.strerror}") from exc
    else:
        directory = key_dir or Path(tempfile.mkdtemp(prefix="rotator-sandbox-keys-"))
        try:
            pair = generate_keypair(directory, kid=key_id)
        except OSError as exc:
            raise UsageError(f"cannot write keys to {directory}: {exc.strerror}") from exc
        pem, private_key_path = pair.public_key_pem, pair.private_key_path.resolve()
    config = dataclasses.replace(config, public_key_pem=pem)
    try:
        app = create_app(config)
    except ValueError as exc:  # an unusable public key
        raise UsageError(str(exc)) from exc
    url = f"http://{shown_host(host)}:{port}"
    lines = env_lines(url, client_id=client_id, key_id=key_id, private_key_path=private_key_path)
    runtime = runtime_for(app)
    if config.idp is not None:
        lines += idp_env_lines(config.idp, runtime.idp.management_credentials(url))
    ids = list(runtime.state.destinations)
    summary = _summary(ids)
    if env_file is not None:
        try:
            env_file.write_text("\n".join([*lines, summary, ""]), encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"cannot write --env-file {env_file}: {exc.strerror}") from exc
    for line in lines:
        print(f"export {line}")
    if private_key_path is None:
        print("# set ROTATOR_REDOX__PRIVATE_KEY_PATH to the private key matching --public-key")
    print(summary)
    sys.stdout.flush()
    run_sandbox(config, app=app)


def _faults(latency_ms: float, fail_rate: float, p429: float, hang_rate: float) -> FaultConfig:
    if latency_ms < 0:
        raise UsageError(f"--latency-ms must be >= 0, got {latency_ms}")
    share = _probability("--fail-rate", fail_rate) / 3
    try:
        return FaultConfig(
            latency_ms=latency_ms,
            p500=share,
            p502=share,
            p503=share,
            p429=_probability("--p429", p429),
            p_hang=_probability("--hang-rate", hang_rate),
        )
    except ValueError as exc:
        raise UsageError(
            str(exc).replace("p500 + p502 + p503 + p429", "--fail-rate + --p429")
        ) from exc


def _summary(ids: list[str]) -> str:
    if not ids:
        return "# seeded destinations: none (POST /_sandbox/seed to add some)"
    shown = " ".join(ids[:_SHOWN_IDS])
    more = f" (+{len(ids) - _SHOWN_IDS} more, GET /_sandbox/state)" if len(ids) > _SHOWN_IDS else ""
    return f"# seeded destinations: {len(ids)}: {shown}{more}"


def main(args: list[str]) -> int:
    """Run ``rotator sandbox`` with ``args`` (errors go up to the ``rotator`` error mapping)."""
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    app.command()(sandbox)
    result = app(args=args, prog_name="rotator sandbox", standalone_mode=False)
    return result if isinstance(result, int) else 0
