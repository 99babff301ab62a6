"""The live sandbox in one place: Redox state, IdPs, deliveries and their logs, journal, faults,
rate limiter and accepted key."""

from __future__ import annotations

import math
import random
import time
from collections import deque
from typing import Any

from starlette.requests import Request

from sandbox.config import FaultConfig, SandboxConfig
from sandbox.deliveries import DeliverySimulator
from sandbox.idp.state import IdpState
from sandbox.journal import Journal
from sandbox.keys import load_public_key
from sandbox.logs import LogStore
from sandbox.state import SandboxState

__all__ = ["RateLimiter", "SandboxRuntime", "runtime_of", "shown_host"]

#: What the X-RateLimit-Limit header says for injected 429s when no limit is configured.
DOCUMENTED_LIMIT = 7500


def shown_host(host: str) -> str:
    """The address clients use for ``host`` in a URL (a wildcard becomes 127.0.0.1)."""
    if host in ("0.0.0.0", "::", ""):  # noqa: S104
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host


class RateLimiter:
    """Rolling window over every token and platform request; refused requests do not count."""

    def __init__(
        self, requests: int | None, window_seconds: float, *, send_retry_after: bool
    ) -> None:
        self.requests = requests
        self.window_seconds = window_seconds
        self.send_retry_after = send_retry_after
        self._hits: deque[float] = deque()

    def hit(self, now: float | None = None) -> dict[str, str] | None:
        """Count a request; over the limit, return the 429's headers instead."""
        if self.requests is None:
            return None
        now = time.monotonic() if now is None else now
        while self._hits and self._hits[0] <= now - self.window_seconds:
            self._hits.popleft()
        if len(self._hits) < self.requests:
            self._hits.append(now)
            return None
        headers = {"X-RateLimit-Limit": str(self.requests)}
        if self.send_retry_after:
            wait = self._hits[0] + self.window_seconds - now
            headers["Retry-After"] = str(max(1, math.ceil(wait)))
        return headers

    def settings(self) -> dict[str, Any]:
        """JSON view for /_sandbox/ratelimit."""
        return {
            "requests": self.requests,
            "window_seconds": self.window_seconds,
            "send_retry_after": self.send_retry_after,
            "in_window": len(self._hits),
        }


class SandboxRuntime:
    """Mutable per-app object shared by the middleware, the routes and the control endpoints."""

    def __init__(self, config: SandboxConfig) -> None:
        self.config = config
        self.state = SandboxState(config)
        self.journal = Journal()
        self.faults: FaultConfig = FaultConfig.from_dict(config.faults.to_dict())
        self.rng = random.Random(config.random_seed)
        self.limiter = RateLimiter(
            config.rate_limit_requests,
            config.rate_limit_window_seconds,
            send_retry_after=config.send_retry_after,
        )
        self.client_id = config.client_id
        self.key_id = config.key_id
        self.public_key_pem: bytes | None = None
        if config.public_key_pem is not None:
            self.set_public_key(config.public_key_pem)
        self.idp = IdpState(
            random_seed=config.random_seed,
            propagation_delay_seconds=config.idp_propagation_delay_seconds,
        )
        self.logs = LogStore()
        self.deliveries = DeliverySimulator(self.state, self.logs, config.deliveries_every_seconds)
        #: ``http://host:port`` the sandbox serves on; None until known (an ephemeral port).
        self.base_url: str | None = None
        self._seed_pending = bool(config.seed)
        if config.port:
            self.set_base_url(f"http://{shown_host(config.host)}:{config.port}")
        elif config.seed and config.idp is None:
            self._seed_from_config()

    def set_base_url(self, url: str) -> None:
        """Record where the sandbox listens; seeds ``config.seed`` destinations if still due.

        Call it before the server runs (or from its event loop): IdP seeding needs the URL.
        """
        self.base_url = url.rstrip("/")
        if self._seed_pending:
            self._seed_from_config()

    def _seed_from_config(self) -> None:
        from sandbox.seeding import seed_destinations  # seeding needs this module

        self._seed_pending = False
        seed_destinations(self, self.config.seed, idp=self.config.idp)

    def reset(self) -> None:
        """Empty Redox state, IdP apps and tokens, logs, delivery stats and the journal.

        Keys, config, faults, IdP settings and the IdP management credentials stay.
        """
        self.state.reset()
        self.idp.reset()
        self.logs.clear()
        self.deliveries.reset()
        self.journal.clear()

    def set_public_key(self, pem: bytes) -> None:
        """Accept assertions signed by the private half of ``pem`` (ValueError if unusable)."""
        load_public_key(pem)
        self.public_key_pem = pem

    def set_rate_limit(
        self, requests: int | None, window_seconds: float, *, send_retry_after: bool
    ) -> None:
        """Replace the rate limiter (its window starts empty)."""
        self.limiter = RateLimiter(requests, window_seconds, send_retry_after=send_retry_after)


def runtime_of(request: Request) -> SandboxRuntime:
    """The runtime stored on the app by create_app."""
    runtime = request.app.state.sandbox
    assert isinstance(runtime, SandboxRuntime)
    return runtime
