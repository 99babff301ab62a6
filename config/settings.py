"""Settings: everything a deployment sets, read once at start from env (``ROTATOR_``) and ``.env``.

Build one :class:`Settings` with :func:`load_settings` and pass it down; nothing else reads
the environment. Nested groups use ``__``: ``ROTATOR_REDOX__CLIENT_ID``.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict, SettingsError

from worker.errors import ConfigError

__all__ = [
    "CelerySettings",
    "EventSettings",
    "LockSettings",
    "RateLimitSettings",
    "RedoxSettings",
    "RetrySettings",
    "SchedulerSettings",
    "SecretSourceSettings",
    "Settings",
    "load_settings",
    "mask_url",
]

#: Redox allows about 7,500 requests per rolling five minutes per IP; we default to 80 %.
REDOX_WINDOW_LIMIT = 7_500
_QUERY_SECRET = re.compile(r"(?i)([?&](?:password|token|secret)=)[^&#]*")


class _Group(BaseModel):
    model_config = {"extra": "forbid", "frozen": True}


class RedoxSettings(_Group):
    """How to reach and authenticate to the Redox Platform API."""

    base_url: str = "https://api.redoxengine.com/platform"
    token_url: str = "https://api.redoxengine.com/v2/auth/token"
    client_id: str = ""
    key_id: str = ""
    private_key_path: Path | None = None
    allow_insecure_http: bool = False
    #: Seconds to open a connection, read a reply, send a body, wait for a pooled connection.
    connect_timeout: float = Field(5.0, gt=0)
    read_timeout: float = Field(20.0, gt=0)
    write_timeout: float = Field(10.0, gt=0)
    pool_timeout: float = Field(10.0, gt=0)
    #: Refresh a cached token this many seconds before Redox says it expires.
    token_refresh_margin: float = Field(30.0, ge=0)
    max_connections: int = Field(20, ge=1)

    @field_validator("base_url", "token_url")
    @classmethod
    def _absolute_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"must be an absolute http(s) URL, got {mask_url(value)!r}")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _https_unless_allowed(self) -> RedoxSettings:
        if not self.allow_insecure_http:
            for name in ("base_url", "token_url"):
                if urlsplit(getattr(self, name)).scheme != "https":
                    raise ValueError(
                        f"ROTATOR_REDOX__{name.upper()}: must use https (set "
                        "ROTATOR_REDOX__ALLOW_INSECURE_HTTP=true only for the local sandbox)"
                    )
        return self


class RetrySettings(_Group):
    """Retry budget: tenacity inside one task run, then Celery retries of the whole task."""

    max_attempts: int = Field(5, ge=1, le=50)
    max_seconds: float = Field(30.0, gt=0)
    backoff_initial: float = Field(0.5, gt=0)
    backoff_max: float = Field(8.0, gt=0)
    task_max_retries: int = Field(6, ge=0, le=100)
    task_backoff_initial: float = Field(5.0, gt=0)
    task_backoff_max: float = Field(300.0, gt=0)


class RateLimitSettings(_Group):
    """The shared Redox request budget (one Redis limiter for every worker)."""

    requests: int = Field(int(REDOX_WINDOW_LIMIT * 0.8), ge=1)
    window_seconds: float = Field(300.0, gt=0)
    #: Longest a single call waits for a slot before giving up as transient.
    max_wait_seconds: float = Field(60.0, gt=0)
    enabled: bool = True


class LockSettings(_Group):
    """Single-flight lease per destination."""

    ttl_seconds: float = Field(60.0, gt=1)
    renew_every_seconds: float = Field(15.0, gt=0)
    #: How long a claimed-but-never-started rotation blocks new triggers.
    claim_ttl_seconds: float = Field(6 * 3600.0, gt=60)


class CelerySettings(_Group):
    """Worker limits; soft < hard < visibility timeout is checked at start."""

    soft_time_limit: float = Field(240.0, gt=0)
    time_limit: float = Field(300.0, gt=0)
    visibility_timeout: float = Field(3600.0, gt=0)
    result_expires: float = Field(3600.0, gt=0)
    max_tasks_per_child: int = Field(1000, ge=1)
    concurrency: int = Field(8, ge=1)
    #: Rotations wait on I/O, so threads are the default (a Runtime, token and connection pool
    #: shared by all slots). Celery enforces the time limits only on prefork; on threads a run
    #: is still bounded far below the visibility timeout by the HTTP timeouts, tenacity's
    #: deadline and the limiter's max wait on every call. Choose prefork to have them enforced.
    pool: Literal["prefork", "threads", "solo"] = "threads"

    @model_validator(mode="after")
    def _limits_in_order(self) -> CelerySettings:
        if not self.soft_time_limit < self.time_limit < self.visibility_timeout:
            raise ValueError(
                "ROTATOR_CELERY__SOFT_TIME_LIMIT < ROTATOR_CELERY__TIME_LIMIT < "
                "ROTATOR_CELERY__VISIBILITY_TIMEOUT is required "
                f"(got {self.soft_time_limit} / {self.time_limit} / {self.visibility_timeout})"
            )
        return self


class EventSettings(_Group):
    """The result-event stream."""

    stream_maxlen: int = Field(100_000, ge=100)


class SchedulerSettings(_Group):
    """Beat's due-time scan and the retirement of old credentials."""

    tick_seconds: float = Field(5.0, gt=0)
    batch_size: int = Field(500, ge=1)
    catchup_seconds: float = Field(3600.0, ge=0)
    retire_retry_seconds: float = Field(600.0, gt=0)
    default_grace_seconds: float = Field(24 * 3600.0, ge=0)


class SecretSourceSettings(_Group):
    """Default secret source when the registry does not name one."""

    kind: Literal["generate", "command", "http"] = "generate"
    length: int = Field(48, ge=16, le=512)
    command: list[str] = Field(default_factory=list)
    url: str = ""
    token: SecretStr = SecretStr("")
    timeout_seconds: float = Field(20.0, gt=0)


class Settings(BaseSettings):
    """The one settings object; build it with :func:`load_settings` and pass it down."""

    model_config = SettingsConfigDict(
        env_prefix="ROTATOR_",
        env_nested_delimiter="__",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        frozen=True,
    )

    redis_url: SecretStr = SecretStr("redis://127.0.0.1:6379/0")
    registry_path: Path | None = None
    redox: RedoxSettings = RedoxSettings()
    retry: RetrySettings = RetrySettings()
    rate_limit: RateLimitSettings = RateLimitSettings()
    lock: LockSettings = LockSettings()
    celery: CelerySettings = CelerySettings()
    events: EventSettings = EventSettings()
    scheduler: SchedulerSettings = SchedulerSettings()
    secret_source: SecretSourceSettings = SecretSourceSettings()
    log_format: Literal["auto", "json", "console"] = "auto"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    #: Prefix of every Redis key this service writes (the event stream is ``<prefix>:events``).
    key_prefix: str = Field("rotator", pattern=r"^[A-Za-z0-9_.-]+$")

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: SecretStr) -> SecretStr:
        scheme = urlsplit(value.get_secret_value()).scheme
        if scheme not in ("redis", "rediss", "unix"):
            raise ValueError("must start with redis://, rediss:// or unix://")
        return value

    @property
    def redis_dsn(self) -> str:
        """The Redis URL, with its password: only for opening connections."""
        return self.redis_url.get_secret_value()

    def require_redox(self) -> None:
        """Check what a command that talks to Redox needs; raise ConfigError listing each gap."""
        problems = redox_problems(self.redox)
        if problems:
            raise ConfigError(problems)


def redox_problems(redox: RedoxSettings) -> list[str]:
    """Reasons the Redox credentials are unusable (empty when they are fine)."""
    problems: list[str] = []
    if not redox.client_id.strip():
        problems.append("ROTATOR_REDOX__CLIENT_ID is empty")
    if not redox.key_id.strip():
        problems.append("ROTATOR_REDOX__KEY_ID is empty")
    problems.extend(private_key_problems(redox.private_key_path))
    return problems


def private_key_problems(path: Path | None) -> list[str]:
    """Reasons the private key file cannot be used to sign client assertions."""
    name = "ROTATOR_REDOX__PRIVATE_KEY_PATH"
    if path is None:
        return [f"{name} is not set"]
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return [f"{name}: {path} does not exist"]
    except OSError as exc:
        return [f"{name}: cannot read {path}: {exc.strerror}"]
    if not stat.S_ISREG(mode):
        return [f"{name}: {path} is not a regular file"]
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        return [f"{name}: {path} is readable by group or others (run: chmod 600 {path})"]
    try:
        data = path.read_bytes()
    except OSError as exc:
        return [f"{name}: cannot read {path}: {exc.strerror}"]
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    try:
        key = load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        return [f"{name}: {path} is not an unencrypted PEM private key"]
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        return [f"{name}: {path} is not an RSA or EC private key"]
    if isinstance(key, ec.EllipticCurvePrivateKey) and not isinstance(key.curve, ec.SECP384R1):
        return [f"{name}: {path} is an EC key on {key.curve.name}; ES384 needs P-384 (secp384r1)"]
    return []


def mask_url(url: str) -> str:
    """The URL with any password (userinfo or ``password=`` query) replaced by ``***``."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:  # unparsable: show nothing of it
        return "***"
    masked = url
    if password is not None:
        netloc = parts.netloc
        masked = masked.replace(
            netloc, f"{parts.username or ''}:***@{netloc.rpartition('@')[2]}", 1
        )
    return _QUERY_SECRET.sub(r"\1***", masked)


def load_settings(**overrides: object) -> Settings:
    """Read settings from env and ``.env``; raise ConfigError with one line per problem."""
    env_file = os.environ.get("ROTATOR_ENV_FILE", ".env")
    try:
        return Settings(_env_file=env_file, **overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise ConfigError([_describe(err) for err in exc.errors()]) from None
    except SettingsError as exc:  # a list/object value that is not JSON
        found = re.search(r'field "(\w+)"', str(exc))
        env_name = f"ROTATOR_{found.group(1).upper()}" if found else "settings"
        raise ConfigError(
            f"{env_name}: cannot parse the value (lists and objects must be written as JSON)"
        ) from None


def _describe(err: object) -> str:
    assert isinstance(err, dict)
    loc = [str(part) for part in err.get("loc", ())]
    env_name = "ROTATOR_" + "__".join(part.upper() for part in loc) if loc else "settings"
    message = str(err.get("msg", "invalid")).removeprefix("Value error, ")
    if message.startswith("ROTATOR_"):  # a cross-field check names its own variable
        return message
    return f"{env_name}: {message}"
