"""The demo's processes: a private Redis, the sandbox, a worker, beat and (if installed) Flower.

:class:`Demo` starts them through :class:`devstack.stack.LocalStack` in one temporary
directory, writes a registry with a fast schedule for the sandbox's seeded destinations,
triggers a first round of rotations, and on :meth:`Demo.close` stops every child process
and removes the directory.
"""

from __future__ import annotations

import importlib.util
import secrets
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
from pydantic import SecretStr

from config.settings import Settings
from devstack.demo.breaker import Breaker
from devstack.demo.tokens import AWS_ENV, TokenStores
from devstack.demo.tokens import available as tokens_available
from devstack.redis_server import free_port
from devstack.stack import LocalStack, idp_settings
from sandbox.client import SandboxControl
from worker.errors import UsageError
from worker.store.keys import Keys
from worker.store.records import CREDENTIAL_KIND, TOKEN_KIND, RotationStore

__all__ = ["Demo", "DemoDestination", "DemoOptions", "registry_toml"]

FLOWER_USER = "demo"


@dataclass(frozen=True)
class DemoOptions:
    """What ``rotator demo`` was asked for."""

    destinations: int = 5
    fail_rate: float = 0.0
    latency_ms: float = 0.0
    redis_port: int = 0
    sandbox_port: int = 0
    flower_port: int = 5555
    flower: bool = True
    #: The IdP the sandbox's destinations use (``okta``, ``entra``).
    idp: str = "okta"
    #: Also show a failed rehearsal and an automatic revert (``--break``).
    break_things: bool = False
    interval_seconds: int = 90
    grace_seconds: int = 60
    tick_seconds: float = 1.0
    #: Demo-sized verification: the defaults are 900 s of watch, polled every 60 s.
    watch_seconds: int = 15
    poll_seconds: int = 3
    deliveries_every: float = 1.0
    #: Receivers check verification tokens kept in a local Secrets Manager, and the first
    #: round rotates one destination's token (needs moto, from the sandbox extra).
    tokens: bool = True

    def check(self) -> None:
        """UsageError naming the first bad option."""
        if not 1 <= self.destinations <= 500:
            raise UsageError(f"--destinations must be between 1 and 500, got {self.destinations}")
        if not 0.0 <= self.fail_rate <= 0.9:
            raise UsageError(f"--fail-rate must be between 0 and 0.9, got {self.fail_rate}")
        if self.latency_ms < 0:
            raise UsageError(f"--latency-ms must be >= 0, got {self.latency_ms}")
        if self.idp not in ("okta", "entra"):
            raise UsageError(f"--idp must be okta or entra, got {self.idp}")
        if self.break_things and self.destinations < 3:
            raise UsageError("--break needs at least 3 destinations (two are broken on purpose)")
        for name, port in (
            ("--redis-port", self.redis_port),
            ("--sandbox-port", self.sandbox_port),
            ("--flower-port", self.flower_port),
        ):
            if not 0 <= port <= 65535:
                raise UsageError(f"{name} must be a TCP port (0 picks a free one), got {port}")


@dataclass(frozen=True)
class DemoDestination:
    """A seeded sandbox destination."""

    id: str
    name: str
    environment_id: str
    initial_credential: str


def registry_toml(
    destinations: list[DemoDestination],
    options: DemoOptions,
    token_lines: Callable[[str], list[str]] | None = None,
) -> str:
    """The demo's registry file: every seeded destination on a fast schedule (and, with
    ``token_lines``, its verification-token policy)."""
    lines = [
        "# Written by `rotator demo`: the sandbox's seeded destinations on a fast schedule.",
        "[defaults]",
        f'interval = "{options.interval_seconds}s"',
        f'grace = "{options.grace_seconds}s"',
        "",
    ]
    for dest in destinations:
        lines += [
            "[[destinations]]",
            f'id = "{dest.id}"',
            f'environment = "{dest.environment_id}"',
            f'name = "{dest.name}"',
            *(token_lines(dest.id) if token_lines is not None else []),
            "",
        ]
    return "\n".join(lines)


@dataclass
class Demo:
    """The running demo: its stack, Redis handles and what the view shows."""

    options: DemoOptions
    say: Callable[[str], None] = print
    stack: LocalStack = field(init=False)
    destinations: list[DemoDestination] = field(default_factory=list)
    flower_url: str | None = None
    flower_password: str = ""
    started_at: float = field(default_factory=time.time)
    control: SandboxControl | None = None
    _breaker: Breaker | None = None
    _tokens: TokenStores | None = None
    _client: redis.Redis | None = None
    _settings: Settings | None = None

    def __post_init__(self) -> None:
        self.stack = LocalStack()

    @property
    def directory(self) -> Path:
        """The temporary directory holding every file of the demo."""
        return self.stack.dir

    @property
    def keys(self) -> Keys:
        """Key names (default prefix: the demo's Redis is private)."""
        return Keys()

    @property
    def redis(self) -> redis.Redis:
        """A client on the demo's Redis."""
        if self._client is None:
            raise RuntimeError("demo not started")
        return self._client

    def start(self) -> None:
        """Start Redis, the sandbox, worker, beat and Flower; wait until beat synced."""
        opts = self.options
        stack = self.stack
        (stack.dir / "tmp").mkdir()
        stack.extra_env.update(
            TMPDIR=str(stack.dir / "tmp"),  # beat's schedule file lands in our directory
            ROTATOR_SCHEDULER__TICK_SECONDS=str(opts.tick_seconds),
            ROTATOR_RETRY__TASK_BACKOFF_INITIAL="1",
            ROTATOR_RETRY__TASK_BACKOFF_MAX="10",
            ROTATOR_VERIFY__WATCH_SECONDS=str(opts.watch_seconds),
            ROTATOR_VERIFY__POLL_SECONDS=str(opts.poll_seconds),
            ROTATOR_VERIFY__REHEARSAL_SECONDS="60",
        )
        if opts.redis_port:
            _check_free(opts.redis_port, "--redis-port")
            stack.redis.port = opts.redis_port
        if opts.sandbox_port:
            _check_free(opts.sandbox_port, "--sandbox-port")
        self.say(f"starting redis-server in {stack.dir}")
        url = stack.start_redis()
        self._client = redis.Redis.from_url(url, decode_responses=True)
        self.say(
            f"starting the Redox sandbox with {opts.destinations} destinations, their "
            f"{opts.idp} IdP and deliveries every {opts.deliveries_every:g}s"
        )
        control = stack.start_sandbox(*_sandbox_flags(opts), seed=opts.destinations,
                                      port=opts.sandbox_port)  # fmt: skip
        self.control = control
        stack.extra_env.update(idp_settings(control, opts.idp))
        self.destinations = [_destination(d) for d in control.state()["destinations"]]
        token_lines = None
        if opts.tokens and tokens_available():
            self._tokens = TokenStores(control, self.say)
            self._tokens.start([d.id for d in self.destinations])
            stack.extra_env.update(AWS_ENV)
            token_lines = self._tokens.registry_lines
        elif opts.tokens:
            self.say("moto is not installed (pip install -e '.[sandbox]'): no token rotation")
        registry = stack.dir / "registry.toml"
        registry.write_text(registry_toml(self.destinations, opts, token_lines), encoding="utf-8")
        stack.extra_env["ROTATOR_REGISTRY_PATH"] = str(registry)
        self.say("starting a worker and beat")
        stack.start_worker("demo", concurrency=4)
        beat = stack.start_beat()
        self._wait_synced(beat.log_text, lambda: beat.alive)
        if opts.flower:
            self._start_flower()

    def _wait_synced(self, log_text: Callable[[], str], alive: Callable[[], bool]) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if int(self.redis.scard(self.keys.policies)) >= len(self.destinations):
                return
            if not alive():
                raise UsageError(f"beat exited at start: {log_text()[-800:]}")
            time.sleep(0.2)
        raise UsageError("beat did not load the demo registry within 60s")

    def _start_flower(self) -> None:
        if importlib.util.find_spec("flower") is None:
            self.say("Flower is not installed (pip install -e '.[flower]'); continuing without it")
            return
        port = self.options.flower_port or free_port()
        if not _port_free(port):
            self.say(f"port {port} is busy; starting Flower on a free port instead")
            port = free_port()
        self.flower_password = secrets.token_urlsafe(12)
        self.say(f"starting Flower on 127.0.0.1:{port}")
        self.stack.start_flower(port, f"{FLOWER_USER}:{self.flower_password}")
        self.flower_url = f"http://127.0.0.1:{port}"

    def settings(self) -> Settings:
        """Settings for this process's own calls (the demo's Redis, default key prefix)."""
        if self._settings is None:
            self._settings = Settings(
                _env_file=None,
                redis_url=SecretStr(self.stack.redis.url),
                key_prefix="rotator",
            )
        return self._settings

    def break_things(self) -> None:
        """``--break``: a refused rehearsal and a reverted switch (:mod:`.breaker`)."""
        assert self.control is not None
        self._breaker = Breaker(
            self.control,
            self.redis,
            self.stack.settings(),
            [d.id for d in self.destinations[:2]],
        )
        self._breaker.start()

    def first_round(self) -> list[str]:
        """Trigger a rotation of every destination now (trigger ``operator``): their
        credentials, and the last one's verification token when receivers check tokens."""
        from worker.celery_app import create_app
        from worker.trigger import request_rotation

        settings = self.settings()
        store = RotationStore(
            self.redis, self.keys, claim_ttl=settings.lock.claim_ttl_seconds,
            stream_maxlen=settings.events.stream_maxlen,
        )  # fmt: skip
        app = create_app(settings)
        reason = "rotator demo: first round"
        kinds = [CREDENTIAL_KIND] * len(self.destinations)
        if self._tokens is not None:  # the last destination shows a verification token's
            kinds[-1] = TOKEN_KIND
        try:
            return [
                request_rotation(
                    app, store, dest.id, trigger="operator", reason=reason, kind=kind
                ).rotation_id
                for dest, kind in zip(self.destinations, kinds, strict=True)
            ]
        finally:
            app.close()

    def close(self) -> None:
        """Stop every child process and remove the temporary directory."""
        if self._breaker is not None:
            self._breaker.close()
        if self._tokens is not None:
            self._tokens.close()
        if self.control is not None:
            self.control.close()
            self.control = None
        if self._client is not None:
            self._client.close()
            self._client = None
        self.stack.close()


def _destination(raw: dict[str, Any]) -> DemoDestination:
    env = raw.get("environment") or {}
    return DemoDestination(
        id=str(raw["id"]),
        name=str(raw.get("name") or raw["id"][:8]),
        environment_id=str(env.get("id") if isinstance(env, dict) else env),
        initial_credential=str(raw.get("authCredential") or ""),
    )


def _sandbox_flags(opts: DemoOptions) -> list[str]:
    flags: list[str] = ["--idp", opts.idp, "--deliveries-every", str(opts.deliveries_every)]
    if opts.fail_rate:
        flags += ["--fail-rate", str(opts.fail_rate)]
    if opts.latency_ms:
        flags += ["--latency-ms", str(opts.latency_ms)]
    return flags


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _check_free(port: int, flag: str) -> None:
    if not _port_free(port):
        raise UsageError(f"{flag} {port}: the port is already in use")
