"""Settings: everything a deployment sets, read once at start from env (``ROTATOR_``) and ``.env``.

Build one :class:`Settings` with :func:`load_settings` and pass it down; nothing else reads
the environment. Nested groups use ``__``: ``ROTATOR_REDOX__CLIENT_ID``.
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import SplitResult, unquote, urlsplit

from pydantic import (
    BaseModel,
    Field,
    SecretStr,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict, SettingsError

from config.errors import ConfigError
from config.registry import DEFAULT_GRACE_SECONDS
from config.secret_sources import SecretSourceSettings

__all__ = [
    "CelerySettings",
    "EventSettings",
    "LockSettings",
    "RateLimitSettings",
    "RedisSentinelSettings",
    "RedoxSettings",
    "RetrySettings",
    "SchedulerSettings",
    "SecretSourceSettings",
    "SentinelTarget",
    "Settings",
    "VerifySettings",
    "load_settings",
    "mask_url",
    "parse_sentinel_url",
]

#: Redox allows about 7,500 requests per rolling five minutes per IP; we default to 80 %.
REDOX_WINDOW_LIMIT = 7_500
_QUERY_SECRET = re.compile(r"(?i)([?&](?:password|token|secret)=)[^&#]*")
#: Where a ``;``-separated list of URLs (``sentinel://a;sentinel://b``) splits: before the
#: next ``scheme://``, so a raw ``;`` inside a password is never taken for a separator.
_URL_LIST_SPLIT = re.compile(r";(?=[A-Za-z][A-Za-z0-9+.-]*://)")
SENTINEL_SCHEME = "sentinel"
#: The port sentinels usually listen on (for messages only: the URL must say it).
SENTINEL_PORT = 26379
#: (host, port) of each sentinel.
Endpoints = tuple[tuple[str, int], ...]


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
                        "ROTATOR_ALLOW_INSECURE_HTTP=true only for a local sandbox)"
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
    """The shared Redox request budget (one Redis limiter for every worker), and how a 429
    lowers it for every worker at once (see :mod:`worker.store.limiter`)."""

    requests: int = Field(int(REDOX_WINDOW_LIMIT * 0.8), ge=1)
    window_seconds: float = Field(300.0, gt=0)
    #: Longest a single call waits for a slot before giving up as transient.
    max_wait_seconds: float = Field(60.0, gt=0)
    enabled: bool = True
    #: After a 429 carrying ``X-RateLimit-Limit`` (Redox's real limit), aim at this share
    #: of it; the default keeps the same 20 % margin as ``requests`` does.
    limit_share: float = Field(0.8, gt=0, le=1)
    #: The window ``X-RateLimit-Limit`` counts over (Redox: rolling five minutes); unset,
    #: ``window_seconds``.
    redox_window_seconds: float | None = Field(None, gt=0)
    #: How many windows a limit learnt from ``X-RateLimit-Limit`` holds before the rate
    #: grows back (probing above a limit Redox stated only earns 429s).
    learned_limit_windows: float = Field(12.0, ge=0)
    #: A 429 the header does not explain multiplies the allowed rate by this.
    backoff_factor: float = Field(0.5, gt=0, lt=1)
    #: Without 429s the allowed rate grows back by this share of ``requests`` per window,
    #: every window, up to ``requests``.
    recovery_share: float = Field(0.1, gt=0, le=1)
    #: At most this share of the allowed requests in any such share of the window: the
    #: budget goes out at a steady pace, not in one burst, so a limit below the budget
    #: costs one or two 429s, not one per worker slot (1: no cap).
    burst_share: float = Field(0.05, gt=0, le=1)
    #: However many 429s arrive, the allowed rate stays at least this share of
    #: ``requests``: 429s that are not about our rate (a proxy's, or another tool's bursts)
    #: slow a fleet down but never stall it; each 429's pause still applies.
    min_share: float = Field(0.05, gt=0, le=1)


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
    default_grace_seconds: float = Field(DEFAULT_GRACE_SECONDS, ge=0)


class VerifySettings(_Group):
    """The rehearsal before a switch and the watch after it."""

    #: How long a rejected rehearsal is retried while a new IdP secret propagates.
    rehearsal_seconds: float = Field(120.0, ge=0)
    #: How long deliveries are watched after a switch (0: no watch).
    watch_seconds: float = Field(900.0, ge=0)
    #: How often the watched destinations' failed deliveries are searched.
    poll_seconds: float = Field(60.0, gt=0)


class RedisSentinelSettings(_Group):
    """Redis Sentinel, used when ``ROTATOR_REDIS_URL`` is a ``sentinel://`` URL list.

    The URL names the sentinels (and carries the primary's password, as the other forms
    do); these say which primary they watch and how to log in to the sentinels themselves.
    """

    #: The name the sentinels monitor the primary under (``sentinel monitor <name> ...``).
    master_name: str = Field("", pattern=r"^[^\s;]*$")
    #: The sentinels' own password (``requirepass`` in sentinel.conf); empty: none.
    password: SecretStr = SecretStr("")


@dataclass(frozen=True)
class SentinelTarget:
    """Everything needed to reach the current primary through Sentinel."""

    #: (host, port) of every sentinel, in the order given.
    sentinels: Endpoints
    master_name: str
    db: int
    #: Login for the primary and its replicas (from the URL's userinfo).
    username: str | None
    password: str | None
    #: Password of the sentinels themselves (``ROTATOR_REDIS_SENTINEL__PASSWORD``).
    sentinel_password: str | None


def split_url_list(value: str) -> list[str]:
    """``a;b`` -> ``[a, b]`` where each part starts with ``scheme://``."""
    return _URL_LIST_SPLIT.split(value)


def parse_sentinel_url(value: str) -> tuple[Endpoints, int, str | None, str | None]:
    """``sentinel://[user:password@]host:port[/db][;sentinel://...]`` -> (sentinels, db,
    username, password). ValueError (never quoting the value) if it is not that."""
    parts = split_url_list(value)
    sentinels: list[tuple[str, int]] = []
    logins: set[tuple[str | None, str | None, int]] = set()
    for part in parts:
        split = urlsplit(part)
        if split.scheme != SENTINEL_SCHEME:
            raise ValueError("every ;-separated part must be a sentinel:// URL")
        if ";" in part:
            raise ValueError("a ';' inside a sentinel:// URL must be written %3B")
        if split.query or split.fragment:
            raise ValueError(
                "a sentinel:// URL takes no ?options (use ROTATOR_REDIS_SENTINEL__* settings)"
            )
        host, port = _host_port(split)
        sentinels.append((host, port))
        logins.add((_unquoted(split.username), _unquoted(split.password), _db(split.path)))
    if len(logins) > 1:
        # kombu connects through whichever part it is at, with that part's login and db.
        raise ValueError("every sentinel:// part must carry the same user:password and /db")
    username, password, db = logins.pop()
    return tuple(sentinels), db, username, password


def _host_port(split: SplitResult) -> tuple[str, int]:
    try:
        port = split.port
    except ValueError:
        raise ValueError("a sentinel:// URL has a port that is not a number") from None
    if not split.hostname:
        raise ValueError("a sentinel:// URL has no host (sentinel://host:26379)")
    if port is None:
        # kombu would take 26379 and Celery's result backend 6379: say it once, here.
        raise ValueError(f"a sentinel:// URL needs its port (sentinel://host:{SENTINEL_PORT})")
    return split.hostname, port


def _db(path: str) -> int:
    number = path.strip("/") or "0"
    if not number.isdigit():
        raise ValueError("the /db of a sentinel:// URL must be a number")
    return int(number)


def _unquoted(text: str | None) -> str | None:
    return unquote(text) if text else None


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
    redis_sentinel: RedisSentinelSettings = RedisSentinelSettings()
    registry_path: Path | None = None
    redox: RedoxSettings = RedoxSettings()
    retry: RetrySettings = RetrySettings()
    rate_limit: RateLimitSettings = RateLimitSettings()
    lock: LockSettings = LockSettings()
    celery: CelerySettings = CelerySettings()
    events: EventSettings = EventSettings()
    scheduler: SchedulerSettings = SchedulerSettings()
    secret_source: SecretSourceSettings = SecretSourceSettings()
    verify: VerifySettings = VerifySettings()
    #: Permit plain http for every outbound URL (Redox, the IdP, the rehearsal's token URL):
    #: local sandboxes only. ``ROTATOR_REDOX__ALLOW_INSECURE_HTTP`` is the older name.
    allow_insecure_http: bool = False
    log_format: Literal["auto", "json", "console"] = "auto"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    #: Prefix of every Redis key this service writes (the event stream is ``<prefix>:events``).
    key_prefix: str = Field("rotator", pattern=r"^[A-Za-z0-9_.-]+$")

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: SecretStr) -> SecretStr:
        url = value.get_secret_value()
        try:
            scheme = urlsplit(url).scheme
        except ValueError:
            scheme = ""
        if scheme == SENTINEL_SCHEME:
            parse_sentinel_url(url)
        elif scheme not in ("redis", "rediss", "unix"):
            raise ValueError("must start with redis://, rediss://, unix:// or sentinel://")
        return value

    @model_validator(mode="after")
    def _sentinel_needs_master_name(self) -> Settings:
        if self.sentinel_target is not None and not self.redis_sentinel.master_name:
            raise ValueError(
                "ROTATOR_REDIS_SENTINEL__MASTER_NAME: must be set when ROTATOR_REDIS_URL is a "
                "sentinel:// URL (the name in the sentinels' `sentinel monitor <name> ...`)"
            )
        return self

    @model_validator(mode="before")
    @classmethod
    def _insecure_flag_reaches_redox(cls, data: Any) -> Any:
        """``ROTATOR_ALLOW_INSECURE_HTTP`` also permits http for the Redox URLs (checked by
        :class:`RedoxSettings` itself, so its problems are listed with every other one)."""
        if not isinstance(data, dict):
            return data
        try:
            allowed = TypeAdapter(bool).validate_python(data.get("allow_insecure_http", False))
        except ValidationError:
            return data  # reported by the field itself
        redox = data.get("redox")
        if allowed and (redox is None or isinstance(redox, dict)):
            data = {**data, "redox": {**(redox or {}), "allow_insecure_http": True}}
        return data

    @property
    def insecure_http_allowed(self) -> bool:
        """Whether plain http may be used for outbound URLs (sandboxes only): either name."""
        return self.allow_insecure_http or self.redox.allow_insecure_http

    def env_secret(self, name: str) -> SecretStr:
        """The value of environment variable ``name``, which the registry file names for a
        secret (``api_token_env`` and the like): the one read of the environment outside
        the Settings fields themselves. Empty when unset."""
        return SecretStr(os.environ.get(name, ""))

    @property
    def redis_dsn(self) -> str:
        """The Redis URL, with its password: only for opening connections (for Sentinel the
        ``;``-separated ``sentinel://`` list, as kombu and Celery take it)."""
        return self.redis_url.get_secret_value()

    @property
    def sentinel_target(self) -> SentinelTarget | None:
        """The Sentinel setup when ``ROTATOR_REDIS_URL`` is ``sentinel://``; else None."""
        url = self.redis_dsn
        if urlsplit(url).scheme != SENTINEL_SCHEME:
            return None
        sentinels, db, username, password = parse_sentinel_url(url)
        return SentinelTarget(
            sentinels=sentinels,
            master_name=self.redis_sentinel.master_name,
            db=db,
            username=username,
            password=password,
            sentinel_password=self.redis_sentinel.password.get_secret_value() or None,
        )

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
    """The URL with any password (userinfo or ``password=`` query) replaced by ``***``; for
    a ``;``-separated list (``sentinel://a;sentinel://b``), in every part."""
    parts = split_url_list(url)
    if len(parts) > 1:
        return ";".join(_mask_one(part) for part in parts)
    return _mask_one(url)


def _mask_one(url: str) -> str:
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
