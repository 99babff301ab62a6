"""ASGI middleware in front of the IdP routes (``/idp/...``).

In order: journal every request (kinds such as ``okta_create_secret``, ``entra_token``), add
latency, apply the IdP's management rate limit, roll the management / token fault dice, hold
management create calls while a hold is set, then route. Okta responses all carry
``X-Rate-Limit-Limit/Remaining/Reset`` (§A4). IdP traffic never counts against the Redox rate
limiter and never gets Redox faults.
"""

from __future__ import annotations

import asyncio
import math
import random
import time

from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sandbox.idp.errors import aad_error, graph_error, okta_error
from sandbox.journal import CLIENT_CLOSED, classify
from sandbox.oauth_request import DELIVERY_AGENT
from sandbox.runtime import SandboxRuntime

__all__ = ["FixedWindow", "IdpTrafficMiddleware"]

PREFIX = "/idp/"
#: What X-Rate-Limit-Limit shows when no management limit is configured [U: Okta's per-
#: endpoint limits vary by org; 600/min is a common figure for /api/v1/apps].
SHOWN_LIMIT = 600
HELD_KINDS = frozenset({"okta_create_secret", "entra_add_password"})


class FixedWindow:
    """Okta-style fixed rate-limit window: a count that restarts every ``window`` seconds."""

    def __init__(self) -> None:
        self.started = 0.0
        self.count = 0

    def hit(
        self, limit: int | None, window: float, *, now: float | None = None
    ) -> tuple[bool, int, int, int]:
        """Count a request if allowed: (allowed, shown limit, remaining, reset epoch seconds)."""
        moment = time.time() if now is None else now
        if moment >= self.started + window:
            self.started, self.count = moment, 0
        allowed = limit is None or self.count < limit
        if allowed:
            self.count += 1
        shown = limit if limit is not None else SHOWN_LIMIT
        return allowed, shown, max(0, shown - self.count), math.ceil(self.started + window)


def _role(path: str) -> tuple[str, str | None]:
    """(idp, "management" | "token" | None) of an ``/idp/...`` path."""
    for idp, token_prefix, management_prefix in (
        ("okta", "/idp/okta/oauth2/", "/idp/okta/api/"),
        ("entra", "/idp/entra/login/", "/idp/entra/graph/"),
    ):
        if path.startswith(token_prefix):
            return idp, "token"
        if path.startswith(management_prefix):
            return idp, "management"
    return ("okta" if path.startswith("/idp/okta/") else "entra"), None


def _fault_response(idp: str, role: str, status: int, retry_after: int = 1) -> Response:
    """An injected or rate-limit error in the shape the addressed endpoint uses [U for 5xx]."""
    if idp == "okta":
        if status == 429:
            return okta_error(
                429, "E0000047", "API call exceeded rate limit due to too many requests."
            )
        return okta_error(status, "E0000009", "Internal Server Error")
    headers = {"Retry-After": str(retry_after)}
    if role == "token":
        return aad_error(
            status,
            "temporarily_unavailable",
            90033,
            "A transient error has occurred. Please try again.",
            headers=headers,
        )
    if status == 429:
        return graph_error(429, "TooManyRequests", "Too many requests.", headers=headers)
    code = {500: "generalException", 502: "badGateway"}.get(status, "serviceNotAvailable")
    return graph_error(status, code, "The service is temporarily unavailable.", headers=headers)


class IdpTrafficMiddleware:
    """Wraps the Starlette app; per-IdP rate windows are its only state besides the runtime."""

    def __init__(self, app: ASGIApp, runtime: SandboxRuntime) -> None:
        self.app = app
        self.runtime = runtime
        seed = runtime.config.random_seed
        self.rng = random.Random(None if seed is None else f"idp-faults-{seed}")
        self._windows_for: object = None
        self.windows: dict[tuple[str, str], FixedWindow] = {}

    def _window(self, idp: str, role: str) -> FixedWindow | None:
        """The rate window of an endpoint group; all restart when the settings change."""
        settings = self.runtime.idp.settings
        if self._windows_for is not settings:
            self._windows_for = settings
            self.windows = {
                ("okta", "management"): FixedWindow(),
                ("okta", "token"): FixedWindow(),
                ("entra", "management"): FixedWindow(),
            }
        return self.windows.get((idp, role))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        if scope["type"] != "http" or not path.startswith(PREFIX):
            await self.app(scope, receive, send)
            return
        method: str = scope["method"]
        idp, role = _role(path)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        origin = "delivery" if headers.get("user-agent") == DELIVERY_AGENT else ""
        status = CLIENT_CLOSED
        epoch = self.runtime.journal.epoch
        limit_headers: list[tuple[bytes, bytes]] = []
        cause = ""

        async def recording_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                if limit_headers:
                    message = {**message, "headers": [*message.get("headers", []), *limit_headers]}
            await send(message)

        try:
            cause = await self._handle(scope, receive, recording_send, idp, role, limit_headers)
        finally:
            # A request that started before a reset is not recorded after it.
            self.runtime.journal.record(method, path, status, cause, origin, since_epoch=epoch)

    async def _handle(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        idp: str,
        role: str | None,
        limit_headers: list[tuple[bytes, bytes]],
    ) -> str:
        state = self.runtime.idp
        faults, settings = state.faults, state.settings
        if faults.latency_ms > 0:
            await asyncio.sleep(faults.latency_ms / 1000)
        if role is None:
            await self.app(scope, receive, send)
            return ""
        window = self._window(idp, role)
        if window is not None:
            enforced = settings.management_rate_limit if role == "management" else None
            allowed, shown, remaining, reset = window.hit(
                enforced, settings.management_rate_window_seconds
            )
            if idp == "okta":
                limit_headers += [
                    (b"x-rate-limit-limit", str(shown).encode()),
                    (b"x-rate-limit-remaining", str(remaining).encode()),
                    (b"x-rate-limit-reset", str(reset).encode()),
                ]
            if not allowed:
                until = window.started + settings.management_rate_window_seconds
                wait = max(1, math.ceil(until - time.time()))
                await _fault_response(idp, role, 429, wait)(scope, receive, send)
                return "ratelimit"
        injected = self._dice(role)
        if injected is not None:
            await _fault_response(idp, role, injected)(scope, receive, send)
            return "fault"
        held = False
        if classify(scope["method"], scope["path"]) in HELD_KINDS:
            held = await state.hold.wait()
        await self.app(scope, receive, send)
        return "held" if held else ""

    def _dice(self, role: str) -> int | None:
        faults = self.runtime.idp.faults
        p5xx = faults.management_p5xx if role == "management" else faults.token_p5xx
        p429 = faults.management_p429 if role == "management" else faults.token_p429
        roll = self.rng.random()
        if roll < p5xx:
            return self.rng.choice((500, 502, 503))
        if roll < p5xx + p429:
            return 429
        return None
