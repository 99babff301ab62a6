"""ASGI middleware in front of the token and platform routes.

In order: journal every request (with the bytes of its request body and of the response
body sent), apply the rolling rate limit, inject faults (latency, hang, random 5xx/429,
permanent per-id errors), check the bearer token, then break 2xx bodies of ids listed in
``malformed``. ``/_sandbox`` control traffic passes straight through.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sandbox.auth import bearer_ok
from sandbox.config import FaultConfig
from sandbox.journal import CLIENT_CLOSED
from sandbox.replies import META, error_page, error_response, unauthorized
from sandbox.runtime import DOCUMENTED_LIMIT, SandboxRuntime

__all__ = ["TrafficMiddleware", "malform"]

TOKEN_PATH = "/v2/auth/token"
PLATFORM_PREFIX = "/platform"
HUGE_BYTES = 11 * 1024 * 1024  # above the 10 MB Redox documents for 413
TRICKLE_LIMIT_SECONDS = 120.0


class TrafficMiddleware:
    """Wraps the Starlette app; holds no state of its own beyond the runtime."""

    def __init__(self, app: ASGIApp, runtime: SandboxRuntime) -> None:
        self.app = app
        self.runtime = runtime

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        is_platform = path == PLATFORM_PREFIX or path.startswith(PLATFORM_PREFIX + "/")
        if scope["type"] != "http" or not (is_platform or path == TOKEN_PATH):
            await self.app(scope, receive, send)
            return
        method: str = scope["method"]
        status = CLIENT_CLOSED
        cause = ""
        received = 0  # request body bytes read so far
        read_all = False
        sent = 0  # response body bytes handed to the server

        async def counting_receive() -> Message:
            nonlocal received, read_all
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                read_all = not message.get("more_body", False)
            return message

        async def recording_send(message: Message) -> None:
            nonlocal status, sent
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)
            if message["type"] == "http.response.body":
                sent += len(message.get("body", b""))

        try:
            cause = await self._handle(
                scope, counting_receive, recording_send, is_platform=is_platform
            )
        finally:
            self.runtime.journal.record(
                method,
                path,
                status,
                cause,
                request_bytes=received if read_all else max(received, _declared_length(scope)),
                response_bytes=sent,
            )

    async def _handle(
        self, scope: Scope, receive: Receive, send: Send, *, is_platform: bool
    ) -> str:
        runtime = self.runtime
        faults = runtime.faults
        limited = runtime.limiter.hit()
        if limited is not None:
            await _error(
                429,
                faults,
                headers=limited,
                scope=scope,
                receive=receive,
                send=send,
                html_ok=is_platform,
            )
            return "ratelimit"
        if is_platform or faults.faults_on_token:
            cause = await self._inject(scope, receive, send, faults)
            if cause:
                return cause
        if is_platform:
            headers = dict(_headers(scope))
            if not bearer_ok(runtime, headers.get("authorization")):
                await unauthorized()(scope, receive, send)
                return "auth"
            slow = _match(faults.trickle, scope["path"])
            if slow is not None:
                send = _Trickler(send, float(faults.trickle[slow])).send
            key = _match(faults.malformed, scope["path"])
            methods = faults.malformed_methods.get(key or "")
            if key is not None and (not methods or scope["method"] in _upper(methods)):
                await self.app(scope, receive, _Malformer(send, faults.malformed[key]).send)
                return "malformed"
            if slow is not None:
                await self.app(scope, receive, send)
                return "trickle"
        await self.app(scope, receive, send)
        return ""

    async def _inject(self, scope: Scope, receive: Receive, send: Send, faults: FaultConfig) -> str:
        rng = self.runtime.rng
        delay = faults.latency_ms
        if faults.latency_jitter_ms:
            delay += rng.uniform(-faults.latency_jitter_ms, faults.latency_jitter_ms)
        if delay > 0:
            await asyncio.sleep(delay / 1000)
        if faults.p_hang and rng.random() < faults.p_hang:
            if not await _wait_for_disconnect(receive, faults.hang_seconds):
                await _error(504, faults, headers={}, scope=scope, receive=receive, send=send)
            return "hang"
        status = _permanent_status(faults, scope["method"], scope["path"])
        if status is None:
            status = _dice(faults, rng.random())
        if status is None:
            return ""
        headers: dict[str, str] = {}
        if status == 429:
            limit = self.runtime.limiter.requests or DOCUMENTED_LIMIT
            headers["X-RateLimit-Limit"] = str(limit)
            if self.runtime.limiter.send_retry_after:
                headers["Retry-After"] = "1"
        await _error(status, faults, headers=headers, scope=scope, receive=receive, send=send)
        return "fault"


def _headers(scope: Scope) -> list[tuple[str, str]]:
    return [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope.get("headers", [])]


def _declared_length(scope: Scope) -> int:
    """The request's Content-Length (0 if absent or not a number): what the client sent when
    the body was answered without being read (a 429, a fault)."""
    for key, value in scope.get("headers", []):
        if key.lower() == b"content-length":
            try:
                return max(int(value), 0)
            except ValueError:
                return 0
    return 0


def _match(mapping: dict[str, Any], path: str) -> str | None:
    """First key of ``mapping`` found in ``path`` (``*`` matches every path)."""
    for key in mapping:
        if key == "*" or key in path:
            return key
    return None


def _upper(methods: list[str]) -> set[str]:
    return {m.upper() for m in methods}


def _permanent_status(faults: FaultConfig, method: str, path: str) -> int | None:
    for key, status in faults.permanent.items():
        if key != "*" and key not in path:
            continue
        methods = faults.permanent_methods.get(key)
        if not methods or method.upper() in _upper(methods):
            return status
    return None


def _dice(faults: FaultConfig, roll: float) -> int | None:
    edge = 0.0
    for status, chance in ((500, faults.p500), (502, faults.p502), (503, faults.p503)):
        edge += chance
        if roll < edge:
            return status
    edge += faults.p429
    return 429 if roll < edge else None


async def _error(
    status: int,
    faults: FaultConfig,
    *,
    headers: dict[str, str],
    scope: Scope,
    receive: Receive,
    send: Send,
    html_ok: bool = True,
) -> None:
    response = error_response(status, html_body=faults.html_errors and html_ok, headers=headers)
    await response(scope, receive, send)


async def _wait_for_disconnect(receive: Receive, seconds: float) -> bool:
    """Hold the request open; True if the client went away before ``seconds`` passed."""
    try:
        async with asyncio.timeout(seconds):
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return True
    except TimeoutError:
        return False


class _Trickler:
    """Sends a reply's body one byte at a time, ``seconds`` apart (for at most
    ``TRICKLE_LIMIT_SECONDS``, then the rest at once, so a test run cannot pile them up)."""

    def __init__(self, send: Send, seconds: float) -> None:
        self._send = send
        self._seconds = seconds

    async def send(self, message: Message) -> None:
        if message["type"] != "http.response.body":
            await self._send(message)
            return
        body: bytes = message.get("body", b"")
        more = bool(message.get("more_body", False))
        until = time.monotonic() + TRICKLE_LIMIT_SECONDS
        for index in range(len(body)):
            if time.monotonic() > until:
                await self._send({"type": "http.response.body", "body": body[index:],
                                  "more_body": more})  # fmt: skip
                return
            await asyncio.sleep(self._seconds)
            await self._send(
                {"type": "http.response.body", "body": body[index : index + 1], "more_body": True}
            )
        await self._send({"type": "http.response.body", "body": b"", "more_body": more})


class _Malformer:
    """Buffers a 2xx reply and sends a broken version of it instead."""

    def __init__(self, send: Send, kind: str) -> None:
        self._send = send
        self._kind = kind
        self._start: Message | None = None
        self._body = bytearray()

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            if 200 <= int(message["status"]) < 300:
                self._start = message
                return
        elif message["type"] == "http.response.body" and self._start is not None:
            self._body += message.get("body", b"")
            if message.get("more_body", False):
                return
            body, media_type = malform(self._kind, bytes(self._body))
            reply = Response(body, status_code=int(self._start["status"]), media_type=media_type)
            await self._send(
                {
                    "type": "http.response.start",
                    "status": reply.status_code,
                    "headers": reply.raw_headers,
                }
            )
            await self._send({"type": "http.response.body", "body": reply.body})
            return
        await self._send(message)


def malform(kind: str, original: bytes) -> tuple[bytes, str]:
    """A broken body of the given kind, derived from ``original``; returns (body, media type)."""
    try:
        parsed = json.loads(original)
    except ValueError:
        parsed = {}
    payload = parsed.get("payload", {}) if isinstance(parsed, dict) else {}
    if kind == "non_json":
        return original[: max(len(original) // 2, 1)] or b"{", "application/json"
    if kind == "missing_payload":
        return json.dumps({"meta": META}).encode(), "application/json"
    if kind == "wrong_types":
        broken = (
            {k: _wrong_types(v) for k, v in payload.items()} if isinstance(payload, dict) else 1
        )
        return json.dumps({"meta": META, "payload": broken}).encode(), "application/json"
    if kind == "html":
        return error_page(200, "OK").encode(), "text/html"
    padded = {"meta": META, "payload": payload, "padding": "x" * HUGE_BYTES}
    return json.dumps(padded).encode(), "application/json"


def _wrong_types(value: Any) -> Any:
    """Each field of an object (or each object of a list) gets a value of the wrong type."""
    if isinstance(value, dict):
        return {k: _flip(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_wrong_types(v) for v in value] or {"not": "a list"}
    return _flip(value)


def _flip(value: Any) -> Any:
    if isinstance(value, bool):
        return "yes"
    if isinstance(value, str):
        return 12345
    if isinstance(value, int | float):
        return str(value)
    if value is None:
        return 0
    return "not-an-object"
