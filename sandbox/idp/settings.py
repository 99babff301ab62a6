"""IdP behaviour settable at run time: rules (propagation, limits) and faults (errors, holds).

Both follow :class:`sandbox.config.FaultConfig`: dataclasses built from JSON with unknown keys
and bad values refused (``ValueError``), ``merged`` for PATCH and ``to_dict`` for GET.
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Self

__all__ = ["Hold", "IdpFaults", "IdpSettings"]


def _number(name: str, value: object, *, upper: float | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} must be a number")
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0")
    if upper is not None and value > upper:
        raise ValueError(f"{name} must be between 0 and {upper:g}")


def _from_dict(cls: type[Any], data: object) -> Any:
    if not isinstance(data, dict):
        raise ValueError(f"{cls.__name__} must be a JSON object")
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"unknown setting(s): {', '.join(unknown)}")
    return cls(**data)


@dataclass
class IdpSettings:
    """Rules of both fake IdPs.

    ``propagation_delay_seconds``: a secret created through the management API (Okta create,
    Entra addPassword) is refused at the token endpoint for this long (the value in force when
    it was created counts). ``password_limit``: Entra passwords per application (Okta's limit
    of two secret objects is Okta's own rule and not configurable). ``management_rate_limit``:
    management requests allowed per IdP per ``management_rate_window_seconds`` (None: no
    limit). ``token_ttl_seconds``: lifetime of issued access tokens (None: the vendors'
    documented 3600 for Okta, 3599 for Entra).
    """

    propagation_delay_seconds: float = 0.0
    password_limit: int = 2
    management_rate_limit: int | None = None
    management_rate_window_seconds: float = 60.0
    token_ttl_seconds: int | None = None

    def __post_init__(self) -> None:
        _number("propagation_delay_seconds", self.propagation_delay_seconds)
        _number("management_rate_window_seconds", self.management_rate_window_seconds)
        if self.management_rate_window_seconds <= 0:
            raise ValueError("management_rate_window_seconds must be > 0")
        for name in ("password_limit", "management_rate_limit", "token_ttl_seconds"):
            value = getattr(self, name)
            if value is None and name != "password_limit":
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name} must be a positive integer")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready copy."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: object) -> Self:
        """Build from JSON; unknown keys and bad values raise ValueError."""
        built: Self = _from_dict(cls, data)
        return built

    def merged(self, changes: object) -> IdpSettings:
        """A copy with ``changes`` (a JSON object) applied on top."""
        if not isinstance(changes, dict):
            raise ValueError("IdpSettings must be a JSON object")
        return IdpSettings.from_dict({**self.to_dict(), **changes})


@dataclass
class IdpFaults:
    """Injected IdP misbehaviour; management and token endpoints have their own dice.

    ``*_p5xx`` answers 500/502/503 (evenly), ``*_p429`` answers 429, each in the IdP's own
    error shape. ``reject_token_clients`` lists client ids whose every token request is
    refused as if the secret were wrong (to make a rehearsal fail). ``latency_ms`` is added to
    every IdP request.
    """

    latency_ms: float = 0.0
    management_p5xx: float = 0.0
    management_p429: float = 0.0
    token_p5xx: float = 0.0
    token_p429: float = 0.0
    reject_token_clients: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        _number("latency_ms", self.latency_ms)
        for name in ("management_p5xx", "management_p429", "token_p5xx", "token_p429"):
            _number(name, getattr(self, name), upper=1.0)
        if self.management_p5xx + self.management_p429 > 1 + 1e-9:
            raise ValueError("management_p5xx + management_p429 must not exceed 1")
        if self.token_p5xx + self.token_p429 > 1 + 1e-9:
            raise ValueError("token_p5xx + token_p429 must not exceed 1")
        clients = self.reject_token_clients
        if not isinstance(clients, list) or not all(isinstance(c, str) and c for c in clients):
            raise ValueError("reject_token_clients must be a list of non-empty strings")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready copy."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: object) -> Self:
        """Build from JSON; unknown keys and bad values raise ValueError."""
        built: Self = _from_dict(cls, data)
        return built

    def merged(self, changes: object) -> IdpFaults:
        """A copy with ``changes`` (a JSON object) applied on top."""
        if not isinstance(changes, dict):
            raise ValueError("IdpFaults must be a JSON object")
        return IdpFaults.from_dict({**self.to_dict(), **changes})


class Hold:
    """While set, management create calls wait until release (or their timeout) passes.

    Only touched from the server's event loop; waiting never blocks the loop.
    """

    def __init__(self) -> None:
        self.active = False
        self.timeout_seconds = 60.0
        self.waiting = 0
        self.held_total = 0
        self._released = asyncio.Event()

    def set(self, timeout_seconds: float = 60.0) -> None:
        """Start holding (a new hold if one is already set: the timeout is replaced)."""
        _number("timeout_seconds", timeout_seconds)
        if not self.active:
            self._released = asyncio.Event()
        self.active = True
        self.timeout_seconds = float(timeout_seconds)

    def release(self) -> int:
        """Let every waiting call go on; returns how many were waiting."""
        released = self.waiting
        self.active = False
        self._released.set()
        return released

    async def wait(self) -> bool:
        """Wait while the hold is set; True if this call was held at all."""
        if not self.active:
            return False
        self.waiting += 1
        self.held_total += 1
        try:
            async with asyncio.timeout(self.timeout_seconds):
                await self._released.wait()
        except TimeoutError:
            pass
        finally:
            self.waiting -= 1
        return True

    def view(self) -> dict[str, Any]:
        """JSON view for ``/_sandbox/idp/hold``."""
        return {
            "hold": self.active,
            "waiting": self.waiting,
            "held_total": self.held_total,
            "timeout_seconds": self.timeout_seconds,
        }
