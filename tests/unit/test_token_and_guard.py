"""The token provider's locking and assertion, and the run guard's deadline (no network:
httpx.MockTransport stands in for Redox)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from config.settings import RedoxSettings, RetrySettings
from worker.errors import LockLost, RedoxUnavailable, RunTimedOut
from worker.guard import guarded_run
from worker.redox.client import RedoxClient
from worker.redox.token import CLOCK_SKEW_SECONDS, TokenProvider

TOKEN_URL = "https://redox.test/v2/auth/token"


@pytest.fixture
def settings(tmp_path: Path) -> RedoxSettings:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path = tmp_path / "key.pem"
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return RedoxSettings(
        base_url="https://redox.test/platform",
        token_url=TOKEN_URL,
        client_id="client",
        key_id="kid",
        private_key_path=path,
        read_timeout=2.0,
        connect_timeout=1.0,
        write_timeout=1.0,
    )


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def token_server(assertions: list[str]) -> httpx.MockTransport:
    def handle(request: httpx.Request) -> httpx.Response:
        form = dict(item.split("=", 1) for item in request.content.decode().split("&"))
        assertions.append(form["client_assertion"])
        return httpx.Response(200, json={"access_token": f"t{len(assertions)}", "expires_in": 300})

    return httpx.MockTransport(handle)


def test_a_refresh_waiting_for_the_limiter_never_blocks_threads_with_a_valid_token(
    settings: RedoxSettings,
) -> None:
    assertions: list[str] = []
    clock = Clock()
    release = threading.Event()
    waiting = threading.Event()
    paced = [0]

    def pace() -> None:  # the shared rate limiter: the second refresh waits for a slot
        paced[0] += 1
        if paced[0] == 2:
            waiting.set()
            release.wait(10)

    http = httpx.Client(transport=token_server(assertions))
    provider = TokenProvider(settings, http, before_request=pace, clock=clock)
    assert provider.token() == "t1"
    clock.now += 300 - 20  # inside the refresh margin, not expired: due for a refresh
    refresher = threading.Thread(target=provider.token)
    refresher.start()
    assert waiting.wait(5)
    started = time.monotonic()
    assert provider.token() == "t1"  # the old token, at once, while the refresh waits
    assert time.monotonic() - started < 1.0
    release.set()
    refresher.join(5)
    assert provider.token() == "t2"
    assert len(assertions) == 2


def test_without_a_usable_token_threads_wait_for_the_one_refresh(settings: RedoxSettings) -> None:
    assertions: list[str] = []
    http = httpx.Client(transport=token_server(assertions))
    provider = TokenProvider(settings, http, before_request=lambda: time.sleep(0.2))
    results: list[str] = []
    threads = [threading.Thread(target=lambda: results.append(provider.token())) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(5)
    assert results == ["t1"] * 6
    assert len(assertions) == 1


def test_assertion_iat_allows_for_clock_skew(settings: RedoxSettings) -> None:
    assertions: list[str] = []
    provider = TokenProvider(settings, httpx.Client(transport=token_server(assertions)))
    before = int(time.time())
    provider.token()
    claims = jwt.decode(assertions[0], options={"verify_signature": False})
    assert before - CLOCK_SKEW_SECONDS - 1 <= claims["iat"] <= int(time.time()) - CLOCK_SKEW_SECONDS
    assert claims["exp"] - claims["iat"] == 300


def trickle(seconds_per_byte: float, body: bytes) -> Iterator[bytes]:
    for index in range(len(body)):
        time.sleep(seconds_per_byte)
        yield body[index : index + 1]


def redox_client(settings: RedoxSettings, handle: httpx.MockTransport) -> RedoxClient:
    retry = RetrySettings(max_attempts=3, max_seconds=30, backoff_initial=0.01, backoff_max=0.02)
    client = RedoxClient(settings, retry, transport=handle)
    client.tokens._token, client.tokens._refresh_at = "t", float("inf")  # no token traffic
    client.tokens._expires_at = float("inf")
    return client


def test_a_reply_trickled_a_byte_at_a_time_cannot_outlive_the_call_budget(
    settings: RedoxSettings,
) -> None:
    """Each byte arrives well within the read timeout; the whole reply does not fit in
    connect + write + read timeouts (4 s here), so the call stops there and is retried."""
    body = b'{"payload": {"destination": {"id": "d"}}}' * 3
    calls = [0]

    def handle(request: httpx.Request) -> httpx.Response:
        calls[0] += 1
        return httpx.Response(200, content=trickle(0.1, body))

    client = redox_client(settings, httpx.MockTransport(handle))
    started = time.monotonic()
    with pytest.raises(RedoxUnavailable, match="too slow"):
        client.get_destination("d")
    assert calls[0] == 3  # transient: tenacity tried each attempt, each cut at ~4 s
    assert time.monotonic() - started < 3 * 4 + 3


def test_the_run_deadline_stops_a_trickle_and_is_not_retried(settings: RedoxSettings) -> None:
    body = b'{"payload": {}}' * 20
    calls = [0]

    def handle(request: httpx.Request) -> httpx.Response:
        calls[0] += 1
        return httpx.Response(200, content=trickle(0.1, body))

    client = redox_client(settings, httpx.MockTransport(handle))
    started = time.monotonic()
    with guarded_run(1.0, None), pytest.raises((RedoxUnavailable, RunTimedOut)):
        client.get_destination("d")
    assert time.monotonic() - started < 2.5
    with guarded_run(0.0, None), pytest.raises(RunTimedOut):
        client.get_destination("d")  # past the deadline: nothing is sent
    assert calls[0] == 1


class ClosedFence:
    def check(self) -> None:
        raise LockLost("taken over")

    def write_fenced(self, key: str | None, mapping: dict[str, str]) -> None:
        self.check()

    def proof(self) -> tuple[list[str], list[str]]:
        return [], []


def test_every_write_attempt_is_fenced_but_reads_are_not(settings: RedoxSettings) -> None:
    sent: list[str] = []

    def handle(request: httpx.Request) -> httpx.Response:
        sent.append(request.method)
        return httpx.Response(200, json={"payload": {"destination": {"id": "d"}}})

    client = redox_client(settings, httpx.MockTransport(handle))
    with guarded_run(60.0, ClosedFence()):
        client.get_destination("d")
        with pytest.raises(LockLost):
            client.update_destination("d", auth_credential="c")
        with pytest.raises(LockLost):
            client.delete_auth_credential("c")
    assert sent == ["GET"]
