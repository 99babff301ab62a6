"""Fixtures for the sandbox tests: one key pair and one sandbox server per session."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

from sandbox import FaultConfig, KeyPair, SandboxConfig, SandboxThread, generate_keypair

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


@pytest.fixture(scope="session")
def keypair(tmp_path_factory: pytest.TempPathFactory) -> KeyPair:
    return generate_keypair(tmp_path_factory.mktemp("sandbox-keys"))


@pytest.fixture(scope="session")
def sandbox_server(keypair: KeyPair) -> Iterator[SandboxThread]:
    config = SandboxConfig(
        public_key_pem=keypair.public_key_pem,
        environments={"Development": 1, "Staging": 1, "Production": 1},
        random_seed=1234,
    )
    with SandboxThread(config) as server:
        yield server


@pytest.fixture
def sandbox(sandbox_server: SandboxThread) -> SandboxThread:
    """The shared sandbox, emptied, with no faults and no rate limit."""
    control = sandbox_server.control
    control.set_faults()
    control.set_rate_limit(None)
    control.reset()
    return sandbox_server


def assertion(
    keypair: KeyPair,
    audience: str,
    *,
    headers: dict[str, Any] | None = None,
    algorithm: str = "RS384",
    key: bytes | None = None,
    drop: tuple[str, ...] = (),
    **claims: Any,
) -> str:
    """A client assertion as the worker builds it; keyword claims override the defaults."""
    now = int(time.time())
    body: dict[str, Any] = {
        "iss": "sandbox-client",
        "sub": "sandbox-client",
        "aud": audience,
        "iat": now,
        "exp": now + 300,
        "jti": str(uuid.uuid4()),
    }
    body.update(claims)
    for name in drop:
        body.pop(name, None)
    head = {"kid": "sandbox-kid"} if headers is None else headers
    signing_key = key if key is not None else keypair.private_key_path.read_bytes()
    return jwt.encode(body, signing_key, algorithm=algorithm, headers=head)


def token_form(client_assertion: str) -> dict[str, str]:
    return {
        "grant_type": "client_credentials",
        "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": client_assertion,
    }


def get_token(sandbox: SandboxThread, keypair: KeyPair) -> str:
    reply = httpx.post(sandbox.token_url, data=token_form(assertion(keypair, sandbox.token_url)))
    assert reply.status_code == 200, reply.text
    token: str = reply.json()["access_token"]
    return token


@pytest.fixture
def api(sandbox: SandboxThread, keypair: KeyPair) -> Iterator[httpx.Client]:
    """An authenticated client on the platform base URL."""
    token = get_token(sandbox, keypair)
    headers = {"Authorization": f"Bearer {token}", "accept": "application/json"}
    with httpx.Client(base_url=sandbox.base_url, headers=headers, timeout=10) as client:
        yield client


@pytest.fixture
def idp(sandbox: SandboxThread) -> Iterator[SandboxThread]:
    """The shared sandbox with IdP settings and faults at their defaults, no hold, and
    deliveries every 0.2 s."""
    control = sandbox.control
    control.reset_idp_settings()
    control.set_idp_faults()
    control.release_idp()
    control.set_deliveries(interval_seconds=0.2)
    yield sandbox
    control.release_idp()
    control.set_deliveries(interval_seconds=2.0)


def wait_for(check: Callable[[], bool], timeout: float = 5.0, what: str = "condition") -> None:
    """Poll ``check`` every 50 ms until it is true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def env_id(sandbox: SandboxThread, flag: str) -> str:
    for env in sandbox.control.state()["environments"]:
        if env["environmentFlag"] == flag:
            found: str = env["id"]
            return found
    raise AssertionError(flag)


__all__ = ["FaultConfig", "Path", "assertion", "env_id", "get_token", "token_form", "wait_for"]
