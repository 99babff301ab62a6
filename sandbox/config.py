"""Sandbox settings: what the fake Redox serves and how it misbehaves (faults)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

__all__ = [
    "ENVIRONMENT_FLAGS",
    "IDPS",
    "MALFORMATIONS",
    "FaultConfig",
    "SandboxConfig",
]

#: Environment flags Redox knows (redox-api.md §4).
ENVIRONMENT_FLAGS = ("Development", "Staging", "Production")

#: IdPs the sandbox fakes (SandboxConfig.idp values; None means none).
IDPS = (None, "okta", "entra")

#: Ways a 2xx reply can be broken on purpose (FaultConfig.malformed values).
MALFORMATIONS = ("non_json", "missing_payload", "wrong_types", "html", "huge")

_PROBABILITIES = ("p500", "p502", "p503", "p429", "p_hang")
_HTTP_METHODS = {"GET", "POST", "PATCH", "PUT", "DELETE", "HEAD", "OPTIONS"}


@dataclass
class FaultConfig:
    """Injected misbehaviour for ``/platform/*`` (and the token endpoint if ``faults_on_token``).

    ``permanent`` and ``malformed`` are keyed by an id matched as a substring of the request
    path (``"*"`` matches every request); ``permanent_methods`` and ``malformed_methods``
    narrow an entry of ``permanent`` or ``malformed`` to some HTTP methods. ``trickle``
    (same keys) sends matching replies' bodies one byte per that many seconds, like a
    peer that hangs without ever going quiet long enough for a read timeout.
    """

    latency_ms: float = 0.0
    latency_jitter_ms: float = 0.0
    p500: float = 0.0
    p502: float = 0.0
    p503: float = 0.0
    p429: float = 0.0
    p_hang: float = 0.0
    hang_seconds: float = 30.0
    html_errors: bool = False
    faults_on_token: bool = False
    permanent: dict[str, int] = field(default_factory=dict)
    permanent_methods: dict[str, list[str]] = field(default_factory=dict)
    malformed: dict[str, str] = field(default_factory=dict)
    malformed_methods: dict[str, list[str]] = field(default_factory=dict)
    trickle: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ValueError naming the first bad value."""
        for name in ("latency_ms", "latency_jitter_ms", "hang_seconds", *_PROBABILITIES):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"{name} must be a number")
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite number >= 0")
        for name in _PROBABILITIES:
            if getattr(self, name) > 1:
                raise ValueError(f"{name} must be a probability between 0 and 1")
        if self.p500 + self.p502 + self.p503 + self.p429 > 1 + 1e-9:
            raise ValueError("p500 + p502 + p503 + p429 must not exceed 1")
        for name in ("html_errors", "faults_on_token"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be a boolean")
        self._validate_maps()

    def _validate_maps(self) -> None:
        _check_mapping("permanent", self.permanent, int)
        for key, status in self.permanent.items():
            if isinstance(status, bool) or not 400 <= status <= 599:
                raise ValueError(f"permanent[{key!r}] must be an HTTP error status (400-599)")
        for name in ("permanent_methods", "malformed_methods"):
            narrowed: dict[str, list[str]] = getattr(self, name)
            _check_mapping(name, narrowed, list)
            for key, methods in narrowed.items():
                if not all(isinstance(m, str) and m.upper() in _HTTP_METHODS for m in methods):
                    raise ValueError(f"{name}[{key!r}] must list HTTP methods")
        _check_mapping("trickle", self.trickle, (int, float))
        for key, seconds in self.trickle.items():
            if isinstance(seconds, bool) or not 0 < seconds <= 60:
                raise ValueError(f"trickle[{key!r}] must be seconds per byte, > 0 and <= 60")
        _check_mapping("malformed", self.malformed, str)
        for key, kind in self.malformed.items():
            if kind not in MALFORMATIONS:
                raise ValueError(f"malformed[{key!r}] must be one of {', '.join(MALFORMATIONS)}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready copy."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: object) -> FaultConfig:
        """Build from JSON; unknown keys and bad values raise ValueError."""
        if not isinstance(data, dict):
            raise ValueError("fault config must be a JSON object")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown fault setting(s): {', '.join(unknown)}")
        try:
            return cls(**data)
        except TypeError as exc:  # pragma: no cover - guarded by the key check above
            raise ValueError(str(exc)) from exc

    def merged(self, changes: object) -> FaultConfig:
        """A copy with ``changes`` (a JSON object) applied on top."""
        if not isinstance(changes, dict):
            raise ValueError("fault config must be a JSON object")
        return FaultConfig.from_dict({**self.to_dict(), **changes})


def _check_mapping(name: str, value: object, value_type: type | tuple[type, ...]) -> None:
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and k and isinstance(v, value_type) for k, v in value.items()
    ):
        types = value_type if isinstance(value_type, tuple) else (value_type,)
        names = " or ".join(t.__name__ for t in types)
        raise ValueError(f"{name} must map non-empty ids to {names} values")


@dataclass
class SandboxConfig:
    """How the sandbox starts. ``public_key_pem=None`` refuses every token until a key is set."""

    host: str = "127.0.0.1"
    port: int = 8085
    client_id: str = "sandbox-client"
    key_id: str = "sandbox-kid"
    public_key_pem: bytes | None = None
    organization_id: int = 1001
    #: Destinations (each with its own OAuth credential) created at start, in the first env.
    seed: int = 0
    #: Environments created at start: flag -> how many.
    environments: dict[str, int] = field(default_factory=lambda: {"Development": 1})
    token_ttl_seconds: int = 300
    rate_limit_requests: int | None = None
    rate_limit_window_seconds: float = 300.0
    send_retry_after: bool = False
    faults: FaultConfig = field(default_factory=FaultConfig)
    #: Seed for fault dice and generated ids (None: not reproducible).
    random_seed: int | None = None
    log_level: str = "warning"
    #: IdP the ``seed`` destinations get apps at ("okta", "entra"; None: no IdP, as before).
    idp: str | None = None
    #: Seconds between simulated deliveries to each enabled destination.
    deliveries_every_seconds: float = 2.0
    #: Seconds a secret created through an IdP management API is refused at its token endpoint.
    idp_propagation_delay_seconds: float = 0.0

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ValueError naming the first bad value."""
        if not 0 <= self.port <= 65535:
            raise ValueError("port must be between 0 and 65535")
        if self.seed < 0:
            raise ValueError("seed must be >= 0")
        if self.token_ttl_seconds <= 0:
            raise ValueError("token_ttl_seconds must be > 0")
        if self.rate_limit_requests is not None and self.rate_limit_requests <= 0:
            raise ValueError("rate_limit_requests must be > 0 (or None for no limit)")
        if self.rate_limit_window_seconds <= 0:
            raise ValueError("rate_limit_window_seconds must be > 0")
        for flag, count in self.environments.items():
            if flag not in ENVIRONMENT_FLAGS:
                raise ValueError(f"environment flag must be one of {', '.join(ENVIRONMENT_FLAGS)}")
            if count < 0:
                raise ValueError("environment counts must be >= 0")
        if sum(self.environments.values()) == 0:
            raise ValueError("at least one environment is needed")
        if not self.client_id or not self.key_id:
            raise ValueError("client_id and key_id must not be empty")
        self._validate_idp_and_deliveries()

    def _validate_idp_and_deliveries(self) -> None:
        if self.idp not in IDPS:
            raise ValueError("idp must be okta, entra or None")
        for name in ("deliveries_every_seconds", "idp_propagation_delay_seconds"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"{name} must be a number")
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite number >= 0")
        if self.deliveries_every_seconds <= 0:
            raise ValueError("deliveries_every_seconds must be > 0")
